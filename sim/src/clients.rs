//! Simulated clients: what they ask (every tree op; registers for the linearizability
//! check), where (a leader hint per shard) and what they saw (the history, invoke and
//! complete times only).

use std::collections::BTreeMap;

use treesync_core::engine::{Answer, Outcome};
use treesync_core::op::{Op, Prop, Txn};
use treesync_core::replica::{ReadTarget, ReplyError};
use treesync_core::Value;

use crate::linearizability::{OpKind, Operation};
use crate::rng::Rng;

/// Registers per shard: properties `k0`, `k1`, … of `/root`.
pub const KEYS: u32 = 3;
/// Structural nodes per shard: `/root/n0` … (created, renamed, moved, deleted at random).
const NODES: u64 = 6;
pub const CLIENTS: usize = 12;
/// Time units a client waits for an answer before calling the outcome unknown.
pub const CLIENT_TIMEOUT: u64 = 80;

/// One request in the making.
pub struct Request {
    pub shard: u32,
    pub server: u64,
    pub what: What,
}

pub enum What {
    Write(Txn),
    Read { path: String, target: ReadTarget },
}

struct Pending {
    token: u64,
    /// Index in `Clients::history` (register ops only).
    history: Option<usize>,
    shard: u32,
    deadline: u64,
}

#[derive(Default)]
struct Client {
    pending: Option<Pending>,
    hints: BTreeMap<u32, u64>,
}

/// Every client and the history they observed.
pub struct Clients {
    clients: Vec<Client>,
    pub history: Vec<Operation>,
    /// Register writes that certainly did not happen (refused): left out of the check.
    failed: Vec<bool>,
    servers: u64,
    pub writes_acked: usize,
    pub reads_ok: usize,
}

fn register(key: u32) -> String {
    format!("k{key}")
}

fn node(rng: &mut Rng) -> String {
    format!("n{}", rng.range(0, NODES - 1))
}

/// A structural op on `/root/n*`: many are refused by the tree (that is part of the test).
fn structural(rng: &mut Rng, value: i64) -> Op {
    let (a, b) = (node(rng), node(rng));
    match rng.range(0, 5) {
        0 => Op::Create {
            parent: "/root".into(),
            name: a,
            class: "Node2D".into(),
            props: vec![Prop::new("hp", Value::Int(value))],
        },
        1 => Op::Delete {
            path: format!("/root/{a}"),
        },
        2 => Op::Rename {
            path: format!("/root/{a}"),
            new_name: b,
        },
        3 => Op::Move {
            path: format!("/root/{a}"),
            new_parent: format!("/root/{b}"),
            index: None,
        },
        4 => Op::Emit {
            path: "/root".into(),
            signal: "hit".into(),
            args: vec![Value::Int(value)],
        },
        _ => Op::Set {
            path: format!("/root/{a}"),
            props: vec![Prop::new("hp", Value::Int(value))],
        },
    }
}

impl Clients {
    pub fn new(servers: u64, rng: &mut Rng, shards: u32) -> Clients {
        let clients = (0..CLIENTS)
            .map(|_| Client {
                pending: None,
                hints: (0..shards).map(|s| (s, rng.range(1, servers))).collect(),
            })
            .collect();
        Clients {
            clients,
            history: Vec::new(),
            failed: Vec::new(),
            servers,
            writes_acked: 0,
            reads_ok: 0,
        }
    }

    /// Expires requests past their client-side timeout (their outcome stays unknown).
    pub fn expire(&mut self, now: u64, rng: &mut Rng) {
        let servers = self.servers;
        for client in &mut self.clients {
            if client.pending.as_ref().is_some_and(|p| now >= p.deadline) {
                let p = client.pending.take().expect("checked");
                client.hints.insert(p.shard, rng.range(1, servers));
            }
        }
    }

    pub fn idle(&self) -> Option<usize> {
        self.clients.iter().position(|c| c.pending.is_none())
    }

    pub fn all_idle(&self) -> bool {
        self.clients.iter().all(|c| c.pending.is_none())
    }

