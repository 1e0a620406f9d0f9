//! A node's properties: a vector sorted by name, with the part of `BTreeMap`'s API the tree
//! uses.
//!
//! Why not a `BTreeMap`: a node holds a handful of properties, and a B-tree allocates an
//! 11-slot leaf for even one (~800 bytes with `Value`s): at a million nodes that was most
//! of a replica's memory (`scripts/bench-memory`, `docs/benchmarks.md`). Lookups are a
//! binary search; inserts shift at most `Limits::props_per_node_max` entries.
//!
//! # Invariant
//! Names are strictly increasing (so unique): every constructor and mutation keeps them
//! sorted (`debug_assert!`ed after each change).

use crate::value::Value;

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct PropMap(Vec<(String, Value)>);

impl PropMap {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    fn sorted(&self) -> bool {
        self.0.windows(2).all(|w| w[0].0 < w[1].0)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.find(name).ok().map(|at| &self.0[at].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name`; returns the value it replaced.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        let old = match self.find(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (name, value));
                None
            }
        };
        debug_assert!(self.sorted());
        old
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.find(name).ok().map(|at| self.0.remove(at).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// As a `BTreeMap` collects: sorted by name, a later duplicate replacing an earlier one.
impl FromIterator<(String, Value)> for PropMap {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> PropMap {
        let mut props: Vec<(String, Value)> = iter.into_iter().collect();
        // Stable: equal names keep their order, so the last of each run is the latest.
        props.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, Value)> = Vec::with_capacity(props.len());
        for (name, value) in props {
            match out.last_mut() {
                Some(last) if last.0 == name => last.1 = value,
                _ => out.push((name, value)),
            }
        }
        out.shrink_to_fit();
        let map = PropMap(out);
        debug_assert!(map.sorted());
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map() {
        let mut m: PropMap = [("b", 1), ("a", 2), ("b", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::Int(v)))
            .collect();
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("b"), Some(&Value::Int(3)), "the later duplicate wins");
        assert_eq!(m.insert("c".into(), Value::Int(4)), None);
        assert_eq!(m.insert("a".into(), Value::Int(5)), Some(Value::Int(2)));
        assert_eq!(m.remove("b"), Some(Value::Int(3)));
        assert_eq!(m.remove("b"), None);
        assert!(m.contains_key("c") && !m.contains_key("b"));
        let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }
}
