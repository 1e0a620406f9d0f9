//! The set workload's checker: grow-only sets read whole (`add`, `read_set`).
//!
//! For every `read_set` R that ended `ok`:
//! - *lost*: an element whose add ended `ok` before R was invoked (strictly: equal times
//!   overlap) is missing from R;
//! - *unexpected*: an element of R that no add invoked by R's completion could have put
//!   there. Adds that ended `ok` or unknown (`info`, or no completion) count; adds that
//!   ended `fail` did not take effect, so an element whose only adds failed is unexpected.
//!
//! Entry point: `check_set`. Cost: O(total size of the reads + adds × log adds), with the
//! lost elements listed only for the first `READS_EXAMINED_MAX` reads that lost some.
//!
//! # Invariants
//! - An element is reported once per kind, with the first read (in invoke order) that
//!   showed the anomaly; `lost_count` and `unexpected_count` count distinct elements
//!   among the reads examined.
//! - At most `ANOMALIES_LISTED_MAX` anomalies of each kind are kept.

use std::collections::{HashMap, HashSet};

use crate::history::{Call, Completion, HistoryOp, Outcome, Reply};

/// Anomalies of one kind kept per key (all are counted).
pub const ANOMALIES_LISTED_MAX: usize = 20;

/// Reads that lost elements whose lost elements are listed one by one: finding which
/// elements a read lost costs O(adds), counting them O(the read's size).
const READS_EXAMINED_MAX: usize = 100;

/// One element that a read should not have shown, or should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAnomaly {
    pub element: i64,
    /// The `read_set` that showed it, as an index into the history's ops.
    pub read: usize,
    /// The add in question: for lost, the ok add that completed first; for unexpected, the
    /// earliest invoked add of the element (failed or too late), if any.
    pub add: Option<usize>,
}

/// A set key whose reads are wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetFailure {
    pub key: u64,
    /// Distinct elements lost by some read.
    pub lost_count: usize,
    pub lost: Vec<SetAnomaly>,
    /// Distinct elements some read showed without a possible add.
    pub unexpected_count: usize,
    pub unexpected: Vec<SetAnomaly>,
    /// Reads that lost elements beyond `READS_EXAMINED_MAX` (counted, not listed).
    pub reads_unexamined: usize,
}

impl SetFailure {
    /// For a human: the counts and the listed anomalies with their lines.
    pub fn explanation(&self, ops: &[HistoryOp]) -> String {
        let mut text = format!(
            "set key {}: {} lost, {} unexpected element(s)",
            self.key, self.lost_count, self.unexpected_count
        );
        if self.reads_unexamined > 0 {
            text.push_str(&format!(
                " (and {} more reads lost elements, not examined)",
                self.reads_unexamined
            ));
        }
        for (what, anomalies) in [("lost", &self.lost), ("unexpected", &self.unexpected)] {
            for anomaly in anomalies {
                text.push_str(&format!("\n  {what} {}: ", anomaly.element));
                text.push_str(&describe_anomaly(what, anomaly, ops));
            }
        }
        text
    }
}

fn describe_anomaly(what: &str, anomaly: &SetAnomaly, ops: &[HistoryOp]) -> String {
    let read = &ops[anomaly.read];
    let read_complete = read.ok_time().expect("anomalies come from ok reads");
    let read_text = format!(
        "read_set on line {} by process {} [invoke {}, complete {read_complete}]",
        read.invoke_line, read.process, read.invoke_time
    );
    let add_text = anomaly.add.map(|add| {
        let add = &ops[add];
        let end = match &add.completion {
            None => "no completion".to_string(),
            Some(c) => match c.outcome {
                Outcome::Ok(_) => format!("ok at {}", c.time),
                Outcome::Fail => format!("fail at {}", c.time),
                Outcome::Info => format!("info at {}", c.time),
            },
        };
        format!(
            "add on line {} by process {} [invoke {}, {end}]",
            add.invoke_line, add.process, add.invoke_time
        )
    });
    match (what, add_text) {
        ("lost", Some(add)) => format!("{add} completed before the {read_text}, which lacks it"),
        (_, Some(add)) => format!("{read_text} shows it, but its earliest add is the {add}"),
        (_, None) => format!("{read_text} shows it, but nothing added it"),
    }
}

/// Per element, what its adds allow.
#[derive(Clone, Copy, Default)]
struct ElementAdds {
    /// The ok add that completed first: (completion, op).
    ok_first: Option<(u64, usize)>,
    /// The earliest invoke among adds that did not fail: (invoke, op).
    possible_first: Option<(u64, usize)>,
    /// The earliest invoked add of any outcome.
    any_first: Option<(u64, usize)>,
}

