//! `NodePath`: a validated, absolute path to a node in the replicated tree.
//!
//! # Invariants
//! - A `NodePath` is absolute and starts at the root: `/root` or `/root/<name>/…`.
//! - Every segment is a valid node name (see [`validate_name`]): non-empty, at most
//!   `name_bytes_max` bytes, none of Godot's reserved characters `. : @ / " %`, no control
//!   characters.
//! - The whole path is at most `path_bytes_max` bytes and `path_depth_max` segments.
//!
//! Paths are validated once, at the edge; holding a `NodePath` proves it is well formed.

use std::fmt;

use thiserror::Error;

use crate::limits::Limits;

/// Characters Godot forbids in node names.
pub const NAME_FORBIDDEN_CHARS: [char; 6] = ['.', ':', '@', '/', '"', '%'];

/// The root node's name; every path starts with `/root`.
pub const ROOT_NAME: &str = "root";

/// Why a path or name was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    #[error("path {path:?} is not absolute (must start with /root)")]
    NotRooted { path: String },
    #[error("path of {bytes} bytes exceeds the limit of {max}")]
    TooLong { bytes: usize, max: usize },
    #[error("path of {depth} segments exceeds the limit of {max}")]
    TooDeep { depth: usize, max: usize },
    #[error("empty name in path {path:?}")]
    EmptyName { path: String },
    #[error("name {name:?} contains the reserved character {ch:?}")]
    ReservedChar { name: String, ch: char },
    #[error("name {name:?} of {bytes} bytes exceeds the limit of {max}")]
    NameTooLong {
        name: String,
        bytes: usize,
        max: usize,
    },
}

