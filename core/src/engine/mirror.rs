//! What a subscriber of one subtree must be sent of a transaction so that a mirror of the
//! subtree can replay it (defect 8 of issue 9).
//!
//! A mirror holds the nodes at and below its path `P`. A rename or move has a source `s`
//! and a destination `d` (the node's path afterwards):
//! - `s` and `d` in `P`: the op itself (the mirror has the node and its new place).
//! - `s` in `P`, `d` outside: a `Delete { s }` (the node left the mirror).
//! - `P` strictly inside `s`: a `Delete { P }` (the mirror's root moved away).
//! - `s` outside, `d` in `P` or `P` inside `d`: the node arrived with its whole subtree,
//!   which the mirror never saw: `Create` ops for every node of it at or below `P`, in
//!   pre-order, as the tree held them after the transaction (`landed`). Later ops of the
//!   same transaction below `d` are already reflected there and are left out.
//!
//! Every other op is sent when it touches `P` (`Op::touches`).

use crate::op::{is_within, Op, Prop};
use crate::path::NodePath;
use crate::tree::{NodeRef, Tree};

/// The path a rename or move gives its node, with its source; `None` for other ops.
pub fn relocation(op: &Op) -> Option<(&str, String)> {
    let name_of = |path: &str| path.rsplit('/').next().unwrap_or_default().to_owned();
    match op {
        Op::Rename { path, new_name } => {
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            Some((path.as_str(), format!("{parent}/{new_name}")))
        }
        Op::Move {
            path, new_parent, ..
        } => Some((path.as_str(), format!("{new_parent}/{}", name_of(path)))),
        _ => None,
    }
}

/// `Create` ops that rebuild the subtree at `path` (pre-order), or none if it is absent.
pub fn creates_of(tree: &Tree, path: &str) -> Vec<Op> {
    let Ok(parsed) = NodePath::parse(path, tree.limits()) else {
        return Vec::new();
    };
    let (Some(node), Some(parent)) = (tree.get(&parsed), parsed.parent()) else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    push_creates(node, parent.as_str(), &mut ops);
    ops
}

fn push_creates(node: NodeRef<'_>, parent: &str, ops: &mut Vec<Op>) {
    ops.push(Op::Create {
        parent: parent.to_owned(),
        name: node.name().to_owned(),
        class: node.class().to_owned(),
        props: node.props().map(|(k, v)| Prop::new(k, v.clone())).collect(),
    });
    let path = format!("{parent}/{}", node.name());
    for child in node.children() {
        push_creates(child, &path, ops);
    }
}

