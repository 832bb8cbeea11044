//! Hashcash-style proof-of-work stamps for writes.
//!
//! A client sends `X-Megatorrent-PoW: <stamp hex>` with a write. The stamp is valid for a
//! server nonce `N` (advertised in `/v1/info`) and difficulty `D` when
//! `SHA-256(N ‖ SHA-256(body) ‖ stamp)` starts with at least `D` zero bits. The stamp binds
//! the work to this exact body, so one solution cannot be reused for other writes.

use sha2::{Digest, Sha256};

/// The request header carrying the stamp.
pub const HEADER: &str = "x-megatorrent-pow";

/// Longest stamp accepted, in bytes (64 hex characters).
pub const MAX_STAMP_BYTES: usize = 32;

/// Length of a server nonce in bytes.
pub const NONCE_BYTES: usize = 16;

/// Highest difficulty anyone can be asked for.
pub const MAX_DIFFICULTY: u8 = 32;

/// Why a stamp header was refused before hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// Not 2..=64 hex characters (either case).
    #[error("the proof-of-work stamp must be 1 to {MAX_STAMP_BYTES} bytes of hex")]
    Malformed,
}

/// SHA-256 of the request body.
#[must_use]
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// `SHA-256(nonce ‖ body_digest ‖ stamp)`.
#[must_use]
pub fn stamp_hash(nonce: &[u8], body_digest: &[u8; 32], stamp: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(body_digest);
    h.update(stamp);
    h.finalize().into()
}

/// Number of leading zero bits of `hash`.
#[must_use]
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut n = 0;
    for b in hash {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Whether `stamp` meets `difficulty` for `nonce` and the body with `body_digest`.
#[must_use]
pub fn meets(nonce: &[u8], body_digest: &[u8; 32], stamp: &[u8], difficulty: u8) -> bool {
    leading_zero_bits(&stamp_hash(nonce, body_digest, stamp)) >= u32::from(difficulty)
}

/// Decode a stamp header value.
pub fn parse_stamp(text: &str) -> Result<Vec<u8>, StampError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 2 * MAX_STAMP_BYTES {
        return Err(StampError::Malformed);
    }
    hex::decode(text).map_err(|_| StampError::Malformed)
}

/// Search stamps `start, start+1, …` (8-byte big-endian counters) for one meeting
/// `difficulty`; give up after `max_tries` attempts. Returns the stamp bytes.
#[must_use]
pub fn solve(
    nonce: &[u8],
    body_digest: &[u8; 32],
    difficulty: u8,
    start: u64,
    max_tries: u64,
) -> Option<[u8; 8]> {
    // Hash the fixed prefix once and clone the state for each try.
    let mut prefix = Sha256::new();
    prefix.update(nonce);
    prefix.update(body_digest);
    let want = u32::from(difficulty);
    (0..max_tries).find_map(|i| {
        let stamp = start.wrapping_add(i).to_be_bytes();
        let hash: [u8; 32] = prefix.clone().chain_update(stamp).finalize().into();
        (leading_zero_bits(&hash) >= want).then_some(stamp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_leading_zero_bits() {
        assert_eq!(leading_zero_bits(&[0xff]), 0);
        assert_eq!(leading_zero_bits(&[0x00, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
        assert_eq!(leading_zero_bits(&[0x01]), 7);
    }

    #[test]
    fn solved_stamps_verify_and_bind_the_body() {
        let nonce = [7u8; NONCE_BYTES];
        let d = body_digest(b"hello");
        let stamp = solve(&nonce, &d, 12, 0, 1 << 24).unwrap();
        assert!(meets(&nonce, &d, &stamp, 12));
        assert!(meets(&nonce, &d, &stamp, 0));
        let other = body_digest(b"hellp");
        // A different body or nonce almost surely fails (fixed inputs: deterministic).
        assert!(!meets(&nonce, &other, &stamp, 12) || !meets(&[8; 16], &d, &stamp, 12));
        let hexed = hex::encode(stamp);
        assert_eq!(parse_stamp(&hexed).unwrap(), stamp);
        assert_eq!(parse_stamp(&hexed.to_uppercase()).unwrap(), stamp);
        for bad in ["", "abc", "zz", &"00".repeat(33)] {
            assert_eq!(parse_stamp(bad), Err(StampError::Malformed));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn low_difficulty_always_solves(body in prop::collection::vec(any::<u8>(), 0..64), d in 0u8..8) {
            let nonce = [1u8; NONCE_BYTES];
            let digest = body_digest(&body);
            let stamp = solve(&nonce, &digest, d, 0, 1 << 20).unwrap();
            prop_assert!(meets(&nonce, &digest, &stamp, d));
        }
    }
}
