//! Sealing for private channels: XChaCha20-Poly1305 under the channel's 32-byte read key.
//!
//! * A **sealed item** (what the manifest lists instead of a magnet) is
//!   [`ITEM_PREFIX`] ‖ base64url (no padding) of `nonce (24 bytes) ‖ ciphertext of the
//!   magnet`, at most [`MAX_ITEM_CHARS`] characters.
//! * A **sealed message file** (what the message torrent holds instead of the signed JSON)
//!   is `0x01 ‖ nonce (24 bytes) ‖ ciphertext of the canonical signed message`.
//!
//! Every nonce is fresh from the OS random number generator (24 bytes: random nonces are
//! safe). The associated data binds a version tag that differs between items and files
//! (so neither can be passed off as the other) and the channel's public key (so a sealed
//! item or file cannot be moved into another channel that shares the read key).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use crate::proto::{Message, PublicKey};

/// What every sealed manifest item starts with.
pub const ITEM_PREFIX: &str = "mtchan1:";
/// Longest magnet sealed into an item, in bytes.
pub const MAX_ITEM_PLAINTEXT: usize = 2048;
/// Longest sealed item, in characters (a sealed [`MAX_ITEM_PLAINTEXT`]-byte magnet).
pub const MAX_ITEM_CHARS: usize =
    ITEM_PREFIX.len() + (NONCE + MAX_ITEM_PLAINTEXT + TAG).div_ceil(3) * 4;
/// Largest sealed message file: a message document of at most
/// [`Message::MAX_DOCUMENT_BYTES`] plus the version byte, nonce and tag.
pub const MAX_FILE_BYTES: usize = 1 + NONCE + Message::MAX_DOCUMENT_BYTES + TAG;
/// The version byte of a sealed message file.
pub const FILE_VERSION: u8 = 1;

const NONCE: usize = 24;
const TAG: usize = 16;
const ITEM_AAD: &[u8] = b"megatorrent-channel-item-v1\0";
const FILE_AAD: &[u8] = b"megatorrent-channel-message-v1\0";

/// A channel's symmetric read key. `Debug` never shows it; it is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadKey([u8; 32]);

impl ReadKey {
    /// A fresh random key from the OS random number generator.
    #[must_use]
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Parse 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, SealError> {
        let mut k = [0u8; 32];
        if s.len() != 64 {
            return Err(SealError::BadKey);
        }
        hex::decode_to_slice(s, &mut k).map_err(|_| SealError::BadKey)?;
        Ok(Self(k))
    }

    /// The key as 64 lowercase hex characters (a secret: never log it).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

impl std::fmt::Debug for ReadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadKey(…)")
    }
}

impl Drop for ReadKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A read key is not 64 hex characters.
    #[error("a read key must be 64 hex characters")]
    BadKey,
    /// The item does not start with [`ITEM_PREFIX`].
    #[error("not a sealed item")]
    NotSealed,
    /// Over a size cap.
    #[error("over the size cap ({size} > {max} bytes)")]
    TooLarge {
        /// The size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not base64url, too short, or an unknown version.
    #[error("malformed ciphertext")]
    Malformed,
    /// The authentication tag does not verify: wrong key, wrong channel, or tampered.
    #[error("does not decrypt with this channel's read key (wrong key or tampered)")]
    Decrypt,
    /// The magnet inside is not UTF-8.
    #[error("the decrypted item is not text")]
    NotText,
}

fn aad(tag: &[u8], channel: &PublicKey) -> Vec<u8> {
    let mut a = tag.to_vec();
    a.extend_from_slice(channel.as_bytes());
    a
}

