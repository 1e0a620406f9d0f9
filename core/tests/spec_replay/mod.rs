//! Replays the paths `specs/gen_tests.py` generated from a spec's TLC state graph on an
//! implementation, and compares the implementation's state with the spec's after every step
//! (MongoDB's "eXtreme modelling": test cases generated from the model).
//!
//! A data file (`spec_paths/*.txt`, see its header) holds the spec's constants, its initial
//! state and the paths; each step names an action with its parameters and the variables it
//! changes. Parsing rebuilds the whole expected state after every step, and the replay
//! compares every variable, so an implementation that changes what the spec leaves alone is
//! caught as surely as one that computes a wrong value.
//!
//! # Invariants
//! - Every path is replayed on a fresh implementation, checked against the initial state
//!   before its first step (reported as step 0).
//! - The first step after which the projected implementation state differs from the spec's,
//!   or whose outcome the implementation contradicts, ends the replay with a [`Mismatch`]
//!   naming the path, the step, the action and every differing variable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A spec state in the data files' normalised form: variable → value text (`l` →
/// `f:0,p1:1,p2:0`). Values are compared as text, so a projection must normalise the way
/// the generator does (keys and set elements sorted).
pub type SpecState = BTreeMap<String, String>;

/// An implementation driven by a spec's actions.
pub trait Implementation {
    /// Takes one step, named as the data file names it (`Send p1 p2`). `Err(why)` when the
    /// implementation's answer contradicts the step: it refused a step the spec takes, or
    /// took one the spec refuses.
    fn step(&mut self, action: &str) -> Result<(), String>;

    /// The implementation's state projected onto the spec's variables.
    fn state(&self) -> SpecState;
}

/// One step of a path: the action with its parameters and the whole spec state after it.
#[derive(Clone, Debug)]
pub struct Step {
    pub action: String,
    pub expected: SpecState,
}

/// One generated test: a path from the initial state. `number` counts from 1, as the file.
#[derive(Clone, Debug)]
pub struct Path {
    pub number: usize,
    pub steps: Vec<Step>,
}

/// A parsed data file.
#[derive(Debug)]
pub struct SpecPaths {
    /// The model's constants (`MaxOffset` → `1`, `Nodes` → `{n1,n2,n3}`).
    pub constants: BTreeMap<String, String>,
    pub init: SpecState,
    pub paths: Vec<Path>,
}

impl SpecPaths {
    /// Parses a data file; panics with the line number on anything malformed (the files are
    /// generated, so that is a generator bug or a hand edit).
    pub fn parse(text: &str) -> SpecPaths {
        let mut spec = SpecPaths {
            constants: BTreeMap::new(),
            init: SpecState::new(),
            paths: Vec::new(),
        };
        for (index, line) in text.lines().enumerate() {
            let at = || format!("spec paths line {}: {line:?}", index + 1);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("constants ") {
                spec.constants = assignments(rest).unwrap_or_else(|| panic!("{}", at()));
            } else if let Some(rest) = line.strip_prefix("init ") {
                spec.init = assignments(rest).unwrap_or_else(|| panic!("{}", at()));
            } else if let Some(rest) = line.strip_prefix("path ") {
                let path = spec.start_path(rest).unwrap_or_else(|| panic!("{}", at()));
                spec.paths.push(path);
            } else {
                let (action, changes) = line
                    .split_once(" =>")
                    .unwrap_or_else(|| panic!("{}: a step needs ` => `", at()));
                let changes = assignments(changes.trim()).unwrap_or_else(|| panic!("{}", at()));
                let mut expected = match spec.paths.last().and_then(|p| p.steps.last()) {
                    Some(previous) => previous.expected.clone(),
                    None => spec.init.clone(),
                };
                for (variable, value) in changes {
                    let known = expected.insert(variable.clone(), value).is_some();
                    assert!(known, "{}: {variable} is not a variable of init", at());
                }
                let path = spec.paths.last_mut().expect("a step follows a `path` line");
                path.steps.push(Step {
                    action: action.to_owned(),
                    expected,
                });
            }
        }
        assert!(!spec.init.is_empty(), "spec paths have an `init` line");
        spec
    }

