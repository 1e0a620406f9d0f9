//! The `treesync` command.
//!
//! Today it demonstrates the core (`treesync demo`): the replicated server (`local`, `serve`)
//! arrives with the replication engine (issue 4) and says so instead of pretending.

mod args;
mod bench_cmd;
mod bench_fill;
mod bench_load;
mod bench_subscribe;
mod bench_txn;
mod bench_watch;
mod check_cmd;
mod client_cmd;
mod etcd_http;
mod jepsen;
mod server_cmd;
mod sim;

use std::process::ExitCode;

use treesync_core::codec::{self, GodotVersion};
use treesync_core::{Limits, NodePath, Op, Prop, Tree, Value};

const USAGE: &str = "usage: treesync <command>

commands:
  demo      apply a few ops to an in-memory tree and print it with its Godot bytes
  sim       deterministic simulation of a 3-replica shard under faults:
              --seeds N (default 100), --first S (default 1), --seed S (one run, verbose),
              --inject ack-before-fsync|stale-read|forget-vote (a deliberate bug to catch),
              --steps T (simulated time units, default 1500),
              --seed S --trace FILE (write the run as a TLA+ trace, see specs/README.md)
  bench     load generator against 3 in-process replicas on loopback:
              --clients N (1) --seconds S (5) --value-bytes B (128) --no-fsync --json
              --gateway (write through the WebSocket gateway, Godot Variants)
              --workload txn (8 shards: a 2-shard transaction vs two sequential writes
              vs one single-shard write, p50/p99 of each)
              --workload subscribe [--subscribers N] (8 shards: write-to-delivery p50/p99
              of merged subscribers of a world, 1 and 100 by default; idle CPU)
              --closed-lag-ms MS (50; the closed-timestamp lag of the benchmark's servers)
              --workload batch [--batch N] (16 property updates per message)
              --workload mixed [--read-percent P] (50: linearizable reads and writes)
              --rate R (open loop: R requests/s in all, latency from the scheduled send)
              --addr HOST:PORT,... (an external cluster's client addresses, no servers
              started) --system etcd (drive etcd's JSON gateway at --addr instead)
  check HISTORY [--html OUT.html] [--states-max N]
            decide a recorded history (docs/history.md): VALID (exit 0), INVALID or UNKNOWN (1)
  tree PATH                                print a subtree
  get PATH [PROP]                          print a node or one property
  set PATH PROP VALUE [PROP VALUE ...]     set properties (null unsets)
  create PARENT NAME CLASS [PROP VALUE ...]
  delete PATH                              delete a subtree
  watch PATH [--from POSITION]             print the subtree, then its changes live
  status                                   each shard's leader, and how many each server leads
            client commands: against --addr URL (default ws://127.0.0.1:7070/ws, the local
            cluster); values in Godot text syntax, e.g. Vector2(10, 20), 42, '\"text\"'
  version   print the version
  local     a local 3-replica cluster on loopback, data under ./data/local (--data DIR),
              WebSocket clients on --client-addr (default 127.0.0.1:7070 and the next two
              ports, one per server; or off),
              peers on --port-base B (default 7100: B+100, B+200, B+300),
              --shards S (default 8: the spine, shard 0, and 7 entity shards),
              --compact-entries N (log entries kept before a snapshot, default 10000),
              --closed-lag-ms L (how far resolved timestamps trail the clock, default 50)
  serve     one server of a cluster:
              --id N --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT (core c listens on PORT+c)
              --client-addr HOST:PORT|off (WebSocket clients, default 127.0.0.1:7070)
              --proto-addr HOST:PORT (the minimal framed protocol of the load generator)
              gateway limits (serve and local): --max-message-bytes B (1 MiB)
              --max-in-flight N (256) --sub-queue N (1024) --max-subs N (64)
              --data DIR --cores C --shards S --tick-ms T --compact-entries N (10000)
              --wal-rewrite-bytes B (default 256 MiB) --no-fsync (benchmarks only) --no-pin
              --closed-lag-ms L (1..60000, default 50)
              --dial 2=HOST:PORT,... (reach these peers at another address: a proxy)
              test-only faults (treesync jepsen): --test-clock-offset-file F (ms added to
              the wall clock), --test-disk-fault-file F (eio|full), --test-unsafe-local-reads
  jepsen    real `serve` processes on loopback under faults, checked for linearizability:
              --nemesis none|kill-one|kill-majority|kill-all|pause|partition|clock|disk|all
              --servers 3|5 (3) --seconds S (per nemesis, 20) --clients N (6) --keys K (4)
              --workload register|set (register) --out DIR (results/jepsen-<time>)
              --broken-reads (servers skip ReadIndex: the run must be INVALID)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str).unwrap_or("demo") {
        "demo" => demo(),
        "bench" => bench_cmd::run(&args[1..]).unwrap_or_else(|message| {
            eprintln!("treesync bench: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }),
        "sim" => match sim::run(&args[1..]) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("treesync sim: {message}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        "jepsen" => jepsen::run(&args[1..]).unwrap_or_else(|message| {
            eprintln!("treesync jepsen: {message}");
            ExitCode::from(2)
        }),
        "check" => check_cmd::run(&args[1..]).unwrap_or_else(|message| {
            eprintln!("treesync check: {message}");
            ExitCode::from(2)
        }),
        "version" | "--version" => {
            println!("treesync {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        cmd @ ("local" | "serve") => {
            init_logs();
            let result = if cmd == "local" {
                server_cmd::local(&args[1..])
            } else {
                server_cmd::serve(&args[1..])
            };
            result.unwrap_or_else(|message| {
                eprintln!("treesync {cmd}: {message}\n\n{USAGE}");
                ExitCode::from(2)
            })
        }
        cmd if client_cmd::COMMANDS.contains(&cmd) => match client_cmd::run(cmd, &args[1..]) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("treesync {cmd}: {message}");
                ExitCode::FAILURE
            }
        },
        other => {
            eprintln!("treesync: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Server logs go to stderr at `TREESYNC_LOG` (error, warn, info — the default — debug,
/// trace).
fn init_logs() {
    let level = match std::env::var("TREESYNC_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn demo() -> ExitCode {
    let mut tree = Tree::new(Limits::default());
    let ops = [
        Op::Create {
            parent: "/root".into(),
            name: "World".into(),
            class: "Node2D".into(),
            props: vec![],
        },
        Op::Create {
            parent: "/root/World".into(),
            name: "Player1".into(),
            class: "CharacterBody2D".into(),
            props: vec![
                Prop::new("position", Value::Vector2([10.0, 20.0])),
                Prop::new("hp", Value::Int(100)),
            ],
        },
        Op::Set {
            path: "/root/World/Player1".into(),
            props: vec![Prop::new("hp", Value::Int(90))],
        },
        Op::Create {
            parent: "/root/World".into(),
            name: "Player1".into(),
            class: "Node2D".into(),
            props: vec![],
        },
        Op::Move {
            path: "/root/World/Player1".into(),
            new_parent: "/root/World/Player1".into(),
            index: None,
        },
    ];
    for op in &ops {
        match tree.apply_op(op) {
            Ok(()) => println!("applied  {op:?}"),
            Err(err) => println!("rejected {} — {err} (tree unchanged)", op.name()),
        }
    }
    tree.check_invariants();
    println!("\ntree ({} nodes):", tree.len());
    print_node(tree.root(), 1);
    let value = tree
        .subtree_value(&NodePath::root())
        .expect("the root always exists");
    for version in [GodotVersion::V4, GodotVersion::V3] {
        match codec::encode(&value, version) {
            Ok(bytes) => println!(
                "\nGodot {version:?} bytes of the tree ({} bytes):\n{}",
                bytes.len(),
                hex_dump(&bytes)
            ),
            Err(err) => println!("\nGodot {version:?}: {err}"),
        }
    }
    ExitCode::SUCCESS
}

fn print_node(node: treesync_core::tree::NodeRef<'_>, depth: usize) {
    let props: Vec<String> = node.props().map(|(k, v)| format!("{k}={v:?}")).collect();
    println!(
        "{}{} ({}) {}",
        "  ".repeat(depth),
        node.name(),
        node.class(),
        props.join(" ")
    );
    for child in node.children() {
        print_node(child, depth + 1);
    }
}

fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, row)| {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            format!("  {:04x}  {}", i * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
