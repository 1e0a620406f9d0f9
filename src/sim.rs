//! `treesync sim`: runs the deterministic simulator over many seeds, like FoundationDB's.

use std::process::ExitCode;

use treesync_sim::{run_seed, Bug, SimOptions};

use crate::args::value;

/// Progress is printed every this many seeds on long runs.
const PROGRESS_EVERY: u64 = 100;

pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mut seeds, mut first, mut single, mut template) = (100u64, 1u64, None, SimOptions::new(0));
    let mut trace: Option<String> = None;
    let mut txn_trace: Option<String> = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--seeds" => seeds = value(flag, args.next())?,
            "--first" => first = value(flag, args.next())?,
            "--seed" => single = Some(value::<u64>(flag, args.next())?),
            "--steps" => template.steps = value(flag, args.next())?,
            "--crash-per-mille" => template.crash_per_mille = value(flag, args.next())?,
            "--corrupt-per-mille" => template.corrupt_per_mille = value(flag, args.next())?,
            "--inject" => template.inject = Some(value::<Bug>(flag, args.next())?),
            "--trace" => trace = Some(value::<String>(flag, args.next())?),
            "--txn-trace" => txn_trace = Some(value::<String>(flag, args.next())?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if let Some(seed) = single {
        (first, seeds) = (seed, 1);
    }
    if let Some(file) = trace {
        let seed = single.ok_or("--trace records one run: give --seed S")?;
        return write_trace(
            &SimOptions {
                seed,
                trace: true,
                ..template
            },
            &file,
        );
    }
    if let Some(file) = txn_trace {
        let seed = single.ok_or("--txn-trace records one run: give --seed S")?;
        return write_txn_trace(
            &SimOptions {
                seed,
                txn_trace: true,
                ..template
            },
            &file,
        );
    }
    // A panic inside the simulated cluster is a finding, reported per seed with its message;
    // the default hook would also print a backtrace for every one of them.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(bug) = template.inject {
        println!("injecting bug {bug:?}: failures below are expected and show the checks work");
    }
    let (mut passed, mut failed) = (0u64, 0u64);
    for seed in first..first + seeds {
        let report = run_seed(&SimOptions {
            seed,
            ..template.clone()
        });
        match &report.violation {
            None => passed += 1,
            Some(_) => {
                failed += 1;
                println!(
                    "{report}  (reproduce: treesync sim --seed {seed}{})",
                    inject_flag(&template)
                );
            }
        }
        if single.is_some() && report.violation.is_none() {
            println!("{report}");
        }
        let done = seed - first + 1;
        if seeds >= 2 * PROGRESS_EVERY && done % PROGRESS_EVERY == 0 {
            eprintln!("  … {done}/{seeds} seeds");
        }
    }
    println!("sim: {passed} seeds passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn inject_flag(options: &SimOptions) -> String {
    options
        .inject
        .map_or(String::new(), |bug| format!(" --inject {}", bug.name()))
}

/// Runs one seed recording its parallel-commit steps and writes them as the TLA+ module
/// `TxnTrace`, for `specs/ParallelCommitTrace.tla` (see `specs/trace.py`). The run's own
/// verdict is printed too (an injected bug may be caught by the simulator as well).
fn write_txn_trace(options: &SimOptions, file: &str) -> Result<ExitCode, String> {
    let report = run_seed(options);
    let trace = report
        .txn_trace
        .clone()
        .ok_or("the run panicked before its trace was complete")?;
    std::fs::write(file, &trace).map_err(|e| format!("writing {file}: {e}"))?;
    let events = trace
        .lines()
        .filter(|l| l.trim_start().starts_with("[kind"))
        .count();
    let (committed, aborted, unknown) = report.transfers;
    println!(
        "txn trace: {events} events ({committed} transfers committed, {aborted} aborted, \
         {unknown} unknown) written to {file}; the run: {}",
        report.violation.as_deref().unwrap_or("passed")
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs one seed in trace mode and writes its trace as the TLA+ module `RaftTrace`, for
/// `specs/RaftLeaderElectionTrace.tla` (see `specs/trace.py`).
fn write_trace(options: &SimOptions, file: &str) -> Result<ExitCode, String> {
    std::panic::set_hook(Box::new(|_| {}));
    let report = run_seed(options);
    println!("{report}");
    let trace = report
        .trace
        .ok_or("the run panicked before its trace was complete")?;
    if let Some(why) = &trace.unsupported {
        return Err(format!(
            "seed {}: the trace cannot be checked: {why}",
            options.seed
        ));
    }
    let title = format!(
        "treesync sim --seed {} --steps {}{}",
        options.seed,
        options.steps,
        inject_flag(options)
    );
    std::fs::write(file, trace.to_tla(&title)).map_err(|e| format!("writing {file}: {e}"))?;
    println!(
        "trace: {} events, {} restarts ({} lost their vote) written to {file}",
        trace.events.len(),
        trace.restarts,
        trace.votes_lost
    );
    Ok(ExitCode::SUCCESS)
}
