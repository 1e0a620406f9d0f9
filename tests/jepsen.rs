//! `treesync jepsen` on real processes, one short run per nemesis: every verdict must be
//! VALID, and the deliberately broken server (reads without ReadIndex) must be INVALID.
//! Each run leaves its history, logs and verdict under the target dir's `jepsen-tests/`.

use std::path::PathBuf;
use std::process::Command;

/// Seconds of faults per run (the runner adds setup, a recovery window and final reads).
const SECONDS: &str = "10";

fn results(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("jepsen-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `treesync jepsen` with `args`; returns (exit code, stdout).
fn jepsen(name: &str, args: &[&str]) -> (i32, String) {
    let out = results(name);
    let output = Command::new(env!("CARGO_BIN_EXE_treesync"))
        .arg("jepsen")
        .args(["--seconds", SECONDS, "--out"])
        .arg(&out)
        .args(args)
        .output()
        .expect("run treesync jepsen");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().unwrap_or(-1);
    println!("{stdout}\n{stderr}\n(results in {})", out.display());
    (code, stdout)
}

/// The run's summary line for `nemesis` (`jepsen nemesis NAME · N ops … · VERDICT`).
fn summary<'a>(stdout: &'a str, nemesis: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("jepsen nemesis {nemesis} ")))
        .unwrap_or_else(|| panic!("no summary for {nemesis} in:\n{stdout}"))
}

fn valid_under(nemesis: &str, extra: &[&str]) {
    let mut args = vec!["--nemesis", nemesis];
    args.extend_from_slice(extra);
    let name = format!("{nemesis}{}", extra.join(""));
    let (code, stdout) = jepsen(&name, &args);
    let line = summary(&stdout, nemesis);
    assert!(
        line.ends_with("VALID") && !line.contains("INVALID"),
        "{line}"
    );
    assert_eq!(code, 0, "{stdout}");
    if nemesis != "none" {
        assert!(
            !line.contains(" 0 faults"),
            "the nemesis injected nothing: {line}"
        );
    }
}

#[test]
fn no_faults() {
    valid_under("none", &[]);
}

#[test]
fn kill_one() {
    valid_under("kill-one", &[]);
}

#[test]
fn kill_majority() {
    valid_under("kill-majority", &[]);
}

/// Cross-shard transfers while servers are killed (their coordinators die mid-commit):
/// the total holds, every acknowledged transfer's receipt is there, every account whole.
#[test]
fn kill_one_with_the_bank_workload() {
    valid_under("kill-one", &["--workload", "bank"]);
}

#[test]
fn kill_all_with_the_bank_workload() {
    valid_under("kill-all", &["--workload", "bank"]);
}

#[test]
fn kill_all_with_the_set_workload() {
    valid_under("kill-all", &["--workload", "set"]);
}

#[test]
fn pause() {
    valid_under("pause", &[]);
}

#[test]
fn partition() {
    valid_under("partition", &[]);
}

#[test]
fn partition_of_five_servers() {
    valid_under("partition", &["--servers", "5", "--clients", "8"]);
}

#[test]
fn clock_offsets() {
    valid_under("clock", &[]);
}

#[test]
fn disk_faults() {
    valid_under("disk", &[]);
}

#[test]
fn reads_without_read_index_are_caught() {
    let (code, stdout) = jepsen("broken", &["--nemesis", "partition", "--broken-reads"]);
    let line = summary(&stdout, "partition");
    assert!(line.contains("INVALID"), "{line}");
    assert_eq!(code, 1, "{stdout}");
}
