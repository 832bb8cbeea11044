//! Messages as torrents: `share` and `find` (see docs/messages.md).
//!
//! State under `--home`:
//! * `messages/msg-<short>.json` — our own signed messages (each is one torrent);
//! * `feeds/<pubkey>/<infohash>/msg-….json` — fetched messages, with
//!   `feeds/<pubkey>/<infohash>.ok` once verified or `….rejected` (holding the reason).

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt as _;

use super::announce::{Announce, AnnounceError, Event, TrackerClient};
use super::cli::{self, Cli, CliError};
use super::display::{iso8601_utc, printable};
use super::http::HttpClient;
use super::identity::Home;
use super::seeder;
use super::torrent::{magnet_info_hash, Engine, EngineConfig, TorrentError};
use crate::proto::{Message, MessageError, PublicKey, UnsignedMessage};

/// How many message torrents `find` downloads at once.
pub const FETCH_CONCURRENCY: usize = 8;
/// The collection of the manifest that lists message magnets.
pub const MESSAGES_COLLECTION: &str = "messages";

/// `megatorrent share` arguments.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The message text (or use --file)
    #[arg(
        value_name = "TEXT",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub text: Option<String>,
    /// Read the message text from this UTF-8 file
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Return once the manifest is published and a background `megatorrent seed` runs
    #[arg(long)]
    pub detach: bool,
    /// Address the peer listener binds to
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
}

/// `megatorrent find` arguments.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// The feed's public key (64 hex characters)
    #[arg(value_name = "PUBKEY")]
    pub pubkey: String,
    /// Print each message as its canonical signed JSON on one line
    #[arg(long)]
    pub json: bool,
    /// Give up on one message torrent after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub fetch_timeout: u64,
    /// Address the peer listener binds to
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
}

