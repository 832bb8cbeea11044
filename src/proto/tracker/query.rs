//! Byte-level query-string helpers: pair splitting, percent-decoding, numbers.
//!
//! Only `%XX` is special. `+` is kept as the byte `+` everywhere: in binary values it is
//! data, and no tracker parameter is free text where a space would make sense.

use super::RequestError;

/// The `name=value` pairs of a raw query, in order. Empty segments are skipped; a segment
/// without `=` has an empty value.
pub(crate) fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.iter().position(|&b| b == b'=') {
            Some(i) => (&seg[..i], &seg[i + 1..]),
            None => (seg, &b""[..]),
        })
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode `raw`, calling `emit` for each decoded byte.
fn decode_each(
    raw: &[u8],
    param: &'static str,
    mut emit: impl FnMut(u8),
) -> Result<(), RequestError> {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_val);
            let lo = raw.get(i + 2).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(hi), Some(lo)) => emit(hi << 4 | lo),
                _ => return Err(RequestError::BadEncoding(param)),
            }
            i += 3;
        } else {
            emit(b);
            i += 1;
        }
    }
    Ok(())
}

/// Percent-decode exactly `N` bytes (a binary hash or id).
pub(crate) fn decode_fixed<const N: usize>(
    raw: &[u8],
    param: &'static str,
) -> Result<[u8; N], RequestError> {
    let mut out = [0u8; N];
    let mut n = 0usize;
    decode_each(raw, param, |b| {
        if let Some(slot) = out.get_mut(n) {
            *slot = b;
        }
        n += 1;
    })?;
    if n != N {
        return Err(RequestError::BadLength {
            param,
            expected: N,
            got: n,
        });
    }
    Ok(out)
}

/// Percent-decode into `buf`, returning the decoded length; longer than `buf` is
/// [`RequestError::BadValue`].
pub(crate) fn decode_into(
    raw: &[u8],
    buf: &mut [u8],
    param: &'static str,
) -> Result<usize, RequestError> {
    let mut n = 0usize;
    decode_each(raw, param, |b| {
        if let Some(slot) = buf.get_mut(n) {
            *slot = b;
        }
        n += 1;
    })?;
    if n > buf.len() {
        return Err(RequestError::BadValue(param));
    }
    Ok(n)
}

/// Append `bytes` percent-encoded: RFC 3986 unreserved characters stay, all else is `%XX`.
pub(crate) fn percent_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
}

/// Parse `-?[0-9]+` (not percent-encoded), returning the sign and the magnitude, which
/// saturates at `u64::MAX` instead of overflowing.
fn parse_signed_magnitude(raw: &[u8], param: &'static str) -> Result<(bool, u64), RequestError> {
    let (neg, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::BadValue(param));
    }
    let mag = digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Ok((neg, mag))
}

/// A non-negative counter: negative values read as 0, huge ones saturate at `u64::MAX`.
pub(crate) fn parse_counter(raw: &[u8], param: &'static str) -> Result<u64, RequestError> {
    let (neg, mag) = parse_signed_magnitude(raw, param)?;
    Ok(if neg { 0 } else { mag })
}

/// A signed integer, saturating at the `i64` range.
pub(crate) fn parse_i64_saturating(raw: &[u8], param: &'static str) -> Result<i64, RequestError> {
    let (neg, mag) = parse_signed_magnitude(raw, param)?;
    Ok(if neg {
        0i64.saturating_sub_unsigned(mag)
    } else {
        i64::try_from(mag).unwrap_or(i64::MAX)
    })
}

/// A port: `0..=65535`, anything else is an error.
pub(crate) fn parse_port(raw: &[u8]) -> Result<u16, RequestError> {
    let (neg, mag) = parse_signed_magnitude(raw, "port")?;
    if neg && mag != 0 {
        return Err(RequestError::BadValue("port"));
    }
    u16::try_from(mag).map_err(|_| RequestError::BadValue("port"))
}

/// A `0`/`1` flag.
pub(crate) fn parse_flag(raw: &[u8], param: &'static str) -> Result<bool, RequestError> {
    match raw {
        b"0" => Ok(false),
        b"1" => Ok(true),
        _ => Err(RequestError::BadValue(param)),
    }
}

/// Store `v` in `slot`, refusing a second value for the same parameter.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    param: &'static str,
    v: Result<T, RequestError>,
) -> Result<(), RequestError> {
    if slot.is_some() {
        return Err(RequestError::Duplicate(param));
    }
    *slot = Some(v?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_data_and_bad_escapes_fail() {
        assert_eq!(decode_fixed::<2>(b"+%2B", "x"), Ok(*b"++"));
        assert_eq!(
            decode_fixed::<1>(b"%2", "x"),
            Err(RequestError::BadEncoding("x"))
        );
        assert_eq!(
            decode_fixed::<1>(b"%zz", "x"),
            Err(RequestError::BadEncoding("x"))
        );
        assert_eq!(
            decode_fixed::<2>(b"abc", "x"),
            Err(RequestError::BadLength {
                param: "x",
                expected: 2,
                got: 3
            })
        );
    }

    #[test]
    fn numbers_saturate() {
        assert_eq!(parse_counter(b"-5", "n"), Ok(0));
        assert_eq!(parse_counter(b"99999999999999999999999", "n"), Ok(u64::MAX));
        assert_eq!(
            parse_i64_saturating(b"-99999999999999999999", "n"),
            Ok(i64::MIN)
        );
        assert_eq!(
            parse_i64_saturating(b"99999999999999999999", "n"),
            Ok(i64::MAX)
        );
        assert_eq!(parse_i64_saturating(b"-1", "n"), Ok(-1));
        assert!(parse_counter(b"", "n").is_err());
        assert!(parse_counter(b"1e3", "n").is_err());
        assert!(parse_port(b"65536").is_err());
        assert_eq!(parse_port(b"-0"), Ok(0));
    }
}
