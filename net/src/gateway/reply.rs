//! Replies as Godot Dictionaries, and chunking of large ones.

use treesync_core::codec::{self, GodotVersion};
use treesync_core::{Op, Value};

use super::Push;

fn key(name: &str) -> Value {
    Value::String(name.to_owned())
}

/// `{id, ok: true, ...fields}`.
pub fn ok_reply(id: i64, fields: Vec<(&str, Value)>) -> Value {
    let mut pairs = vec![(key("id"), Value::Int(id)), (key("ok"), Value::Bool(true))];
    pairs.extend(fields.into_iter().map(|(k, v)| (key(k), v)));
    Value::Dictionary(pairs)
}

/// `{id, ok: false, error, message}`; `id` is left out when the request had none.
pub fn error_reply(id: Option<i64>, code: &str, message: &str) -> Value {
    let mut pairs = Vec::with_capacity(4);
    if let Some(id) = id {
        pairs.push((key("id"), Value::Int(id)));
    }
    pairs.push((key("ok"), Value::Bool(false)));
    pairs.push((key("error"), key(code)));
    pairs.push((key("message"), key(message)));
    Value::Dictionary(pairs)
}

/// An op as a request-shaped Dictionary (`{op: "set", path, props}`…), for change pushes.
pub fn op_value(op: &Op) -> Value {
    let props = |props: &[treesync_core::Prop]| {
        Value::Dictionary(
            props
                .iter()
                .map(|p| (key(&p.name), p.value.clone()))
                .collect(),
        )
    };
    let fields: Vec<(&str, Value)> = match op {
        Op::Create {
            parent,
            name,
            class,
            props: p,
        } => vec![
            ("op", key("create")),
            ("parent", key(parent)),
            ("name", key(name)),
            ("class", key(class)),
            ("props", props(p)),
        ],
        Op::Set { path, props: p } => {
            vec![("op", key("set")), ("path", key(path)), ("props", props(p))]
        }
        Op::Delete { path } => vec![("op", key("delete")), ("path", key(path))],
        Op::Rename { path, new_name } => vec![
            ("op", key("rename")),
            ("path", key(path)),
            ("name", key(new_name)),
        ],
        Op::Move {
            path,
            new_parent,
            index,
        } => {
            let mut f = vec![
                ("op", key("move")),
                ("path", key(path)),
                ("parent", key(new_parent)),
            ];
            if let Some(i) = index {
                f.push(("index", Value::Int(i64::from(*i))));
            }
            f
        }
        Op::Emit { path, signal, args } => vec![
            ("op", key("emit")),
            ("path", key(path)),
            ("signal", key(signal)),
            ("args", Value::Array(args.clone())),
        ],
    };
    Value::Dictionary(fields.into_iter().map(|(k, v)| (key(k), v)).collect())
}

/// `shard` and `index` of a single shard's push; a merged subscription's pushes have
/// neither (their position is the HLC of a `resolved`).
fn log_position(shard: u32, index: u64) -> Vec<(&'static str, Value)> {
    match shard == treesync_core::cut::MERGED_SHARD {
        true => Vec::new(),
        false => vec![
            ("shard", Value::Int(i64::from(shard))),
            ("index", Value::Int(index as i64)),
        ],
    }
}

/// A subscription push as sent: `{sub, event, ...}`.
pub fn push_value(sub: i64, push: &Push) -> Value {
    let int = |v: u64| Value::Int(v as i64);
    let mut fields = vec![(key("sub"), Value::Int(sub))];
    let rest: Vec<(&str, Value)> = match push {
        Push::Snapshot {
            shard,
            tree,
            index,
            hlc,
            resync,
        } => {
            let mut fields = vec![
                ("event", key("snapshot")),
                ("tree", tree.clone().unwrap_or(Value::Nil)),
            ];
            fields.extend(log_position(*shard, *index));
            fields.push(("hlc", int(*hlc)));
            fields.push(("resync", Value::Bool(*resync)));
            fields
        }
        Push::Change {
            shard,
            index,
            hlc,
            txn,
            ops,
        } => {
            let mut fields = vec![("event", key("change"))];
            fields.extend(log_position(*shard, *index));
            fields.push(("hlc", int(*hlc)));
            let txn = txn.map_or(Value::Nil, |t| Value::String(t.to_string()));
            fields.push(("txn", txn));
            fields.push(("ops", Value::Array(ops.iter().map(op_value).collect())));
            fields
        }
        Push::Resolved { hlc } => vec![("event", key("resolved")), ("hlc", int(*hlc))],
    };
    fields.extend(rest.into_iter().map(|(k, v)| (key(k), v)));
    Value::Dictionary(fields)
}

