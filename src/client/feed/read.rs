//! Reading a feed: download the message and archive torrents not fetched yet, verify every
//! message, and print each verified message once, oldest first.
//!
//! A [`Reader`] keeps what it printed (by signature), so `find --watch` can call
//! [`Reader::pass`] on each newer manifest and print only what is new, even when a message
//! moves from the `messages` collection into an archive.
//!
//! A private channel's sealed items and files are opened with the read key this home has
//! ([`crate::client::channel`]); without one, [`Reader::pass`] prints the plain items only
//! and fails with [`FeedError::Private`]. Fetching and checking each download is in
//! [`super::download`].

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;

use super::download::{
    fetch_one, load_archive, load_poc_manifest, load_poc_message, load_verified, record_rejection,
    status, Fetched, Item, Kind,
};
use super::{
    feed_dir, io_err, FeedError, FindArgs, ARCHIVE_COLLECTION, FETCH_CONCURRENCY,
    MESSAGES_COLLECTION,
};
use crate::client::announce::TrackerClient;
use crate::client::channel::seal::{self, ReadKey};
use crate::client::cli::{self, Cli, CliError};
use crate::client::display::{iso8601_utc, printable};
use crate::client::identity::Home;
use crate::client::peer_net::PeerNet;
use crate::client::torrent::{magnet_info_hash, Engine};
use crate::proto::{Archive, Manifest, Message, PublicKey};

/// The most archives followed (through `previous` links) from one manifest.
pub const MAX_ARCHIVES: usize = 1000;

/// What one [`Reader::pass`] did.
pub(crate) struct Pass {
    /// Messages printed.
    pub printed: u64,
    /// Torrents that could not be downloaded.
    pub failed: usize,
    /// Torrents listed (messages and archives).
    pub total: usize,
}

/// The state of reading one feed.
pub(crate) struct Reader<'a> {
    cli: &'a Cli,
    home: &'a Home,
    args: &'a FindArgs,
    key: PublicKey,
    dir: PathBuf,
    printed: HashSet<String>,
    reported: HashSet<String>,
    net: PeerNet,
    engine: Option<(Engine, TrackerClient)>,
    /// The read key, when the feed is a private channel this home can read.
    read_key: Option<ReadKey>,
}

