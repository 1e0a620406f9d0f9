//! The clients of a Jepsen run: concurrent sessions through the real WebSocket gateway,
//! each recording what it invoked and what came back (`History`).
//!
//! Workloads (`docs/history.md` has the event format):
//! - `register`: keys are the property `v` of `/root/r<k>`; ops are `read`, `write` of a
//!   value unique in the run, and `cas` as a transaction with a `v == expected`
//!   precondition (expected: the last value this client saw for the key).
//! - `set`: keys are the nodes `/root/s<k>`; `add x` sets the property `e<x>`, and the
//!   final `read_set` (after the heal) lists the node's properties.
//!
//! Outcomes: an answer is `ok`; an error that changed nothing (`WsClientError::
//! may_have_applied` false) is `fail`; a timeout, a lost connection or `unknown_outcome` is
//! `info`, after which the client continues as a new process (Jepsen's convention), since
//! its old op may still take effect at any time.

use std::cell::Cell;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use treesync_sim::history::{Call, HistoryWriteError, HistoryWriter, Outcome, Reply};

use treesync_core::Value;
use treesync_net::ws_client::{WsClient, WsClientError};

/// How long a client waits for one op before recording it as `info`.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Register,
    Set,
    /// Cross-shard transfers (`bank`): checked by the bank's invariants, not a history.
    Bank,
}

/// The run's history, streamed to its file as events happen (`HistoryWriter`: the format
/// `treesync check` reads). Shared by the client thread and the nemesis thread (which
/// prints progress); the clock is read under the lock, so file order is time order.
pub struct History {
    start: Instant,
    writer: Mutex<HistoryWriter<BufWriter<File>>>,
    /// The first write error, if any: reported when the run ends.
    broken: Mutex<Option<String>>,
    ok: AtomicU64,
    fail: AtomicU64,
    info: AtomicU64,
}

/// Completed ops so far, by outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Counts {
    pub fn ops(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

impl History {
    /// A history written to `path`; times count from `start`.
    pub fn create(path: &Path, start: Instant) -> Result<History, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(History {
            start,
            writer: Mutex::new(HistoryWriter::new(BufWriter::new(file))),
            broken: Mutex::new(None),
            ok: AtomicU64::new(0),
            fail: AtomicU64::new(0),
            info: AtomicU64::new(0),
        })
    }

    pub fn counts(&self) -> Counts {
        Counts {
            ok: self.ok.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
            info: self.info.load(Ordering::Relaxed),
        }
    }

    fn invoke(&self, process: u64, key: u64, call: Call) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let time = self.start.elapsed().as_nanos() as u64;
        let written = writer.invoke(time, process, key, call);
        self.note(written.map(drop));
    }

    fn complete(&self, process: u64, outcome: Outcome, error: Option<&str>) {
        let counter = match outcome {
            Outcome::Ok(_) => &self.ok,
            Outcome::Fail => &self.fail,
            Outcome::Info => &self.info,
        };
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let time = self.start.elapsed().as_nanos() as u64;
        let written = writer.complete(time, process, outcome, error);
        counter.fetch_add(1, Ordering::Relaxed);
        self.note(written.map(drop));
    }

    fn note(&self, written: Result<(), HistoryWriteError>) {
        if let Err(e) = written {
            let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
            broken.get_or_insert_with(|| e.to_string());
        }
    }

    /// Flushes the file; `Err` names the first event that could not be written.
    pub fn finish(&self) -> Result<(), String> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.flush().map_err(|e| format!("history: {e}"))?;
        match self.broken.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(format!("history: {e}")),
            None => Ok(()),
        }
    }
}

/// One client: a session to one server at a time, moving on when that server fails it.
pub struct ClientTask {
    pub index: u64,
    pub clients: u64,
    pub urls: Vec<String>,
    pub keys: u64,
    pub workload: Workload,
    pub history: Arc<History>,
    pub next_value: Rc<Cell<i64>>,
    pub stop: Arc<AtomicBool>,
}

