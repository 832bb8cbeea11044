//! One torrent's peers: three insertion-ordered maps keyed by peer id (IPv4, IPv6, names),
//! with seeder counts, lazy purging and random sampling. Used under a shard lock only.

use std::net::{SocketAddrV4, SocketAddrV6};

use indexmap::IndexMap;
use rand::Rng;

use super::{AnnounceInput, Counts, KeyTag, Selection, Want};
use crate::proto::tracker::{PeerAddr, PeerId};
use crate::server::tracker::stats::Delta;

#[derive(Debug, Clone)]
struct Entry<A> {
    addr: A,
    /// Swarm-relative second at which the entry expires.
    expires: u32,
    seeder: bool,
    key: KeyTag,
}

type PeerMap<A> = IndexMap<PeerId, Entry<A>>;

#[derive(Debug, Default)]
pub(super) struct Torrent {
    v4: PeerMap<SocketAddrV4>,
    v6: PeerMap<SocketAddrV6>,
    names: PeerMap<PeerAddr>,
    pub(super) seeders: u32,
    pub(super) downloaded: u32,
    /// Swarm-relative second of the last lazy purge.
    pub(super) last_purge: Option<u32>,
}

/// Where a peer id currently lives in a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
    Name,
}

pub(super) fn family(addr: &PeerAddr) -> Family {
    match addr {
        PeerAddr::V4(_) => Family::V4,
        PeerAddr::V6(_) => Family::V6,
        PeerAddr::Onion { .. } | PeerAddr::I2p { .. } => Family::Name,
    }
}

/// What the swarm remembers about a peer that is being replaced or removed.
pub(super) struct Existing {
    pub(super) family: Family,
    pub(super) same_host: bool,
    pub(super) seeder: bool,
    pub(super) key: KeyTag,
}

impl Torrent {
    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.names.len()
    }

    pub(super) fn counts(&self) -> Counts {
        let total = u32::try_from(self.len()).unwrap_or(u32::MAX);
        Counts {
            complete: self.seeders,
            incomplete: total.saturating_sub(self.seeders),
        }
    }

    pub(super) fn find(&self, id: &PeerId, addr: &PeerAddr) -> Option<Existing> {
        let probe = |fam: Family| -> Option<Existing> {
            let (seeder, key, same_host) = match fam {
                Family::V4 => self.v4.get(id).map(|e| {
                    (
                        e.seeder,
                        e.key,
                        matches!(addr, PeerAddr::V4(a) if a.ip() == e.addr.ip()),
                    )
                })?,
                Family::V6 => self.v6.get(id).map(|e| {
                    (
                        e.seeder,
                        e.key,
                        matches!(addr, PeerAddr::V6(a) if a.ip() == e.addr.ip()),
                    )
                })?,
                Family::Name => self
                    .names
                    .get(id)
                    .map(|e| (e.seeder, e.key, same_name(&e.addr, addr)))?,
            };
            Some(Existing {
                family: fam,
                same_host,
                seeder,
                key,
            })
        };
        let own = family(addr);
        probe(own).or_else(|| {
            [Family::V4, Family::V6, Family::Name]
                .into_iter()
                .filter(|&f| f != own)
                .find_map(probe)
        })
    }

    pub(super) fn remove(&mut self, id: &PeerId, fam: Family) {
        match fam {
            Family::V4 => {
                self.v4.swap_remove(id);
            }
            Family::V6 => {
                self.v6.swap_remove(id);
            }
            Family::Name => {
                self.names.swap_remove(id);
            }
        }
    }

    /// Update an entry of `addr`'s family in place (the caller found it there).
    pub(super) fn refresh(
        &mut self,
        id: &PeerId,
        addr: &PeerAddr,
        expires: u32,
        seeder: bool,
        key: KeyTag,
    ) {
        fn set<A>(e: &mut Entry<A>, expires: u32, seeder: bool, key: KeyTag) {
            e.expires = expires;
            e.seeder = seeder;
            e.key = key;
        }
        match addr {
            PeerAddr::V4(a) => {
                if let Some(e) = self.v4.get_mut(id) {
                    e.addr = *a;
                    set(e, expires, seeder, key);
                }
            }
            PeerAddr::V6(a) => {
                if let Some(e) = self.v6.get_mut(id) {
                    e.addr = *a;
                    set(e, expires, seeder, key);
                }
            }
            PeerAddr::Onion { .. } | PeerAddr::I2p { .. } => {
                if let Some(e) = self.names.get_mut(id) {
                    if e.addr != *addr {
                        e.addr = addr.clone();
                    }
                    set(e, expires, seeder, key);
                }
            }
        }
    }

    pub(super) fn insert(
        &mut self,
        id: PeerId,
        addr: PeerAddr,
        expires: u32,
        seeder: bool,
        key: KeyTag,
    ) {
        match addr {
            PeerAddr::V4(a) => {
                self.v4.insert(id, entry(a, expires, seeder, key));
            }
            PeerAddr::V6(a) => {
                self.v6.insert(id, entry(a, expires, seeder, key));
            }
            name @ (PeerAddr::Onion { .. } | PeerAddr::I2p { .. }) => {
                self.names.insert(id, entry(name, expires, seeder, key));
            }
        }
    }

    /// Remove every peer; returns the change in seeders and leechers.
    pub(super) fn clear(&mut self) -> Delta {
        let c = self.counts();
        self.v4.clear();
        self.v6.clear();
        self.names.clear();
        self.seeders = 0;
        Delta {
            seeders: -i64::from(c.complete),
            leechers: -i64::from(c.incomplete),
            torrents: 0,
        }
    }

    /// Drop expired peers; returns the change in seeders and leechers.
    pub(super) fn purge(&mut self, now: u32) -> Delta {
        let before = self.counts();
        let seeders_gone = retain_live(&mut self.v4, now)
            + retain_live(&mut self.v6, now)
            + retain_live(&mut self.names, now);
        self.seeders = self.seeders.saturating_sub(seeders_gone);
        let after = self.counts();
        Delta {
            seeders: i64::from(after.complete) - i64::from(before.complete),
            leechers: i64::from(after.incomplete) - i64::from(before.incomplete),
            torrents: 0,
        }
    }

    pub(super) fn select(
        &self,
        a: &AnnounceInput,
        now: u32,
        rng: &mut impl Rng,
        out: &mut Selection,
    ) {
        let n = a.numwant;
        let me = &a.peer_id;
        let v6_first = matches!(a.addr, PeerAddr::V6(_));
        // Size the lists once (a reused selection keeps its capacity anyway).
        let (v4, v6, names) = (self.v4.len(), self.v6.len(), self.names.len());
        match a.want {
            Want::V4 => out.v4.reserve(n.min(v4)),
            Want::V6 => out.v6.reserve(n.min(v6)),
            Want::Compact => {
                out.v4.reserve(n.min(v4));
                out.v6.reserve(n.min(v6));
            }
            Want::Dict => out.dict.reserve(n.min(v4 + v6 + names)),
        }
        match a.want {
            Want::V4 => sample(&self.v4, me, now, n, rng, |addr, _| out.v4.push(*addr)),
            Want::V6 => sample(&self.v6, me, now, n, rng, |addr, _| out.v6.push(*addr)),
            Want::Compact => {
                let v4 = |out: &mut Selection, rng: &mut _| {
                    let left = n.saturating_sub(out.len());
                    sample(&self.v4, me, now, left, rng, |addr, _| out.v4.push(*addr));
                };
                let v6 = |out: &mut Selection, rng: &mut _| {
                    let left = n.saturating_sub(out.len());
                    sample(&self.v6, me, now, left, rng, |addr, _| out.v6.push(*addr));
                };
                if v6_first {
                    v6(out, rng);
                    v4(out, rng);
                } else {
                    v4(out, rng);
                    v6(out, rng);
                }
            }
            Want::Dict => {
                sample(&self.names, me, now, n, rng, |addr, id| {
                    out.dict.push((addr.clone(), *id));
                });
                let v4 = |out: &mut Selection, rng: &mut _| {
                    let left = n.saturating_sub(out.len());
                    sample(&self.v4, me, now, left, rng, |addr, id| {
                        out.dict.push((PeerAddr::V4(*addr), *id));
                    });
                };
                let v6 = |out: &mut Selection, rng: &mut _| {
                    let left = n.saturating_sub(out.len());
                    sample(&self.v6, me, now, left, rng, |addr, id| {
                        out.dict.push((PeerAddr::V6(*addr), *id));
                    });
                };
                if v6_first {
                    v6(out, rng);
                    v4(out, rng);
                } else {
                    v4(out, rng);
                    v6(out, rng);
                }
            }
        }
    }
}

