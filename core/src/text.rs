//! Godot's text syntax for values (`var_to_str` / `str_to_var`), for the CLI and logs:
//! `null`, `true`, `42`, `1.5`, `"text"`, `&"name"`, `NodePath("/root/A")` (or `^"…"`),
//! `Vector2(10, 20)`, `Color(1, 0, 0, 1)`, `[1, "a"]`, `{"k": 1}`, `PackedInt32Array(1, 2)`…
//! Constructors take their components flat, as Godot prints them (`Transform2D` six floats,
//! `PackedVector2Array(x0, y0, x1, y1)`); Godot 3 names (`Quat`, `Transform`, `PoolIntArray`…)
//! are accepted too. `format` ∘ `parse` is the identity on values (floats bit for bit).

use std::fmt::Write as _;

use crate::value::Value;

/// Why a text could not be read as a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {message}")]
pub struct TextError {
    pub at: usize,
    pub message: String,
}

/// Parses one value written in Godot's text syntax.
pub fn parse(text: &str) -> Result<Value, TextError> {
    let mut p = Parser { text, at: 0 };
    let value = p.value(0)?;
    p.skip_space();
    if p.at < text.len() {
        return Err(p.error("unexpected text after the value"));
    }
    Ok(value)
}

/// Nesting limit for arrays and dictionaries in text.
const DEPTH_MAX: usize = 64;

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> TextError {
        TextError {
            at: self.at,
            message: message.to_owned(),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), TextError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {c:?}")))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, TextError> {
        if depth > DEPTH_MAX {
            return Err(self.error("nested too deeply"));
        }
        self.skip_space();
        let rest = self.rest();
        let first = rest
            .chars()
            .next()
            .ok_or_else(|| self.error("expected a value"))?;
        match first {
            '"' => Ok(Value::String(self.string()?)),
            '&' => {
                self.at += 1;
                Ok(Value::StringName(self.string()?))
            }
            '^' => {
                self.at += 1;
                Ok(Value::NodePath(self.string()?))
            }
            '[' => {
                self.at += 1;
                let items = self.list(']', depth)?;
                Ok(Value::Array(items))
            }
            '{' => self.dictionary(depth),
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            c if c.is_ascii_alphabetic() => self.word(depth),
            _ => Err(self.error("expected a value")),
        }
    }

    fn string(&mut self) -> Result<String, TextError> {
        if !self.rest().starts_with('"') {
            return Err(self.error("expected a quoted string"));
        }
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, c @ ('"' | '\\'))) => out.push(c),
                    _ => return Err(self.error("unknown escape in string")),
                },
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }

    fn number(&mut self) -> Result<Value, TextError> {
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')))
            .unwrap_or(self.rest().len());
        let token = &self.rest()[..len];
        let value =
            if token.contains(['.', 'e', 'E']) || token.contains("inf") || token.contains("nan") {
                token.parse::<f64>().map(Value::Float).ok()
            } else {
                token.parse::<i64>().map(Value::Int).ok()
            };
        let value = value.ok_or_else(|| self.error(&format!("not a number: {token:?}")))?;
        self.at += len;
        Ok(value)
    }

    fn float(&mut self) -> Result<f64, TextError> {
        self.skip_space();
        match self.number()? {
            Value::Int(i) => Ok(i as f64),
            Value::Float(f) => Ok(f),
            _ => Err(self.error("expected a number")),
        }
    }

    fn int(&mut self) -> Result<i64, TextError> {
        self.skip_space();
        match self.number()? {
            Value::Int(i) => Ok(i),
            _ => Err(self.error("expected an integer")),
        }
    }

    /// Comma-separated items read by `item` until `close`.
    fn until<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<T, TextError>,
    ) -> Result<Vec<T>, TextError> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(',')?;
        }
    }

    /// Exactly `N` comma-separated items read by `item`, then `)`.
    fn exactly<T: Copy + Default, const N: usize>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, TextError>,
    ) -> Result<[T; N], TextError> {
        let mut out = [T::default(); N];
        for (i, slot) in out.iter_mut().enumerate() {
            if i > 0 {
                self.expect(',')?;
            }
            *slot = item(self)?;
        }
        self.expect(')')?;
        Ok(out)
    }

    fn list(&mut self, close: char, depth: usize) -> Result<Vec<Value>, TextError> {
        self.until(close, |p| p.value(depth + 1))
    }

    fn f32(&mut self) -> Result<f32, TextError> {
        self.float().map(|f| f as f32)
    }

    fn i32(&mut self) -> Result<i32, TextError> {
        let i = self.int()?;
        i32::try_from(i).map_err(|_| self.error("out of i32 range"))
    }

    fn dictionary(&mut self, depth: usize) -> Result<Value, TextError> {
        self.at += 1;
        let mut pairs = Vec::new();
        if self.eat('}') {
            return Ok(Value::Dictionary(pairs));
        }
        loop {
            let k = self.value(depth + 1)?;
            self.expect(':')?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
            if self.eat('}') {
                return Ok(Value::Dictionary(pairs));
            }
            self.expect(',')?;
        }
    }

    fn floats<const N: usize>(&mut self) -> Result<[f32; N], TextError> {
        self.exactly(Self::f32)
    }

    fn ints<const N: usize>(&mut self) -> Result<[i32; N], TextError> {
        self.exactly(Self::i32)
    }

    /// Numbers until `)`, for packed arrays.
    fn numbers(&mut self) -> Result<Vec<f64>, TextError> {
        self.until(')', Self::float)
    }

    /// Integers until `)`, for packed integer arrays.
    fn integers(&mut self) -> Result<Vec<i64>, TextError> {
        self.until(')', Self::int)
    }

    fn word(&mut self, depth: usize) -> Result<Value, TextError> {
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        let word = self.rest()[..len].to_owned();
        self.at += len;
        match word.as_str() {
            "null" => return Ok(Value::Nil),
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            "inf" => return Ok(Value::Float(f64::INFINITY)),
            "nan" => return Ok(Value::Float(f64::NAN)),
            _ => {}
        }
        if !self.eat('(') {
            return Err(self.error(&format!(
                "unknown word {word:?} (strings need quotes: \"{word}\")"
            )));
        }
        let grouped = |v: Vec<f64>, n: usize, p: &Self| -> Result<Vec<Vec<f32>>, TextError> {
            if !v.len().is_multiple_of(n) {
                return Err(p.error(&format!("{word} takes components in groups of {n}")));
            }
            Ok(v.chunks(n)
                .map(|c| c.iter().map(|x| *x as f32).collect())
                .collect())
        };
        Ok(match word.as_str() {
            "Vector2" => Value::Vector2(self.floats()?),
            "Vector2i" => Value::Vector2i(self.ints()?),
            "Rect2" => Value::Rect2(self.floats()?),
            "Rect2i" => Value::Rect2i(self.ints()?),
            "Vector3" => Value::Vector3(self.floats()?),
            "Vector3i" => Value::Vector3i(self.ints()?),
            "Transform2D" => Value::Transform2D(self.floats()?),
            "Vector4" => Value::Vector4(self.floats()?),
            "Vector4i" => Value::Vector4i(self.ints()?),
            "Plane" => Value::Plane(self.floats()?),
            "Quaternion" | "Quat" => Value::Quaternion(self.floats()?),
            "AABB" => Value::Aabb(self.floats()?),
            "Basis" => Value::Basis(self.floats()?),
            "Transform3D" | "Transform" => Value::Transform3D(self.floats()?),
            "Projection" => Value::Projection(self.floats()?),
            "Color" => {
                let c = self.numbers()?;
                match c.as_slice() {
                    [r, g, b] => Value::Color([*r as f32, *g as f32, *b as f32, 1.0]),
                    [r, g, b, a] => Value::Color([*r as f32, *g as f32, *b as f32, *a as f32]),
                    _ => return Err(self.error("Color takes 3 or 4 components")),
                }
            }
            "NodePath" => {
                self.skip_space();
                let path = self.string()?;
                self.expect(')')?;
                Value::NodePath(path)
            }
            "StringName" => {
                self.skip_space();
                let name = self.string()?;
                self.expect(')')?;
                Value::StringName(name)
            }
            "PackedByteArray" | "PoolByteArray" => Value::PackedByteArray(
                self.integers()?
                    .into_iter()
                    .map(|x| u8::try_from(x).map_err(|_| self.error("byte out of range")))
                    .collect::<Result<_, _>>()?,
            ),
            "PackedInt32Array" | "PoolIntArray" => {
                Value::PackedInt32Array(self.until(')', Self::i32)?)
            }
            "PackedInt64Array" => Value::PackedInt64Array(self.integers()?),
            "PackedFloat32Array" | "PoolRealArray" => {
                Value::PackedFloat32Array(self.numbers()?.iter().map(|x| *x as f32).collect())
            }
            "PackedFloat64Array" => Value::PackedFloat64Array(self.numbers()?),
            "PackedStringArray" | "PoolStringArray" => {
                let items = self.list(')', depth)?;
                Value::PackedStringArray(
                    items
                        .into_iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s),
                            _ => Err(self.error("PackedStringArray holds strings")),
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            "PackedVector2Array" | "PoolVector2Array" => Value::PackedVector2Array(
                grouped(self.numbers()?, 2, self)?
                    .into_iter()
                    .map(|c| [c[0], c[1]])
                    .collect(),
            ),
            "PackedVector3Array" | "PoolVector3Array" => Value::PackedVector3Array(
                grouped(self.numbers()?, 3, self)?
                    .into_iter()
                    .map(|c| [c[0], c[1], c[2]])
                    .collect(),
            ),
            "PackedColorArray" | "PoolColorArray" => Value::PackedColorArray(
                grouped(self.numbers()?, 4, self)?
                    .into_iter()
                    .map(|c| [c[0], c[1], c[2], c[3]])
                    .collect(),
            ),
            "PackedVector4Array" => Value::PackedVector4Array(
                grouped(self.numbers()?, 4, self)?
                    .into_iter()
                    .map(|c| [c[0], c[1], c[2], c[3]])
                    .collect(),
            ),
            other => return Err(self.error(&format!("unknown type {other:?}"))),
        })
    }
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else if f == f.trunc() && f.abs() < 1e15 {
        let _ = write!(out, "{f:.1}");
    } else {
        let _ = write!(out, "{f:?}");
    }
}

