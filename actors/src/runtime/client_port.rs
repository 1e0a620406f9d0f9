//! Serves the minimal client protocol on core 0: one task per connection, requests answered
//! in order, each routed to the core owning its shard.
//!
//! # Invariants
//! - An `accept` error (EMFILE, ECONNABORTED, …) never stops the listener: it is logged and,
//!   after a bounded pause, accepting resumes (`net::peer::survive_accept_error`; defect 10:
//!   one error used to end it for good). An unusable listening socket stops the process.
//! - A reply too large for one frame is answered with an error naming its size; the
//!   connection and the core keep working (it used to trip an assert on core 0).

use std::net::SocketAddr;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use treesync_net::client_proto::Response;
use treesync_net::frame::{parse_header, push_frame, HEADER_BYTES};
use treesync_net::peer::survive_accept_error;

use super::Router;

pub async fn serve(addr: SocketAddr, router: Router) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("treesync: cannot listen for clients on {addr}: {e}");
            std::process::exit(1);
        }
    };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                // Best effort: replies are small and latency-bound.
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(connection(stream, router.clone())).detach();
            }
            Err(e) => {
                if !survive_accept_error(&e, "client").await {
                    eprintln!("treesync: the client listener on {addr} stopped: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// One response frame; a body over the frame limit becomes an error frame saying so.
pub fn response_frame(response: &Response) -> Vec<u8> {
    let (status, body) = response.encode();
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    if let Err(e) = push_frame(&mut out, status, &body) {
        let (status, body) = Response::Error(format!("reply not sent: {e}")).encode();
        push_frame(&mut out, status, &body).expect("an error text fits a frame");
    }
    out
}

async fn connection(mut stream: TcpStream, router: Router) {
    let mut header = [0u8; HEADER_BYTES];
    while stream.read_exact(&mut header).await.is_ok() {
        let Ok(frame) = parse_header(&header) else {
            // Oversized frame: answer with a reason, then close (we cannot resynchronise).
            let out = response_frame(&Response::Error("frame too large".into()));
            let _ = stream.write_all(&out).await; // the connection closes either way
            return;
        };
        let mut body = vec![0u8; frame.len as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let out = response_frame(&router.handle(frame.tag, &body).await);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesync_core::Value;
    use treesync_net::frame::FRAME_BYTES_MAX;

    #[test]
    fn a_reply_over_the_frame_limit_becomes_an_error_frame() {
        let huge = Value::String("x".repeat(FRAME_BYTES_MAX as usize + 16));
        let out = response_frame(&Response::Value(Some(huge)));
        let header = parse_header(out[..HEADER_BYTES].try_into().expect("header")).expect("ok");
        assert_eq!(header.tag, treesync_net::client_proto::ERROR);
        let text = String::from_utf8(out[HEADER_BYTES..].to_vec()).expect("utf-8");
        assert!(text.contains("exceeds the limit"), "{text}");
    }
}
