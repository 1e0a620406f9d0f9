//! Engine tests: one single-server engine with two shards, driven by hand as a driver
//! would (persist each batch, feed `Persisted` back), asserting what leaves it.

use super::*;
use crate::op::{Op, Prop};
use crate::txn::TxnMeta;
use crate::value::Value;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn config(inject: bool) -> EngineConfig {
    EngineConfig {
        shards: vec![0, 2],
        // Each entry closes right below itself (no lag): a write's timestamp is resolved
        // once the next one applies.
        replica: ReplicaConfig {
            closed_lag_ms: 0,
            ..ReplicaConfig::new(1, vec![1])
        },
        request_ticks_max: 30,
        resolved_every_ticks: 2,
        inject_resolved_before_change: inject,
        inject_resolved_ignores_intents: false,
    }
}

fn set(prop: &str, value: Value) -> Txn {
    Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new(prop, value)],
    })
}

/// A write of about `kib` KiB (strings are limited to 64 KiB each).
fn big(kib: usize) -> Txn {
    let props = (0..kib / 60)
        .map(|i| Prop::new(format!("p{i}"), Value::String("x".repeat(60 * 1024))))
        .collect();
    Txn::single(Op::Set {
        path: "/root".into(),
        props,
    })
}

/// Persists every batch at once until nothing is left; returns all commands seen.
fn settle(engine: &mut Engine, commands: &mut Commands) -> Commands {
    let mut seen = Commands::default();
    for _ in 0..100 {
        seen.replies.append(&mut commands.replies);
        seen.pushes.append(&mut commands.pushes);
        assert!(
            commands.messages.is_empty(),
            "a single-server group sends nothing"
        );
        let Some(batch) = commands.wal.take() else {
            return seen;
        };
        engine.step(
            Input::Persisted {
                batch: batch.number,
            },
            commands,
        );
        engine.check_invariants();
    }
    panic!("did not settle");
}

fn leader_engine(inject: bool) -> Engine {
    let mut engine = Engine::new(config(inject), |_| (MemStorage::new(), None), &logger());
    for _ in 0..40 {
        let mut commands = Commands::default();
        engine.step(Input::Tick, &mut commands);
        settle(&mut engine, &mut commands);
    }
    assert!(
        engine.replicas().all(|(_, r)| r.is_leader()),
        "one server elects itself"
    );
    engine
}

fn propose(engine: &mut Engine, token: Token, shard: u32, txn: Txn) -> Commands {
    let mut commands = Commands::default();
    let hlc = Timestamp::new(1_000 + token, 0);
    engine.step(
        Input::Propose {
            token,
            shard,
            txn,
            hlc,
        },
        &mut commands,
    );
    commands
}

#[test]
fn a_write_is_answered_only_after_its_batch_is_durable() {
    let mut engine = leader_engine(false);
    let mut commands = propose(&mut engine, 7, 2, set("a", Value::Int(1)));
    assert!(
        commands.replies.is_empty(),
        "nothing is answered before the fsync"
    );
    let batch = commands.wal.take().expect("the entry must be persisted");
    assert!(batch.requests.iter().all(|(shard, _)| *shard == 2));
    engine.step(
        Input::Persisted {
            batch: batch.number,
        },
        &mut commands,
    );
    let seen = settle(&mut engine, &mut commands);
    assert!(
        matches!(seen.replies.as_slice(), [(7, Ok(Answer::Written { .. }))]),
        "{:?}",
        seen.replies
    );
}

#[test]
fn one_batch_is_in_flight_and_later_writes_wait_for_the_next() {
    let mut engine = leader_engine(false);
    let mut first = propose(&mut engine, 1, 0, set("a", Value::Int(1)));
    let batch = first.wal.take().expect("a batch");
    let second = propose(&mut engine, 2, 2, set("b", Value::Int(2)));
    assert!(
        second.wal.is_none(),
        "no second batch while one is in flight"
    );
    let mut commands = Commands::default();
    engine.step(
        Input::Persisted {
            batch: batch.number,
        },
        &mut commands,
    );
    let next = commands.wal.as_ref().expect("the waiting write goes next");
    assert_eq!(next.number, batch.number + 1);
    assert!(next.requests.iter().any(|(shard, _)| *shard == 2));
    let seen = settle(&mut engine, &mut commands);
    let tokens: Vec<Token> = seen.replies.iter().map(|(t, _)| *t).collect();
    assert_eq!(tokens, vec![1, 2]);
}

