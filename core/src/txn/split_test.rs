//! The planner against a reference: a cluster of per-shard trees (the spine, and entity
//! shards with placeholders) runs each planned transaction all-or-nothing, and the world it
//! shows (the spine with every entity grafted from its shard) must equal one tree that ran
//! the client's transactions as they came. I1 and I2 are checked after every transaction.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::op::Prop;
use crate::tree::Tree;

const SHARDS: u32 = 4;
const DEPTH: usize = 3;

struct Cluster {
    map: ShardMap,
    trees: Vec<Tree>,
    reference: Tree,
}

fn path(text: &str) -> NodePath {
    NodePath::parse(text, &Limits::default()).expect("valid")
}

impl Cluster {
    fn new() -> Cluster {
        let limits = Limits::default();
        let trees = (0..SHARDS)
            .map(|s| match s {
                0 => Tree::new(limits.clone()),
                _ => Tree::new(limits.clone()).with_placeholders(DEPTH),
            })
            .collect();
        Cluster {
            map: ShardMap::new(SHARDS, DEPTH).expect("map"),
            trees,
            reference: Tree::new(limits),
        }
    }

    /// Reads, plans and applies `txn` on every part or none; returns whether it applied and
    /// checks that the reference agrees.
    fn run(&mut self, txn: &Txn) -> Result<bool, PlanError> {
        let limits = Limits::default();
        let mut reads = BTreeMap::new();
        for p in reads_needed(txn, &self.map, &limits)? {
            let owner = self.map.shard_of(&path(&p)).0 as usize;
            reads.insert(p.clone(), self.trees[owner].subtree_value(&path(&p)));
        }
        let plan = match plan(txn, &self.map, &limits, &reads) {
            Ok(plan) => plan,
            Err(PlanError::NotFound { .. }) => {
                let mut reference = self.reference.clone();
                let applies = reference.apply_txn(txn).is_ok();
                assert!(!applies, "{txn:?}: the planner found nothing to relocate");
                return Ok(false);
            }
            // A typed refusal changes nothing anywhere.
            Err(e) => return Err(e),
        };
        let reference = self.reference.apply_txn(txn).is_ok();
        plan.check(&self.map, &limits);
        let all = plan
            .parts
            .iter()
            .all(|(s, part)| self.trees[*s as usize].check_txn(part).is_ok());
        if all {
            for (s, part) in &plan.parts {
                self.trees[*s as usize].apply_txn(part).expect("checked");
            }
        }
        assert_eq!(all, reference, "{txn:?} planned as {plan:?}");
        self.check();
        Ok(all)
    }

    /// The world as a reader of the whole cluster sees it.
    fn merged(&self) -> Value {
        let spine = self.trees[0].subtree_value(&path("/root")).expect("root");
        self.graft("/root", spine)
    }

    fn graft(&self, at: &str, mut node: Value) -> Value {
        if at.split('/').filter(|s| !s.is_empty()).count() == DEPTH {
            let owner = self.map.shard_of(&path(at)).0 as usize;
            return self.trees[owner]
                .subtree_value(&path(at))
                .expect("I2: the entity exists");
        }
        if let Value::Dictionary(entries) = &mut node {
            for (k, v) in entries.iter_mut() {
                if *k == Value::String("children".into()) {
                    if let Value::Array(children) = v {
                        for child in children.iter_mut() {
                            let name = field(child, "name").and_then(as_str).expect("named");
                            *child = self.graft(&format!("{at}/{name}"), child.clone());
                        }
                    }
                }
            }
        }
        node
    }

    /// I1, I2 and agreement with the reference.
    fn check(&self) {
        assert_eq!(
            self.merged(),
            self.reference.subtree_value(&path("/root")).expect("root")
        );
        let mut dentries = Vec::new();
        let spine = self.trees[0].subtree_value(&path("/root")).expect("root");
        roots_below("/root", &spine, DEPTH, &mut dentries);
        for root in &dentries {
            let dentry = self.trees[0].get(&path(root)).expect("dentry");
            assert_eq!(
                dentry.children().count(),
                0,
                "I1: {root} has no content in the spine"
            );
            assert_eq!(
                dentry.props().count(),
                0,
                "I1: {root}'s props live in its shard"
            );
        }
        for shard in 1..SHARDS as usize {
            let tree = &self.trees[shard];
            let value = tree.subtree_value(&path("/root")).expect("root");
            let mut roots = Vec::new();
            roots_below("/root", &value, DEPTH, &mut roots);
            for root in roots {
                assert_eq!(
                    self.map.shard_of(&path(&root)).0 as usize,
                    shard,
                    "I1: {root}"
                );
                assert!(
                    dentries.contains(&root),
                    "I2: {root} in shard {shard} has no dentry"
                );
            }
        }
    }
}