    /// A random request from client `c` (if idle), registered under `token`.
    pub fn issue(&mut self, c: usize, token: u64, now: u64, rng: &mut Rng, shards: u32) -> Request {
        let shard = rng.range(0, u64::from(shards) - 1) as u32;
        let key = rng.range(0, u64::from(KEYS) - 1) as u32;
        let value = token as i64;
        let (what, kind) = match rng.range(0, 9) {
            0..=3 => {
                let txn = Txn::single(Op::Set {
                    path: "/root".into(),
                    props: vec![Prop::new(register(key), Value::Int(value))],
                });
                (What::Write(txn), Some(OpKind::Write { value }))
            }
            4..=6 => (self.read_of(key), Some(OpKind::Read { value: None })),
            _ => (What::Write(Txn::single(structural(rng, value))), None),
        };
        self.start(c, token, now, shard, key, kind, what)
    }

    /// A linearizable read of one register from client `c`, sent to `server`.
    pub fn final_read(
        &mut self,
        c: usize,
        token: u64,
        now: u64,
        shard: u32,
        key: u32,
        server: u64,
    ) -> Request {
        self.clients[c].hints.insert(shard, server);
        let what = self.read_of(key);
        self.start(
            c,
            token,
            now,
            shard,
            key,
            Some(OpKind::Read { value: None }),
            what,
        )
    }

    fn read_of(&self, key: u32) -> What {
        What::Read {
            path: "/root".into(),
            target: ReadTarget::Prop(register(key)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        c: usize,
        token: u64,
        now: u64,
        shard: u32,
        key: u32,
        kind: Option<OpKind>,
        what: What,
    ) -> Request {
        let history = kind.map(|kind| {
            self.history.push(Operation {
                key: u64::from(shard * KEYS + key),
                kind,
                invoke: now,
                complete: None,
                client: c as u64,
            });
            self.failed.push(false);
            self.history.len() - 1
        });
        let client = &mut self.clients[c];
        assert!(client.pending.is_none(), "one request at a time per client");
        client.pending = Some(Pending {
            token,
            history,
            shard,
            deadline: now + CLIENT_TIMEOUT,
        });
        Request {
            shard,
            server: client.hints[&shard],
            what,
        }
    }

    /// An answer for `token` (ignored if its client gave up on it). Returns the acknowledged
    /// (shard, index, term) of a write, for the durability check.
    pub fn answer(
        &mut self,
        token: u64,
        outcome: &Outcome,
        now: u64,
        rng: &mut Rng,
    ) -> Option<(u32, u64, u64)> {
        let c = self
            .clients
            .iter()
            .position(|c| c.pending.as_ref().is_some_and(|p| p.token == token))?;
        let pending = self.clients[c].pending.take().expect("found above");
        let mut acked = None;
        match outcome {
            Ok(Answer::Written { index, term, .. }) => {
                self.writes_acked += 1;
                acked = Some((pending.shard, *index, *term));
                self.complete(pending.history, now, None);
            }
            Ok(Answer::Value(value)) => {
                self.reads_ok += 1;
                let value = match value {
                    Some(Value::Int(v)) => Some(*v),
                    _ => None,
                };
                self.complete(pending.history, now, Some(value));
            }
            Ok(Answer::Subscribed) => unreachable!("clients do not subscribe"),
            Ok(Answer::Step(_)) => unreachable!("clients propose no parallel-commit steps"),
            Err(error) => {
                let hint = match error {
                    ReplyError::NotLeader { leader: Some(l) } => *l,
                    _ => rng.range(1, self.servers),
                };
                self.clients[c].hints.insert(pending.shard, hint);
                // Unknown outcomes stay in the history with no completion; a refused write
                // or read certainly did nothing.
                if !matches!(error, ReplyError::UnknownOutcome) {
                    if let Some(h) = pending.history {
                        self.failed[h] = true;
                    }
                }
            }
        }
        acked
    }

    fn complete(&mut self, history: Option<usize>, now: u64, read: Option<Option<i64>>) {
        let Some(h) = history else { return };
        let op = &mut self.history[h];
        op.complete = Some(now);
        if let (OpKind::Read { value }, Some(v)) = (&mut op.kind, read) {
            *value = v;
        }
    }

    /// The history the checker sees: without requests that certainly did nothing, and
    /// without reads that never returned.
    pub fn checked_history(&self) -> Vec<Operation> {
        self.history
            .iter()
            .zip(&self.failed)
            .filter(|(op, failed)| {
                let unanswered_read =
                    matches!(op.kind, OpKind::Read { .. }) && op.complete.is_none();
                !**failed && !unanswered_read
            })
            .map(|(op, _)| *op)
            .collect()
    }
}
