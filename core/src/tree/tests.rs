//! Tree state machine tests: each op, each rejection, atomicity, snapshots, and model-based
//! property tests over random op sequences (cf. `specs/NodeTree.tla`).

use proptest::prelude::*;

use super::*;
use crate::op::{Expect, Op, Precondition, Prop, Txn};

fn create(parent: &str, name: &str) -> Op {
    Op::Create {
        parent: parent.into(),
        name: name.into(),
        class: "Node2D".into(),
        props: vec![],
    }
}

fn path(text: &str) -> NodePath {
    NodePath::parse(text, &Limits::default()).expect("valid test path")
}

fn tree_with(ops: &[Op]) -> Tree {
    let mut tree = Tree::new(Limits::default());
    for op in ops {
        tree.apply_op(op).expect("setup op applies");
    }
    tree.check_invariants();
    tree
}

fn children(tree: &Tree, at: &str) -> Vec<String> {
    tree.get(&path(at))
        .expect("exists")
        .children()
        .map(|c| c.name().to_owned())
        .collect()
}

/// Applies an op that must fail and checks that nothing changed.
fn rejects(tree: &mut Tree, op: &Op) -> TreeError {
    let before = tree.snapshot_bytes();
    let err = tree.apply_op(op).expect_err("op must be rejected");
    assert_eq!(
        tree.snapshot_bytes().as_slice(),
        before.as_slice(),
        "rejected op changed the tree"
    );
    tree.check_invariants();
    err
}

#[test]
fn create_set_rename_move_delete() {
    let mut tree = tree_with(&[
        create("/root", "World"),
        create("/root/World", "P1"),
        create("/root/World", "P2"),
    ]);
    tree.apply_op(&Op::Set {
        path: "/root/World/P1".into(),
        props: vec![Prop::new("hp", Value::Int(10))],
    })
    .expect("set");
    assert_eq!(
        tree.get(&path("/root/World/P1"))
            .and_then(|n| n.prop("hp").cloned()),
        Some(Value::Int(10))
    );
    tree.apply_op(&Op::Rename {
        path: "/root/World/P1".into(),
        new_name: "Hero".into(),
    })
    .expect("rename");
    assert_eq!(children(&tree, "/root/World"), ["Hero", "P2"]);
    tree.apply_op(&Op::Move {
        path: "/root/World/P2".into(),
        new_parent: "/root/World".into(),
        index: Some(0),
    })
    .expect("reorder");
    assert_eq!(children(&tree, "/root/World"), ["P2", "Hero"]);
    tree.apply_op(&Op::Move {
        path: "/root/World/Hero".into(),
        new_parent: "/root".into(),
        index: None,
    })
    .expect("move");
    assert_eq!(children(&tree, "/root"), ["World", "Hero"]);
    assert_eq!(
        tree.get(&path("/root/Hero")).map(|n| n.class()),
        Some("Node2D")
    );
    tree.apply_op(&Op::Delete {
        path: "/root/World".into(),
    })
    .expect("delete");
    assert_eq!(children(&tree, "/root"), ["Hero"]);
    assert_eq!(tree.len(), 2);
    tree.check_invariants();
}

#[test]
fn set_nil_removes_and_emit_changes_nothing() {
    let mut tree = tree_with(&[Op::Create {
        parent: "/root".into(),
        name: "A".into(),
        class: "Node".into(),
        props: vec![
            Prop::new("x", Value::Int(1)),
            Prop::new("y", Value::Bool(true)),
        ],
    }]);
    tree.apply_op(&Op::Set {
        path: "/root/A".into(),
        props: vec![Prop::new("x", Value::Nil)],
    })
    .expect("unset");
    let node = tree.get(&path("/root/A")).expect("exists");
    assert_eq!(node.props().map(|(k, _)| k).collect::<Vec<_>>(), ["y"]);
    let before = tree.snapshot_bytes();
    tree.apply_op(&Op::Emit {
        path: "/root/A".into(),
        signal: "hit".into(),
        args: vec![Value::Int(3)],
    })
    .expect("emit");
    assert_eq!(tree.snapshot_bytes().as_slice(), before.as_slice());
}