/// Encodes `message`; if it is larger than `split_bytes`, returns it as chunk messages
/// `{<tag>: <tag value>, part, parts, chunk}` (tag: `id` for replies, `sub` for pushes)
/// whose `chunk` PackedByteArrays concatenate to the full encoding.
pub fn chunks(
    message: &Value,
    tag: (&str, i64),
    version: GodotVersion,
    split_bytes: usize,
) -> Result<Vec<Vec<u8>>, codec::EncodeError> {
    let bytes = codec::encode(message, version)?;
    if bytes.len() <= split_bytes {
        return Ok(vec![bytes]);
    }
    // Room for the envelope: 4 small fields and the byte array header.
    let payload = split_bytes.saturating_sub(128).max(1);
    let parts = bytes.len().div_ceil(payload);
    bytes
        .chunks(payload)
        .enumerate()
        .map(|(i, piece)| {
            let envelope = Value::Dictionary(vec![
                (key(tag.0), Value::Int(tag.1)),
                (key("part"), Value::Int(i as i64)),
                (key("parts"), Value::Int(parts as i64)),
                (key("chunk"), Value::PackedByteArray(piece.to_vec())),
            ]);
            let encoded = codec::encode(&envelope, version)?;
            debug_assert!(encoded.len() <= split_bytes, "a chunk fits the split size");
            Ok(encoded)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_replies_are_chunked_below_the_split_size_and_reassemble() {
        let big = ok_reply(
            7,
            vec![(
                "value",
                Value::PackedByteArray((0..200_000u32).map(|i| i as u8).collect()),
            )],
        );
        for version in [GodotVersion::V3, GodotVersion::V4] {
            let parts = chunks(&big, ("id", 7), version, 60 * 1024).expect("encodable");
            assert!(parts.len() >= 4, "{} parts", parts.len());
            let mut whole = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                assert!(part.len() <= 60 * 1024);
                let Ok(Value::Dictionary(fields)) = codec::decode(part, version) else {
                    panic!("part {i} decodes")
                };
                assert_eq!(fields[1].1, Value::Int(i as i64));
                let Value::PackedByteArray(bytes) = &fields[3].1 else {
                    panic!("chunk bytes")
                };
                whole.extend_from_slice(bytes);
            }
            assert_eq!(codec::decode(&whole, version), Ok(big.clone()));
        }
        let small = ok_reply(1, vec![]);
        assert_eq!(
            chunks(&small, ("id", 1), GodotVersion::V4, 60 * 1024).map(|p| p.len()),
            Ok(1)
        );
    }

    #[test]
    fn pushed_ops_are_valid_requests_for_the_same_op() {
        use treesync_core::{Limits, Prop, Txn};
        let ops = vec![
            Op::Create {
                parent: "/root".into(),
                name: "A".into(),
                class: "Node2D".into(),
                props: vec![Prop::new("p", Value::Vector2([1.0, 2.0]))],
            },
            Op::Set {
                path: "/root/A".into(),
                props: vec![Prop::new("hp", Value::Nil)],
            },
            Op::Delete {
                path: "/root/A".into(),
            },
            Op::Rename {
                path: "/root/A".into(),
                new_name: "B".into(),
            },
            Op::Move {
                path: "/root/A".into(),
                new_parent: "/root/C".into(),
                index: Some(3),
            },
            Op::Emit {
                path: "/root/A".into(),
                signal: "hit".into(),
                args: vec![Value::Int(5)],
            },
        ];
        for op in ops {
            let Value::Dictionary(mut fields) = op_value(&op) else {
                panic!("a Dictionary")
            };
            fields.push((key("id"), Value::Int(1)));
            let (_, parsed) = super::super::parse(&Value::Dictionary(fields), &Limits::default());
            assert_eq!(parsed, Ok(super::super::Request::Write(Txn::single(op))));
        }
    }
}
