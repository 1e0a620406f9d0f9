//! Mirrors: what a Godot server subscribing to a subtree would hold. Each subscriber of
//! the simulation applies its pushes to a tree of its own, as the addon will; a push it
//! cannot apply, or a mirror that differs from its replica's subtree once the cluster is
//! quiet, is a feed bug (defect 8 of issue 9 was a move into the subtree pushed without the
//! moved nodes).

use std::collections::BTreeMap;

use treesync_core::engine::Push;
use treesync_core::op::{Op, Prop};
use treesync_core::{Limits, NodePath, Tree, Value};

/// The properties of a node given as Godot data (`{…, props: {name: value}, …}`).
fn props_of(node: &Value) -> Option<Vec<Prop>> {
    let Value::Dictionary(props) = node.field("props")? else {
        return None;
    };
    props
        .iter()
        .map(|(k, v)| match k {
            Value::String(k) => Some(Prop::new(k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// The `Create` ops that rebuild a subtree given as Godot data (`{name, class, props,
/// children}`, as snapshots push it) under `parent`.
fn creates_from_value(parent: &str, value: &Value, ops: &mut Vec<Op>) -> Option<()> {
    let text = |key: &str| match value.field(key)? {
        Value::String(s) | Value::StringName(s) => Some(s.clone()),
        _ => None,
    };
    let (name, class) = (text("name")?, text("class")?);
    let props = props_of(value)?;
    let Value::Array(children) = value.field("children")? else {
        return None;
    };
    let path = format!("{parent}/{name}");
    ops.push(Op::Create {
        parent: parent.to_owned(),
        name,
        class,
        props,
    });
    for child in children {
        creates_from_value(&path, child, ops)?;
    }
    Some(())
}

/// The ops that rebuild a snapshot of `/root` in an empty tree (the root always exists:
/// its properties and children are what the snapshot adds).
pub(crate) fn root_ops(tree: &Value) -> Result<Vec<Op>, String> {
    let Some(Value::Array(children)) = tree.field("children") else {
        return Err("a snapshot of /root without children".into());
    };
    let mut ops = Vec::new();
    let props = props_of(tree).ok_or("a bad snapshot")?;
    if !props.is_empty() {
        ops.push(Op::Set {
            path: "/root".into(),
            props,
        });
    }
    for child in children {
        creates_from_value("/root", child, &mut ops).ok_or("a bad snapshot")?;
    }
    Ok(ops)
}

struct Mirror {
    path: String,
    tree: Tree,
}

/// Every subscriber's mirror, by subscription id.
#[derive(Default)]
pub struct Mirrors {
    mirrors: BTreeMap<u64, Mirror>,
}

impl Mirrors {
    /// A new (or restarted) subscription of `path`: empty until its snapshot.
    pub fn subscribed(&mut self, sub: u64, path: &str) {
        let mirror = Mirror {
            path: path.to_owned(),
            tree: mirror_tree(),
        };
        self.mirrors.insert(sub, mirror);
    }

    /// A subscription that ended (its server crashed).
    pub fn forget(&mut self, sub: u64) {
        self.mirrors.remove(&sub);
    }

    /// Applies one push; `Err` says why the mirror could not.
    pub fn push(&mut self, sub: u64, push: &Push) -> Result<(), String> {
        let Some(mirror) = self.mirrors.get_mut(&sub) else {
            return Ok(());
        };
        match push {
            Push::Snapshot { tree, .. } => {
                mirror.tree = mirror_tree();
                let Some(tree) = tree else { return Ok(()) };
                if mirror.path == "/root" {
                    return apply(&mut mirror.tree, &root_ops(tree)?, "snapshot");
                }
                let parent = mirror.path.rsplit_once('/').map_or("/root", |(p, _)| p);
                let mut ops = Vec::new();
                creates_from_value(parent, tree, &mut ops).ok_or("a bad snapshot")?;
                apply(&mut mirror.tree, &ops, "snapshot")
            }
            Push::Change { index, ops, .. } => {
                apply(&mut mirror.tree, ops, &format!("change at index {index}"))
            }
            Push::Resolved { .. } => Ok(()),
        }
    }

    /// Compares subscription `sub`'s mirror with the replica's tree it mirrors.
    pub fn compare(&self, sub: u64, replica: &Tree) -> Result<(), String> {
        let Some(mirror) = self.mirrors.get(&sub) else {
            return Ok(());
        };
        let path = NodePath::parse(&mirror.path, &Limits::default()).expect("a valid path");
        if mirror.tree.subtree_value(&path) == replica.subtree_value(&path) {
            return Ok(());
        }
        Err(format!(
            "the mirror of {} differs from its replica's: {} vs {} nodes in the tree",
            mirror.path,
            mirror.tree.len(),
            replica.len()
        ))
    }
}

/// A mirror's tree makes placeholder ancestors as an entity shard's does: a move or create
/// that made them in the replica makes them here too (on the spine none is ever needed).
fn mirror_tree() -> Tree {
    Tree::new(Limits::default()).with_placeholders(treesync_core::shard::SHARD_DEPTH_DEFAULT)
}

fn apply(tree: &mut Tree, ops: &[Op], what: &str) -> Result<(), String> {
    for op in ops {
        tree.apply_op(op)
            .map_err(|e| format!("{what}: the mirror cannot apply {} ({e})", op.name()))?;
    }
    Ok(())
}
