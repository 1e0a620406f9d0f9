//! Errors of the tree state machine: expected rejections of invalid ops, never bugs.

use thiserror::Error;

use crate::limits::ValueLimitError;
use crate::path::PathError;

/// Why an op or transaction was rejected. The tree is unchanged whenever one is returned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeError {
    #[error("invalid path: {0}")]
    Path(#[from] PathError),
    #[error("no node at {path}")]
    NotFound { path: String },
    #[error("{parent} already has a child named {name:?}")]
    NameTaken { parent: String, name: String },
    #[error("the root node cannot be {action}")]
    RootIsFixed { action: &'static str },
    #[error("cannot move {path} below itself ({new_parent})")]
    Cycle { path: String, new_parent: String },
    #[error("index {index} is past the end of {parent}'s {len} children")]
    IndexOutOfRange {
        parent: String,
        index: u32,
        len: usize,
    },
    #[error("invalid class name {class:?}: must be an identifier")]
    InvalidClass { class: String },
    #[error("invalid property name {name:?}")]
    InvalidProperty { name: String },
    #[error("invalid signal name {name:?}: must be an identifier")]
    InvalidSignal { name: String },
    #[error("property {prop:?}: {source}")]
    Value {
        prop: String,
        source: ValueLimitError,
    },
    #[error("{path} would have {count} properties; the limit is {max}")]
    TooManyProperties {
        path: String,
        count: usize,
        max: usize,
    },
    #[error("{path} would have {count} children; the limit is {max}")]
    TooManyChildren {
        path: String,
        count: usize,
        max: usize,
    },
    #[error("the tree would have {count} nodes; the limit is {max}")]
    TooManyNodes { count: usize, max: usize },
    #[error("transaction has {count} {what}; the limit is {max}")]
    TxnTooLarge {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("precondition {index} on {path} does not hold")]
    PreconditionFailed { index: usize, path: String },
    #[error("op {index} ({op}): {source}")]
    InTxn {
        index: usize,
        op: &'static str,
        source: Box<TreeError>,
    },
    /// A rejection another server made, forwarded here (`forward`): its code and message.
    #[error("{message}")]
    Remote { code: &'static str, message: String },
}

/// Every code `TreeError::code` gives (a forwarded error's code is one of these).
pub const TREE_ERROR_CODES: [&str; 16] = [
    "invalid_path",
    "not_found",
    "name_taken",
    "root_is_fixed",
    "cycle",
    "index_out_of_range",
    "invalid_class",
    "invalid_property",
    "invalid_signal",
    "too_large",
    "too_many_properties",
    "too_many_children",
    "too_many_nodes",
    "precondition_failed",
    "rejected",
    "malformed",
];

impl TreeError {
    /// A stable, machine-readable code for clients (`docs/protocol.md`).
    pub fn code(&self) -> &'static str {
        match self {
            TreeError::Path(_) => "invalid_path",
            TreeError::NotFound { .. } => "not_found",
            TreeError::NameTaken { .. } => "name_taken",
            TreeError::RootIsFixed { .. } => "root_is_fixed",
            TreeError::Cycle { .. } => "cycle",
            TreeError::IndexOutOfRange { .. } => "index_out_of_range",
            TreeError::InvalidClass { .. } => "invalid_class",
            TreeError::InvalidProperty { .. } => "invalid_property",
            TreeError::InvalidSignal { .. } => "invalid_signal",
            TreeError::Value { source, .. } => value_code(source),
            TreeError::TooManyProperties { .. } => "too_many_properties",
            TreeError::TooManyChildren { .. } => "too_many_children",
            TreeError::TooManyNodes { .. } => "too_many_nodes",
            TreeError::TxnTooLarge { .. } => "too_large",
            TreeError::PreconditionFailed { .. } => "precondition_failed",
            TreeError::InTxn { source, .. } => source.code(),
            TreeError::Remote { code, .. } => code,
        }
    }
}

/// The code of a refused value. Every `ValueLimitError` is a size or depth limit, which
/// clients see as `too_large` like an oversized message or transaction (`docs/protocol.md`);
/// `invalid_value` is for values that are wrong whatever their size. The match is
/// exhaustive so that a new kind of refusal has to choose.
fn value_code(error: &ValueLimitError) -> &'static str {
    match error {
        ValueLimitError::StringTooLong { .. }
        | ValueLimitError::ArrayTooLong { .. }
        | ValueLimitError::TooDeep { .. }
        | ValueLimitError::TooLarge { .. } => "too_large",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::value::Value;

    fn nested(depth: usize) -> Value {
        (1..depth).fold(Value::Array(vec![]), |inner, _| Value::Array(vec![inner]))
    }

    /// The code a client sees for `value` as a property, alone and inside a transaction.
    fn codes(value: &Value) -> (&'static str, &'static str) {
        let source = Limits::default().check_value(value).expect_err("refused");
        let alone = TreeError::Value {
            prop: "p".into(),
            source,
        };
        let in_txn = TreeError::InTxn {
            index: 0,
            op: "set",
            source: Box::new(alone.clone()),
        };
        (alone.code(), in_txn.code())
    }

    #[test]
    fn every_oversized_value_is_too_large() {
        let limits = Limits::default();
        assert_eq!(
            limits.value_depth_max, 32,
            "the cases below are one past the defaults"
        );
        assert!(limits.check_value(&nested(32)).is_ok());
        // 5 × (8-byte header + 60,000 bytes) + the Array's 8: 300,048 encoded bytes, each
        // part within the array limit.
        let parts = Value::Array(vec![Value::PackedByteArray(vec![0; 60_000]); 5]);
        assert_eq!(crate::codec::encoded_len_v4(&parts), 300_048);
        let cases = [
            ("nesting 33 deep", nested(33)),
            ("a 65,537-byte String", Value::String("x".repeat(65_537))),
            (
                "a 65,537-byte StringName",
                Value::StringName("x".repeat(65_537)),
            ),
            (
                "a 65,537-element PackedByteArray",
                Value::PackedByteArray(vec![0; 65_537]),
            ),
            (
                "a 65,537-element Array",
                Value::Array(vec![Value::Nil; 65_537]),
            ),
            ("a 300,048-byte value", parts),
        ];
        for (what, value) in cases {
            assert_eq!(codes(&value), ("too_large", "too_large"), "{what}");
        }
    }
}
