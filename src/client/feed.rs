//! Messages as torrents: `share` and `find` (see docs/messages.md).
//!
//! State under `--home`:
//! * `messages/msg-<short>.json` — our own signed messages (each is one torrent);
//! * `messages/archive-<short>.jsonl` — our archives (see [`archive`]);
//! * `feeds/<pubkey>/<infohash>/msg-….json` (or `archive-….jsonl`) — fetched torrents,
//!   with `feeds/<pubkey>/<infohash>.ok` once verified or `….rejected` (holding the
//!   reason).
//!
//! Reading is in [`read`], `find --watch` in [`watch`], the archive path in [`archive`],
//! reading a proof-of-concept pointer feed in [`poc`].

mod archive;
mod download;
mod poc;
mod private;
mod read;
mod watch;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::announce::AnnounceError;
use super::cli::{self, Cli, CliError};
use super::identity::Home;
use super::peer_net::PeerArgs;
use super::seeder;
use super::torrent::TorrentError;
use crate::proto::{Message, MessageError, PublicKey, UnsignedMessage};

pub(crate) use download::single_file;
pub(crate) use private::{SEALED_PREFIX, SEALED_SUFFIX};

/// How many torrents `find` downloads at once.
pub const FETCH_CONCURRENCY: usize = 8;
/// The collection of the manifest that lists message magnets.
pub const MESSAGES_COLLECTION: &str = "messages";
/// The collection of the manifest that lists the newest archive torrent.
pub const ARCHIVE_COLLECTION: &str = "archive";
/// The most messages one `share --batch` shares.
pub const MAX_BATCH: usize = 10_000;
/// The largest `share --batch` file: 64 MiB.
pub const MAX_BATCH_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// `megatorrent share` arguments.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The message text (or use --file)
    #[arg(
        value_name = "TEXT",
        required_unless_present_any = ["file", "batch"],
        conflicts_with_all = ["file", "batch"]
    )]
    pub text: Option<String>,
    /// Read the message text from this UTF-8 file
    #[arg(long, value_name = "FILE", conflicts_with = "batch")]
    pub file: Option<PathBuf>,
    /// Share each non-empty line of this UTF-8 file as its own message, in order (at most
    /// 10 000 lines, 64 MiB), with one manifest update
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,
    /// Post to this channel (see `megatorrent channel`) instead of your own feed
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
    /// Return once the manifest is published and a background `megatorrent seed` runs
    #[arg(long)]
    pub detach: bool,
    /// The peer listener and, behind Tor, its onion service.
    #[command(flatten)]
    pub peer: PeerArgs,
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
    /// The peer listener and, behind Tor, its onion service.
    #[command(flatten)]
    pub peer: PeerArgs,
    /// After printing the feed, follow it (WebSocket subscription) and print new messages
    #[arg(long)]
    pub watch: bool,
    /// With --watch: poll the manifest over HTTP every SECS seconds instead
    #[arg(long, value_name = "SECS", requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub interval: Option<u64>,
    /// With --watch: exit after printing N new messages
    #[arg(long, value_name = "N", requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// With --watch: exit after SECS seconds (an error if --count was not reached)
    #[arg(long, value_name = "SECS", requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_time: Option<u64>,
}

/// Why a feed command failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The server has no manifest for the key.
    #[error("no such feed: the server has no manifest for {0}")]
    NoSuchFeed(PublicKey),
    /// The proof-of-concept manifest torrent a pointer record names was rejected.
    #[error("the proof-of-concept manifest {hash} was rejected: {reason}")]
    PocManifest {
        /// Its info-hash.
        hash: String,
        /// Why.
        reason: String,
    },
    /// The proof-of-concept manifest torrent could not be downloaded.
    #[error("could not download the proof-of-concept manifest torrent {0} (see above)")]
    PocManifestUnavailable(String),
    /// `find --watch` of a key that has only a proof-of-concept pointer record.
    #[error("find --watch cannot follow a proof-of-concept feed (a pointer record only) yet; run find without --watch")]
    PocWatch,
    /// The feed lists sealed items and this home has no read key for it.
    #[error(
        "{key} is a private channel: {items} encrypted items not shown (this home has no \
         read key for it; a member can send one with `megatorrent channel invite`)"
    )]
    Private {
        /// The channel.
        key: PublicKey,
        /// How many sealed items the manifest lists.
        items: usize,
    },
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
    /// Some message or archive torrents could not be downloaded.
    #[error("could not download {failed} of {total} torrents (see above)")]
    Incomplete {
        /// How many failed.
        failed: usize,
        /// How many were listed.
        total: usize,
    },
    /// The embedded Tor client could not host the peer listener's onion service.
    #[error("cannot host the onion service: {0}")]
    OnionService(String),
    /// The background seeder did not start.
    #[error("the background seeder did not start: {0}")]
    Seeder(String),
    /// `find --watch --max-time` passed before `--count` new messages arrived.
    #[error("only {got} of {wanted} new messages arrived within {secs}s")]
    WatchTimedOut {
        /// New messages printed.
        got: u64,
        /// New messages wanted.
        wanted: u64,
        /// The time limit.
        secs: u64,
    },
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FeedError {
    let path = path.to_owned();
    move |source| FeedError::Io { what, path, source }
}

