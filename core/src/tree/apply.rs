//! Applying ops and transactions, with an undo log that makes a failed transaction leave
//! the tree exactly as it was (the arena and its free list included).
//!
//! Every op validates everything before it mutates anything, so a failing op pushes no undo
//! record; a failing op inside a transaction rolls back the ops before it.

use super::{Node, NodeId, Tree, TreeError, PLACEHOLDER_CLASS, ROOT};
use crate::op::{Expect, Op, Precondition, Prop, Txn};
use crate::path::{validate_name, NodePath, PathError};
use crate::value::Value;

/// How to reverse one applied op.
enum Undo {
    Created {
        id: NodeId,
        parent: NodeId,
        reused_slot: bool,
    },
    Deleted {
        parent: NodeId,
        index: usize,
        freed: Vec<(NodeId, Node)>,
    },
    PropsSet {
        id: NodeId,
        old: Vec<(String, Option<Value>)>,
    },
    Renamed {
        id: NodeId,
        old_name: String,
    },
    Moved {
        id: NodeId,
        old_parent: NodeId,
        old_index: usize,
    },
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Tree {
    /// Applies one op; on `Err` nothing changed.
    pub fn apply_op(&mut self, op: &Op) -> Result<(), TreeError> {
        let mut undo = Vec::new();
        let result = self.apply_one(op, &mut undo);
        if result.is_err() {
            // Only placeholders an op made before failing are undone here: every op
            // validates before it mutates its own node.
            self.roll_back(undo);
        }
        result
    }

    /// Applies a transaction atomically: preconditions first, then every op, or nothing.
    pub fn apply_txn(&mut self, txn: &Txn) -> Result<(), TreeError> {
        let mut undo = Vec::with_capacity(txn.ops.len());
        let result = self.apply_all(txn, &mut undo);
        if result.is_err() {
            self.roll_back(undo);
        }
        result
    }

    /// Whether `txn` would apply now, leaving the tree exactly as it was either way: an
    /// intent is validated when it is written and applied when it is resolved, and its
    /// locks keep what it checked true in between (`txn::locks`).
    pub fn check_txn(&mut self, txn: &Txn) -> Result<(), TreeError> {
        let live_before = self.live_count;
        let mut undo = Vec::with_capacity(txn.ops.len());
        let result = self.apply_all(txn, &mut undo);
        self.roll_back(undo);
        assert_eq!(self.live_count, live_before, "a check changes nothing");
        result
    }

    /// Checks and applies every op, pushing undo records; on `Err` the caller rolls back.
    fn apply_all(&mut self, txn: &Txn, undo: &mut Vec<Undo>) -> Result<(), TreeError> {
        self.check_txn_size(txn)?;
        for (index, precondition) in txn.expect.iter().enumerate() {
            self.check_precondition(index, precondition)?;
        }
        for (index, op) in txn.ops.iter().enumerate() {
            self.apply_one(op, undo)
                .map_err(|source| TreeError::InTxn {
                    index,
                    op: op.name(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Nodes `txn` would add if it applied (creates; a move or rename adds none).
    pub fn nodes_created_by(txn: &Txn) -> usize {
        txn.ops
            .iter()
            .filter(|op| matches!(op, Op::Create { .. }))
            .count()
    }

    fn check_txn_size(&self, txn: &Txn) -> Result<(), TreeError> {
        let max = self.limits.txn_ops_max;
        for (what, count) in [("ops", txn.ops.len()), ("preconditions", txn.expect.len())] {
            if count > max {
                return Err(TreeError::TxnTooLarge { what, count, max });
            }
        }
        Ok(())
    }

    fn check_precondition(&self, index: usize, p: &Precondition) -> Result<(), TreeError> {
        let path = self.parse(&p.path)?;
        let node = self.lookup(&path);
        let holds = match (&p.expect, node) {
            (Expect::Exists, found) => found.is_some(),
            (Expect::Absent, found) => found.is_none(),
            (Expect::PropEquals { prop, value }, Some(id)) => {
                self.node(id).props.get(prop).unwrap_or(&Value::Nil) == value
            }
            (Expect::PropEquals { .. }, None) => false,
            (Expect::SubtreeDigest { digest }, Some(id)) => {
                super::subtree_digest(&self.node_value(id, true)) == *digest
            }
            (Expect::SubtreeDigest { .. }, None) => false,
        };
        if holds {
            Ok(())
        } else {
            Err(TreeError::PreconditionFailed {
                index,
                path: p.path.clone(),
            })
        }
    }

    fn parse(&self, text: &str) -> Result<NodePath, TreeError> {
        Ok(NodePath::parse(text, &self.limits)?)
    }

    fn find(&self, text: &str) -> Result<(NodePath, NodeId), TreeError> {
        let path = self.parse(text)?;
        match self.lookup(&path) {
            Some(id) => Ok((path, id)),
            None => Err(TreeError::NotFound {
                path: path.as_str().to_owned(),
            }),
        }
    }

    fn find_non_root(
        &self,
        text: &str,
        action: &'static str,
    ) -> Result<(NodePath, NodeId), TreeError> {
        let (path, id) = self.find(text)?;
        if id == ROOT {
            return Err(TreeError::RootIsFixed { action });
        }
        Ok((path, id))
    }

    fn apply_one(&mut self, op: &Op, undo: &mut Vec<Undo>) -> Result<(), TreeError> {
        match op {
            Op::Create {
                parent,
                name,
                class,
                props,
            } => self.create(parent, name, class, props, undo),
            Op::Delete { path } => self.delete(path, undo),
            Op::Set { path, props } => self.set(path, props, undo),
            Op::Rename { path, new_name } => self.rename(path, new_name, undo),
            Op::Move {
                path,
                new_parent,
                index,
            } => self.move_node(path, new_parent, *index, undo),
            Op::Emit { path, signal, args } => self.check_emit(path, signal, args),
        }
    }

    pub(super) fn check_class(&self, class: &str) -> Result<(), TreeError> {
        if class.len() > self.limits.name_bytes_max || !is_identifier(class) {
            return Err(TreeError::InvalidClass {
                class: class.chars().take(64).collect(),
            });
        }
        Ok(())
    }

    pub(super) fn check_props(&self, props: &[Prop]) -> Result<(), TreeError> {
        for prop in props {
            let name = &prop.name;
            if name.is_empty()
                || name.len() > self.limits.name_bytes_max
                || name.chars().any(char::is_control)
            {
                return Err(TreeError::InvalidProperty {
                    name: name.chars().take(64).collect(),
                });
            }
            self.limits
                .check_value(&prop.value)
                .map_err(|source| TreeError::Value {
                    prop: name.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The property count of `id` after `props` were applied in order.
    fn props_count_after(&self, id: Option<NodeId>, props: &[Prop]) -> usize {
        let existing = id.map(|id| &self.node(id).props);
        let mut changes: std::collections::BTreeMap<&str, bool> = Default::default();
        for prop in props {
            changes.insert(&prop.name, !matches!(prop.value, Value::Nil));
        }
        let mut count = existing.map_or(0, |p| p.len());
        for (name, present) in changes {
            let had = existing.is_some_and(|p| p.contains_key(name));
            count = count + usize::from(present && !had) - usize::from(!present && had);
        }
        count
    }

    fn check_props_count(
        &self,
        path: &str,
        id: Option<NodeId>,
        props: &[Prop],
    ) -> Result<(), TreeError> {
        let (count, max) = (
            self.props_count_after(id, props),
            self.limits.props_per_node_max,
        );
        if count > max {
            return Err(TreeError::TooManyProperties {
                path: path.to_owned(),
                count,
                max,
            });
        }
        Ok(())
    }

    pub(super) fn check_room_for_child(&self, parent: NodeId, name: &str) -> Result<(), TreeError> {
        let node = self.node(parent);
        if node.child_by_name.contains_key(name) {
            return Err(TreeError::NameTaken {
                parent: self.path_of(parent),
                name: name.to_owned(),
            });
        }
        let (count, max) = (node.children.len() + 1, self.limits.children_per_node_max);
        if count > max {
            return Err(TreeError::TooManyChildren {
                path: self.path_of(parent),
                count,
                max,
            });
        }
        Ok(())
    }

    fn create(
        &mut self,
        parent: &str,
        name: &str,
        class: &str,
        props: &[Prop],
        undo: &mut Vec<Undo>,
    ) -> Result<(), TreeError> {
        let (parent_path, parent_id) = self.find_parent(parent, undo)?;
        parent_path.child(name, &self.limits)?;
        self.check_class(class)?;
        self.check_props(props)?;
        self.check_props_count(&format!("{parent_path}/{name}"), None, props)?;
        self.insert_node(parent_id, name, class, props, undo)
    }

    /// Adds a checked node as the last child of `parent_id`, if there is room.
    fn insert_node(
        &mut self,
        parent_id: NodeId,
        name: &str,
        class: &str,
        props: &[Prop],
        undo: &mut Vec<Undo>,
    ) -> Result<(), TreeError> {
        self.check_room_for_child(parent_id, name)?;
        let (count, max) = (self.live_count + 1, self.limits.nodes_max);
        if count > max {
            return Err(TreeError::TooManyNodes { count, max });
        }
        let mut node = Node::new(name.to_owned(), class.to_owned(), Some(parent_id));
        for prop in props {
            match &prop.value {
                Value::Nil => node.props.remove(&prop.name),
                value => node.props.insert(prop.name.clone(), value.clone()),
            };
        }
        let (id, reused_slot) = match self.free.pop() {
            Some(id) => (id, true),
            None => (
                NodeId(u32::try_from(self.nodes.len()).expect("nodes_max fits in u32")),
                false,
            ),
        };
        if reused_slot {
            self.nodes[id.0 as usize] = Some(node);
        } else {
            self.nodes.push(Some(node));
        }
        self.live_count += 1;
        self.attach(parent_id, id, None);
        undo.push(Undo::Created {
            id,
            parent: parent_id,
            reused_slot,
        });
        Ok(())
    }

    /// The node a create or move puts its node under. In an entity shard's tree
    /// (`placeholder_depth` > 0) missing ancestors above the shard roots are made as
    /// placeholders first: the spine is their authority (DESIGN I4), the entity shard only
    /// needs a place for its subtrees.
    fn find_parent(
        &mut self,
        text: &str,
        undo: &mut Vec<Undo>,
    ) -> Result<(NodePath, NodeId), TreeError> {
        let path = self.parse(text)?;
        if let Some(id) = self.lookup(&path) {
            return Ok((path, id));
        }
        if path.depth() >= self.placeholder_depth {
            return Err(TreeError::NotFound {
                path: path.as_str().to_owned(),
            });
        }
        let mut id = ROOT;
        for name in path.segments().skip(1) {
            id = match self.node(id).child_by_name.get(name) {
                Some(child) => *child,
                None => {
                    self.insert_node(id, name, PLACEHOLDER_CLASS, &[], undo)?;
                    *self
                        .node(id)
                        .child_by_name
                        .get(name)
                        .expect("just inserted")
                }
            };
        }
        Ok((path, id))
    }

    /// Inserts `id` among `parent`'s children at `index` (or last) and indexes its name.
    pub(super) fn attach(&mut self, parent: NodeId, id: NodeId, index: Option<usize>) {
        let name = self.node(id).name.clone();
        self.node_mut(id).parent = Some(parent);
        let p = self.node_mut(parent);
        let index = index.unwrap_or(p.children.len());
        p.children.insert(index, id);
        let previous = p.child_by_name.insert(name, id);
        assert!(
            previous.is_none(),
            "attach is only called after the name was checked free"
        );
    }

    /// Removes `id` from its parent's children; returns (parent, index it had).
    fn detach(&mut self, id: NodeId) -> (NodeId, usize) {
        let node = self.node(id);
        let parent = node.parent.expect("only non-root nodes are detached");
        let name = node.name.clone();
        let p = self.node_mut(parent);
        let index = p
            .children
            .iter()
            .position(|c| *c == id)
            .expect("a child is listed by its parent");
        p.children.remove(index);
        p.child_by_name.remove(&name);
        (parent, index)
    }

    fn delete(&mut self, path: &str, undo: &mut Vec<Undo>) -> Result<(), TreeError> {
        let (_, id) = self.find_non_root(path, "deleted")?;
        let (parent, index) = self.detach(id);
        let mut freed = Vec::new();
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            let node = self.nodes[next.0 as usize]
                .take()
                .expect("subtree nodes are live");
            stack.extend(node.children.iter().rev());
            self.free.push(next);
            freed.push((next, node));
        }
        self.live_count -= freed.len();
        undo.push(Undo::Deleted {
            parent,
            index,
            freed,
        });
        Ok(())
    }

    fn set(&mut self, path: &str, props: &[Prop], undo: &mut Vec<Undo>) -> Result<(), TreeError> {
        let (path, id) = self.find(path)?;
        self.check_props(props)?;
        self.check_props_count(path.as_str(), Some(id), props)?;
        let node = self.node_mut(id);
        let old = props
            .iter()
            .map(|prop| {
                let before = match &prop.value {
                    Value::Nil => node.props.remove(&prop.name),
                    value => node.props.insert(prop.name.clone(), value.clone()),
                };
                (prop.name.clone(), before)
            })
            .collect();
        undo.push(Undo::PropsSet { id, old });
        Ok(())
    }

    /// (levels, bytes) of the deepest path below `id`, relative to `id` itself.
    fn extent_below(&self, id: NodeId) -> (usize, usize) {
        let node = self.node(id);
        node.children.iter().fold((0, 0), |(levels, bytes), child| {
            let (l, b) = self.extent_below(*child);
            let name_len = self.node(*child).name.len();
            (levels.max(l + 1), bytes.max(b + 1 + name_len))
        })
    }

    /// Checks that `id`'s subtree still fits the path limits under `parent_path` with `name`.
    fn check_subtree_fits(
        &self,
        id: NodeId,
        parent_path: &NodePath,
        name: &str,
    ) -> Result<(), TreeError> {
        let (levels, bytes) = self.extent_below(id);
        let depth = parent_path.depth() + 1 + levels;
        if depth > self.limits.path_depth_max {
            return Err(PathError::TooDeep {
                depth,
                max: self.limits.path_depth_max,
            }
            .into());
        }
        let total = parent_path.as_str().len() + 1 + name.len() + bytes;
        if total > self.limits.path_bytes_max {
            return Err(PathError::TooLong {
                bytes: total,
                max: self.limits.path_bytes_max,
            }
            .into());
        }
        Ok(())
    }

    fn rename(
        &mut self,
        path: &str,
        new_name: &str,
        undo: &mut Vec<Undo>,
    ) -> Result<(), TreeError> {
        let (path, id) = self.find_non_root(path, "renamed")?;
        validate_name(new_name, &self.limits)?;
        if self.node(id).name == new_name {
            return Ok(());
        }
        let parent_path = path.parent().expect("a non-root path has a parent");
        let parent = self.node(id).parent.expect("a non-root node has a parent");
        if self.node(parent).child_by_name.contains_key(new_name) {
            return Err(TreeError::NameTaken {
                parent: parent_path.to_string(),
                name: new_name.to_owned(),
            });
        }
        self.check_subtree_fits(id, &parent_path, new_name)?;
        let old_name = std::mem::replace(&mut self.node_mut(id).name, new_name.to_owned());
        let p = self.node_mut(parent);
        p.child_by_name.remove(&old_name);
        p.child_by_name.insert(new_name.to_owned(), id);
        undo.push(Undo::Renamed { id, old_name });
        Ok(())
    }

    fn move_node(
        &mut self,
        path: &str,
        new_parent: &str,
        index: Option<u32>,
        undo: &mut Vec<Undo>,
    ) -> Result<(), TreeError> {
        let (path, id) = self.find_non_root(path, "moved")?;
        let (parent_path, parent_id) = self.find_parent(new_parent, undo)?;
        if parent_path.is_within(&path) {
            return Err(TreeError::Cycle {
                path: path.to_string(),
                new_parent: parent_path.to_string(),
            });
        }
        let old_parent = self.node(id).parent.expect("a non-root node has a parent");
        let name = self.node(id).name.clone();
        if old_parent != parent_id {
            self.check_room_for_child(parent_id, &name)?;
        }
        let len_after = self.node(parent_id).children.len() - usize::from(old_parent == parent_id);
        let at = match index {
            Some(i) if i as usize > len_after => {
                return Err(TreeError::IndexOutOfRange {
                    parent: parent_path.to_string(),
                    index: i,
                    len: len_after,
                });
            }
            Some(i) => Some(i as usize),
            None => None,
        };
        self.check_subtree_fits(id, &parent_path, &name)?;
        let (old_parent, old_index) = self.detach(id);
        self.attach(parent_id, id, at);
        undo.push(Undo::Moved {
            id,
            old_parent,
            old_index,
        });
        Ok(())
    }

    fn check_emit(&self, path: &str, signal: &str, args: &[Value]) -> Result<(), TreeError> {
        self.find(path)?;
        if signal.len() > self.limits.name_bytes_max || !is_identifier(signal) {
            return Err(TreeError::InvalidSignal {
                name: signal.chars().take(64).collect(),
            });
        }
        // The arguments are checked as one Array value: count, nesting and size together.
        let args = Value::Array(args.to_vec());
        self.limits
            .check_value(&args)
            .map_err(|source| TreeError::Value {
                prop: format!("{signal}(args)"),
                source,
            })
    }

    fn roll_back(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Created {
                    id,
                    parent,
                    reused_slot,
                } => {
                    assert!(
                        self.node(id).children.is_empty(),
                        "later ops were undone first"
                    );
                    let (p, _) = self.detach(id);
                    assert_eq!(p, parent, "undo restores in reverse order");
                    self.nodes[id.0 as usize] = None;
                    if reused_slot {
                        self.free.push(id);
                    } else {
                        assert_eq!(
                            self.nodes.len(),
                            id.0 as usize + 1,
                            "a fresh slot was the last"
                        );
                        self.nodes.pop();
                    }
                    self.live_count -= 1;
                }
                Undo::Deleted {
                    parent,
                    index,
                    freed,
                } => {
                    let subtree_root = freed.first().expect("a delete frees at least one node").0;
                    self.live_count += freed.len();
                    for (id, node) in freed.into_iter().rev() {
                        assert_eq!(
                            self.free.pop(),
                            Some(id),
                            "freed ids are on top of the free list"
                        );
                        self.nodes[id.0 as usize] = Some(node);
                    }
                    self.attach(parent, subtree_root, Some(index));
                }
                Undo::PropsSet { id, old } => {
                    let props = &mut self.node_mut(id).props;
                    for (name, before) in old.into_iter().rev() {
                        match before {
                            Some(value) => props.insert(name, value),
                            None => props.remove(&name),
                        };
                    }
                }
                Undo::Renamed { id, old_name } => {
                    let parent = self
                        .node(id)
                        .parent
                        .expect("renamed nodes are not the root");
                    let new_name = std::mem::replace(&mut self.node_mut(id).name, old_name.clone());
                    let p = self.node_mut(parent);
                    p.child_by_name.remove(&new_name);
                    p.child_by_name.insert(old_name, id);
                }
                Undo::Moved {
                    id,
                    old_parent,
                    old_index,
                } => {
                    self.detach(id);
                    self.attach(old_parent, id, Some(old_index));
                }
            }
        }
    }
}
