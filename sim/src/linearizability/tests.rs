//! Tests of the linearizability checker: each names what it proves.
use super::*;

const KEY: u64 = 7;

fn write(value: i64, invoke: u64, complete: u64) -> Operation {
    Operation {
        key: KEY,
        kind: OpKind::Write { value },
        invoke,
        complete: Some(complete),
        client: invoke,
    }
}

fn unknown_write(value: i64, invoke: u64) -> Operation {
    Operation {
        complete: None,
        ..write(value, invoke, invoke)
    }
}

fn read(value: Option<i64>, invoke: u64, complete: u64) -> Operation {
    Operation {
        kind: OpKind::Read { value },
        ..write(0, invoke, complete)
    }
}

fn cas(expected: i64, new: i64, invoke: u64, complete: u64) -> Operation {
    Operation {
        kind: OpKind::Cas { expected, new },
        ..write(0, invoke, complete)
    }
}

fn unknown_cas(expected: i64, new: i64, invoke: u64) -> Operation {
    Operation {
        complete: None,
        ..cas(expected, new, invoke, invoke)
    }
}

fn on(key: u64, op: Operation) -> Operation {
    Operation { key, ..op }
}

fn rejected(history: &[Operation]) -> Violation {
    let violation = check(history).expect_err("history should be rejected");
    assert_eq!(
        violation.kind,
        ViolationKind::NotLinearizable,
        "{violation}"
    );
    violation
}

/// The search alone, without `prepare`'s early rejection of unwritten values; one key.
fn search_only(history: &[Operation]) -> Result<(), Violation> {
    let indices: Vec<usize> = (0..history.len()).collect();
    let uses = value_uses(history, &indices);
    let register = Register {
        key: KEY,
        history,
        entries: indices
            .iter()
            .filter_map(|&i| entry(history, i, &uses))
            .collect(),
        ops_count: indices.len(),
        name: &|i| format!("op {i}"),
    };
    register.search(STATES_MAX_DEFAULT)
}

#[test]
fn accepts_sequential_history() {
    let history = [
        read(None, 0, 5),
        write(1, 10, 20),
        read(Some(1), 30, 40),
        write(2, 50, 60),
        read(Some(2), 70, 80),
        read(Some(2), 90, 95),
    ];
    assert_eq!(check(&history), Ok(()));
    assert_eq!(check(&[]), Ok(()));
}

#[test]
fn accepts_concurrent_write_and_read_seeing_either_value() {
    for seen in [1, 2] {
        let history = [write(1, 0, 10), write(2, 20, 40), read(Some(seen), 25, 35)];
        assert_eq!(check(&history), Ok(()), "read saw {seen}");
    }
}

#[test]
fn rejects_stale_read() {
    let history = [write(1, 0, 10), write(2, 20, 30), read(Some(1), 40, 50)];
    let violation = rejected(&history);
    assert_eq!(violation.key, KEY);
    let text = violation.to_string();
    assert!(text.contains("key 7"), "{text}");
    assert!(
        text.contains("op 2: client 40 read 1 [invoke 40, complete 50]"),
        "{text}"
    );
    assert!(text.contains("leaving the register = 2"), "{text}");
    assert!(text.contains("completed without a place"), "{text}");
}

#[test]
fn stale_read_dead_end_names_prefix_and_blocked_op() {
    let history = [write(1, 0, 10), write(2, 20, 30), read(Some(1), 40, 50)];
    let dead_end = rejected(&history)
        .dead_end
        .expect("the search met a dead end");
    assert_eq!(dead_end.prefix, vec![0, 1]);
    assert_eq!(dead_end.blocked, 2);
    assert!(dead_end.candidates.is_empty(), "{dead_end:?}");
}

#[test]
fn check_named_uses_the_callers_names() {
    let history = [write(1, 0, 10), write(2, 20, 30), read(Some(1), 40, 50)];
    let options = CheckOptions::default();
    let violation =
        check_named(&history, &options, &|i| format!("line {}", 10 + i)).expect_err("stale read");
    assert!(
        violation.explanation.contains("line 12: client 40 read 1"),
        "{violation}"
    );
}

#[test]
fn rejects_cas_on_overwritten_value() {
    let history = [write(1, 0, 10), write(2, 20, 30), cas(1, 3, 40, 50)];
    let text = rejected(&history).to_string();
    assert!(text.contains("op 2: client 40 cas 1->3"), "{text}");
}

