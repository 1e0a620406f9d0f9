//! The parallel-commit machines together, under a random scheduler: bank transfers between
//! accounts on different shards, with lost proposals, coordinator crashes, expiry, pushes
//! and recovery racing live coordinators. After every step the checker asserts the spec's
//! safety properties; after a heal phase, that every transaction was decided, every intent
//! resolved, and the money conserved. A lost proposal may also land later, after copies
//! sent since (a ghost: a deadline passed while it waited in a log). Three injected bugs
//! must be caught by name.

use std::collections::{BTreeMap, BTreeSet};

use super::coordinator::{self, Coordinator, TxnReply};
use super::intents::{Check, IntentRefusal, IntentTable};
use super::record::{RecordRefusal, RecordTable, RecoveryStart, Status};
use super::recovery::{self, Recovery};
use super::{TxnId, TxnMeta};
use crate::hlc::Timestamp;
use crate::op::{Expect, Op, Precondition, Prop, Txn};
use crate::rng::SplitMix64;
use crate::tree::Tree;
use crate::value::Value;
use crate::Limits;

const SHARDS: u32 = 3;
const ACCOUNTS: u32 = 6;
const GOLD: i64 = 100;
const TXNS: usize = 12;
const STEPS_MAX: usize = 20_000;

struct Shard {
    tree: Tree,
    intents: IntentTable,
    records: RecordTable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Coord(usize),
    Recov(usize),
    /// A lost coordinator command that still applies, later, answering no one.
    Ghost,
}

#[derive(Clone, Debug)]
enum Pending {
    Coord(coordinator::Command),
    Recov(recovery::Command),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    None,
    RecoverySkipsChecks,
    AckWithoutIntents,
    TrustRefusals,
}

/// A safety or liveness property that failed, by its spec name.
#[derive(Debug, PartialEq, Eq)]
enum Violation {
    AckImpliesCommit(TxnId),
    ImplicitCommitIsFinal(TxnId),
    DecisionsAreFinal(TxnId),
    Atomicity(TxnId),
    MoneyConserved(i64),
    EveryTxnDecided(TxnId),
}

struct World {
    rng: SplitMix64,
    now_ms: u64,
    shards: Vec<Shard>,
    coords: Vec<Option<Coordinator>>,
    metas: Vec<TxnMeta>,
    recoveries: Vec<Recovery>,
    pending: Vec<(Owner, Pending)>,
    waiting: Vec<(usize, u32, TxnId)>,
    acked: BTreeSet<TxnId>,
    decided: BTreeMap<TxnId, Status>,
    /// Shards where each txn's intent was applied committed / dropped aborted.
    applied: BTreeMap<TxnId, BTreeSet<u32>>,
    dropped: BTreeMap<TxnId, BTreeSet<u32>>,
    parts: BTreeMap<TxnId, BTreeSet<u32>>,
    abandoned: BTreeSet<usize>,
    /// A STAGING record aborted while every intent it lists was written.
    implicit_aborted: Option<TxnId>,
    bug: Bug,
}

fn account(i: u32) -> (u32, String) {
    (i % SHARDS, format!("/root/acct{i}"))
}

fn gold_of(tree: &Tree, path: &str) -> i64 {
    let path = crate::NodePath::parse(path, tree.limits()).expect("valid");
    match tree.get(&path).and_then(|n| n.prop("gold").cloned()) {
        Some(Value::Int(g)) => g,
        other => panic!("{path}: {other:?}"),
    }
}