#[test]
fn twenty_four_one_mib_writes_are_all_answered_in_bounded_batches() {
    let mut engine = leader_engine(false);
    let mut commands = Commands::default();
    for token in 0..24 {
        let hlc = Timestamp::new(2_000 + token, 0);
        let input = Input::Propose {
            token,
            shard: (token % 2 * 2) as u32,
            txn: big(900),
            hlc,
        };
        engine.step(input, &mut commands);
    }
    let mut batches = 0;
    let mut replies = Vec::new();
    while let Some(batch) = commands.wal.take() {
        let bytes: usize = batch.requests.iter().map(|(_, r)| persist_bytes(r)).sum();
        assert!(bytes <= WAL_BATCH_BYTES_MAX, "batch of {bytes} bytes");
        batches += 1;
        engine.step(
            Input::Persisted {
                batch: batch.number,
            },
            &mut commands,
        );
        replies.append(&mut commands.replies);
    }
    assert!(
        batches >= 3,
        "about 21 MiB take several batches, took {batches}"
    );
    assert_eq!(replies.len(), 24);
    assert!(replies
        .iter()
        .all(|(_, o)| matches!(o, Ok(Answer::Written { .. }))));
}

#[test]
fn a_write_past_its_deadline_is_answered_unknown_outcome_once() {
    let mut engine = leader_engine(false);
    let mut commands = propose(&mut engine, 5, 0, set("a", Value::Int(1)));
    let batch = commands.wal.take().expect("a batch");
    for _ in 0..31 {
        engine.step(Input::Tick, &mut commands);
        engine.check_invariants();
    }
    assert_eq!(commands.replies, vec![(5, Err(ReplyError::UnknownOutcome))]);
    commands.replies.clear();
    // Its entry still commits later; the late answer is not delivered a second time.
    engine.step(
        Input::Persisted {
            batch: batch.number,
        },
        &mut commands,
    );
    let seen = settle(&mut engine, &mut commands);
    assert!(seen.replies.is_empty(), "{:?}", seen.replies);
}

#[test]
fn a_request_for_a_shard_of_another_core_is_refused() {
    let mut engine = leader_engine(false);
    let commands = propose(&mut engine, 3, 1, set("a", Value::Int(1)));
    assert_eq!(
        commands.replies,
        vec![(3, Err(ReplyError::UnknownShard { shard: 1 }))]
    );
    assert!(commands.wal.is_none());
}

/// Writes with ticks in between and a subscriber; returns the pushes seen.
fn subscribed_run(inject: bool) -> Vec<Push> {
    let mut engine = leader_engine(inject);
    let mut commands = Commands::default();
    let subscribe = Input::Subscribe(Subscription {
        token: 100,
        shard: 0,
        path: "/root".into(),
        from: None,
        sub: 9,
        room: 1000,
    });
    engine.step(subscribe, &mut commands);
    let mut pushes = settle(&mut engine, &mut commands).pushes;
    for token in 0..20 {
        let mut commands = propose(&mut engine, token, 0, set("a", Value::Int(token as i64)));
        let batch = commands.wal.take().expect("a batch");
        engine.step(
            Input::Persisted {
                batch: batch.number,
            },
            &mut commands,
        );
        engine.step(Input::Tick, &mut commands);
        pushes.extend(settle(&mut engine, &mut commands).pushes);
    }
    assert!(pushes.iter().all(|(sub, _)| *sub == 9), "one subscriber");
    pushes.into_iter().map(|(_, push)| push).collect()
}

/// The first change pushed with an HLC at or below an earlier resolved push, if any.
fn change_after_resolved(pushes: &[Push]) -> Option<u64> {
    let mut resolved = 0;
    for push in pushes {
        match push {
            Push::Resolved { hlc } => resolved = resolved.max(*hlc),
            Push::Change { index, hlc, .. } if *hlc <= resolved => return Some(*index),
            _ => {}
        }
    }
    None
}

#[test]
fn resolved_pushes_follow_the_changes_they_cover() {
    let pushes = subscribed_run(false);
    let changes = pushes
        .iter()
        .filter(|p| matches!(p, Push::Change { .. }))
        .count();
    let resolved = pushes
        .iter()
        .filter(|p| matches!(p, Push::Resolved { .. }))
        .count();
    assert_eq!(changes, 20, "every write was pushed");
    assert!(resolved >= 5, "resolved pushes were sent ({resolved})");
    assert_eq!(change_after_resolved(&pushes), None);
    // The must-fail twin (`inject_resolved_before_change`) needs a resolved timestamp that
    // covers a change in the step that applies it, which takes a later entry applied in
    // the same step: the simulator's `--inject resolved-before-change` shows it caught.
}

