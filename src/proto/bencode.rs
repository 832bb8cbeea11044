//! Bencode (BEP 3): a streaming writer for the tracker hot path and a strict, bounded parser.
//!
//! The writer appends straight into a caller-owned `Vec<u8>` (integers are formatted on the
//! stack), so a response with any number of peers costs no allocation beyond the buffer.
//! Dictionary keys must be written in sorted byte order; the parser enforces that, so every
//! writer in this crate is checked by parsing its output back in the tests.
//!
//! The parser is for tests, round trips and the client reading tracker replies: it accepts
//! only canonical bencode (no leading zeros, no `-0`, keys strictly increasing), bounds the
//! nesting depth and input size, and returns an error for every malformed input instead of
//! panicking.

/// Append a bencoded integer (`i<n>e`).
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    if n < 0 {
        out.push(b'-');
    }
    push_decimal(out, n.unsigned_abs());
    out.push(b'e');
}

/// Append a bencoded non-negative integer (`i<n>e`).
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.push(b'i');
    push_decimal(out, n);
    out.push(b'e');
}

/// Append a bencoded byte string (`<len>:<bytes>`).
pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_decimal(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Append one byte string made of several parts, without joining them first.
pub fn write_bytes_parts(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    push_decimal(out, len as u64);
    out.push(b':');
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Start a dictionary (`d`). Keys must then be written in sorted byte order.
pub fn begin_dict(out: &mut Vec<u8>) {
    out.push(b'd');
}

/// Start a list (`l`).
pub fn begin_list(out: &mut Vec<u8>) {
    out.push(b'l');
}

/// End the innermost dictionary or list (`e`).
pub fn end(out: &mut Vec<u8>) {
    out.push(b'e');
}

/// Append the decimal digits of `n` (no sign, no allocation).
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(format_decimal(n, &mut buf));
}

/// Format the decimal digits of `n` into `buf`, returning the used tail.
pub(crate) fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Why bencoded input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{byte:02x} at offset {at}")]
    UnexpectedByte {
        /// The byte seen.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An integer that is empty, has leading zeros, is `-0`, or does not fit in an `i64`.
    #[error("invalid integer at offset {at}")]
    InvalidInteger {
        /// Offset of the integer.
        at: usize,
    },
    /// A byte-string length that is non-canonical or longer than the rest of the input.
    #[error("invalid string length at offset {at}")]
    InvalidLength {
        /// Offset of the length.
        at: usize,
    },
    /// Dictionary keys out of order or repeated.
    #[error("dictionary keys not strictly increasing at offset {at}")]
    UnsortedKeys {
        /// Offset of the offending key.
        at: usize,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Input larger than [`MAX_INPUT_LEN`].
    #[error("input is {len} bytes, over the {MAX_INPUT_LEN}-byte cap")]
    TooLarge {
        /// Size seen.
        len: usize,
    },
    /// Bytes left over after one complete value.
    #[error("trailing data at offset {at}")]
    TrailingData {
        /// Offset of the first extra byte.
        at: usize,
    },
}

/// The deepest nesting of lists and dictionaries the parser accepts.
pub const MAX_DEPTH: usize = 32;

/// The largest input the parser accepts (tracker replies are far smaller).
pub const MAX_INPUT_LEN: usize = 4 * 1024 * 1024;

/// A parsed bencode value, borrowing its strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A list.
    List(Vec<Value<'a>>),
    /// A dictionary, keys strictly increasing.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// Parse exactly one canonical value filling the whole input.
    pub fn parse(input: &'a [u8]) -> Result<Self, BencodeError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(BencodeError::TooLarge { len: input.len() });
        }
        let mut p = Parser { input, pos: 0 };
        let v = p.value(0)?;
        if p.pos != input.len() {
            return Err(BencodeError::TrailingData { at: p.pos });
        }
        Ok(v)
    }

    /// Append this value's canonical encoding (dictionaries are written in stored order,
    /// which the parser guarantees is sorted).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => write_int(out, *n),
            Value::Bytes(b) => write_bytes(out, b),
            Value::List(items) => {
                begin_list(out);
                for v in items {
                    v.write(out);
                }
                end(out);
            }
            Value::Dict(entries) => {
                begin_dict(out);
                for (k, v) in entries {
                    write_bytes(out, k);
                    v.write(out);
                }
                end(out);
            }
        }
    }

    /// Look a key up in a dictionary (`None` for other kinds or a missing key).
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .and_then(|i| entries.get(i))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is one.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    #[must_use]
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The list items, if this is a list.
    #[must_use]
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary entries, if this is a dictionary.
    #[must_use]
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match self {
            Value::Dict(entries) => Some(entries),
            _ => None,
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let at = self.pos;
                let digits = self.until(b'e')?;
                parse_canonical_int(digits)
                    .map(Value::Int)
                    .ok_or(BencodeError::InvalidInteger { at })
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                let depth = self.enter(depth)?;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let depth = self.enter(depth)?;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                while self.peek()? != b'e' {
                    let at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::UnexpectedByte {
                            byte: self.peek()?,
                            at,
                        });
                    }
                    let key = self.bytes()?;
                    if entries.last().is_some_and(|(prev, _)| *prev >= key) {
                        return Err(BencodeError::UnsortedKeys { at });
                    }
                    let v = self.value(depth)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            byte => Err(BencodeError::UnexpectedByte { byte, at: self.pos }),
        }
    }

    fn enter(&mut self, depth: usize) -> Result<usize, BencodeError> {
        if depth >= MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        self.pos += 1;
        Ok(depth + 1)
    }

    /// The bytes up to (not including) `stop`; the cursor moves past `stop`.
    fn until(&mut self, stop: u8) -> Result<&'a [u8], BencodeError> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == stop)
            .ok_or(BencodeError::UnexpectedEnd)?;
        let out = &rest[..n];
        self.pos += n + 1;
        Ok(out)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let at = self.pos;
        let digits = self.until(b':')?;
        let bad = BencodeError::InvalidLength { at };
        if digits.is_empty() || digits.len() > 10 || (digits.len() > 1 && digits[0] == b'0') {
            return Err(bad);
        }
        let mut len: usize = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(bad);
            }
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(d - b'0')))
                .ok_or(bad.clone())?;
        }
        let end = self.pos.checked_add(len).ok_or(bad.clone())?;
        let s = self.input.get(self.pos..end).ok_or(bad)?;
        self.pos = end;
        Ok(s)
    }
}