/// Checks one set key: `indices` are its ops' positions in `ops`, in invoke order.
pub fn check_set(key: u64, ops: &[HistoryOp], indices: &[usize]) -> Result<(), SetFailure> {
    let adds = element_adds(ops, indices);
    let required = required_elements(&adds);
    let mut failure = SetFailure {
        key,
        lost_count: 0,
        lost: Vec::new(),
        unexpected_count: 0,
        unexpected: Vec::new(),
        reads_unexamined: 0,
    };
    let (mut lost_seen, mut unexpected_seen) = (HashSet::new(), HashSet::new());
    let mut reads_examined = 0;
    for &read in indices {
        let Some(Completion {
            time: complete,
            outcome: Outcome::Ok(Reply::ReadSet(elements)),
            ..
        }) = &ops[read].completion
        else {
            continue;
        };
        let complete = *complete;
        let shown: HashSet<i64> = elements.iter().copied().collect();
        let invoke = ops[read].invoke_time;
        // How many elements this read must show: those whose add was ok before its invoke.
        let due = required.partition_point(|&(time, _, _)| time < invoke);
        let mut shown_due = 0;
        for &element in &shown {
            let a = adds.get(&element).copied().unwrap_or_default();
            if a.ok_first.is_some_and(|(time, _)| time < invoke) {
                shown_due += 1;
            }
            if a.possible_first.is_none_or(|(time, _)| time > complete) {
                note(
                    &mut failure.unexpected,
                    &mut unexpected_seen,
                    SetAnomaly {
                        element,
                        read,
                        add: a.any_first.map(|(_, op)| op),
                    },
                );
            }
        }
        assert!(shown_due <= due, "each due element is counted once");
        if shown_due == due {
            continue;
        }
        if reads_examined == READS_EXAMINED_MAX {
            failure.reads_unexamined += 1;
            continue;
        }
        reads_examined += 1;
        let lacking = required[..due].iter().filter(|r| !shown.contains(&r.1));
        for &(_, element, add) in lacking {
            let anomaly = SetAnomaly {
                element,
                read,
                add: Some(add),
            };
            note(&mut failure.lost, &mut lost_seen, anomaly);
        }
    }
    failure.lost_count = lost_seen.len();
    failure.unexpected_count = unexpected_seen.len();
    if failure.lost_count == 0 && failure.unexpected_count == 0 && failure.reads_unexamined == 0 {
        return Ok(());
    }
    Err(failure)
}

/// (first ok completion, element, its add) per element some add of which ended ok, in time
/// order: a read invoked after that time must show the element.
fn required_elements(adds: &HashMap<i64, ElementAdds>) -> Vec<(u64, i64, usize)> {
    let mut required: Vec<(u64, i64, usize)> = adds
        .iter()
        .filter_map(|(&element, a)| a.ok_first.map(|(time, op)| (time, element, op)))
        .collect();
    required.sort_unstable();
    required
}

/// Keeps the first anomaly per element, up to `ANOMALIES_LISTED_MAX`.
fn note(list: &mut Vec<SetAnomaly>, seen: &mut HashSet<i64>, anomaly: SetAnomaly) {
    if seen.insert(anomaly.element) && list.len() < ANOMALIES_LISTED_MAX {
        list.push(anomaly);
    }
}