/// Steps the engine's clock to `wall_ms` (and persists what that proposes); returns the
/// stuck intents it reported.
fn clock_at(engine: &mut Engine, wall_ms: u64) -> Vec<(u32, TxnMeta)> {
    let mut commands = Commands::default();
    let hlc = Timestamp::new(wall_ms, 0);
    engine.step(Input::Clock { hlc }, &mut commands);
    let stuck = std::mem::take(&mut commands.stuck_intents);
    settle(engine, &mut commands);
    stuck
}

#[test]
fn an_intent_that_holds_the_resolved_timestamp_back_too_long_is_reported_once_per_interval() {
    let mut engine = leader_engine(false);
    let written_ms = 2_000;
    let meta = TxnMeta {
        id: crate::txn::TxnId { node: 1, seq: 1 },
        ts: Timestamp::new(written_ms, 0),
        anchor: 2,
    };
    let step = crate::txn::step::Step::WriteIntent {
        meta: meta.into(),
        txn: set("held", Value::Int(1)),
    };
    let mut commands = Commands::default();
    let hlc = Timestamp::new(written_ms, 0);
    engine.step(
        Input::Step {
            token: 1,
            shard: 0,
            step,
            hlc,
        },
        &mut commands,
    );
    let answered = settle(&mut engine, &mut commands).replies;
    assert!(
        matches!(answered.as_slice(), [(1, Ok(_))]),
        "the intent is written: {answered:?}"
    );
    let oldest = engine
        .replica(0)
        .expect("shard 0")
        .txn_tables()
        .intents
        .oldest_ts();
    assert_eq!(oldest, Some(meta.ts), "the intent holds shard 0");

    // Not yet: a transaction may hold its intents this long and still be alive.
    assert!(clock_at(&mut engine, written_ms + STUCK_INTENT_MS - 1).is_empty());
    assert_eq!(
        clock_at(&mut engine, written_ms + STUCK_INTENT_MS),
        vec![(0, meta)]
    );
    // Once per interval, not at every clock step.
    assert!(clock_at(&mut engine, written_ms + STUCK_INTENT_MS + 10).is_empty());
    assert_eq!(
        clock_at(&mut engine, written_ms + 2 * STUCK_INTENT_MS),
        vec![(0, meta)],
        "still held: reported again"
    );
}

/// Quiescence (`replica::quiesce`): an idle leader with everything applied skips its ticks;
/// a write in flight keeps its shard ticking until it is durable and applied, then the
/// shard sleeps again. (Liveness across servers — a dead leader's followers waking — is the
/// simulator's: every seed heals and checks that each shard elects a leader.)
#[test]
fn an_idle_leader_skips_its_ticks_and_a_write_in_flight_keeps_its_shard_awake() {
    let mut engine = leader_engine(false);
    let tick = |engine: &mut Engine| {
        let mut commands = Commands::default();
        engine.step(Input::Tick, &mut commands);
        commands
    };
    let settled_tick = |engine: &mut Engine| {
        let mut commands = tick(engine);
        settle(engine, &mut commands);
    };
    let before = engine.quiet_ticks();
    for _ in 0..5 {
        settled_tick(&mut engine);
    }
    assert_eq!(
        engine.quiet_ticks(),
        before + 10,
        "both idle shards slept 5 ticks"
    );
    let mut commands = propose(&mut engine, 1, 0, set("a", Value::Int(1)));
    let before = engine.quiet_ticks();
    let mut during = tick(&mut engine);
    assert_eq!(
        engine.quiet_ticks(),
        before + 1,
        "only shard 2 slept while shard 0's write was in flight"
    );
    commands.replies.append(&mut during.replies);
    commands.wal = commands.wal.take().or(during.wal.take());
    let seen = settle(&mut engine, &mut commands);
    assert_eq!(seen.replies.len(), 1, "the write was answered");
    let before = engine.quiet_ticks();
    settled_tick(&mut engine);
    assert_eq!(
        engine.quiet_ticks(),
        before + 2,
        "and then both slept again"
    );
}
