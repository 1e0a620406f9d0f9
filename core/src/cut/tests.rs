use super::*;
use crate::op::Prop;

const WORLD: &str = "/root/World";

fn map() -> ShardMap {
    ShardMap::new(3, 3).expect("a valid map")
}

fn merge(from: Option<u64>, early: bool) -> Merge {
    let config = MergeConfig {
        path: WORLD.into(),
        map: map(),
        from,
        buffered_max: 8,
        inject_release_early: early,
    };
    Merge::new(
        config,
        &NodePath::parse(WORLD, &Limits::default()).expect("valid"),
    )
}

fn set(path: &str, gold: i64) -> Op {
    Op::Set {
        path: path.into(),
        props: vec![Prop::new("gold", Value::Int(gold))],
    }
}

fn change(shard: u32, index: u64, hlc: u64, txn: Option<TxnId>, ops: Vec<Op>) -> Push {
    Push::Change {
        shard,
        index,
        hlc,
        txn,
        ops,
    }
}

fn snapshot(shard: u32, hlc: u64) -> Push {
    Push::Snapshot {
        shard,
        tree: None,
        index: 1,
        hlc,
        resync: false,
    }
}

/// Feeds `pushes` (shard, push) and returns everything released.
fn feed(merge: &mut Merge, pushes: Vec<(u32, Push)>) -> Vec<MergedPush> {
    let mut out = Vec::new();
    for (shard, push) in pushes {
        merge.push(shard, push, &mut out).expect("a valid stream");
    }
    out
}

const T: TxnId = TxnId { node: 1, seq: 7 };

#[test]
fn a_cross_shard_transaction_is_released_whole_once_the_frontier_passes_it() {
    let mut m = merge(None, false);
    let mut pushes: Vec<(u32, Push)> = (0..3).map(|s| (s, snapshot(s, 10))).collect();
    pushes.extend((0..3).map(|s| (s, Push::Resolved { hlc: 10 })));
    let started = feed(&mut m, pushes);
    let cut = vec![
        MergedPush::Snapshot {
            tree: None,
            resync: false,
        },
        MergedPush::Resolved { hlc: 10 },
    ];
    assert_eq!(started, cut, "the merged snapshot is the cut at 10");
    let half = feed(
        &mut m,
        vec![
            (1, change(1, 5, 20, Some(T), vec![set("/root/World/A", 1)])),
            (1, Push::Resolved { hlc: 30 }),
            (0, Push::Resolved { hlc: 30 }),
        ],
    );
    assert_eq!(half, vec![], "shard 2 holds the frontier at 10");
    let whole = feed(
        &mut m,
        vec![
            (2, change(2, 9, 20, Some(T), vec![set("/root/World/B", 2)])),
            (2, Push::Resolved { hlc: 25 }),
        ],
    );
    let ops = vec![set("/root/World/A", 1), set("/root/World/B", 2)];
    assert_eq!(
        whole,
        vec![
            MergedPush::Change {
                hlc: 20,
                txn: Some(T),
                ops
            },
            MergedPush::Resolved { hlc: 25 }
        ]
    );
    assert_eq!(m.position(), Some(25));
}

#[test]
fn the_first_resolved_waits_for_the_latest_snapshot() {
    let mut m = merge(None, false);
    feed(
        &mut m,
        vec![
            (0, snapshot(0, 10)),
            (1, snapshot(1, 40)),
            (2, snapshot(2, 10)),
        ],
    );
    let early = feed(
        &mut m,
        (0..3).map(|s| (s, Push::Resolved { hlc: 30 })).collect(),
    );
    assert_eq!(
        early,
        vec![],
        "shard 1's snapshot may hold changes up to 40"
    );
    let late = feed(
        &mut m,
        (0..3).map(|s| (s, Push::Resolved { hlc: 45 })).collect(),
    );
    let snapshot = MergedPush::Snapshot {
        tree: None,
        resync: false,
    };
    assert_eq!(late, vec![snapshot, MergedPush::Resolved { hlc: 45 }]);
}

#[test]
fn a_change_at_or_below_the_released_frontier_is_an_error_not_a_late_apply() {
    let mut m = merge(Some(50), false);
    let mut out = Vec::new();
    let late = m.push(
        1,
        change(1, 3, 50, None, vec![set("/root/World/A", 1)]),
        &mut out,
    );
    assert_eq!(
        late,
        Err(MergeError::BehindFrontier {
            shard: 1,
            hlc: 50,
            frontier: 50
        })
    );
    assert_eq!(out, vec![]);
}