fn seal(key: &ReadKey, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Encryption into a Vec fails only on plaintexts beyond chacha20's 256 GiB counter
    // range; every caller caps its input far below that, so an empty ciphertext (which
    // never opens) cannot happen in practice.
    let ct = key
        .cipher()
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

fn open(key: &ReadKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE + TAG {
        return Err(SealError::Malformed);
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    key.cipher()
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| SealError::Decrypt)
}

/// Is `item` a sealed item (by its prefix)?
#[must_use]
pub fn is_sealed_item(item: &str) -> bool {
    item.starts_with(ITEM_PREFIX)
}

/// Seal `magnet` into a manifest item of `channel`.
pub fn seal_item(key: &ReadKey, channel: &PublicKey, magnet: &str) -> Result<String, SealError> {
    if magnet.len() > MAX_ITEM_PLAINTEXT {
        return Err(SealError::TooLarge {
            size: magnet.len(),
            max: MAX_ITEM_PLAINTEXT,
        });
    }
    let sealed = seal(key, &aad(ITEM_AAD, channel), magnet.as_bytes());
    Ok(format!("{ITEM_PREFIX}{}", B64.encode(sealed)))
}

/// Open a sealed manifest item of `channel` back into its magnet.
pub fn open_item(key: &ReadKey, channel: &PublicKey, item: &str) -> Result<String, SealError> {
    let body = item.strip_prefix(ITEM_PREFIX).ok_or(SealError::NotSealed)?;
    if item.len() > MAX_ITEM_CHARS {
        return Err(SealError::TooLarge {
            size: item.len(),
            max: MAX_ITEM_CHARS,
        });
    }
    let sealed = B64.decode(body).map_err(|_| SealError::Malformed)?;
    let plain = open(key, &aad(ITEM_AAD, channel), &sealed)?;
    String::from_utf8(plain).map_err(|_| SealError::NotText)
}

/// Seal a canonical signed message document into the bytes of a message torrent's file.
pub fn seal_file(
    key: &ReadKey,
    channel: &PublicKey,
    document: &[u8],
) -> Result<Vec<u8>, SealError> {
    if document.len() > Message::MAX_DOCUMENT_BYTES {
        return Err(SealError::TooLarge {
            size: document.len(),
            max: Message::MAX_DOCUMENT_BYTES,
        });
    }
    let mut out = vec![FILE_VERSION];
    out.extend_from_slice(&seal(key, &aad(FILE_AAD, channel), document));
    Ok(out)
}

/// Open a sealed message file of `channel` back into the signed message document (which
/// the caller still verifies).
pub fn open_file(key: &ReadKey, channel: &PublicKey, file: &[u8]) -> Result<Vec<u8>, SealError> {
    if file.len() > MAX_FILE_BYTES {
        return Err(SealError::TooLarge {
            size: file.len(),
            max: MAX_FILE_BYTES,
        });
    }
    match file.split_first() {
        Some((&FILE_VERSION, rest)) => open(key, &aad(FILE_AAD, channel), rest),
        _ => Err(SealError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn channel(seed: u8) -> PublicKey {
        PublicKey::from(&SigningKey::from_bytes(&[seed; 32]))
    }

    const MAGNET: &str = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=sealed-x.bin&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce";

    #[test]
    fn items_round_trip_and_hide_the_magnet() {
        let key = ReadKey::generate();
        let ch = channel(1);
        let item = seal_item(&key, &ch, MAGNET).unwrap();
        assert!(is_sealed_item(&item));
        assert!(
            !item.contains("btih") && !item.contains("announce"),
            "{item}"
        );
        assert!(!item.chars().any(|c| c.is_whitespace() || c.is_control()));
        assert!(item.len() <= MAX_ITEM_CHARS);
        assert_eq!(open_item(&key, &ch, &item).unwrap(), MAGNET);
        // A fresh nonce each time.
        assert_ne!(seal_item(&key, &ch, MAGNET).unwrap(), item);
        let longest = seal_item(&key, &ch, &"m".repeat(MAX_ITEM_PLAINTEXT)).unwrap();
        assert!(longest.len() <= MAX_ITEM_CHARS, "{}", longest.len());
        assert!(matches!(
            seal_item(&key, &ch, &"m".repeat(MAX_ITEM_PLAINTEXT + 1)),
            Err(SealError::TooLarge { .. })
        ));
    }

    #[test]
    fn files_round_trip() {
        let key = ReadKey::generate();
        let ch = channel(1);
        let doc = br#"{"content":"hello","publicKey":"ab"}"#;
        let file = seal_file(&key, &ch, doc).unwrap();
        assert_eq!(file[0], FILE_VERSION);
        assert!(!file.windows(5).any(|w| w == b"hello"));
        assert_eq!(open_file(&key, &ch, &file).unwrap(), doc);
    }

    #[test]
    fn a_wrong_key_does_not_open() {
        let (key, other) = (ReadKey::generate(), ReadKey::generate());
        let ch = channel(1);
        let item = seal_item(&key, &ch, MAGNET).unwrap();
        assert_eq!(open_item(&other, &ch, &item), Err(SealError::Decrypt));
        let file = seal_file(&key, &ch, b"doc").unwrap();
        assert_eq!(open_file(&other, &ch, &file), Err(SealError::Decrypt));
    }

    #[test]
    fn tampering_is_detected() {
        let key = ReadKey::generate();
        let ch = channel(1);
        let mut file = seal_file(&key, &ch, b"the document").unwrap();
        for i in [1, 25, file.len() - 1] {
            file[i] ^= 1;
            assert_eq!(
                open_file(&key, &ch, &file),
                Err(SealError::Decrypt),
                "byte {i}"
            );
            file[i] ^= 1;
        }
        file.pop();
        assert_eq!(open_file(&key, &ch, &file), Err(SealError::Decrypt));
        assert_eq!(open_file(&key, &ch, &[2; 64]), Err(SealError::Malformed));
        assert_eq!(open_file(&key, &ch, &[1; 10]), Err(SealError::Malformed));
        assert!(matches!(
            open_file(&key, &ch, &vec![1; MAX_FILE_BYTES + 1]),
            Err(SealError::TooLarge { .. })
        ));

        let item = seal_item(&key, &ch, MAGNET).unwrap();
        let mut bytes = item.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(open_item(&key, &ch, &tampered), Err(SealError::Decrypt));
        assert_eq!(
            open_item(&key, &ch, &format!("{item}*")),
            Err(SealError::Malformed)
        );
        assert_eq!(open_item(&key, &ch, MAGNET), Err(SealError::NotSealed));
        assert_eq!(
            open_item(
                &key,
                &ch,
                &format!("{ITEM_PREFIX}{}", "A".repeat(MAX_ITEM_CHARS))
            ),
            Err(SealError::TooLarge {
                size: ITEM_PREFIX.len() + MAX_ITEM_CHARS,
                max: MAX_ITEM_CHARS
            })
        );
    }

    #[test]
    fn ciphertexts_are_bound_to_their_channel_and_kind() {
        let key = ReadKey::generate();
        let (a, b) = (channel(1), channel(2));
        let item = seal_item(&key, &a, MAGNET).unwrap();
        assert_eq!(open_item(&key, &b, &item), Err(SealError::Decrypt));
        let file = seal_file(&key, &a, MAGNET.as_bytes()).unwrap();
        assert_eq!(open_file(&key, &b, &file), Err(SealError::Decrypt));
        // An item's ciphertext is not accepted as a file's, nor the other way round.
        let body = B64.decode(item.strip_prefix(ITEM_PREFIX).unwrap()).unwrap();
        let mut as_file = vec![FILE_VERSION];
        as_file.extend_from_slice(&body);
        assert_eq!(open_file(&key, &a, &as_file), Err(SealError::Decrypt));
        let as_item = format!("{ITEM_PREFIX}{}", B64.encode(&file[1..]));
        assert_eq!(open_item(&key, &a, &as_item), Err(SealError::Decrypt));
    }

    #[test]
    fn keys_parse_and_never_show_in_debug() {
        let key = ReadKey::generate();
        let hex = key.to_hex();
        assert_eq!(ReadKey::from_hex(&hex.to_uppercase()).unwrap(), key);
        assert!(!format!("{key:?}").contains(&hex));
        assert_eq!(ReadKey::from_hex("abc"), Err(SealError::BadKey));
        assert_eq!(ReadKey::from_hex(&"zz".repeat(32)), Err(SealError::BadKey));
    }
}
