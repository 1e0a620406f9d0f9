//! `treesync check HISTORY [--html OUT.html] [--states-max N]`: decides a recorded history
//! (the JSON-lines format of `docs/history.md`, as `treesync jepsen` writes it).
//!
//! Prints a summary per workload (keys, ops, unknown outcomes, time), then one verdict:
//! `VALID` (exit 0), `INVALID` (exit 1: a register key is not linearizable or a set read
//! lost or invented elements) or `UNKNOWN` (exit 1: a key's search hit `--states-max`;
//! undecided, never a pass). For a failing register key it writes a timeline page,
//! `HISTORY.html` unless `--html` says where. Unreadable or malformed input exits 2 with
//! the line at fault.
//!
//! `treesync check --generate-demo OPS OUT [--seed S] [--keys K] [--processes P]` writes a
//! linearizable register history of OPS ops instead (`treesync_sim::history::demo`), to
//! measure the checker or to try the format.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use treesync_sim::history::demo::{generate_demo, DemoOptions};
use treesync_sim::history::{HistoryWriter, WorkloadSummary};
use treesync_sim::linearizability::CheckOptions;
use treesync_sim::{check_history, Report, Verdict};

use crate::args::value;

const USAGE: &str = "usage: treesync check HISTORY [--html OUT.html] [--states-max N]\n       \
                     treesync check --generate-demo OPS OUT [--seed S] [--keys K] \
                     [--processes P]";

/// Failing keys listed by number after the first one's explanation.
const OTHER_FAILURES_LISTED_MAX: usize = 20;

/// Set failures explained in full.
const SET_FAILURES_EXPLAINED_MAX: usize = 3;

/// Runs the command; `Err` is a usage or input error (exit 2).
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    if args.first().map(String::as_str) == Some("--generate-demo") {
        return generate(&args[1..]);
    }
    let (mut history, mut html, mut options) = (None, None, CheckOptions::default());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--html" => html = Some(PathBuf::from(value::<String>(arg, args.next())?)),
            "--states-max" => options.states_max = value(arg, args.next())?,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag:?}\n{USAGE}"))
            }
            path if history.is_none() => history = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }
    let history = history.ok_or_else(|| format!("which history?\n{USAGE}"))?;
    if options.states_max == 0 {
        return Err("--states-max must be at least 1".into());
    }
    let file = File::open(&history).map_err(|e| format!("{}: {e}", history.display()))?;
    let report = check_history(BufReader::new(file), &options)
        .map_err(|e| format!("{}: {e}", history.display()))?;
    print_summary(&history, &report);
    let html = html.unwrap_or_else(|| {
        let mut path = history.clone().into_os_string();
        path.push(".html");
        PathBuf::from(path)
    });
    Ok(print_verdict(&history, &report, &html, &options))
}

fn print_summary(history: &Path, report: &Report) {
    println!(
        "history {}: {} events read in {}",
        history.display(),
        report.events_count,
        seconds(report.read_elapsed)
    );
    print_workload("registers", &report.registers);
    print_workload("sets", &report.sets);
}

fn print_workload(name: &str, summary: &WorkloadSummary) {
    if summary.keys == 0 {
        println!("{name}: no keys");
        return;
    }
    println!(
        "{name}: {}, {} ({} unknown outcome, {} failed), checked in {}",
        counted(summary.keys, "key"),
        counted(summary.ops, "op"),
        summary.unknown,
        summary.failed,
        seconds(summary.elapsed)
    );
}

fn print_verdict(history: &Path, report: &Report, html: &Path, options: &CheckOptions) -> ExitCode {
    let verdict = report.verdict();
    if verdict == Verdict::Valid {
        println!("VALID: every register key is linearizable and every set read is consistent");
        return ExitCode::SUCCESS;
    }
    let drawn = report.register_failure_to_draw();
    let drawn_key = drawn.map(|failure| failure.violation.key);
    match (verdict, drawn) {
        (Verdict::Unknown, Some(failure)) => println!(
            "UNKNOWN: register key {}: search bound exceeded (--states-max {}): undecided, \
             not a pass\n{}",
            failure.violation.key, options.states_max, failure.violation.explanation
        ),
        (_, Some(failure)) if !failure.undecided() => println!(
            "INVALID: register key {} is not linearizable\n{}",
            failure.violation.key, failure.violation.explanation
        ),
        _ => println!(
            "INVALID: {} set key(s) lost or invented elements",
            report.set_failures.len()
        ),
    }
    for explanation in report
        .set_explanations
        .iter()
        .take(SET_FAILURES_EXPLAINED_MAX)
    {
        println!("{explanation}");
    }
    let others: Vec<String> = report
        .register_failures
        .iter()
        .filter(|failure| Some(failure.violation.key) != drawn_key)
        .map(|failure| match failure.undecided() {
            true => format!("register {} (undecided)", failure.violation.key),
            false => format!("register {}", failure.violation.key),
        })
        .chain(
            report
                .set_failures
                .iter()
                .skip(SET_FAILURES_EXPLAINED_MAX)
                .map(|failure| format!("set {}", failure.key)),
        )
        .collect();
    if !others.is_empty() {
        let more = others.len().saturating_sub(OTHER_FAILURES_LISTED_MAX);
        let tail = match more {
            0 => String::new(),
            more => format!(" and {more} more"),
        };
        let listed = &others[..others.len() - more];
        println!("other failing keys: {}{tail}", listed.join(", "));
    }
    if let Some(failure) = drawn {
        let page = failure.timeline_html(&history.display().to_string());
        match std::fs::write(html, page) {
            Ok(()) => println!("timeline: {}", html.display()),
            Err(e) => eprintln!(
                "treesync check: writing the timeline {}: {e}",
                html.display()
            ),
        }
    }
    ExitCode::FAILURE
}

/// `1 key`, `2 keys`.
fn counted(count: usize, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.3} s", elapsed.as_secs_f64())
}

/// `--generate-demo OPS OUT [--seed S] [--keys K] [--processes P]`.
fn generate(args: &[String]) -> Result<ExitCode, String> {
    let mut options = DemoOptions::default();
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => options.seed = value(arg, args.next())?,
            "--keys" => options.register_keys = value(arg, args.next())?,
            "--processes" => options.processes = value(arg, args.next())?,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag:?}\n{USAGE}"))
            }
            other => positional.push(other),
        }
    }
    let [ops, out] = positional[..] else {
        return Err(format!("--generate-demo needs OPS and OUT\n{USAGE}"));
    };
    options.ops = value("OPS", Some(&ops.to_string()))?;
    if options.register_keys == 0 || options.processes == 0 {
        return Err("--keys and --processes must be at least 1".into());
    }
    let file = File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut writer = HistoryWriter::new(BufWriter::new(file));
    let summary = generate_demo(&options, &mut writer).map_err(|e| format!("{out}: {e}"))?;
    writer.into_inner().map_err(|e| format!("{out}: {e}"))?;
    println!(
        "wrote {out}: {} ops on {} keys by {} processes ({} unknown outcome, {} failed), seed {}",
        summary.ops,
        options.register_keys,
        options.processes,
        summary.unknown,
        summary.failed,
        options.seed
    );
    Ok(ExitCode::SUCCESS)
}
