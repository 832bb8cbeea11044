//! Fixed-size binary identifiers written as lowercase hex on the wire.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a hex identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string had the wrong number of characters.
    #[error("expected {expected} hex characters, got {got}")]
    Length {
        /// Characters required.
        expected: usize,
        /// Characters given.
        got: usize,
    },
    /// A character outside `0-9a-f` (upper case is rejected where lowercase is required).
    #[error("not lowercase hex")]
    NotLowerHex,
    /// Upper- or lower-case hex was allowed, but a character was not hex at all.
    #[error("not hex")]
    NotHex,
    /// The 32 bytes are not a valid Ed25519 point.
    #[error("not a valid Ed25519 public key")]
    BadPoint,
}

/// Decode exactly `N` bytes from lowercase hex.
fn decode_lower<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != N * 2 {
        return Err(HexError::Length {
            expected: N * 2,
            got: s.len(),
        });
    }
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(HexError::NotLowerHex);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError::NotLowerHex)?;
    Ok(out)
}

/// Decode exactly `N` bytes from hex of either case.
fn decode_any_case<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != N * 2 {
        return Err(HexError::Length {
            expected: N * 2,
            got: s.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError::NotHex)?;
    Ok(out)
}

macro_rules! hex_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Parse strictly: exactly the right length, lowercase hex only.
            pub fn from_hex(s: &str) -> Result<Self, HexError> {
                decode_lower::<$len>(s).map(Self)
            }

            /// Parse hex of either case (for compatibility formats that allow it).
            pub fn from_hex_any_case(s: &str) -> Result<Self, HexError> {
                decode_any_case::<$len>(s).map(Self)
            }

            /// The raw bytes.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex, as written on the wire.
            #[must_use]
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(b: [u8; $len]) -> Self {
                Self(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_newtype!(
    /// An Ed25519 public key: 32 bytes, 64 lowercase hex characters on the wire.
    ///
    /// Parsing checks only the encoding; [`PublicKey::verifying_key`] checks the point.
    PublicKey,
    32
);
hex_newtype!(
    /// An Ed25519 signature: 64 bytes, 128 lowercase hex characters on the wire.
    Signature,
    64
);
hex_newtype!(
    /// An X25519 public key a profile names for sealed mail (`mailboxKey`): 32 bytes, 64
    /// lowercase hex characters on the wire.
    MailboxKey,
    32
);
hex_newtype!(
    /// A BitTorrent v1 info-hash: 20 bytes, 40 lowercase hex characters on the wire.
    InfoHash,
    20
);

impl PublicKey {
    /// The Ed25519 verifying key, or an error if the bytes are not a valid point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, HexError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| HexError::BadPoint)
    }

    /// Verify `sig` over `msg` with `verify_strict` (rejects small-order keys and
    /// non-canonical signatures). Returns `false` on any failure.
    #[must_use]
    pub fn verify_strict(&self, msg: &[u8], sig: &Signature) -> bool {
        let Ok(vk) = self.verifying_key() else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify_strict(msg, &sig).is_ok()
    }
}

impl From<&ed25519_dalek::SigningKey> for PublicKey {
    fn from(sk: &ed25519_dalek::SigningKey) -> Self {
        Self(sk.verifying_key().to_bytes())
    }
}

impl From<ed25519_dalek::Signature> for Signature {
    fn from(s: ed25519_dalek::Signature) -> Self {
        Self(s.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_hex_rejects_upper_case_and_bad_length() {
        let lower = "ab".repeat(32);
        assert!(PublicKey::from_hex(&lower).is_ok());
        assert_eq!(
            PublicKey::from_hex(&"AB".repeat(32)),
            Err(HexError::NotLowerHex)
        );
        assert!(PublicKey::from_hex_any_case(&"AB".repeat(32)).is_ok());
        assert_eq!(
            PublicKey::from_hex("abc"),
            Err(HexError::Length {
                expected: 64,
                got: 3
            })
        );
        assert_eq!(
            InfoHash::from_hex_any_case(&"zz".repeat(20)),
            Err(HexError::NotHex)
        );
    }

    #[test]
    fn hex_round_trips() {
        let ih = InfoHash::from([7u8; 20]);
        assert_eq!(InfoHash::from_hex(&ih.to_hex()), Ok(ih));
        let json = serde_json::to_string(&ih).unwrap();
        assert_eq!(serde_json::from_str::<InfoHash>(&json).unwrap(), ih);
    }

    #[test]
    fn small_order_key_never_verifies() {
        // The identity point (small order) must be refused by verify_strict.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let pk = PublicKey::from(identity);
        let sig = Signature::from([0u8; 64]);
        assert!(!pk.verify_strict(b"anything", &sig));
    }
}