impl ClientTask {
    pub async fn run(self) {
        let mut process = self.index;
        let mut server = self.index as usize % self.urls.len();
        let mut rng = treesync_core::rng::SplitMix64::new(0x6a65_7073 ^ self.index);
        let mut seen: Vec<Option<i64>> = vec![None; self.keys as usize];
        let mut client: Option<WsClient> = None;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(c) = client.as_mut() else {
                match actix_rt::time::timeout(OP_TIMEOUT, WsClient::connect(&self.urls[server]))
                    .await
                {
                    Ok(Ok(c)) => client = Some(c),
                    _ => {
                        server = (server + 1) % self.urls.len();
                        actix_rt::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            };
            let key = rng.next_u64() % self.keys;
            let call = self.choose(&mut rng, key, &seen);
            self.history.invoke(process, key, call.clone());
            let outcome = actix_rt::time::timeout(
                OP_TIMEOUT,
                self.perform_at_leader(c, &mut server, key, &call),
            )
            .await;
            let (outcome, error) = match outcome {
                Ok(Ok((outcome, value))) => {
                    if let Some(value) = value {
                        seen[key as usize] = Some(value);
                    }
                    (outcome, None)
                }
                Ok(Err(e)) if call == Call::Read || !e.may_have_applied() => {
                    (Outcome::Fail, Some(e.to_string()))
                }
                Ok(Err(e)) => (Outcome::Info, Some(e.to_string())),
                Err(_) => (Outcome::Info, Some("timed out".to_string())),
            };
            let (ok, info) = (matches!(outcome, Outcome::Ok(_)), outcome == Outcome::Info);
            self.history.complete(process, outcome, error.as_deref());
            if !ok {
                // Unknown or refused: try another server, on a new connection.
                client = None;
                server = (server + 1) % self.urls.len();
            }
            if info {
                process += self.clients;
            }
        }
    }

    fn unique(&self) -> i64 {
        let value = self.next_value.get();
        self.next_value.set(value + 1);
        value
    }

    fn choose(
        &self,
        rng: &mut treesync_core::rng::SplitMix64,
        key: u64,
        seen: &[Option<i64>],
    ) -> Call {
        let roll = rng.next_u64() % 10;
        match self.workload {
            Workload::Set => Call::Add {
                element: self.unique(),
            },
            Workload::Bank => unreachable!("the bank workload has its own clients (bank.rs)"),
            Workload::Register if roll < 4 => Call::Read,
            Workload::Register => match seen[key as usize] {
                Some(expected) if roll < 7 => Call::Cas {
                    expected,
                    new: self.unique(),
                },
                _ => Call::Write {
                    value: self.unique(),
                },
            },
        }
    }

    /// `perform`, following `not_leader` hints (a `serve` gateway does not forward): the
    /// refused attempt changed nothing, so the op goes to the named leader instead.
    async fn perform_at_leader(
        &self,
        client: &mut WsClient,
        server: &mut usize,
        key: u64,
        call: &Call,
    ) -> Result<(Outcome, Option<i64>), WsClientError> {
        for _ in 0..self.urls.len() {
            match self.perform(client, key, call).await {
                Err(e) => match leader_hint(&e) {
                    Some(leader) if leader <= self.urls.len() => {
                        *client = WsClient::connect(&self.urls[leader - 1]).await?;
                        *server = leader - 1;
                    }
                    _ => return Err(e),
                },
                done => return done,
            }
        }
        self.perform(client, key, call).await
    }

    /// Runs one op; on success its outcome and the register value now known.
    async fn perform(
        &self,
        client: &mut WsClient,
        key: u64,
        call: &Call,
    ) -> Result<(Outcome, Option<i64>), WsClientError> {
        let path = register_path(self.workload, key);
        let done = Outcome::Ok(Reply::Done);
        match *call {
            Call::Read => {
                let read = match client.get_prop(&path, "v").await? {
                    Value::Int(v) => Some(v),
                    _ => None,
                };
                Ok((Outcome::Ok(Reply::Read(read)), read))
            }
            Call::Write { value } => {
                client
                    .set(&path, vec![("v".into(), Value::Int(value))])
                    .await?;
                Ok((done, Some(value)))
            }
            Call::Cas { expected, new } => {
                let set = dict(&[
                    ("op", Value::String("set".into())),
                    ("path", Value::String(path.clone())),
                    ("props", dict(&[("v", Value::Int(new))])),
                ]);
                let expect = dict(&[
                    ("path", Value::String(path.clone())),
                    ("prop", Value::String("v".into())),
                    ("value", Value::Int(expected)),
                ]);
                match client.txn(vec![set], vec![expect]).await {
                    Ok(_) => Ok((done, Some(new))),
                    Err(WsClientError::Refused { code, .. }) if code == "precondition_failed" => {
                        Ok((Outcome::Fail, None))
                    }
                    Err(e) => Err(e),
                }
            }
            Call::Add { element } => {
                let prop = format!("e{element}");
                client.set(&path, vec![(prop, Value::Bool(true))]).await?;
                Ok((done, None))
            }
            Call::ReadSet => unreachable!("read_set is only the final read"),
        }
    }
}

/// The server a `not_leader` refusal names ("… server 2 does"), from 1.
fn leader_hint(error: &WsClientError) -> Option<usize> {
    let WsClientError::Refused { code, message } = error else {
        return None;
    };
    if code != "not_leader" {
        return None;
    }
    let (_, after) = message.rsplit_once("server ")?;
    after.split_whitespace().next()?.parse().ok()
}

/// The node a key lives at.
pub fn register_path(workload: Workload, key: u64) -> String {
    match workload {
        Workload::Register => format!("/root/r{key}"),
        Workload::Set => format!("/root/s{key}"),
        Workload::Bank => unreachable!("the bank workload has its own clients (bank.rs)"),
    }
}

fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::Dictionary(
        pairs
            .iter()
            .map(|(k, v)| (Value::String((*k).into()), v.clone()))
            .collect(),
    )
}

