//! A blocking client of the minimal protocol, for tests, the CLI and the load generator.
//! It knows every server and follows `NotLeader` hints. Its writes carry an exactly-once
//! key (a random session and a sequence number), so resending one after a lost answer,
//! a timeout or `unknown_outcome` applies it at most once (`docs/protocol.md`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use thiserror::Error;
use treesync_core::{wire, SessionSeq, Txn, Value};

use crate::client_proto::{self, Response};
use crate::frame::{parse_header, push_frame, HEADER_BYTES};
use crate::ws_client::random_session;

/// Attempts (across servers) before a request fails.
const ATTEMPTS_MAX: usize = 40;
const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no server answered after {attempts} attempts (last: {last})")]
    Unavailable { attempts: usize, last: String },
    #[error("the server refused the request: {0}")]
    Refused(String),
}

/// A connection pool over the cluster's client addresses, keyed by server id.
pub struct Client {
    servers: BTreeMap<u64, SocketAddr>,
    connections: BTreeMap<u64, TcpStream>,
    leader: u64,
    pub timeout: Duration,
    session: u64,
    seq: u64,
}

impl Client {
    pub fn new(servers: BTreeMap<u64, SocketAddr>) -> Client {
        let leader = *servers.keys().next().expect("at least one server");
        Client {
            servers,
            connections: BTreeMap::new(),
            leader,
            timeout: Duration::from_secs(2),
            session: random_session(),
            seq: 0,
        }
    }

    /// One request to one server.
    pub fn request_to(&mut self, id: u64, kind: u32, body: &[u8]) -> Result<Response, String> {
        if !self.connections.contains_key(&id) {
            let addr = self
                .servers
                .get(&id)
                .ok_or_else(|| format!("unknown server {id}"))?;
            let stream = TcpStream::connect_timeout(addr, self.timeout)
                .map_err(|e| format!("{addr}: {e}"))?;
            stream
                .set_read_timeout(Some(self.timeout))
                .map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.connections.insert(id, stream);
        }
        let stream = self.connections.get_mut(&id).expect("just inserted");
        let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
        push_frame(&mut frame, kind, body).map_err(|e| e.to_string())?;
        let result = (|| {
            stream.write_all(&frame).map_err(|e| e.to_string())?;
            let mut header = [0u8; HEADER_BYTES];
            stream.read_exact(&mut header).map_err(|e| e.to_string())?;
            let header = parse_header(&header).map_err(|len| format!("response of {len} bytes"))?;
            let mut body = vec![0u8; header.len as usize];
            stream.read_exact(&mut body).map_err(|e| e.to_string())?;
            Response::decode(header.tag, &body)
        })();
        if result.is_err() {
            self.connections.remove(&id);
        }
        result
    }

    /// Sends to the believed leader, following hints and retrying other servers.
    ///
    /// Transport errors are retried: reads are idempotent and writes carry a session.
    fn request(&mut self, kind: u32, body: &[u8]) -> Result<Response, ClientError> {
        let ids: Vec<u64> = self.servers.keys().copied().collect();
        let mut last = String::from("no attempt");
        for attempt in 0..ATTEMPTS_MAX {
            let target = self.leader;
            match self.request_to(target, kind, body) {
                Ok(Response::NotLeader { leader: Some(l) }) if l != target => self.leader = l,
                Ok(Response::NotLeader { .. }) => {
                    last = format!("server {target}: no leader yet");
                    self.leader = ids[(attempt + 1) % ids.len()];
                    std::thread::sleep(RETRY_PAUSE);
                }
                // A write's copies share its session and sequence: a resend applies once.
                Ok(Response::Rejected { code, message })
                    if matches!(code.as_str(), "dropped" | "unavailable" | "unknown_outcome") =>
                {
                    last = message;
                    std::thread::sleep(RETRY_PAUSE);
                }
                Ok(Response::Rejected { code, message }) => {
                    return Err(ClientError::Refused(format!("{code}: {message}")))
                }
                Ok(Response::Error(e)) => return Err(ClientError::Refused(e)),
                Ok(response) => return Ok(response),
                Err(e) => {
                    last = format!("server {target}: {e}");
                    self.leader =
                        ids[(ids.iter().position(|i| *i == target).unwrap_or(0) + 1) % ids.len()];
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        Err(ClientError::Unavailable {
            attempts: ATTEMPTS_MAX,
            last,
        })
    }

    /// Commits a transaction exactly once (under this client's session and the next
    /// sequence number unless `txn` has its own); returns (index, term).
    pub fn write(&mut self, txn: &Txn) -> Result<(u64, u64), ClientError> {
        let mut txn = txn.clone();
        if txn.session.is_none() {
            self.seq += 1;
            txn.session = Some(SessionSeq {
                session: self.session,
                seq: self.seq,
            });
        }
        match self.request(client_proto::WRITE, &wire::encode_txn(&txn))? {
            Response::Written { index, term, .. } => Ok((index, term)),
            other => Err(ClientError::Refused(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Linearizable read of a node (or one property).
    pub fn read(&mut self, path: &str, prop: Option<&str>) -> Result<Option<Value>, ClientError> {
        let body = match prop {
            Some(p) => format!("{path}\n{p}"),
            None => path.to_owned(),
        };
        match self.request(client_proto::READ, body.as_bytes())? {
            Response::Value(v) => Ok(v),
            other => Err(ClientError::Refused(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// The server `id` believes it leads (for tests): parsed from its status.
    pub fn status(&mut self, id: u64) -> Result<String, String> {
        match self.request_to(id, client_proto::STATUS, &[])? {
            Response::Status(text) => Ok(text),
            other => Err(format!("unexpected response {other:?}")),
        }
    }

    /// A linearizable read served by server `id` itself: it answers only once it applied
    /// everything committed before the read, so the value shows what that server holds.
    pub fn read_at(&mut self, id: u64, path: &str, prop: &str) -> Result<Option<Value>, String> {
        match self.request_to(id, client_proto::READ, format!("{path}\n{prop}").as_bytes())? {
            Response::Value(v) => Ok(v),
            other => Err(format!("unexpected response {other:?}")),
        }
    }
}
