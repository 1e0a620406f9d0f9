//! `treesync jepsen`: real `treesync serve` processes on loopback, concurrent clients
//! through the WebSocket gateway, one nemesis per run, then `treesync check` on the
//! recorded history (Jepsen's shape: Kingsbury, "Jepsen: etcd 3.4.3", 2020).
//!
//! A run: start the servers (`cluster`), create the workload's keys, run the clients
//! (`workload`) while the nemesis cycles fault / heal (`nemesis`), heal, let the cluster
//! recover with the clients still running, stop them, read every key once more (a cluster
//! that never recovers fails the run), then check the history in a child process
//! (`treesync check`, so the documented file format is the contract). Everything lands in
//! `<out>/<nemesis>/`: `history.jsonl`, `history.html` (on failure), `check.txt`,
//! `nemesis.log`, `node<i>.log` and `verdict.txt`.

mod bank;
mod cluster;
mod nemesis;
mod proxy;
mod workload;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::args::value;
use cluster::Cluster;
use nemesis::Nemesis;
use workload::{ClientTask, History, Workload};

/// Time the healed cluster gets, clients still running, before they stop.
const RECOVERY: Duration = Duration::from_secs(3);
/// Process ids of the final reads (above any client's).
const FINAL_PROCESS: u64 = 1_000_000;

struct Options {
    nemeses: Vec<Nemesis>,
    servers: u64,
    seconds: u64,
    clients: u64,
    keys: u64,
    workload: Workload,
    out: PathBuf,
    broken_reads: bool,
    seed: u64,
}

fn options(args: &[String]) -> Result<Options, String> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut o = Options {
        nemeses: vec![Nemesis::Partition],
        servers: 3,
        seconds: 20,
        clients: 6,
        keys: 4,
        workload: Workload::Register,
        out: PathBuf::from(format!("results/jepsen-{started}")),
        broken_reads: false,
        seed: started,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--nemesis" => {
                let name: String = value(flag, args.next())?;
                o.nemeses = match name.as_str() {
                    "all" => Nemesis::ALL.to_vec(),
                    _ => name
                        .split(',')
                        .map(|n| Nemesis::parse(n).ok_or_else(|| format!("unknown nemesis {n:?}")))
                        .collect::<Result<_, _>>()?,
                };
            }
            "--servers" => o.servers = value(flag, args.next())?,
            "--seconds" => o.seconds = value(flag, args.next())?,
            "--clients" => o.clients = value(flag, args.next())?,
            "--keys" => o.keys = value(flag, args.next())?,
            "--seed" => o.seed = value(flag, args.next())?,
            "--out" => o.out = PathBuf::from(value::<String>(flag, args.next())?),
            "--broken-reads" => o.broken_reads = true,
            "--workload" => {
                o.workload = match value::<String>(flag, args.next())?.as_str() {
                    "register" => Workload::Register,
                    "set" => Workload::Set,
                    "bank" => Workload::Bank,
                    other => {
                        return Err(format!("unknown workload {other:?} (register, set, bank)"))
                    }
                }
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if !matches!(o.servers, 3 | 5) {
        return Err(format!("--servers must be 3 or 5, not {}", o.servers));
    }
    if o.clients == 0 || o.keys == 0 || o.seconds == 0 {
        return Err("--clients, --keys and --seconds must be at least 1".into());
    }
    Ok(o)
}

/// What one nemesis run found.
struct Report {
    nemesis: Nemesis,
    ops: workload::Counts,
    faults: u64,
    check_seconds: f64,
    verdict: String,
}

pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let o = options(args)?;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    println!(
        "treesync jepsen: {} servers · {} clients · {} keys · {:?} workload · {} s per nemesis{} · results in {}",
        o.servers,
        o.clients,
        o.keys,
        o.workload,
        o.seconds,
        if o.broken_reads { " · BROKEN READS (must be INVALID)" } else { "" },
        o.out.display()
    );
    let mut reports = Vec::new();
    for &nemesis in &o.nemeses {
        reports.push(run_one(&o, nemesis)?);
    }
    println!("\nnemesis        ops     ok   fail   info  faults  check s  verdict");
    for r in &reports {
        println!(
            "{:<13} {:>5}  {:>5}  {:>5}  {:>5}  {:>6}  {:>7.2}  {}",
            r.nemesis.name(),
            r.ops.ops(),
            r.ops.ok,
            r.ops.fail,
            r.ops.info,
            r.faults,
            r.check_seconds,
            r.verdict
        );
    }
    let valid = reports.iter().all(|r| r.verdict == "VALID");
    println!(
        "jepsen: {} of {} runs VALID",
        reports.iter().filter(|r| r.verdict == "VALID").count(),
        reports.len()
    );
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_one(o: &Options, nemesis: Nemesis) -> Result<Report, String> {
    let dir = o.out.join(nemesis.name());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cluster = Cluster::start(&dir, o.servers, o.broken_reads)?;
    let urls: Vec<String> = cluster.urls.values().cloned().collect();
    // One clock for the history and the nemesis log, so their times compare.
    let started = Instant::now();
    let history_path = dir.join("history.jsonl");
    let history = Arc::new(History::create(&history_path, started)?);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let ledger = Arc::new(bank::Ledger::default());
    let clients = {
        let (urls, history, stop) = (urls.clone(), history.clone(), stop.clone());
        let (count, keys, workload) = (o.clients, o.keys, o.workload);
        let ledger = ledger.clone();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                if workload == Workload::Bank {
                    let setup = bank::setup(&urls).await;
                    let failed = setup.is_err();
                    let _ = ready_tx.send(setup);
                    if failed {
                        return;
                    }
                    let tasks: Vec<_> = (0..count)
                        .map(|i| {
                            let client =
                                bank::client(i, urls.clone(), ledger.clone(), stop.clone());
                            actix_rt::spawn(client)
                        })
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                    return;
                }
                let setup = workload::setup(&urls, workload, keys).await;
                let failed = setup.is_err();
                let _ = ready_tx.send(setup);
                if failed {
                    return;
                }
                let next_value = std::rc::Rc::new(std::cell::Cell::new(1));
                let tasks: Vec<_> = (0..count)
                    .map(|index| {
                        let task = ClientTask {
                            index,
                            clients: count,
                            urls: urls.clone(),
                            keys,
                            workload,
                            history: history.clone(),
                            next_value: next_value.clone(),
                            stop: stop.clone(),
                        };
                        actix_rt::spawn(task.run())
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
            })
        })
    };
    let setup = ready_rx
        .recv()
        .map_err(|_| "the client thread stopped before the setup finished".to_string())?;
    setup.map_err(|e| format!("{}: {e}", nemesis.name()))?;
    let mut log = String::new();
    let mut rng = treesync_core::rng::SplitMix64::new(o.seed ^ nemesis as u64);
    let budget = started.elapsed() + Duration::from_secs(o.seconds);
    let mut faults = 0;
    let mut now = "healthy".to_string();
    while started.elapsed() + nemesis::QUIET + nemesis::FAULT_HOLD <= budget {
        wait(
            &started,
            nemesis::QUIET,
            &history,
            nemesis,
            faults,
            &now,
            budget,
        );
        if nemesis != Nemesis::None {
            now = nemesis::inject(nemesis, &mut cluster, &mut rng, faults)?;
            faults += 1;
            let _ = writeln!(log, "{:>8.3} s  {now}", started.elapsed().as_secs_f64());
        }
        wait(
            &started,
            nemesis::FAULT_HOLD,
            &history,
            nemesis,
            faults,
            &now,
            budget,
        );
        let exited = cluster.reap();
        if !exited.is_empty() {
            let _ = writeln!(
                log,
                "{:>8.3} s  exited by themselves: {exited:?}",
                started.elapsed().as_secs_f64()
            );
        }
        nemesis::heal(&mut cluster)?;
        now = "healthy".into();
        let _ = writeln!(log, "{:>8.3} s  healed", started.elapsed().as_secs_f64());
    }
    wait(
        &started,
        RECOVERY,
        &history,
        nemesis,
        faults,
        "recovering",
        budget + RECOVERY,
    );
    stop.store(true, Ordering::SeqCst);
    clients
        .join()
        .map_err(|_| "a client task panicked".to_string())?;
    println!();
    let checked = Instant::now();
    let (verdict, ops) = if o.workload == Workload::Bank {
        let verdict = actix_rt::System::new().block_on(bank::check(&urls, &ledger));
        cluster.stop();
        history.finish()?;
        let ops = workload::Counts {
            ok: ledger.ok.load(Ordering::SeqCst),
            fail: ledger.fail.load(Ordering::SeqCst),
            info: ledger.unknown.load(Ordering::SeqCst),
        };
        let verdict = verdict.unwrap_or_else(|e| format!("UNAVAILABLE after heal ({e})"));
        (verdict, ops)
    } else {
        let final_reads = actix_rt::System::new().block_on(workload::final_reads(
            &urls,
            o.workload,
            o.keys,
            &history,
            FINAL_PROCESS,
        ));
        cluster.stop();
        history.finish()?;
        let verdict = match final_reads {
            Err(e) => format!("UNAVAILABLE after heal ({e})"),
            Ok(()) => check(&history_path, &dir)?,
        };
        (verdict, history.counts())
    };
    std::fs::write(dir.join("nemesis.log"), &log).map_err(|e| e.to_string())?;
    let check_seconds = checked.elapsed().as_secs_f64();
    let summary = format!(
        "nemesis {} · {} ops (ok {}, fail {}, info {}) · {faults} faults · check {check_seconds:.2} s · {verdict}\n",
        nemesis.name(),
        ops.ops(),
        ops.ok,
        ops.fail,
        ops.info
    );
    std::fs::write(dir.join("verdict.txt"), &summary).map_err(|e| e.to_string())?;
    print!("jepsen {summary}");
    Ok(Report {
        nemesis,
        ops,
        faults,
        check_seconds,
        verdict,
    })
}

/// Waits `span` (the nemesis schedule), printing a progress line every second.
fn wait(
    started: &Instant,
    span: Duration,
    history: &History,
    nemesis: Nemesis,
    faults: u64,
    now: &str,
    budget: Duration,
) {
    let until = Instant::now() + span;
    loop {
        let counts = history.counts();
        print!(
            "\rjepsen {}: {:>5.1}/{} s · {} ops (ok {} · fail {} · info {}) · faults {faults} · {now:<32}",
            nemesis.name(),
            started.elapsed().as_secs_f64(),
            budget.as_secs(),
            counts.ops(),
            counts.ok,
            counts.fail,
            counts.info
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}

/// Runs `treesync check` on the history; its output goes to `check.txt`.
fn check(history: &Path, dir: &Path) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let html = dir.join("history.html");
    let output = Command::new(exe)
        .arg("check")
        .arg(history)
        .arg("--html")
        .arg(&html)
        .output()
        .map_err(|e| format!("running treesync check: {e}"))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    std::fs::write(dir.join("check.txt"), &text).map_err(|e| e.to_string())?;
    Ok(match output.status.code() {
        Some(0) => "VALID".into(),
        Some(1) if text.contains("INVALID") => {
            format!("INVALID (see {})", dir.join("check.txt").display())
        }
        Some(1) => format!("UNKNOWN (see {})", dir.join("check.txt").display()),
        _ => format!(
            "CHECK ERROR: {}",
            text.lines().last().unwrap_or("no output")
        ),
    })
}