/// Checks one node name against Godot's rules and the limits.
pub fn validate_name(name: &str, limits: &Limits) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::EmptyName {
            path: name.to_owned(),
        });
    }
    if name.len() > limits.name_bytes_max {
        let (bytes, max) = (name.len(), limits.name_bytes_max);
        return Err(PathError::NameTooLong {
            name: truncated(name),
            bytes,
            max,
        });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| NAME_FORBIDDEN_CHARS.contains(c) || c.is_control())
    {
        return Err(PathError::ReservedChar {
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// Names in errors are cut to keep error messages (and replies) small.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A validated absolute node path such as `/root/World/Player1`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePath {
    text: String,
}

impl NodePath {
    /// The root path, `/root`.
    pub fn root() -> NodePath {
        NodePath {
            text: format!("/{ROOT_NAME}"),
        }
    }

    /// Parses and validates a path.
    pub fn parse(text: &str, limits: &Limits) -> Result<NodePath, PathError> {
        if text.len() > limits.path_bytes_max {
            return Err(PathError::TooLong {
                bytes: text.len(),
                max: limits.path_bytes_max,
            });
        }
        let rest = text.strip_prefix('/').ok_or_else(|| PathError::NotRooted {
            path: truncated(text),
        })?;
        let mut depth = 0;
        for (index, name) in rest.split('/').enumerate() {
            if index == 0 && name != ROOT_NAME {
                return Err(PathError::NotRooted {
                    path: truncated(text),
                });
            }
            if name.is_empty() {
                return Err(PathError::EmptyName {
                    path: truncated(text),
                });
            }
            validate_name(name, limits)?;
            depth += 1;
        }
        if depth > limits.path_depth_max {
            return Err(PathError::TooDeep {
                depth,
                max: limits.path_depth_max,
            });
        }
        Ok(NodePath {
            text: text.to_owned(),
        })
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names from the root down, starting with `root`.
    pub fn segments(&self) -> impl Iterator<Item = &str> + Clone {
        self.text[1..].split('/')
    }

    /// Number of segments; `/root` has depth 1.
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.text
            .rsplit('/')
            .next()
            .expect("a NodePath has at least one segment")
    }

    /// The parent path, or `None` for `/root`.
    pub fn parent(&self) -> Option<NodePath> {
        let cut = self.text.rfind('/').expect("a NodePath starts with '/'");
        (cut > 0).then(|| NodePath {
            text: self.text[..cut].to_owned(),
        })
    }

    /// The path of a child of this node; the name must already be valid.
    pub fn child(&self, name: &str, limits: &Limits) -> Result<NodePath, PathError> {
        validate_name(name, limits)?;
        NodePath::parse(&format!("{}/{}", self.text, name), limits)
    }

    /// The prefix made of the first `depth` segments (or the whole path if shorter).
    pub fn prefix(&self, depth: usize) -> &str {
        assert!(depth >= 1, "a prefix has at least the root segment");
        match self.text.match_indices('/').nth(depth) {
            Some((cut, _)) => &self.text[..cut],
            None => &self.text,
        }
    }

    /// True if `self` is `ancestor` or lies below it (segment-wise, not byte-wise).
    pub fn is_within(&self, ancestor: &NodePath) -> bool {
        self.text == ancestor.text
            || (self.text.starts_with(&ancestor.text)
                && self.text.as_bytes()[ancestor.text.len()] == b'/')
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePath({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodePath, PathError> {
        NodePath::parse(text, &Limits::default())
    }

    #[test]
    fn accepts_rooted_paths() {
        let p = parse("/root/World/Player1").expect("valid");
        assert_eq!(p.depth(), 3);
        assert_eq!(p.name(), "Player1");
        assert_eq!(p.parent().expect("has parent").as_str(), "/root/World");
        assert_eq!(parse("/root").expect("valid").parent(), None);
        assert_eq!(
            p.segments().collect::<Vec<_>>(),
            ["root", "World", "Player1"]
        );
        assert!(parse("/root/Ünïcødé 名前").is_ok());
    }

    #[test]
    fn rejects_malformed_paths() {
        assert!(matches!(parse(""), Err(PathError::NotRooted { .. })));
        assert!(matches!(parse("root/a"), Err(PathError::NotRooted { .. })));
        assert!(matches!(parse("/World"), Err(PathError::NotRooted { .. })));
        assert!(matches!(parse("/"), Err(PathError::NotRooted { .. })));
        assert!(matches!(parse("/root/"), Err(PathError::EmptyName { .. })));
        assert!(matches!(
            parse("/root//a"),
            Err(PathError::EmptyName { .. })
        ));
        for bad in [
            "/root/a.b",
            "/root/a:b",
            "/root/a@b",
            "/root/a\"b",
            "/root/a%b",
            "/root/a\nb",
        ] {
            assert!(
                matches!(parse(bad), Err(PathError::ReservedChar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn enforces_length_and_depth_limits() {
        let limits = Limits {
            name_bytes_max: 4,
            path_depth_max: 3,
            path_bytes_max: 20,
            ..Limits::default()
        };
        assert!(NodePath::parse("/root/abcd", &limits).is_ok());
        assert!(matches!(
            NodePath::parse("/root/abcde", &limits),
            Err(PathError::NameTooLong { .. })
        ));
        assert!(matches!(
            NodePath::parse("/root/a/b/c", &limits),
            Err(PathError::TooDeep { depth: 4, .. })
        ));
        assert!(matches!(
            NodePath::parse("/root/abc/abc/abc/abc", &limits),
            Err(PathError::TooLong { .. })
        ));
    }

    proptest::proptest! {
        /// Any string either parses to a path that prints back as itself, or is refused with a
        /// typed error; nothing panics.
        #[test]
        fn random_strings_parse_or_fail_cleanly(text in "(/root)?[/a-z.:@\"%\\x00é]{0,24}") {
            if let Ok(path) = parse(&text) {
                proptest::prop_assert_eq!(path.as_str(), text.as_str());
                proptest::prop_assert_eq!(path.segments().count(), path.depth());
                proptest::prop_assert!(path.parent().is_none_or(|p| path.is_within(&p)));
            }
        }
    }

    #[test]
    fn prefix_and_within_are_segment_wise() {
        let p = parse("/root/World/Player1/Gun").expect("valid");
        assert_eq!(p.prefix(1), "/root");
        assert_eq!(p.prefix(3), "/root/World/Player1");
        assert_eq!(p.prefix(9), "/root/World/Player1/Gun");
        let player = parse("/root/World/Player1").expect("valid");
        let player10 = parse("/root/World/Player10").expect("valid");
        assert!(p.is_within(&player));
        assert!(player.is_within(&player));
        assert!(!player10.is_within(&player));
    }
}
