//! Many large writes at once against a real `treesync local` (3 replicas, a gateway per
//! server), through the Rust client.
//!
//! The regression (found 2026-12-01): 24 concurrent `set`s of about 1 MiB each, every one
//! within the documented limits (16 String properties of 60 KB: a String may hold 64 KiB, a
//! request 1 MiB), made every client get `unavailable`, then the process exited with
//! `core 0 stopped: batch of 22113304 bytes exceeds the limit of 16777216`: the group
//! commit put them all in one WAL batch. The engine now bounds its batches
//! (`core::engine::WAL_BATCH_BYTES_MAX`, unit-tested in `core/src/engine/tests.rs`); this
//! test covers the whole path: gateway, forwarding to the leader, replication, WAL and
//! replies, and that the process survives it.

mod support;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::future::Future;

use futures_util::future::join_all;
use support::local::LocalCluster;
use treesync_core::codec;
use treesync_core::Value;
use treesync_net::ws_client::{WsClient, WsClientError};

/// Concurrent writes, one session each: `WsClient` has one request in flight per session.
const WRITES: usize = 24;
/// String properties in each write.
const PROPS_PER_WRITE: usize = 16;
/// Length of each String value, in bytes.
const VALUE_BYTES: usize = 60_000;
/// The documented limits the writes stay within (`docs/protocol.md`, "Limits").
const STRING_BYTES_MAX: usize = 64 * 1024;
const MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// The node every write sets properties on.
const NODE: &str = "/root/Big";

const _: () = assert!(VALUE_BYTES <= STRING_BYTES_MAX);
// Together the writes are well over a 16 MiB batch, the size that stopped the process.
const _: () = assert!(WRITES * PROPS_PER_WRITE * VALUE_BYTES > 16 * 1024 * 1024);

/// Retries of a write answered "not applied, retry".
const RETRIES_MAX: usize = 3;

fn run<F: Future<Output = ()>>(test: F) {
    actix_rt::System::new().block_on(test);
}

async fn connect(url: &str) -> WsClient {
    WsClient::connect(url).await.expect("connect")
}

/// The name of property `index` of write `write`: distinct across all writes.
fn prop_name(write: usize, index: usize) -> String {
    format!("p{write}_{index}")
}

/// The marker a value starts with; the same marker, closed, ends it.
fn marker(write: usize, index: usize) -> String {
    format!("<w{write:02}p{index:02}>")
}

/// The `VALUE_BYTES`-byte String of property `index` of write `write`: distinct markers at
/// both ends, and a filler letter that differs between neighbouring properties.
fn value(write: usize, index: usize) -> String {
    let (head, tail) = (
        marker(write, index),
        format!("</{}", &marker(write, index)[1..]),
    );
    let letter = char::from(b'a' + ((write * PROPS_PER_WRITE + index) % 26) as u8);
    let filler = letter
        .to_string()
        .repeat(VALUE_BYTES - head.len() - tail.len());
    let text = format!("{head}{filler}{tail}");
    assert_eq!(text.len(), VALUE_BYTES);
    text
}

/// The properties of write `write`.
fn props(write: usize) -> Vec<(String, Value)> {
    (0..PROPS_PER_WRITE)
        .map(|i| (prop_name(write, i), Value::String(value(write, i))))
        .collect()
}

/// Bytes of the `set` request the client sends for `props`, as encoded for Godot 4.
fn request_bytes(props: &[(String, Value)]) -> usize {
    let key = |k: &str| Value::String(k.to_owned());
    let props = props.iter().map(|(k, v)| (key(k), v.clone())).collect();
    let request = Value::Dictionary(vec![
        (key("id"), Value::Int(1)),
        (key("op"), key("set")),
        (key("path"), key(NODE)),
        (key("props"), Value::Dictionary(props)),
    ]);
    codec::encoded_len_v4(&request)
}