/// Parse `-?[1-9][0-9]*|0` into an `i64`; `None` for anything else or on overflow.
fn parse_canonical_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let first = *digits.first()?;
    if first == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_canonical_forms() {
        let mut out = Vec::new();
        begin_dict(&mut out);
        write_bytes(&mut out, b"a");
        write_int(&mut out, -42);
        write_bytes(&mut out, b"b");
        begin_list(&mut out);
        write_uint(&mut out, 0);
        write_uint(&mut out, u64::MAX);
        write_bytes_parts(&mut out, &[b"ab", b"", b"c"]);
        end(&mut out);
        end(&mut out);
        assert_eq!(
            out,
            b"d1:ai-42e1:bli0ei18446744073709551615e3:abcee".to_vec()
        );
        let mut min = Vec::new();
        write_int(&mut min, i64::MIN);
        assert_eq!(min, b"i-9223372036854775808e");
        assert_eq!(Value::parse(&min), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn rejects_non_canonical_and_garbage() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i9223372036854775808e",
            b"01:a",
            b"2:a",
            b"d1:b0:1:a0:e",
            b"d1:a0:1:a0:e",
            b"di1e0:e",
            b"l",
            b"x",
            b"0:0:",
            b"99999999999:",
            b"",
        ] {
            assert!(
                Value::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = [b"l".repeat(MAX_DEPTH + 1), b"e".repeat(MAX_DEPTH + 1)].concat();
        assert_eq!(Value::parse(&deep), Err(BencodeError::TooDeep));
        let ok = [b"l".repeat(MAX_DEPTH), b"e".repeat(MAX_DEPTH)].concat();
        assert!(Value::parse(&ok).is_ok());
    }

    #[test]
    fn dict_lookup() {
        let v = Value::parse(b"d1:ai1e1:ci3ee").unwrap();
        assert_eq!(v.get(b"a").and_then(Value::as_int), Some(1));
        assert_eq!(v.get(b"c").and_then(Value::as_int), Some(3));
        assert_eq!(v.get(b"b"), None);
    }

    fn arb_value() -> impl Strategy<Value = Value<'static>> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            prop::collection::vec(any::<u8>(), 0..8)
                .prop_map(|b| Value::Bytes(Box::leak(b.into_boxed_slice()))),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..6), inner, 0..6)
                    .prop_map(|m| Value::Dict(
                        m.into_iter()
                            .map(|(k, v)| (&*Box::leak(k.into_boxed_slice()), v))
                            .collect()
                    )),
            ]
        })
    }

    proptest! {
        #[test]
        fn value_round_trips(v in arb_value()) {
            let mut out = Vec::new();
            v.write(&mut out);
            prop_assert_eq!(Value::parse(&out), Ok(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Value::parse(&bytes);
        }

        #[test]
        fn bencode_shaped_bytes_never_panic(
            bytes in prop::collection::vec(
                prop::sample::select(b"ilde0123456789:-x".to_vec()), 0..128)
        ) {
            if let Ok(v) = Value::parse(&bytes) {
                let mut out = Vec::new();
                v.write(&mut out);
                prop_assert_eq!(out, bytes);
            }
        }
    }
}
