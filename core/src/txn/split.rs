//! Planning a transaction over the spine and the entity shards (DESIGN.md "Sharding": I1–I4):
//! each client op becomes the ops of the shards it touches.
//!
//! - Below a shard root, an op goes to the root's entity shard unchanged.
//! - Creating or deleting a shard root also creates or deletes its dentry in the spine (I2).
//! - Deleting a spine node deletes every shard root below it in its entity shard too (I3):
//!   the planner reads the spine subtree to find them.
//! - Moving or renaming a subtree to a root of another shard deletes it in one shard and
//!   creates it, whole, in the other: the planner reads it first, and the delete carries a
//!   `SubtreeDigest` precondition, so a subtree changed since the read aborts the
//!   transaction instead of losing the change.
//! - Preconditions go to the shard of their path.
//!
//! Planning is a pure function of the transaction, the shard map and what was read; the
//! coordinator reads (`reads_needed`) then plans (`plan`). With one shard the transaction
//! is returned as it came.
//!
//! # Invariants
//! - Every op of the plan's parts is addressed to the shard that owns its path (I1): checked
//!   by `Plan::check` in tests and at the end of `plan` (debug).
//! - Within a part, ops keep the client's order.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::op::{Expect, Op, Precondition, Txn};
use crate::path::NodePath;
use crate::shard::{ShardMap, SPINE};
use crate::tree::subtree_digest;
use crate::value::Value;
use crate::Limits;

/// Why a transaction cannot be planned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("{op} of {path}: a subtree cannot be placed above the shard roots (depth {depth})")]
    AboveShardRoots {
        op: &'static str,
        path: String,
        depth: usize,
    },
    #[error("{op} of {path}: it has entities below it; move or rename them one by one")]
    SpineNodeHasEntities { op: &'static str, path: String },
    #[error("no node at {path}")]
    NotFound { path: String },
    #[error("a transaction needs at least one op")]
    Empty,
    #[error("{op} of {path} spans shards and needs {path} as it was before the transaction, but an earlier op of it changes {path}; send them as two transactions")]
    ReadAfterChange { op: &'static str, path: String },
}

/// Each touched shard's part, ordered by shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub parts: Vec<(u32, Txn)>,
}

impl Plan {
    /// The one shard a single-shard plan touches.
    pub fn single_shard(&self) -> Option<u32> {
        match self.parts.as_slice() {
            [(shard, _)] => Some(*shard),
            _ => None,
        }
    }

    /// I1: every op and precondition of a part is owned by that part's shard (the spine's
    /// ops on shard roots are on their dentries).
    pub fn check(&self, map: &ShardMap, limits: &Limits) {
        for (shard, txn) in &self.parts {
            for path in txn.ops.iter().map(Op::target_path) {
                let parsed = parse(limits, &path).expect("planned paths are valid");
                if *shard == SPINE.0 && map.is_shard_root(&parsed) {
                    continue;
                }
                let owner = map.shard_of(&parsed).0;
                assert_eq!(
                    owner, *shard,
                    "{path} planned on shard {shard}, owned by {owner}"
                );
            }
            for p in &txn.expect {
                let owner = shard_of(map, limits, &p.path).expect("planned paths are valid");
                assert_eq!(
                    owner, *shard,
                    "precondition on {} planned on {shard}",
                    p.path
                );
            }
        }
    }
}