#[test]
fn a_resumed_merge_sends_no_snapshot_and_resolves_above_its_position() {
    let mut m = merge(Some(50), false);
    let pushes = vec![
        (1, change(1, 3, 51, None, vec![set("/root/World/A", 1)])),
        (0, Push::Resolved { hlc: 40 }),
        (1, Push::Resolved { hlc: 60 }),
        (2, Push::Resolved { hlc: 60 }),
    ];
    assert_eq!(
        feed(&mut m, pushes),
        vec![],
        "shard 0 is behind the position"
    );
    let out = feed(&mut m, vec![(0, Push::Resolved { hlc: 55 })]);
    assert!(matches!(
        out[..],
        [
            MergedPush::Change { hlc: 51, .. },
            MergedPush::Resolved { hlc: 55 }
        ]
    ));
}

#[test]
fn too_many_waiting_ops_overflow() {
    let mut m = merge(Some(1), false);
    let mut out = Vec::new();
    let mut result = Ok(());
    for i in 0..9 {
        result = m.push(
            1,
            change(1, i, 10 + i, None, vec![set("/root/World/A", 1)]),
            &mut out,
        );
    }
    assert_eq!(result, Err(MergeError::Overflow { ops: 9, max: 8 }));
}

#[test]
fn the_injected_early_release_shows_half_a_transaction() {
    let mut m = merge(Some(1), true);
    let out = feed(
        &mut m,
        vec![
            (1, change(1, 5, 20, Some(T), vec![set("/root/World/A", 1)])),
            (1, Push::Resolved { hlc: 30 }),
        ],
    );
    assert!(
        matches!(&out[..], [MergedPush::Change { ops, .. }, MergedPush::Resolved { hlc: 30 }] if ops.len() == 1),
        "{out:?}"
    );
}

#[test]
fn merged_ops_leave_the_spine_dentries_out_and_delete_spine_nodes_last() {
    let create_zone = Op::Create {
        parent: "/root".into(),
        name: "Zone".into(),
        class: "Node".into(),
        props: vec![],
    };
    let dentry = Op::Create {
        parent: "/root/World".into(),
        name: "P".into(),
        class: "Node2D".into(),
        props: vec![],
    };
    let place = Op::Move {
        path: "/root/World/P".into(),
        new_parent: "/root/World".into(),
        index: Some(0),
    };
    let delete_zone = Op::Delete {
        path: "/root/Zone".into(),
    };
    let entity = set("/root/World/P", 3);
    let spine = vec![
        delete_zone.clone(),
        dentry,
        create_zone.clone(),
        place.clone(),
    ];
    let parts = vec![(0, spine), (2, vec![entity.clone()])];
    assert_eq!(
        view::merged_ops(&parts, 3, false),
        vec![create_zone, entity, delete_zone, place]
    );
}

fn create(parent: &str, name: &str) -> Op {
    Op::Create {
        parent: parent.into(),
        name: name.into(),
        class: "Node".into(),
        props: vec![],
    }
}

/// The subtree at WORLD of a tree built by `ops` (placeholders above the roots).
fn world_of(ops: &[Op]) -> Option<Value> {
    let mut tree = crate::tree::Tree::new(Limits::default()).with_placeholders(3);
    for op in ops {
        tree.apply_op(op).expect("a valid op");
    }
    tree.subtree_value(&NodePath::parse(WORLD, &Limits::default()).expect("valid"))
}

#[test]
fn the_snapshot_is_the_cut_at_the_frontier_even_when_shard_snapshots_are_not() {
    let a = "/root/World/A";
    let owner = map()
        .shard_of(&NodePath::parse(a, &Limits::default()).expect("valid"))
        .0;
    let world = create("/root", "World");
    // The spine's snapshot already has A's dentry; A's shard's snapshot predates A, whose
    // create (a cross-shard transaction at 15) is among its changes.
    let spine = world_of(&[world.clone(), create(WORLD, "A")]);
    let mut pushes = vec![(
        0,
        Push::Snapshot {
            shard: 0,
            tree: spine,
            index: 3,
            hlc: 20,
            resync: false,
        },
    )];
    for shard in [1, 2] {
        pushes.push((shard, snapshot(shard, 12)));
    }
    let created = change(owner, 4, 15, Some(T), vec![create(WORLD, "A")]);
    pushes.push((owner, created));
    pushes.push((owner, change(owner, 5, 30, None, vec![set(a, 7)])));
    pushes.extend((0..3).map(|s| (s, Push::Resolved { hlc: 25 })));
    let out = feed(&mut merge(None, false), pushes);
    let expected = world_of(&[world, create(WORLD, "A")]);
    let cut = vec![
        MergedPush::Snapshot {
            tree: expected,
            resync: false,
        },
        MergedPush::Resolved { hlc: 25 },
    ];
    assert_eq!(out, cut, "A once, without the change at 30");
}