fn create(parent: &str, name: &str, class: &str) -> Op {
    Op::Create {
        parent: parent.into(),
        name: name.into(),
        class: class.into(),
        props: vec![Prop::new("hp", Value::Int(3))],
    }
}

fn one(op: Op) -> Txn {
    Txn::single(op)
}

#[test]
fn an_entity_is_a_dentry_in_the_spine_and_a_subtree_in_its_shard() {
    let mut cluster = Cluster::new();
    assert_eq!(
        cluster.run(&one(create("/root", "World", "Node2D"))),
        Ok(true)
    );
    for name in ["Ann", "Bob", "Cid", "Dee", "Eve"] {
        assert_eq!(
            cluster.run(&one(create("/root/World", name, "Player"))),
            Ok(true)
        );
        assert_eq!(
            cluster.run(&one(create(&format!("/root/World/{name}"), "Gun", "Node"))),
            Ok(true)
        );
    }
    let plan = plan(
        &one(create("/root/World", "Fay", "P")),
        &cluster.map,
        &Limits::default(),
        &BTreeMap::new(),
    )
    .expect("plans");
    assert_eq!(plan.parts.len(), 2, "spine and entity shard");
    assert_eq!(plan.parts[0].0, 0);
    let deeper = plan_of(&cluster, create("/root/World/Ann", "Hat", "Node"));
    assert!(
        deeper.single_shard().is_some_and(|s| s != 0),
        "below a root: one entity shard"
    );
    assert_eq!(
        cluster.run(&one(create("/root/Nowhere", "X", "P"))),
        Ok(false),
        "no world"
    );
}

fn plan_of(cluster: &Cluster, op: Op) -> Plan {
    plan(&one(op), &cluster.map, &Limits::default(), &BTreeMap::new()).expect("plans")
}

#[test]
fn moves_between_worlds_keep_subtrees_and_deletes_leave_nothing_behind() {
    let mut cluster = Cluster::new();
    for world in ["A", "B"] {
        cluster
            .run(&one(create("/root", world, "Node")))
            .expect("plans");
    }
    for i in 0..6 {
        let name = format!("p{i}");
        cluster
            .run(&one(create("/root/A", &name, "Player")))
            .expect("plans");
        cluster
            .run(&one(create(&format!("/root/A/{name}"), "Bag", "Node")))
            .expect("plans");
        cluster
            .run(&one(create(&format!("/root/A/{name}/Bag"), "Gem", "Node")))
            .expect("plans");
    }
    for i in 0..6 {
        let moved = Op::Move {
            path: format!("/root/A/p{i}"),
            new_parent: "/root/B".into(),
            index: Some(0),
        };
        assert_eq!(cluster.run(&one(moved)), Ok(true), "p{i}");
    }
    let renamed = Op::Rename {
        path: "/root/B/p1".into(),
        new_name: "renamed".into(),
    };
    assert_eq!(cluster.run(&one(renamed)), Ok(true));
    assert_eq!(
        cluster.run(&one(Op::Delete {
            path: "/root/B".into()
        })),
        Ok(true)
    );
    for shard in 1..SHARDS as usize {
        let tree = &cluster.trees[shard];
        let mut roots = Vec::new();
        roots_below(
            "/root",
            &tree.subtree_value(&path("/root")).expect("root"),
            DEPTH,
            &mut roots,
        );
        assert!(roots.is_empty(), "shard {shard} keeps {roots:?}");
    }
}

#[test]
fn a_subtree_changed_after_the_read_aborts_the_move() {
    let mut cluster = Cluster::new();
    for world in ["A", "B"] {
        cluster
            .run(&one(create("/root", world, "Node")))
            .expect("plans");
    }
    // Find an entity whose move changes its shard.
    let name = (0..50)
        .map(|i| format!("e{i}"))
        .find(|n| {
            cluster.map.shard_of(&path(&format!("/root/A/{n}")))
                != cluster.map.shard_of(&path(&format!("/root/B/{n}")))
        })
        .expect("some entity changes shard");
    cluster
        .run(&one(create("/root/A", &name, "P")))
        .expect("plans");
    let from = format!("/root/A/{name}");
    let moved = one(Op::Move {
        path: from.clone(),
        new_parent: "/root/B".into(),
        index: None,
    });
    let owner = cluster.map.shard_of(&path(&from)).0 as usize;
    let read = cluster.trees[owner].subtree_value(&path(&from));
    let reads = BTreeMap::from([(from.clone(), read)]);
    let plan = plan(&moved, &cluster.map, &Limits::default(), &reads).expect("plans");
    // A write lands between the read and the transaction.
    let set = Op::Set {
        path: from.clone(),
        props: vec![Prop::new("hp", Value::Int(99))],
    };
    cluster.trees[owner].apply_op(&set).expect("applies");
    let (_, part) = plan
        .parts
        .iter()
        .find(|(s, _)| *s as usize == owner)
        .expect("source");
    let refused = cluster.trees[owner].check_txn(part);
    assert!(
        matches!(refused, Err(crate::TreeError::PreconditionFailed { .. })),
        "{refused:?}"
    );
}

