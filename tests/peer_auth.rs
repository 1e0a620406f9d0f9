//! Peers authenticate each other (issue 10, defect 1): a process without the cluster secret
//! cannot get a Raft message stepped by any server. Before, three forged 25-byte frames (a
//! heartbeat with term `u64::MAX`) sent to the peer ports of `treesync local` panicked every
//! replica and, persisted, every restart after.

mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use support::local::LocalCluster;
use treesync_core::Value;
use treesync_net::frame::push_frame;
use treesync_net::peer::{PeerAuth, HANDSHAKE_TAG};
use treesync_net::ws_client::WsClient;

/// A heartbeat that would overflow raft-rs's term arithmetic if any replica stepped it.
fn forged_heartbeat(to: u64) -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    (m.from, m.to, m.term, m.commit) = (2, to, u64::MAX, u64::MAX);
    let mut body = 0u64.to_le_bytes().to_vec(); // the sender's HLC reading
    m.write_to_vec(&mut body).expect("encodes");
    frame(0, &body)
}

fn frame(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_frame(&mut out, tag, body).expect("a small frame");
    out
}

/// Connects to a peer port, waiting for its listener (cores start it after the process
/// printed its client URLs).
fn connect(port: u16) -> TcpStream {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(e) => assert!(std::time::Instant::now() < deadline, "port {port}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20)); // polling an external process
    }
}

/// Reads the server's challenge frame (8-byte header, 8-byte nonce).
fn challenge(stream: &mut TcpStream) -> u64 {
    let mut bytes = [0u8; 16];
    stream.read_exact(&mut bytes).expect("a challenge");
    u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"))
}

/// True once the server has closed the connection (EOF or reset), false if it kept it.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        Ok(_) => false,
    }
}

#[test]
fn a_peer_without_the_cluster_secret_is_refused_and_forged_messages_change_nothing() {
    let cluster = LocalCluster::start("peer-auth", &[]);
    for (i, port) in cluster.peer_ports.iter().enumerate() {
        let to = i as u64 + 1;
        // No hello at all: the forged frames themselves.
        let mut raw = connect(*port);
        challenge(&mut raw);
        for _ in 0..3 {
            // The server may close as soon as the first frame is not a hello.
            let _ = raw.write_all(&forged_heartbeat(to));
        }
        assert!(
            closed_by_server(&mut raw),
            "server {to} kept a connection that sent no hello"
        );
        // A hello made with a guessed secret, then the forged frames.
        let mut guessed = connect(*port);
        let nonce = challenge(&mut guessed);
        let peers: BTreeSet<u64> = [1, 2, 3].into();
        let hello = PeerAuth::new(0, b"not the secret", 2, 0, peers).hello(to, nonce);
        let _ = guessed.write_all(&frame(HANDSHAKE_TAG, &hello));
        let _ = guessed.write_all(&forged_heartbeat(to));
        assert!(
            closed_by_server(&mut guessed),
            "server {to} accepted a wrong secret"
        );
    }
    // Every server still serves, and the cluster still replicates.
    actix_rt::System::new().block_on(async {
        let mut first = WsClient::connect(&cluster.urls[0]).await.expect("connect");
        let props = vec![("hp".to_owned(), Value::Int(7))];
        first
            .set("/root", props)
            .await
            .expect("a write after the forged frames");
        for url in &cluster.urls {
            let mut ws = WsClient::connect(url).await.expect("connect");
            let hp = ws
                .get_prop("/root", "hp")
                .await
                .expect("a read on every server");
            assert_eq!(hp, Value::Int(7), "{url}");
        }
    });
}
