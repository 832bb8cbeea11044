//! Sealing and opening mailbox envelopes (see `docs/mail.md`).
//!
//! * HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
//!   `info` = [`HPKE_INFO`], empty AAD.
//! * The recipient's X25519 key is the `mailboxKey` its profile publishes (a random key
//!   pair, [`MailboxSecret`]), or else derived from its Ed25519 identity: the public key is
//!   mapped to Montgomery form ([`ed25519_dalek::VerifyingKey::to_montgomery`]); the secret
//!   is the Ed25519 secret scalar (clamped lower half of SHA-512 of the seed,
//!   [`ed25519_dalek::SigningKey::to_scalar_bytes`]). Both sides of X25519 then agree. The
//!   recipient tries its derived key and every mailbox secret it holds ([`open_with`]).
//! * Envelope: `0x01 ‖ enc (32 bytes) ‖ ciphertext`. Plaintext before sealing:
//!   `u32 BE length ‖ letter JSON ‖ zero padding` up to the next bucket (a power of two,
//!   512..=[`MAX_BUCKET`] bytes), so the server sees only the bucket.
//! * Letter JSON: `{from, to, timestamp, content, replyTo?, signature}`; `signature` is the
//!   sender's Ed25519 over [`LETTER_CONTEXT`] `‖ "\n" ‖` JCS of the other fields. Including
//!   `to` stops a recipient from re-sealing a signed letter to someone else as if sent to them.

use ed25519_dalek::{Signer, SigningKey};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use crate::proto::{MailboxKey, PublicKey, Signature};

/// HPKE `info` for mailbox envelopes.
pub const HPKE_INFO: &[u8] = b"megatorrent-mail-v1";
/// First line of the signed letter bytes.
pub const LETTER_CONTEXT: &str = "megatorrent-letter-v1";
/// Envelope format version byte.
pub const VERSION: u8 = 1;
/// Smallest padding bucket.
pub const MIN_BUCKET: usize = 512;
/// Largest padding bucket: an envelope is at most `1 + 32 + MAX_BUCKET + 16` bytes, below
/// the server's default 64 KiB cap.
pub const MAX_BUCKET: usize = 32 * 1024;
const ENC_LEN: usize = 32;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    /// The letter does not fit the largest bucket.
    #[error("message too long: {size} bytes, at most {max} after encoding")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A key is not a valid Ed25519 point.
    #[error("not a valid public key")]
    BadKey,
    /// The envelope is not in the expected format or does not decrypt with any key tried.
    #[error("the envelope does not decrypt with the identity key or a stored mailbox key")]
    Undecryptable,
    /// The decrypted letter is malformed.
    #[error("malformed letter: {0}")]
    Malformed(String),
    /// The sender's signature does not verify.
    #[error("the sender's signature does not verify")]
    BadSignature,
    /// The letter was signed for another recipient.
    #[error("the letter was addressed to another key")]
    WrongRecipient,
}

/// The signed fields of a letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Unsigned {
    from: PublicKey,
    to: PublicKey,
    timestamp: u64,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Signed {
    #[serde(flatten)]
    letter: Unsigned,
    signature: Signature,
}

/// A verified letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The letter id ([`letter_id`] of its signature): known to sender and recipient alike,
    /// used by `replyTo`.
    pub id: String,
    /// The sender (its signature verified).
    pub from: PublicKey,
    /// Sender's time, ms since the epoch.
    pub timestamp: u64,
    /// The text.
    pub content: String,
    /// The id of the letter this answers, if any.
    pub reply_to: Option<String>,
}

fn signed_bytes(u: &Unsigned) -> Result<Vec<u8>, MailError> {
    let jcs = serde_jcs::to_vec(u).map_err(|e| MailError::Malformed(e.to_string()))?;
    let mut out = format!("{LETTER_CONTEXT}\n").into_bytes();
    out.extend_from_slice(&jcs);
    Ok(out)
}

/// The OS random generator behind `hpke`'s `rand_core` (0.9) traits: `rand` 0.8's
/// `OsRng`, which panics only if the OS cannot give randomness at all.
struct OsRng09;

impl hpke::rand_core::RngCore for OsRng09 {
    fn next_u32(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut rand::rngs::OsRng)
    }
    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut rand::rngs::OsRng)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, dst);
    }
}

impl hpke::rand_core::CryptoRng for OsRng09 {}

/// Length of a letter id in hex characters.
pub const LETTER_ID_CHARS: usize = 32;