impl World {
    fn new(seed: u64, bug: Bug) -> World {
        let mut shards: Vec<Shard> = (0..SHARDS)
            .map(|_| Shard {
                tree: Tree::new(Limits::default()),
                intents: IntentTable::default(),
                records: RecordTable::default(),
            })
            .collect();
        for i in 0..ACCOUNTS {
            let (shard, path) = account(i);
            let create = Op::Create {
                parent: "/root".into(),
                name: path.trim_start_matches("/root/").into(),
                class: "Node".into(),
                props: vec![Prop::new("gold", Value::Int(GOLD))],
            };
            shards[shard as usize]
                .tree
                .apply_op(&create)
                .expect("fresh");
        }
        World {
            rng: SplitMix64::new(seed),
            now_ms: 1_000,
            shards,
            coords: Vec::new(),
            metas: Vec::new(),
            recoveries: Vec::new(),
            pending: Vec::new(),
            waiting: Vec::new(),
            acked: BTreeSet::new(),
            decided: BTreeMap::new(),
            applied: BTreeMap::new(),
            dropped: BTreeMap::new(),
            parts: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            implicit_aborted: None,
            bug,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn now(&self) -> Timestamp {
        Timestamp::new(self.now_ms, 0)
    }

    /// A transfer between two accounts on different shards, reading their committed gold.
    fn start_transfer(&mut self) {
        let from = self.below(u64::from(ACCOUNTS)) as u32;
        let mut to = self.below(u64::from(ACCOUNTS)) as u32;
        while account(to).0 == account(from).0 {
            to = (to + 1) % ACCOUNTS;
        }
        let amount = 1 + self.below(30) as i64;
        let part = |world: &World, i: u32, delta: i64| {
            let (shard, path) = account(i);
            let gold = gold_of(&world.shards[shard as usize].tree, &path);
            let txn = Txn {
                expect: vec![Precondition {
                    path: path.clone(),
                    expect: Expect::PropEquals {
                        prop: "gold".into(),
                        value: Value::Int(gold),
                    },
                }],
                ops: vec![Op::Set {
                    path,
                    props: vec![Prop::new("gold", Value::Int(gold + delta))],
                }],
                session: None,
            };
            (shard, txn)
        };
        let parts = vec![part(self, from, -amount), part(self, to, amount)];
        self.now_ms += 1;
        let index = self.coords.len();
        let meta = TxnMeta {
            id: TxnId {
                node: 1,
                seq: index as u64,
            },
            ts: self.now(),
            anchor: parts[self.below(2) as usize].0,
        };
        self.parts
            .insert(meta.id, parts.iter().map(|(s, _)| *s).collect());
        let mut out = Vec::new();
        let mut coordinator = Coordinator::start(meta, parts, &mut out);
        match self.bug {
            Bug::AckWithoutIntents => coordinator.inject_ack_without_intents(),
            Bug::TrustRefusals => coordinator.inject_trust_refusals(),
            _ => {}
        }
        self.coords.push(Some(coordinator));
        self.metas.push(meta);
        self.queue_coord(index, out);
    }

    fn queue_coord(&mut self, index: usize, out: Vec<coordinator::Command>) {
        for command in out {
            match command {
                coordinator::Command::Reply(TxnReply::Committed { .. }) => {
                    self.acked.insert(self.metas[index].id);
                }
                coordinator::Command::Reply(_) => {}
                coordinator::Command::Wait { shard, holder } => {
                    self.waiting.push((index, shard, holder.id))
                }
                other => self
                    .pending
                    .push((Owner::Coord(index), Pending::Coord(other))),
            }
        }
    }

    fn queue_recov(&mut self, index: usize, out: Vec<recovery::Command>) {
        for command in out {
            self.pending
                .push((Owner::Recov(index), Pending::Recov(command)));
        }
    }

    /// `Resolve(t, k)` on `shard`, noting whether an intent was there.
    fn resolve_on(&mut self, shard: u32, id: TxnId, commit: bool, now: Timestamp) {
        let s = &mut self.shards[shard as usize];
        let resolved = s.intents.resolve(id, commit, &mut s.tree, now).is_some();
        self.note_resolution(id, shard, commit, resolved);
    }

    fn note_resolution(&mut self, id: TxnId, shard: u32, commit: bool, resolved: bool) {
        if resolved {
            let into = if commit {
                &mut self.applied
            } else {
                &mut self.dropped
            };
            into.entry(id).or_default().insert(shard);
        }
    }

    /// Applies a coordinator command on its shard (as the shard's log would) and returns the
    /// event the coordinator gets back.
    fn apply_coord(&mut self, command: &coordinator::Command) -> coordinator::Event {
        use coordinator::{Command as C, Event as E};
        let now = self.now();
        match command {
            C::WriteIntent { shard, meta, txn } => {
                let s = &mut self.shards[*shard as usize];
                match s.intents.write_intent(*meta, txn, &mut s.tree, now) {
                    Ok(()) => E::IntentWritten { shard: *shard },
                    Err(refusal) => E::IntentRefused {
                        shard: *shard,
                        refusal,
                    },
                }
            }
            C::WriteStaging { meta, in_flight } => {
                let s = &mut self.shards[meta.anchor as usize];
                match s.records.write_staging(*meta, in_flight, now) {
                    Ok(()) => E::StagingWritten,
                    Err(refusal) => E::StagingRefused(refusal),
                }
            }
            C::Heartbeat { meta } => E::HeartbeatDone(
                self.shards[meta.anchor as usize]
                    .records
                    .heartbeat(meta.id, now),
            ),
            C::MakeExplicit { meta } => E::Explicit(
                self.shards[meta.anchor as usize]
                    .records
                    .make_explicit(meta.id),
            ),
            C::Abort { meta } => {
                let staging = self.shards[meta.anchor as usize]
                    .records
                    .records()
                    .any(|r| r.meta.id == meta.id && r.status == Status::Staging);
                let all_written = self.parts[&meta.id]
                    .iter()
                    .all(|s| self.shards[*s as usize].intents.get(&meta.id).is_some());
                if staging && all_written {
                    self.implicit_aborted.get_or_insert(meta.id);
                }
                E::Aborted(self.shards[meta.anchor as usize].records.abort(*meta, now))
            }
            C::QueryIntent { shard, meta } => E::IntentQueried {
                shard: *shard,
                check: self.shards[*shard as usize]
                    .intents
                    .recover_check(*meta, now),
            },
            C::Resolve {
                shard,
                meta,
                commit,
            } => {
                self.resolve_on(*shard, meta.id, *commit, now);
                E::Resolved { shard: *shard }
            }
            C::Forget { meta } => {
                self.shards[meta.anchor as usize].records.forget(meta.id);
                E::Forgotten
            }
            C::Wait { .. } | C::Reply(_) => unreachable!("not proposals"),
        }
    }

    fn apply_recov(&mut self, command: &recovery::Command) -> recovery::Event {
        use recovery::{Command as C, Event as E};
        let now = self.now();
        match command {
            C::RecoverStart { meta } => E::Started(
                self.shards[meta.anchor as usize]
                    .records
                    .recover_start(*meta, now),
            ),
            C::RecoverCheck { shard, meta } => {
                let check = self.shards[*shard as usize]
                    .intents
                    .recover_check(*meta, now);
                E::Checked {
                    shard: *shard,
                    check,
                }
            }
            C::RecoverDecide { meta, all_found } => {
                let records = &mut self.shards[meta.anchor as usize].records;
                match records.recover_decide(meta.id, *all_found) {
                    Ok(status) => E::Decided(status),
                    Err(RecordRefusal::Missing { .. }) => E::Forgotten,
                    Err(other) => panic!("{other}"),
                }
            }
            C::Resolve {
                shard,
                meta,
                commit,
            } => {
                self.resolve_on(*shard, meta.id, *commit, now);
                E::Resolved { shard: *shard }
            }
        }
    }

    /// Delivers pending command `i`; with `lose`, the proposer learns nothing (it may have
    /// applied or not).
    fn deliver(&mut self, i: usize, lose: bool) {
        let (owner, command) = self.pending.swap_remove(i);
        let applies = !lose || self.below(2) == 0;
        match (owner, command) {
            (Owner::Ghost, Pending::Coord(command)) => {
                self.apply_coord(&command);
            }
            (Owner::Coord(c), Pending::Coord(command))
                if lose && !applies && self.below(2) == 0 =>
            {
                // Lost, yet still on its way: it lands whenever it is delivered.
                self.pending
                    .push((Owner::Ghost, Pending::Coord(command.clone())));
                let mut out = Vec::new();
                if let Some(coordinator) = self.coords[c].as_mut() {
                    coordinator.step(coordinator::Event::Lost(command), &mut out);
                }
                self.queue_coord(c, out);
            }
            (Owner::Coord(c), Pending::Coord(command)) => {
                let event = if applies {
                    Some(self.apply_coord(&command))
                } else {
                    None
                };
                let event = match (lose, event) {
                    (false, Some(event)) => event,
                    _ => coordinator::Event::Lost(command),
                };
                let mut out = Vec::new();
                if let Some(coordinator) = self.coords[c].as_mut() {
                    coordinator.step(event, &mut out);
                }
                self.queue_coord(c, out);
            }
            (Owner::Recov(r), Pending::Recov(command)) => {
                // Recovery is retried whole rather than resent: a lost step abandons it and
                // the next push starts over.
                if applies {
                    let event = self.apply_recov(&command);
                    if !lose {
                        let mut out = Vec::new();
                        self.recoveries[r].step(event, &mut out);
                        self.queue_recov(r, out);
                        return;
                    }
                }
                self.abandoned.insert(r);
            }
            _ => unreachable!("commands are queued by their owner"),
        }
    }

    /// A waiter whose holder is gone retries; one whose holder is expired pushes it.
    fn serve_waiters(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        for (c, shard, holder) in waiting {
            let held = self.shards[shard as usize].intents.get(&holder).is_some();
            if !held {
                let mut out = Vec::new();
                if let Some(coordinator) = self.coords[c].as_mut() {
                    coordinator.step(coordinator::Event::Unblocked { shard }, &mut out);
                }
                self.queue_coord(c, out);
            } else {
                if self.below(4) == 0 {
                    self.push(shard, holder);
                }
                self.waiting.push((c, shard, holder));
            }
        }
    }

    /// Starts recovery of `holder`, met on `shard`, unless one is already running.
    fn push(&mut self, shard: u32, holder: TxnId) {
        let running = self.recoveries.iter().enumerate().any(|(i, r)| {
            r.meta().id == holder && r.outcome().is_none() && !self.abandoned.contains(&i)
        });
        if running {
            return;
        }
        let meta = self.metas[holder.seq as usize];
        let mut out = Vec::new();
        let mut recovery = Recovery::start(meta, shard, &mut out);
        if self.bug == Bug::RecoverySkipsChecks {
            recovery.inject_skip_checks();
        }
        self.recoveries.push(recovery);
        let index = self.recoveries.len() - 1;
        self.queue_recov(index, out);
    }

    fn tick(&mut self) {
        self.now_ms += 1 + self.below(150);
        for c in 0..self.coords.len() {
            let mut out = Vec::new();
            if let Some(coordinator) = self.coords[c].as_mut() {
                coordinator.step(
                    coordinator::Event::Tick {
                        now: Timestamp::new(self.now_ms, 0),
                    },
                    &mut out,
                );
            }
            self.queue_coord(c, out);
        }
    }

    fn crash_one(&mut self) {
        let live: Vec<usize> = (0..self.coords.len())
            .filter(|c| self.coords[*c].is_some())
            .collect();
        if !live.is_empty() {
            let c = live[self.below(live.len() as u64) as usize];
            self.coords[c] = None;
            // Proposals already handed to Raft may still commit: they stay pending.
        }
    }

    /// One random step.
    fn step(&mut self, started: &mut usize) {
        match self.below(100) {
            0..=9 if *started < TXNS => {
                self.start_transfer();
                *started += 1;
            }
            10..=14 => self.tick(),
            15 => self.crash_one(),
            16..=19 => self.serve_waiters(),
            _ if !self.pending.is_empty() => {
                let i = self.below(self.pending.len() as u64) as usize;
                let lose = self.below(10) == 0;
                self.deliver(i, lose);
            }
            _ => self.tick(),
        }
    }

    fn check_safety(&mut self) -> Result<(), Violation> {
        if let Some(id) = self.implicit_aborted {
            return Err(Violation::ImplicitCommitIsFinal(id));
        }
        for shard in &self.shards {
            shard.intents.check_invariants();
            for record in shard.records.records() {
                let id = record.meta.id;
                if record.status == Status::Staging {
                    continue;
                }
                if let Some(before) = self.decided.insert(id, record.status) {
                    if before != record.status {
                        return Err(Violation::DecisionsAreFinal(id));
                    }
                }
            }
        }
        for id in &self.acked {
            if self.decided.get(id) == Some(&Status::Aborted) {
                return Err(Violation::AckImpliesCommit(*id));
            }
        }
        for (id, applied) in &self.applied {
            if self.decided.get(id) != Some(&Status::Committed) || self.dropped.contains_key(id) {
                return Err(Violation::Atomicity(*id));
            }
            debug_assert!(applied.is_subset(&self.parts[id]));
        }
        Ok(())
    }

    /// Heal: no more crashes or losses; every live coordinator finishes, every leftover
    /// intent is pushed once its holder expired.
    fn heal(&mut self) -> Result<(), Violation> {
        for _ in 0..STEPS_MAX {
            if !self.pending.is_empty() {
                let i = self.below(self.pending.len() as u64) as usize;
                self.deliver(i, false);
            } else {
                self.now_ms += super::EXPIRY_MS + 1;
                self.serve_waiters();
                let leftovers: Vec<(u32, TxnId)> = self
                    .shards
                    .iter()
                    .enumerate()
                    .flat_map(|(s, shard)| {
                        shard.intents.intents().map(move |i| (s as u32, i.meta.id))
                    })
                    .collect();
                let staging: Vec<TxnId> = self
                    .shards
                    .iter()
                    .flat_map(|s| s.records.records().filter(|r| r.status == Status::Staging))
                    .map(|r| r.meta.id)
                    .collect();
                if leftovers.is_empty() && staging.is_empty() && self.waiting.is_empty() {
                    break;
                }
                for (shard, holder) in leftovers {
                    self.push(shard, holder);
                }
                for id in staging {
                    let anchor = self.metas[id.seq as usize].anchor;
                    self.push(anchor, id);
                }
            }
            self.check_safety()?;
        }
        self.check_end()
    }

    fn check_end(&self) -> Result<(), Violation> {
        for meta in &self.metas {
            let id = meta.id;
            let applied = self.applied.get(&id).cloned().unwrap_or_default();
            if self.acked.contains(&id) && applied != self.parts[&id] {
                return Err(Violation::AckImpliesCommit(id));
            }
            if !applied.is_empty() && applied != self.parts[&id] {
                return Err(Violation::Atomicity(id));
            }
            let anywhere = self.shards.iter().any(|s| s.intents.get(&id).is_some());
            if anywhere {
                eprintln!(
                    "{id}: record {:?}, recoveries {:?}, waiting {:?}, coord {:?}",
                    self.shards[meta.anchor as usize].records.get(&id),
                    self.recoveries
                        .iter()
                        .filter(|r| r.meta().id == id)
                        .map(|r| r.outcome())
                        .collect::<Vec<_>>(),
                    self.waiting,
                    self.coords[id.seq as usize]
                );
                return Err(Violation::EveryTxnDecided(id));
            }
        }
        let total: i64 = (0..ACCOUNTS)
            .map(|i| {
                let (shard, path) = account(i);
                gold_of(&self.shards[shard as usize].tree, &path)
            })
            .sum();
        if total != GOLD * i64::from(ACCOUNTS) {
            return Err(Violation::MoneyConserved(total));
        }
        Ok(())
    }
}

/// One seed: random steps, then heal; the first violation found.
fn run(seed: u64, bug: Bug) -> Result<World, Violation> {
    let mut world = World::new(seed, bug);
    let mut started = 0;
    for _ in 0..STEPS_MAX {
        world.step(&mut started);
        world.check_safety()?;
        if started == TXNS && world.pending.is_empty() && world.below(20) == 0 {
            break;
        }
    }
    world.heal()?;
    Ok(world)
}

#[test]
fn transfers_stay_atomic_and_conserve_money_under_crashes_losses_and_recovery() {
    let (mut committed, mut recovered, mut aborted) = (0, 0, 0);
    for seed in 0..300 {
        let world = run(seed, Bug::None).unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        committed += world.applied.len();
        aborted += world.metas.len() - world.applied.len();
        recovered += world
            .recoveries
            .iter()
            .filter(|r| r.outcome().is_some())
            .count();
    }
    eprintln!("committed {committed}, aborted {aborted}, recoveries {recovered}");
    // The runs exercise every path: commits, aborts and finished recoveries.
    assert!(committed > 300, "{committed} committed");
    assert!(aborted > 30, "{aborted} aborted");
    assert!(recovered > 30, "{recovered} recoveries finished");
}

fn first_violation(bug: Bug) -> Violation {
    (0..3000)
        .find_map(|seed| run(seed, bug).err())
        .unwrap_or_else(|| panic!("{bug:?} went unnoticed in 300 seeds"))
}

#[test]
fn recovery_that_skips_the_in_flight_check_is_caught() {
    let violation = first_violation(Bug::RecoverySkipsChecks);
    eprintln!("skip checks: {violation:?}");
    assert!(
        matches!(
            violation,
            Violation::Atomicity(_) | Violation::MoneyConserved(_)
        ),
        "{violation:?}"
    );
}

#[test]
fn an_ack_before_every_intent_is_written_is_caught() {
    let violation = first_violation(Bug::AckWithoutIntents);
    eprintln!("early ack: {violation:?}");
    assert!(
        matches!(violation, Violation::AckImpliesCommit(_)),
        "{violation:?}"
    );
}

#[test]
fn trusting_a_refusal_while_a_lost_copy_may_land_is_caught() {
    let violation = first_violation(Bug::TrustRefusals);
    eprintln!("trusted refusal: {violation:?}");
    assert!(
        matches!(violation, Violation::ImplicitCommitIsFinal(_)),
        "{violation:?}"
    );
}

#[test]
fn a_prevented_write_stays_missing_and_a_late_intent_is_refused() {
    let mut shard = Shard {
        tree: Tree::new(Limits::default()),
        intents: IntentTable::default(),
        records: RecordTable::default(),
    };
    let meta = TxnMeta {
        id: TxnId { node: 1, seq: 1 },
        ts: Timestamp::new(10, 0),
        anchor: 0,
    };
    let now = Timestamp::new(5_000, 0);
    let start = shard.records.recover_start(meta, now);
    assert_eq!(
        start,
        RecoveryStart::AbortedMissing,
        "no record, expired: aborted"
    );
    let staged = shard.records.write_staging(meta, &[0, 1], now);
    assert!(staged.is_err(), "a STAGING record never replaces an abort");
    assert_eq!(shard.intents.recover_check(meta, now), Check::Prevented);
    let txn = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("x", Value::Int(1))],
    });
    let late = shard.intents.write_intent(meta, &txn, &mut shard.tree, now);
    assert_eq!(late, Err(IntentRefusal::Closed { txn: meta.id }));
}
