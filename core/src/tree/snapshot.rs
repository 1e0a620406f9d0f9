//! Whole-tree snapshots: a pre-order list of nodes, archived with rkyv.
//!
//! # Invariants
//! - `nodes[0]` is the root (`parent == ROOT_PARENT`); every other node's parent index is
//!   smaller than its own (pre-order), so one forward pass rebuilds the tree.
//! - Snapshots carry no arena ids: equal trees give equal snapshots, byte for byte.
//! - Restoring validates everything an op would (names, classes, values, limits): a snapshot
//!   from the network or the disk is untrusted input.

use rkyv::{Archive, Deserialize, Serialize};
use thiserror::Error;

use super::{Node, NodeId, Tree, TreeError, ROOT};
use crate::limits::Limits;
use crate::op::Prop;
use crate::path::{validate_name, ROOT_NAME};
use crate::wire::{self, WireError};

/// Parent index of the root entry.
pub const ROOT_PARENT: u32 = u32::MAX;

/// One node of a snapshot.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotNode {
    /// Index of the parent in `TreeSnapshot::nodes`, or `ROOT_PARENT`.
    pub parent: u32,
    pub name: String,
    pub class: String,
    /// In name order.
    pub props: Vec<Prop>,
}

/// A whole tree in pre-order.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TreeSnapshot {
    pub nodes: Vec<SnapshotNode>,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("snapshot frame: {0}")]
    Wire(#[from] WireError),
    #[error("snapshot node {index}: {reason}")]
    Malformed { index: usize, reason: &'static str },
    #[error("snapshot node {index}: {source}")]
    Invalid { index: usize, source: TreeError },
}

impl Tree {
    /// The tree as a snapshot, in pre-order.
    pub fn to_snapshot(&self) -> TreeSnapshot {
        let mut nodes = Vec::with_capacity(self.live_count);
        let mut stack = vec![(ROOT, ROOT_PARENT)];
        while let Some((id, parent)) = stack.pop() {
            let node = self.node(id);
            let index = u32::try_from(nodes.len()).expect("nodes_max fits in u32");
            nodes.push(SnapshotNode {
                parent,
                name: node.name.clone(),
                class: node.class.clone(),
                props: node
                    .props
                    .iter()
                    .map(|(k, v)| Prop::new(k.clone(), v.clone()))
                    .collect(),
            });
            stack.extend(node.children.iter().rev().map(|c| (*c, index)));
        }
        assert_eq!(
            nodes.len(),
            self.live_count,
            "a snapshot holds every live node"
        );
        TreeSnapshot { nodes }
    }

    /// The snapshot as a checksummed rkyv frame.
    pub fn snapshot_bytes(&self) -> rkyv::util::AlignedVec {
        wire::encode_snapshot(&self.to_snapshot())
    }

    /// Rebuilds a tree from snapshot bytes (a frame from `snapshot_bytes`).
    pub fn restore(bytes: &[u8], limits: Limits) -> Result<Tree, SnapshotError> {
        Tree::from_snapshot(&wire::decode_snapshot(bytes)?, limits)
    }

    /// Rebuilds a tree from a snapshot, validating every node.
    pub fn from_snapshot(snapshot: &TreeSnapshot, limits: Limits) -> Result<Tree, SnapshotError> {
        let mut tree = Tree::new(limits);
        let malformed = |index, reason| SnapshotError::Malformed { index, reason };
        let root = snapshot
            .nodes
            .first()
            .ok_or(malformed(0, "a snapshot holds at least the root"))?;
        if root.parent != ROOT_PARENT || root.name != ROOT_NAME {
            return Err(malformed(0, "the first node must be /root"));
        }
        if snapshot.nodes.len() > tree.limits.nodes_max {
            return Err(malformed(snapshot.nodes.len(), "more nodes than nodes_max"));
        }
        // (arena id, depth, path bytes) per snapshot index, to check path limits cheaply.
        let mut placed: Vec<(NodeId, usize, usize)> = Vec::with_capacity(snapshot.nodes.len());
        for (index, entry) in snapshot.nodes.iter().enumerate() {
            let invalid = |source| SnapshotError::Invalid { index, source };
            tree.check_class(&entry.class).map_err(invalid)?;
            tree.check_props(&entry.props).map_err(invalid)?;
            if entry.props.windows(2).any(|w| w[0].name >= w[1].name) {
                return Err(malformed(
                    index,
                    "properties must be unique and in name order",
                ));
            }
            if entry.props.len() > tree.limits.props_per_node_max
                || entry
                    .props
                    .iter()
                    .any(|p| p.value == crate::value::Value::Nil)
            {
                return Err(malformed(index, "too many properties, or a Nil property"));
            }
            let id = if index == 0 {
                ROOT
            } else {
                tree.place(&placed, index, entry)?
            };
            let node = tree.node_mut(id);
            node.class = entry.class.clone();
            node.props = entry
                .props
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect();
            let (depth, bytes) = match entry.parent {
                ROOT_PARENT => (1, 1 + ROOT_NAME.len()),
                p => (
                    placed[p as usize].1 + 1,
                    placed[p as usize].2 + 1 + entry.name.len(),
                ),
            };
            placed.push((id, depth, bytes));
        }
        tree.check_invariants();
        Ok(tree)
    }

    /// Adds snapshot entry `index` under its (already placed) parent.
    fn place(
        &mut self,
        placed: &[(NodeId, usize, usize)],
        index: usize,
        entry: &SnapshotNode,
    ) -> Result<NodeId, SnapshotError> {
        let invalid = |source: TreeError| SnapshotError::Invalid { index, source };
        let parent_index = entry.parent as usize;
        if parent_index >= index {
            return Err(SnapshotError::Malformed {
                index,
                reason: "parent must come before the node",
            });
        }
        let (parent, parent_depth, parent_bytes) = placed[parent_index];
        validate_name(&entry.name, &self.limits).map_err(|e| invalid(e.into()))?;
        if parent_depth + 1 > self.limits.path_depth_max
            || parent_bytes + 1 + entry.name.len() > self.limits.path_bytes_max
        {
            return Err(SnapshotError::Malformed {
                index,
                reason: "path exceeds the path limits",
            });
        }
        self.check_room_for_child(parent, &entry.name)
            .map_err(invalid)?;
        let id = NodeId(u32::try_from(self.nodes.len()).expect("nodes_max fits in u32"));
        self.nodes.push(Some(Node::new(
            entry.name.clone(),
            entry.class.clone(),
            Some(parent),
        )));
        self.live_count += 1;
        self.attach(parent, id, None);
        Ok(id)
    }
}