fn element_adds(ops: &[HistoryOp], indices: &[usize]) -> HashMap<i64, ElementAdds> {
    let mut adds: HashMap<i64, ElementAdds> = HashMap::new();
    for &index in indices {
        let op = &ops[index];
        let Call::Add { element } = op.call else {
            continue;
        };
        let a = adds.entry(element).or_default();
        let earliest = |slot: &mut Option<(u64, usize)>, time: u64| {
            if slot.is_none_or(|(t, _)| time < t) {
                *slot = Some((time, index));
            }
        };
        earliest(&mut a.any_first, op.invoke_time);
        if !op.failed() {
            earliest(&mut a.possible_first, op.invoke_time);
        }
        if let Some(time) = op.ok_time() {
            earliest(&mut a.ok_first, time);
        }
    }
    adds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{read_history, HistoryWriter};

    /// One process per op; `ops` are (invoke, complete, call, outcome) on key 1.
    fn history(ops: &[(u64, u64, Call, Outcome)]) -> Vec<HistoryOp> {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, (invoke, complete, _, _)) in ops.iter().enumerate() {
            events.push((*invoke, false, i));
            events.push((*complete, true, i));
        }
        events.sort();
        let mut writer = HistoryWriter::new(Vec::new());
        for (time, is_complete, i) in events {
            let (_, _, call, outcome) = &ops[i];
            let result = match is_complete {
                false => writer.invoke(time, i as u64, 1, call.clone()),
                true => writer.complete(time, i as u64, outcome.clone(), None),
            };
            result.expect("well-formed by construction");
        }
        let bytes = writer.into_inner().expect("Vec");
        read_history(&bytes[..]).expect("the writer's format").ops
    }

    fn check(ops: &[(u64, u64, Call, Outcome)]) -> Result<(), SetFailure> {
        let ops = history(ops);
        let indices: Vec<usize> = (0..ops.len()).collect();
        check_set(1, &ops, &indices)
    }

    fn add(
        element: i64,
        invoke: u64,
        complete: u64,
        outcome: Outcome,
    ) -> (u64, u64, Call, Outcome) {
        (invoke, complete, Call::Add { element }, outcome)
    }

    fn read(elements: &[i64], invoke: u64, complete: u64) -> (u64, u64, Call, Outcome) {
        let reply = Outcome::Ok(Reply::ReadSet(elements.to_vec()));
        (invoke, complete, Call::ReadSet, reply)
    }

    const OK: Outcome = Outcome::Ok(Reply::Done);

    #[test]
    fn accepts_reads_that_show_what_was_added() {
        let ops = [
            add(1, 0, 10, OK),
            add(2, 5, 30, OK),
            read(&[1], 20, 25),
            read(&[1, 2], 20, 40),
            read(&[1, 2, 2], 50, 60),
            // Unknown adds may or may not show; so may concurrent ones.
            add(3, 70, 80, Outcome::Info),
            add(4, 70, 200, OK),
            read(&[1, 2, 3], 90, 100),
            read(&[1, 2, 4], 110, 120),
        ];
        assert_eq!(check(&ops), Ok(()));
    }

    #[test]
    fn reports_a_lost_element_with_its_add_and_read() {
        let ops = [
            add(1, 0, 10, OK),
            add(2, 0, 10, OK),
            read(&[2], 20, 30),
            read(&[2], 40, 50),
        ];
        let failure = check(&ops).expect_err("1 was lost");
        assert_eq!((failure.lost_count, failure.unexpected_count), (1, 0));
        let lost = &failure.lost[0];
        assert_eq!(lost.element, 1);
        let parsed = history(&ops);
        let text = failure.explanation(&parsed);
        assert!(
            text.starts_with("set key 1: 1 lost, 0 unexpected"),
            "{text}"
        );
        assert!(
            text.contains(concat!(
                "lost 1: add on line 1 by process 0 [invoke 0, ok at 10] completed before ",
                "the read_set on line 5"
            )),
            "{text}"
        );
    }

    #[test]
    fn an_add_ending_at_the_reads_invoke_is_concurrent() {
        assert_eq!(check(&[add(1, 0, 20, OK), read(&[], 20, 30)]), Ok(()));
    }

    #[test]
    fn reports_unexpected_elements() {
        // Never added; added only by a failed add; added after the read completed.
        let ops = [
            add(2, 0, 10, Outcome::Fail),
            read(&[1, 2, 3], 20, 30),
            add(3, 40, 50, OK),
        ];
        let failure = check(&ops).expect_err("three unexpected");
        assert_eq!((failure.lost_count, failure.unexpected_count), (0, 3));
        let text = failure.explanation(&history(&ops));
        assert!(
            text.contains("unexpected 1: read_set on line 3 by process 1"),
            "{text}"
        );
        assert!(text.contains("shows it, but nothing added it"), "{text}");
        assert!(
            text.contains(concat!(
                "unexpected 2: read_set on line 3 by process 1 [invoke 20, complete 30] shows ",
                "it, but its earliest add is the add on line 1 by process 0 [invoke 0, fail at 10]"
            )),
            "{text}"
        );
        assert!(text.contains("unexpected 3:"), "{text}");
    }

    #[test]
    fn an_unknown_add_may_show_once_invoked() {
        let ops = [add(1, 0, 10, Outcome::Info), read(&[1], 5, 8)];
        assert_eq!(check(&ops), Ok(()));
    }

    #[test]
    fn counts_every_element_but_lists_a_bounded_number() {
        let mut ops: Vec<(u64, u64, Call, Outcome)> = (0..50).map(|e| add(e, 0, 10, OK)).collect();
        ops.push(read(&[], 20, 30));
        let failure = check(&ops).expect_err("all lost");
        assert_eq!(failure.lost_count, 50);
        assert_eq!(failure.lost.len(), ANOMALIES_LISTED_MAX);
    }
}
