//! `treesync bench --workload fill --nodes N --addr …`: builds a tree of `N` nodes in a
//! running cluster for memory measurements (`scripts/bench-memory`): groups
//! `/root/Fill/g<i>` of up to 1,000 `Node2D` children each, every node with a position and
//! a 16-byte name property, one transaction (one Raft entry) per group, through the framed
//! protocol, so the cluster must hold `/root/Fill` in one shard (`serve --shards 1`: with
//! more, each group is an entity and its creation a cross-shard transaction, which the
//! framed protocol refuses). Prints progress and one summary line (or JSON). Groups already there (an
//! earlier run) are skipped, so a run can be resumed.

use std::time::Instant;

use treesync_core::{Op, Prop, Txn, Value};
use treesync_net::client::Client;

use crate::bench_load::{exists, System};

/// Children per group: one transaction creates a group and its children (under
/// `Limits::txn_ops_max`, 1,024).
const GROUP: u64 = 1_000;

pub fn run(system: &System, nodes: u64, json: bool) -> Result<(), String> {
    let System::Treesync { servers, .. } = system else {
        return Err("fill builds a treesync tree (--system treesync)".into());
    };
    let mut client = Client::new(servers.clone());
    let node = |parent: &str, name: String, props: Vec<Prop>| Op::Create {
        parent: parent.into(),
        name,
        class: "Node2D".into(),
        props,
    };
    let started = Instant::now();
    write(&mut client, vec![node("/root", "Fill".into(), Vec::new())])?;
    let groups = nodes.div_ceil(GROUP);
    let (mut created, mut skipped) = (0u64, 0u64);
    for g in 0..groups {
        let children = GROUP.min(nodes - g * GROUP);
        let parent = format!("/root/Fill/g{g}");
        let mut ops = vec![node("/root/Fill", format!("g{g}"), Vec::new())];
        ops.extend((0..children).map(|n| {
            let props = vec![
                Prop::new("position", Value::Vector2([n as f32, g as f32])),
                Prop::new("label", Value::String(format!("node-{g:06}-{n:04}"))),
            ];
            node(&parent, format!("n{n}"), props)
        }));
        match write(&mut client, ops)? {
            true => created += children,
            false => skipped += children,
        }
        if g % 50 == 49 || g + 1 == groups {
            eprint!(
                "\r  fill: {} of {nodes} nodes, {:.0} nodes/s ",
                created + skipped,
                created as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!();
    let seconds = started.elapsed().as_secs_f64();
    match json {
        true => println!(
            "{{\"workload\":\"fill\",\"nodes\":{nodes},\"created\":{created},\"skipped\":{skipped},\"seconds\":{seconds:.1}}}"
        ),
        false => println!(
            "bench fill: {created} nodes created ({skipped} already there) in {seconds:.1} s"
        ),
    }
    Ok(())
}

/// Commits `ops` as one transaction; false when its first node was there already.
fn write(client: &mut Client, ops: Vec<Op>) -> Result<bool, String> {
    let txn = Txn {
        expect: Vec::new(),
        ops,
        session: None,
    };
    match client.write(&txn) {
        Ok(_) => Ok(true),
        Err(e) if exists(&e.to_string()) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
