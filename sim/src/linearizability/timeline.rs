//! Draws a register violation as one self-contained HTML page (no scripts, no external
//! files), as Porcupine's visualizer does: one lane per client, each operation a bar from
//! its invoke to its completion, unknown outcomes drawn to the end of the axis.
//!
//! The longest linearizable prefix the search found is numbered in linearization order
//! (`#1`, `#2`, ...), the operation that could not be placed is red, and the ones that
//! could have gone next instead are outlined. A key with more than `TIMELINE_OPS_MAX`
//! operations is cut to those overlapping the dead end's window, and the page says so.
//!
//! Entry point: `render`.
//!
//! # Invariants
//! - Every text from the history reaches the page through `escape`.
//! - The operations of the dead end (blocked, candidates, the last prefix ops) are always
//!   shown.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::{describe, describe_kind, OpKind, Operation, Violation, ViolationKind};

/// Operations drawn at most; past it only the dead end's window is shown.
pub const TIMELINE_OPS_MAX: usize = 300;

/// The last prefix operations that, with the blocked op and the candidates, set the window.
const WINDOW_PREFIX_OPS: usize = 8;

/// Ops begun before the window (mostly unknown outcomes) drawn at most on a cut page.
const EARLIER_OPS_MAX: usize = 20;

/// Axis ticks drawn.
const TICKS_COUNT: u64 = 6;

/// What to draw.
pub struct TimelineInput<'a> {
    /// The history that was checked (ops of other keys are skipped).
    pub history: &'a [Operation],
    /// A violation of one of its keys, its indices into `history`.
    pub violation: &'a Violation,
    /// How to name `history[i]` (as the explanation does, e.g. `line 12`).
    pub name: &'a dyn Fn(usize) -> String,
    /// Where the history came from, for the page's title.
    pub title: &'a str,
}

/// An operation's part in the dead end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Position in the longest linearizable prefix, from 1.
    Prefix(usize),
    Blocked,
    Candidate,
    Other,
}

/// The page, as one string.
pub fn render(input: &TimelineInput<'_>) -> String {
    let key = input.violation.key;
    let ops: Vec<usize> = (0..input.history.len())
        .filter(|&i| input.history[i].key == key)
        .collect();
    let roles = roles(input.violation);
    let selection = select(input.history, &ops, input.violation);
    let (shown, cut_note) = (selection.ops, selection.note);
    let axis = Axis::new(input.history, &shown, selection.window);
    let mut page = String::with_capacity(4096 + 600 * shown.len());
    let verdict = match input.violation.kind {
        ViolationKind::NotLinearizable => "not linearizable",
        ViolationKind::SearchBoundExceeded { .. } => "undecided (search bound exceeded)",
    };
    let heading = format!("key {key}: {verdict}");
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    write!(
        page,
        "<title>{} — {}</title>\n<style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&heading),
        escape(input.title),
        escape(&heading)
    )
    .expect("writing to a String cannot fail");
    writeln!(
        page,
        "<p class=\"note\">History: {}. {} of the key's {} operations shown{}.</p>",
        escape(input.title),
        shown.len(),
        ops.len(),
        cut_note.map_or(String::new(), |note| format!(": {}", escape(&note)))
    )
    .expect("writing to a String cannot fail");
    page.push_str(LEGEND);
    page.push_str(&axis.ticks());
    for (label, lane) in lanes(input.history, &shown) {
        write!(
            page,
            "<div class=\"lane\"><div class=\"who\">{}</div><div class=\"track\">",
            escape(&label)
        )
        .expect("writing to a String cannot fail");
        for index in lane {
            let role = roles.get(&index).copied().unwrap_or(Role::Other);
            page.push_str(&bar(input, index, role, &axis));
        }
        page.push_str("</div></div>\n");
    }
    writeln!(
        page,
        "<h2>Checker's explanation</h2>\n<pre>{}</pre>",
        escape(&input.violation.explanation)
    )
    .expect("writing to a String cannot fail");
    page.push_str(&table(input, &shown, &roles));
    page.push_str("</body></html>\n");
    page
}

fn roles(violation: &Violation) -> HashMap<usize, Role> {
    let mut roles = HashMap::new();
    if let Some(dead_end) = &violation.dead_end {
        for (position, &op) in dead_end.prefix.iter().enumerate() {
            roles.insert(op, Role::Prefix(position + 1));
        }
        for &op in &dead_end.candidates {
            roles.insert(op, Role::Candidate);
        }
        roles.insert(dead_end.blocked, Role::Blocked);
    }
    roles
}

/// What to draw of a key's operations.
struct Selection {
    /// Indices into `history`, in order.
    ops: Vec<usize>,
    /// If some were left out, which were kept.
    note: Option<String>,
    /// The time window the axis spans, if cut to one; ops reaching out of it are clipped.
    window: Option<(u64, u64)>,
}

