//! The locks an intent holds: which paths a shard's part of a transaction reads or changes,
//! and which other writes it therefore excludes until it is resolved.
//!
//! A lock is on one node (`Node`: its properties, its own existence and its child list) or
//! on a whole subtree (`Subtree`: a create, delete, rename or move of its root). An op that
//! changes a node's child list (create, delete, move in or out, rename) also locks the
//! parent as a `Node`, so two creates under one parent exclude each other — which is also
//! what keeps `children_per_node_max` true at resolve time.
//!
//! # Invariants
//! - `conflicts` is symmetric, and every op conflicts with itself (tested).
//! - If two transactions' ops could change what the other reads or writes, some pair of
//!   their locks conflicts: `Node(p)` vs `Node(q)` iff p = q; `Node(p)` vs `Subtree(q)` iff p
//!   is at or below q; `Subtree` vs `Subtree` iff one is at or below the other.

use crate::op::{is_within, Op, Precondition, Txn};

/// One lock (paths are as the ops spell them; the tree validates them at apply).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lock {
    Node(String),
    Subtree(String),
}

impl Lock {
    pub fn path(&self) -> &str {
        match self {
            Lock::Node(p) | Lock::Subtree(p) => p,
        }
    }

    /// Whether two locks exclude each other (see the module doc).
    pub fn conflicts(&self, other: &Lock) -> bool {
        match (self, other) {
            (Lock::Node(p), Lock::Node(q)) => p == q,
            (Lock::Node(p), Lock::Subtree(q)) | (Lock::Subtree(q), Lock::Node(p)) => {
                is_within(p, q)
            }
            (Lock::Subtree(p), Lock::Subtree(q)) => is_within(p, q) || is_within(q, p),
        }
    }
}

/// The parent of an op path (`/root` has none; an invalid path is the tree's to refuse).
fn parent_of(path: &str) -> Option<&str> {
    let cut = path.rfind('/')?;
    (cut > 0).then(|| &path[..cut])
}

fn push_child_list_change(locks: &mut Vec<Lock>, path: &str) {
    locks.push(Lock::Subtree(path.to_owned()));
    if let Some(parent) = parent_of(path) {
        locks.push(Lock::Node(parent.to_owned()));
    }
}

/// The locks of one op.
pub fn op_locks(op: &Op, locks: &mut Vec<Lock>) {
    match op {
        Op::Create { parent, name, .. } => {
            push_child_list_change(locks, &format!("{parent}/{name}"));
        }
        Op::Delete { path } => push_child_list_change(locks, path),
        Op::Set { path, .. } | Op::Emit { path, .. } => locks.push(Lock::Node(path.clone())),
        Op::Rename { path, new_name } => {
            push_child_list_change(locks, path);
            if let Some(parent) = parent_of(path) {
                locks.push(Lock::Subtree(format!("{parent}/{new_name}")));
            }
        }
        Op::Move {
            path, new_parent, ..
        } => {
            push_child_list_change(locks, path);
            locks.push(Lock::Node(new_parent.clone()));
            let name = path.rsplit('/').next().unwrap_or_default();
            locks.push(Lock::Subtree(format!("{new_parent}/{name}")));
        }
    }
}

fn precondition_lock(p: &Precondition) -> Lock {
    Lock::Node(p.path.clone())
}

/// Every lock of a transaction (a shard's part of one), sorted and without repeats.
pub fn txn_locks(txn: &Txn) -> Vec<Lock> {
    let mut locks: Vec<Lock> = txn.expect.iter().map(precondition_lock).collect();
    for op in &txn.ops {
        op_locks(op, &mut locks);
    }
    locks.sort();
    locks.dedup();
    locks
}

/// Whether any lock of `a` conflicts with any of `b`.
pub fn any_conflict(a: &[Lock], b: &[Lock]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.conflicts(y)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Prop;
    use crate::value::Value;

    fn set(path: &str) -> Op {
        Op::Set {
            path: path.into(),
            props: vec![Prop::new("hp", Value::Int(1))],
        }
    }

    fn create(parent: &str, name: &str) -> Op {
        Op::Create {
            parent: parent.into(),
            name: name.into(),
            class: "Node".into(),
            props: vec![],
        }
    }

    fn locks_of(op: Op) -> Vec<Lock> {
        txn_locks(&Txn::single(op))
    }

    #[test]
    fn conflicts_are_symmetric_and_every_op_conflicts_with_itself() {
        let ops = [
            set("/root/w/a"),
            create("/root/w", "a"),
            create("/root/w", "b"),
            Op::Delete {
                path: "/root/w".into(),
            },
            Op::Rename {
                path: "/root/w/a".into(),
                new_name: "c".into(),
            },
            Op::Move {
                path: "/root/w/a".into(),
                new_parent: "/root/v".into(),
                index: None,
            },
        ];
        for a in &ops {
            let la = locks_of(a.clone());
            assert!(any_conflict(&la, &la), "{a:?} conflicts with itself");
            for b in &ops {
                let lb = locks_of(b.clone());
                assert_eq!(
                    any_conflict(&la, &lb),
                    any_conflict(&lb, &la),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn writes_to_different_nodes_do_not_conflict_but_structure_changes_do() {
        let a = locks_of(set("/root/w/a"));
        assert!(!any_conflict(&a, &locks_of(set("/root/w/b"))));
        assert!(
            !any_conflict(&a, &locks_of(set("/root/w"))),
            "a parent's props"
        );
        assert!(any_conflict(
            &a,
            &locks_of(Op::Delete {
                path: "/root/w".into()
            })
        ));
        let first = locks_of(create("/root/w", "x"));
        assert!(
            any_conflict(&first, &locks_of(create("/root/w", "y"))),
            "two creates under one parent change one child list"
        );
        assert!(
            !any_conflict(&first, &a),
            "a sibling's props are not locked"
        );
        let moved = locks_of(Op::Move {
            path: "/root/w/a".into(),
            new_parent: "/root/v".into(),
            index: None,
        });
        assert!(
            any_conflict(&moved, &locks_of(create("/root/v", "a"))),
            "the new name"
        );
        assert!(any_conflict(&moved, &a));
    }

    #[test]
    fn a_precondition_locks_the_node_it_reads() {
        let txn = Txn {
            expect: vec![Precondition {
                path: "/root/w/a".into(),
                expect: crate::op::Expect::Exists,
            }],
            ops: vec![set("/root/w/b")],
            session: None,
        };
        let locks = txn_locks(&txn);
        assert!(any_conflict(&locks, &locks_of(set("/root/w/a"))));
        assert!(!any_conflict(&locks, &locks_of(set("/root/w/c"))));
    }
}
