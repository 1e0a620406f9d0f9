//! One actix actor per WebSocket session: decode, validate, ask the backend, answer.
//!
//! A message may arrive as several frames (RFC 6455 §5.4): Chromium, hence every Godot 4
//! web export, sends messages above 64 KiB that way. `Fragments` reassembles them up to
//! `message_bytes_max` before the message is handled like a single-frame one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use std::collections::BTreeMap;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, SpawnHandle, StreamHandler, WrapFuture,
};
use actix_http::ws::Item;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use futures_util::stream::{self, StreamExt};
use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::codec::{self, GodotVersion};
use treesync_core::replica::ReadTarget;
use treesync_core::Value;

use super::reply::{chunks, error_reply, ok_reply, push_value};
use super::request::{parse, Request, RequestError};
use super::{version_from_query, Backend, GatewayLimits, Push};

/// What every session shares.
#[derive(Clone)]
pub struct Shared {
    pub backend: Arc<dyn Backend>,
    pub limits: GatewayLimits,
}

/// Builds the HTTP server with the `/ws` route, bound to `addr`.
pub fn server(
    shared: Shared,
    addr: SocketAddr,
    workers: usize,
) -> Result<(actix_web::dev::Server, SocketAddr), (SocketAddr, std::io::Error)> {
    let data = web::Data::new(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/ws", web::get().to(open))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(workers.max(1))
    .disable_signals()
    .bind(addr)
    .map_err(|e| (addr, e))?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    Ok((server.run(), bound))
}

/// `GET /metrics`: the backend's Prometheus text exposition (format 0.0.4).
async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    match shared.backend.metrics() {
        Some(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        None => HttpResponse::NotFound().body("this gateway's backend keeps no metrics"),
    }
}

async fn open(
    req: HttpRequest,
    stream: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let version = match version_from_query(req.query_string()) {
        Ok(v) => v,
        Err(e) => return Ok(HttpResponse::BadRequest().body(e)),
    };
    let frame_max = shared.limits.frame_bytes_max;
    let session = Session {
        shared: shared.get_ref().clone(),
        version,
        in_flight: 0,
        subs: BTreeMap::new(),
        next_sub: 1,
        fragments: Fragments::default(),
    };
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(frame_max)
        .start()
}

struct Session {
    shared: Shared,
    version: GodotVersion,
    in_flight: usize,
    subs: BTreeMap<i64, Subscription>,
    next_sub: i64,
    /// The fragmented message being received, if any.
    fragments: Fragments,
}

/// A binary message arriving as several frames, reassembled (RFC 6455 §5.4).
///
/// # Invariants
/// - The buffer never holds more than the `max` given to `push` (its capacity at most
///   twice that): a message growing past it is refused before the frame that would take
///   it over is copied, so a session's memory stays bounded.
/// - Between messages (and after a refusal) there is no buffer.
#[derive(Debug, Default)]
struct Fragments {
    /// The frames so far; `None` between messages.
    buffer: Option<Vec<u8>>,
}

/// Why a fragmented message closes the session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum FragmentError {
    #[error("fragmented text messages are not part of the protocol: send binary Godot Variants")]
    Text,
    #[error("a continuation frame without a first frame")]
    NotStarted,
    #[error("a new fragmented message started before the previous one ended")]
    Started,
    #[error("a fragmented message of {bytes}+ bytes exceeds the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
}

impl FragmentError {
    /// The close code: as for a single text frame, a protocol error, or an oversized frame.
    fn close_code(&self) -> ws::CloseCode {
        match self {
            FragmentError::Text => ws::CloseCode::Unsupported,
            FragmentError::NotStarted | FragmentError::Started => ws::CloseCode::Protocol,
            FragmentError::TooLarge { .. } => ws::CloseCode::Size,
        }
    }
}