fn select(history: &[Operation], ops: &[usize], violation: &Violation) -> Selection {
    if ops.len() <= TIMELINE_OPS_MAX {
        return Selection {
            ops: ops.to_vec(),
            note: None,
            window: None,
        };
    }
    let Some(dead_end) = &violation.dead_end else {
        return Selection {
            ops: ops[..TIMELINE_OPS_MAX].to_vec(),
            note: Some(format!(
                "the first {TIMELINE_OPS_MAX}, as the search met no dead end"
            )),
            window: None,
        };
    };
    let prefix_tail = dead_end.prefix.len().saturating_sub(WINDOW_PREFIX_OPS);
    let focus: Vec<usize> = std::iter::once(dead_end.blocked)
        .chain(dead_end.candidates.iter().copied())
        .chain(dead_end.prefix[prefix_tail..].iter().copied())
        .collect();
    let low = focus.iter().map(|&i| history[i].invoke).min();
    let low = low.expect("focus holds the blocked op");
    let high = focus.iter().map(|&i| known_end(&history[i])).max();
    let high = high.expect("focus holds the blocked op");
    let mut shown: Vec<usize> = ops
        .iter()
        .copied()
        .filter(|&i| history[i].invoke <= high && history[i].complete.is_none_or(|c| c >= low))
        .collect();
    let mut note = format!(
        "only those overlapping [{low}, {high}], the window of the op that could not be placed, \
         the ops that could have gone next and the last {} of the prefix (the axis spans that \
         window; bars marked ← began before it)",
        dead_end.prefix.len() - prefix_tail
    );
    // Keep the dead end, then what began inside the window, then a few that began before
    // it (unknown outcomes mostly, which overlap everything after them), nearest first.
    let overlapping = shown.len();
    let blocked_invoke = history[dead_end.blocked].invoke;
    shown.sort_by_key(|&i| {
        let distance = history[i].invoke.abs_diff(blocked_invoke);
        (!focus.contains(&i), history[i].invoke < low, distance, i)
    });
    let mut earlier_count = 0;
    shown.retain(|&i| {
        if focus.contains(&i) || history[i].invoke >= low {
            return true;
        }
        earlier_count += 1;
        earlier_count <= EARLIER_OPS_MAX
    });
    shown.truncate(TIMELINE_OPS_MAX);
    shown.sort_unstable();
    if shown.len() < overlapping {
        note.push_str(&format!(
            "; {} more overlap it and are left out (kept: those invoked nearest the op that \
             could not be placed, at most {EARLIER_OPS_MAX} begun before the window)",
            overlapping - shown.len()
        ));
    }
    Selection {
        ops: shown,
        note: Some(note),
        window: Some((low, high)),
    }
}

/// The completion, or the invoke of an unknown outcome.
fn known_end(op: &Operation) -> u64 {
    op.complete.unwrap_or(op.invoke)
}

/// One lane per client, in client order; a client's ops that overlap (an unknown outcome
/// followed by more ops of the same client) get extra lanes.
fn lanes(history: &[Operation], shown: &[usize]) -> Vec<(String, Vec<usize>)> {
    let mut by_client: BTreeMap<u64, Vec<Vec<usize>>> = BTreeMap::new();
    for &index in shown {
        let op = &history[index];
        let lanes = by_client.entry(op.client).or_default();
        let free = lanes.iter().position(|lane| {
            let last = &history[*lane.last().expect("lanes are never empty")];
            last.complete.is_some_and(|c| c < op.invoke)
        });
        match free {
            Some(lane) => lanes[lane].push(index),
            None => lanes.push(vec![index]),
        }
    }
    let mut result = Vec::new();
    for (client, lanes) in by_client {
        let many = lanes.len() > 1;
        for (n, lane) in lanes.into_iter().enumerate() {
            let label = match many {
                true => format!("client {client} ({})", n + 1),
                false => format!("client {client}"),
            };
            result.push((label, lane));
        }
    }
    result
}

/// Maps times to percentages of the track's width.
struct Axis {
    start: u64,
    end: u64,
}

impl Axis {
    /// Spans `window` if given, else every shown op.
    fn new(history: &[Operation], shown: &[usize], window: Option<(u64, u64)>) -> Axis {
        let (low, high) = window.unwrap_or_else(|| {
            let low = shown.iter().map(|&i| history[i].invoke).min();
            let high = shown.iter().map(|&i| known_end(&history[i])).max();
            (low.unwrap_or(0), high.unwrap_or(0))
        });
        let span = (high - low).max(1);
        // Room on the right for unknown outcomes, drawn to the end.
        Axis {
            start: low.saturating_sub(span / 40),
            end: high.saturating_add(span / 12).max(high + 1),
        }
    }