#[test]
fn rejects_two_successful_cases_from_one_value() {
    // Only one of two concurrent CASes from 1 can find 1.
    rejected(&[write(1, 0, 10), cas(1, 2, 20, 30), cas(1, 3, 20, 30)]);
    // Unless a write of 1 in between makes the second one possible.
    let history = [
        write(1, 0, 10),
        cas(1, 2, 20, 30),
        cas(1, 3, 20, 30),
        write(1, 20, 30),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn rejects_cas_expecting_a_value_never_written() {
    let text = rejected(&[write(1, 0, 10), cas(5, 6, 20, 30)]).to_string();
    assert!(text.contains("succeeded on an expected value"), "{text}");
    assert!(text.contains("op 1: client 20 cas 5->6"), "{text}");
    // The same check counts a CAS's new value as written.
    assert_eq!(
        check(&[write(5, 0, 1), cas(5, 6, 2, 5), read(Some(6), 10, 20)]),
        Ok(())
    );
}

#[test]
fn rejects_read_of_cas_value_before_its_invoke() {
    rejected(&[
        write(1, 0, 10),
        read(Some(2), 20, 30),
        unknown_cas(1, 2, 40),
    ]);
    rejected(&[write(1, 0, 10), read(Some(2), 20, 30), cas(1, 2, 40, 50)]);
}

#[test]
fn rejects_unset_read_after_known_cas() {
    // The known CAS found 1, so the unknown write took effect before it.
    rejected(&[unknown_write(1, 0), cas(1, 2, 10, 20), read(None, 30, 40)]);
    rejected(&[unknown_write(5, 0), cas(5, 6, 10, 20), read(None, 30, 40)]);
}

#[test]
fn accepts_unknown_write_taking_effect_late_for_a_cas() {
    let history = [unknown_write(5, 0), read(None, 10, 20), cas(5, 6, 30, 40)];
    assert_eq!(check(&history), Ok(()));
    assert_eq!(search_only(&history), Ok(()));
}

#[test]
fn accepts_unknown_cas_that_took_effect_late() {
    let history = [
        write(1, 0, 10),
        unknown_cas(1, 2, 20),
        read(Some(1), 30, 40),
        read(Some(1), 50, 60),
        read(Some(2), 100, 110),
    ];
    assert_eq!(check(&history), Ok(()));
    assert_eq!(search_only(&history), Ok(()));
}

#[test]
fn accepts_unknown_cas_that_never_took_effect() {
    let history = [
        write(1, 0, 10),
        unknown_cas(1, 2, 20),
        read(Some(1), 100, 110),
    ];
    assert_eq!(check(&history), Ok(()));
    assert_eq!(search_only(&history), Ok(()));
    // Even if it expected a value nothing wrote.
    let history = [
        write(1, 0, 10),
        unknown_cas(7, 2, 20),
        read(Some(1), 100, 110),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn accepts_unknown_cas_observed_by_a_known_cas() {
    let history = [
        write(1, 0, 10),
        unknown_cas(1, 2, 20),
        cas(2, 3, 50, 60),
        read(Some(3), 70, 80),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn rejects_unknown_cas_undone() {
    let history = [
        write(1, 0, 10),
        unknown_cas(1, 2, 20),
        read(Some(2), 30, 40),
        read(Some(1), 50, 60),
    ];
    rejected(&history);
}

#[test]
fn unknown_cas_is_bounded_by_the_first_read_of_its_value() {
    // The CAS took effect inside [20, 40]: after the read of 1, before the read of 2.
    let ok = [
        write(1, 0, 10),
        unknown_cas(1, 2, 20),
        read(Some(2), 30, 40),
        read(Some(1), 35, 36),
    ];
    assert_eq!(check(&ok), Ok(()));
    let late = [
        write(1, 0, 10),
        unknown_cas(1, 2, 20),
        read(Some(2), 30, 40),
        read(Some(1), 45, 50),
    ];
    rejected(&late);
}

#[test]
fn accepts_aba_and_rejects_it_out_of_order() {
    let aba = [
        write(1, 0, 10),
        cas(1, 2, 20, 30),
        cas(2, 1, 40, 50),
        cas(1, 3, 60, 70),
        read(Some(3), 80, 90),
    ];
    assert_eq!(check(&aba), Ok(()));
    let early = [
        write(1, 0, 10),
        cas(1, 2, 20, 30),
        cas(1, 3, 35, 38),
        cas(2, 1, 40, 50),
    ];
    rejected(&early);
}

#[test]
fn cas_to_the_same_value_is_a_read() {
    assert_eq!(check(&[write(1, 0, 10), cas(1, 1, 20, 30)]), Ok(()));
    rejected(&[write(1, 0, 10), write(2, 12, 18), cas(1, 1, 20, 30)]);
}

#[test]
fn rejects_read_of_value_never_written() {
    let history = [write(1, 0, 10), read(Some(9), 20, 30)];
    let text = rejected(&history).to_string();
    assert!(
        text.contains("op 1: client 20 read 9 [invoke 20, complete 30]"),
        "{text}"
    );
}

#[test]
fn rejects_reads_going_back_in_time() {
    // The second write overlaps both reads, so each read alone may see 1 or 2.
    let (old, new) = (read(Some(2), 30, 40), read(Some(1), 50, 60));
    let writes = [write(1, 0, 10), write(2, 20, 100)];
    assert_eq!(check(&[writes[0], writes[1], old]), Ok(()));
    assert_eq!(check(&[writes[0], writes[1], new]), Ok(()));
    rejected(&[writes[0], writes[1], old, new]);
}

#[test]
fn accepts_unknown_outcome_write_whose_value_is_read_later() {
    let history = [
        write(1, 0, 10),
        unknown_write(2, 20),
        read(Some(1), 30, 40),
        read(Some(2), 100, 110),
        read(Some(2), 120, 130),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn accepts_unknown_outcome_write_never_observed() {
    let history = [
        write(1, 0, 10),
        unknown_write(2, 20),
        read(Some(1), 100, 110),
    ];
    assert_eq!(check(&history), Ok(()));
    assert_eq!(
        search_only(&history),
        Ok(()),
        "not only thanks to the reduction"
    );
}

#[test]
fn rejects_unset_read_after_observed_unknown_outcome_write() {
    let history = [
        unknown_write(2, 0),
        read(Some(2), 10, 20),
        read(None, 30, 40),
    ];
    rejected(&history);
}

#[test]
fn rejects_read_of_unknown_outcome_write_before_its_invoke() {
    rejected(&[read(Some(2), 0, 10), unknown_write(2, 20)]);
}

#[test]
fn rejects_unset_read_after_acknowledged_write() {
    rejected(&[write(1, 0, 10), read(None, 20, 30)]);
}

#[test]
fn accepts_repeated_values_by_their_latest_write() {
    let history = [
        write(1, 0, 10),
        write(2, 20, 30),
        write(1, 40, 50),
        read(Some(1), 60, 70),
    ];
    assert_eq!(check(&history), Ok(()));
    let stale = [
        write(1, 0, 10),
        write(1, 15, 18),
        write(2, 20, 30),
        read(Some(1), 60, 70),
    ];
    rejected(&stale);
    // A repeated value's unknown write gets no deadline: it may still explain the read.
    let late = [
        write(1, 0, 10),
        write(2, 20, 30),
        unknown_write(1, 35),
        read(Some(1), 60, 70),
    ];
    assert_eq!(check(&late), Ok(()));
}

#[test]
fn treats_equal_complete_and_invoke_as_overlapping() {
    assert_eq!(check(&[write(1, 0, 10), read(None, 10, 12)]), Ok(()));
    rejected(&[write(1, 0, 10), read(None, 11, 12)]);
}

#[test]
fn ignores_unknown_outcome_reads() {
    let lost = Operation {
        complete: None,
        ..read(Some(99), 20, 20)
    };
    assert_eq!(
        check(&[write(1, 0, 10), lost, read(Some(1), 30, 40)]),
        Ok(())
    );
}

#[test]
fn multi_key_history_names_the_bad_key() {
    let history = [
        on(1, write(1, 0, 10)),
        on(2, write(1, 0, 10)),
        on(3, write(1, 0, 10)),
        on(1, write(2, 20, 30)),
        on(2, write(2, 20, 30)),
        on(3, read(Some(1), 20, 30)),
        on(1, read(Some(2), 40, 50)),
        on(2, read(Some(1), 40, 50)),
        on(3, read(Some(1), 40, 50)),
    ];
    let violation = rejected(&history);
    assert_eq!(violation.key, 2, "{violation}");
    assert!(violation.explanation.starts_with("key 2:"), "{violation}");
    assert!(violation.explanation.contains("op 7:"), "{violation}");
}

#[test]
fn search_bound_returns_an_error_instead_of_hanging() {
    // All writes overlap, then two reads that no write separates see different values:
    // every subset of the writes must be tried before the search can say no.
    let pathological = |writes_count: i64| {
        let mut history: Vec<Operation> = (1..=writes_count).map(|v| write(v, 0, 1000)).collect();
        history.push(read(Some(1), 2000, 2010));
        history.push(read(Some(2), 3000, 3010));
        history
    };
    let options = CheckOptions { states_max: 20_000 };
    let small = check_with(&pathological(6), &options).expect_err("not linearizable");
    assert_eq!(small.kind, ViolationKind::NotLinearizable, "{small}");
    let violation = check_with(&pathological(40), &options).expect_err("undecided");
    assert_eq!(
        violation.kind,
        ViolationKind::SearchBoundExceeded { states_max: 20_000 }
    );
    assert!(
        violation.explanation.contains("search bound exceeded"),
        "{violation}"
    );
}

/// Tiny SplitMix64 (Steele, Lea & Flood 2014), so the test needs no crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A linearizable history of one key: ops take effect at points 10 apart, in order, and
/// each op's interval reaches up to `spread` either side of its point. Values are unique.
fn generate(rng: &mut SplitMix64, key: u64, ops_count: u64, spread: u64) -> Vec<Operation> {
    let mut register = None;
    let mut history = Vec::new();
    for position in 0..ops_count {
        let point = spread + 10 * position;
        let invoke = point - rng.below(spread + 1);
        let complete = Some(point + rng.below(spread + 1));
        let client = rng.below(10);
        // About 8% of operations time out; a timed-out write took effect or not.
        let unknown = rng.below(100) < 8;
        let kind = if rng.below(2) == 0 {
            let value = i64::try_from(key * 1_000_000 + position).unwrap();
            if !unknown || rng.below(2) == 0 {
                register = Some(value);
            }
            OpKind::Write { value }
        } else {
            OpKind::Read { value: register }
        };
        let complete = if unknown { None } else { complete };
        history.push(Operation {
            key,
            kind,
            invoke,
            complete,
            client,
        });
    }
    history
}

/// Makes a known read return the value of a known write invoked after the read completed.
fn perturb_with_future_value(history: &mut [Operation]) -> bool {
    for r in 0..history.len() {
        let (OpKind::Read { .. }, Some(read_complete)) = (history[r].kind, history[r].complete)
        else {
            continue;
        };
        let future = history.iter().find_map(|w| match (w.kind, w.complete) {
            (OpKind::Write { value }, Some(_)) if w.invoke > read_complete => Some(value),
            _ => None,
        });
        if let Some(value) = future {
            history[r].kind = OpKind::Read { value: Some(value) };
            return true;
        }
    }
    false
}

/// Makes a known read return a value overwritten, strictly before the read, by a known
/// write that itself strictly follows the old one.
fn perturb_with_stale_value(history: &mut [Operation]) -> bool {
    let known_writes: Vec<(i64, u64, u64)> = history
        .iter()
        .filter_map(|w| match (w.kind, w.complete) {
            (OpKind::Write { value }, Some(complete)) => Some((value, w.invoke, complete)),
            _ => None,
        })
        .collect();
    for r in (0..history.len()).rev() {
        let (OpKind::Read { .. }, Some(_)) = (history[r].kind, history[r].complete) else {
            continue;
        };
        let read_invoke = history[r].invoke;
        let stale = known_writes.iter().find_map(|&(old, _, old_complete)| {
            let overwritten = known_writes
                .iter()
                .any(|&(_, invoke, complete)| old_complete < invoke && complete < read_invoke);
            overwritten.then_some(old)
        });
        if let Some(value) = stale {
            history[r].kind = OpKind::Read { value: Some(value) };
            return true;
        }
    }
    false
}

/// Tries every order (Herlihy & Wing's definition, no pruning); one key, a few ops.
fn brute_force(history: &[Operation]) -> bool {
    fn extend(ops: &[Operation], placed: &mut Vec<bool>, register: Option<i64>) -> bool {
        let precedes = |a: &Operation, b: &Operation| a.complete.is_some_and(|c| c < b.invoke);
        let required_left = (0..ops.len()).any(|i| !placed[i] && ops[i].complete.is_some());
        if !required_left {
            return true; // What is left are unknown writes and CASes: they may never happen.
        }
        for i in 0..ops.len() {
            let blocked = (0..ops.len()).any(|j| !placed[j] && precedes(&ops[j], &ops[i]));
            if placed[i] || blocked {
                continue;
            }
            let after = match ops[i].kind {
                OpKind::Write { value } => Some(value),
                OpKind::Read { value } if value == register => register,
                OpKind::Read { .. } => continue,
                OpKind::Cas { expected, new } if Some(expected) == register => Some(new),
                OpKind::Cas { .. } => continue,
            };
            placed[i] = true;
            let found = extend(ops, placed, after);
            placed[i] = false;
            if found {
                return true;
            }
        }
        false
    }
    let ops: Vec<Operation> = history
        .iter()
        .filter(|op| !matches!(op.kind, OpKind::Read { .. }) || op.complete.is_some())
        .copied()
        .collect();
    extend(&ops, &mut vec![false; ops.len()], None)
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = SplitMix64(0xb007);
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..3000 {
        let history = random_small_history(&mut rng, 0);
        let expected = brute_force(&history);
        assert_eq!(
            check(&history).is_ok(),
            expected,
            "round {round}: {history:?}"
        );
        if expected {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    assert!(
        accepted >= 500 && rejected >= 500,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// A random history of one key, a few ops, values 1 to 3; `cas_per_mille` of them CASes.
fn random_small_history(rng: &mut SplitMix64, cas_per_mille: u64) -> Vec<Operation> {
    let ops_count = 1 + rng.below(7);
    (0..ops_count)
        .map(|client| {
            let invoke = rng.below(20);
            let value = i64::try_from(rng.below(4)).unwrap();
            let kind = if rng.below(1000) < cas_per_mille {
                OpKind::Cas {
                    expected: 1 + i64::try_from(rng.below(3)).unwrap(),
                    new: value.max(1),
                }
            } else if rng.below(2) == 0 {
                OpKind::Write {
                    value: value.max(1),
                }
            } else {
                OpKind::Read {
                    value: (value > 0).then_some(value),
                }
            };
            let complete = (rng.below(100) >= 15).then(|| invoke + rng.below(8));
            Operation {
                key: KEY,
                kind,
                invoke,
                complete,
                client,
            }
        })
        .collect()
}

#[test]
fn agrees_with_brute_force_on_small_random_histories_with_cas() {
    let mut rng = SplitMix64(0xca5);
    let (mut accepted, mut rejected) = (0, 0);
    let mut unknown_cas_accepted = 0;
    for round in 0..6000 {
        let history = random_small_history(&mut rng, 400);
        let expected = brute_force(&history);
        assert_eq!(
            check(&history).is_ok(),
            expected,
            "round {round}: {history:?}"
        );
        if expected {
            accepted += 1;
            let unknown_cas =
                |op: &Operation| matches!(op.kind, OpKind::Cas { .. }) && op.complete.is_none();
            if history.iter().any(unknown_cas) {
                unknown_cas_accepted += 1;
            }
        } else {
            rejected += 1;
        }
    }
    assert!(
        accepted >= 1000 && rejected >= 1000,
        "{accepted} accepted, {rejected} rejected"
    );
    assert!(
        unknown_cas_accepted >= 200,
        "only {unknown_cas_accepted} accepted with an unknown CAS"
    );
}

#[test]
fn accepts_random_linearizable_histories_and_rejects_them_perturbed() {
    let mut rng = SplitMix64(0x5eed);
    let (mut future_count, mut stale_count) = (0, 0);
    for round in 0..60u64 {
        let ops_count = [10, 50, 300][round as usize % 3];
        let mut history = Vec::new();
        for key in 1..=3 {
            let spread = 20 + rng.below(81);
            history.extend(generate(&mut rng, key, ops_count, spread));
        }
        // Interleave the keys as a client log would, by invoke time.
        history.sort_by_key(|op| (op.invoke, op.key));
        assert_eq!(check(&history), Ok(()), "round {round}");
        let bad_key = 1 + rng.below(3);
        let mut one_key: Vec<Operation> = history
            .iter()
            .filter(|op| op.key == bad_key)
            .copied()
            .collect();
        assert_eq!(search_only(&one_key), Ok(()), "round {round}");
        let others = history.iter().filter(|op| op.key != bad_key).copied();

        let mut future = one_key.clone();
        if perturb_with_future_value(&mut future) {
            future_count += 1;
            assert!(search_only(&future).is_err(), "round {round}: search alone");
            let mixed: Vec<Operation> = others.clone().chain(future).collect();
            assert_eq!(rejected(&mixed).key, bad_key, "round {round}");
        }
        if perturb_with_stale_value(&mut one_key) {
            stale_count += 1;
            let mixed: Vec<Operation> = others.chain(one_key).collect();
            assert_eq!(rejected(&mixed).key, bad_key, "round {round}");
        }
    }
    assert!(
        future_count >= 50,
        "only {future_count} future perturbations"
    );
    // Short histories rarely hold two writes both strictly before a read.
    assert!(stale_count >= 35, "only {stale_count} stale perturbations");
}