#[test]
fn every_invalid_op_is_rejected_with_its_error_and_changes_nothing() {
    let mut tree = tree_with(&[
        create("/root", "A"),
        create("/root/A", "B"),
        create("/root", "C"),
    ]);
    assert!(matches!(
        rejects(&mut tree, &create("/root/Nope", "X")),
        TreeError::NotFound { .. }
    ));
    assert!(matches!(
        rejects(&mut tree, &create("/root", "A")),
        TreeError::NameTaken { .. }
    ));
    assert!(matches!(
        rejects(&mut tree, &create("/root", "a.b")),
        TreeError::Path(_)
    ));
    assert!(matches!(
        rejects(&mut tree, &create("root", "x")),
        TreeError::Path(_)
    ));
    let bad_class = Op::Create {
        parent: "/root".into(),
        name: "X".into(),
        class: "1Node".into(),
        props: vec![],
    };
    assert!(matches!(
        rejects(&mut tree, &bad_class),
        TreeError::InvalidClass { .. }
    ));
    assert!(matches!(
        rejects(
            &mut tree,
            &Op::Delete {
                path: "/root".into()
            }
        ),
        TreeError::RootIsFixed { .. }
    ));
    assert!(matches!(
        rejects(
            &mut tree,
            &Op::Rename {
                path: "/root".into(),
                new_name: "x".into()
            }
        ),
        TreeError::RootIsFixed { .. }
    ));
    assert!(matches!(
        rejects(
            &mut tree,
            &Op::Rename {
                path: "/root/A".into(),
                new_name: "C".into()
            }
        ),
        TreeError::NameTaken { .. }
    ));
    let cycle = Op::Move {
        path: "/root/A".into(),
        new_parent: "/root/A/B".into(),
        index: None,
    };
    assert!(matches!(
        rejects(&mut tree, &cycle),
        TreeError::Cycle { .. }
    ));
    let onto_self = Op::Move {
        path: "/root/A".into(),
        new_parent: "/root/A".into(),
        index: None,
    };
    assert!(matches!(
        rejects(&mut tree, &onto_self),
        TreeError::Cycle { .. }
    ));
    let past_end = Op::Move {
        path: "/root/C".into(),
        new_parent: "/root/A".into(),
        index: Some(2),
    };
    assert!(matches!(
        rejects(&mut tree, &past_end),
        TreeError::IndexOutOfRange { len: 1, .. }
    ));
    let bad_prop = Op::Set {
        path: "/root/A".into(),
        props: vec![Prop::new("", Value::Nil)],
    };
    assert!(matches!(
        rejects(&mut tree, &bad_prop),
        TreeError::InvalidProperty { .. }
    ));
    let huge = Op::Set {
        path: "/root/A".into(),
        props: vec![Prop::new("s", Value::String("x".repeat(70_000)))],
    };
    assert!(matches!(rejects(&mut tree, &huge), TreeError::Value { .. }));
    let bad_signal = Op::Emit {
        path: "/root/A".into(),
        signal: "no spaces".into(),
        args: vec![],
    };
    assert!(matches!(
        rejects(&mut tree, &bad_signal),
        TreeError::InvalidSignal { .. }
    ));
}

#[test]
fn limits_on_children_props_nodes_and_depth() {
    let limits = Limits {
        children_per_node_max: 2,
        props_per_node_max: 2,
        nodes_max: 4,
        path_depth_max: 3,
        ..Limits::default()
    };
    let mut tree = Tree::new(limits);
    for op in [
        create("/root", "A"),
        create("/root", "B"),
        create("/root/A", "C"),
    ] {
        tree.apply_op(&op).expect("within limits");
    }
    assert!(matches!(
        rejects(&mut tree, &create("/root", "X")),
        TreeError::TooManyChildren { .. }
    ));
    assert!(matches!(
        rejects(&mut tree, &create("/root/B", "X")),
        TreeError::TooManyNodes { count: 5, max: 4 }
    ));
    assert!(matches!(
        rejects(&mut tree, &create("/root/A/C", "X")),
        TreeError::Path(_)
    ));
    let three = ["a", "b", "c"]
        .map(|n| Prop::new(n, Value::Int(1)))
        .to_vec();
    assert!(matches!(
        rejects(
            &mut tree,
            &Op::Set {
                path: "/root/A".into(),
                props: three
            }
        ),
        TreeError::TooManyProperties { count: 3, .. }
    ));
    // Moving a subtree so that its leaf would be too deep is rejected too.
    let deep = Op::Move {
        path: "/root/A".into(),
        new_parent: "/root/B".into(),
        index: None,
    };
    assert!(matches!(rejects(&mut tree, &deep), TreeError::Path(_)));
}

