//! Channel invitations: a direct message (an ordinary sealed, signed letter) whose content
//! is the JSON object
//! `{"format":"megatorrent-channel-invite/1","channel":"<64 hex>","name":"news","readKey":"<64 hex>"}`.
//! `inbox` recognises it (only after the letter decrypted and its sender's signature
//! verified), stores the read key and shows a line saying so instead of the content.

use serde::{Deserialize, Serialize};

use super::seal::ReadKey;
use super::store::{self, Accepted};
use crate::client::display::printable;
use crate::client::identity::Home;
use crate::client::mail::Letter;
use crate::proto::PublicKey;

/// The `format` member of an invitation.
pub const INVITE_FORMAT: &str = "megatorrent-channel-invite/1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Invite {
    format: String,
    channel: String,
    name: String,
    read_key: String,
}

#[derive(Deserialize)]
struct Format {
    format: Option<serde_json::Value>,
}

/// The content of an invitation to `channel` (called `name`) with `read_key`.
#[must_use]
pub fn content(channel: &PublicKey, name: &str, read_key: &ReadKey) -> String {
    let v = Invite {
        format: INVITE_FORMAT.to_owned(),
        channel: channel.to_hex(),
        name: name.to_owned(),
        read_key: read_key.to_hex(),
    };
    // A struct of strings always serializes.
    serde_json::to_string(&v).unwrap_or_default()
}

/// If `letter` is an invitation, store its read key and return the line to show instead of
/// its content (never the key); `None` for an ordinary letter.
pub fn receive(home: &Home, letter: &Letter) -> Option<String> {
    let text = letter.content.trim();
    if !text.starts_with('{') {
        return None;
    }
    let tagged = serde_json::from_str::<Format>(text)
        .ok()
        .and_then(|f| f.format)
        .is_some_and(|f| f == INVITE_FORMAT);
    if !tagged {
        return None;
    }
    let Ok(invite) = serde_json::from_str::<Invite>(text) else {
        return Some("a malformed channel invitation (ignored)".into());
    };
    let (Ok(channel), Ok(key)) = (
        PublicKey::from_hex(&invite.channel),
        ReadKey::from_hex(&invite.read_key),
    ) else {
        return Some("a malformed channel invitation (ignored)".into());
    };
    let what = format!(
        "invitation to private channel {:?} ({channel})",
        printable(&invite.name)
    );
    Some(match store::accept(home, &channel, &invite.name, &key) {
        Ok(Accepted::Stored) => {
            format!("{what}: read key stored; `megatorrent find {channel}` shows it")
        }
        Ok(Accepted::Known) => format!("{what}: this home already has its read key"),
        Ok(Accepted::Conflict) => {
            format!("{what}: IGNORED, this home already has a different read key for this channel")
        }
        Err(e) => format!("{what}: could not store the read key ({e}); ask for it again"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn letter(content: &str) -> Letter {
        Letter {
            id: "ab".repeat(16),
            from: PublicKey::from(&SigningKey::from_bytes(&[1; 32])),
            timestamp: 0,
            content: content.into(),
            reply_to: None,
        }
    }

    #[test]
    fn invitations_are_recognised_and_stored_once() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path());
        let channel = PublicKey::from(&SigningKey::from_bytes(&[2; 32]));
        let key = ReadKey::generate();
        let text = content(&channel, "news", &key);
        assert!(receive(&home, &letter("hello")).is_none());
        assert!(receive(&home, &letter("{\"a\":1}")).is_none());
        let line = receive(&home, &letter(&text)).unwrap();
        assert!(line.contains("read key stored"), "{line}");
        assert!(!line.contains(&key.to_hex()), "{line}");
        assert_eq!(store::read_key_for(&home, &channel).unwrap(), Some(key));
        let again = receive(&home, &letter(&text)).unwrap();
        assert!(again.contains("already has its read key"), "{again}");
        let other = content(&channel, "news", &ReadKey::generate());
        assert!(receive(&home, &letter(&other)).unwrap().contains("IGNORED"));
        let bad = text.replace("\"name\"", "\"nom\"");
        assert!(receive(&home, &letter(&bad)).unwrap().contains("malformed"));
    }
}
