//! The simulator in the test command: clean seeds pass, and each injected bug is caught by
//! some seed (so the checks can fail).

use treesync_sim::{run_seed, run_seeds, Bug, SimOptions};

fn failures(first: u64, seeds: u64, inject: Option<Bug>) -> Vec<String> {
    let template = SimOptions {
        inject,
        ..SimOptions::new(0)
    };
    run_seeds(first, seeds, &template)
        .into_iter()
        .filter(|r| r.violation.is_some())
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn clean_seeds_pass() {
    let failed = failures(1, 40, None);
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_seed_replays_exactly() {
    let a = run_seed(&SimOptions::new(7));
    let b = run_seed(&SimOptions::new(7));
    assert_eq!(
        (a.writes_acked, a.reads_ok, a.crashes),
        (b.writes_acked, b.reads_ok, b.crashes)
    );
    assert!(
        a.writes_acked > 20 && a.reads_ok > 10,
        "the run did real work: {a}"
    );
}

#[test]
fn lagging_replicas_are_caught_up_by_snapshots() {
    let template = SimOptions::new(0);
    let installed: u64 = run_seeds(1, 20, &template)
        .iter()
        .map(|r| r.snapshots_installed)
        .sum();
    assert!(installed > 0, "no seed exercised snapshot transfer");
}

#[test]
fn stale_reads_are_caught() {
    let failed = failures(1, 40, Some(Bug::StaleRead));
    assert!(
        failed.iter().any(|f| f.contains("linearizability")),
        "no seed caught stale reads: {failed:?}"
    );
}

#[test]
fn ack_before_fsync_is_caught() {
    let failed = failures(1, 100, Some(Bug::AckBeforeFsync));
    assert!(
        !failed.is_empty(),
        "no seed caught acknowledging before fsync"
    );
}
