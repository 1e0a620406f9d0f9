//! Tests of the history format: parsing, pairing, errors with line numbers, the writer,
//! the conversion to register operations and the whole check.
use super::demo::{generate_demo, DemoOptions};
use super::*;
use crate::linearizability::CheckOptions;

fn parse(text: &str) -> Result<History, HistoryError> {
    read_history(text.as_bytes())
}

fn error_of(text: &str) -> HistoryError {
    parse(text).expect_err("the history should be refused")
}

fn check_text(text: &str) -> Report {
    check_history(text.as_bytes(), &CheckOptions::default()).expect("well-formed")
}

const EXAMPLE: &str = r#"{"index":0,"time":1200,"process":3,"type":"invoke","f":"write","key":1,"value":17}
{"index":1,"time":1300,"process":4,"type":"invoke","f":"read","key":1,"value":null}
{"index":2,"time":5400,"process":3,"type":"ok","f":"write","key":1,"value":17,"node":2}
{"index":3,"time":5600,"process":4,"type":"ok","f":"read","key":1,"value":17,"latency":4300}
{"index":4,"time":6000,"process":5,"type":"invoke","f":"cas","key":1,"value":[17,18]}
{"index":5,"time":9000,"process":5,"type":"info","f":"cas","key":1,"value":[17,18],"error":"timeout"}
{"index":6,"time":9100,"process":6,"type":"invoke","f":"write","key":1,"value":19}
{"index":7,"time":9200,"process":6,"type":"fail","f":"write","key":1,"value":19,"error":"not leader"}

{"time":9300,"process":7,"type":"invoke","f":"add","key":2,"value":5}
{"time":9400,"process":8,"type":"invoke","f":"read_set","key":2}
{"time":9500,"process":8,"type":"ok","f":"read_set","key":2,"value":[5]}
"#;

#[test]
fn parses_and_pairs_the_documented_example() {
    let history = parse(EXAMPLE).expect("the example is well-formed");
    assert_eq!(history.events_count, 11);
    assert_eq!(history.ops.len(), 6);
    let write = &history.ops[0];
    assert_eq!((write.process, write.key, write.invoke_line), (3, 1, 1));
    assert_eq!(write.call, Call::Write { value: 17 });
    assert_eq!(
        write.completion,
        Some(Completion {
            time: 5400,
            line: 3,
            outcome: Outcome::Ok(Reply::Done)
        })
    );
    let read = &history.ops[1];
    assert_eq!(
        read.completion.as_ref().map(|c| &c.outcome),
        Some(&Outcome::Ok(Reply::Read(Some(17))))
    );
    assert!(history.ops[2].outcome_unknown());
    assert!(history.ops[3].failed());
    // The add never completed: unknown, like an info.
    assert_eq!(history.ops[4].completion, None);
    assert!(history.ops[4].outcome_unknown());
    assert_eq!(
        history.ops[5].completion.as_ref().map(|c| &c.outcome),
        Some(&Outcome::Ok(Reply::ReadSet(vec![5])))
    );
    let keys = history.keys();
    assert_eq!(keys[&1], (Workload::Register, vec![0, 1, 2, 3]));
    assert_eq!(keys[&2], (Workload::Set, vec![4, 5]));
}

#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../../docs/history.md");
    let (_, example) = doc
        .split_once("## Example\n\n```json\n")
        .expect("the example");
    let (example, _) = example.split_once("```").expect("its end");
    let history = parse(example).expect("the documented example parses");
    assert_eq!((history.events_count, history.ops.len()), (11, 6));
    assert_eq!(check_text(example).verdict(), Verdict::Valid);
}

#[test]
fn converts_to_register_operations() {
    let history = parse(EXAMPLE).expect("well-formed");
    let operations: Vec<Option<Operation>> = history
        .ops
        .iter()
        .map(HistoryOp::register_operation)
        .collect();
    assert_eq!(
        operations[0],
        Some(Operation {
            key: 1,
            kind: OpKind::Write { value: 17 },
            invoke: 1200,
            complete: Some(5400),
            client: 3
        })
    );
    assert_eq!(
        operations[1].map(|op| op.kind),
        Some(OpKind::Read { value: Some(17) })
    );
    // The CAS's outcome is unknown; the failed write is dropped; set ops are not registers.
    assert_eq!(
        operations[2].map(|op| (op.kind, op.complete)),
        Some((
            OpKind::Cas {
                expected: 17,
                new: 18
            },
            None
        ))
    );
    assert_eq!(operations[3], None);
    assert_eq!(operations[4], None);
}