/// The ops of a transaction a mirror of `sub` must apply; `landed[i]` holds the `Create`
/// ops of the subtree op `i` relocated, as it was after the transaction.
pub fn ops_for(ops: &[Op], landed: &[(usize, Vec<Op>)], sub: &str) -> Vec<Op> {
    let mut out = Vec::new();
    let mut reflected: Vec<String> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let path = op.target_path();
        if reflected.iter().any(|d| is_within(&path, d)) {
            continue;
        }
        let Some((source, dest)) = relocation(op) else {
            if op.touches(sub) {
                out.push(op.clone());
            }
            continue;
        };
        let (source_in, dest_in) = (is_within(source, sub), is_within(&dest, sub));
        if source_in && dest_in {
            out.push(op.clone());
        } else if source_in {
            out.push(Op::Delete {
                path: source.to_owned(),
            });
        } else if is_within(sub, source) {
            out.push(Op::Delete {
                path: sub.to_owned(),
            });
        } else if dest_in || is_within(sub, &dest) {
            let creates = landed.iter().find(|(at, _)| *at == i).map(|(_, c)| c);
            let inside = creates
                .into_iter()
                .flatten()
                .filter(|c| is_within(&c.target_path(), sub));
            out.extend(inside.cloned());
            reflected.push(dest);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::op::Txn;
    use crate::value::Value;

    fn create(parent: &str, name: &str) -> Op {
        Op::Create {
            parent: parent.into(),
            name: name.into(),
            class: "Node2D".into(),
            props: vec![Prop::new("hp", Value::Int(3))],
        }
    }

    fn tree_with(ops: &[Op]) -> Tree {
        let mut tree = Tree::new(Limits::default());
        tree.apply_txn(&Txn {
            ops: ops.to_vec(),
            ..Txn::single(ops[0].clone())
        })
        .expect("valid setup");
        tree
    }

    /// Applies `txn` to the full tree and replays what a mirror of `sub` is sent onto a
    /// mirror built from the same starting subtree; the two must agree at `sub`.
    fn mirror_agrees(setup: &[Op], txn: &[Op], sub: &str) -> Vec<Op> {
        let mut full = tree_with(setup);
        let mut mirror = Tree::new(Limits::default());
        // The mirror starts as the subscriber's snapshot: the ancestors of `sub` (so its
        // creates have parents) and the subtree at `sub`.
        let mut ancestors = Vec::new();
        let mut at = String::new();
        for seg in sub
            .trim_start_matches("/root")
            .split('/')
            .filter(|s| !s.is_empty())
        {
            ancestors.push(create(&format!("/root{at}"), seg));
            at = format!("{at}/{seg}");
        }
        let start: Vec<Op> = ancestors[..ancestors.len().saturating_sub(1)]
            .iter()
            .cloned()
            .chain(creates_of(&full, sub))
            .collect();
        for op in &start {
            mirror.apply_op(op).expect("mirror setup");
        }
        let txn = Txn {
            ops: txn.to_vec(),
            ..Txn::single(txn[0].clone())
        };
        full.apply_txn(&txn).expect("the txn applies");
        let landed: Vec<(usize, Vec<Op>)> = txn
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| relocation(op).map(|(_, d)| (i, creates_of(&full, &d))))
            .collect();
        let sent = ops_for(&txn.ops, &landed, sub);
        for op in &sent {
            mirror
                .apply_op(op)
                .expect("the mirror replays what it is sent");
        }
        assert_eq!(
            creates_of(&mirror, sub),
            creates_of(&full, sub),
            "mirror of {sub}"
        );
        sent
    }

    #[test]
    fn a_rename_landing_exactly_on_the_subscribed_path_is_sent_as_creates() {
        let setup = [
            create("/root", "a"),
            create("/root/a", "kid"),
            create("/root", "w"),
        ];
        let rename = Op::Rename {
            path: "/root/a".into(),
            new_name: "b".into(),
        };
        let sent = mirror_agrees(&setup, &[rename], "/root/b");
        assert_eq!(sent.len(), 2, "b and its child: {sent:?}");
    }

    #[test]
    fn a_move_into_the_subscribed_subtree_carries_the_moved_nodes() {
        let setup = [
            create("/root", "x"),
            create("/root/x", "a"),
            create("/root/x/a", "kid"),
            create("/root", "y"),
        ];
        let moved = Op::Move {
            path: "/root/x/a".into(),
            new_parent: "/root/y".into(),
            index: None,
        };
        let set = Op::Set {
            path: "/root/y/a/kid".into(),
            props: vec![Prop::new("hp", Value::Int(9))],
        };
        let sent = mirror_agrees(&setup, &[moved.clone(), set], "/root/y");
        assert!(
            sent.iter().all(|op| matches!(op, Op::Create { .. })),
            "{sent:?}"
        );
        // A move landing exactly on the subscribed path, too.
        mirror_agrees(&setup, &[moved], "/root/y/a");
    }

    #[test]
    fn a_move_out_of_the_subtree_is_a_delete_and_inside_it_is_the_move() {
        let setup = [
            create("/root", "y"),
            create("/root/y", "a"),
            create("/root/y", "b"),
            create("/root", "z"),
        ];
        let out = Op::Move {
            path: "/root/y/a".into(),
            new_parent: "/root/z".into(),
            index: None,
        };
        assert_eq!(
            mirror_agrees(&setup, &[out], "/root/y"),
            vec![Op::Delete {
                path: "/root/y/a".into()
            }]
        );
        let inside = Op::Move {
            path: "/root/y/a".into(),
            new_parent: "/root/y/b".into(),
            index: None,
        };
        assert_eq!(
            mirror_agrees(&setup, std::slice::from_ref(&inside), "/root/y"),
            vec![inside]
        );
    }
}
