//! Strict JSON: duplicate member names, floats and integers outside ±(2^53−1) are errors.
//!
//! `serde_json` alone silently keeps the last of two duplicate members and happily parses
//! `1.5` or `1e400`; a signed format cannot afford either, because two readers could then
//! disagree about what was signed. [`parse_strict`] builds an ordinary [`Value`] but refuses
//! those inputs with a [`JsonError`] that says which rule was broken.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::MAX_SAFE_INTEGER;

/// Which strictness rule a document broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// Not JSON at all (syntax, trailing data, nesting too deep, bad UTF-8).
    Syntax,
    /// An object had the same member name twice.
    DuplicateMember,
    /// A number with a fraction or exponent, or an integer beyond ±(2^53−1).
    NotAnInteger,
}

/// A strict-JSON parse failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct JsonError {
    /// The rule that was broken.
    pub kind: JsonErrorKind,
    /// Human-readable detail (includes the position for syntax errors).
    pub detail: String,
}

/// Parse `bytes` as one strict JSON document.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let kind = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = StrictSeed { kind: &kind }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    result.map_err(|e| JsonError {
        kind: kind.get().unwrap_or(JsonErrorKind::Syntax),
        detail: e.to_string(),
    })
}

/// Check an already-parsed value against the same rules (used where a value arrives inside
/// a larger strictly-parsed document, so duplicates were already caught; this re-checks
/// numbers for values built in code).
pub fn check_numbers(v: &Value) -> Result<(), JsonError> {
    match v {
        Value::Number(n) => {
            if safe_integer(n) {
                Ok(())
            } else {
                Err(JsonError {
                    kind: JsonErrorKind::NotAnInteger,
                    detail: format!("number {n} is not an integer within ±(2^53−1)"),
                })
            }
        }
        Value::Array(a) => a.iter().try_for_each(check_numbers),
        Value::Object(o) => o.values().try_for_each(check_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

fn safe_integer(n: &Number) -> bool {
    if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        false
    }
}

struct StrictSeed<'a> {
    kind: &'a Cell<Option<JsonErrorKind>>,
}

impl StrictSeed<'_> {
    fn fail<E: de::Error>(&self, kind: JsonErrorKind, msg: fmt::Arguments<'_>) -> E {
        // Record only the first rule broken; later errors are consequences of it.
        if self.kind.get().is_none() {
            self.kind.set(Some(kind));
        }
        E::custom(msg)
    }
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(self.fail(
                JsonErrorKind::NotAnInteger,
                format_args!("integer {v} is outside ±(2^53−1)"),
            ));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(self.fail(
                JsonErrorKind::NotAnInteger,
                format_args!("integer {v} is outside ±(2^53−1)"),
            ));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(self.fail(
            JsonErrorKind::NotAnInteger,
            format_args!("number {v} is not an integer (no fractions, exponents or huge values)"),
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed { kind: self.kind })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictSeed { kind: self.kind })?;
            if out.contains_key(&key) {
                return Err(self.fail(
                    JsonErrorKind::DuplicateMember,
                    format_args!("duplicate member {key:?}"),
                ));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<JsonErrorKind> {
        parse_strict(s.as_bytes()).err().map(|e| e.kind)
    }

    #[test]
    fn accepts_plain_documents() {
        let v = parse_strict(br#"{"a":[1,-2,"x",null,true],"b":{"c":9007199254740991}}"#);
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn rejects_each_rule() {
        assert_eq!(
            kind(r#"{"a":1,"a":2}"#),
            Some(JsonErrorKind::DuplicateMember)
        );
        assert_eq!(
            kind(r#"{"x":{"a":1,"a":1}}"#),
            Some(JsonErrorKind::DuplicateMember)
        );
        assert_eq!(kind(r#"{"a":1.0}"#), Some(JsonErrorKind::NotAnInteger));
        assert_eq!(kind(r#"{"a":1e3}"#), Some(JsonErrorKind::NotAnInteger));
        assert_eq!(kind("9007199254740992"), Some(JsonErrorKind::NotAnInteger));
        assert_eq!(kind("-9007199254740992"), Some(JsonErrorKind::NotAnInteger));
        assert_eq!(
            kind("123456789012345678901234567890"),
            Some(JsonErrorKind::NotAnInteger)
        );
        assert_eq!(kind("{"), Some(JsonErrorKind::Syntax));
        assert_eq!(kind("{} x"), Some(JsonErrorKind::Syntax));
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert_eq!(kind(&deep), Some(JsonErrorKind::Syntax));
    }

    #[test]
    fn check_numbers_matches_parser() {
        assert!(check_numbers(&serde_json::json!({"a":[1,2]})).is_ok());
        assert!(check_numbers(&serde_json::json!({"a":1.5})).is_err());
        assert!(check_numbers(&serde_json::json!(u64::MAX)).is_err());
    }
}
