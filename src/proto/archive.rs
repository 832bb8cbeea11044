//! A feed archive: many signed messages of one author bundled in one file, shared as one
//! single-file torrent and listed in the `archive` collection of the manifest (see
//! docs/messages.md).
//!
//! The file is UTF-8 text, one JSON document per `\n`-terminated line:
//! * line 1, the header: `{"format":"megatorrent-archive/1","previous":["magnet:?…",…]}`
//!   (`previous` names older archives, so archives form a chain and the manifest lists only
//!   the newest; members other than `format` and `previous` are ignored);
//! * then one canonical message document per line ([`Message::canonical_bytes`]), oldest
//!   first.
//!
//! Each message keeps its own signature: a reader verifies every line exactly like a single
//! message torrent, and a bad line is reported and skipped without losing the others.

use serde_json::Value;

use super::json;
use super::message::{Message, MessageError};
use super::PublicKey;

/// The `format` member of the header.
pub const FORMAT: &str = "megatorrent-archive/1";

/// Why an archive (as a whole) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The file is over [`Archive::MAX_BYTES`].
    #[error("archive is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// More than [`Archive::MAX_MESSAGES`] messages.
    #[error("archive holds {count} messages, over the cap of {max}")]
    TooManyMessages {
        /// Messages seen.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// The header line is missing or invalid.
    #[error("invalid archive header: {0}")]
    Header(String),
}

/// A parsed archive: its links to older archives and each line's verification result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    previous: Vec<String>,
    entries: Vec<Result<Message, MessageError>>,
}

impl Archive {
    /// The largest archive file: 16 MiB.
    pub const MAX_BYTES: usize = 16 * 1024 * 1024;
    /// The most messages in one archive.
    pub const MAX_MESSAGES: usize = 1000;
    /// The most links to older archives in one header.
    pub const MAX_PREVIOUS: usize = 16;
    /// The longest link (magnet) in `previous`, in bytes.
    pub const MAX_LINK_BYTES: usize = 2048;

    /// Write an archive of `messages` (oldest first) linking to `previous`.
    pub fn write(previous: &[String], messages: &[Message]) -> Result<Vec<u8>, ArchiveError> {
        check_previous(previous)?;
        if messages.len() > Self::MAX_MESSAGES {
            return Err(ArchiveError::TooManyMessages {
                count: messages.len(),
                max: Self::MAX_MESSAGES,
            });
        }
        let header = serde_json::json!({"format": FORMAT, "previous": previous});
        let mut out = header.to_string().into_bytes();
        out.push(b'\n');
        for m in messages {
            out.extend_from_slice(m.canonical_bytes());
            out.push(b'\n');
        }
        if out.len() > Self::MAX_BYTES {
            return Err(ArchiveError::TooLarge {
                size: out.len(),
                max: Self::MAX_BYTES,
            });
        }
        Ok(out)
    }

    /// Parse an archive of `author`'s feed, verifying every message line (a line that
    /// fails is kept as its error; the header and the caps apply to the whole file).
    pub fn parse(bytes: &[u8], author: &PublicKey) -> Result<Self, ArchiveError> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(ArchiveError::TooLarge {
                size: bytes.len(),
                max: Self::MAX_BYTES,
            });
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let mut lines = body.split(|b| *b == b'\n');
        let header = lines
            .next()
            .ok_or_else(|| ArchiveError::Header("the file is empty".into()))?;
        let previous = parse_header(header)?;
        let entries: Vec<Result<Message, MessageError>> = lines
            .map(|line| Message::verify_from(line, author))
            .collect();
        if entries.len() > Self::MAX_MESSAGES {
            return Err(ArchiveError::TooManyMessages {
                count: entries.len(),
                max: Self::MAX_MESSAGES,
            });
        }
        Ok(Self { previous, entries })
    }

    /// Links (magnets) to older archives.
    #[must_use]
    pub fn previous(&self) -> &[String] {
        &self.previous
    }

    /// Each message line in file order: the verified message, or why it was refused.
    pub fn entries(&self) -> &[Result<Message, MessageError>] {
        &self.entries
    }
}

