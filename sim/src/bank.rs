//! A bank over many shards, run through each server's transaction host: accounts are
//! entities `/root/Bank/a<i>` (on different entity shards), transfers between accounts of
//! different shards are cross-shard transactions with preconditions on both balances. The
//! bank's invariant: the total never changes, and every transfer a host acknowledged is
//! committed.

use std::collections::BTreeMap;

use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::op::{Expect, Op, Precondition, Prop, Txn};
use treesync_core::shard::ShardMap;
use treesync_core::{Limits, NodePath, Value};

use crate::rng::Rng;

pub const ACCOUNTS: u32 = 6;
pub const GOLD: i64 = 100;
pub const WORLD: &str = "/root/Bank";
/// The second world entities move to and from.
pub const VAULT: &str = "/root/Vault";

/// Account names: with `distinct`, chosen so that every account is on its own entity
/// shard (the transaction traces use shards as the spec's keys, which is exact only then).
fn account_names(map: &ShardMap, distinct: bool) -> Vec<String> {
    let shard = |p: &str| map.shard_of(&NodePath::parse(p, &Limits::default()).expect("valid"));
    let mut names: Vec<String> = Vec::new();
    for j in 0..10_000 {
        if names.len() == ACCOUNTS as usize {
            break;
        }
        let path = format!("{WORLD}/a{j}");
        if !distinct || names.iter().all(|n| shard(n) != shard(&path)) {
            names.push(path);
        }
    }
    assert_eq!(
        names.len(),
        ACCOUNTS as usize,
        "enough entity shards for the accounts"
    );
    names
}

