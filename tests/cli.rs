//! The CLI for humans against a real `treesync local`: Godot text syntax in, readable text
//! out, one-line errors, and `watch` printing changes live.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use support::local::LocalCluster;

fn treesync(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treesync"))
        .args(args)
        .args(["--addr", url])
        .output()
        .expect("run treesync")
}

fn ok(url: &str, args: &[&str]) -> String {
    let out = treesync(url, args);
    assert!(
        out.status.success(),
        "treesync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cli_writes_reads_and_watches() {
    let cluster = LocalCluster::start("cli", &[]);
    let url = &cluster.urls[0];
    // Start watching first: its snapshot shows the empty root, then the changes.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_treesync"))
        .args(["watch", "/root", "--addr", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut watched = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = watched.next().expect("a line").expect("utf-8");
    assert!(first.starts_with("snapshot at hlc"), "{first}");

    assert!(ok(url, &["create", "/root", "Player", "Node2D", "hp", "100"]).starts_with("ok (hlc "));
    ok(url, &["set", "/root/Player", "position", "Vector2(10, 20)"]);
    assert_eq!(
        ok(url, &["get", "/root/Player", "position"]).trim(),
        "Vector2(10.0, 20.0)"
    );
    let tree = ok(url, &["tree", "/root"]);
    assert!(tree.contains("Player (Node2D)"), "{tree}");
    assert!(tree.contains(".position = Vector2(10.0, 20.0)"), "{tree}");
    assert!(tree.contains(".hp = 100"), "{tree}");

    // Errors are one line on stderr with a non-zero exit, and change nothing.
    for (args, needle) in [
        (
            vec!["set", "/root/Player", "hp", "lots"],
            "strings need quotes",
        ),
        (vec!["set", "/root/Nope", "hp", "1"], "not_found"),
        (vec!["delete", "/root"], "root_is_fixed"),
        (vec!["get", "relative/path"], "invalid_path"),
    ] {
        let out = treesync(url, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert_eq!(ok(url, &["get", "/root/Player", "hp"]).trim(), "100");
    let unreachable = treesync("ws://127.0.0.1:9/ws", &["tree", "/root"]);
    assert_eq!(
        String::from_utf8_lossy(&unreachable.stderr).lines().count(),
        1
    );

    ok(url, &["delete", "/root/Player"]);
    let mut changes = Vec::new();
    for line in watched.by_ref() {
        let line = line.expect("utf-8");
        if line.starts_with("change") {
            changes.push(line);
        }
        if changes.len() == 3 {
            break;
        }
    }
    assert!(changes[0].contains("\"op\": \"create\""), "{changes:?}");
    assert!(changes[1].contains("Vector2(10.0, 20.0)"), "{changes:?}");
    assert!(changes[2].contains("\"op\": \"delete\""), "{changes:?}");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn serve_refuses_to_start_without_a_cluster_secret_or_with_a_short_one() {
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_treesync"))
            .args(["serve", "--id", "1", "--peers", "1=127.0.0.1:1"])
            .args(extra)
            .output()
            .expect("run treesync serve")
    };
    let missing = run(&[]);
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("--cluster-secret-file"), "{said}");
    let short = std::env::temp_dir().join(format!("treesync-short-secret-{}", std::process::id()));
    std::fs::write(&short, "too short").expect("a secret file");
    let short_run = run(&["--cluster-secret-file", &short.display().to_string()]);
    let _ = std::fs::remove_file(&short); // best-effort cleanup
    assert!(!short_run.status.success());
    let said = String::from_utf8_lossy(&short_run.stderr);
    assert!(said.contains("at least 16 are needed"), "{said}");
}

#[test]
fn a_closed_timestamp_lag_out_of_range_is_refused_with_its_bounds() {
    for (command, lag) in [("local", "0"), ("serve", "60001")] {
        let out = Command::new(env!("CARGO_BIN_EXE_treesync"))
            .args([command, "--closed-lag-ms", lag])
            .output()
            .expect("run treesync");
        assert!(
            !out.status.success(),
            "{command} took --closed-lag-ms {lag}"
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("must be between 1 and 60000 ms"), "{said}");
    }
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = std::env::temp_dir().join(format!("treesync-shared-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run, if any
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let secret = dir.join("secret");
    std::fs::write(&secret, "sixteen bytes or more of secret").expect("a secret");
    // A port the OS says is free (a fixed formula collided with other tests' ports).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = dir.join("data").display().to_string();
    let peers = format!("1=127.0.0.1:{port}");
    let secret = secret.display().to_string();
    let args = [
        "serve",
        "--id",
        "1",
        "--peers",
        &peers,
        "--cluster-secret-file",
        &secret,
        "--data",
        &data,
        "--client-addr",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--no-pin",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_treesync"))
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the first server");
    let identity = dir.join("data").join("identity");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !identity.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first server never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20)); // polling an external process
    }
    let second = Command::new(env!("CARGO_BIN_EXE_treesync"))
        .args(args)
        .output()
        .expect("run the second server");
    let _ = first.kill(); // the first server runs until killed
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("is in use by another treesync process"),
        "{said}"
    );
}