impl<'a> Reader<'a> {
    /// A reader of `key`'s feed, keeping its downloads under `feeds/<key>/`.
    pub fn new(
        cli: &'a Cli,
        home: &'a Home,
        args: &'a FindArgs,
        key: PublicKey,
        net: PeerNet,
    ) -> Result<Self, CliError> {
        let read_key = crate::client::channel::store::read_key_for(home, &key)?;
        let dir = feed_dir(home, &key);
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Self {
            cli,
            home,
            args,
            key,
            dir,
            printed: HashSet::new(),
            reported: HashSet::new(),
            net,
            engine: None,
            read_key,
        })
    }

    /// The feed's key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Where the feed's downloads are kept.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Print `--json`-style lines?
    pub(super) fn json(&self) -> bool {
        self.args.json
    }

    /// `true` the first time a message with this signature (hex) is seen by this reader.
    pub(super) fn first_time(&mut self, signature: String) -> bool {
        self.printed.insert(signature)
    }

    /// Fetch what `manifest` lists and is missing, and print every verified message not
    /// printed yet, oldest first (archived ones before listed ones at equal timestamps).
    pub async fn pass(
        &mut self,
        manifest: &Manifest,
        out: &mut (dyn Write + Send),
    ) -> Result<Pass, CliError> {
        let mut found: Vec<Message> = Vec::new();
        let (archived_failed, archives) = self.archives(manifest, &mut found).await?;
        let (items, locked) = self.message_items(manifest.items(MESSAGES_COLLECTION));
        let failed = archived_failed + self.fetch_missing(&items, Kind::Message).await?;
        for item in &items {
            match status(&self.dir, &item.hash) {
                Some(Fetched::Ok) => match self.load_message(item) {
                    Ok(m) => found.push(m),
                    Err(reason) => {
                        record_rejection(&self.dir, &item.hash, &reason);
                        self.report(&item.hash, &item.hash, &reason);
                    }
                },
                Some(Fetched::Rejected(reason)) => self.report(&item.hash, &item.hash, &reason),
                None => {}
            }
        }
        // A stable sort keeps archive order, then manifest order, at equal timestamps.
        found.sort_by_key(Message::timestamp);
        let mut printed = 0;
        for m in &found {
            if self.printed.insert(m.signature().to_hex()) {
                print_message(out, m, self.args.json)?;
                printed += 1;
            }
        }
        if locked > 0 {
            return Err(FeedError::Private {
                key: self.key,
                items: locked,
            }
            .into());
        }
        Ok(Pass {
            printed,
            failed,
            total: items.len() + archives,
        })
    }

    /// Stop the torrent engine, if one was started.
    pub async fn finish(self) {
        if let Some((engine, _)) = self.engine {
            engine.stop().await;
        }
    }

    /// The torrents of the `messages` collection, and how many sealed items this home has
    /// no read key for. Sealed items are opened with the read key (one that does not open
    /// is reported once as a rejected item).
    fn message_items(&mut self, list: &[String]) -> (Vec<Item>, usize) {
        let mut locked = 0;
        let mut opened: Vec<(usize, String, bool)> = Vec::new();
        for (index, entry) in list.iter().enumerate() {
            if !seal::is_sealed_item(entry) {
                opened.push((index, entry.clone(), false));
                continue;
            }
            let Some(key) = &self.read_key else {
                locked += 1;
                continue;
            };
            match seal::open_item(key, &self.key, entry) {
                Ok(magnet) => opened.push((index, magnet, true)),
                Err(e) => {
                    if self.reported.insert(format!("sealed:{entry}")) {
                        cli::note(&format!("rejected item {index}: {e}"));
                    }
                }
            }
        }
        (self.items_from(opened, "item"), locked)
    }

    /// The valid magnets of `list`, once each (a bad one is reported once).
    fn items(&mut self, list: &[String], what: &str) -> Vec<Item> {
        let list = list.iter().enumerate().map(|(i, m)| (i, m.clone(), false));
        self.items_from(list.collect(), what)
    }

    /// The valid magnets of `(index, magnet, sealed)`, once each (a bad one is reported
    /// once).
    fn items_from(&mut self, list: Vec<(usize, String, bool)>, what: &str) -> Vec<Item> {
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        for (index, magnet, sealed) in list {
            match magnet_info_hash(&magnet) {
                Ok(h) if seen.insert(h) => items.push(Item {
                    magnet,
                    hash: hex::encode(h),
                    sealed,
                }),
                Ok(_) => {}
                Err(e) => {
                    if self.reported.insert(format!("bad:{magnet}")) {
                        cli::note(&format!("skipped {what} {index}: {e}"));
                    }
                }
            }
        }
        items
    }

    /// Follow the `archive` collection and each archive's `previous` links, appending the
    /// verified messages oldest archive first; returns (downloads failed, archives seen).
    async fn archives(
        &mut self,
        manifest: &Manifest,
        found: &mut Vec<Message>,
    ) -> Result<(usize, usize), CliError> {
        let roots = self.items(manifest.items(ARCHIVE_COLLECTION), "archive");
        let root_hashes: Vec<String> = roots.iter().map(|i| i.hash.clone()).collect();
        let mut level = roots;
        let mut visited: HashSet<String> = HashSet::new();
        let mut graph: HashMap<String, Vec<String>> = HashMap::new();
        let mut parsed: HashMap<String, Archive> = HashMap::new();
        let mut failed = 0;
        while !level.is_empty() {
            level.retain(|i| visited.insert(i.hash.clone()));
            if visited.len() > MAX_ARCHIVES {
                return Err(FeedError::Input(format!(
                    "the feed links more than {MAX_ARCHIVES} archives"
                ))
                .into());
            }
            failed += self.fetch_missing(&level, Kind::Archive).await?;
            let mut next = Vec::new();
            for item in &level {
                match status(&self.dir, &item.hash) {
                    Some(Fetched::Ok) => {
                        match load_archive(&self.dir.join(&item.hash), &self.key) {
                            Ok(a) => {
                                let prev = self.items(a.previous(), "archive link");
                                graph.insert(
                                    item.hash.clone(),
                                    prev.iter().map(|p| p.hash.clone()).collect(),
                                );
                                next.extend(prev);
                                parsed.insert(item.hash.clone(), a);
                            }
                            Err(reason) => {
                                record_rejection(&self.dir, &item.hash, &reason);
                                self.report(&item.hash, &format!("archive {}", item.hash), &reason);
                            }
                        }
                    }
                    Some(Fetched::Rejected(reason)) => {
                        self.report(&item.hash, &format!("archive {}", item.hash), &reason);
                    }
                    None => {}
                }
            }
            level = next;
        }
        for hash in oldest_first(&root_hashes, &graph) {
            let Some(archive) = parsed.get(&hash) else {
                continue;
            };
            for (line, entry) in archive.entries().iter().enumerate() {
                match entry {
                    Ok(m) => found.push(m.clone()),
                    Err(e) => self.report(
                        &format!("{hash}:{line}"),
                        &format!("in archive {hash}, line {}", line + 2),
                        &e.to_string(),
                    ),
                }
            }
        }
        Ok((failed, visited.len()))
    }

    /// The verified message of a downloaded item (sealed ones opened first).
    fn load_message(&self, item: &Item) -> Result<Message, String> {
        let dir = self.dir.join(&item.hash);
        match (&self.read_key, item.sealed) {
            (Some(key), true) => super::private::load_sealed(&dir, &self.key, key),
            (None, true) => Err("no read key for this channel".into()),
            (_, false) => load_verified(&dir, &self.key),
        }
    }

    /// Print a rejection line on stderr, once per run.
    pub(super) fn report(&mut self, id: &str, what: &str, reason: &str) {
        if self.reported.insert(id.to_owned()) {
            cli::note(&format!("rejected message {what}: {}", printable(reason)));
        }
    }

    /// Download the items not fetched yet; returns how many failed.
    pub(super) async fn fetch_missing(
        &mut self,
        items: &[Item],
        kind: Kind,
    ) -> Result<usize, CliError> {
        let missing: Vec<&Item> = items
            .iter()
            .filter(|i| status(&self.dir, &i.hash).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(0);
        }
        if self.engine.is_none() {
            let started = self
                .net
                .start(self.cli, self.home, self.dir.clone())
                .await?;
            self.engine = Some(started);
        }
        let Some((engine, tracker)) = self.engine.as_ref() else {
            return Ok(missing.len());
        };
        let limit = Duration::from_secs(self.args.fetch_timeout);
        let dir = self.dir.as_path();
        let net = &self.net;
        let results: Vec<(&Item, Result<(), FeedError>)> = futures_util::stream::iter(missing)
            .map(|item| async move {
                let kind = Kind::of(item, kind);
                (
                    item,
                    fetch_one(engine, tracker, net, dir, item, kind, limit).await,
                )
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut failed = 0;
        for (item, result) in results {
            match result {
                Ok(()) => {
                    let out = dir.join(&item.hash);
                    let check = match Kind::of(item, kind) {
                        Kind::Message | Kind::Sealed => self.load_message(item).map(|_| ()),
                        Kind::Archive => load_archive(&out, &self.key).map(|_| ()),
                        Kind::PocManifest => load_poc_manifest(&out, &self.key).map(|_| ()),
                        Kind::PocMessage => load_poc_message(&out, &self.key).map(|_| ()),
                    };
                    match check {
                        Ok(()) => {
                            let ok = dir.join(format!("{}.ok", item.hash));
                            std::fs::write(&ok, b"").map_err(io_err("write", &ok))?;
                        }
                        // Reported when the feed is printed.
                        Err(reason) => record_rejection(dir, &item.hash, &reason),
                    }
                }
                Err(e) => {
                    failed += 1;
                    cli::note(&format!("could not fetch {}: {e:#}", item.hash));
                }
            }
        }
        Ok(failed)
    }
}

/// Post-order over the archive links from `roots`: every archive after the ones it links
/// to, so the oldest comes first.
fn oldest_first(roots: &[String], graph: &HashMap<String, Vec<String>>) -> Vec<String> {
    let mut order = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(&str, bool)> = roots.iter().rev().map(|h| (h.as_str(), false)).collect();
    while let Some((hash, expanded)) = stack.pop() {
        if expanded {
            order.push(hash.to_owned());
            continue;
        }
        if !done.insert(hash) {
            continue;
        }
        stack.push((hash, true));
        for prev in graph.get(hash).into_iter().flatten().rev() {
            if !done.contains(prev.as_str()) {
                stack.push((prev, false));
            }
        }
    }
    order
}

/// One message as a line of `find`'s output.
pub(crate) fn print_message(
    out: &mut (dyn Write + Send),
    m: &Message,
    json: bool,
) -> Result<(), CliError> {
    print_line(out, m.timestamp(), m.content(), m.canonical_bytes(), json)
}

/// A line of `find`'s output: `document` (one line of JSON) with `--json`, else the time
/// and the escaped content.
pub(super) fn print_line(
    out: &mut (dyn Write + Send),
    timestamp: u64,
    content: &str,
    document: &[u8],
    json: bool,
) -> Result<(), CliError> {
    let line = if json {
        let mut b = document.to_vec();
        b.push(b'\n');
        b
    } else {
        format!("{}  {}\n", iso8601_utc(timestamp), printable(content)).into_bytes()
    };
    cli::emit(out, &line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_ordered_oldest_first() {
        let g: HashMap<String, Vec<String>> = [
            ("c".to_owned(), vec!["b".to_owned()]),
            ("b".to_owned(), vec!["a".to_owned()]),
            ("x".to_owned(), vec!["a".to_owned()]),
        ]
        .into_iter()
        .collect();
        assert_eq!(oldest_first(&["c".into()], &g), ["a", "b", "c"]);
        assert_eq!(
            oldest_first(&["c".into(), "x".into()], &g),
            ["a", "b", "c", "x"]
        );
        let cycle: HashMap<String, Vec<String>> = [
            ("p".to_owned(), vec!["q".to_owned()]),
            ("q".to_owned(), vec!["p".to_owned()]),
        ]
        .into_iter()
        .collect();
        assert_eq!(oldest_first(&["p".into()], &cycle), ["q", "p"]);
    }
}
