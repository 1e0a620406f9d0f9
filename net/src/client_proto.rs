//! The minimal client protocol: one request frame, one response frame, in order.
//!
//! Requests (`FrameHeader.tag` = kind): `WRITE` (body: a `core::wire` transaction frame),
//! `READ` (linearizable; body: `path` or `path\nprop`), `STATUS` (empty body). Kind 3 was
//! a non-linearizable local read, reachable by any client of a production server; it is
//! retired (a linearizable read sent to one server proves that server applied the value).
//! Responses (`tag` = status): `WRITTEN` (index u64, term u64, HLC u64), `VALUE` (1 byte present, then
//! the Godot 4 encoding), `NOT_LEADER` (leader id u64, 0 = unknown), `ERROR` (UTF-8 text),
//! `STATUS_TEXT` (UTF-8 text: one line per shard), `REJECTED` (`code\nmessage`: the request
//! was refused and changed nothing; codes as in `docs/protocol.md`).

use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::codec::{self, GodotVersion};
use treesync_core::Value;

pub const WRITE: u32 = 1;
pub const READ: u32 = 2;
pub const STATUS: u32 = 4;

pub const WRITTEN: u32 = 0;
pub const VALUE: u32 = 1;
pub const NOT_LEADER: u32 = 2;
pub const ERROR: u32 = 3;
pub const STATUS_TEXT: u32 = 4;
pub const REJECTED: u32 = 5;

/// A decoded response.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Written {
        index: u64,
        term: u64,
        hlc: u64,
    },
    Value(Option<Value>),
    NotLeader {
        leader: Option<u64>,
    },
    /// The server could not handle the request (stopped core, malformed frame).
    Error(String),
    /// The request was refused and changed nothing: a typed `code` and a message.
    Rejected {
        code: String,
        message: String,
    },
    Status(String),
}

fn u64_at(body: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
}

impl From<Outcome> for Response {
    /// The framed protocol's view of an outcome: its byte edge, where codes are produced.
    fn from(outcome: Outcome) -> Response {
        match outcome {
            Ok(Answer::Written { index, term, hlc }) => Response::Written {
                index,
                term,
                hlc: hlc.as_u64(),
            },
            Ok(Answer::Value(value)) => Response::Value(value),
            Ok(Answer::Subscribed) => Response::Value(None),
            // Steps pass between coordinators and shards, never to a client.
            Ok(Answer::Step(step)) => Response::rejected("internal", format!("{step:?}")),
            Err(ReplyError::NotLeader { leader }) => Response::NotLeader { leader },
            Err(error) => Response::rejected(error.code(), error.to_string()),
        }
    }
}

impl Response {
    pub fn rejected(code: &str, message: impl Into<String>) -> Response {
        Response::Rejected {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// (status tag, body)
    pub fn encode(&self) -> (u32, Vec<u8>) {
        match self {
            Response::Written { index, term, hlc } => (
                WRITTEN,
                [index.to_le_bytes(), term.to_le_bytes(), hlc.to_le_bytes()].concat(),
            ),
            Response::Value(None) => (VALUE, vec![0]),
            Response::Value(Some(v)) => {
                let mut body = vec![1];
                match codec::encode_into(v, GodotVersion::V4, &mut body) {
                    Ok(()) => (VALUE, body),
                    Err(e) => (ERROR, e.to_string().into_bytes()),
                }
            }
            Response::NotLeader { leader } => {
                (NOT_LEADER, leader.unwrap_or(0).to_le_bytes().to_vec())
            }
            Response::Error(text) => (ERROR, text.clone().into_bytes()),
            Response::Status(text) => (STATUS_TEXT, text.clone().into_bytes()),
            Response::Rejected { code, message } => {
                (REJECTED, format!("{code}\n{message}").into_bytes())
            }
        }
    }

    pub fn decode(status: u32, body: &[u8]) -> Result<Response, String> {
        let malformed = || format!("malformed response (status {status}, {} bytes)", body.len());
        Ok(match status {
            WRITTEN => Response::Written {
                index: u64_at(body, 0).ok_or_else(malformed)?,
                term: u64_at(body, 8).ok_or_else(malformed)?,
                hlc: u64_at(body, 16).ok_or_else(malformed)?,
            },
            VALUE => match body.split_first() {
                Some((0, _)) => Response::Value(None),
                Some((1, bytes)) => Response::Value(Some(
                    codec::decode(bytes, GodotVersion::V4).map_err(|e| e.to_string())?,
                )),
                _ => return Err(malformed()),
            },
            NOT_LEADER => Response::NotLeader {
                leader: u64_at(body, 0).filter(|id| *id != 0),
            },
            ERROR => Response::Error(String::from_utf8_lossy(body).into_owned()),
            STATUS_TEXT => Response::Status(String::from_utf8_lossy(body).into_owned()),
            REJECTED => {
                let text = String::from_utf8_lossy(body);
                let (code, message) = text.split_once('\n').ok_or_else(malformed)?;
                Response::Rejected {
                    code: code.to_owned(),
                    message: message.to_owned(),
                }
            }
            _ => return Err(malformed()),
        })
    }
}

/// Splits a read body into (path, prop).
pub fn parse_read(body: &[u8]) -> Result<(String, Option<String>), String> {
    let text = std::str::from_utf8(body).map_err(|_| "read request is not UTF-8".to_owned())?;
    Ok(match text.split_once('\n') {
        Some((path, prop)) => (path.to_owned(), Some(prop.to_owned())),
        None => (text.to_owned(), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip_and_garbage_is_an_error() {
        for r in [
            Response::Written {
                index: 5,
                term: 2,
                hlc: 7,
            },
            Response::Rejected {
                code: "not_found".into(),
                message: "no node at /root/x".into(),
            },
            Response::Value(None),
            Response::Value(Some(Value::Vector2([1.0, 2.0]))),
            Response::NotLeader { leader: Some(3) },
            Response::NotLeader { leader: None },
            Response::Error("nope".into()),
        ] {
            let (status, body) = r.encode();
            assert_eq!(Response::decode(status, &body), Ok(r));
        }
        assert!(Response::decode(WRITTEN, &[1, 2]).is_err());
        assert!(Response::decode(99, &[]).is_err());
        assert!(Response::decode(VALUE, &[1, 0xff]).is_err());
        assert_eq!(
            parse_read(b"/root\nhp"),
            Ok(("/root".into(), Some("hp".into())))
        );
    }
}
