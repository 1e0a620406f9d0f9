//! Operations on the node tree and transactions of them.
//!
//! Ops carry paths and names as plain strings: they are the rkyv wire form, read zero-copy
//! from the log. The tree validates every path and name when it applies an op, so a log
//! entry is never trusted just because it was committed.

use rkyv::{Archive, Deserialize, Serialize};

use crate::value::Value;

/// One property assignment.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Prop {
    pub name: String,
    /// `Value::Nil` removes the property.
    pub value: Value,
}

impl Prop {
    pub fn new(name: impl Into<String>, value: Value) -> Prop {
        Prop {
            name: name.into(),
            value,
        }
    }
}

/// A change to the tree.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Op {
    /// Adds a node named `name` of `class` as the last child of `parent`.
    Create {
        parent: String,
        name: String,
        class: String,
        props: Vec<Prop>,
    },
    /// Removes a node and its whole subtree.
    Delete { path: String },
    /// Sets (or, with `Nil`, removes) one or many properties.
    Set { path: String, props: Vec<Prop> },
    /// Renames a node in place.
    Rename { path: String, new_name: String },
    /// Re-parents a node (keeping its name) at `index` among the new siblings, or last.
    Move {
        path: String,
        new_parent: String,
        index: Option<u32>,
    },
    /// An ordered event for subscribers; kept in the log, not in the tree.
    Emit {
        path: String,
        signal: String,
        args: Vec<Value>,
    },
}

/// `path` is `ancestor` or below it (component-wise: `/root/ab` is not below `/root/a`).
pub fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes()[ancestor.len()] == b'/')
}

impl Op {
    /// Whether a subscriber to the subtree at `subtree` must see this op: it changes a node
    /// in the subtree, moves or renames one into it (or onto its root), or changes an
    /// ancestor (a rename or delete of an ancestor moves or removes the whole subtree).
    pub fn touches(&self, subtree: &str) -> bool {
        let affects = |path: &str| is_within(path, subtree) || is_within(subtree, path);
        match self {
            Op::Create { parent, name, .. } => affects(&format!("{parent}/{name}")),
            Op::Move {
                path, new_parent, ..
            } => {
                let name = path.rsplit('/').next().unwrap_or_default();
                affects(path) || affects(&format!("{new_parent}/{name}"))
            }
            Op::Rename { path, new_name } => {
                let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                affects(path) || affects(&format!("{parent}/{new_name}"))
            }
            Op::Delete { path } | Op::Set { path, .. } | Op::Emit { path, .. } => affects(path),
        }
    }

    /// The node the op addresses (for `Create`, the node it creates): it decides the op's
    /// shard, and whether a subscriber already holds what the op changes.
    pub fn target_path(&self) -> String {
        match self {
            Op::Create { parent, name, .. } => format!("{parent}/{name}"),
            Op::Delete { path }
            | Op::Set { path, .. }
            | Op::Rename { path, .. }
            | Op::Move { path, .. }
            | Op::Emit { path, .. } => path.clone(),
        }
    }

    /// The op's name, as clients spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Delete { .. } => "delete",
            Op::Set { .. } => "set",
            Op::Rename { .. } => "rename",
            Op::Move { .. } => "move",
            Op::Emit { .. } => "emit",
        }
    }
}

/// What a precondition expects of a node.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Expect {
    /// The node exists.
    Exists,
    /// The node does not exist.
    Absent,
    /// The node exists and `prop` equals `value` (bitwise for floats; `Nil` = unset).
    PropEquals { prop: String, value: Value },
    /// The node exists and its whole subtree (names, classes, properties, child order)
    /// hashes to `digest` (`tree::subtree_digest`): a move between shards deletes exactly
    /// the subtree it copied, or nothing.
    SubtreeDigest { digest: u64 },
}

/// A condition checked before a transaction applies.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Precondition {
    pub path: String,
    pub expect: Expect,
}

/// A client session's request number: the key that makes a write exactly-once (Raft
/// dissertation §6.3). A client picks a random `session`, numbers its writes 1, 2, 3… one at
/// a time, and resends a write it got no answer for under the same `seq`; each shard answers
/// a resent `seq` it already applied with the first answer instead of applying it again
/// (`replica::sessions`).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionSeq {
    pub session: u64,
    pub seq: u64,
}

/// Operations applied atomically, all or none, if every precondition holds.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Txn {
    pub expect: Vec<Precondition>,
    pub ops: Vec<Op>,
    /// Set by clients that retry: the write applies at most once per (session, seq).
    pub session: Option<SessionSeq>,
}

impl Txn {
    /// A transaction of one op and no preconditions.
    pub fn single(op: Op) -> Txn {
        Txn {
            expect: Vec::new(),
            ops: vec![op],
            session: None,
        }
    }
}

#[cfg(test)]
mod touch_tests {
    use super::*;

    #[test]
    fn subtree_relevance_is_component_wise() {
        assert!(is_within("/root/a/b", "/root/a"));
        assert!(!is_within("/root/ab", "/root/a"));
        let set = |p: &str| Op::Set {
            path: p.into(),
            props: vec![],
        };
        assert!(set("/root/a/x").touches("/root/a"));
        assert!(!set("/root/b").touches("/root/a"));
        assert!(
            set("/root").touches("/root/a"),
            "an ancestor's change is shown"
        );
        let mv = Op::Move {
            path: "/root/b/x".into(),
            new_parent: "/root/a".into(),
            index: None,
        };
        assert!(mv.touches("/root/a"), "moved into the subtree");
        assert!(mv.touches("/root/a/x"), "moved onto the subtree's root");
        let rename = Op::Rename {
            path: "/root/b".into(),
            new_name: "a".into(),
        };
        assert!(rename.touches("/root/a/y"), "renamed onto an ancestor");
    }
}