fn check_previous(previous: &[String]) -> Result<(), ArchiveError> {
    if previous.len() > Archive::MAX_PREVIOUS {
        return Err(ArchiveError::Header(format!(
            "more than {} previous archives",
            Archive::MAX_PREVIOUS
        )));
    }
    for link in previous {
        if link.is_empty()
            || link.len() > Archive::MAX_LINK_BYTES
            || link.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ArchiveError::Header(
                "a previous link is empty, too long or has whitespace".into(),
            ));
        }
    }
    Ok(())
}

fn parse_header(line: &[u8]) -> Result<Vec<String>, ArchiveError> {
    let bad = |s: &str| ArchiveError::Header(s.to_owned());
    let value = json::parse_strict(line).map_err(|e| ArchiveError::Header(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(bad("not a JSON object"));
    };
    if obj.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(ArchiveError::Header(format!("format is not {FORMAT:?}")));
    }
    let previous = match obj.get("previous") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("previous must be an array of strings"))?,
        Some(_) => return Err(bad("previous must be an array of strings")),
    };
    check_previous(&previous)?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::UnsignedMessage;
    use ed25519_dalek::SigningKey;

    fn msg(seed: u8, ts: u64) -> Message {
        UnsignedMessage {
            timestamp: ts,
            content: format!("m{ts}"),
        }
        .sign(&SigningKey::from_bytes(&[seed; 32]))
        .unwrap()
    }

    fn author(seed: u8) -> PublicKey {
        PublicKey::from(&SigningKey::from_bytes(&[seed; 32]))
    }

    #[test]
    fn write_then_parse_round_trips() {
        let ms = vec![msg(1, 1), msg(1, 2)];
        let prev = vec!["magnet:?xt=urn:btih:aa".to_owned()];
        let bytes = Archive::write(&prev, &ms).unwrap();
        assert!(bytes.starts_with(b"{\"format\":\"megatorrent-archive/1\""));
        let a = Archive::parse(&bytes, &author(1)).unwrap();
        assert_eq!(a.previous(), prev.as_slice());
        let got: Vec<Message> = a.entries().iter().map(|e| e.clone().unwrap()).collect();
        assert_eq!(got, ms);
        let empty = Archive::write(&[], &[]).unwrap();
        let a = Archive::parse(&empty, &author(1)).unwrap();
        assert!(a.previous().is_empty() && a.entries().is_empty());
    }

    #[test]
    fn bad_lines_are_reported_one_by_one() {
        let good = msg(1, 1);
        let foreign = msg(2, 2);
        let tampered = String::from_utf8(msg(1, 3).canonical_bytes().to_vec())
            .unwrap()
            .replace("m3", "m4");
        let mut bytes = Archive::write(&[], &[good.clone(), foreign]).unwrap();
        bytes.extend_from_slice(tampered.as_bytes());
        bytes.extend_from_slice(b"\n\n");
        let a = Archive::parse(&bytes, &author(1)).unwrap();
        let e = a.entries();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0], Ok(good));
        assert!(matches!(e[1], Err(MessageError::WrongAuthor { .. })));
        assert_eq!(e[2], Err(MessageError::BadSignature));
        assert!(e[3].is_err(), "an empty line is not a message");
    }

    #[test]
    fn headers_and_caps_are_enforced() {
        let a = author(1);
        for bad in [
            &b""[..],
            b"[]\n",
            b"{\"format\":\"other\"}\n",
            b"{\"format\":\"megatorrent-archive/1\",\"previous\":[1]}\n",
            b"{\"format\":\"megatorrent-archive/1\",\"previous\":[\"a b\"]}\n",
        ] {
            assert!(
                matches!(Archive::parse(bad, &a), Err(ArchiveError::Header(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = vec!["magnet:?x".to_owned(); Archive::MAX_PREVIOUS + 1];
        assert!(Archive::write(&many, &[]).is_err());
        let huge = vec![b'x'; Archive::MAX_BYTES + 1];
        assert!(matches!(
            Archive::parse(&huge, &a),
            Err(ArchiveError::TooLarge { .. })
        ));
        let mut lines = Archive::write(&[], &[]).unwrap();
        for _ in 0..=Archive::MAX_MESSAGES {
            lines.extend_from_slice(b"{}\n");
        }
        assert!(matches!(
            Archive::parse(&lines, &a),
            Err(ArchiveError::TooManyMessages { .. })
        ));
        let ms = vec![msg(1, 1); Archive::MAX_MESSAGES + 1];
        assert!(Archive::write(&[], &ms).is_err());
    }
}