#[test]
fn failed_txn_rolls_back_everything_including_deletes() {
    let mut tree = tree_with(&[
        create("/root", "A"),
        create("/root/A", "B"),
        create("/root", "C"),
    ]);
    let before = tree.snapshot_bytes();
    let txn = Txn {
        expect: vec![],
        ops: vec![
            Op::Set {
                path: "/root/C".into(),
                props: vec![Prop::new("k", Value::Int(1))],
            },
            Op::Delete {
                path: "/root/A".into(),
            },
            create("/root", "A"),
            create("/root/A", "New"),
            Op::Rename {
                path: "/root/C".into(),
                new_name: "D".into(),
            },
            Op::Move {
                path: "/root/D".into(),
                new_parent: "/root/A".into(),
                index: Some(0),
            },
            create("/root/Missing", "X"),
        ],
        session: None,
    };
    let err = tree.apply_txn(&txn).expect_err("last op fails");
    assert!(
        matches!(
            err,
            TreeError::InTxn {
                index: 6,
                op: "create",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(tree.snapshot_bytes().as_slice(), before.as_slice());
    tree.check_invariants();
    // The same ops without the failing one apply, and later ops see earlier ones.
    let ok = Txn {
        ops: txn.ops[..6].to_vec(),
        ..Txn::default()
    };
    tree.apply_txn(&ok).expect("applies");
    assert_eq!(children(&tree, "/root/A"), ["D", "New"]);
}

#[test]
fn preconditions_gate_the_whole_txn() {
    let mut tree = tree_with(&[Op::Create {
        parent: "/root".into(),
        name: "Chest".into(),
        class: "Node".into(),
        props: vec![Prop::new("gold", Value::Int(5))],
    }]);
    let take = |gold: i64| Txn {
        expect: vec![
            Precondition {
                path: "/root/Chest".into(),
                expect: Expect::PropEquals {
                    prop: "gold".into(),
                    value: Value::Int(gold),
                },
            },
            Precondition {
                path: "/root/Thief".into(),
                expect: Expect::Absent,
            },
        ],
        ops: vec![Op::Set {
            path: "/root/Chest".into(),
            props: vec![Prop::new("gold", Value::Int(0))],
        }],
        session: None,
    };
    assert!(matches!(
        tree.apply_txn(&take(4)),
        Err(TreeError::PreconditionFailed { index: 0, .. })
    ));
    tree.apply_txn(&take(5)).expect("holds");
    assert!(matches!(
        tree.apply_txn(&take(5)),
        Err(TreeError::PreconditionFailed { index: 0, .. })
    ));
    let exists = Txn {
        expect: vec![Precondition {
            path: "/root/Thief".into(),
            expect: Expect::Exists,
        }],
        ops: vec![],
        session: None,
    };
    assert!(matches!(
        tree.apply_txn(&exists),
        Err(TreeError::PreconditionFailed { .. })
    ));
    let too_many = Txn {
        ops: vec![create("/root", "X"); 1025],
        ..Txn::default()
    };
    assert!(matches!(
        tree.apply_txn(&too_many),
        Err(TreeError::TxnTooLarge { count: 1025, .. })
    ));
}

#[test]
fn snapshot_restore_round_trip_and_hostile_snapshots() {
    let tree = tree_with(&[
        create("/root", "World"),
        Op::Create {
            parent: "/root/World".into(),
            name: "P".into(),
            class: "Sprite2D".into(),
            props: vec![Prop::new("pos", Value::Vector2([1.0, 2.0]))],
        },
        create("/root/World", "Q"),
        create("/root/World/P", "Gun"),
    ]);
    let bytes = tree.snapshot_bytes();
    let restored = Tree::restore(&bytes, Limits::default()).expect("restores");
    assert_eq!(restored, tree);
    assert_eq!(restored.snapshot_bytes().as_slice(), bytes.as_slice());

    let mut snap = tree.to_snapshot();
    snap.nodes[2].parent = 3;
    assert!(matches!(
        Tree::from_snapshot(&snap, Limits::default()),
        Err(SnapshotError::Malformed { index: 2, .. })
    ));
    let mut snap = tree.to_snapshot();
    snap.nodes[3].name = snap.nodes[1].name.clone();
    snap.nodes[3].parent = 0;
    assert!(matches!(
        Tree::from_snapshot(&snap, Limits::default()),
        Err(SnapshotError::Invalid { index: 3, .. })
    ));
    let mut snap = tree.to_snapshot();
    snap.nodes[0].name = "top".into();
    assert!(matches!(
        Tree::from_snapshot(&snap, Limits::default()),
        Err(SnapshotError::Malformed { index: 0, .. })
    ));
    assert!(matches!(
        Tree::from_snapshot(&TreeSnapshot::default(), Limits::default()),
        Err(SnapshotError::Malformed { .. })
    ));
    assert!(matches!(
        Tree::restore(&bytes[..bytes.len() - 1], Limits::default()),
        Err(SnapshotError::Wire(_))
    ));
}

#[test]
fn subtree_value_has_the_protocol_shape() {
    let tree = tree_with(&[create("/root", "A")]);
    let value = tree.subtree_value(&path("/root")).expect("root exists");
    let Value::Dictionary(pairs) = value else {
        panic!("a dictionary")
    };
    let keys: Vec<_> = pairs.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        ["name", "class", "props", "children"].map(|k| Value::String(k.into()))
    );
    assert!(matches!(&pairs[3].1, Value::Array(c) if c.len() == 1));
}

#[test]
fn a_node_summary_names_its_children_without_their_subtrees() {
    let tree = tree_with(&[
        create("/root", "A"),
        create("/root/A", "B"),
        create("/root", "C"),
    ]);
    let summary = tree.node_summary(&path("/root")).expect("root exists");
    assert_eq!(
        summary.field("children"),
        Some(&Value::Array(vec![
            Value::String("A".into()),
            Value::String("C".into())
        ]))
    );
    assert_eq!(summary.field("name"), Some(&Value::String("root".into())));
    assert_eq!(tree.node_summary(&path("/root/Z")), None);
}

/// Paths over a small name pool, so random ops often hit existing nodes.
#[test]
fn an_entity_shard_makes_missing_ancestors_above_the_shard_roots_as_placeholders() {
    let mut spine = Tree::new(Limits::default());
    let err = rejects(&mut spine, &create("/root/World", "Player"));
    assert!(
        matches!(err, TreeError::NotFound { .. }),
        "the spine makes none"
    );

    let mut entities = Tree::new(Limits::default()).with_placeholders(3);
    entities
        .apply_op(&create("/root/World", "Player"))
        .expect("made /root/World");
    assert_eq!(children(&entities, "/root"), vec!["World"]);
    let world = entities.get(&path("/root/World")).expect("placeholder");
    assert_eq!(world.class(), PLACEHOLDER_CLASS);
    entities.check_invariants();
    // Below the shard roots a parent must exist, as anywhere.
    let err = rejects(&mut entities, &create("/root/World/Ghost", "Gun"));
    assert!(matches!(err, TreeError::NotFound { .. }));
    // A create that fails after making its placeholders leaves nothing behind.
    let bad_class = Op::Create {
        parent: "/root/Other".into(),
        name: "X".into(),
        class: "not a class".into(),
        props: vec![],
    };
    rejects(&mut entities, &bad_class);
    assert!(entities.get(&path("/root/Other")).is_none());
    // A move of a shard root to another world makes that world here too.
    let moved = Op::Move {
        path: "/root/World/Player".into(),
        new_parent: "/root/Zone2".into(),
        index: None,
    };
    entities.apply_op(&moved).expect("moves");
    assert!(entities.get(&path("/root/Zone2/Player")).is_some());
    entities.check_invariants();
}

fn arb_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "c"], 0..4).prop_map(|names| {
        std::iter::once("/root".to_owned())
            .chain(names)
            .collect::<Vec<_>>()
            .join("/")
    })
}