/// Creates the workload's key nodes (retrying through elections); `Err` if the cluster
/// never took them.
pub async fn setup(urls: &[String], workload: Workload, keys: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let mut server = 0usize;
    for key in 0..keys {
        let path = register_path(workload, key);
        let name = path
            .rsplit('/')
            .next()
            .expect("a path has a name")
            .to_owned();
        loop {
            if Instant::now() > deadline {
                return Err(format!("the cluster did not take the setup writes: {last}"));
            }
            let url = &urls[server % urls.len()];
            let attempt = async {
                let mut c = WsClient::connect(url).await?;
                match c.create("/root", &name, "Node", vec![]).await {
                    Err(WsClientError::Refused { code, .. }) if code == "name_taken" => Ok(0),
                    other => other,
                }
            };
            match actix_rt::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    server = leader_hint(&e).map_or(server + 1, |l| l - 1);
                    last = e.to_string();
                }
                Err(_) => {
                    server += 1;
                    last = "timed out".into();
                }
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// After the heal: each key read once more by `process` (recorded: a register `read` or a
/// `read_set`), through any server that answers. `Err` if none answered in time: the
/// cluster did not recover.
pub async fn final_reads(
    urls: &[String],
    workload: Workload,
    keys: u64,
    history: &History,
    process: u64,
) -> Result<(), String> {
    let call = match workload {
        Workload::Register => Call::Read,
        Workload::Set => Call::ReadSet,
        Workload::Bank => unreachable!("the bank workload has its own clients (bank.rs)"),
    };
    for key in 0..keys {
        let path = register_path(workload, key);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut attempt = 0usize;
        let mut hint: Option<usize> = None;
        loop {
            if Instant::now() > deadline {
                return Err(format!("no server answered the final read of {path}"));
            }
            let node = hint.take().unwrap_or(attempt) % urls.len();
            attempt += 1;
            history.invoke(process, key, call.clone());
            let read = async {
                let mut c = WsClient::connect(&urls[node]).await?;
                match workload {
                    Workload::Register => c.get_prop(&path, "v").await,
                    Workload::Set | Workload::Bank => c.get(&path).await,
                }
            };
            match actix_rt::time::timeout(OP_TIMEOUT * 2, read).await {
                Ok(Ok(value)) => {
                    let reply = match (workload, value) {
                        (Workload::Register, Value::Int(v)) => Reply::Read(Some(v)),
                        (Workload::Register, _) => Reply::Read(None),
                        (Workload::Set | Workload::Bank, node) => {
                            Reply::ReadSet(set_elements(&node))
                        }
                    };
                    history.complete(process, Outcome::Ok(reply), None);
                    break;
                }
                Ok(Err(e)) => {
                    hint = leader_hint(&e).map(|l| l - 1);
                    history.complete(process, Outcome::Fail, Some(&e.to_string()));
                }
                Err(_) => history.complete(process, Outcome::Fail, Some("timed out")),
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The elements `x` of a set node: its properties named `e<x>`.
fn set_elements(node: &Value) -> Vec<i64> {
    let Some(Value::Dictionary(props)) = node.field("props") else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(name, _)| match name {
            Value::String(s) | Value::StringName(s) => s.strip_prefix('e')?.parse().ok(),
            _ => None,
        })
        .collect()
}