/// The states (`R`, `S`, `D`, `Z`…; proc(5)) of this test process's child processes
/// named `name`. `LocalCluster` reaps its child only on drop, so one that exited is still
/// listed, as a zombie (`Z`). Linux-only, as the test suite is.
fn child_states(name: &str) -> Vec<char> {
    let me = std::process::id().to_string();
    let entries = std::fs::read_dir("/proc").expect("/proc lists processes");
    entries
        .filter_map(|entry| {
            // A process may end between the listing and the read: it is simply skipped.
            let stat = std::fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`; comm may itself hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(") ")?;
            let (_, comm) = head.split_once(" (")?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?;
            (comm == name && ppid == me).then_some(state)
        })
        .collect()
}

/// Panics unless exactly one `treesync` child of this process exists and has not exited.
fn assert_treesync_running(when: &str) {
    let states = child_states("treesync");
    assert_eq!(
        states.len(),
        1,
        "{when}: one treesync child, found {states:?}"
    );
    assert!(
        !matches!(states[0], 'Z' | 'X'),
        "{when}: the treesync process exited (state {})",
        states[0]
    );
}

/// Panics unless `read` is exactly `expected`, saying how it differs without printing
/// 60 KB.
fn assert_same_string(read: &Value, expected: &str, what: &str) {
    let Value::String(read) = read else {
        let shown: String = format!("{read:?}").chars().take(200).collect();
        panic!("{what}: expected a String, got {shown}");
    };
    assert_eq!(read.len(), expected.len(), "{what}: length");
    // The closing marker is one byte longer than the opening one (`</` for `<`).
    let (head, tail) = (marker_len(expected), marker_len(expected) + 1);
    assert_eq!(read.get(..head), expected.get(..head), "{what}: prefix");
    let from = expected.len() - tail;
    assert_eq!(read.get(from..), expected.get(from..), "{what}: suffix");
    assert!(
        read == expected,
        "{what}: same length and ends, different middle"
    );
}

/// Length of the marker a value starts with (`<wWWpPP>`).
fn marker_len(text: &str) -> usize {
    text.find('>').expect("a value starts with a marker") + 1
}

#[test]
fn twenty_four_concurrent_one_mib_writes_are_all_answered_and_the_server_stays_up() {
    let cluster = LocalCluster::start("large-writes", &[]);
    assert_treesync_running("after start");
    let requests: Vec<Vec<(String, Value)>> = (0..WRITES).map(props).collect();
    for (write, props) in requests.iter().enumerate() {
        let bytes = request_bytes(props);
        assert!(
            bytes > 900 * 1024 && bytes <= MESSAGE_BYTES_MAX,
            "write {write}: about 1 MiB and within the limit, not {bytes} bytes"
        );
    }
    run(async {
        let mut setup = connect(&cluster.urls[0]).await;
        setup
            .create("/root", "Big", "Node", vec![])
            .await
            .expect("create");
        // All sessions are open before the first write is sent.
        let mut writers = Vec::with_capacity(WRITES);
        for _ in 0..WRITES {
            writers.push(connect(&cluster.urls[0]).await);
        }

        // join_all polls every write once (encoding it and starting to send it) before it
        // polls any again, so all 24 are in flight before any answer is read; `started`
        // counts them, and every answer checks the count.
        let started = Cell::new(0usize);
        let writes = writers.iter_mut().zip(requests).enumerate();
        let outcomes = join_all(writes.map(|(write, (client, props))| {
            let started = &started;
            async move {
                started.set(started.get() + 1);
                let mut outcome = client.set(NODE, props.clone()).await;
                let seen = started.get();
                // `dropped` and `unavailable` mean "not applied, retry" (docs/protocol.md):
                // a leadership change under load may answer them. `unknown_outcome` or any
                // other refusal is still a failure.
                for _ in 0..RETRIES_MAX {
                    let retry = matches!(&outcome, Err(WsClientError::Refused { code, .. })
                        if code == "dropped" || code == "unavailable");
                    if !retry {
                        break;
                    }
                    outcome = client.set(NODE, props.clone()).await;
                }
                (write, seen, outcome)
            }
        }))
        .await;

        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|(write, _, outcome)| {
                let error = outcome.as_ref().err()?;
                Some(format!("write {write}: {error}"))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {WRITES} writes failed: {failures:#?}",
            failures.len()
        );
        for (write, started_then, _) in &outcomes {
            assert_eq!(
                *started_then, WRITES,
                "write {write} was answered while only {started_then} writes were in flight"
            );
        }
        let hlcs: BTreeSet<u64> = outcomes
            .iter()
            .map(|(_, _, outcome)| *outcome.as_ref().expect("checked above"))
            .collect();
        assert_eq!(hlcs.len(), WRITES, "24 commits, each with its own HLC");

        // Every write applied whole: linearizable reads through the two other servers.
        let mut readers = [
            connect(&cluster.urls[1]).await,
            connect(&cluster.urls[2]).await,
        ];
        for write in 0..WRITES {
            let reader = &mut readers[write % 2];
            for index in [write % PROPS_PER_WRITE, PROPS_PER_WRITE - 1] {
                let name = prop_name(write, index);
                let read = reader.get_prop(NODE, &name).await.expect("get");
                let what = format!("{name} through server {}", write % 2 + 2);
                assert_same_string(&read, &value(write, index), &what);
            }
        }
    });
    assert_treesync_running("after the writes and reads");
}