/// Whether two name peers have the same host (ports may differ).
fn same_name(stored: &PeerAddr, new: &PeerAddr) -> bool {
    match (stored, new) {
        (PeerAddr::Onion { name: a, .. }, PeerAddr::Onion { name: b, .. }) => a == b,
        (PeerAddr::I2p { name: a, .. }, PeerAddr::I2p { name: b, .. }) => a == b,
        _ => false,
    }
}

/// Drop expired entries; returns how many of them were seeders.
fn retain_live<A>(map: &mut PeerMap<A>, now: u32) -> u32 {
    let mut seeders_gone = 0u32;
    map.retain(|_, e| {
        let live = e.expires > now;
        if !live && e.seeder {
            seeders_gone += 1;
        }
        live
    });
    seeders_gone
}

fn entry<A>(addr: A, expires: u32, seeder: bool, key: KeyTag) -> Entry<A> {
    Entry {
        addr,
        expires,
        seeder,
        key,
    }
}

/// Emit up to `n` live entries other than `me`, starting at a random index and wrapping.
fn sample<A>(
    map: &PeerMap<A>,
    me: &PeerId,
    now: u32,
    n: usize,
    rng: &mut impl Rng,
    mut emit: impl FnMut(&A, &PeerId),
) {
    let len = map.len();
    if len == 0 || n == 0 {
        return;
    }
    let start = rng.gen_range(0..len);
    let tail = map.get_range(start..).into_iter().flat_map(|s| s.iter());
    let head = map.get_range(..start).into_iter().flat_map(|s| s.iter());
    let mut taken = 0;
    for (id, e) in tail.chain(head) {
        if id == me || e.expires <= now {
            continue;
        }
        emit(&e.addr, id);
        taken += 1;
        if taken == n {
            break;
        }
    }
}
