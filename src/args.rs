//! The little flag parsing the subcommands share (no CLI dependency needed for a handful of
//! `--flag value` pairs).

/// Parses the value following `flag`, naming the flag in the error.
pub fn value<T: std::str::FromStr>(flag: &str, raw: Option<&String>) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let raw = raw.ok_or_else(|| format!("{flag} needs a value"))?;
    raw.parse().map_err(|e| format!("{flag} {raw:?}: {e}"))
}
