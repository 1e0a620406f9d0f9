//! `treesync bench`'s load modes from the command line: the mixed workload measures reads and
//! writes apart, the open loop sends on its schedule (never more than the rate allows), and
//! bad flags are refused with a reason. Counts are asserted, never times.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use treesync_core::{Op, Prop, Txn, Value};
use treesync_net::client::Client;

mod support;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treesync"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run treesync bench")
}

/// bench's JSON line, after asserting the run succeeded.
fn json_of(args: &[&str]) -> String {
    let out = bench(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The `count` of the histogram object `name` (`"writes"` or `"reads"`) in bench's JSON.
fn count(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":{{\"count\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + key.len();
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a count")
}

// One test: every run starts in-process replicas on the benchmark's fixed ports.
#[test]
fn the_load_modes_measure_what_they_say_and_bad_flags_are_refused() {
    let json = json_of(&[
        "--workload",
        "mixed",
        "--read-percent",
        "50",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--json",
    ]);
    assert!(
        json.contains("\"workload\":\"mixed\"") && json.contains("\"mode\":\"closed\""),
        "{json}"
    );
    let (writes, reads) = (count(&json, "writes"), count(&json, "reads"));
    assert!(writes > 0 && reads > 0, "both kinds measured: {json}");
    // Reads are every other request, spread evenly: neither kind dominates.
    assert!(writes.abs_diff(reads) * 4 <= writes + reads, "{json}");

    let json = json_of(&[
        "--workload",
        "batch",
        "--batch",
        "4",
        "--rate",
        "100",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--json",
    ]);
    assert!(
        json.contains("\"mode\":\"open\"") && json.contains("\"batch\":4"),
        "{json}"
    );
    let sent = count(&json, "writes");
    // The schedule allows 100 requests in the second; a closed loop would send far more.
    assert!(sent > 0 && sent <= 100, "open loop sent {sent}: {json}");
    assert!(
        json.contains("\"unsent\":"),
        "what the schedule could not send is reported: {json}"
    );

    for (args, reason) in [
        (&["--system", "etcd"][..], "needs --addr"),
        (
            &["--addr", "127.0.0.1:1", "--workload", "txn"][..],
            "give --ws-addr",
        ),
        (&["--ws-addr", "127.0.0.1:1"][..], "give --addr too"),
        (&["--workload", "fill"][..], "give --addr"),
        (
            &[
                "--addr",
                "127.0.0.1:1",
                "--workload",
                "fill",
                "--nodes",
                "0",
            ][..],
            "--nodes must be",
        ),
        (
            &[
                "--system",
                "etcd",
                "--addr",
                "127.0.0.1:1",
                "--workload",
                "subscribe",
                "--rate",
                "10",
            ][..],
            "--rate does not apply",
        ),
        (
            &["--workload", "batch", "--batch", "0"][..],
            "--batch must be",
        ),
        (&["--rate", "0"][..], "--rate must be positive"),
        (
            &["--workload", "mixed", "--read-percent", "101"][..],
            "--read-percent",
        ),
        (&["--addr", "nonsense"][..], "--addr"),
        (&["--workload", "scan"][..], "unknown workload"),
        (&["--rate", "inf"][..], "--rate must be positive"),
        (&["--gateway", "--rate", "10"][..], "without --gateway"),
        (
            &[
                "--system",
                "etcd",
                "--addr",
                "127.0.0.1:1",
                "--workload",
                "batch",
                "--batch",
                "200",
            ][..],
            "at most 128 puts",
        ),
    ] {
        let refused = bench(args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains(reason),
            "{args:?}: {stderr}"
        );
    }
}

/// Against three real `serve` processes (`--addr`, `--ws-addr`), the txn workload commits
/// 2-shard transactions through the gateways and the subscribe workload times deliveries to
/// every subscriber: both report what they measured, in the JSON the comparison reads.
#[test]
fn txn_and_subscribe_run_against_a_running_cluster() {
    let dir = std::env::temp_dir().join(format!("treesync-bench-ext-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run, if any
    let (mut servers, proto) = support::serve::cluster(&dir, 8, &[]);
    for server in servers.iter_mut() {
        server.start();
    }
    // Ready once a write commits (the servers elect leaders first).
    let started = Instant::now();
    let mut client = Client::new(proto.clone());
    let warm = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("ready", Value::Bool(true))],
    });
    while let Err(e) = client.write(&warm) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready: {e}"
        );
    }
    let join = |ports: Vec<String>| ports.join(",");
    let addr = join(proto.values().map(|a| a.to_string()).collect());
    let ws = join((1..=3).map(support::serve::gateway_addr).collect());
    for workload in ["txn", "subscribe"] {
        let json = json_of(&[
            "--addr",
            &addr,
            "--ws-addr",
            &ws,
            "--shards",
            "8",
            "--workload",
            workload,
            "--clients",
            "2",
            "--seconds",
            "1",
            "--json",
        ]);
        assert!(
            json.contains(&format!("\"workload\":\"{workload}\""))
                && json.contains("\"system\":\"treesync\""),
            "{json}"
        );
        assert!(
            count(&json, "writes") > 0,
            "{workload} measured something: {json}"
        );
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
}