/// A letter's id: the first 16 bytes of SHA-256 of its signature, as 32 lowercase hex
/// characters. The sender learns it when sealing, the recipient when opening; the server
/// never sees it.
#[must_use]
pub fn letter_id(signature: &Signature) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(signature.as_bytes());
    hex::encode(digest.get(..LETTER_ID_CHARS / 2).unwrap_or_default())
}

/// The padding bucket for `len` bytes of framed plaintext.
#[must_use]
pub fn bucket(len: usize) -> usize {
    len.max(MIN_BUCKET).next_power_of_two()
}

/// The recipient's X25519 public key derived from its Ed25519 key.
pub fn x25519_public(key: &PublicKey) -> Result<[u8; 32], MailError> {
    let vk = key.verifying_key().map_err(|_| MailError::BadKey)?;
    Ok(vk.to_montgomery().to_bytes())
}

/// The X25519 secret derived from an Ed25519 signing key.
#[must_use]
pub fn x25519_secret(key: &SigningKey) -> [u8; 32] {
    key.to_scalar_bytes()
}

/// The secret half of a mailbox key (X25519), for a profile's `mailboxKey`. `Debug` shows
/// only the public half; the bytes are wiped when dropped.
#[derive(Clone)]
pub struct MailboxSecret([u8; 32]);

impl MailboxSecret {
    /// A fresh random key pair (HPKE's X25519 key generation from the OS generator).
    #[must_use]
    pub fn generate() -> Self {
        let (sk, _) = <X25519HkdfSha256 as hpke::Kem>::gen_keypair(&mut OsRng09);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&sk.to_bytes());
        Self(bytes)
    }

    /// Wrap stored secret bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes (to store them; never to log).
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key to publish as `mailboxKey`.
    #[must_use]
    pub fn public(&self) -> MailboxKey {
        let mut out = [0u8; 32];
        // `from_bytes` fails only for a length other than 32, which this is not; the
        // all-zero fallback is a key nothing can be sealed to (`seal` refuses it).
        if let Ok(sk) = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&self.0) {
            out.copy_from_slice(&<X25519HkdfSha256 as hpke::Kem>::sk_to_pk(&sk).to_bytes());
        }
        MailboxKey::from(out)
    }
}

impl Drop for MailboxSecret {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

impl std::fmt::Debug for MailboxSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailboxSecret(public {})", self.public())
    }
}

/// A signed and padded letter, not sealed yet ([`sign_letter`], then [`Self::seal`]): the
/// sender can check the size before asking for the recipient's profile.
pub struct SignedLetter {
    to: PublicKey,
    id: String,
    plain: Vec<u8>,
}

