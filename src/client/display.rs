//! Human-readable rendering of manifests for the terminal.
//!
//! Manifest text comes from strangers: control characters are escaped before printing so a
//! title or item cannot move the cursor, recolour the terminal or fake extra lines.

use std::fmt::Write as _;

use crate::proto::Manifest;

/// `s` with control characters escaped (`\n`, `\u{1b}`, …); everything else unchanged.
#[must_use]
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Milliseconds since the Unix epoch as ISO-8601 UTC, e.g. `2023-03-15T13:20:00.000Z`.
#[must_use]
pub fn iso8601_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), for days ≥ 0.
///
/// Works in 400-year eras of 146 097 days, with years starting on 1 March so the leap day
/// falls at the end of the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A multi-line readable view of a verified manifest (ends with a newline).
#[must_use]
pub fn render_manifest(m: &Manifest) -> String {
    let mut s = String::new();
    let cols = m.collections();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "public key:  {}", m.public_key());
    let _ = writeln!(s, "sequence:    {}", m.sequence());
    let _ = writeln!(
        s,
        "timestamp:   {} ({} ms)",
        iso8601_utc(m.timestamp()),
        m.timestamp()
    );
    let _ = writeln!(s, "collections: {}", cols.len());
    for c in cols {
        let n = c.items.len();
        let plural = if n == 1 { "item" } else { "items" };
        let _ = writeln!(s, "  {} ({n} {plural})", printable(&c.title));
        for item in &c.items {
            let _ = writeln!(s, "    {}", printable(item));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Collection, UnsignedManifest};
    use ed25519_dalek::SigningKey;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(1_678_886_400_000), "2023-03-15T13:20:00.000Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_utc(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(iso8601_utc(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(1_704_067_199_123), "2023-12-31T23:59:59.123Z");
        // The largest timestamp a manifest may carry still formats.
        assert!(iso8601_utc(crate::proto::MAX_SAFE_INTEGER).ends_with('Z'));
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\nb\u{1b}[31mc"), "a\\nb\\u{1b}[31mc");
        assert_eq!(printable("Sæson 1 ✓"), "Sæson 1 ✓");
    }

    #[test]
    fn renders_collections_and_items() {
        let m = UnsignedManifest {
            sequence: 7,
            timestamp: 1_678_886_400_000,
            collections: vec![Collection {
                title: "Season\n1".into(),
                items: vec!["magnet:?xt=urn:btih:aa".into()],
            }],
        }
        .sign(&SigningKey::from_bytes(&[3; 32]))
        .unwrap();
        let out = render_manifest(&m);
        assert!(out.contains("sequence:    7\n"));
        assert!(out.contains("2023-03-15T13:20:00.000Z"));
        assert!(out.contains("  Season\\n1 (1 item)\n    magnet:?xt=urn:btih:aa\n"));
        assert_eq!(out.lines().count(), 6);
    }
}
