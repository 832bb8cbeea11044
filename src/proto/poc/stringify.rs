//! ECMAScript `JSON.stringify`, byte for byte, for values that came out of `JSON.parse`.
//!
//! The proof of concept signs `JSON.stringify(...)` of objects it rebuilt from parsed JSON,
//! so a verifier has to reproduce exactly what V8 prints:
//!
//! * strings: `"` → `\"`, `\` → `\\`, the five short escapes `\b \f \n \r \t`, every other
//!   control character below U+0020 as `\u00xx` (lowercase hex), a lone surrogate as
//!   `\udxxx` (lowercase; "well-formed `JSON.stringify`", ES2019), everything else — DEL,
//!   U+2028/U+2029, non-ASCII — as itself in UTF-8;
//! * numbers: only integers within ±(2^53−1) exist here (the strict parser refuses the rest),
//!   and JavaScript prints those in plain decimal;
//! * objects: members in property order — integer-index keys (`"0"`, `"1"`, … below
//!   2^32−1) first in ascending numeric order, then the other keys in insertion (document)
//!   order;
//! * no whitespace.
//!
//! [`JsValue`] keeps object members in document order, which `serde_json::Value` (a sorted
//! map in this build) does not.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::proto::json::{self, JsonError, JsonErrorKind};

/// A JSON value as `JSON.parse` sees it: object members in document order, numbers only as
/// safe integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer within ±(2^53−1).
    Int(i64),
    /// A string (a Rust string cannot hold a lone surrogate; see [`quote_utf16`]).
    String(String),
    /// An array.
    Array(Vec<JsValue>),
    /// An object, members in document order (names unique).
    Object(Vec<(String, JsValue)>),
}

