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
}

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
            TreeError::Value { .. } => "invalid_value",
            TreeError::TooManyProperties { .. } => "too_many_properties",
            TreeError::TooManyChildren { .. } => "too_many_children",
            TreeError::TooManyNodes { .. } => "too_many_nodes",
            TreeError::TxnTooLarge { .. } => "too_large",
            TreeError::PreconditionFailed { .. } => "precondition_failed",
            TreeError::InTxn { source, .. } => source.code(),
        }
    }
}
