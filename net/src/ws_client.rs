//! The Rust client of the WebSocket gateway (`docs/protocol.md`).
//!
//! `WsClient::connect(url)` opens a session; typed methods send one request each and await
//! its reply; `subscribe` returns a subscription id whose pushes come from `next_push`.
//! Replies and pushes split into chunks by the server are reassembled here. Runs on an
//! actix/tokio runtime (`actix_rt::System` or `#[actix_rt::main]`); one request at a time
//! per client (open several clients for concurrency).

use std::collections::{BTreeMap, VecDeque};

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use treesync_core::codec::{self, GodotVersion};
use treesync_core::Value;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsClientError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the server closed the session{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused the request (`{ok: false, error, message}`); nothing changed,
    /// unless `code` is `unknown_outcome` (see `may_have_applied`).
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
}

impl WsClientError {
    /// Whether the request may have taken effect: an `unknown_outcome` answer, or a
    /// connection lost after the request went out. Every other error changed nothing.
    pub fn may_have_applied(&self) -> bool {
        match self {
            WsClientError::Refused { code, .. } => code == "unknown_outcome",
            WsClientError::Closed(_) | WsClientError::Protocol(_) => true,
            WsClientError::Connect { .. } => false,
        }
    }

    /// Whether resending the same write (same session and sequence) is safe and useful.
    fn is_retryable(&self) -> bool {
        match self {
            WsClientError::Refused { code, .. } => {
                matches!(code.as_str(), "unknown_outcome" | "unavailable" | "dropped")
            }
            WsClientError::Closed(_)
            | WsClientError::Protocol(_)
            | WsClientError::Connect { .. } => true,
        }
    }
}

/// Attempts of one write (the first and its resends under the same session and sequence).
const WRITE_ATTEMPTS_MAX: u32 = 5;
/// Pause before the n-th resend: n times this.
const WRITE_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

type Result<T> = std::result::Result<T, WsClientError>;

fn key(name: &str) -> Value {
    Value::String(name.to_owned())
}

/// `dict[name]`, for replies and pushes (`Value::field` as a function).
pub fn field<'a>(dict: &'a Value, name: &str) -> Option<&'a Value> {
    dict.field(name)
}