fn arb_op() -> impl Strategy<Value = Op> {
    let name = prop_oneof!["a", "b", "c", "a.b"];
    let value = prop_oneof![Just(Value::Nil), (0i64..3).prop_map(Value::Int)];
    prop_oneof![
        3 => (arb_path(), name.clone()).prop_map(|(p, n)| create(&p, &n)),
        1 => arb_path().prop_map(|path| Op::Delete { path }),
        2 => (arb_path(), prop_oneof!["x", "y"], value).prop_map(|(path, k, v)| Op::Set { path, props: vec![Prop::new(k, v)] }),
        1 => (arb_path(), name).prop_map(|(path, new_name)| Op::Rename { path, new_name }),
        2 => (arb_path(), arb_path(), proptest::option::of(0u32..3))
            .prop_map(|(path, new_parent, index)| Op::Move { path, new_parent, index }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random ops keep the tree a tree; a rejected op changes nothing; replaying the same log
    /// gives identical snapshot bytes; the snapshot restores to an equal tree.
    #[test]
    fn random_ops_keep_a_tree_and_replay_deterministically(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let mut tree = Tree::new(Limits::default());
        let mut log = Vec::new();
        for op in &ops {
            let before = tree.to_snapshot();
            match tree.apply_op(op) {
                Ok(()) => log.push(op.clone()),
                Err(_) => prop_assert_eq!(&tree.to_snapshot(), &before),
            }
            tree.check_invariants();
        }
        let mut replica = Tree::new(Limits::default());
        for op in &log {
            replica.apply_op(op).expect("a committed op applies on every replica");
        }
        let bytes = tree.snapshot_bytes().to_vec();
        prop_assert_eq!(replica.snapshot_bytes().to_vec(), bytes.clone());
        let restored = Tree::restore(&tree.snapshot_bytes(), Limits::default()).expect("restores");
        prop_assert_eq!(restored.snapshot_bytes().to_vec(), bytes);
    }

    /// A transaction applies all its ops or none.
    #[test]
    fn txns_are_atomic(setup in proptest::collection::vec(arb_op(), 0..20), ops in proptest::collection::vec(arb_op(), 1..8)) {
        let mut tree = Tree::new(Limits::default());
        for op in &setup {
            let _ = tree.apply_op(op); // setup only: rejected ops are fine here
        }
        let before = tree.to_snapshot();
        let mut sequential = tree.clone();
        let all_ok = ops.iter().all(|op| sequential.apply_op(op).is_ok());
        let result = tree.apply_txn(&Txn {
            ops,
            ..Txn::default()
        });
        tree.check_invariants();
        prop_assert_eq!(result.is_ok(), all_ok);
        if all_ok {
            prop_assert_eq!(tree.to_snapshot(), sequential.to_snapshot());
        } else {
            prop_assert_eq!(tree.to_snapshot(), before);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// `check_txn` (an intent's validation) answers as `apply_txn` would and leaves the tree
    /// byte-identical, arena and free list included: applying afterwards gives the same
    /// bytes as applying without the check.
    #[test]
    fn a_checked_txn_answers_like_apply_and_changes_nothing(setup in proptest::collection::vec(arb_op(), 0..20), ops in proptest::collection::vec(arb_op(), 1..8)) {
        let mut tree = Tree::new(Limits::default());
        for op in &setup {
            let _ = tree.apply_op(op); // setup only: rejected ops are fine here
        }
        let txn = Txn { ops, ..Txn::default() };
        let bytes = tree.snapshot_bytes().to_vec();
        let mut unchecked = tree.clone();
        let checked = tree.check_txn(&txn);
        tree.check_invariants();
        prop_assert_eq!(tree.snapshot_bytes().to_vec(), bytes);
        prop_assert_eq!(checked.is_ok(), unchecked.apply_txn(&txn).is_ok());
        if checked.is_ok() {
            tree.apply_txn(&txn).expect("checked, so it applies");
            prop_assert_eq!(tree.snapshot_bytes().to_vec(), unchecked.snapshot_bytes().to_vec());
        }
    }
}
