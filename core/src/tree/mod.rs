//! The tree state machine: a Godot-style node tree that applies ops deterministically.
//!
//! Nodes live in an arena indexed by `NodeId`; each keeps its ordered child list and a
//! by-name index. Ids are internal: nothing outside the tree sees them, and snapshots are
//! id-free, so two replicas with the same history produce the same snapshot bytes.
//!
//! # Invariants (`check_invariants`, and `specs/NodeTree.tla`'s `IsTree`)
//! - Node 0 is the root, named `root`, with no parent; it is never deleted, renamed or moved.
//! - Every other live node has a live parent that lists it exactly once among its children.
//! - Sibling names are unique; each node's by-name index matches its child list.
//! - Every live node is reachable from the root (no cycles, no orphans).
//! - Limits hold: children per node, properties per node, total nodes.
//! - An op or transaction that returns `Err` leaves the tree exactly as it was.

mod apply;
mod error;
mod props;
mod snapshot;

use std::collections::BTreeMap;

pub use error::{TreeError, TREE_ERROR_CODES};
pub use snapshot::{
    ArchivedSnapshotNode, ArchivedTreeSnapshot, SnapshotError, SnapshotNode, TreeSnapshot,
};

use crate::limits::Limits;
use crate::path::{NodePath, ROOT_NAME};
use crate::value::Value;

/// Index of a node in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct NodeId(u32);

const ROOT: NodeId = NodeId(0);

/// Class of the root node (Godot's root is a Window/Viewport; we only need a name).
pub const ROOT_CLASS: &str = "Node";

#[derive(Clone, Debug, PartialEq)]
struct Node {
    name: String,
    class: String,
    parent: Option<NodeId>,
    children: Vec<NodeId>,
    child_by_name: BTreeMap<String, NodeId>,
    props: props::PropMap,
}

impl Node {
    fn new(name: String, class: String, parent: Option<NodeId>) -> Node {
        Node {
            name,
            class,
            parent,
            children: Vec::new(),
            child_by_name: BTreeMap::new(),
            props: props::PropMap::default(),
        }
    }
}

/// A read-only view of one node.
#[derive(Clone, Copy, Debug)]
pub struct NodeRef<'t> {
    tree: &'t Tree,
    id: NodeId,
}

impl<'t> NodeRef<'t> {
    fn node(&self) -> &'t Node {
        self.tree.node(self.id)
    }

    pub fn name(&self) -> &'t str {
        &self.node().name
    }

    pub fn class(&self) -> &'t str {
        &self.node().class
    }

    /// Properties in name order.
    pub fn props(&self) -> impl Iterator<Item = (&'t str, &'t Value)> {
        self.node().props.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn prop(&self, name: &str) -> Option<&'t Value> {
        self.node().props.get(name)
    }

    /// Children in order.
    pub fn children(&self) -> impl Iterator<Item = NodeRef<'t>> + 't {
        let tree = self.tree;
        self.node()
            .children
            .iter()
            .map(move |id| NodeRef { tree, id: *id })
    }
}

/// A replicated node tree (one per shard replica).
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    live_count: usize,
    limits: Limits,
    /// In an entity shard, the shard-root depth: ancestors shallower than it are made as
    /// placeholders when a create or move needs them (0: never, as in the spine).
    placeholder_depth: usize,
}

/// A stable hash of a subtree as Godot data (`subtree_value`): its Godot 4 encoding, which
/// Godot's format fixes byte for byte, hashed with `shard::stable_hash`.
pub fn subtree_digest(subtree: &Value) -> u64 {
    // A value that cannot be encoded (none the tree holds) hashes as empty on every side.
    let bytes = crate::codec::encode(subtree, crate::codec::GodotVersion::V4).unwrap_or_default();
    crate::shard::stable_hash(&bytes)
}

/// The class of an ancestor an entity shard made on demand (`Tree::with_placeholders`).
pub const PLACEHOLDER_CLASS: &str = "Node";

impl PartialEq for Tree {
    /// Trees are equal when their snapshots are: same shape, names, classes, properties.
    fn eq(&self, other: &Tree) -> bool {
        self.to_snapshot() == other.to_snapshot()
    }
}

impl Tree {
    /// A tree holding only `/root`.
    pub fn new(limits: Limits) -> Tree {
        assert_eq!(limits.validate(), Ok(()), "limits must be valid");
        let root = Node::new(ROOT_NAME.to_owned(), ROOT_CLASS.to_owned(), None);
        Tree {
            nodes: vec![Some(root)],
            free: Vec::new(),
            live_count: 1,
            limits,
            placeholder_depth: 0,
        }
    }

