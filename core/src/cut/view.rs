//! What a subscriber of a path above the shard roots is shown of the spine and the entity
//! shards: one tree, as a `tree` read of the path shows it (`txn::split::graft`).
//!
//! The spine keeps a *dentry* for every shard root (its name and class, and its place among
//! its siblings); the root's own shard keeps the node itself. A merged view takes nodes
//! above the roots from the spine and everything at and below them from the entity shards,
//! so the spine's dentry bookkeeping is left out — except a placement (`Move` with an
//! index), which is where the spine decides a root's place among its siblings.

use crate::op::{is_within, Op};
use crate::shard::SPINE;
use crate::txn::split::{graft, roots_of_subtree};
use crate::value::Value;

fn depth(path: &str) -> usize {
    path.split('/').filter(|s| !s.is_empty()).count()
}

/// The ops one transaction's parts (by shard) make to a merged mirror, in an order the
/// mirror can apply: the spine's nodes first (an entity needs its parent), the entity
/// shards' ops, the spine's deletes (after the entities below them went) and last the
/// spine's placements of roots. `root_depth`: the shard-root depth; with one shard every
/// op is the spine's and passes unchanged.
pub fn merged_ops(parts: &[(u32, Vec<Op>)], root_depth: usize, one_shard: bool) -> Vec<Op> {
    if one_shard {
        return parts
            .iter()
            .flat_map(|(_, ops)| ops.iter().cloned())
            .collect();
    }
    let (mut spine_nodes, mut entities, mut spine_deletes, mut placements) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (shard, ops) in parts {
        for op in ops {
            if *shard != SPINE.0 {
                entities.push(op.clone());
                continue;
            }
            let target = depth(&op.target_path());
            match op {
                Op::Move {
                    path,
                    new_parent,
                    index: Some(index),
                } if depth(new_parent) + 1 == root_depth => {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    placements.push(Op::Move {
                        path: format!("{new_parent}/{name}"),
                        new_parent: new_parent.clone(),
                        index: Some(*index),
                    });
                }
                _ if target >= root_depth => {} // a dentry: the entity shard has the node
                Op::Delete { .. } => spine_deletes.push(op.clone()),
                _ => spine_nodes.push(op.clone()),
            }
        }
    }
    let mut ops = spine_nodes;
    ops.extend(entities);
    ops.extend(spine_deletes);
    ops.extend(placements);
    ops
}

/// The subtree at `path` over every shard's snapshot of it: the spine's, with each shard
/// root's node taken from its own shard (`owner(root)` names it). `None`: no node there.
pub fn merged_tree(
    path: &str,
    snapshots: &[(u32, Option<Value>)],
    root_depth: usize,
    owner: impl Fn(&str) -> u32,
) -> Option<Value> {
    let of = |shard: u32| {
        snapshots
            .iter()
            .find(|(s, _)| *s == shard)
            .and_then(|(_, v)| v.as_ref())
    };
    if depth(path) >= root_depth || snapshots.len() == 1 {
        return snapshots.first().and_then(|(_, v)| v.clone());
    }
    let mut tree = of(SPINE.0)?.clone();
    for root in roots_of_subtree(path, &tree.clone(), root_depth) {
        let entity = of(owner(&root)).and_then(|v| subtree_at(v, path, &root));
        if let Some(entity) = entity {
            graft(&mut tree, path, &root, entity.clone());
        }
    }
    Some(tree)
}

/// The node at `target` inside a subtree value read at `at`.
fn subtree_at<'v>(value: &'v Value, at: &str, target: &str) -> Option<&'v Value> {
    if target == at {
        return Some(value);
    }
    if !is_within(target, at) {
        return None;
    }
    let rest = target.strip_prefix(at)?.strip_prefix('/')?;
    let mut node = value;
    for name in rest.split('/') {
        let Value::Array(children) = node.field("children")? else {
            return None;
        };
        node = children.iter().find(|child| {
            matches!(child.field("name"), Some(Value::String(n) | Value::StringName(n)) if n == name)
        })?;
    }
    Some(node)
}