impl JsValue {
    /// The member `name` of an object (`None` for other values or a missing member).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&JsValue> {
        match self {
            JsValue::Object(members) => members.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parse strictly (the rules of [`json::parse_strict`]: no duplicate members, integers
/// within ±(2^53−1) only), keeping object members in document order.
pub fn parse_ordered(bytes: &[u8]) -> Result<JsValue, JsonError> {
    // The strict parser enforces the rules; the ordered pass only keeps the order.
    json::parse_strict(bytes)?;
    serde_json::from_slice::<JsValue>(bytes).map_err(|e| JsonError {
        kind: JsonErrorKind::Syntax,
        detail: e.to_string(),
    })
}

impl<'de> Deserialize<'de> for JsValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = JsValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<JsValue, E> {
        Ok(JsValue::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsValue, E> {
        Ok(JsValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsValue, E> {
        Ok(JsValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsValue, E> {
        i64::try_from(v)
            .map(JsValue::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsValue, E> {
        Err(E::custom("not an integer"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsValue, E> {
        Ok(JsValue::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<JsValue, E> {
        Ok(JsValue::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsValue, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(JsValue::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsValue, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, JsValue>()? {
            out.push((k, v));
        }
        Ok(JsValue::Object(out))
    }
}

/// `JSON.stringify(value)`.
#[must_use]
pub fn stringify(value: &JsValue) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &JsValue) {
    match value {
        JsValue::Null => out.push_str("null"),
        JsValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        JsValue::Int(n) => {
            let _ = write!(out, "{n}");
        }
        JsValue::String(s) => push_quoted(out, s),
        JsValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        JsValue::Object(members) => {
            out.push('{');
            for (i, (k, v)) in property_order(members).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_quoted(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// ECMAScript `OrdinaryOwnPropertyKeys`: array indices ascending, then the rest in
/// insertion order.
fn property_order(members: &[(String, JsValue)]) -> Vec<&(String, JsValue)> {
    let mut indices: Vec<(u32, &(String, JsValue))> = members
        .iter()
        .filter_map(|m| array_index(&m.0).map(|i| (i, m)))
        .collect();
    indices.sort_by_key(|(i, _)| *i);
    let mut order: Vec<&(String, JsValue)> = indices.into_iter().map(|(_, m)| m).collect();
    order.extend(members.iter().filter(|m| array_index(&m.0).is_none()));
    order
}

/// `Some(n)` if `key` is an array index: the canonical decimal form of an integer in
/// `0..2^32−1` (no sign, no leading zero except `"0"` itself).
fn array_index(key: &str) -> Option<u32> {
    let b = key.as_bytes();
    let canonical = match b {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.len() < 10 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    key.parse::<u32>().ok().filter(|n| *n != u32::MAX)
}

/// `JSON.stringify(s)` of a string.
#[must_use]
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_quoted(&mut out, s);
    out
}

/// `JSON.stringify(s)` of a JavaScript string given as UTF-16 code units, which may hold
/// lone surrogates (escaped as `\udxxx`, as well-formed `JSON.stringify` does).
#[must_use]
pub fn quote_utf16(units: &[u16]) -> String {
    let mut out = String::with_capacity(units.len() + 2);
    out.push('"');
    for unit in char::decode_utf16(units.iter().copied()) {
        match unit {
            Ok(c) => push_escaped(&mut out, c),
            Err(e) => {
                let _ = write!(out, "\\u{:04x}", e.unpaired_surrogate());
            }
        }
    }
    out.push('"');
    out
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        push_escaped(out, c);
    }
    out.push('"');
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if u32::from(c) < 0x20 => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_escape_like_v8() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            quote("\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}"),
            "\"\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(quote("\u{2028}\u{2029}é😀/"), "\"\u{2028}\u{2029}é😀/\"");
        assert_eq!(quote("\u{1b}"), "\"\\u001b\"");
        // Lone surrogates: lowercase escapes; a proper pair stays one UTF-8 character.
        assert_eq!(quote_utf16(&[0xd800]), "\"\\ud800\"");
        assert_eq!(quote_utf16(&[0x61, 0xDFFF, 0x62]), "\"a\\udfffb\"");
        assert_eq!(quote_utf16(&[0xd83d, 0xde00]), "\"😀\"");
        assert_eq!(quote_utf16(&[0xde00, 0xd83d]), "\"\\ude00\\ud83d\"");
    }

    #[test]
    fn objects_put_array_indices_first() {
        let v = parse_ordered(
            br#"{"b":1,"2":[true,null],"a":"x","1":-5,"01":0,"4294967295":1,"4294967294":2}"#,
        )
        .unwrap();
        assert_eq!(
            stringify(&v),
            r#"{"1":-5,"2":[true,null],"4294967294":2,"b":1,"a":"x","01":0,"4294967295":1}"#
        );
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("00"), None);
        assert_eq!(array_index("-1"), None);
        assert_eq!(array_index("+1"), None);
        assert_eq!(array_index("1e3"), None);
        assert_eq!(array_index("99999999999"), None);
        assert_eq!(v.get("a"), Some(&JsValue::String("x".into())));
        assert_eq!(JsValue::Null.get("a"), None);
    }

    #[test]
    fn parse_keeps_the_strict_rules() {
        assert!(parse_ordered(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_ordered(br#"{"a":1.5}"#).is_err());
        assert!(parse_ordered(b"-0").is_err());
        assert!(parse_ordered(b"9007199254740992").is_err());
        assert!(
            parse_ordered(br#""\ud800""#).is_err(),
            "serde_json refuses lone surrogates"
        );
        assert_eq!(
            parse_ordered(b" [ -9007199254740991 , 9007199254740991 ] ").unwrap(),
            JsValue::Array(vec![
                JsValue::Int(-9_007_199_254_740_991),
                JsValue::Int(9_007_199_254_740_991)
            ])
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn quote_is_valid_json_that_round_trips(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            let q = quote(&s);
            let back: String = serde_json::from_str(&q).unwrap();
            prop_assert_eq!(&back, &s);
            // Same bytes from the UTF-16 path.
            let units: Vec<u16> = s.encode_utf16().collect();
            prop_assert_eq!(quote_utf16(&units), q);
        }

        #[test]
        fn stringify_of_parsed_compact_json_is_a_fixed_point(
            keys in proptest::collection::vec("[a-c0-9]{1,3}", 0..6),
            n in -9_007_199_254_740_991i64..=9_007_199_254_740_991,
        ) {
            let mut members: Vec<(String, JsValue)> = Vec::new();
            for k in keys {
                if members.iter().all(|(m, _)| *m != k) {
                    members.push((k, JsValue::Int(n)));
                }
            }
            let v = JsValue::Object(members);
            let once = stringify(&v);
            let again = stringify(&parse_ordered(once.as_bytes()).unwrap());
            prop_assert_eq!(once, again);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_ordered(&bytes).map(|v| stringify(&v));
        }
    }
}
