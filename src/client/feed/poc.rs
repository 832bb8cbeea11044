//! `find` for a key that has only a proof-of-concept pointer record (DESIGN §3.3).
//!
//! The pointer names the manifest torrent by info-hash; it and every message torrent it
//! lists are fetched through the same path as v1 feeds ([`Reader::fetch_missing`]: our own
//! tracker announce, peers handed to librqbit), kept under `feeds/<key>/<infohash>/` with
//! the same `.ok`/`.rejected` markers, and verified in the proof of concept's format
//! ([`crate::proto::poc`]).

use std::collections::HashSet;
use std::io::Write;

use super::download::{
    load_poc_manifest, load_poc_message, record_rejection, status, Fetched, Item, Kind,
};
use super::read::{print_line, Reader};
use super::{tracker_url, FeedError};
use crate::client::cli::{self, Cli, CliError};
use crate::client::display::printable;
use crate::client::torrent::magnet_of_info_hash;
use crate::proto::{InfoHash, PocMessage, PointerAnnounce};

fn item(hash: &InfoHash, tracker: &str) -> Item {
    Item {
        magnet: magnet_of_info_hash(hash.as_bytes(), tracker),
        hash: hash.to_hex(),
        sealed: false,
    }
}

/// Fetch the manifest torrent `pointer` names and every message it lists; print the
/// verified messages oldest first. A bad manifest is an error; a bad message is reported
/// on stderr and skipped.
pub(super) async fn read(
    cli: &Cli,
    reader: &mut Reader<'_>,
    pointer: &PointerAnnounce,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let tracker = tracker_url(cli)?;
    let root = item(pointer.infohash(), &tracker);
    reader
        .fetch_missing(std::slice::from_ref(&root), Kind::PocManifest)
        .await?;
    let rejected = |reason: String| FeedError::PocManifest {
        hash: root.hash.clone(),
        reason: printable(&reason),
    };
    let manifest = match status(reader.dir(), &root.hash) {
        Some(Fetched::Ok) => load_poc_manifest(&reader.dir().join(&root.hash), reader.key())
            .map_err(|reason| {
                record_rejection(reader.dir(), &root.hash, &reason);
                rejected(reason)
            })?,
        Some(Fetched::Rejected(reason)) => return Err(rejected(reason).into()),
        None => return Err(FeedError::PocManifestUnavailable(root.hash.clone()).into()),
    };
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for (index, entry) in manifest.entries().iter().enumerate() {
        match entry {
            Ok(hash) if seen.insert(*hash) => items.push(item(hash, &tracker)),
            Ok(_) => {}
            Err(e) => cli::note(&format!("skipped item {index}: {}", printable(e))),
        }
    }
    let failed = reader.fetch_missing(&items, Kind::PocMessage).await?;
    let mut found: Vec<PocMessage> = Vec::new();
    for it in &items {
        match status(reader.dir(), &it.hash) {
            Some(Fetched::Ok) => match load_poc_message(&reader.dir().join(&it.hash), reader.key())
            {
                Ok(m) => found.push(m),
                Err(reason) => {
                    record_rejection(reader.dir(), &it.hash, &reason);
                    reader.report(&it.hash, &it.hash, &reason);
                }
            },
            Some(Fetched::Rejected(reason)) => reader.report(&it.hash, &it.hash, &reason),
            None => {}
        }
    }
    // Stable: manifest order at equal timestamps.
    found.sort_by_key(PocMessage::timestamp);
    let json = reader.json();
    for m in &found {
        if reader.first_time(m.signature().to_hex()) {
            print_line(out, m.timestamp(), m.content(), m.document_bytes(), json)?;
        }
    }
    if failed > 0 {
        return Err(FeedError::Incomplete {
            failed,
            total: items.len(),
        }
        .into());
    }
    Ok(())
}
