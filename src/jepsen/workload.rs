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
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use treesync_core::Value;
use treesync_net::ws_client::{WsClient, WsClientError};

/// How long a client waits for one op before recording it as `info`.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Register,
    Set,
}

/// The run's history as JSON lines, in the order events happened.
///
/// Shared by the client thread and the nemesis thread (which prints progress).
pub struct History {
    start: Instant,
    lines: Mutex<Vec<String>>,
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
    pub fn new(start: Instant) -> History {
        History {
            start,
            lines: Mutex::new(Vec::new()),
            ok: AtomicU64::new(0),
            fail: AtomicU64::new(0),
            info: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            ok: self.ok.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
            info: self.info.load(Ordering::Relaxed),
        }
    }

    /// Appends one event; its time is taken under the lock, so times never decrease
    /// along the file.
    fn event(&self, process: u64, kind: &str, f: &str, key: u64, value: &str, node: u64) {
        self.event_with(process, kind, f, key, value, node, None);
    }

    /// `event` with the error a `fail` or `info` came with (JSON-escaped here).
    #[allow(clippy::too_many_arguments)]
    fn event_with(
        &self,
        process: u64,
        kind: &str,
        f: &str,
        key: u64,
        value: &str,
        node: u64,
        error: Option<&str>,
    ) {
        let error = error.map_or(String::new(), |e| {
            let escaped: String = e
                .chars()
                .filter(|c| !c.is_control())
                .map(|c| match c {
                    '"' => "\\\"".to_string(),
                    '\\' => "\\\\".to_string(),
                    c => c.to_string(),
                })
                .collect();
            format!(",\"error\":\"{escaped}\"")
        });
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let time = self.start.elapsed().as_nanos() as u64;
        let index = lines.len();
        lines.push(format!(
            "{{\"index\":{index},\"time\":{time},\"process\":{process},\"type\":\"{kind}\",\
             \"f\":\"{f}\",\"key\":{key},\"value\":{value},\"node\":{node}{error}}}"
        ));
        let counter = match kind {
            "ok" => &self.ok,
            "fail" => &self.fail,
            "info" => &self.info,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text)
    }
}

/// One op as invoked: its function, key and invoke value (JSON).
struct Invoked {
    f: &'static str,
    key: u64,
    value: String,
}

/// What came back, with the completion value (JSON).
enum Completed {
    Ok(String),
    Fail,
    Info,
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
            let invoked = self.choose(&mut rng, key, &seen);
            let node = server as u64 + 1;
            self.history
                .event(process, "invoke", invoked.f, key, &invoked.value, node);
            let outcome = actix_rt::time::timeout(
                OP_TIMEOUT,
                self.perform_at_leader(c, &mut server, &invoked),
            )
            .await;
            let (completed, error) = match outcome {
                Ok(Ok((completed, value))) => {
                    if let Some(value) = value {
                        seen[key as usize] = Some(value);
                    }
                    (completed, None)
                }
                Ok(Err(e)) if invoked.f == "read" || !e.may_have_applied() => {
                    (Completed::Fail, Some(e.to_string()))
                }
                Ok(Err(e)) => (Completed::Info, Some(e.to_string())),
                Err(_) => (Completed::Info, Some("timed out".to_string())),
            };
            let (kind, value) = match completed {
                Completed::Ok(value) => ("ok", value),
                Completed::Fail => ("fail", invoked.value.clone()),
                Completed::Info => ("info", invoked.value.clone()),
            };
            let error = error.as_deref();
            let event = (process, kind, invoked.f, key);
            self.history
                .event_with(event.0, event.1, event.2, event.3, &value, node, error);
            if kind != "ok" {
                // Unknown or refused: try another server, on a new connection.
                client = None;
                server = (server + 1) % self.urls.len();
            }
            if kind == "info" {
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
    ) -> Invoked {
        let roll = rng.next_u64() % 10;
        match self.workload {
            Workload::Set => Invoked {
                f: "add",
                key,
                value: self.unique().to_string(),
            },
            Workload::Register if roll < 4 => Invoked {
                f: "read",
                key,
                value: "null".into(),
            },
            Workload::Register => match seen[key as usize] {
                Some(expected) if roll < 7 => Invoked {
                    f: "cas",
                    key,
                    value: format!("[{expected},{}]", self.unique()),
                },
                _ => Invoked {
                    f: "write",
                    key,
                    value: self.unique().to_string(),
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
        op: &Invoked,
    ) -> Result<(Completed, Option<i64>), WsClientError> {
        for _ in 0..self.urls.len() {
            match self.perform(client, op).await {
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
        self.perform(client, op).await
    }

    /// Runs one op; on success, the completion value and the register value now known.
    async fn perform(
        &self,
        client: &mut WsClient,
        op: &Invoked,
    ) -> Result<(Completed, Option<i64>), WsClientError> {
        let path = register_path(self.workload, op.key);
        match op.f {
            "read" => {
                let value = client.get_prop(&path, "v").await?;
                let read = match value {
                    Value::Int(v) => Some(v),
                    _ => None,
                };
                let json = read.map_or("null".to_string(), |v| v.to_string());
                Ok((Completed::Ok(json), read))
            }
            "write" => {
                let value: i64 = op.value.parse().expect("we wrote an int");
                client
                    .set(&path, vec![("v".into(), Value::Int(value))])
                    .await?;
                Ok((Completed::Ok(op.value.clone()), Some(value)))
            }
            "cas" => {
                let (expected, new) = parse_pair(&op.value);
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
                    Ok(_) => Ok((Completed::Ok(op.value.clone()), Some(new))),
                    Err(WsClientError::Refused { code, .. }) if code == "precondition_failed" => {
                        Ok((Completed::Fail, None))
                    }
                    Err(e) => Err(e),
                }
            }
            "add" => {
                let prop = format!("e{}", op.value);
                client.set(&path, vec![(prop, Value::Bool(true))]).await?;
                Ok((Completed::Ok(op.value.clone()), None))
            }
            other => unreachable!("no op {other}"),
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
    }
}

fn parse_pair(json: &str) -> (i64, i64) {
    let inner = json.trim_matches(|c| c == '[' || c == ']');
    let (a, b) = inner.split_once(',').expect("we wrote [a,b]");
    (
        a.parse().expect("we wrote an int"),
        b.parse().expect("we wrote an int"),
    )
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
    let f = match workload {
        Workload::Register => "read",
        Workload::Set => "read_set",
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
            let at = node as u64 + 1;
            history.event(process, "invoke", f, key, "null", at);
            let read = async {
                let mut c = WsClient::connect(&urls[node]).await?;
                match workload {
                    Workload::Register => c.get_prop(&path, "v").await,
                    Workload::Set => c.get(&path).await,
                }
            };
            match actix_rt::time::timeout(OP_TIMEOUT * 2, read).await {
                Ok(Ok(value)) => {
                    let json = match (workload, value) {
                        (Workload::Register, Value::Int(v)) => v.to_string(),
                        (Workload::Register, _) => "null".to_string(),
                        (Workload::Set, node) => {
                            let elements: Vec<String> =
                                set_elements(&node).iter().map(i64::to_string).collect();
                            format!("[{}]", elements.join(","))
                        }
                    };
                    history.event(process, "ok", f, key, &json, at);
                    break;
                }
                Ok(Err(e)) => {
                    hint = leader_hint(&e).map(|l| l - 1);
                    history.event(process, "fail", f, key, "null", at);
                }
                Err(_) => history.event(process, "fail", f, key, "null", at),
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
