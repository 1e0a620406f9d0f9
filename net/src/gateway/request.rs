//! Client requests: a Godot Dictionary → a typed `Request`, or a typed `RequestError`.
//!
//! The shapes are the contract of `docs/protocol.md`: every request has `id` (int) and `op`
//! (String); paths are Strings (NodePath and StringName accepted). Unknown extra keys are
//! ignored, so clients may add their own (e.g. for tracing); missing or mistyped ones are
//! `bad_request`.

use treesync_core::codec::DecodeError;
use treesync_core::op::{Expect, Op, Precondition, Prop, SessionSeq, Txn};
use treesync_core::path::NodePath;
use treesync_core::value::dict_field as field;
use treesync_core::{Limits, Value};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `create`, `set`, `delete`, `rename`, `move`, `emit` (one op) or `txn`.
    Write(Txn),
    Get {
        path: String,
        prop: Option<String>,
    },
    Tree {
        path: String,
    },
    Subscribe {
        path: String,
        from: Option<i64>,
    },
    Unsubscribe {
        sub: i64,
    },
    /// Each shard's leader and role, as the server sees them.
    Status,
}

/// Why a request was refused before reaching any shard; nothing was changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown op {0:?} (known: create, set, delete, rename, move, emit, txn, get, tree, subscribe, unsubscribe)")]
    UnknownOp(String),
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("message of {bytes} bytes exceeds the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    /// Well-formed Godot bytes holding a value treesync does not store (an Object, a
    /// Callable, a typed Array…): the client's fault, but not garbage.
    #[error("invalid value: {0}")]
    InvalidValue(DecodeError),
}

impl RequestError {
    /// The `error` code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "malformed",
            RequestError::BadRequest(_) => "bad_request",
            RequestError::UnknownOp(_) => "unknown_op",
            RequestError::InvalidPath { .. } => "invalid_path",
            RequestError::TooLarge { .. } => "too_large",
            RequestError::InvalidValue(_) => "invalid_value",
        }
    }
}

impl From<DecodeError> for RequestError {
    /// A value the session's Godot format can hold but treesync cannot store is
    /// `invalid_value`; bytes that are no Variant at all are `malformed`.
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Unsupported { .. } | DecodeError::UnsupportedFlags { .. } => {
                RequestError::InvalidValue(e)
            }
            other => RequestError::Malformed(other.to_string()),
        }
    }
}

type Dict = [(Value, Value)];

fn bad(text: String) -> RequestError {
    RequestError::BadRequest(text)
}

fn string(dict: &Dict, name: &str) -> Result<String, RequestError> {
    match field(dict, name) {
        Some(Value::String(s) | Value::StringName(s) | Value::NodePath(s)) => Ok(s.clone()),
        Some(other) => Err(bad(format!(
            "{name:?} must be a String, not {}",
            other.type_name()
        ))),
        None => Err(bad(format!("missing {name:?}"))),
    }
}

fn optional_string(dict: &Dict, name: &str) -> Result<Option<String>, RequestError> {
    match field(dict, name) {
        None | Some(Value::Nil) => Ok(None),
        Some(_) => string(dict, name).map(Some),
    }
}

fn int(dict: &Dict, name: &str) -> Result<Option<i64>, RequestError> {
    match field(dict, name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Int(i)) => Ok(Some(*i)),
        Some(other) => Err(bad(format!(
            "{name:?} must be an int, not {}",
            other.type_name()
        ))),
    }
}

/// A validated absolute node path (`/root/...`).
fn path(dict: &Dict, name: &str, limits: &Limits) -> Result<String, RequestError> {
    let text = string(dict, name)?;
    NodePath::parse(&text, limits).map_err(|e| RequestError::InvalidPath {
        path: text.chars().take(80).collect(),
        reason: e.to_string(),
    })?;
    Ok(text)
}

