//! `treesync check` on small history files: the verdict, the exit code, the timeline page
//! and the line number of a malformed event.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("treesync-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // Left over from an earlier run, if any.
    std::fs::create_dir_all(&dir).expect("create the temp dir");
    dir
}

fn check(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_treesync"))
        .arg("check")
        .args(args)
        .output()
        .expect("run treesync check");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &std::path::Path, name: &str, lines: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the history");
    path.to_str().expect("UTF-8 temp path").to_string()
}

const WRITE_1: &str =
    r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"write","key":4,"value":1}"#;
const WRITE_1_OK: &str =
    r#"{"index":1,"time":10,"process":1,"type":"ok","f":"write","key":4,"value":1}"#;
const WRITE_2: &str =
    r#"{"index":2,"time":20,"process":1,"type":"invoke","f":"write","key":4,"value":2}"#;
const WRITE_2_OK: &str =
    r#"{"index":3,"time":30,"process":1,"type":"ok","f":"write","key":4,"value":2}"#;
const READ: &str =
    r#"{"index":4,"time":40,"process":2,"type":"invoke","f":"read","key":4,"value":null}"#;

#[test]
fn a_valid_history_exits_0() {
    let dir = temp_dir("valid");
    let read_2 =
        r#"{"index":5,"time":50,"process":2,"type":"ok","f":"read","key":4,"value":2,"node":1}"#;
    let cas =
        r#"{"index":6,"time":60,"process":3,"type":"invoke","f":"cas","key":4,"value":[2,3]}"#;
    let cas_info = concat!(
        r#"{"index":7,"time":90,"process":3,"type":"info","f":"cas","key":4,"value":[2,3],"#,
        r#""error":"timeout"}"#
    );
    let add = r#"{"index":8,"time":95,"process":4,"type":"invoke","f":"add","key":9,"value":7}"#;
    let add_ok = r#"{"index":9,"time":99,"process":4,"type":"ok","f":"add","key":9,"value":7}"#;
    let lines = [
        WRITE_1, WRITE_1_OK, WRITE_2, WRITE_2_OK, READ, read_2, cas, cas_info, add, add_ok,
    ];
    let history = write(&dir, "valid.jsonl", &lines);
    let (code, stdout, stderr) = check(&[&history]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("\nVALID"), "{stdout}");
    assert!(
        stdout.contains("registers: 1 key, 4 ops (1 unknown outcome, 0 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("sets: 1 key, 1 op ("), "{stdout}");
    assert!(
        !dir.join("valid.jsonl.html").exists(),
        "no timeline for a valid history"
    );
}

#[test]
fn a_stale_read_exits_1_with_a_timeline_naming_the_op() {
    let dir = temp_dir("stale");
    let read_1 = r#"{"index":5,"time":50,"process":2,"type":"ok","f":"read","key":4,"value":1}"#;
    let lines = [WRITE_1, WRITE_1_OK, WRITE_2, WRITE_2_OK, READ, read_1];
    let history = write(&dir, "stale.jsonl", &lines);
    let (code, stdout, stderr) = check(&[&history]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("INVALID: register key 4 is not linearizable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 5: client 2 read 1 [invoke 40, complete 50]"),
        "{stdout}"
    );
    let html_path = dir.join("stale.jsonl.html");
    assert!(
        stdout.contains(&format!("timeline: {}", html_path.display())),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&html_path).expect("the timeline was written");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("line 5: client 2 read 1"), "{html}");
    assert!(html.contains("class=\"op read blocked\""), "{html}");

    // --html puts it elsewhere.
    let elsewhere = dir.join("elsewhere.html");
    let (code, _, _) = check(&[&history, "--html", elsewhere.to_str().expect("UTF-8")]);
    assert_eq!(code, 1);
    assert!(elsewhere.exists());
}

#[test]
fn a_malformed_line_exits_2_naming_the_line() {
    let dir = temp_dir("malformed");
    let history = write(
        &dir,
        "bad.jsonl",
        &[WRITE_1, WRITE_1_OK, "{\"time\": 20, oops"],
    );
    let (code, stdout, stderr) = check(&[&history]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("bad.jsonl: line 3: malformed event"),
        "{stderr}"
    );

    let history = write(&dir, "orphan.jsonl", &[WRITE_1_OK]);
    let (code, _, stderr) = check(&[&history]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("line 1: ok for process 1, which has no outstanding invoke"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&[dir.join("missing.jsonl").to_str().expect("UTF-8")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
    let (code, _, stderr) = check(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("usage: treesync check HISTORY"), "{stderr}");
}

#[test]
fn an_exceeded_search_bound_is_unknown_and_exits_1() {
    let dir = temp_dir("unknown");
    // Twelve overlapping writes, then two reads that no write separates see different values.
    let mut lines: Vec<String> = (1..=12)
        .map(|v| {
            format!(r#"{{"time":0,"process":{v},"type":"invoke","f":"write","key":1,"value":{v}}}"#)
        })
        .collect();
    lines.extend((1..=12).map(|v| {
        format!(r#"{{"time":100,"process":{v},"type":"ok","f":"write","key":1,"value":{v}}}"#)
    }));
    for (time, value) in [(200, 1), (300, 2)] {
        let (invoke, ok) = (time, time + 10);
        lines.push(format!(
            r#"{{"time":{invoke},"process":99,"type":"invoke","f":"read","key":1}}"#
        ));
        lines.push(format!(
            r#"{{"time":{ok},"process":99,"type":"ok","f":"read","key":1,"value":{value}}}"#
        ));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let history = write(&dir, "hard.jsonl", &lines);
    let (code, stdout, stderr) = check(&[&history, "--states-max", "100"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("UNKNOWN: register key 1: search bound exceeded"),
        "{stdout}"
    );
    assert!(!stdout.contains("VALID"), "{stdout}");
    let (code, stdout, _) = check(&[&history]);
    assert_eq!(code, 1);
    assert!(stdout.contains("INVALID: register key 1"), "{stdout}");
}

#[test]
fn a_generated_demo_history_is_valid() {
    let dir = temp_dir("demo");
    let out = dir.join("demo.jsonl");
    let out = out.to_str().expect("UTF-8");
    let (code, stdout, stderr) = check(&["--generate-demo", "3000", out, "--keys", "4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("3000 ops on 4 keys"), "{stdout}");
    let (code, stdout, stderr) = check(&[out]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("registers: 4 keys, 3000 ops"), "{stdout}");
}