fn call<T: Copy>(out: &mut String, name: &str, items: &[T], each: impl Fn(&mut String, T)) {
    out.push_str(name);
    out.push('(');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, *x);
    }
    out.push(')');
}

fn f32s(out: &mut String, name: &str, items: &[f32]) {
    call(out, name, items, |o, x| float(o, f64::from(x)));
}

fn i32s(out: &mut String, name: &str, items: &[i32]) {
    call(out, name, items, |o, x| {
        let _ = write!(o, "{x}");
    });
}

/// Writes `value` in Godot's text syntax (Godot 4 names).
pub fn format(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => float(out, *f),
        Value::String(s) => quoted(out, s),
        Value::StringName(s) => {
            out.push('&');
            quoted(out, s);
        }
        Value::NodePath(s) => {
            out.push_str("NodePath(");
            quoted(out, s);
            out.push(')');
        }
        Value::Vector2(v) => f32s(out, "Vector2", v),
        Value::Vector2i(v) => i32s(out, "Vector2i", v),
        Value::Rect2(v) => f32s(out, "Rect2", v),
        Value::Rect2i(v) => i32s(out, "Rect2i", v),
        Value::Vector3(v) => f32s(out, "Vector3", v),
        Value::Vector3i(v) => i32s(out, "Vector3i", v),
        Value::Transform2D(v) => f32s(out, "Transform2D", v),
        Value::Vector4(v) => f32s(out, "Vector4", v),
        Value::Vector4i(v) => i32s(out, "Vector4i", v),
        Value::Plane(v) => f32s(out, "Plane", v),
        Value::Quaternion(v) => f32s(out, "Quaternion", v),
        Value::Aabb(v) => f32s(out, "AABB", v),
        Value::Basis(v) => f32s(out, "Basis", v),
        Value::Transform3D(v) => f32s(out, "Transform3D", v),
        Value::Projection(v) => f32s(out, "Projection", v),
        Value::Color(v) => f32s(out, "Color", v),
        Value::Dictionary(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, k);
                out.push_str(": ");
                write_value(out, v);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, v);
            }
            out.push(']');
        }
        Value::PackedByteArray(v) => call(out, "PackedByteArray", v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        Value::PackedInt32Array(v) => i32s(out, "PackedInt32Array", v),
        Value::PackedInt64Array(v) => call(out, "PackedInt64Array", v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        Value::PackedFloat32Array(v) => f32s(out, "PackedFloat32Array", v),
        Value::PackedFloat64Array(v) => call(out, "PackedFloat64Array", v, float),
        Value::PackedStringArray(v) => {
            out.push_str("PackedStringArray(");
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quoted(out, s);
            }
            out.push(')');
        }
        Value::PackedVector2Array(v) => f32s(out, "PackedVector2Array", v.as_flattened()),
        Value::PackedVector3Array(v) => f32s(out, "PackedVector3Array", v.as_flattened()),
        Value::PackedColorArray(v) => f32s(out, "PackedColorArray", v.as_flattened()),
        Value::PackedVector4Array(v) => f32s(out, "PackedVector4Array", v.as_flattened()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn godot_text_parses() {
        assert_eq!(parse("Vector2(10, 20)"), Ok(Value::Vector2([10.0, 20.0])));
        assert_eq!(parse(" 42 "), Ok(Value::Int(42)));
        assert_eq!(parse("-1.5"), Ok(Value::Float(-1.5)));
        assert_eq!(
            parse("\"a \\\"b\\\"\""),
            Ok(Value::String("a \"b\"".into()))
        );
        assert_eq!(
            parse("Color(1, 0, 0)"),
            Ok(Value::Color([1.0, 0.0, 0.0, 1.0]))
        );
        assert_eq!(
            parse("{\"hp\": 3, &\"k\": [true, null]}"),
            Ok(Value::Dictionary(vec![
                (Value::String("hp".into()), Value::Int(3)),
                (
                    Value::StringName("k".into()),
                    Value::Array(vec![Value::Bool(true), Value::Nil])
                ),
            ]))
        );
        assert_eq!(
            parse("PackedVector2Array(1, 2, 3, 4)"),
            Ok(Value::PackedVector2Array(vec![[1.0, 2.0], [3.0, 4.0]]))
        );
        assert_eq!(
            parse("Quat(0, 0, 0, 1)"),
            Ok(Value::Quaternion([0.0, 0.0, 0.0, 1.0]))
        );
    }

    #[test]
    fn bad_text_is_a_clear_error() {
        for bad in [
            "hello",
            "Vector2(1)",
            "Vector2(1, 2",
            "[1, 2",
            "\"open",
            "Foo(1)",
            "1 2",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse("hello").unwrap_err();
        assert!(e.message.contains("quotes"), "{e}");
        assert!(parse(&"[".repeat(100)).is_err());
    }

    #[test]
    fn format_then_parse_is_identity() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &crate::testing::value(crate::codec::GodotVersion::V4, true),
                |v| {
                    let text = format(&v);
                    let back =
                        parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                    prop_assert_eq!(back, v, "{}", text);
                    Ok(())
                },
            )
            .expect("text round trip");
    }
}