#[test]
fn every_defect_is_a_typed_error_with_its_line() {
    let invoke = r#"{"time":1,"process":1,"type":"invoke","f":"write","key":1,"value":1}"#;
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{invoke}\n{{\"time\":2,"),
            "line 2: malformed event",
        ),
        (
            r#"{"time":1,"process":1,"type":"invoke","f":"write","value":1}"#.into(),
            "line 1: malformed event: missing field `key`",
        ),
        (
            format!("{invoke}\n{}", invoke.replace("invoke\"", "okay\"")),
            "line 2: unknown type \"okay\"",
        ),
        (
            invoke.replace("write", "append"),
            "line 1: unknown f \"append\"",
        ),
        (
            r#"{"time":1,"process":1,"type":"ok","f":"write","key":1,"value":1}"#.into(),
            "line 1: ok for process 1, which has no outstanding invoke",
        ),
        (
            format!(
                "{invoke}\n{}",
                invoke.replace("invoke", "ok").replace("write", "read")
            ),
            "line 2: the completion's f \"read\" differs from the invoke's write (line 1)",
        ),
        (
            format!(
                "{invoke}\n{}",
                invoke.replace("invoke", "ok").replace("key\":1", "key\":2")
            ),
            "line 2: the completion's key 2 differs from the invoke's 1 (line 1)",
        ),
        (
            format!(
                "{}\n{invoke}",
                invoke
                    .replace("time\":1", "time\":5")
                    .replace("process\":1", "process\":2")
            ),
            "line 2: time 1 is before the previous event's time 5",
        ),
        (
            format!("{invoke}\n{invoke}"),
            "line 2: process 1 invokes while its op invoked on line 1 is outstanding",
        ),
        (
            invoke.replace("write", "cas"),
            "line 1: invoke cas needs a value of [expected, new] (integers), not 1",
        ),
        (
            format!(
                "{invoke}\n{}",
                invoke
                    .replace("write", "add")
                    .replace("process\":1", "process\":2")
            ),
            "line 2: key 1 is a set key here but a register key on line 1",
        ),
        (
            format!(
                "{}\n{}",
                invoke.replace("write", "read"),
                invoke
                    .replace("invoke", "ok")
                    .replace("write", "read")
                    .replace("1}", "\"x\"}")
            ),
            "line 2: ok read needs a value of an integer or null, not \"x\"",
        ),
        (
            invoke.replace("time\":1", "time\":18446744073709551615"),
            "line 1: time 18446744073709551615 is reserved",
        ),
    ];
    for (text, expected) in cases {
        let message = error_of(&text).to_string();
        assert!(message.starts_with(expected), "{message:?} for\n{text}");
    }
}

#[test]
fn a_process_may_start_over_after_info_but_not_complete_twice() {
    let text = r#"{"time":1,"process":1,"type":"invoke","f":"write","key":1,"value":1}
{"time":2,"process":1,"type":"info","f":"write","key":1,"value":1}
{"time":3,"process":1,"type":"ok","f":"write","key":1,"value":1}"#;
    let message = error_of(text).to_string();
    assert!(message.starts_with("line 3: ok for process 1"), "{message}");
}