fn props(dict: &Dict, name: &str, required: bool) -> Result<Vec<Prop>, RequestError> {
    match field(dict, name) {
        None | Some(Value::Nil) if !required => Ok(Vec::new()),
        None => Err(bad(format!("missing {name:?}"))),
        Some(Value::Dictionary(pairs)) => pairs
            .iter()
            .map(|(k, v)| match k {
                Value::String(k) | Value::StringName(k) => Ok(Prop::new(k.clone(), v.clone())),
                other => Err(bad(format!(
                    "property names in {name:?} must be Strings, not {}",
                    other.type_name()
                ))),
            })
            .collect(),
        Some(other) => Err(bad(format!(
            "{name:?} must be a Dictionary, not {}",
            other.type_name()
        ))),
    }
}

fn array<'a>(dict: &'a Dict, name: &str) -> Result<Option<&'a [Value]>, RequestError> {
    match field(dict, name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(bad(format!(
            "{name:?} must be an Array, not {}",
            other.type_name()
        ))),
    }
}

fn dict_of<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<(Value, Value)>, RequestError> {
    match value {
        Value::Dictionary(d) => Ok(d),
        other => Err(bad(format!(
            "{what} must be a Dictionary, not {}",
            other.type_name()
        ))),
    }
}

/// One write op (`create`, `set`, …) from its dictionary.
fn op(op: &str, d: &Dict, limits: &Limits) -> Result<Op, RequestError> {
    Ok(match op {
        "create" => Op::Create {
            parent: path(d, "parent", limits)?,
            name: string(d, "name")?,
            class: string(d, "class")?,
            props: props(d, "props", false)?,
        },
        "set" => Op::Set {
            path: path(d, "path", limits)?,
            props: props(d, "props", true)?,
        },
        "delete" => Op::Delete {
            path: path(d, "path", limits)?,
        },
        "rename" => Op::Rename {
            path: path(d, "path", limits)?,
            new_name: string(d, "name")?,
        },
        "move" => Op::Move {
            path: path(d, "path", limits)?,
            new_parent: path(d, "parent", limits)?,
            index: match int(d, "index")? {
                None => None,
                Some(i) => {
                    Some(u32::try_from(i).map_err(|_| bad(format!("index {i} is out of range")))?)
                }
            },
        },
        "emit" => Op::Emit {
            path: path(d, "path", limits)?,
            signal: string(d, "signal")?,
            args: array(d, "args")?.map(<[Value]>::to_vec).unwrap_or_default(),
        },
        other => return Err(RequestError::UnknownOp(other.to_owned())),
    })
}

fn precondition(value: &Value, limits: &Limits) -> Result<Precondition, RequestError> {
    let d = dict_of(value, "each expect item")?;
    let path = path(d, "path", limits)?;
    let exists = match field(d, "exists") {
        None | Some(Value::Nil) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(bad(format!(
                "\"exists\" must be a bool, not {}",
                other.type_name()
            )))
        }
    };
    let expect = match (optional_string(d, "prop")?, exists) {
        (Some(prop), None | Some(true)) => Expect::PropEquals {
            prop,
            value: field(d, "value").cloned().unwrap_or(Value::Nil),
        },
        (Some(_), Some(false)) => {
            return Err(bad(
                "an expect item with \"prop\" cannot say exists: false".into()
            ))
        }
        (None, Some(false)) => Expect::Absent,
        (None, _) => Expect::Exists,
    };
    Ok(Precondition { path, expect })
}

/// Parses one decoded message. Returns the request id when there is one, so that even a
/// refused request is answered under its id.
pub fn parse(message: &Value, limits: &Limits) -> (Option<i64>, Result<Request, RequestError>) {
    let Value::Dictionary(d) = message else {
        let error = bad(format!(
            "a request is a Dictionary, not {}",
            message.type_name()
        ));
        return (None, Err(error));
    };
    let id = match int(d, "id") {
        Ok(Some(id)) => id,
        Ok(None) => return (None, Err(bad("missing \"id\" (an int)".into()))),
        Err(e) => return (None, Err(e)),
    };
    (Some(id), parse_op(d, limits))
}

fn parse_op(d: &Dict, limits: &Limits) -> Result<Request, RequestError> {
    let mut request = parse_kind(d, limits)?;
    if let Some(key) = session(d)? {
        match &mut request {
            Request::Write(txn) => txn.session = Some(key),
            _ => return Err(bad("\"session\" and \"seq\" are for writes only".into())),
        }
    }
    Ok(request)
}