impl Fragments {
    /// Adds one frame of a fragmented message; returns the whole message after its last
    /// frame. A message over `max` bytes closes the session, where a single frame that
    /// size is answered `too_large`: its bytes are not kept, so it could not be answered
    /// under its id, and its sender is told at once instead of after sending the rest.
    fn push(&mut self, item: Item, max: usize) -> Result<Option<Vec<u8>>, FragmentError> {
        let (data, last) = match item {
            Item::FirstText(_) => return Err(FragmentError::Text),
            Item::FirstBinary(data) => {
                // actix's codec already refuses this; checked again so that the buffer
                // of one message can never be prefixed to another.
                if self.buffer.is_some() {
                    self.buffer = None;
                    return Err(FragmentError::Started);
                }
                self.buffer = Some(Vec::new());
                (data, false)
            }
            Item::Continue(data) => (data, false),
            Item::Last(data) => (data, true),
        };
        let buffer = self.buffer.as_mut().ok_or(FragmentError::NotStarted)?;
        let bytes = buffer.len().saturating_add(data.len());
        if bytes > max {
            self.buffer = None;
            return Err(FragmentError::TooLarge { bytes, max });
        }
        buffer.extend_from_slice(&data);
        if !last {
            return Ok(None);
        }
        Ok(self.buffer.take())
    }
}

/// One subscription of a session.
struct Subscription {
    path: String,
    /// Where a resumed feed starts: the log index of the last snapshot or change delivered,
    /// or, for a subscription that merges shards, the HLC of the last `resolved`.
    position: Option<u64>,
    merged: bool,
    /// The stream of pushes from the core (cancelled on unsubscribe).
    feed: Option<SpawnHandle>,
}

/// A push for subscription `.0`; `None` when the core ended the feed.
struct Fed(i64, Option<Push>);

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;
}