impl SignedLetter {
    /// The letter's id ([`letter_id`]).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seal to `mailbox_key` (the recipient's profile's), or with `None` to the key derived
    /// from the recipient's identity. A key HPKE cannot seal to (a low-order point) is
    /// [`MailError::BadKey`].
    pub fn seal(&self, mailbox_key: Option<&MailboxKey>) -> Result<Vec<u8>, MailError> {
        let x25519 = match mailbox_key {
            Some(k) => *k.as_bytes(),
            None => x25519_public(&self.to)?,
        };
        let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&x25519)
            .map_err(|_| MailError::BadKey)?;
        let (enc, ct) =
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
                &OpModeS::Base,
                &pk,
                HPKE_INFO,
                &self.plain,
                b"",
                &mut OsRng09,
            )
            .map_err(|_| MailError::BadKey)?;
        let mut out = Vec::with_capacity(1 + ENC_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// Whether letters can be sealed to `key` (HPKE refuses low-order points).
#[must_use]
pub fn usable_mailbox_key(key: &MailboxKey) -> bool {
    let probe = SignedLetter {
        to: PublicKey::from([0; 32]),
        id: String::new(),
        plain: Vec::new(),
    };
    probe.seal(Some(key)).is_ok()
}

/// Sign `content` from `sender` to `to` (its Ed25519 key) and pad it; refuses a letter over
/// the largest bucket.
pub fn sign_letter(
    sender: &SigningKey,
    to: &PublicKey,
    timestamp: u64,
    content: &str,
    reply_to: Option<&str>,
) -> Result<SignedLetter, MailError> {
    let letter = Unsigned {
        from: PublicKey::from(sender),
        to: *to,
        timestamp,
        content: content.to_owned(),
        reply_to: reply_to.map(str::to_owned),
    };
    let signature: Signature = sender.sign(&signed_bytes(&letter)?).into();
    let id = letter_id(&signature);
    let json = serde_json::to_vec(&Signed { letter, signature })
        .map_err(|e| MailError::Malformed(e.to_string()))?;
    let framed = json.len().saturating_add(4);
    if framed > MAX_BUCKET {
        return Err(MailError::TooLarge {
            size: framed,
            max: MAX_BUCKET,
        });
    }
    let len = u32::try_from(json.len()).map_err(|_| MailError::TooLarge {
        size: framed,
        max: MAX_BUCKET,
    })?;
    let mut plain = Vec::with_capacity(bucket(framed));
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(&json);
    plain.resize(bucket(framed), 0);
    Ok(SignedLetter { to: *to, id, plain })
}

/// Sign and seal `content` from `sender` to `to` (its Ed25519 key, derived X25519 key).
pub fn seal(
    sender: &SigningKey,
    to: &PublicKey,
    timestamp: u64,
    content: &str,
    reply_to: Option<&str>,
) -> Result<Vec<u8>, MailError> {
    seal_with_id(sender, to, timestamp, content, reply_to).map(|(envelope, _)| envelope)
}

/// Like [`seal`], also returning the letter's id ([`letter_id`]).
pub fn seal_with_id(
    sender: &SigningKey,
    to: &PublicKey,
    timestamp: u64,
    content: &str,
    reply_to: Option<&str>,
) -> Result<(Vec<u8>, String), MailError> {
    let letter = sign_letter(sender, to, timestamp, content, reply_to)?;
    Ok((letter.seal(None)?, letter.id))
}

/// Open an envelope with the key derived from the recipient's identity, verify the
/// sender's signature and that the letter is addressed to this key.
pub fn open(recipient: &SigningKey, envelope: &[u8]) -> Result<Letter, MailError> {
    open_with(recipient, &[], envelope)
}

/// Like [`open`], trying the derived key and then each of `mailbox` (the secrets of the
/// mailbox keys this recipient published).
pub fn open_with(
    recipient: &SigningKey,
    mailbox: &[MailboxSecret],
    envelope: &[u8],
) -> Result<Letter, MailError> {
    let (&version, rest) = envelope.split_first().ok_or(MailError::Undecryptable)?;
    if version != VERSION || rest.len() < ENC_LEN {
        return Err(MailError::Undecryptable);
    }
    let (enc, ct) = rest.split_at(ENC_LEN);
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| MailError::Undecryptable)?;
    let derived = MailboxSecret(x25519_secret(recipient));
    let plain = std::iter::once(&derived)
        .chain(mailbox)
        .find_map(|secret| {
            let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&secret.0).ok()?;
            hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                &OpModeR::Base,
                &sk,
                &enc,
                HPKE_INFO,
                ct,
                b"",
            )
            .ok()
        })
        .ok_or(MailError::Undecryptable)?;
    let bad = |m: &str| MailError::Malformed(m.to_owned());
    let (len, body) = plain.split_at_checked(4).ok_or_else(|| bad("short"))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let json = body
        .get(..len)
        .ok_or_else(|| bad("length beyond padding"))?;
    let signed: Signed =
        serde_json::from_slice(json).map_err(|e| MailError::Malformed(e.to_string()))?;
    let letter = signed.letter;
    letter.from.verifying_key().map_err(|_| MailError::BadKey)?;
    if !letter
        .from
        .verify_strict(&signed_bytes(&letter)?, &signed.signature)
    {
        return Err(MailError::BadSignature);
    }
    if letter.to != PublicKey::from(recipient) {
        return Err(MailError::WrongRecipient);
    }
    Ok(Letter {
        id: letter_id(&signed.signature),
        from: letter.from,
        timestamp: letter.timestamp,
        content: letter.content,
        reply_to: letter.reply_to,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sk(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn sealed_letters_open_only_for_the_recipient() {
        let (a, b, c) = (sk(1), sk(2), sk(3));
        let env = seal(&a, &PublicKey::from(&b), 42, "hello B", Some("x")).unwrap();
        assert_eq!(env.len(), 1 + 32 + 512 + 16);
        assert!(!env.windows(7).any(|w| w == b"hello B"));
        let pa = PublicKey::from(&a).to_hex();
        assert!(!hex::encode(&env).contains(&pa));
        let got = open(&b, &env).unwrap();
        assert_eq!(got.id.len(), LETTER_ID_CHARS);
        assert_eq!(
            got,
            Letter {
                id: got.id.clone(),
                from: PublicKey::from(&a),
                timestamp: 42,
                content: "hello B".into(),
                reply_to: Some("x".into()),
            }
        );
        assert_eq!(open(&c, &env), Err(MailError::Undecryptable));
        // The sender knows the same id.
        let (env2, id) = seal_with_id(&a, &PublicKey::from(&b), 42, "hello B", None).unwrap();
        assert_eq!(open(&b, &env2).unwrap().id, id);
        let mut bad = env.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(open(&b, &bad), Err(MailError::Undecryptable));
        assert_eq!(open(&b, b""), Err(MailError::Undecryptable));
    }

    #[test]
    fn lengths_are_bucketed() {
        let (a, b) = (sk(1), sk(2));
        let to = PublicKey::from(&b);
        let len = |n: usize| seal(&a, &to, 1, &"x".repeat(n), None).unwrap().len();
        assert_eq!(len(1), len(50));
        assert_eq!(len(1), 1 + 32 + 512 + 16);
        assert_eq!(len(300), 1 + 32 + 1024 + 16);
        assert_eq!(len(20_000), 1 + 32 + MAX_BUCKET + 16);
        assert!(matches!(
            seal(&a, &to, 1, &"x".repeat(MAX_BUCKET), None),
            Err(MailError::TooLarge { .. })
        ));
    }

    #[test]
    fn mailbox_keys_seal_and_only_their_secret_opens() {
        let (a, b) = (sk(1), sk(2));
        let (secret, other) = (MailboxSecret::generate(), MailboxSecret::generate());
        let mk = secret.public();
        assert_ne!(mk, other.public());
        assert_eq!(MailboxSecret::from_bytes(*secret.as_bytes()).public(), mk);
        assert!(!format!("{secret:?}").contains(&hex::encode(secret.as_bytes())));
        let letter = sign_letter(&a, &PublicKey::from(&b), 7, "via the mailbox key", None).unwrap();
        let env = letter.seal(Some(&mk)).unwrap();
        assert_eq!(env.len(), 1 + 32 + 512 + 16);
        assert_eq!(open(&b, &env), Err(MailError::Undecryptable));
        let only_other = [other.clone()];
        assert_eq!(
            open_with(&b, &only_other, &env),
            Err(MailError::Undecryptable)
        );
        let got = open_with(&b, &[other, secret.clone()], &env).unwrap();
        assert_eq!(got.id, letter.id());
        assert_eq!(got.content, "via the mailbox key");
        assert_eq!(got.from, PublicKey::from(&a));
        // Letters sealed to the derived key still open when mailbox secrets are held.
        let derived = letter.seal(None).unwrap();
        assert!(open_with(&b, std::slice::from_ref(&secret), &derived).is_ok());
        // Holding the mailbox secret is not enough: the signed `to` must be our key.
        assert_eq!(
            open_with(&sk(3), &[secret], &env),
            Err(MailError::WrongRecipient)
        );
        assert!(usable_mailbox_key(&mk));
        assert!(!usable_mailbox_key(&MailboxKey::from([0; 32])));
        assert_eq!(
            letter.seal(Some(&MailboxKey::from([0; 32]))),
            Err(MailError::BadKey)
        );
    }

    /// A letter signed for B but re-sealed by B to C is refused by C; a forged `from` fails.
    #[test]
    fn forwarding_and_forgery_are_detected() {
        let (a, b, c) = (sk(1), sk(2), sk(3));
        let forged_to = |letter: Unsigned, signer: &SigningKey, seal_to: &PublicKey| {
            let signature: Signature = signer.sign(&signed_bytes(&letter).unwrap()).into();
            let json = serde_json::to_vec(&Signed { letter, signature }).unwrap();
            let mut plain = (json.len() as u32).to_be_bytes().to_vec();
            plain.extend_from_slice(&json);
            plain.resize(bucket(plain.len()), 0);
            let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(
                &x25519_public(seal_to).unwrap(),
            )
            .unwrap();
            let (enc, ct) = hpke::single_shot_seal::<
                ChaCha20Poly1305,
                HkdfSha256,
                X25519HkdfSha256,
                _,
            >(&OpModeS::Base, &pk, HPKE_INFO, &plain, b"", &mut OsRng09)
            .unwrap();
            let mut out = vec![VERSION];
            out.extend_from_slice(&enc.to_bytes());
            out.extend_from_slice(&ct);
            out
        };
        let letter = |from: &SigningKey, to: &SigningKey| Unsigned {
            from: PublicKey::from(from),
            to: PublicKey::from(to),
            timestamp: 1,
            content: "hi".into(),
            reply_to: None,
        };
        let to_c = PublicKey::from(&c);
        let env = forged_to(letter(&a, &b), &a, &to_c);
        assert_eq!(open(&c, &env), Err(MailError::WrongRecipient));
        let env = forged_to(letter(&a, &c), &b, &to_c);
        assert_eq!(open(&c, &env), Err(MailError::BadSignature));
    }
}