/// What one server's bank client does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    /// Create the world, then account `i` (setup, host of server 1 only).
    Setup(Option<u32>),
    Read(u32),
    /// `before`: the balances the transfer expects (its preconditions).
    Transfer {
        from: u32,
        to: u32,
        amount: i64,
        before: (i64, i64),
    },
    /// Entity churn across shards: create `t<n>` in the bank with a child, move it (whole)
    /// to the vault, or delete it there.
    Churn {
        n: u32,
        stage: Churn,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Churn {
    Create,
    Move,
    Delete,
}

/// Every bank client's view: balances it believes (from its own committed transfers and
/// reads; `None` after an unknown outcome), and counts for the report.
pub struct Bank {
    map: ShardMap,
    accounts: Vec<String>,
    /// Creates, moves and deletes of entities besides the transfers (off in trace runs).
    churn_on: bool,
    believed: BTreeMap<u32, Option<i64>>,
    setup: Option<u32>,
    /// The server whose client runs the current setup job (one at a time).
    setup_by: Option<u64>,
    pub committed: u64,
    pub aborted: u64,
    pub unknown: u64,
    /// Churn steps (creates, moves, deletes of entities) acknowledged.
    pub churn_ok: u64,
    /// Churn entities and the stage each will take next (`None`: done with).
    churn: BTreeMap<u32, Option<Churn>>,
    churn_busy: BTreeMap<u32, bool>,
    /// Churn entities whose delete was acknowledged.
    deleted: std::collections::BTreeSet<u32>,
}

impl Bank {
    /// `trace`: accounts on distinct shards and no churn (see `account_names`).
    pub fn new(shards: u32, trace: bool) -> Bank {
        let map = ShardMap::new(shards, treesync_core::shard::SHARD_DEPTH_DEFAULT).expect("map");
        let distinct = trace && shards > ACCOUNTS;
        Bank {
            accounts: account_names(&map, distinct),
            churn_on: !trace,
            map,
            believed: (0..ACCOUNTS).map(|i| (i, Some(GOLD))).collect(),
            setup: Some(0),
            setup_by: None,
            committed: 0,
            aborted: 0,
            unknown: 0,
            churn_ok: 0,
            churn: BTreeMap::new(),
            churn_busy: BTreeMap::new(),
            deleted: std::collections::BTreeSet::new(),
        }
    }

    /// A churn job: the next stage of an idle churn entity, or a new one.
    fn churn_job(&mut self, rng: &mut Rng) -> Option<Job> {
        let idle: Vec<u32> = self
            .churn
            .iter()
            .filter(|(n, stage)| {
                stage.is_some() && !self.churn_busy.get(*n).copied().unwrap_or(false)
            })
            .map(|(n, _)| *n)
            .collect();
        let n = match idle.is_empty() || rng.range(0, 2) == 0 {
            true => {
                let n = self.churn.len() as u32;
                self.churn.insert(n, Some(Churn::Create));
                n
            }
            false => idle[rng.range(0, idle.len() as u64 - 1) as usize],
        };
        let stage = self.churn[&n]?;
        self.churn_busy.insert(n, true);
        Some(Job::Churn { n, stage })
    }

    /// Every account's path.
    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// Account `i`'s path.
    pub fn account(&self, i: u32) -> String {
        self.accounts[i as usize].clone()
    }

    pub fn shard_of(&self, path: &str) -> u32 {
        self.map
            .shard_of(&NodePath::parse(path, &Limits::default()).expect("valid"))
            .0
    }

    pub fn ready(&self) -> bool {
        self.setup.is_none()
    }

    /// The next job for the client of server `server` (setup steps one at a time, by
    /// whichever client asks first).
    pub fn next(&mut self, server: u64, rng: &mut Rng) -> Option<Job> {
        if let Some(step) = self.setup {
            if self.setup_by.is_some() {
                return None;
            }
            self.setup_by = Some(server);
            return Some(Job::Setup(step.checked_sub(1)));
        }
        if self.churn_on && rng.range(0, 4) == 0 {
            return self.churn_job(rng);
        }
        let from = rng.range(0, u64::from(ACCOUNTS) - 1) as u32;
        let to = (0..ACCOUNTS)
            .map(|d| (from + 1 + d) % ACCOUNTS)
            .find(|to| self.shard_of(&self.account(*to)) != self.shard_of(&self.account(from)))?;
        for i in [from, to] {
            if self.believed[&i].is_none() {
                return Some(Job::Read(i));
            }
        }
        let amount = rng.range(1, 20) as i64;
        let before = (self.believed[&from]?, self.believed[&to]?);
        Some(Job::Transfer {
            from,
            to,
            amount,
            before,
        })
    }

    pub fn txn(&self, job: &Job) -> Txn {
        let create = |parent: &str, name: &str| Op::Create {
            parent: parent.into(),
            name: name.into(),
            class: "Node".into(),
            props: vec![],
        };
        match job {
            Job::Setup(None) => Txn {
                ops: vec![create("/root", "Bank"), create("/root", "Vault")],
                ..Txn::default()
            },
            Job::Churn {
                n,
                stage: Churn::Create,
            } => Txn {
                ops: vec![
                    create(WORLD, &format!("t{n}")),
                    create(&format!("{WORLD}/t{n}"), "c"),
                ],
                ..Txn::default()
            },
            Job::Churn {
                n,
                stage: Churn::Move,
            } => Txn::single(Op::Move {
                path: format!("{WORLD}/t{n}"),
                new_parent: VAULT.into(),
                index: None,
            }),
            Job::Churn {
                n,
                stage: Churn::Delete,
            } => Txn::single(Op::Delete {
                path: format!("{VAULT}/t{n}"),
            }),
            Job::Setup(Some(i)) => Txn::single(Op::Create {
                parent: WORLD.into(),
                name: self
                    .account(*i)
                    .rsplit('/')
                    .next()
                    .expect("named")
                    .to_owned(),
                class: "Account".into(),
                props: vec![Prop::new("gold", Value::Int(GOLD))],
            }),
            Job::Transfer {
                from,
                to,
                amount,
                before: (a, b),
            } => {
                let (a, b) = (*a, *b);
                let expect = |i: u32, gold: i64| Precondition {
                    path: self.account(i),
                    expect: Expect::PropEquals {
                        prop: "gold".into(),
                        value: Value::Int(gold),
                    },
                };
                let set = |i: u32, gold: i64| Op::Set {
                    path: self.account(i),
                    props: vec![Prop::new("gold", Value::Int(gold))],
                };
                Txn {
                    expect: vec![expect(*from, a), expect(*to, b)],
                    ops: vec![set(*from, a - amount), set(*to, b + amount)],
                    session: None,
                }
            }
            Job::Read(_) => unreachable!("a read is not a transaction"),
        }
    }

    /// Where each churn entity is for sure (its last stage was acknowledged): `Some(world)`,
    /// or `None` for one whose delete was acknowledged. Entities of unknown state are left
    /// out.
    pub fn churned(&self) -> Vec<(String, Option<&'static str>)> {
        let mut known = Vec::new();
        for (n, next) in &self.churn {
            let name = format!("t{n}");
            match next {
                Some(Churn::Move) if !self.churn_busy[n] => known.push((name, Some(WORLD))),
                Some(Churn::Delete) if !self.churn_busy[n] => known.push((name, Some(VAULT))),
                None if self.deleted.contains(n) => known.push((name, None)),
                _ => {}
            }
        }
        known
    }

    /// A job's outcome.
    pub fn done(&mut self, job: &Job, outcome: &Outcome) {
        let ok = matches!(outcome, Ok(Answer::Written { .. }));
        // An earlier attempt whose outcome was unknown may have made it.
        let taken = matches!(outcome, Err(e @ ReplyError::Rejected(_)) if e.code() == "name_taken");
        match job {
            Job::Setup(step) if ok || taken => {
                self.setup_by = None;
                let next = step.map_or(0, |i| i + 1) + 1;
                self.setup = (next <= ACCOUNTS).then_some(next);
            }
            Job::Setup(_) => self.setup_by = None,
            Job::Read(i) => {
                if let Ok(Answer::Value(Some(Value::Int(gold)))) = outcome {
                    self.believed.insert(*i, Some(*gold));
                }
            }
            Job::Transfer {
                from,
                to,
                amount,
                before: (a, b),
            } if ok => {
                self.committed += 1;
                self.believed.insert(*from, Some(a - amount));
                self.believed.insert(*to, Some(b + amount));
            }
            Job::Churn { n, stage } => {
                self.churn_busy.insert(*n, false);
                self.churn_ok += u64::from(ok);
                let next = match (ok, stage) {
                    (true, Churn::Create) => Some(Churn::Move),
                    (true, Churn::Move) => Some(Churn::Delete),
                    (true, Churn::Delete) => {
                        self.deleted.insert(*n);
                        None
                    }
                    // Refused (nothing changed): try the same stage again later.
                    (false, _) if !matches!(outcome, Err(e) if e.may_have_applied()) => {
                        Some(*stage)
                    }
                    // Unknown: the entity's state is not known any more; leave it.
                    (false, _) => None,
                };
                self.churn.insert(*n, next);
            }
            Job::Transfer { from, to, .. } => {
                match outcome {
                    Err(e) if e.may_have_applied() => self.unknown += 1,
                    _ => self.aborted += 1,
                }
                self.believed.insert(*from, None);
                self.believed.insert(*to, None);
            }
        }
    }
}
