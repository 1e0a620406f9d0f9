//! Shared fixtures for treesync's criterion benchmarks (`benches/benches/*.rs`).

use treesync_core::{Limits, Op, Prop, Tree, Value};

/// A tree with `worlds × entities` Node2D nodes under `/root/World<i>/E<j>`, each with a
/// position property: the shape of a small game world.
pub fn game_tree(worlds: usize, entities: usize) -> Tree {
    let mut tree = Tree::new(Limits::default());
    for w in 0..worlds {
        let world = format!("World{w}");
        tree.apply_op(&node("/root", &world))
            .expect("fixture op applies");
        for e in 0..entities {
            tree.apply_op(&node(&format!("/root/{world}"), &format!("E{e}")))
                .expect("fixture op applies");
        }
    }
    tree
}

fn node(parent: &str, name: &str) -> Op {
    Op::Create {
        parent: parent.into(),
        name: name.into(),
        class: "Node2D".into(),
        props: vec![Prop::new("position", Value::Vector2([0.0, 0.0]))],
    }
}

/// A typical per-tick update: one position and one velocity.
pub fn position_update(path: &str, x: f32) -> Op {
    Op::Set {
        path: path.into(),
        props: vec![
            Prop::new("position", Value::Vector2([x, 2.0 * x])),
            Prop::new("velocity", Value::Vector2([1.0, -1.0])),
        ],
    }
}