#[test]
fn refusals_are_typed() {
    let mut cluster = Cluster::new();
    cluster
        .run(&one(create("/root", "A", "Node")))
        .expect("plans");
    cluster
        .run(&one(create("/root/A", "p", "P")))
        .expect("plans");
    let rename_world = one(Op::Rename {
        path: "/root/A".into(),
        new_name: "Z".into(),
    });
    assert!(matches!(
        cluster.run(&rename_world),
        Err(PlanError::SpineNodeHasEntities { .. })
    ));
    let up = one(Op::Move {
        path: "/root/A/p".into(),
        new_parent: "/root".into(),
        index: None,
    });
    assert!(matches!(
        cluster.run(&up),
        Err(PlanError::AboveShardRoots { .. })
    ));
    let bad = one(Op::Delete {
        path: "no/slash".into(),
    });
    assert!(matches!(
        cluster.run(&bad),
        Err(PlanError::InvalidPath { .. })
    ));
    let set_then_move = Txn {
        ops: vec![
            Op::Set {
                path: "/root/A/p".into(),
                props: vec![],
            },
            Op::Move {
                path: "/root/A/p".into(),
                new_parent: "/root/A/q".into(),
                index: None,
            },
        ],
        ..Txn::default()
    };
    let planned = plan(
        &set_then_move,
        &cluster.map,
        &Limits::default(),
        &BTreeMap::new(),
    );
    let moved_shard =
        cluster.map.shard_of(&path("/root/A/q/p")) != cluster.map.shard_of(&path("/root/A/p"));
    if moved_shard {
        assert!(matches!(planned, Err(PlanError::ReadAfterChange { .. })));
    }
    let single = ShardMap::new(1, DEPTH).expect("map");
    let as_is = plan(&rename_world, &single, &Limits::default(), &BTreeMap::new()).expect("plans");
    assert_eq!(
        as_is.parts,
        vec![(0, rename_world)],
        "one shard: as it came"
    );
}

fn arb_node() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/root/A".to_owned()),
        Just("/root/B".to_owned()),
        (prop_oneof!["A", "B"], prop_oneof!["p", "q", "r", "s"])
            .prop_map(|(w, e)| format!("/root/{w}/{e}")),
        (
            prop_oneof!["A", "B"],
            prop_oneof!["p", "q", "r"],
            prop_oneof!["x", "y"]
        )
            .prop_map(|(w, e, c)| format!("/root/{w}/{e}/{c}")),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let parent = |p: String| {
        p.rsplit_once('/')
            .map(|(a, _)| a.to_owned())
            .unwrap_or_default()
    };
    prop_oneof![
        4 => arb_node().prop_map(move |p| {
            let (parent, name) = p.rsplit_once('/').expect("slash");
            create(parent, name, "Node")
        }),
        1 => arb_node().prop_map(|path| Op::Delete { path }),
        2 => arb_node().prop_map(|path| Op::Set { path, props: vec![Prop::new("hp", Value::Int(7))] }),
        1 => (arb_node(), prop_oneof!["p", "q", "t", "x"]).prop_map(|(path, new_name)| Op::Rename { path, new_name }),
        2 => (arb_node(), arb_node(), proptest::option::of(0u32..2)).prop_map(move |(path, to, index)| Op::Move {
            path,
            new_parent: parent(to),
            index,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random transactions of one or two ops: the cluster's merged world always equals the
    /// reference tree, and I1/I2 hold after every transaction.
    #[test]
    fn the_cluster_shows_the_world_one_tree_would(txns in proptest::collection::vec(proptest::collection::vec(arb_op(), 1..3), 1..30)) {
        let mut cluster = Cluster::new();
        for world in ["A", "B"] {
            cluster.run(&one(create("/root", world, "Node"))).expect("plans");
        }
        for ops in txns {
            let txn = Txn { ops, ..Txn::default() };
            match cluster.run(&txn) {
                Ok(_) => {}
                // Typed refusals the single tree does not have: the cluster changed nothing.
                Err(PlanError::SpineNodeHasEntities { .. })
                | Err(PlanError::AboveShardRoots { .. })
                | Err(PlanError::ReadAfterChange { .. }) => cluster.check(),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