/// What one request is answered with: reply fields, or an error code and message (the
/// byte edge: codes become strings only here).
type ReplyFields = Result<Vec<(&'static str, Value)>, (String, String)>;

impl Session {
    fn send(&self, ctx: &mut ws::WebsocketContext<Self>, message: &Value, tag: (&str, i64)) {
        match chunks(message, tag, self.version, self.shared.limits.split_bytes) {
            Ok(parts) => parts.into_iter().for_each(|p| ctx.binary(p)),
            Err(e) => {
                let id = (tag.0 == "id").then_some(tag.1);
                let reply = error_reply(id, "unrepresentable", &e.to_string());
                if let Ok(bytes) = codec::encode(&reply, self.version) {
                    ctx.binary(bytes);
                }
            }
        }
    }

    fn refuse(&self, ctx: &mut ws::WebsocketContext<Self>, id: Option<i64>, e: &RequestError) {
        tracing::debug!(code = e.code(), error = %e, "request refused");
        let reply = error_reply(id, e.code(), &e.to_string());
        self.send(ctx, &reply, ("id", id.unwrap_or(-1)));
    }

    fn on_message(&mut self, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        let limits = &self.shared.limits;
        if bytes.len() > limits.message_bytes_max {
            let e = RequestError::TooLarge {
                bytes: bytes.len(),
                max: limits.message_bytes_max,
            };
            return self.refuse(ctx, None, &e);
        }
        let message = match codec::decode(bytes, self.version) {
            Ok(v) => v,
            Err(e) => return self.refuse(ctx, None, &RequestError::from(e)),
        };
        let (id, request) = parse(&message, &limits.tree);
        let request = match request {
            Ok(r) => r,
            Err(e) => return self.refuse(ctx, id, &e),
        };
        let id = id.expect("a parsed request has an id");
        match request {
            Request::Subscribe { path, from } => return self.subscribe(ctx, id, path, from),
            Request::Unsubscribe { sub } => return self.unsubscribe(ctx, id, sub),
            _ => {}
        }
        if self.in_flight >= limits.in_flight_max {
            let message = format!(
                "{} requests in progress on this session; wait for replies",
                self.in_flight
            );
            let reply = error_reply(Some(id), "overloaded", &message);
            return self.send(ctx, &reply, ("id", id));
        }
        self.in_flight += 1;
        let work = execute(self.shared.clone(), request);
        ctx.spawn(work.into_actor(self).map(move |outcome, session, ctx| {
            session.in_flight -= 1;
            let reply = match outcome {
                Ok(fields) => ok_reply(id, fields),
                Err((code, message)) => error_reply(Some(id), &code, &message),
            };
            session.send(ctx, &reply, ("id", id));
        }));
    }
}

impl Session {
    fn subscribe(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        id: i64,
        path: String,
        from: Option<i64>,
    ) {
        if self.subs.len() >= self.shared.limits.subs_max {
            let message = format!("{} subscriptions on this session already", self.subs.len());
            return self.send(
                ctx,
                &error_reply(Some(id), "overloaded", &message),
                ("id", id),
            );
        }
        let Ok(from) = from.map(u64::try_from).transpose() else {
            let reply = error_reply(Some(id), "bad_request", "\"from\" must not be negative");
            return self.send(ctx, &reply, ("id", id));
        };
        let sub = self.next_sub;
        self.next_sub += 1;
        let merged = self.shared.backend.merges(&path);
        self.subs.insert(
            sub,
            Subscription {
                path: path.clone(),
                position: from,
                merged,
                feed: None,
            },
        );
        self.start_feed(ctx, sub, Some(id));
    }

    /// Asks the backend for a feed of `sub` from its position; answers request `id` if any.
    fn start_feed(&mut self, ctx: &mut ws::WebsocketContext<Self>, sub: i64, id: Option<i64>) {
        let Some(state) = self.subs.get(&sub) else {
            return;
        };
        let (tx, rx) = flume::bounded(self.shared.limits.sub_queue_max);
        let (shared, path, from) = (self.shared.clone(), state.path.clone(), state.position);
        let started = async move {
            patiently(&shared.limits, false, || {
                shared.backend.subscribe(path.clone(), from, tx.clone())
            })
            .await
        };
        ctx.spawn(started.into_actor(self).map(move |response, session, ctx| {
            let failure = match response {
                Ok(_) => None,
                Err(ReplyError::NotLeader { .. }) => Some((
                    "unavailable".to_owned(),
                    "the shard has no leader right now (an election); retry".to_owned(),
                )),
                Err(error) => Some((error.code().to_owned(), error.to_string())),
            };
            if let Some((code, message)) = failure {
                session.subs.remove(&sub);
                let reply = error_reply(id, &code, &message);
                return session.send(ctx, &reply, ("id", id.unwrap_or(-1)));
            }
            if let Some(id) = id {
                let merged = session.subs.get(&sub).is_some_and(|s| s.merged);
                let fields = vec![("sub", Value::Int(sub)), ("merged", Value::Bool(merged))];
                session.send(ctx, &ok_reply(id, fields), ("id", id));
            }
            let feed = rx
                .into_stream()
                .map(move |push| Fed(sub, Some(push)))
                .chain(stream::once(async move { Fed(sub, None) }));
            let handle = ctx.add_stream(feed);
            match session.subs.get_mut(&sub) {
                Some(state) => state.feed = Some(handle),
                None => drop(ctx.cancel_future(handle)), // unsubscribed meanwhile
            }
        }));
    }

    fn unsubscribe(&mut self, ctx: &mut ws::WebsocketContext<Self>, id: i64, sub: i64) {
        let Some(state) = self.subs.remove(&sub) else {
            let reply = error_reply(Some(id), "unknown_sub", &format!("no subscription {sub}"));
            return self.send(ctx, &reply, ("id", id));
        };
        if let Some(feed) = state.feed {
            // Dropping the receiver ends the feed at the core too.
            ctx.cancel_future(feed);
        }
        self.send(ctx, &ok_reply(id, vec![]), ("id", id));
    }
}

impl StreamHandler<Fed> for Session {
    fn handle(&mut self, Fed(sub, push): Fed, ctx: &mut Self::Context) {
        let Some(state) = self.subs.get_mut(&sub) else {
            return; // unsubscribed: late pushes are dropped
        };
        match push {
            Some(push) => {
                match (&push, state.merged) {
                    (Push::Snapshot { index, .. } | Push::Change { index, .. }, false) => {
                        state.position = Some(*index);
                    }
                    (Push::Resolved { hlc }, true) => state.position = Some(*hlc),
                    _ => {}
                }
                self.send(ctx, &push_value(sub, &push), ("sub", sub));
            }
            None => {
                // The core dropped the feed: this subscriber fell `sub_queue_max` behind.
                state.feed = None;
                let limit = self.shared.limits.sub_queue_max as i64;
                let notice = Value::Dictionary(vec![
                    (Value::String("sub".into()), Value::Int(sub)),
                    (
                        Value::String("event".into()),
                        Value::String("overflow".into()),
                    ),
                    (Value::String("limit".into()), Value::Int(limit)),
                ]);
                self.send(ctx, &notice, ("sub", sub));
                self.start_feed(ctx, sub, None);
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // One feed ended (handled above with `Fed(_, None)`); the session goes on.
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Binary(bytes)) => self.on_message(&bytes, ctx),
            Ok(ws::Message::Continuation(item)) => {
                let max = self.shared.limits.message_bytes_max;
                match self.fragments.push(item, max) {
                    Ok(Some(message)) => self.on_message(&message, ctx),
                    Ok(None) => {}
                    Err(e) => close(ctx, e.close_code(), &e.to_string()),
                }
            }
            Ok(ws::Message::Text(_)) => close(
                ctx,
                ws::CloseCode::Unsupported,
                "text frames are not part of the protocol: send binary Godot Variants",
            ),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(e) => {
                let code = match e {
                    ws::ProtocolError::Overflow => ws::CloseCode::Size,
                    _ => ws::CloseCode::Protocol,
                };
                close(ctx, code, &format!("protocol violation: {e}"));
            }
        }
    }
}

fn close(ctx: &mut ws::WebsocketContext<Session>, code: ws::CloseCode, why: &str) {
    tracing::debug!(why, "closing session");
    ctx.close(Some(ws::CloseReason {
        code,
        description: Some(why.to_owned()),
    }));
    ctx.stop();
}

/// Runs one request against the backend, waiting out elections up to `leader_wait`.
async fn execute(shared: Shared, request: Request) -> ReplyFields {
    let backend = shared.backend.clone();
    // A write with a session may be resent after an unknown outcome: the shard applies
    // its (session, seq) once and answers the copy with the first answer.
    let exactly_once = matches!(&request, Request::Write(txn) if txn.session.is_some());
    let response = patiently(&shared.limits, exactly_once, || match &request {
        Request::Write(txn) => backend.write(txn.clone()),
        Request::Get { path, prop } => {
            let target = prop.clone().map_or(ReadTarget::Node, ReadTarget::Prop);
            backend.read(path.clone(), target)
        }
        Request::Tree { path } => backend.read(path.clone(), ReadTarget::Subtree),
        Request::Status => backend.status(),
        Request::Subscribe { .. } | Request::Unsubscribe { .. } => {
            unreachable!("sessions handle subscriptions themselves")
        }
    })
    .await;
    reply_of(&request, response)
}

/// Asks again while the shard has no leader or the attempt was dropped by a leadership
/// change (neither changed anything), and for an `exactly_once` write also after an unknown
/// outcome, until `leader_wait` has passed.
async fn patiently(
    limits: &GatewayLimits,
    exactly_once: bool,
    mut attempt: impl FnMut() -> super::BoxFuture<Outcome>,
) -> Outcome {
    let deadline = Instant::now() + limits.leader_wait;
    loop {
        let outcome = attempt().await;
        let retry = match &outcome {
            Err(ReplyError::NotLeader { leader: None } | ReplyError::Dropped) => true,
            Err(ReplyError::UnknownOutcome | ReplyError::Unavailable { .. }) => exactly_once,
            _ => false,
        };
        if !retry || Instant::now() >= deadline {
            return outcome;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The reply fields of a request's outcome, or its error code and message.
fn reply_of(request: &Request, outcome: Outcome) -> ReplyFields {
    let error = match outcome {
        Ok(Answer::Written { hlc, index, .. }) => {
            return Ok(vec![
                ("hlc", Value::Int(hlc.as_u64() as i64)),
                ("index", Value::Int(index as i64)),
            ])
        }
        Ok(Answer::Value(value)) => return value_reply(request, value),
        Ok(Answer::Subscribed) => return Ok(vec![("value", Value::Nil)]),
        // Steps pass between coordinators and shards, never to a client.
        Ok(Answer::Step(step)) => ReplyError::Unavailable {
            reason: format!("internal answer {step:?}"),
        },
        Err(error) => error,
    };
    Err(match error {
        ReplyError::NotLeader { leader: Some(l) } => (
            "not_leader".into(),
            format!("this server does not lead the shard; server {l} does"),
        ),
        ReplyError::NotLeader { leader: None } => (
            "unavailable".into(),
            "the shard has no leader (an election did not finish in time)".into(),
        ),
        other => (other.code().into(), other.to_string()),
    })
}

fn value_reply(request: &Request, value: Option<Value>) -> ReplyFields {
    match (request, value) {
        (Request::Get { prop: Some(_), .. }, value) => {
            Ok(vec![("value", value.unwrap_or(Value::Nil))])
        }
        (Request::Get { path, .. } | Request::Tree { path }, None) => {
            Err(("not_found".into(), format!("no node at {path}")))
        }
        (Request::Get { .. }, Some(node)) => Ok(vec![("node", node)]),
        (Request::Status, Some(status)) => Ok(vec![("status", status)]),
        (_, Some(tree)) => Ok(vec![("tree", tree)]),
        (_, None) => Ok(vec![("value", Value::Nil)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(data: &[u8]) -> Item {
        Item::FirstBinary(data.to_vec().into())
    }

    fn more(data: &[u8]) -> Item {
        Item::Continue(data.to_vec().into())
    }

    fn last(data: &[u8]) -> Item {
        Item::Last(data.to_vec().into())
    }

    #[test]
    fn fragments_reassemble_into_one_message_then_start_afresh() {
        let mut fragments = Fragments::default();
        assert_eq!(fragments.push(first(b"ab"), 8), Ok(None));
        assert_eq!(fragments.push(more(b"cd"), 8), Ok(None));
        assert_eq!(fragments.push(more(b""), 8), Ok(None));
        assert_eq!(fragments.push(last(b"ef"), 8), Ok(Some(b"abcdef".to_vec())));
        assert!(fragments.buffer.is_none(), "no buffer between messages");
        // Exactly the limit is allowed, and a message may be just a first and a last frame.
        assert_eq!(fragments.push(first(b"1234"), 8), Ok(None));
        assert_eq!(
            fragments.push(last(b"5678"), 8),
            Ok(Some(b"12345678".to_vec()))
        );
    }

    #[test]
    fn a_fragmented_message_over_the_limit_is_refused_before_it_is_buffered() {
        let mut fragments = Fragments::default();
        assert_eq!(fragments.push(first(b"1234"), 8), Ok(None));
        assert_eq!(
            fragments.push(more(b"56789"), 8),
            Err(FragmentError::TooLarge { bytes: 9, max: 8 })
        );
        assert!(fragments.buffer.is_none(), "the partial message is dropped");
        let first_over = Fragments::default().push(first(&[0; 9]), 8);
        assert_eq!(
            first_over,
            Err(FragmentError::TooLarge { bytes: 9, max: 8 })
        );
        assert_eq!(
            FragmentError::TooLarge { bytes: 9, max: 8 }.close_code(),
            ws::CloseCode::Size
        );
    }

    #[test]
    fn text_fragments_and_frames_out_of_sequence_are_refused() {
        let text = Fragments::default().push(Item::FirstText(b"hi".to_vec().into()), 8);
        assert_eq!(text, Err(FragmentError::Text));
        assert_eq!(FragmentError::Text.close_code(), ws::CloseCode::Unsupported);
        for orphan in [more(b"x"), last(b"x")] {
            let mut fragments = Fragments::default();
            assert_eq!(fragments.push(orphan, 8), Err(FragmentError::NotStarted));
        }
        let mut fragments = Fragments::default();
        assert_eq!(fragments.push(first(b"a"), 8), Ok(None));
        assert_eq!(fragments.push(first(b"b"), 8), Err(FragmentError::Started));
        assert!(fragments.buffer.is_none());
        for e in [FragmentError::NotStarted, FragmentError::Started] {
            assert_eq!(e.close_code(), ws::CloseCode::Protocol);
        }
    }
}