fn parse(limits: &Limits, path: &str) -> Result<NodePath, PlanError> {
    NodePath::parse(path, limits).map_err(|e| PlanError::InvalidPath {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn shard_of(map: &ShardMap, limits: &Limits, path: &str) -> Result<u32, PlanError> {
    Ok(map.shard_of(&parse(limits, path)?).0)
}

fn parent_and_name(path: &str) -> (&str, &str) {
    let cut = path
        .rfind('/')
        .expect("a parsed non-root path has a parent");
    (&path[..cut], &path[cut + 1..])
}

/// The subtrees `plan` needs read first (each from the shard that owns it).
pub fn reads_needed(txn: &Txn, map: &ShardMap, limits: &Limits) -> Result<Vec<String>, PlanError> {
    if map.shard_count() == 1 {
        return Ok(Vec::new());
    }
    let mut reads = Vec::new();
    for op in &txn.ops {
        match op {
            Op::Delete { path } if map.is_spine(&parse(limits, path)?) => reads.push(path.clone()),
            Op::Rename { path, .. } => reads.push(path.clone()),
            Op::Move { path, .. } => reads.push(path.clone()),
            _ => {}
        }
    }
    reads.sort();
    reads.dedup();
    Ok(reads)
}

/// The shard roots (dentries) in a spine subtree read at `path` (Godot data).
pub fn roots_of_subtree(path: &str, subtree: &Value, depth: usize) -> Vec<String> {
    let mut roots = Vec::new();
    roots_below(path, subtree, depth, &mut roots);
    roots
}

/// Puts `entity` (an entity shard's subtree at `root`) in place of its dentry inside a
/// spine subtree read at `at`: how a read above the shard roots shows whole entities.
pub fn graft(spine: &mut Value, at: &str, root: &str, entity: Value) {
    let Some(rest) = root.strip_prefix(at).and_then(|r| r.strip_prefix('/')) else {
        return;
    };
    let mut node = spine;
    for name in rest.split('/') {
        let Value::Dictionary(entries) = node else {
            return;
        };
        let children = entries.iter_mut().find_map(|(k, v)| match (k, v) {
            (Value::String(key), Value::Array(children)) if key == "children" => Some(children),
            _ => None,
        });
        let Some(child) = children.and_then(|c| {
            c.iter_mut()
                .find(|child| field(child, "name").and_then(as_str) == Some(name))
        }) else {
            return;
        };
        node = child;
    }
    *node = entity;
}

/// The shard roots (depth == shard depth) in a spine subtree read at `path`.
fn roots_below(path: &str, subtree: &Value, depth: usize, into: &mut Vec<String>) {
    let here_depth = path.split('/').filter(|s| !s.is_empty()).count();
    if here_depth == depth {
        into.push(path.to_owned());
        return;
    }
    for child in children_of(subtree) {
        if let Some(name) = field(child, "name").and_then(as_str) {
            roots_below(&format!("{path}/{name}"), child, depth, into);
        }
    }
}

fn field<'v>(node: &'v Value, key: &str) -> Option<&'v Value> {
    match node {
        Value::Dictionary(entries) => entries.iter().find_map(|(k, v)| match k {
            Value::String(s) if s == key => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

fn as_str(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn children_of(node: &Value) -> &[Value] {
    match field(node, "children") {
        Some(Value::Array(children)) => children,
        _ => &[],
    }
}

/// `Create` ops (pre-order) that rebuild a subtree read as Godot data under `parent`,
/// named `name`.
pub fn creates_from_value(parent: &str, name: &str, subtree: &Value, ops: &mut Vec<Op>) {
    let class = field(subtree, "class").and_then(as_str).unwrap_or("Node");
    let props = match field(subtree, "props") {
        Some(Value::Dictionary(entries)) => entries
            .iter()
            .filter_map(|(k, v)| Some(crate::op::Prop::new(as_str(k)?, v.clone())))
            .collect(),
        _ => Vec::new(),
    };
    ops.push(Op::Create {
        parent: parent.to_owned(),
        name: name.to_owned(),
        class: class.to_owned(),
        props,
    });
    let path = format!("{parent}/{name}");
    for child in children_of(subtree) {
        if let Some(child_name) = field(child, "name").and_then(as_str) {
            creates_from_value(&path, child_name, child, ops);
        }
    }
}

/// `op` is planned from a read of `path` taken before the transaction: refused if an
/// earlier op of the transaction changes it.
fn read_before(op: &Op, earlier: &[Op], path: &str) -> Result<(), PlanError> {
    if earlier.iter().any(|e| e.touches(path)) {
        return Err(PlanError::ReadAfterChange {
            op: op.name(),
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Accumulates the parts while planning.
struct Planner<'a> {
    map: &'a ShardMap,
    limits: &'a Limits,
    reads: &'a BTreeMap<String, Option<Value>>,
    parts: BTreeMap<u32, Txn>,
}

impl Planner<'_> {
    fn push(&mut self, shard: u32, op: Op) {
        self.parts.entry(shard).or_default().ops.push(op);
    }

    fn expect(&mut self, shard: u32, precondition: Precondition) {
        self.parts
            .entry(shard)
            .or_default()
            .expect
            .push(precondition);
    }

    fn depth(&self, path: &str) -> Result<usize, PlanError> {
        Ok(parse(self.limits, path)?.depth())
    }

    fn read(&self, path: &str) -> Result<&Value, PlanError> {
        match self.reads.get(path) {
            Some(Some(value)) => Ok(value),
            _ => Err(PlanError::NotFound {
                path: path.to_owned(),
            }),
        }
    }

    fn entity_roots_below(&self, path: &str) -> Result<Vec<String>, PlanError> {
        let mut roots = Vec::new();
        roots_below(path, self.read(path)?, self.map.depth(), &mut roots);
        Ok(roots)
    }

    fn op(&mut self, op: &Op, earlier: &[Op]) -> Result<(), PlanError> {
        let shard_depth = self.map.depth();
        let target = op.target_path();
        let shard = shard_of(self.map, self.limits, &target)?;
        let depth = self.depth(&target)?;
        match op {
            Op::Set { .. } | Op::Emit { .. } => self.push(shard, op.clone()),
            _ if depth > shard_depth && !matches!(op, Op::Move { .. } | Op::Rename { .. }) => {
                self.push(shard, op.clone())
            }
            Op::Create {
                parent,
                name,
                class,
                ..
            } => {
                if depth == shard_depth && shard != SPINE.0 {
                    let dentry = Op::Create {
                        parent: parent.clone(),
                        name: name.clone(),
                        class: class.clone(),
                        props: Vec::new(),
                    };
                    self.push(SPINE.0, dentry);
                }
                self.push(shard, op.clone());
            }
            Op::Delete { path } => {
                if depth < shard_depth {
                    read_before(op, earlier, path)?;
                    for root in self.entity_roots_below(path)? {
                        let owner = shard_of(self.map, self.limits, &root)?;
                        if owner != SPINE.0 {
                            self.push(owner, Op::Delete { path: root });
                        }
                    }
                } else if shard != SPINE.0 {
                    self.push(SPINE.0, op.clone());
                }
                self.push(shard, op.clone());
            }
            Op::Rename { path, new_name } => {
                let (parent, _) = parent_and_name(path);
                self.relocate(op, earlier, path, parent, new_name, None)?;
            }
            Op::Move {
                path,
                new_parent,
                index,
            } => {
                let (_, name) = parent_and_name(path);
                self.relocate(op, earlier, path, new_parent, name, *index)?;
            }
        }
        Ok(())
    }

    /// A rename or move of `path` to `new_parent/new_name`.
    fn relocate(
        &mut self,
        op: &Op,
        earlier: &[Op],
        path: &str,
        new_parent: &str,
        new_name: &str,
        index: Option<u32>,
    ) -> Result<(), PlanError> {
        let shard_depth = self.map.depth();
        let dest = format!("{new_parent}/{new_name}");
        let (from_depth, to_depth) = (self.depth(path)?, self.depth(&dest)?);
        let from = shard_of(self.map, self.limits, path)?;
        let to = shard_of(self.map, self.limits, &dest)?;
        let copies = from != to || (from_depth != shard_depth && to_depth == shard_depth);
        if from_depth < shard_depth || copies {
            read_before(op, earlier, path)?;
        }
        if from_depth < shard_depth {
            if !self.entity_roots_below(path)?.is_empty() {
                return Err(PlanError::SpineNodeHasEntities {
                    op: op.name(),
                    path: path.to_owned(),
                });
            }
            if to_depth >= shard_depth {
                return Err(PlanError::AboveShardRoots {
                    op: op.name(),
                    path: path.to_owned(),
                    depth: shard_depth,
                });
            }
            self.push(SPINE.0, op.clone());
            return Ok(());
        }
        if to_depth < shard_depth {
            return Err(PlanError::AboveShardRoots {
                op: op.name(),
                path: path.to_owned(),
                depth: shard_depth,
            });
        }
        self.move_dentry(op, path, &dest, index, from_depth, to_depth)?;
        // The order of shard roots among their siblings is the spine's (I4): in an entity
        // shard a root's parent is a placeholder, where an index means nothing.
        let index = if to_depth == shard_depth { None } else { index };
        if from == to {
            let local = match op {
                Op::Move { .. } => Op::Move {
                    path: path.to_owned(),
                    new_parent: new_parent.to_owned(),
                    index,
                },
                _ => op.clone(),
            };
            self.push(from, local);
            return Ok(());
        }
        let subtree = self.read(path)?.clone();
        self.expect(
            from,
            Precondition {
                path: path.to_owned(),
                expect: Expect::SubtreeDigest {
                    digest: subtree_digest(&subtree),
                },
            },
        );
        self.push(
            from,
            Op::Delete {
                path: path.to_owned(),
            },
        );
        let mut creates = Vec::new();
        creates_from_value(new_parent, new_name, &subtree, &mut creates);
        for create in creates {
            self.push(to, create);
        }
        if index.is_some() {
            let place = Op::Move {
                path: dest.clone(),
                new_parent: new_parent.to_owned(),
                index,
            };
            self.push(to, place);
        }
        Ok(())
    }

    /// The spine's side of a relocation of an entity-level node (I2).
    fn move_dentry(
        &mut self,
        op: &Op,
        path: &str,
        dest: &str,
        index: Option<u32>,
        from_depth: usize,
        to_depth: usize,
    ) -> Result<(), PlanError> {
        let shard_depth = self.map.depth();
        if self.map.shard_count() == 1 {
            return Ok(()); // the spine is the entity shard: the op itself moves it
        }
        let (new_parent, new_name) = parent_and_name(dest);
        match (from_depth == shard_depth, to_depth == shard_depth) {
            (true, true) => match op {
                Op::Rename { .. } => self.push(SPINE.0, op.clone()),
                _ => self.push(
                    SPINE.0,
                    Op::Move {
                        path: path.to_owned(),
                        new_parent: new_parent.to_owned(),
                        index,
                    },
                ),
            },
            (true, false) => self.push(
                SPINE.0,
                Op::Delete {
                    path: path.to_owned(),
                },
            ),
            (false, true) => {
                let class = field(self.read(path)?, "class")
                    .and_then(as_str)
                    .unwrap_or("Node")
                    .to_owned();
                let dentry = Op::Create {
                    parent: new_parent.to_owned(),
                    name: new_name.to_owned(),
                    class,
                    props: Vec::new(),
                };
                self.push(SPINE.0, dentry);
                if index.is_some() {
                    let place = Op::Move {
                        path: dest.to_owned(),
                        new_parent: new_parent.to_owned(),
                        index,
                    };
                    self.push(SPINE.0, place);
                }
            }
            (false, false) => {}
        }
        Ok(())
    }
}

/// Plans `txn` over the shards of `map`, with the subtrees `reads_needed` named as read
/// (`None`: no node there).
pub fn plan(
    txn: &Txn,
    map: &ShardMap,
    limits: &Limits,
    reads: &BTreeMap<String, Option<Value>>,
) -> Result<Plan, PlanError> {
    if txn.ops.is_empty() {
        return Err(PlanError::Empty);
    }
    if map.shard_count() == 1 {
        return Ok(Plan {
            parts: vec![(SPINE.0, txn.clone())],
        });
    }
    let mut planner = Planner {
        map,
        limits,
        reads,
        parts: BTreeMap::new(),
    };
    for p in &txn.expect {
        let shard = shard_of(map, limits, &p.path)?;
        planner.expect(shard, p.clone());
    }
    for (i, op) in txn.ops.iter().enumerate() {
        planner.op(op, &txn.ops[..i])?;
    }
    let mut parts: Vec<(u32, Txn)> = planner.parts.into_iter().collect();
    if let [(_, only)] = parts.as_mut_slice() {
        only.session = txn.session; // the one-entry fast path keeps exactly-once
    }
    let plan = Plan { parts };
    if cfg!(debug_assertions) {
        plan.check(map, limits);
    }
    Ok(plan)
}

#[cfg(test)]
#[path = "split_test.rs"]
mod tests;
