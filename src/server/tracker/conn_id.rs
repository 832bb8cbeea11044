//! BEP 15 connection ids that cannot be forged or replayed after they expire.
//!
//! An id is the first 8 bytes of HMAC-SHA256(key, bucket ‖ client IP), where `bucket` is
//! the number of [`ConnectionIds::BUCKET_SECS`]-second periods since the tracker started and
//! `key` is 32 random bytes drawn at start-up and never stored. An id is accepted while its
//! bucket is the current or the previous one, so it lives between one and two buckets
//! (BEP 15 asks clients to use an id for at most a minute, and trackers to accept it for
//! up to two). Nothing is kept per client: verifying costs at most two MAC computations.
//!
//! Knowing an id reveals nothing about the key, ids for other addresses or buckets cannot be
//! derived from it, and a restart invalidates every id. The MAC covers the IP but not the
//! port, so a client behind a NAT that changes its source port keeps its id.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::time::Instant;

use crate::proto::udp::ConnectionId;

type HmacSha256 = Hmac<Sha256>;

/// Mints and verifies connection ids (see the module docs).
#[derive(Clone)]
pub struct ConnectionIds {
    /// The MAC, already keyed (cloned per computation to skip re-keying).
    mac: HmacSha256,
    epoch: Instant,
}

impl std::fmt::Debug for ConnectionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionIds").finish_non_exhaustive()
    }
}

impl ConnectionIds {
    /// Length of a time bucket, in seconds.
    pub const BUCKET_SECS: u64 = 60;

    /// A minter with a fresh random key.
    #[must_use]
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self::with_key(&key)
    }

    /// A minter with a given key (for tests).
    #[must_use]
    pub fn with_key(key: &[u8; 32]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty key
        // rather than panic if that ever changed.
        let mac = HmacSha256::new_from_slice(key)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        Self {
            mac,
            epoch: Instant::now(),
        }
    }

    fn bucket(&self) -> u64 {
        self.epoch.elapsed().as_secs() / Self::BUCKET_SECS
    }

    fn mac_for(&self, ip: IpAddr, bucket: u64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(&bucket.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    mac.update(&[4]);
                    mac.update(&v4.octets());
                }
                None => {
                    mac.update(&[6]);
                    mac.update(&v6.octets());
                }
            },
        }
        mac
    }

    fn id_at(&self, ip: IpAddr, bucket: u64) -> ConnectionId {
        let tag = self.mac_for(ip, bucket).finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag[..8]);
        ConnectionId(u64::from_be_bytes(id))
    }

    /// A connection id for a client at `ip`, valid for one to two buckets.
    #[must_use]
    pub fn mint(&self, ip: IpAddr) -> ConnectionId {
        self.id_at(ip, self.bucket())
    }

    /// Whether `id` was minted for `ip` in the current or the previous bucket (compared in
    /// constant time).
    #[must_use]
    pub fn verify(&self, id: ConnectionId, ip: IpAddr) -> bool {
        let now = self.bucket();
        let bytes = id.0.to_be_bytes();
        let check = |bucket| {
            self.mac_for(ip, bucket)
                .verify_truncated_left(&bytes)
                .is_ok()
        };
        check(now) || now.checked_sub(1).is_some_and(check)
    }
}

impl Default for ConnectionIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test(start_paused = true)]
    async fn ids_live_one_to_two_buckets_and_are_bound_to_the_ip() {
        let ids = ConnectionIds::with_key(&[7; 32]);
        let id = ids.mint(A);
        assert!(ids.verify(id, A));
        assert!(!ids.verify(id, B));
        // The IPv4-mapped form of the same address is the same client.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(ids.verify(id, mapped));
        assert!(!ids.verify(id, IpAddr::V6(Ipv6Addr::LOCALHOST)));

        tokio::time::advance(Duration::from_secs(ConnectionIds::BUCKET_SECS)).await;
        assert!(ids.verify(id, A), "previous bucket is still accepted");
        tokio::time::advance(Duration::from_secs(ConnectionIds::BUCKET_SECS)).await;
        assert!(!ids.verify(id, A), "two buckets later the id has expired");
        assert!(ids.verify(ids.mint(A), A));
    }

    #[tokio::test(start_paused = true)]
    async fn ids_depend_on_the_key_and_cannot_be_guessed() {
        let one = ConnectionIds::with_key(&[1; 32]);
        let two = ConnectionIds::with_key(&[2; 32]);
        assert_ne!(one.mint(A), two.mint(A));
        assert!(!two.verify(one.mint(A), A));
        assert!(!one.verify(ConnectionId(0), A));
        assert!(!one.verify(ConnectionId(crate::proto::udp::PROTOCOL_ID), A));
        // Fresh random keys differ.
        assert_ne!(ConnectionIds::new().mint(A), ConnectionIds::new().mint(A));
    }
}
