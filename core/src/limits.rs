//! Size limits enforced at the edge and by the tree state machine.
//!
//! Every limit is a plain field (no invariant ties them together beyond being non-zero, which
//! [`Limits::validate`] checks). All replicas of a shard must run with the same limits, or
//! they could disagree on which operation is valid: limits are part of the shard's config.

use thiserror::Error;

use crate::value::Value;

/// Limits on names, paths, values and transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest node, property, class or signal name, in UTF-8 bytes.
    pub name_bytes_max: usize,
    /// Longest node path, in UTF-8 bytes.
    pub path_bytes_max: usize,
    /// Deepest node path, in segments (`/root` is 1).
    pub path_depth_max: usize,
    /// Longest String / StringName / NodePath value, in UTF-8 bytes.
    pub string_bytes_max: usize,
    /// Most elements in one Array, Dictionary or packed array.
    pub array_len_max: usize,
    /// Deepest nesting of Arrays and Dictionaries.
    pub value_depth_max: usize,
    /// Largest single value, measured as its Godot 4 encoding.
    pub value_bytes_max: usize,
    /// Most properties on one node.
    pub props_per_node_max: usize,
    /// Most children under one node.
    pub children_per_node_max: usize,
    /// Most nodes in one tree (one shard).
    pub nodes_max: usize,
    /// Most operations (and, separately, preconditions) in one transaction.
    pub txn_ops_max: usize,
    /// Largest client message or encoded operation, in bytes.
    pub message_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            name_bytes_max: 255,
            path_bytes_max: 4096,
            path_depth_max: 64,
            string_bytes_max: 64 * 1024,
            array_len_max: 64 * 1024,
            value_depth_max: 32,
            value_bytes_max: 256 * 1024,
            props_per_node_max: 1024,
            children_per_node_max: 100_000,
            nodes_max: 10_000_000,
            txn_ops_max: 1024,
            message_bytes_max: 1024 * 1024,
        }
    }
}

/// Why a value was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueLimitError {
    #[error("string of {bytes} bytes exceeds the limit of {max}")]
    StringTooLong { bytes: usize, max: usize },
    #[error("{kind} of {len} elements exceeds the limit of {max}")]
    ArrayTooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("values nested {depth} deep exceed the limit of {max}")]
    TooDeep { depth: usize, max: usize },
    #[error("value of {bytes} encoded bytes exceeds the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
}

impl Limits {
    /// Checks that every limit is usable (non-zero).
    pub fn validate(&self) -> Result<(), &'static str> {
        let fields = [
            (self.name_bytes_max, "name_bytes_max"),
            (self.path_bytes_max, "path_bytes_max"),
            (self.path_depth_max, "path_depth_max"),
            (self.string_bytes_max, "string_bytes_max"),
            (self.array_len_max, "array_len_max"),
            (self.value_depth_max, "value_depth_max"),
            (self.value_bytes_max, "value_bytes_max"),
            (self.props_per_node_max, "props_per_node_max"),
            (self.children_per_node_max, "children_per_node_max"),
            (self.nodes_max, "nodes_max"),
            (self.txn_ops_max, "txn_ops_max"),
            (self.message_bytes_max, "message_bytes_max"),
        ];
        match fields.iter().find(|(v, _)| *v == 0) {
            Some((_, name)) => Err(name),
            None => Ok(()),
        }
    }

    /// Checks a value against the string, array, depth and size limits.
    pub fn check_value(&self, value: &Value) -> Result<(), ValueLimitError> {
        self.check_value_shape(value, 1)?;
        let bytes = crate::codec::encoded_len_v4(value);
        if bytes > self.value_bytes_max {
            return Err(ValueLimitError::TooLarge {
                bytes,
                max: self.value_bytes_max,
            });
        }
        Ok(())
    }

    fn check_value_shape(&self, value: &Value, depth: usize) -> Result<(), ValueLimitError> {
        if depth > self.value_depth_max {
            return Err(ValueLimitError::TooDeep {
                depth,
                max: self.value_depth_max,
            });
        }
        let len = match value {
            Value::String(s) | Value::StringName(s) | Value::NodePath(s) => {
                return self.check_string(s);
            }
            Value::Array(items) => {
                self.check_len(value, items.len())?;
                return items
                    .iter()
                    .try_for_each(|v| self.check_value_shape(v, depth + 1));
            }
            Value::Dictionary(pairs) => {
                self.check_len(value, pairs.len())?;
                return pairs.iter().try_for_each(|(k, v)| {
                    self.check_value_shape(k, depth + 1)?;
                    self.check_value_shape(v, depth + 1)
                });
            }
            Value::PackedStringArray(items) => {
                self.check_len(value, items.len())?;
                return items.iter().try_for_each(|s| self.check_string(s));
            }
            Value::PackedByteArray(v) => v.len(),
            Value::PackedInt32Array(v) => v.len(),
            Value::PackedInt64Array(v) => v.len(),
            Value::PackedFloat32Array(v) => v.len(),
            Value::PackedFloat64Array(v) => v.len(),
            Value::PackedVector2Array(v) => v.len(),
            Value::PackedVector3Array(v) => v.len(),
            Value::PackedColorArray(v) | Value::PackedVector4Array(v) => v.len(),
            _ => 0,
        };
        self.check_len(value, len)
    }

    fn check_len(&self, value: &Value, len: usize) -> Result<(), ValueLimitError> {
        if len > self.array_len_max {
            let kind = value.type_name();
            return Err(ValueLimitError::ArrayTooLong {
                kind,
                len,
                max: self.array_len_max,
            });
        }
        Ok(())
    }

    fn check_string(&self, s: &str) -> Result<(), ValueLimitError> {
        if s.len() > self.string_bytes_max {
            return Err(ValueLimitError::StringTooLong {
                bytes: s.len(),
                max: self.string_bytes_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let zero = Limits {
            nodes_max: 0,
            ..Limits::default()
        };
        assert_eq!(zero.validate(), Err("nodes_max"));
    }

    #[test]
    fn check_value_enforces_each_limit() {
        let limits = Limits {
            string_bytes_max: 3,
            array_len_max: 2,
            value_depth_max: 2,
            ..Limits::default()
        };
        assert!(limits.check_value(&Value::String("abc".into())).is_ok());
        assert!(matches!(
            limits.check_value(&Value::String("abcd".into())),
            Err(ValueLimitError::StringTooLong { bytes: 4, max: 3 })
        ));
        assert!(matches!(
            limits.check_value(&Value::PackedInt32Array(vec![1, 2, 3])),
            Err(ValueLimitError::ArrayTooLong { len: 3, .. })
        ));
        let deep = Value::Array(vec![Value::Array(vec![Value::Array(vec![])])]);
        assert!(matches!(
            limits.check_value(&deep),
            Err(ValueLimitError::TooDeep { depth: 3, .. })
        ));
        let small = Limits {
            value_bytes_max: 8,
            ..Limits::default()
        };
        assert!(small.check_value(&Value::Int(1)).is_ok());
        assert!(matches!(
            small.check_value(&Value::Int(i64::MAX)),
            Err(ValueLimitError::TooLarge { bytes: 12, max: 8 })
        ));
    }
}