fn int_field(dict: &Value, name: &str) -> Option<i64> {
    match field(dict, name) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// A subscription push, typed (`docs/protocol.md`, "subscribe").
#[derive(Clone, Debug, PartialEq)]
pub enum PushEvent {
    /// The subtree (`Nil`: no node there) as of log position `index`; `resync` when it
    /// replaces what the subscriber had.
    Snapshot {
        sub: i64,
        tree: Value,
        shard: i64,
        index: i64,
        hlc: i64,
        resync: bool,
    },
    /// The ops (request-shaped Dictionaries) of the transaction at `index` that touch the
    /// subtree, committed at `hlc`; `txn` names a cross-shard transaction. A merged
    /// subscription's changes have no `shard` and `index` (both 0 here).
    Change {
        sub: i64,
        shard: i64,
        index: i64,
        hlc: i64,
        txn: Option<String>,
        ops: Vec<Value>,
    },
    /// Every change with an HLC up to `hlc` has been delivered.
    Resolved { sub: i64, hlc: i64 },
    /// The subscriber fell `limit` pushes behind; the stream resumes by itself.
    Overflow { sub: i64, limit: i64 },
}

impl PushEvent {
    /// Reads a push dictionary; `None` for an event this client does not know.
    pub fn from_value(push: &Value) -> Option<PushEvent> {
        let sub = int_field(push, "sub")?;
        let int = |name| int_field(push, name).unwrap_or(0);
        Some(match field(push, "event")? {
            Value::String(e) if e == "snapshot" => PushEvent::Snapshot {
                sub,
                tree: field(push, "tree").cloned().unwrap_or(Value::Nil),
                shard: int("shard"),
                index: int("index"),
                hlc: int("hlc"),
                resync: field(push, "resync") == Some(&Value::Bool(true)),
            },
            Value::String(e) if e == "change" => PushEvent::Change {
                sub,
                shard: int("shard"),
                index: int("index"),
                hlc: int("hlc"),
                txn: match field(push, "txn") {
                    Some(Value::String(txn)) => Some(txn.clone()),
                    _ => None,
                },
                ops: match field(push, "ops") {
                    Some(Value::Array(ops)) => ops.clone(),
                    _ => Vec::new(),
                },
            },
            Value::String(e) if e == "resolved" => PushEvent::Resolved {
                sub,
                hlc: int("hlc"),
            },
            Value::String(e) if e == "overflow" => PushEvent::Overflow {
                sub,
                limit: int("limit"),
            },
            _ => return None,
        })
    }
}

/// A session with a treesync gateway.
///
/// Every write carries this client's exactly-once key (`session`, `seq`; `docs/protocol.md`):
/// when a write's answer is lost, unknown or `unavailable`, the client resends it under the
/// same key, reconnecting if needed, and the shard applies it at most once.
pub struct WsClient {
    framed: Framed<BoxedSocket, Codec>,
    url: String,
    /// Random per client: the shards' session table key.
    session: u64,
    /// The last write's sequence number (writes are numbered from 1).
    seq: u64,
    version: GodotVersion,
    next_id: i64,
    /// Subscription pushes that arrived while waiting for a reply.
    pushes: VecDeque<Value>,
    /// Chunked messages being reassembled: (tag, id) → bytes so far.
    partial: BTreeMap<(String, i64), Vec<u8>>,
    /// Largest WebSocket message received so far, in bytes (the server splits at 60 KiB).
    pub largest_frame: usize,
}

impl WsClient {
    /// Connects to `ws://HOST:PORT/ws` (Godot 4 format) or `…/ws?godot=3` (Godot 3).
    pub async fn connect(url: &str) -> Result<WsClient> {
        let version = if url.contains("godot=3") {
            GodotVersion::V3
        } else {
            GodotVersion::V4
        };
        let framed = open(url).await?;
        Ok(WsClient {
            framed,
            url: url.to_owned(),
            session: random_session(),
            seq: 0,
            version,
            next_id: 1,
            pushes: VecDeque::new(),
            partial: BTreeMap::new(),
            largest_frame: 0,
        })
    }

    /// This client's session id (for tests and logs).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Replaces the connection with a new one to the same URL (same session).
    pub async fn reconnect(&mut self) -> Result<()> {
        self.framed = open(&self.url).await?;
        self.pushes.clear();
        self.partial.clear();
        Ok(())
    }

    /// Sends raw bytes as one binary message (for tests of bad input).
    pub async fn send_bytes(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.framed
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| WsClientError::Protocol(e.to_string()))
    }

    /// Sends a text frame (a protocol violation: the server closes the session).
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .map_err(|e| WsClientError::Protocol(e.to_string()))
    }

    /// The next whole message from the server (chunks reassembled).
    pub async fn receive(&mut self) -> Result<Value> {
        loop {
            let frame = match self.framed.next().await {
                None => return Err(WsClientError::Closed(None)),
                Some(Err(e)) => return Err(WsClientError::Protocol(e.to_string())),
                Some(Ok(frame)) => frame,
            };
            let bytes = match frame {
                Frame::Binary(bytes) => bytes,
                Frame::Ping(payload) => {
                    let _ = self.framed.send(Message::Pong(payload)).await;
                    continue;
                }
                Frame::Close(reason) => {
                    return Err(WsClientError::Closed(reason.and_then(|r| r.description)))
                }
                Frame::Text(_) | Frame::Continuation(_) | Frame::Pong(_) => continue,
            };
            self.largest_frame = self.largest_frame.max(bytes.len());
            let message = codec::decode(&bytes, self.version)
                .map_err(|e| WsClientError::Protocol(format!("undecodable message: {e}")))?;
            if let Some(whole) = self.reassemble(&message)? {
                return Ok(whole);
            }
        }
    }

    /// Returns the message, or `None` while a chunked one is incomplete.
    fn reassemble(&mut self, message: &Value) -> Result<Option<Value>> {
        let Some(Value::PackedByteArray(piece)) = field(message, "chunk") else {
            return Ok(Some(message.clone()));
        };
        let tag = if field(message, "sub").is_some() {
            "sub"
        } else {
            "id"
        };
        let id = int_field(message, tag).unwrap_or(-1);
        let (part, parts) = (
            int_field(message, "part").unwrap_or(0),
            int_field(message, "parts").unwrap_or(1),
        );
        let buffer = self.partial.entry((tag.to_owned(), id)).or_default();
        buffer.extend_from_slice(piece);
        if part + 1 < parts {
            return Ok(None);
        }
        let whole = self
            .partial
            .remove(&(tag.to_owned(), id))
            .unwrap_or_default();
        codec::decode(&whole, self.version)
            .map(Some)
            .map_err(|e| WsClientError::Protocol(format!("undecodable chunked message: {e}")))
    }

    /// Sends one request (`op` and its fields; the id is added) and returns its reply
    /// dictionary when `ok` is true.
    pub async fn request(&mut self, op: &str, fields: Vec<(&str, Value)>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut pairs = vec![(key("id"), Value::Int(id)), (key("op"), key(op))];
        pairs.extend(fields.into_iter().map(|(k, v)| (key(k), v)));
        let bytes = codec::encode(&Value::Dictionary(pairs), self.version)
            .map_err(|e| WsClientError::Protocol(format!("unencodable request: {e}")))?;
        self.send_bytes(bytes).await?;
        loop {
            let message = self.receive().await?;
            if field(&message, "sub").is_some() && field(&message, "id").is_none() {
                self.pushes.push_back(message);
                continue;
            }
            if int_field(&message, "id") != Some(id) {
                continue; // a reply to a request this client gave up on
            }
            return match field(&message, "ok") {
                Some(Value::Bool(true)) => Ok(message),
                _ => Err(refusal(&message)),
            };
        }
    }

    /// The next subscription push (`{sub, event, ...}`), waiting for one if needed.
    pub async fn next_push(&mut self) -> Result<Value> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(push);
        }
        loop {
            let message = self.receive().await?;
            if field(&message, "sub").is_some() {
                return Ok(message);
            }
        }
    }

    /// The next subscription push, typed (unknown events are skipped).
    pub async fn next_event(&mut self) -> Result<PushEvent> {
        loop {
            if let Some(event) = PushEvent::from_value(&self.next_push().await?) {
                return Ok(event);
            }
        }
    }

    /// This client as a stream of subscription pushes (for clients that only subscribe);
    /// it ends after the first error, which it yields.
    pub fn into_events(self) -> impl futures_util::Stream<Item = Result<PushEvent>> {
        futures_util::stream::unfold(Some(self), |client| async move {
            let mut client = client?;
            match client.next_event().await {
                Ok(event) => Some((Ok(event), Some(client))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// Sends a write under the next sequence number and resends it under the same one while
    /// its fate is unknown or the shard was unavailable (up to `WRITE_ATTEMPTS_MAX`).
    async fn write(&mut self, op: &str, mut fields: Vec<(&str, Value)>) -> Result<u64> {
        self.seq += 1;
        fields.push(("session", Value::Int(self.session as i64)));
        fields.push(("seq", Value::Int(self.seq as i64)));
        let mut attempt = 1;
        // Whether an earlier attempt may have been applied: then so may the write, whatever
        // the last attempt says (a refused reconnect does not undo a delivered request).
        let mut uncertain = false;
        let reply = loop {
            let mut result = self.request(op, fields.clone()).await;
            if let Err(e) = &result {
                uncertain |= e.may_have_applied();
            }
            if matches!(
                result,
                Err(WsClientError::Closed(_) | WsClientError::Protocol(_))
            ) {
                // The connection is gone or unusable: the resend needs a new one.
                if let Err(e) = self.reconnect().await {
                    result = Err(e);
                }
            }
            match result {
                Ok(reply) => break reply,
                Err(e) if attempt < WRITE_ATTEMPTS_MAX && e.is_retryable() => {
                    tracing::debug!(op, seq = self.seq, attempt, error = %e, "resending write");
                    actix_rt::time::sleep(WRITE_RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(e) if uncertain && !e.may_have_applied() => {
                    return Err(WsClientError::Refused {
                        code: "unknown_outcome".into(),
                        message: format!(
                            "{e}; an earlier attempt may have been applied (resend it under \
                             the same session and seq to learn its outcome)"
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        };
        int_field(&reply, "hlc")
            .map(|h| h as u64)
            .ok_or_else(|| WsClientError::Protocol("a write reply without hlc".into()))
    }

    /// Creates `parent/name` of `class`; returns the commit's HLC.
    pub async fn create(
        &mut self,
        parent: &str,
        name: &str,
        class: &str,
        props: Vec<(String, Value)>,
    ) -> Result<u64> {
        let fields = vec![
            ("parent", key(parent)),
            ("name", key(name)),
            ("class", key(class)),
            ("props", props_value(props)),
        ];
        self.write("create", fields).await
    }

    /// Sets (or, with `Nil`, removes) properties.
    pub async fn set(&mut self, path: &str, props: Vec<(String, Value)>) -> Result<u64> {
        self.write(
            "set",
            vec![("path", key(path)), ("props", props_value(props))],
        )
        .await
    }

    pub async fn delete(&mut self, path: &str) -> Result<u64> {
        self.write("delete", vec![("path", key(path))]).await
    }

    pub async fn rename(&mut self, path: &str, name: &str) -> Result<u64> {
        self.write("rename", vec![("path", key(path)), ("name", key(name))])
            .await
    }

    /// Moves `path` under `parent`, at `index` among its children (last when `None`).
    pub async fn move_node(&mut self, path: &str, parent: &str, index: Option<i64>) -> Result<u64> {
        let mut fields = vec![("path", key(path)), ("parent", key(parent))];
        if let Some(i) = index {
            fields.push(("index", Value::Int(i)));
        }
        self.write("move", fields).await
    }

    pub async fn emit(&mut self, path: &str, signal: &str, args: Vec<Value>) -> Result<u64> {
        let fields = vec![
            ("path", key(path)),
            ("signal", key(signal)),
            ("args", Value::Array(args)),
        ];
        self.write("emit", fields).await
    }

    /// An atomic transaction: `ops` are request dictionaries without `id`; `expect` the
    /// preconditions (`{path, prop?, value?, exists?}`).
    pub async fn txn(&mut self, ops: Vec<Value>, expect: Vec<Value>) -> Result<u64> {
        let fields = vec![("ops", Value::Array(ops)), ("expect", Value::Array(expect))];
        self.write("txn", fields).await
    }

    /// A node: `{name, class, props, children: [names]}` (linearizable).
    pub async fn get(&mut self, path: &str) -> Result<Value> {
        let reply = self.request("get", vec![("path", key(path))]).await?;
        Ok(field(&reply, "node").cloned().unwrap_or(Value::Nil))
    }

    /// One property (`Nil` when unset), linearizable.
    pub async fn get_prop(&mut self, path: &str, prop: &str) -> Result<Value> {
        let reply = self
            .request("get", vec![("path", key(path)), ("prop", key(prop))])
            .await?;
        Ok(field(&reply, "value").cloned().unwrap_or(Value::Nil))
    }

    /// A whole subtree `{name, class, props, children: [trees]}` (linearizable).
    pub async fn tree(&mut self, path: &str) -> Result<Value> {
        let reply = self.request("tree", vec![("path", key(path))]).await?;
        Ok(field(&reply, "tree").cloned().unwrap_or(Value::Nil))
    }

    /// Subscribes to the subtree at `path`, resuming after `from` (a position from an
    /// earlier `change` push) if given; returns the subscription id.
    pub async fn subscribe(&mut self, path: &str, from: Option<i64>) -> Result<i64> {
        let mut fields = vec![("path", key(path))];
        if let Some(from) = from {
            fields.push(("from", Value::Int(from)));
        }
        let reply = self.request("subscribe", fields).await?;
        int_field(&reply, "sub")
            .ok_or_else(|| WsClientError::Protocol("a subscribe reply without sub".into()))
    }

    pub async fn unsubscribe(&mut self, sub: i64) -> Result<()> {
        self.request("unsubscribe", vec![("sub", Value::Int(sub))])
            .await
            .map(drop)
    }
}

async fn open(url: &str) -> Result<Framed<BoxedSocket, Codec>> {
    let (_, framed) = awc::Client::new()
        .ws(url)
        .max_frame_size(16 * 1024 * 1024)
        .connect()
        .await
        .map_err(|e| WsClientError::Connect {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(framed)
}

/// A session id unlikely to collide with another client's: the clock, the process and a
/// per-process counter, mixed.
pub(crate) fn random_session() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    treesync_core::rng::SplitMix64::new(seed).next_u64()
}

fn props_value(props: Vec<(String, Value)>) -> Value {
    Value::Dictionary(
        props
            .into_iter()
            .map(|(k, v)| (Value::String(k), v))
            .collect(),
    )
}

fn refusal(message: &Value) -> WsClientError {
    let text = |name| match field(message, name) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    WsClientError::Refused {
        code: text("error"),
        message: text("message"),
    }
}
