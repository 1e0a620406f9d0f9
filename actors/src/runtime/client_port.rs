//! Serves the minimal client protocol on core 0: one task per connection, requests answered
//! in order, each routed to the core owning its shard.

use std::net::SocketAddr;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use treesync_net::client_proto::Response;
use treesync_net::frame::{parse_header, push_frame, HEADER_BYTES};

use super::Router;

pub async fn serve(addr: SocketAddr, router: Router) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("treesync: cannot listen for clients on {addr}: {e}");
            std::process::exit(1);
        }
    };
    while let Ok(stream) = listener.accept().await {
        // Best effort: replies are small and latency-bound.
        let _ = stream.set_nodelay(true);
        glommio::spawn_local(connection(stream, router.clone())).detach();
    }
}

async fn connection(mut stream: TcpStream, router: Router) {
    let mut header = [0u8; HEADER_BYTES];
    while stream.read_exact(&mut header).await.is_ok() {
        let Ok(frame) = parse_header(&header) else {
            // Oversized frame: answer with a reason, then close (we cannot resynchronise).
            let (status, body) = Response::Error("frame too large".into()).encode();
            let mut out = Vec::new();
            push_frame(&mut out, status, &body);
            let _ = stream.write_all(&out).await; // the connection closes either way
            return;
        };
        let mut body = vec![0u8; frame.len as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, reply) = router.handle(frame.tag, &body).await.encode();
        let mut out = Vec::with_capacity(HEADER_BYTES + reply.len());
        push_frame(&mut out, status, &reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