    /// Makes this an entity shard's tree: a create or move under a missing ancestor
    /// shallower than `shard_depth` makes the ancestor (class `PLACEHOLDER_CLASS`).
    pub fn with_placeholders(mut self, shard_depth: usize) -> Tree {
        self.placeholder_depth = shard_depth;
        self
    }

    pub fn placeholder_depth(&self) -> usize {
        self.placeholder_depth
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.live_count
    }

    /// Always false: the root always exists.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            tree: self,
            id: ROOT,
        }
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &NodePath) -> Option<NodeRef<'_>> {
        self.lookup(path).map(|id| NodeRef { tree: self, id })
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.0 as usize]
            .as_ref()
            .expect("ids held by the tree point at live nodes")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.0 as usize]
            .as_mut()
            .expect("ids held by the tree point at live nodes")
    }

    fn lookup(&self, path: &NodePath) -> Option<NodeId> {
        let mut segments = path.segments();
        assert_eq!(
            segments.next(),
            Some(ROOT_NAME),
            "a NodePath starts at the root"
        );
        segments.try_fold(ROOT, |id, name| {
            self.node(id).child_by_name.get(name).copied()
        })
    }

    fn path_of(&self, id: NodeId) -> String {
        let mut names = Vec::new();
        let mut at = Some(id);
        while let Some(node_id) = at {
            let node = self.node(node_id);
            names.push(node.name.as_str());
            at = node.parent;
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    /// The subtree at `path` as Godot data: `{name, class, props, children: [subtrees]}`.
    pub fn subtree_value(&self, path: &NodePath) -> Option<Value> {
        self.lookup(path).map(|id| self.node_value(id, true))
    }

    /// The node at `path` as Godot data: `{name, class, props, children: [names]}` (its
    /// children by name only: O(children), not O(subtree)).
    pub fn node_summary(&self, path: &NodePath) -> Option<Value> {
        self.lookup(path).map(|id| self.node_value(id, false))
    }

    /// `{name, class, props, children}`; children as whole subtrees when `deep`, else names.
    fn node_value(&self, id: NodeId, deep: bool) -> Value {
        let node = self.node(id);
        let props = node
            .props
            .iter()
            .map(|(k, v)| (Value::String(k.clone()), v.clone()))
            .collect();
        let children = node
            .children
            .iter()
            .map(|c| match deep {
                true => self.node_value(*c, true),
                false => Value::String(self.node(*c).name.clone()),
            })
            .collect();
        Value::Dictionary(vec![
            (
                Value::String("name".into()),
                Value::String(node.name.clone()),
            ),
            (
                Value::String("class".into()),
                Value::String(node.class.clone()),
            ),
            (Value::String("props".into()), Value::Dictionary(props)),
            (Value::String("children".into()), Value::Array(children)),
        ])
    }

    /// Checks every structural invariant; panics with context on the first broken one.
    /// O(n): run after every step in tests and the simulator, not on the hot path.
    pub fn check_invariants(&self) {
        let root = self.node(ROOT);
        assert_eq!(root.name, ROOT_NAME, "the root is named root");
        assert_eq!(root.parent, None, "the root has no parent");
        let mut reached = 0usize;
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            reached += 1;
            assert!(
                reached <= self.live_count,
                "more nodes reachable than live: a cycle"
            );
            let node = self.node(id);
            assert!(
                node.children.len() <= self.limits.children_per_node_max,
                "children limit"
            );
            assert!(
                node.props.len() <= self.limits.props_per_node_max,
                "props limit"
            );
            assert_eq!(
                node.children.len(),
                node.child_by_name.len(),
                "index matches children at {id:?}"
            );
            for child_id in &node.children {
                let child = self.node(*child_id);
                assert_eq!(
                    child.parent,
                    Some(id),
                    "child {child_id:?} points back at its parent"
                );
                assert_eq!(
                    node.child_by_name.get(&child.name),
                    Some(child_id),
                    "index entry for {:?}",
                    child.name
                );
                stack.push(*child_id);
            }
        }
        assert_eq!(
            reached, self.live_count,
            "every live node is reachable from the root"
        );
        let live = self.nodes.iter().filter(|n| n.is_some()).count();
        assert_eq!(live, self.live_count, "live count matches the arena");
        assert_eq!(
            self.nodes.len() - live,
            self.free.len(),
            "every dead slot is on the free list"
        );
        assert!(self.live_count <= self.limits.nodes_max, "node limit");
    }
}

#[cfg(test)]
mod tests;
