//! Client histories and the per-key linearizability checker.
//!
//! Each key is a register (a property of `/root`) written with unique integers. Raft's log
//! totally orders writes, so the checker linearizes writes in log order and checks each read
//! against it, which is sound for registers with unique values:
//! - a read returns a value some write produced, and that write was committed and had been
//!   invoked before the read completed;
//! - a read never returns a value older (in log order) than a write acknowledged before the
//!   read was invoked, nor "unset" after such a write;
//! - reads that follow one another in real time never go back in log order.

use std::collections::BTreeMap;

/// How a client operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged (a write committed at `index`; a read returned).
    Ok { index: u64 },
    /// Refused before or instead of committing: it had no effect.
    Failed,
    /// No answer (timeout, crash): a write may or may not have taken effect.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Write { value: i64 },
    Read { value: Option<i64> },
}

/// One client operation on one key.
#[derive(Clone, Debug)]
pub struct Event {
    pub key: usize,
    pub kind: Kind,
    pub invoke: u64,
    pub complete: u64,
    pub outcome: Outcome,
}

/// Checks every key's history; `committed` maps each value in the final log to its index.
pub fn check(events: &[Event], committed: &BTreeMap<i64, u64>) -> Result<(), String> {
    let keys: std::collections::BTreeSet<usize> = events.iter().map(|e| e.key).collect();
    for key in keys {
        let history: Vec<&Event> = events.iter().filter(|e| e.key == key).collect();
        check_key(key, &history, committed)?;
    }
    Ok(())
}

fn check_key(key: usize, history: &[&Event], committed: &BTreeMap<i64, u64>) -> Result<(), String> {
    let acked_writes: Vec<(&Event, u64)> = history
        .iter()
        .filter_map(|e| match (e.kind, e.outcome) {
            (Kind::Write { .. }, Outcome::Ok { index }) => Some((*e, index)),
            _ => None,
        })
        .collect();
    let writes_by_value: BTreeMap<i64, &Event> = history
        .iter()
        .filter_map(|e| match e.kind {
            Kind::Write { value } => Some((value, *e)),
            Kind::Read { .. } => None,
        })
        .collect();
    // Log position of what each successful read returned (0 = never written).
    let mut reads: Vec<(&Event, u64)> = Vec::new();
    for read in history
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Ok { .. }))
    {
        let Kind::Read { value } = read.kind else {
            continue;
        };
        let position = match value {
            None => 0,
            Some(v) => {
                let write = writes_by_value
                    .get(&v)
                    .ok_or_else(|| format!("key {key}: a read returned {v}, which nobody wrote"))?;
                if write.outcome == Outcome::Failed {
                    return Err(format!(
                        "key {key}: a read returned {v}, whose write failed"
                    ));
                }
                if write.invoke > read.complete {
                    return Err(format!(
                        "key {key}: a read returned {v} before its write began"
                    ));
                }
                *committed.get(&v).ok_or_else(|| {
                    format!(
                        "key {key}: a read at t={} returned {v}, which never committed",
                        read.complete
                    )
                })?
            }
        };
        for (write, index) in &acked_writes {
            if write.complete < read.invoke && *index > position {
                return Err(format!(
                    "key {key}: stale read at t={}..{}: returned {value:?} (log index {position}) \
                     after a write acknowledged at t={} (index {index})",
                    read.invoke, read.complete, write.complete
                ));
            }
        }
        reads.push((read, position));
    }
    for (a, pa) in &reads {
        for (b, pb) in &reads {
            if a.complete < b.invoke && pb < pa {
                return Err(format!(
                    "key {key}: reads went back in time: t={} saw index {pa}, later t={} saw {pb}",
                    a.complete, b.complete
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(value: i64, invoke: u64, complete: u64, outcome: Outcome) -> Event {
        Event {
            key: 0,
            kind: Kind::Write { value },
            invoke,
            complete,
            outcome,
        }
    }

    fn read(value: Option<i64>, invoke: u64, complete: u64) -> Event {
        Event {
            key: 0,
            kind: Kind::Read { value },
            invoke,
            complete,
            outcome: Outcome::Ok { index: 0 },
        }
    }

    #[test]
    fn accepts_linearizable_and_rejects_stale_histories() {
        let committed = BTreeMap::from([(1, 5), (2, 9)]);
        let ok = [
            write(1, 0, 10, Outcome::Ok { index: 5 }),
            read(Some(1), 11, 12),
            write(2, 13, 20, Outcome::Unknown),
            read(Some(2), 14, 30),
        ];
        assert_eq!(check(&ok, &committed), Ok(()));
        let stale = [
            write(1, 0, 10, Outcome::Ok { index: 5 }),
            write(2, 11, 20, Outcome::Ok { index: 9 }),
            read(Some(1), 21, 22),
        ];
        assert!(check(&stale, &committed).is_err());
        let unset_after_write = [
            write(1, 0, 10, Outcome::Ok { index: 5 }),
            read(None, 11, 12),
        ];
        assert!(check(&unset_after_write, &committed).is_err());
        let backwards = [
            read(Some(2), 0, 1),
            read(Some(1), 2, 3),
            write(1, 0, 1, Outcome::Unknown),
            write(2, 0, 1, Outcome::Unknown),
        ];
        assert!(check(&backwards, &committed).is_err());
        let dirty = [write(3, 0, 1, Outcome::Unknown), read(Some(3), 2, 3)];
        assert!(check(&dirty, &committed).is_err(), "3 never committed");
    }
}
