//! `specs/NodeTree.tla`'s whole state graph (through `specs/gen/NodeTreeGen.tla`, which adds
//! the spec's verdict `accepted`; constants of `specs/gen/NodeTreeGen.cfg`) replayed on
//! `core::tree::Tree`: every path `specs/gen_tests.py` wrote to `spec_paths/tree.txt`.
//!
//! Actions ↔ code: `ApplyCreate` ~ `Op::Create`, `ApplyDelete` ~ `Op::Delete`, `ApplyMove`
//! ~ `Op::Move`, `ApplyRename` ~ `Op::Rename`, each through `Tree::apply_op`; `accepted` is
//! whether it returned `Ok`. The spec's nodes have identities (`n1`), the tree's only paths:
//! each node the test creates carries its spec identity in the property `spec_id`, an op
//! addresses a node by its path in the tree it meets, and a node not in the tree by a path
//! that cannot exist. The projection walks the tree from the root, so a node cut off from
//! it is out of the tree, as the spec's `InTree` has it.

mod spec_replay;

use std::collections::BTreeMap;

use spec_replay::{Implementation, SpecPaths, SpecState};
use treesync_core::{Limits, Op, Prop, Tree, TreeError, Value};

const PATHS: &str = include_str!("spec_paths/tree.txt");
/// The property holding a node's spec identity.
const SPEC_ID: &str = "spec_id";
const ROOT: &str = "root";

/// The tree operations the spec's actions drive: `Tree` itself, or a deliberately wrong
/// wrapper that shows the replay catches a disagreement.
trait TreeOps {
    fn apply_op(&mut self, op: &Op) -> Result<(), TreeError>;
    fn tree(&self) -> &Tree;
}

impl TreeOps for Tree {
    fn apply_op(&mut self, op: &Op) -> Result<(), TreeError> {
        Tree::apply_op(self, op)
    }

    fn tree(&self) -> &Tree {
        self
    }
}

/// Where a spec node is in the implementation's tree.
struct Located {
    path: String,
    parent: String,
    name: String,
}

/// A tree driven by the spec's ops, with the spec's verdict on the last one.
struct SpecTree<T> {
    tree: T,
    nodes: Vec<String>,
    accepted: bool,
}

impl<T: TreeOps> SpecTree<T> {
    fn new(spec: &SpecPaths, tree: T) -> SpecTree<T> {
        SpecTree {
            tree,
            nodes: spec.constant_set("Nodes"),
            accepted: true,
        }
    }

    /// Every spec node reachable from the root, by its `spec_id`.
    fn locate(&self) -> BTreeMap<String, Located> {
        let mut found = BTreeMap::new();
        let root = self.tree.tree().root();
        let mut stack = vec![(root, format!("/{ROOT}"), ROOT.to_owned())];
        while let Some((node, path, id)) = stack.pop() {
            for child in node.children() {
                let child_id = match child.prop(SPEC_ID) {
                    Some(Value::String(child_id)) => child_id.clone(),
                    other => panic!("{path}/{} has spec_id {other:?}", child.name()),
                };
                let child_path = format!("{path}/{}", child.name());
                let located = Located {
                    path: child_path.clone(),
                    parent: id.clone(),
                    name: child.name().to_owned(),
                };
                let twice = found.insert(child_id.clone(), located).is_some();
                assert!(!twice, "two nodes in the tree are spec node {child_id}");
                stack.push((child, child_path, child_id));
            }
        }
        found
    }

    /// The path an op uses for spec node `id`: where it is, or one that cannot exist (the
    /// spec's names are single letters).
    fn path_of(located: &BTreeMap<String, Located>, id: &str) -> String {
        match (id, located.get(id)) {
            (ROOT, _) => format!("/{ROOT}"),
            (_, Some(node)) => node.path.clone(),
            (_, None) => format!("/{ROOT}/gone_{id}"),
        }
    }
}

impl<T: TreeOps> Implementation for SpecTree<T> {
    fn step(&mut self, action: &str) -> Result<(), String> {
        let located = self.locate();
        let path = |id: &str| Self::path_of(&located, id);
        let words: Vec<&str> = action.split(' ').collect();
        let op = match words.as_slice() {
            // Every create makes a fresh node: the tree has no op that re-creates a live one,
            // so the generator leaves the spec's (refused) creates of live nodes out.
            ["Create", id, _, _] if located.contains_key(*id) => {
                panic!("{action}: {id} is in the tree; the generator leaves these out")
            }
            ["Create", id, parent, name] => Op::Create {
                parent: path(parent),
                name: (*name).to_owned(),
                class: "Node".to_owned(),
                props: vec![Prop::new(SPEC_ID, Value::String((*id).to_owned()))],
            },
            ["Delete", id] => Op::Delete { path: path(id) },
            ["Move", id, parent] => Op::Move {
                path: path(id),
                new_parent: path(parent),
                index: None,
            },
            ["Rename", id, name] => Op::Rename {
                path: path(id),
                new_name: (*name).to_owned(),
            },
            _ => panic!("not a NodeTree action: {action:?}"),
        };
        self.accepted = self.tree.apply_op(&op).is_ok();
        self.tree.tree().check_invariants();
        Ok(())
    }