/// Why a feed command failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The server has no manifest for the key.
    #[error("no such feed: the server has no manifest for {0}")]
    NoSuchFeed(PublicKey),
    /// The message could not be made.
    #[error("invalid message")]
    Message(#[source] MessageError),
    /// Bad `share` input.
    #[error("{0}")]
    Input(String),
    /// A file under the home directory could not be read or written.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The torrent engine failed.
    #[error(transparent)]
    Torrent(#[from] TorrentError),
    /// Our tracker refused or was unreachable.
    #[error(transparent)]
    Announce(#[from] AnnounceError),
    /// Some message torrents could not be downloaded.
    #[error("could not download {failed} of {total} messages (see above)")]
    Incomplete {
        /// How many failed.
        failed: usize,
        /// How many were listed.
        total: usize,
    },
    /// The background seeder did not start.
    #[error("the background seeder did not start: {0}")]
    Seeder(String),
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FeedError {
    let path = path.to_owned();
    move |source| FeedError::Io { what, path, source }
}

/// The torrent engine dials peers by IP itself; until its traffic is bridged through the
/// connector (issue 6), the torrent commands refuse to run behind `--proxy`/`--tor`, which
/// would otherwise leak the user's address to peers.
pub(crate) fn refuse_proxied(cli: &Cli) -> Result<(), FeedError> {
    if cli.net.is_proxied() {
        return Err(FeedError::Input(
            "share, find and seed do not support --proxy/--tor yet: the torrent \
             engine would reach peers directly"
                .into(),
        ));
    }
    Ok(())
}

/// The tracker URL put into our torrents: the server's `/announce`.
pub(crate) fn tracker_url(cli: &Cli) -> Result<String, CliError> {
    let base = super::http::BaseUrl::parse(&cli.server)?;
    Ok(format!("{base}/announce"))
}

/// Our tracker client (HTTP through the connector).
pub(crate) async fn tracker_client(cli: &Cli, home: &Home) -> Result<TrackerClient, CliError> {
    let (connector, base) = cli::connector_and_base(cli, home).await?;
    let http =
        HttpClient::new(connector, base).with_request_timeout(Duration::from_secs(cli.timeout));
    Ok(TrackerClient::new(http))
}

/// The directory of our own messages.
pub(crate) fn own_dir(home: &Home) -> PathBuf {
    home.dir().join("messages")
}

/// The directory of a fetched feed.
pub(crate) fn feed_dir(home: &Home, key: &PublicKey) -> PathBuf {
    home.dir().join("feeds").join(key.to_hex())
}

fn read_content(args: &ShareArgs) -> Result<String, FeedError> {
    let content = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => {
            let meta = std::fs::metadata(f).map_err(io_err("read", f))?;
            if meta.len() > Message::MAX_CONTENT_BYTES as u64 {
                return Err(FeedError::Message(MessageError::ContentTooLarge {
                    size: usize::try_from(meta.len()).unwrap_or(usize::MAX),
                    max: Message::MAX_CONTENT_BYTES,
                }));
            }
            let bytes = std::fs::read(f).map_err(io_err("read", f))?;
            String::from_utf8(bytes)
                .map_err(|_| FeedError::Input(format!("{} is not UTF-8 text", f.display())))?
        }
        (None, None) => return Err(FeedError::Input("give the message text or --file".into())),
    };
    if content.trim().is_empty() {
        return Err(FeedError::Input("the message is empty".into()));
    }
    Ok(content)
}

/// `megatorrent share`: sign, write, make the torrent, publish, seed.
pub async fn share(
    cli: &Cli,
    home: &Home,
    args: &ShareArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    refuse_proxied(cli)?;
    let content = read_content(args)?;
    let id = home.load_identity()?;
    let message = UnsignedMessage {
        timestamp: u64::try_from(crate::now_ms()).unwrap_or(0),
        content,
    }
    .sign(id.signing_key())
    .map_err(FeedError::Message)?;
    let dir = own_dir(home);
    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let file = dir.join(message.file_name());
    std::fs::write(&file, message.canonical_bytes()).map_err(io_err("write", &file))?;
    let tracker = tracker_url(cli)?;
    let magnet = seeder::magnet_of(&file, &tracker).await?;
    let client = cli::signaling(cli, home).await?;
    let seq = cli::publish(
        home,
        &client,
        MESSAGES_COLLECTION,
        std::slice::from_ref(&magnet),
        false,
    )
    .await?;
    cli::emit(out, format!("{magnet}\n").as_bytes())?;
    if args.detach {
        seeder::ensure_background(cli, home, &args.listen, &magnet).await?;
        cli::note(&format!(
            "published sequence {seq}; a background seeder is running"
        ));
        return Ok(());
    }
    cli::note(&format!(
        "published sequence {seq}; seeding until interrupted (Ctrl-C)"
    ));
    seeder::run(cli, home, args.listen, true, &mut std::io::sink()).await
}

/// One manifest item, in manifest order.
struct Item {
    index: usize,
    magnet: String,
    hash: String,
}

enum Fetched {
    Ok,
    Rejected(String),
}

/// `megatorrent find`: fetch, verify and print a feed, oldest first.
pub async fn find(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    refuse_proxied(cli)?;
    let key = super::contacts::resolve_key(home, &args.pubkey)?;
    let manifest = cli::signaling(cli, home)
        .await?
        .get_manifest(&key)
        .await?
        .ok_or(FeedError::NoSuchFeed(key))?;
    let dir = feed_dir(home, &key);
    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for (index, magnet) in manifest.items(MESSAGES_COLLECTION).iter().enumerate() {
        match magnet_info_hash(magnet) {
            Ok(h) if seen.insert(h) => items.push(Item {
                index,
                magnet: magnet.clone(),
                hash: hex::encode(h),
            }),
            Ok(_) => {}
            Err(e) => cli::note(&format!("skipped item {index}: {e}")),
        }
    }
    let missing: Vec<&Item> = items
        .iter()
        .filter(|i| status(&dir, &i.hash).is_none())
        .collect();
    let mut failed = 0;
    if !missing.is_empty() {
        failed = fetch_all(cli, home, &dir, &key, &missing, args).await?;
    }
    let mut messages = Vec::new();
    for item in &items {
        match status(&dir, &item.hash) {
            Some(Fetched::Ok) => match load_verified(&dir.join(&item.hash), &key) {
                Ok(m) => messages.push((m, item.index)),
                Err(reason) => reject(&dir, &item.hash, &reason),
            },
            Some(Fetched::Rejected(reason)) => {
                cli::note(&format!("rejected message {}: {reason}", item.hash));
            }
            None => {}
        }
    }
    messages.sort_by_key(|(m, index)| (m.timestamp(), *index));
    for (m, _) in &messages {
        let line = if args.json {
            let mut b = m.canonical_bytes().to_vec();
            b.push(b'\n');
            b
        } else {
            format!(
                "{}  {}\n",
                iso8601_utc(m.timestamp()),
                printable(m.content())
            )
            .into_bytes()
        };
        cli::emit(out, &line)?;
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

fn status(dir: &Path, hash: &str) -> Option<Fetched> {
    if dir.join(format!("{hash}.ok")).is_file() {
        return Some(Fetched::Ok);
    }
    let rejected = dir.join(format!("{hash}.rejected"));
    std::fs::read_to_string(rejected)
        .ok()
        .map(|r| Fetched::Rejected(printable(r.trim())))
}

/// Print the rejection line and remember it (so the next `find` reports it again without
/// downloading).
fn reject(dir: &Path, hash: &str, reason: &str) {
    cli::note(&format!("rejected message {hash}: {reason}"));
    record_rejection(dir, hash, reason);
}

fn record_rejection(dir: &Path, hash: &str, reason: &str) {
    let path = dir.join(format!("{hash}.rejected"));
    if let Err(e) = std::fs::write(&path, reason) {
        cli::note(&format!("warning: cannot write {}: {e}", path.display()));
    }
}

/// The single message file of a downloaded torrent directory, verified against `key`.
pub(crate) fn load_verified(dir: &Path, key: &PublicKey) -> Result<Message, String> {
    let file = single_file(dir)?;
    let bytes = std::fs::read(&file).map_err(|e| format!("cannot read the message file: {e}"))?;
    Message::verify_from(&bytes, key).map_err(|e| e.to_string())
}

/// The one regular file in `dir` (a message torrent holds exactly one small file).
pub(crate) fn single_file(dir: &Path) -> Result<PathBuf, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list the download: {e}"))?;
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_file() => {
                if m.len() > Message::MAX_DOCUMENT_BYTES as u64 {
                    return Err("the message file is over the size cap".into());
                }
                files.push(path);
            }
            _ => return Err("the torrent is not a single message file".into()),
        }
    }
    match files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err("the torrent is not a single message file".into()),
    }
}

