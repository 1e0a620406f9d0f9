//! The embedding API: a single-server cluster in this process, written and read through
//! `Router::propose_blocking` / `read_blocking` (no network client involved).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use treesync_actors::runtime::{self, ClusterSecret, ServerConfig};
use treesync_actors::storage::format::Record;
use treesync_core::api::{Answer, ReplyError};
use treesync_core::{Op, Prop, Txn, Value};

#[test]
fn embedded_single_server_writes_and_reads() {
    let dir = std::env::temp_dir().join(format!("treesync-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // fresh data; nothing to keep from an older run
                                           // A port the OS says is free (a fixed formula collided with other tests' ports).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let peers = BTreeMap::from([(1, SocketAddr::from(([127, 0, 0, 1], port)))]);
    let config = ServerConfig {
        id: 1,
        peers,
        proto_addr: None,
        data_dir: dir.clone(),
        cores: 1,
        shards: 1,
        fsync: true,
        tick: Duration::from_millis(5),
        pin: false,
        // Small, so the WAL is rewritten while the test writes.
        wal_rewrite_bytes: 4096,
        compact_entries: treesync_actors::runtime::COMPACT_ENTRIES_DEFAULT,
        cluster_secret: ClusterSecret::random(),
        dial: BTreeMap::new(),
        unsafe_local_reads: false,
        closed_lag_ms: treesync_core::replica::CLOSED_LAG_MS_DEFAULT,
    };
    let server = runtime::start(config).expect("starts");
    let txn = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("hp", Value::Int(7))],
    });
    // A single-member group elects itself after one election timeout; until then: NotLeader.
    let mut answer = server.router.propose_blocking(txn.clone());
    for _ in 0..200 {
        if !matches!(answer, Err(ReplyError::NotLeader { .. })) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10)); // waiting for the election
        answer = server.router.propose_blocking(txn.clone());
    }
    assert!(matches!(answer, Ok(Answer::Written { .. })), "{answer:?}");
    assert_eq!(
        server.router.read_blocking("/root", Some("hp")),
        Ok(Answer::Value(Some(Value::Int(7))))
    );
    for i in 0..200 {
        let txn = Txn::single(Op::Set {
            path: "/root".into(),
            props: vec![Prop::new("n", Value::Int(i))],
        });
        assert!(matches!(
            server.router.propose_blocking(txn),
            Ok(Answer::Written { .. })
        ));
    }
    assert_eq!(
        server.router.read_blocking("/root", Some("n")),
        Ok(Answer::Value(Some(Value::Int(199))))
    );
    // Without a rewrite the log would start with the leader's lone first entry; a rewrite
    // starts it with one record holding every entry kept.
    let image = std::fs::read(dir.join("core-0.wal")).expect("the WAL exists");
    let header = treesync_actors::storage::header::decode_header(&image).expect("a header");
    let records = &image[treesync_actors::storage::header::FILE_HEADER_BYTES..];
    let (first, _) =
        treesync_actors::storage::format::decode_at(records, header.salt).expect("a record");
    let merged = match &first {
        Record::Entries { entries, .. } => entries.len(),
        _ => 0,
    };
    assert!(
        merged > 50,
        "the WAL was rewritten (its first record holds {merged} entries)"
    );
    let recovery = treesync_actors::storage::recovery::recover(&image).expect("a valid log");
    let log = &recovery.shards[&0];
    let last = log.entries.last().map_or(0, |e| e.index);
    assert!(
        last >= 201,
        "every entry survived the rewrites (last index {last})"
    );
    assert!(matches!(
        server.router.read_blocking("not a path", None),
        Err(ReplyError::InvalidPath { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup; the server threads end with the test process
}
