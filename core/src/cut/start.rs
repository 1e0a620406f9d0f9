//! A shard's subtree at a cut: its snapshot with its changes up to the cut replayed on it.

use crate::op::Op;
use crate::path::NodePath;
use crate::tree::Tree;
use crate::txn::split::creates_from_value;
use crate::value::Value;
use crate::Limits;

/// The subtree at `path` after replaying `changes` (each one transaction's ops, in order)
/// on `snapshot` (the subtree as the shard's feed started, `None`: absent). Entity shards
/// keep placeholder ancestors (`root_depth`), so their trees are rebuilt with them.
pub(super) fn shard_at<'o>(
    path: &NodePath,
    snapshot: Option<&Value>,
    changes: impl Iterator<Item = &'o [Op]>,
    root_depth: usize,
) -> Result<Option<Value>, String> {
    let mut tree = Tree::new(Limits::default()).with_placeholders(root_depth);
    let mut ops = Vec::new();
    if let Some(snapshot) = snapshot {
        match path.parent() {
            Some(parent) => {
                let name = path.as_str().rsplit('/').next().unwrap_or_default();
                creates_from_value(parent.as_str(), name, snapshot, &mut ops);
            }
            None => root_ops(path.as_str(), snapshot, &mut ops),
        }
    }
    let apply = |tree: &mut Tree, op: &Op| {
        tree.apply_op(op)
            .map_err(|e| format!("{} of {}: {e}", op.name(), op.target_path()))
    };
    for op in &ops {
        apply(&mut tree, op)?;
    }
    for op in changes.flatten() {
        apply(&mut tree, op)?;
    }
    Ok(tree.subtree_value(path))
}

/// The root's properties and children (the root itself always exists).
fn root_ops(root: &str, snapshot: &Value, ops: &mut Vec<Op>) {
    let mut whole = Vec::new();
    creates_from_value("", root.trim_start_matches('/'), snapshot, &mut whole);
    let mut whole = whole.into_iter();
    if let Some(Op::Create { props, .. }) = whole.next() {
        if !props.is_empty() {
            ops.push(Op::Set {
                path: root.to_owned(),
                props,
            });
        }
    }
    ops.extend(whole);
}