async fn fetch_all(
    cli: &Cli,
    home: &Home,
    dir: &Path,
    key: &PublicKey,
    missing: &[&Item],
    args: &FindArgs,
) -> Result<usize, CliError> {
    let engine = Engine::start(&EngineConfig::new(args.listen), dir.to_owned())
        .await
        .map_err(FeedError::from)?;
    let tracker = tracker_client(cli, home).await?;
    let limit = Duration::from_secs(args.fetch_timeout);
    let results: Vec<(&Item, Result<(), FeedError>)> = futures_util::stream::iter(missing)
        .map(|item| {
            let (engine, tracker) = (&engine, &tracker);
            async move { (*item, fetch_one(engine, tracker, dir, item, limit).await) }
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .collect()
        .await;
    engine.stop().await;
    let mut failed = 0;
    for (item, result) in results {
        match result {
            Ok(()) => match load_verified(&dir.join(&item.hash), key) {
                Ok(_) => {
                    let ok = dir.join(format!("{}.ok", item.hash));
                    std::fs::write(&ok, b"").map_err(io_err("write", &ok))?;
                }
                // Reported when the feed is printed.
                Err(reason) => record_rejection(dir, &item.hash, &reason),
            },
            Err(e) => {
                failed += 1;
                cli::note(&format!("could not fetch message {}: {e:#}", item.hash));
            }
        }
    }
    Ok(failed)
}

/// Announce as a leecher until our tracker names a peer, then download from those peers.
async fn fetch_one(
    engine: &Engine,
    tracker: &TrackerClient,
    dir: &Path,
    item: &Item,
    limit: Duration,
) -> Result<(), FeedError> {
    let deadline = Instant::now() + limit;
    let info_hash = magnet_info_hash(&item.magnet)?;
    let out = dir.join(&item.hash);
    std::fs::create_dir_all(&out).map_err(io_err("create", &out))?;
    let own = engine.port();
    let mut last_err = None;
    while Instant::now() < deadline {
        let reply = tracker
            .announce(&Announce {
                info_hash: &info_hash,
                peer_id: engine.peer_id(),
                port: own,
                left: 1,
                event: Event::Started,
            })
            .await?;
        let peers: Vec<SocketAddr> = reply
            .peers
            .into_iter()
            .filter(|p| !(p.port() == own && p.ip().is_loopback()))
            .collect();
        if peers.is_empty() {
            last_err = Some(FeedError::Input("no peer is seeding it".into()));
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match engine
            .fetch(
                &item.magnet,
                peers,
                &out,
                Message::MAX_DOCUMENT_BYTES as u64,
                left,
            )
            .await
        {
            Ok(()) => return Ok(()),
            Err(e @ TorrentError::TooLarge { .. }) => return Err(e.into()),
            Err(e) => last_err = Some(e.into()),
        }
    }
    Err(last_err.unwrap_or(FeedError::Torrent(TorrentError::Timeout(limit))))
}