    fn state(&self) -> SpecState {
        let located = self.locate();
        let each = |field: &dyn Fn(Option<&Located>) -> String| {
            let fields: Vec<String> = self
                .nodes
                .iter()
                .map(|id| format!("{id}:{}", field(located.get(id))))
                .collect();
            fields.join(",")
        };
        let parent = each(&|node| node.map_or("none".to_owned(), |n| n.parent.clone()));
        let name = each(&|node| node.map_or("-".to_owned(), |n| n.name.clone()));
        let accepted = if self.accepted { "T" } else { "F" }.to_owned();
        [("accepted", accepted), ("parent", parent), ("name", name)]
            .into_iter()
            .map(|(variable, value)| (variable.to_owned(), value))
            .collect()
    }
}

#[test]
fn tree_agrees_with_every_path_of_the_spec() {
    let spec = SpecPaths::parse(PATHS);
    let fresh = || SpecTree::new(&spec, Tree::new(Limits::default()));
    let replayed = spec_replay::replay(&spec, fresh)
        .unwrap_or_else(|mismatch| panic!("core::tree disagrees with the spec at {mismatch}"));
    eprintln!(
        "NodeTree: {} generated tests (paths), {} steps, {} spec states (trees with a verdict)",
        replayed.paths, replayed.steps, replayed.states
    );
    assert!(replayed.paths > 100, "the whole graph, not a sample");
}

/// A move without the cycle check (`NodeTreeBuggy`'s bug), or, with `checks_self`, with
/// only the check that a node is not moved below itself. Moving a node below itself or
/// its descendant closes a loop the root no longer reaches: seen from the root the subtree
/// is gone, so this wrapper deletes it where `Tree` refuses with `Cycle`.
struct MoveWithoutCycleCheck {
    tree: Tree,
    checks_self: bool,
}

impl TreeOps for MoveWithoutCycleCheck {
    fn apply_op(&mut self, op: &Op) -> Result<(), TreeError> {
        match (self.tree.apply_op(op), op) {
            (
                Err(TreeError::Cycle { .. }),
                Op::Move {
                    path, new_parent, ..
                },
            ) if !(self.checks_self && path == new_parent) => {
                self.tree.apply_op(&Op::Delete { path: path.clone() })
            }
            (result, _) => result,
        }
    }

    fn tree(&self) -> &Tree {
        &self.tree
    }
}

/// Replays through `MoveWithoutCycleCheck`; returns the mismatch, checked to be a Move the
/// spec refuses and the wrapper took, which cut the subtree off the tree.
fn replay_without_cycle_check(checks_self: bool) -> spec_replay::Mismatch {
    let spec = SpecPaths::parse(PATHS);
    let wrong = || {
        let tree = Tree::new(Limits::default());
        SpecTree::new(&spec, MoveWithoutCycleCheck { tree, checks_self })
    };
    let mismatch = spec_replay::replay(&spec, wrong)
        .expect_err("a move without the cycle check must disagree with the spec");
    eprintln!("caught, as it must be: {mismatch}");
    assert!(mismatch.action.starts_with("Move "), "{mismatch}");
    let accepted = mismatch
        .differences
        .iter()
        .find(|d| d.variable == "accepted")
        .unwrap_or_else(|| panic!("the verdict must differ: {mismatch}"));
    assert_eq!(
        (accepted.spec.as_str(), accepted.implementation.as_str()),
        ("F", "T")
    );
    assert!(
        mismatch.differences.iter().any(|d| d.variable == "parent"),
        "the moved subtree left the tree: {mismatch}"
    );
    mismatch
}

#[test]
fn replay_catches_a_move_without_the_cycle_check() {
    replay_without_cycle_check(false);
}

#[test]
fn replay_catches_a_move_below_a_descendant() {
    let mismatch = replay_without_cycle_check(true);
    let words: Vec<&str> = mismatch.action.split(' ').collect();
    let ["Move", id, parent] = words.as_slice() else {
        panic!("not a move: {mismatch}");
    };
    assert_ne!(id, parent, "below a descendant, not itself: {mismatch}");
}