    /// `N` or `N from M:K` (the first K steps of path M, then the steps that follow).
    fn start_path(&self, head: &str) -> Option<Path> {
        let (number, shared) = match head.split_once(" from ") {
            None => (head, None),
            Some((number, shared)) => (number, Some(shared.split_once(':')?)),
        };
        let number: usize = number.parse().ok()?;
        if number != self.paths.len() + 1 {
            return None;
        }
        let steps = match shared {
            None => Vec::new(),
            Some((from, count)) => {
                let from: usize = from.parse().ok()?;
                let count: usize = count.parse().ok()?;
                self.paths
                    .get(from.checked_sub(1)?)?
                    .steps
                    .get(..count)?
                    .to_vec()
            }
        };
        Some(Path { number, steps })
    }

    /// Steps in all paths (prefixes shared in the file count once per path here).
    pub fn step_count(&self) -> usize {
        self.paths.iter().map(|p| p.steps.len()).sum()
    }

    /// Distinct spec states the paths visit, the initial one included.
    pub fn state_count(&self) -> usize {
        let steps = self.paths.iter().flat_map(|p| &p.steps);
        let states: BTreeSet<&SpecState> = steps.map(|s| &s.expected).collect();
        states.len() + usize::from(!states.contains(&self.init))
    }

    /// A constant of the model, parsed.
    pub fn constant<T: std::str::FromStr>(&self, name: &str) -> T {
        let text = self
            .constants
            .get(name)
            .unwrap_or_else(|| panic!("the spec paths have no constant {name}"));
        text.parse()
            .unwrap_or_else(|_| panic!("constant {name} = {text} does not parse"))
    }

    /// A set-valued constant (`{p1,p2}`) as its elements.
    pub fn constant_set(&self, name: &str) -> Vec<String> {
        let text: String = self.constant(name);
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or_else(|| panic!("constant {name} = {text} is not a set"));
        inner
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `a=1 b=x,y` as a map; None when a token is not `name=value`.
fn assignments(text: &str) -> Option<BTreeMap<String, String>> {
    text.split(' ')
        .filter(|token| !token.is_empty())
        .map(|token| {
            let (name, value) = token.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// One variable whose value differs between the spec and the implementation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub variable: String,
    pub spec: String,
    pub implementation: String,
}

/// The first step where the implementation disagrees with the spec.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub path: usize,
    /// 1 for the first step of the path; 0 for the initial state.
    pub step: usize,
    pub action: String,
    /// The implementation's contradicting answer to the step, if it gave one.
    pub refused: Option<String>,
    pub differences: Vec<Difference>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path {} step {} ({}):",
            self.path, self.step, self.action
        )?;
        if let Some(why) = &self.refused {
            write!(f, "\n  outcome: {why}")?;
        }
        for d in &self.differences {
            let (variable, spec, implementation) = (&d.variable, &d.spec, &d.implementation);
            write!(
                f,
                "\n  {variable}: spec {spec}, implementation {implementation}"
            )?;
        }
        Ok(())
    }
}

/// What a whole replay covered.
#[derive(Clone, Copy, Debug)]
pub struct Replayed {
    pub paths: usize,
    pub steps: usize,
    pub states: usize,
}

/// Replays every path on a fresh implementation from `fresh`; the first disagreement ends it.
pub fn replay<I: Implementation>(
    spec: &SpecPaths,
    mut fresh: impl FnMut() -> I,
) -> Result<Replayed, Mismatch> {
    for path in &spec.paths {
        let mut implementation = fresh();
        compare(path.number, 0, "init", None, &spec.init, &implementation)?;
        for (index, step) in path.steps.iter().enumerate() {
            let refused = implementation.step(&step.action).err();
            let number = index + 1;
            compare(
                path.number,
                number,
                &step.action,
                refused,
                &step.expected,
                &implementation,
            )?;
        }
    }
    Ok(Replayed {
        paths: spec.paths.len(),
        steps: spec.step_count(),
        states: spec.state_count(),
    })
}

fn compare(
    path: usize,
    step: usize,
    action: &str,
    refused: Option<String>,
    expected: &SpecState,
    implementation: &impl Implementation,
) -> Result<(), Mismatch> {
    let actual = implementation.state();
    let variables: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let absent = "(absent)".to_owned();
    let differences: Vec<Difference> = variables
        .into_iter()
        .filter(|v| expected.get(*v) != actual.get(*v))
        .map(|v| Difference {
            variable: v.clone(),
            spec: expected.get(v).unwrap_or(&absent).clone(),
            implementation: actual.get(v).unwrap_or(&absent).clone(),
        })
        .collect();
    if refused.is_none() && differences.is_empty() {
        return Ok(());
    }
    Err(Mismatch {
        path,
        step,
        action: action.to_owned(),
        refused,
        differences,
    })
}