    fn percent(&self, time: u64) -> f64 {
        let time = time.clamp(self.start, self.end);
        (time - self.start) as f64 * 100.0 / (self.end - self.start) as f64
    }

    fn ticks(&self) -> String {
        let span = self.end - self.start;
        let (unit, per) = match span {
            0..=9_999 => ("ns", 1.0),
            10_000..=9_999_999 => ("µs", 1e3),
            10_000_000..=9_999_999_999 => ("ms", 1e6),
            _ => ("s", 1e9),
        };
        let mut html = String::from("<div class=\"lane axis\"><div class=\"who\">time</div>");
        html.push_str("<div class=\"track\">");
        // No tick at the right edge, where its label would not fit.
        for tick in 0..TICKS_COUNT {
            let time = self.start + span / TICKS_COUNT * tick;
            let decimals = if unit == "ns" { 0 } else { 3 };
            write!(
                html,
                "<span class=\"tick\" style=\"left:{:.3}%\">{:.decimals$} {unit}</span>",
                self.percent(time),
                time as f64 / per
            )
            .expect("writing to a String cannot fail");
        }
        html.push_str("</div></div>\n");
        html
    }
}

fn bar(input: &TimelineInput<'_>, index: usize, role: Role, axis: &Axis) -> String {
    let op = &input.history[index];
    let left = axis.percent(op.invoke);
    let right = op.complete.map_or(100.0, |c| axis.percent(c));
    let kind = match op.kind {
        OpKind::Write { .. } => "write",
        OpKind::Read { .. } => "read",
        OpKind::Cas { .. } => "cas",
    };
    let mut classes = format!("op {kind}");
    if op.complete.is_none() {
        classes.push_str(" unknown");
    }
    let badge = match role {
        Role::Prefix(position) => {
            classes.push_str(" prefix");
            format!("#{position} ")
        }
        Role::Blocked => {
            classes.push_str(" blocked");
            "✗ ".to_string()
        }
        Role::Candidate => {
            classes.push_str(" candidate");
            String::new()
        }
        Role::Other => String::new(),
    };
    // An op invoked before the axis starts is clipped at its left edge.
    let clipped = if op.invoke < axis.start { "← " } else { "" };
    let label = format!("{clipped}{}", short(&op.kind));
    let tip = format!(
        "{}: {}{}",
        (input.name)(index),
        describe(op),
        role_text(role)
    );
    format!(
        "<div class=\"{classes}\" style=\"left:{left:.3}%;width:{:.3}%\" title=\"{}\">{}</div>",
        (right - left).max(0.0),
        escape(&tip),
        escape(&format!("{badge}{label}"))
    )
}

/// `w 5`, `r 5`, `r ∅`, `cas 1→2`.
fn short(kind: &OpKind) -> String {
    match *kind {
        OpKind::Write { value } => format!("w {value}"),
        OpKind::Read { value: Some(value) } => format!("r {value}"),
        OpKind::Read { value: None } => "r ∅".to_string(),
        OpKind::Cas { expected, new } => format!("cas {expected}→{new}"),
    }
}

fn role_text(role: Role) -> String {
    match role {
        Role::Prefix(position) => format!(" — #{position} of the longest linearizable prefix"),
        Role::Blocked => " — could not be placed after that prefix".to_string(),
        Role::Candidate => " — could have gone next; led to a dead end".to_string(),
        Role::Other => String::new(),
    }
}

