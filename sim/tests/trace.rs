//! Trace recording (the TLC side is `specs/trace.py` in the test command): what a trace run
//! records, and that the recorder keeps happens-before.

use treesync_sim::trace::TraceRecorder;
use treesync_sim::{run_seed, Bug, SimOptions};

fn traced(seed: u64, inject: Option<Bug>) -> TraceRecorder {
    let report = run_seed(&SimOptions {
        steps: 300,
        trace: true,
        inject,
        ..SimOptions::new(seed)
    });
    if inject.is_none() {
        assert!(report.violation.is_none(), "{report}");
    }
    let trace = report.trace.expect("trace runs return their trace");
    assert_eq!(trace.unsupported, None);
    trace
}

const KINDS: [&str; 10] = [
    "Timeout",
    "HandleRVReq",
    "HandleRVResp",
    "BecomeLeader",
    "ClientRequest",
    "AppendEntries",
    "HandleAEReq",
    "HandleAEResp",
    "AdvanceCommitIndex",
    "Restart",
];

#[test]
fn trace_runs_record_elections_replication_and_restarts() {
    let complete = (1..=20).find(|seed| {
        let trace = traced(*seed, None);
        assert_eq!(
            trace.votes_lost, 0,
            "seed {seed}: a clean run loses no vote"
        );
        KINDS
            .iter()
            .all(|kind| trace.events.iter().any(|e| e.kind == *kind))
    });
    assert!(
        complete.is_some(),
        "no seed of 1..=20 recorded every kind of event"
    );
}

#[test]
fn every_received_append_was_recorded_sent_before() {
    let trace = traced(6, None);
    for (i, e) in trace.events.iter().enumerate() {
        if e.kind != "HandleAEReq" {
            continue;
        }
        let sent = trace.events[..i].iter().any(|s| {
            s.kind == "AppendEntries"
                && (s.node, s.peer, s.term, s.index, s.n) == (e.peer, e.node, e.term, e.index, e.n)
        });
        assert!(sent, "event {i} receives an append never sent: {e:?}");
    }
}

#[test]
fn a_forgotten_vote_shows_in_the_trace() {
    let trace = (1..=30)
        .map(|seed| traced(seed, Some(Bug::ForgetVote)))
        .find(|trace| trace.votes_lost > 0)
        .expect("some seed of 1..=30 restarted a node that had voted");
    let tla = trace.to_tla("test");
    assert!(tla.starts_with("---- MODULE RaftTrace ----"));
    assert_eq!(
        tla.matches("[kind |->").count(),
        trace.events.len(),
        "one record per event"
    );
}

#[test]
fn normal_runs_record_nothing() {
    assert!(run_seed(&SimOptions::new(3)).trace.is_none());
}
