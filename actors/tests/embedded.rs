//! The embedding API: a single-server cluster in this process, written and read through
//! `Router::propose_blocking` / `read_blocking` (no network client involved).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use treesync_actors::runtime::{self, ServerConfig};
use treesync_core::{Op, Prop, Txn, Value};
use treesync_net::client_proto::Response;

#[test]
fn embedded_single_server_writes_and_reads() {
    let dir = std::env::temp_dir().join(format!("treesync-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // fresh data; nothing to keep from an older run
    let port = 24_000 + (std::process::id() % 1000) as u16 * 5;
    let peers = BTreeMap::from([(1, SocketAddr::from(([127, 0, 0, 1], port)))]);
    let config = ServerConfig {
        id: 1,
        peers,
        client_addr: None,
        data_dir: dir.clone(),
        cores: 1,
        shards: 1,
        fsync: true,
        tick: Duration::from_millis(5),
        pin: false,
    };
    let server = runtime::start(config).expect("starts");
    let txn = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("hp", Value::Int(7))],
    });
    // A single-member group elects itself after one election timeout; until then: NotLeader.
    let mut answer = server.router.propose_blocking(txn.clone());
    for _ in 0..200 {
        if !matches!(answer, Response::NotLeader { .. }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10)); // waiting for the election
        answer = server.router.propose_blocking(txn.clone());
    }
    assert!(matches!(answer, Response::Written { .. }), "{answer:?}");
    assert_eq!(
        server.router.read_blocking("/root", Some("hp")),
        Response::Value(Some(Value::Int(7)))
    );
    assert!(matches!(
        server.router.read_blocking("not a path", None),
        Response::Error(_)
    ));
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup; the server threads end with the test process
}
