//! Downloads of a feed's torrents: fetching one listed item through our tracker, and
//! loading and checking what a finished download holds (every message, archive or
//! proof-of-concept document is one single-file torrent).
//!
//! Under `feeds/<key>/`, each item's download is in `<info-hash>/`, with `<info-hash>.ok`
//! once its file was checked, or `<info-hash>.rejected` holding why it was not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_err, FeedError};
use crate::client::announce::{Announce, Event, TrackerClient};
use crate::client::channel::seal;
use crate::client::cli;
use crate::client::display::printable;
use crate::client::peer_net::PeerNet;
use crate::client::torrent::{magnet_info_hash, Engine, TorrentError};
use crate::proto::{Archive, Message, PocManifest, PocMessage, PublicKey};

/// One torrent listed in a manifest or an archive header.
pub(super) struct Item {
    /// Its magnet link.
    pub magnet: String,
    /// Its info-hash, lowercase hex.
    pub hash: String,
    /// Listed as a sealed item of a private channel: its file is sealed too.
    pub sealed: bool,
}

/// What a torrent holds, and so how large it may be and how it is checked.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Message,
    Sealed,
    Archive,
    /// A proof-of-concept manifest ([`super::poc`]).
    PocManifest,
    /// A proof-of-concept message.
    PocMessage,
}

impl Kind {
    pub(super) fn max_bytes(self) -> usize {
        match self {
            Kind::Message | Kind::PocMessage => Message::MAX_DOCUMENT_BYTES,
            Kind::Sealed => seal::MAX_FILE_BYTES,
            Kind::Archive => Archive::MAX_BYTES,
            Kind::PocManifest => PocManifest::MAX_BYTES,
        }
    }

    pub(super) fn of(item: &Item, listed_as: Kind) -> Kind {
        if item.sealed {
            Kind::Sealed
        } else {
            listed_as
        }
    }
}

/// A checked download.
pub(super) enum Fetched {
    /// Its file passed the checks.
    Ok,
    /// It did not, for this reason.
    Rejected(String),
}

/// Whether `hash` was downloaded and checked (`None`: not yet).
pub(super) fn status(dir: &Path, hash: &str) -> Option<Fetched> {
    if dir.join(format!("{hash}.ok")).is_file() {
        return Some(Fetched::Ok);
    }
    let rejected = dir.join(format!("{hash}.rejected"));
    std::fs::read_to_string(rejected)
        .ok()
        .map(|r| Fetched::Rejected(printable(r.trim())))
}

/// Remember a rejection (so the next `find` reports it again without downloading).
pub(super) fn record_rejection(dir: &Path, hash: &str, reason: &str) {
    let path = dir.join(format!("{hash}.rejected"));
    if let Err(e) = std::fs::write(&path, reason) {
        cli::note(&format!("warning: cannot write {}: {e}", path.display()));
    }
}

/// The single file (at most `max` bytes) of a downloaded torrent directory, parsed.
fn load_file<T, E: std::fmt::Display>(
    dir: &Path,
    max: usize,
    what: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, String> {
    let file = single_file(dir, max)?;
    let bytes = std::fs::read(&file).map_err(|e| format!("cannot read the {what} file: {e}"))?;
    parse(&bytes).map_err(|e| e.to_string())
}

/// The single message file of a downloaded torrent directory, verified against `key`.
pub(super) fn load_verified(dir: &Path, key: &PublicKey) -> Result<Message, String> {
    load_file(dir, Message::MAX_DOCUMENT_BYTES, "message", |b| {
        Message::verify_from(b, key)
    })
}

/// The single archive file of a downloaded torrent directory, parsed for `key`'s feed.
pub(super) fn load_archive(dir: &Path, key: &PublicKey) -> Result<Archive, String> {
    load_file(dir, Archive::MAX_BYTES, "archive", |b| {
        Archive::parse(b, key)
    })
}

/// A downloaded proof-of-concept manifest, verified against `key`.
pub(super) fn load_poc_manifest(dir: &Path, key: &PublicKey) -> Result<PocManifest, String> {
    load_file(dir, PocManifest::MAX_BYTES, "manifest", |b| {
        PocManifest::verify_from(b, key)
    })
}

/// A downloaded proof-of-concept message, verified against `key`.
pub(super) fn load_poc_message(dir: &Path, key: &PublicKey) -> Result<PocMessage, String> {
    load_file(dir, Message::MAX_DOCUMENT_BYTES, "message", |b| {
        PocMessage::verify_from(b, key)
    })
}

/// The one regular file in `dir`, at most `max` bytes (a message or archive torrent holds
/// exactly one file).
pub(crate) fn single_file(dir: &Path, max: usize) -> Result<PathBuf, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list the download: {e}"))?;
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_file() => {
                if m.len() > max as u64 {
                    return Err("the downloaded file is over the size cap".into());
                }
                files.push(path);
            }
            _ => return Err("the torrent is not a single file".into()),
        }
    }
    match files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err("the torrent is not a single file".into()),
    }
}

/// Announce as a leecher until our tracker names a peer, then download from those peers.
///
/// In a proxied mode without an onion address of our own, each announce is a "query
/// announce": `started` to get the peer list, then at once `stopped`, so the tracker keeps
/// no entry for us (we could not be reached anyway, and must not be listed by address).
pub(super) async fn fetch_one(
    engine: &Engine,
    tracker: &TrackerClient,
    net: &PeerNet,
    dir: &Path,
    item: &Item,
    kind: Kind,
    limit: Duration,
) -> Result<(), FeedError> {
    let deadline = Instant::now() + limit;
    let info_hash = magnet_info_hash(&item.magnet)?;
    let out = dir.join(&item.hash);
    std::fs::create_dir_all(&out).map_err(io_err("create", &out))?;
    let own = engine.port();
    let query_only = net.proxied && net.onion.is_none();
    let mut last_err = None;
    while Instant::now() < deadline {
        let mut announce = Announce {
            info_hash: &info_hash,
            peer_id: engine.peer_id(),
            port: net.announce_port(own),
            left: 1,
            event: Event::Started,
            ip: net.onion.as_deref(),
            compact: !net.proxied,
        };
        let reply = tracker.announce(&announce).await?;
        if query_only {
            announce.event = Event::Stopped;
            if let Err(e) = tracker.announce(&announce).await {
                cli::note(&format!("warning: stopped announce failed: {e:#}"));
            }
        }
        let peers = engine.engine_peers(&reply, net.onion.as_deref(), own);
        if peers.is_empty() {
            last_err = Some(FeedError::Input("no peer is seeding it".into()));
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match engine
            .fetch(&item.magnet, peers, &out, kind.max_bytes() as u64, left)
            .await
        {
            Ok(()) => return Ok(()),
            Err(e @ TorrentError::TooLarge { .. }) => return Err(e.into()),
            Err(e) => last_err = Some(e.into()),
        }
    }
    Err(last_err.unwrap_or(FeedError::Torrent(TorrentError::Timeout(limit))))
}