/// The optional exactly-once key of a write: `session` (any int, the client's random id)
/// and `seq` (1, 2, 3… per write), both or neither (`docs/protocol.md`).
fn session(d: &Dict) -> Result<Option<SessionSeq>, RequestError> {
    match (int(d, "session")?, int(d, "seq")?) {
        (None, None) => Ok(None),
        (Some(session), Some(seq)) if seq > 0 => Ok(Some(SessionSeq {
            // A Godot int is an i64; the session is its 64 bits.
            session: session as u64,
            seq: seq as u64,
        })),
        (Some(_), Some(seq)) => Err(bad(format!("\"seq\" must be at least 1, not {seq}"))),
        _ => Err(bad("\"session\" and \"seq\" come together".into())),
    }
}

fn parse_kind(d: &Dict, limits: &Limits) -> Result<Request, RequestError> {
    let name = string(d, "op")?;
    Ok(match name.as_str() {
        "get" => Request::Get {
            path: path(d, "path", limits)?,
            prop: optional_string(d, "prop")?,
        },
        "tree" => Request::Tree {
            path: path(d, "path", limits)?,
        },
        "subscribe" => Request::Subscribe {
            path: path(d, "path", limits)?,
            from: int(d, "from")?,
        },
        "status" => Request::Status,
        "unsubscribe" => Request::Unsubscribe {
            sub: int(d, "sub")?.ok_or_else(|| bad("missing \"sub\"".into()))?,
        },
        "txn" => {
            let items = array(d, "ops")?.ok_or_else(|| bad("missing \"ops\"".into()))?;
            if items.is_empty() {
                return Err(bad("a txn needs at least one op".into()));
            }
            let ops = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let od = dict_of(item, "each op of a txn")?;
                    let kind = string(od, "op")?;
                    op(&kind, od, limits).map_err(|e| match e {
                        RequestError::BadRequest(m) => bad(format!("op {i}: {m}")),
                        other => other,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let expect = array(d, "expect")?
                .unwrap_or_default()
                .iter()
                .map(|item| precondition(item, limits))
                .collect::<Result<Vec<_>, _>>()?;
            Request::Write(Txn {
                expect,
                ops,
                session: None,
            })
        }
        other => Request::Write(Txn::single(op(other, d, limits)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn request(pairs: &[(&str, Value)]) -> Value {
        Value::Dictionary(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
    }

    fn parsed(pairs: &[(&str, Value)]) -> Result<Request, RequestError> {
        parse(&request(pairs), &Limits::default()).1
    }

    #[test]
    fn every_write_op_parses() {
        let create = parsed(&[
            ("id", Value::Int(1)),
            ("op", s("create")),
            ("parent", Value::NodePath("/root".into())),
            ("name", s("Player")),
            ("class", s("Node2D")),
            ("props", Value::Dictionary(vec![(s("hp"), Value::Int(100))])),
        ]);
        assert_eq!(
            create,
            Ok(Request::Write(Txn::single(Op::Create {
                parent: "/root".into(),
                name: "Player".into(),
                class: "Node2D".into(),
                props: vec![Prop::new("hp", Value::Int(100))],
            })))
        );
        let mv = parsed(&[
            ("id", Value::Int(2)),
            ("op", s("move")),
            ("path", s("/root/A")),
            ("parent", s("/root/B")),
            ("index", Value::Int(0)),
        ]);
        assert!(
            matches!(mv, Ok(Request::Write(t)) if matches!(t.ops[0], Op::Move { index: Some(0), .. }))
        );
    }

    #[test]
    fn a_txn_with_expectations_parses() {
        let op = request(&[("op", s("delete")), ("path", s("/root/A"))]);
        let expect = request(&[("path", s("/root/B")), ("exists", Value::Bool(false))]);
        let txn = parsed(&[
            ("id", Value::Int(3)),
            ("op", s("txn")),
            ("ops", Value::Array(vec![op])),
            ("expect", Value::Array(vec![expect])),
        ]);
        let Ok(Request::Write(txn)) = txn else {
            panic!("{txn:?}")
        };
        assert_eq!(txn.ops.len(), 1);
        assert_eq!(txn.expect[0].expect, Expect::Absent);
    }

    #[test]
    fn bad_input_gets_the_right_code() {
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (vec![("op", s("get"))], "bad_request"),
            (vec![("id", s("x")), ("op", s("get"))], "bad_request"),
            (
                vec![("id", Value::Int(1)), ("op", s("explode"))],
                "unknown_op",
            ),
            (
                vec![
                    ("id", Value::Int(1)),
                    ("op", s("get")),
                    ("path", s("root/x")),
                ],
                "invalid_path",
            ),
            (
                vec![
                    ("id", Value::Int(1)),
                    ("op", s("set")),
                    ("path", s("/root")),
                ],
                "bad_request",
            ),
            (
                vec![
                    ("id", Value::Int(1)),
                    ("op", s("set")),
                    ("path", s("/root")),
                    ("props", Value::Int(3)),
                ],
                "bad_request",
            ),
            (
                vec![
                    ("id", Value::Int(1)),
                    ("op", s("txn")),
                    ("ops", Value::Array(vec![])),
                ],
                "bad_request",
            ),
        ];
        for (pairs, code) in cases {
            let result = parsed(&pairs);
            assert_eq!(
                result.as_ref().err().map(RequestError::code),
                Some(code),
                "{pairs:?} → {result:?}"
            );
        }
        assert_eq!(parse(&Value::Int(4), &Limits::default()).0, None);
    }

    #[test]
    fn unstorable_values_are_invalid_value_and_garbage_is_malformed() {
        use treesync_core::codec::{decode, GodotVersion};
        // Type ids: Object 24, Callable 25 (Godot 4); 255 is no type at all.
        for (bytes, code) in [
            ([0x18, 0, 0, 0], "invalid_value"),
            ([0x19, 0, 0, 0], "invalid_value"),
            ([0xff, 0, 0, 0], "malformed"),
        ] {
            let e = decode(&bytes, GodotVersion::V4).expect_err("refused");
            assert_eq!(RequestError::from(e).code(), code, "{bytes:?}");
        }
    }

    #[test]
    fn a_write_carries_its_session_and_bad_sessions_are_bad_requests() {
        let set = |extra: &[(&str, Value)]| {
            let mut pairs = vec![
                ("id", Value::Int(1)),
                ("op", s("set")),
                ("path", s("/root")),
                ("props", Value::Dictionary(vec![(s("hp"), Value::Int(1))])),
            ];
            pairs.extend_from_slice(extra);
            parsed(&pairs)
        };
        let Ok(Request::Write(txn)) = set(&[("session", Value::Int(-3)), ("seq", Value::Int(2))])
        else {
            panic!("a write with a session parses")
        };
        let expected = SessionSeq {
            session: (-3i64) as u64,
            seq: 2,
        };
        assert_eq!(txn.session, Some(expected));
        for extra in [
            vec![("session", Value::Int(1))],
            vec![("seq", Value::Int(1))],
            vec![("session", Value::Int(1)), ("seq", Value::Int(0))],
            vec![("session", s("x")), ("seq", Value::Int(1))],
        ] {
            let result = set(&extra);
            assert_eq!(
                result.as_ref().err().map(RequestError::code),
                Some("bad_request"),
                "{extra:?} → {result:?}"
            );
        }
        let read = parsed(&[
            ("id", Value::Int(1)),
            ("op", s("get")),
            ("path", s("/root")),
            ("session", Value::Int(1)),
            ("seq", Value::Int(1)),
        ]);
        assert_eq!(read.err().map(|e| e.code()), Some("bad_request"));
    }

    #[test]
    fn a_refused_request_keeps_its_id() {
        let (id, result) = parse(
            &request(&[("id", Value::Int(9)), ("op", s("nope"))]),
            &Limits::default(),
        );
        assert_eq!(id, Some(9));
        assert!(result.is_err());
    }
}
