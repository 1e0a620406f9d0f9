//! `treesync bench`'s load modes from the command line: the mixed workload measures reads and
//! writes apart, the open loop sends on its schedule (never more than the rate allows), and
//! bad flags are refused with a reason. Counts are asserted, never times.

use std::process::{Command, Output};

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