#[test]
fn writer_output_reads_back_as_written() {
    let mut writer = HistoryWriter::new(Vec::new());
    assert_eq!(
        writer.invoke(10, 1, 7, Call::Write { value: 3 }).ok(),
        Some(0)
    );
    writer.invoke(11, 2, 7, Call::Read).expect("free process");
    writer
        .invoke(
            12,
            3,
            7,
            Call::Cas {
                expected: 3,
                new: 4,
            },
        )
        .expect("free process");
    writer
        .invoke(13, 4, 8, Call::Add { element: 9 })
        .expect("free process");
    writer
        .invoke(13, 5, 8, Call::ReadSet)
        .expect("free process");
    let done = Outcome::Ok(Reply::Done);
    writer.complete(20, 1, done.clone(), None).expect("pending");
    writer
        .complete(21, 2, Outcome::Ok(Reply::Read(None)), None)
        .expect("pending");
    writer
        .complete(22, 3, Outcome::Info, Some("timeout \"5 s\""))
        .expect("pending");
    writer
        .complete(23, 4, Outcome::Fail, None)
        .expect("pending");
    let set = Outcome::Ok(Reply::ReadSet(vec![9, 1]));
    assert_eq!(writer.complete(24, 5, set, None).ok(), Some(9));
    assert_eq!(writer.pending_count(), 0);
    let bytes = writer.into_inner().expect("a Vec never fails");
    let text = String::from_utf8(bytes).expect("JSON is UTF-8");
    let first = text.lines().next().expect("a line");
    assert_eq!(
        first,
        r#"{"index":0,"time":10,"process":1,"type":"invoke","f":"write","key":7,"value":3}"#
    );
    assert!(
        text.contains(r#""type":"info","f":"cas","key":7,"value":[3,4],"error":"timeout \"5 s\"""#)
    );
    let history = parse(&text).expect("the writer writes the format");
    assert_eq!(history.events_count, 10);
    let outcomes: Vec<Option<Outcome>> = history
        .ops
        .iter()
        .map(|op| op.completion.as_ref().map(|c| c.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Some(done),
            Some(Outcome::Ok(Reply::Read(None))),
            Some(Outcome::Info),
            Some(Outcome::Fail),
            Some(Outcome::Ok(Reply::ReadSet(vec![9, 1]))),
        ]
    );
}

#[test]
fn writer_refuses_misuse_and_writes_nothing() {
    let mut writer = HistoryWriter::new(Vec::new());
    writer.invoke(10, 1, 7, Call::Read).expect("free");
    let refused = [
        writer.invoke(11, 1, 7, Call::Read).err(),
        writer.invoke(5, 2, 7, Call::Read).err(),
        writer.invoke(u64::MAX, 2, 7, Call::Read).err(),
        writer.complete(12, 2, Outcome::Fail, None).err(),
        writer.complete(12, 1, Outcome::Ok(Reply::Done), None).err(),
    ];
    let messages: Vec<String> = refused
        .iter()
        .map(|e| e.as_ref().expect("refused").to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "process 1 already has an outstanding op (index 0)",
            "time 5 is before the previous event's time 10",
            "time 18446744073709551615 is reserved (times must be below 2^64 - 1)",
            "process 2 has no outstanding op to complete",
            "an ok read carries Reply::Read",
        ]
    );
    let text = String::from_utf8(writer.into_inner().expect("Vec")).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn check_history_accepts_the_example() {
    let report = check_text(EXAMPLE);
    assert_eq!(report.verdict(), Verdict::Valid, "{report:?}");
    assert_eq!(report.events_count, 11);
    assert_eq!(
        (report.registers.keys, report.registers.ops),
        (1, 4),
        "{report:?}"
    );
    assert_eq!((report.registers.unknown, report.registers.failed), (1, 1));
    assert_eq!(
        (report.sets.keys, report.sets.ops, report.sets.unknown),
        (1, 2, 1)
    );
}

/// A write of 1, then of 2, then a read of 1: the classic stale read, on key 4.
const STALE_READ: &str = r#"{"time":0,"process":1,"type":"invoke","f":"write","key":4,"value":1}
{"time":10,"process":1,"type":"ok","f":"write","key":4,"value":1}
{"time":20,"process":1,"type":"invoke","f":"write","key":4,"value":2}
{"time":30,"process":1,"type":"ok","f":"write","key":4,"value":2}
{"time":40,"process":2,"type":"invoke","f":"read","key":4,"value":null}
{"time":50,"process":2,"type":"ok","f":"read","key":4,"value":1}
"#;

#[test]
fn check_history_rejects_a_stale_read_naming_its_line() {
    let report = check_text(STALE_READ);
    assert_eq!(report.verdict(), Verdict::Invalid);
    let failure = report.register_failure_to_draw().expect("a failure");
    assert_eq!(failure.violation.key, 4);
    let text = &failure.violation.explanation;
    assert!(
        text.contains("line 5: client 2 read 1 [invoke 40, complete 50]"),
        "{text}"
    );
    assert_eq!(failure.lines, vec![1, 3, 5]);
    let html = failure.timeline_html("stale.jsonl");
    assert!(html.contains("line 5"), "{html}");
}

#[test]
fn search_bound_is_unknown_never_valid() {
    // Many overlapping writes, then two reads that no write separates see different values.
    let mut writer = HistoryWriter::new(Vec::new());
    for process in 0..30 {
        let call = Call::Write {
            value: process as i64 + 1,
        };
        writer.invoke(0, process, 1, call).expect("free");
    }
    for process in 0..30 {
        writer
            .complete(1000, process, Outcome::Ok(Reply::Done), None)
            .expect("pending");
    }
    for (time, value) in [(2000, 1), (3000, 2)] {
        writer.invoke(time, 99, 1, Call::Read).expect("free");
        let read = Outcome::Ok(Reply::Read(Some(value)));
        writer.complete(time + 10, 99, read, None).expect("pending");
    }
    let bytes = writer.into_inner().expect("Vec");
    let options = CheckOptions { states_max: 5_000 };
    let report = check_history(&bytes[..], &options).expect("well-formed");
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert!(report.register_failures[0].undecided());
}

#[test]
fn unknown_beats_nothing_but_invalid_beats_unknown() {
    let mut report = check_text(STALE_READ);
    let mut undecided = report.register_failures[0].clone();
    undecided.violation.kind =
        crate::linearizability::ViolationKind::SearchBoundExceeded { states_max: 1 };
    report.register_failures.insert(0, undecided);
    assert_eq!(report.verdict(), Verdict::Invalid);
    assert!(!report.register_failure_to_draw().expect("one").undecided());
}

#[test]
fn generated_demo_histories_are_valid() {
    let options = DemoOptions {
        ops: 4000,
        register_keys: 5,
        set_keys: 2,
        processes: 8,
        unknown_per_mille: 40,
        seed: 7,
    };
    let mut writer = HistoryWriter::new(Vec::new());
    let summary = generate_demo(&options, &mut writer).expect("in time order");
    assert_eq!(summary.ops, 4000);
    assert!(summary.unknown >= 50 && summary.failed >= 50, "{summary:?}");
    let bytes = writer.into_inner().expect("Vec");
    let report = check_history(&bytes[..], &CheckOptions::default()).expect("well-formed");
    assert_eq!(
        report.verdict(),
        Verdict::Valid,
        "{:?}",
        report.register_failures
    );
    assert_eq!((report.registers.keys, report.sets.keys), (5, 2));
    assert_eq!(report.registers.ops + report.sets.ops, 4000);
    let cases = parse(std::str::from_utf8(&bytes).expect("UTF-8"))
        .expect("well-formed")
        .ops
        .iter()
        .filter(|op| matches!(op.call, Call::Cas { .. }) && op.ok_time().is_some())
        .count();
    assert!(cases >= 200, "only {cases} successful CASes");
}

#[test]
fn a_generated_history_with_a_stale_read_is_invalid() {
    let options = DemoOptions {
        ops: 2000,
        register_keys: 3,
        ..DemoOptions::default()
    };
    let mut writer = HistoryWriter::new(Vec::new());
    generate_demo(&options, &mut writer).expect("in time order");
    let mut history = parse(&String::from_utf8(writer.into_inner().expect("Vec")).expect("UTF-8"))
        .expect("well-formed");
    // The last ok read returns the first value ever written to its key.
    let first_write = |key| {
        history
            .ops
            .iter()
            .find_map(|op| match (op.key == key, &op.call, op.ok_time()) {
                (true, Call::Write { value }, Some(_)) => Some(*value),
                _ => None,
            })
    };
    let (read, key) = history
        .ops
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, op)| match (&op.call, op.ok_time()) {
            (Call::Read, Some(_)) => Some((i, op.key)),
            _ => None,
        })
        .expect("some ok read");
    let stale = first_write(key).expect("some write");
    history.ops[read].completion.as_mut().expect("ok").outcome =
        Outcome::Ok(Reply::Read(Some(stale)));
    let report = check_parsed(&history, &CheckOptions::default());
    assert_eq!(report.verdict(), Verdict::Invalid);
    assert_eq!(report.register_failures[0].violation.key, key);
}