/// The tracker URL put into our torrents: the server's `/announce`.
pub(crate) fn tracker_url(cli: &Cli) -> Result<String, CliError> {
    let base = super::http::BaseUrl::parse(&cli.server)?;
    Ok(format!("{base}/announce"))
}

/// The directory of our own messages.
pub(crate) fn own_dir(home: &Home) -> PathBuf {
    home.dir().join("messages")
}

/// The directory of a fetched feed.
pub(crate) fn feed_dir(home: &Home, key: &PublicKey) -> PathBuf {
    home.dir().join("feeds").join(key.to_hex())
}

fn read_contents(args: &ShareArgs) -> Result<Vec<String>, FeedError> {
    if let Some(batch) = &args.batch {
        let text = read_text(batch, MAX_BATCH_FILE_BYTES)?;
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            return Err(FeedError::Input(format!(
                "{} has no non-empty line",
                batch.display()
            )));
        }
        if lines.len() > MAX_BATCH {
            return Err(FeedError::Input(format!(
                "{} has {} messages, over the batch cap of {MAX_BATCH}",
                batch.display(),
                lines.len()
            )));
        }
        return Ok(lines);
    }
    let content = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => read_text(f, Message::MAX_CONTENT_BYTES as u64)?,
        (None, None) => return Err(FeedError::Input("give the message text or --file".into())),
    };
    if content.trim().is_empty() {
        return Err(FeedError::Input("the message is empty".into()));
    }
    Ok(vec![content])
}