fn table(input: &TimelineInput<'_>, shown: &[usize], roles: &HashMap<usize, Role>) -> String {
    let mut html = String::from(
        "<h2>Operations shown</h2>\n<table><tr><th>op</th><th>client</th><th>what</th>\
         <th>invoke</th><th>complete</th><th>in the dead end</th></tr>\n",
    );
    for &index in shown {
        let op = &input.history[index];
        let role = roles.get(&index).copied().unwrap_or(Role::Other);
        let class = match role {
            Role::Blocked => " class=\"blocked-row\"",
            _ => "",
        };
        let complete = op.complete.map_or("unknown".to_string(), |c| c.to_string());
        writeln!(
            html,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&(input.name)(index)),
            op.client,
            escape(&describe_kind(&op.kind)),
            op.invoke,
            complete,
            escape(role_text(role).trim_start_matches(" — "))
        )
        .expect("writing to a String cannot fail");
    }
    html.push_str("</table>\n");
    html
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const LEGEND: &str = "<div class=\"legend\">\
<span class=\"op write\">write</span> <span class=\"op read\">read</span> \
<span class=\"op cas\">cas</span> \
<span class=\"op write unknown\">unknown outcome (drawn to the end)</span> \
<span class=\"op read prefix\">#n in the longest linearizable prefix</span> \
<span class=\"op read blocked\">✗ could not be placed</span> \
<span class=\"op read candidate\">could have gone next</span>\
<br>Hover over a bar for its times; the table below lists every operation shown.</div>\n";

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.note { color: #555; }
.legend { margin: .8em 0 1em; line-height: 2.2; }
.legend .op { position: static; display: inline-block; padding: 0 .5em; }
.lane { display: flex; align-items: center; height: 30px; border-bottom: 1px solid #eee; }
.axis { height: 24px; border-bottom: 1px solid #999; }
.who { width: 9em; flex: none; font-size: 12px; color: #444; white-space: nowrap; }
.track { position: relative; flex: 1; height: 100%; min-width: 800px; }
.tick { position: absolute; bottom: 2px; font-size: 11px; color: #666;
        border-left: 1px solid #999; padding-left: 3px; white-space: nowrap; }
.op { position: absolute; top: 4px; height: 20px; min-width: 3px; box-sizing: border-box;
      border-radius: 3px; font-size: 11px; line-height: 20px; color: #fff; overflow: hidden;
      white-space: nowrap; padding: 0 3px; border: 1px solid rgba(0,0,0,.3); }
.write { background: #3f72c4; } .read { background: #2f9a55; } .cas { background: #8a4fc9; }
.unknown { background-image: repeating-linear-gradient(45deg, rgba(255,255,255,.45) 0 6px,
           transparent 6px 12px); border-style: dashed; opacity: .75; }
.prefix { box-shadow: 0 0 0 2px #e0b000; font-weight: 600; }
.blocked { background: #d62828; box-shadow: 0 0 0 3px #7a0000; font-weight: 700; z-index: 2;
           opacity: 1; }
.candidate { box-shadow: 0 0 0 2px #f08c00; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
.blocked-row { background: #fde2e2; font-weight: 600; }
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::check;

    fn op(kind: OpKind, invoke: u64, complete: Option<u64>, client: u64) -> Operation {
        Operation {
            key: 3,
            kind,
            invoke,
            complete,
            client,
        }
    }

    fn page(history: &[Operation]) -> String {
        let violation = check(history).expect_err("not linearizable");
        render(&TimelineInput {
            history,
            violation: &violation,
            name: &|i| format!("op {i}"),
            title: "<test & title>",
        })
    }

    #[test]
    fn draws_lanes_prefix_blocked_op_and_explanation() {
        let history = [
            op(OpKind::Write { value: 1 }, 0, Some(10), 1),
            op(OpKind::Write { value: 2 }, 20, Some(30), 1),
            op(
                OpKind::Cas {
                    expected: 2,
                    new: 5,
                },
                22,
                None,
                4,
            ),
            op(OpKind::Read { value: Some(1) }, 40, Some(50), 2),
        ];
        let html = page(&history);
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(
            !html.contains("<script") && !html.contains("href="),
            "self-contained"
        );
        assert!(html.contains("&lt;test &amp; title&gt;"), "escaped title");
        assert!(html.contains("<h1>key 3: not linearizable</h1>"), "{html}");
        for lane in ["client 1", "client 2", "client 4"] {
            assert!(
                html.contains(&format!("<div class=\"who\">{lane}</div>")),
                "{lane}"
            );
        }
        assert!(html.contains("class=\"op read blocked\""), "{html}");
        assert!(html.contains("✗ r 1"), "{html}");
        assert!(html.contains("#1 w 1") && html.contains("#2 w 2"), "{html}");
        assert!(html.contains("op cas unknown"), "{html}");
        assert!(html.contains("width:"), "{html}");
        assert!(html.contains("<h2>Checker's explanation</h2>"), "{html}");
        assert!(
            html.contains("4 of the key's 4 operations shown."),
            "{html}"
        );
    }

    #[test]
    fn a_long_history_is_cut_to_the_dead_ends_window() {
        // 1000 sequential writes, then a read of the first value: stale.
        let mut history: Vec<Operation> = (0..1000)
            .map(|i| {
                op(
                    OpKind::Write {
                        value: i as i64 + 1,
                    },
                    10 * i,
                    Some(10 * i + 5),
                    i % 4,
                )
            })
            .collect();
        history.push(op(OpKind::Read { value: Some(1) }, 20_000, Some(20_010), 9));
        let html = page(&history);
        assert!(
            html.contains("of the key's 1001 operations shown: only those overlapping"),
            "{html}"
        );
        assert!(html.contains("✗ r 1"), "the blocked op is drawn");
        let bars = html.matches("<div class=\"op ").count();
        assert!(bars <= TIMELINE_OPS_MAX, "{bars} bars");
    }
}