/// A UTF-8 file of at most `max` bytes.
fn read_text(f: &Path, max: u64) -> Result<String, FeedError> {
    let meta = std::fs::metadata(f).map_err(io_err("read", f))?;
    if meta.len() > max {
        return Err(FeedError::Input(format!(
            "{} is {} bytes, over the {max}-byte cap",
            f.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(f).map_err(io_err("read", f))?;
    String::from_utf8(bytes)
        .map_err(|_| FeedError::Input(format!("{} is not UTF-8 text", f.display())))
}

/// `megatorrent share`: sign, write, make the torrents, publish (archiving the oldest
/// messages if the manifest would pass the server's cap), seed.
pub async fn share(
    cli: &Cli,
    home: &Home,
    args: &ShareArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    // Check the peer flags before anything is signed or published.
    let net = args.peer.resolve(&cli.net)?;
    net.require_onion_to_seed()?;
    if args.detach {
        seeder::check_running_mode(cli, home)?;
    }
    let contents = read_contents(args)?;
    let channel = args
        .channel
        .as_deref()
        .map(|name| super::channel::store::load(home, name))
        .transpose()?;
    // A channel is laid out like a home directory: the same publishing code serves both.
    let author = channel.as_ref().map_or(home, |c| &c.home);
    let id = author.load_identity()?;
    // Consecutive milliseconds keep the order of a batch.
    let base = u64::try_from(crate::now_ms()).unwrap_or(0);
    // Sign everything first, so that bad input leaves nothing behind.
    let messages = (0u64..)
        .zip(contents)
        .map(|(i, content)| {
            UnsignedMessage {
                timestamp: base.saturating_add(i),
                content,
            }
            .sign(id.signing_key())
            .map_err(FeedError::Message)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let read_key = channel.as_ref().and_then(|c| c.read_key.as_ref());
    let (shared, sealed_items) = match read_key {
        Some(key) => private::share_sealed(cli, author, key, messages).await?,
        None => (write_plain(cli, author, messages).await?, Vec::new()),
    };
    // The next share must be newer than this batch's last message, which may still be in
    // the future (one millisecond per message: at most MAX_BATCH ms).
    let last = base.saturating_add(shared.len() as u64);
    let now = u64::try_from(crate::now_ms()).unwrap_or(0);
    if now < last {
        tokio::time::sleep(Duration::from_millis(last - now)).await;
    }
    let result = if read_key.is_some() {
        private::publish_sealed(cli, author, &sealed_items).await
    } else {
        archive::publish_messages(cli, author, &shared).await
    };
    // A message that was not published is not kept (nor seeded): running `share` again
    // after a failure shares it once.
    if result.is_err() {
        for s in &shared {
            let _ = std::fs::remove_file(&s.file);
        }
    }
    let published = result?;
    let mut text = String::new();
    for s in &shared {
        text.push_str(&s.magnet);
        text.push('\n');
    }
    cli::emit(out, text.as_bytes())?;
    let seq = published.sequence;
    if published.archived > 0 {
        cli::note(&format!(
            "moved the {} oldest messages into {} archive torrent(s)",
            published.archived,
            published.archives.len()
        ));
    }
    if args.detach {
        // What stays listed (archived message files are gone) and the new archives.
        let mut wanted = published.archives;
        wanted.extend(
            shared
                .iter()
                .filter(|s| s.file.is_file())
                .map(|s| s.magnet.clone()),
        );
        seeder::ensure_background(cli, home, &args.peer, &wanted).await?;
        cli::note(&format!(
            "published sequence {seq}; a background seeder is running"
        ));
        return Ok(());
    }
    cli::note(&format!(
        "published sequence {seq}; seeding until interrupted (Ctrl-C)"
    ));
    seeder::run(cli, home, &args.peer, true, &mut std::io::sink()).await
}

/// Write each signed message to `messages/` of `author` and make its magnet.
async fn write_plain(
    cli: &Cli,
    author: &Home,
    messages: Vec<Message>,
) -> Result<Vec<archive::Shared>, CliError> {
    let dir = own_dir(author);
    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let tracker = tracker_url(cli)?;
    let mut shared = Vec::with_capacity(messages.len());
    for message in messages {
        let file = dir.join(message.file_name());
        std::fs::write(&file, message.canonical_bytes()).map_err(io_err("write", &file))?;
        let magnet = seeder::magnet_of(&file, &tracker).await?;
        shared.push(archive::Shared {
            message,
            file,
            magnet,
        });
    }
    Ok(shared)
}

/// `megatorrent find`: fetch, verify and print a feed, oldest first; with `--watch`, then
/// follow it.
pub async fn find(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let net = args.peer.resolve(&cli.net)?;
    let key = super::contacts::resolve_key(home, &args.pubkey)?;
    let signaling = cli::signaling(cli, home).await?;
    let Some(manifest) = signaling.get_manifest(&key).await? else {
        // No v1 manifest: the key may still have a proof-of-concept pointer record.
        let pointer = signaling
            .lookup_pointer(&key)
            .await?
            .ok_or(FeedError::NoSuchFeed(key))?;
        if args.watch {
            return Err(FeedError::PocWatch.into());
        }
        let mut reader = read::Reader::new(cli, home, args, key, net)?;
        let result = poc::read(cli, &mut reader, &pointer, out).await;
        reader.finish().await;
        return result;
    };
    let mut reader = read::Reader::new(cli, home, args, key, net)?;
    let result = find_with(cli, home, args, &mut reader, manifest, out).await;
    reader.finish().await;
    result
}

async fn find_with(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    reader: &mut read::Reader<'_>,
    manifest: crate::proto::Manifest,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let pass = reader.pass(&manifest, out).await?;
    if args.watch {
        let pending = pass.failed > 0;
        if pending {
            cli::note(&format!(
                "could not download {} of {} torrents (see above); retrying while watching",
                pass.failed, pass.total
            ));
        }
        return watch::watch(cli, home, args, reader, manifest, pending, out).await;
    }
    if pass.failed > 0 {
        return Err(FeedError::Incomplete {
            failed: pass.failed,
            total: pass.total,
        }
        .into());
    }
    Ok(())
}
