//! The `megatorrent` command line: argument types (clap derive) and the commands.
//!
//! Results go to the writer passed to [`run`] (stdout in the binary); progress notes and
//! warnings go to stderr. Every failure is a [`CliError`] the binary prints on one line.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::api::{ApiError, SignalingClient};
use super::channel::{ChannelCommand, ChannelError};
use super::contacts::{self, ContactsCommand, ContactsError};
use super::display::{printable, render_manifest};
use super::http::{BaseUrl, HttpClient, UrlError};
use super::identity::{Home, IdentityError};
use super::inbox::{self, InboxArgs, MailCmdError, SendArgs};
use super::keys::{self, KeyCmdError, KeyCommand};
use super::localfile::LocalFileError;
use super::network::NetArgs;
use super::profile::{ProfileCmdError, ProfileCommand};
use super::publish::publish_ws;
pub use super::publish::{merge_items, MAX_CONFLICT_RETRIES};
pub(crate) use super::publish::{publish, publish_edit};
use super::subscribe::{self as live, LiveError, SubscribeOptions};
use crate::net::{Connector, NetError};
use crate::proto::{HexError, ManifestError, PublicKey};

/// The server used when neither `--server` nor `MEGATORRENT_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:6969";

/// Command-line arguments of `megatorrent`.
#[derive(Debug, Parser)]
#[command(
    name = "megatorrent",
    version,
    about = "Publish and follow signed, versioned torrent feeds (Megatorrents)."
)]
pub struct Cli {
    /// Signaling server base URL (http:// only for now)
    #[arg(
        long,
        global = true,
        env = "MEGATORRENT_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,

    /// Directory holding identity.key and state.json [default: ~/.megatorrent]
    #[arg(long, global = true, env = "MEGATORRENT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Give up on each server request after this many seconds
    #[arg(
        long,
        global = true,
        env = "MEGATORRENT_TIMEOUT",
        default_value_t = 30,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub timeout: u64,

    /// Network mode: direct, a SOCKS5 proxy, or embedded Tor.
    #[command(flatten)]
    pub net: NetArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new identity (Ed25519 key) and print its public key
    Keygen {
        /// Replace an existing identity (the old key is lost unless you saved it)
        #[arg(long)]
        force: bool,
    },
    /// Print this identity's public key
    Whoami,
    /// Add items to a collection of your manifest and publish it; prints the new sequence
    ///
    /// Fetches your current manifest from the server (starting empty if there is none),
    /// adds each ITEM to the collection TITLE (created if needed; items already present are
    /// not added twice), signs it with the next sequence number and publishes it. If
    /// someone else published in between, it refetches and retries.
    ///
    /// Items are usually magnet links. Any other non-empty string without whitespace or
    /// control characters (an https:// link, an info-hash) is accepted with a warning.
    Publish {
        /// The collection to add the items to
        #[arg(long, value_name = "TITLE")]
        title: String,
        /// Replace all collections with just TITLE holding exactly the given items
        #[arg(long)]
        replace: bool,
        /// Items to add (magnet links)
        #[arg(required = true, value_name = "ITEM")]
        items: Vec<String>,
        /// Publish over the server's WebSocket instead of HTTP
        #[arg(long)]
        ws: bool,
    },
    /// Send an end-to-end encrypted direct message to PUBKEY's mailbox on the server
    ///
    /// Signs the text, seals it with HPKE to the mailbox key of the recipient's profile (or,
    /// when it publishes none, to the key derived from their identity) and posts it; the
    /// server learns neither the text nor the sender. Prints the letter id and until when
    /// the server keeps it.
    Send(SendArgs),
    /// Fetch, verify and print your direct messages, then delete them from the server
    ///
    /// Each message is decrypted (with the identity's derived key or a stored mailbox key)
    /// and its sender's signature checked; one that fails is reported on stderr, never
    /// printed, and deleted. With --keep nothing is deleted: for an identity used on
    /// several devices, where one device runs plain `inbox` and the others `inbox --keep`.
    Inbox(InboxArgs),
    /// Manage petnames for public keys (usable wherever a PUBKEY is expected)
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Export or import this identity to use it on several devices
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create, share and join channels: feeds with their own identity, optionally private
    ///
    /// A private channel's messages are encrypted under a read key that `channel invite`
    /// sends by direct message; post with `share --channel NAME`, read with `find`.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Publish your signed profile (name, avatar, mailbox key) or read someone's
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Follow keys: print each new verified manifest as the server pushes it
    ///
    /// Connects to the server's WebSocket, prints the current manifest of each key, then
    /// every newer one as it is published. Reconnects (with growing, jittered delays) when
    /// the connection drops, without printing any manifest twice. Every manifest is
    /// verified here; the server is never trusted.
    Subscribe {
        /// Public keys (64 hex characters) or contact names to follow
        #[arg(required = true, value_name = "PUBKEY")]
        pubkeys: Vec<String>,
        /// Print each manifest as canonical JSON on one line
        #[arg(long)]
        json: bool,
        /// Exit after printing N manifests
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Exit after SECS seconds (an error if --count manifests have not arrived by then)
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        max_time: Option<u64>,
    },
    /// Sign a message, share it as a torrent, add it to your feed and seed it
    ///
    /// Writes msg-<short>.json under --home, makes its single-file torrent (our tracker in
    /// its announce list), adds the magnet to the `messages` collection of your manifest,
    /// publishes it with the next sequence and prints the magnet. Then seeds until
    /// interrupted, or with --detach returns once a background `megatorrent seed` runs.
    #[cfg(feature = "torrent")]
    Share(super::feed::ShareArgs),
    /// Download, verify and print a feed's messages, oldest first
    ///
    /// Looks up the manifest of PUBKEY, downloads every message torrent not fetched yet
    /// (peers come only from our tracker), checks each signature and that PUBKEY signed it.
    /// A message that fails is reported on stderr and never printed.
    #[cfg(feature = "torrent")]
    Find(super::feed::FindArgs),
    /// Seed your messages and every fetched feed until interrupted
    #[cfg(feature = "torrent")]
    Seed(super::seeder::SeedArgs),
    /// Fetch a manifest, verify its signature and show it
    Lookup {
        /// The publisher's public key (64 hex characters) or contact name
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
        /// Print the manifest JSON exactly as served (canonical form), then a newline
        #[arg(long)]
        json: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Keystore problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Bad `--server`.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The proxy or embedded Tor client is unusable (nothing was sent directly instead).
    #[error(transparent)]
    Net(#[from] NetError),
    /// Talking to the server failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `PUBKEY` is not a public key.
    #[error("invalid public key {input:?}")]
    BadKey {
        /// The argument (shortened).
        input: String,
        /// Why.
        #[source]
        source: HexError,
    },
    /// The server has no manifest for the key.
    #[error("no manifest for {0}")]
    NoManifest(PublicKey),
    /// A title or item was rejected.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArg {
        /// `title` or `item`.
        what: &'static str,
        /// The value (shortened).
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The manifest could not be signed (sequence or timestamp out of range).
    #[error("could not sign the manifest")]
    Sign(#[source] ManifestError),
    /// Every publish attempt met a newer manifest.
    #[error("gave up after {attempts} attempts: another publisher keeps updating this key")]
    TooManyConflicts {
        /// Attempts made.
        attempts: u32,
    },
    /// A WebSocket operation failed.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// A message/feed command failed.
    #[cfg(feature = "torrent")]
    #[error(transparent)]
    Feed(#[from] super::feed::FeedError),
    /// A contacts problem (or an unknown petname).
    #[error(transparent)]
    Contacts(#[from] ContactsError),
    /// `send` or `inbox` failed.
    #[error(transparent)]
    Mail(#[from] MailCmdError),
    /// A `channel` command failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// `key export` or `key import` failed.
    #[error(transparent)]
    Key(#[from] KeyCmdError),
    /// `profile set` or `profile get` failed.
    #[error(transparent)]
    Profile(#[from] ProfileCmdError),
    /// A local file (mailbox keys, the inbox's seen list) could not be used.
    #[error(transparent)]
    LocalFile(#[from] LocalFileError),
    /// Writing the result failed.
    #[error("cannot write output")]
    Output(#[source] io::Error),
}

/// Run one command, writing its result to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let home = Home::resolve(cli.home.clone())?;
    cli.net.preflight(Duration::from_secs(cli.timeout)).await?;
    match &cli.command {
        Command::Keygen { force } => {
            let id = home.create_identity(*force)?;
            note(&format!(
                "wrote new identity to {}",
                home.identity_path().display()
            ));
            emit(out, format!("{}\n", id.public_key()).as_bytes())
        }
        Command::Whoami => {
            let id = home.load_identity()?;
            warn_loose_permissions(&home);
            emit(out, format!("{}\n", id.public_key()).as_bytes())
        }
        Command::Publish {
            title,
            replace,
            items,
            ws,
        } => {
            let seq = if *ws {
                publish_ws(&cli, &home, title, items, *replace).await?
            } else {
                let client = signaling(&cli, &home).await?;
                publish(&home, &client, title, items, *replace).await?
            };
            emit(out, format!("{seq}\n").as_bytes())
        }
        Command::Send(args) => inbox::send(&cli, &home, args, out).await,
        Command::Inbox(args) => inbox::inbox(&cli, &home, args, out).await,
        Command::Contacts(cmd) => contacts::run(&home, cmd, out),
        Command::Key(cmd) => keys::run(&home, cmd, out),
        Command::Channel(cmd) => super::channel::run(&cli, &home, cmd, out).await,
        Command::Profile(cmd) => super::profile::run(&cli, &home, cmd, out).await,
        Command::Subscribe {
            pubkeys,
            json,
            count,
            max_time,
        } => {
            let keys = contacts::resolve_keys(&home, pubkeys)?;
            let opts = SubscribeOptions {
                keys,
                json: *json,
                count: *count,
                max_time: max_time.map(Duration::from_secs),
                request_timeout: Duration::from_secs(cli.timeout),
            };
            let (connector, base) = connector_and_base(&cli, &home).await?;
            live::subscribe(&connector, &base, &opts, out).await?;
            Ok(())
        }
        #[cfg(feature = "torrent")]
        Command::Share(args) => super::feed::share(&cli, &home, args, out).await,
        #[cfg(feature = "torrent")]
        Command::Find(args) => super::feed::find(&cli, &home, args, out).await,
        #[cfg(feature = "torrent")]
        Command::Seed(args) => {
            super::seeder::run(&cli, &home, &args.peer, !args.own_only, out).await
        }
        Command::Lookup { pubkey, json } => {
            let key = contacts::resolve_key(&home, pubkey)?;
            let fetched = signaling(&cli, &home)
                .await?
                .fetch_manifest(&key)
                .await?
                .ok_or(CliError::NoManifest(key))?;
            if *json {
                let mut body = fetched.body;
                body.push(b'\n');
                emit(out, &body)
            } else {
                emit(out, render_manifest(&fetched.manifest).as_bytes())
            }
        }
    }
}

/// Build the signaling client from the global flags.
pub(crate) async fn signaling(cli: &Cli, home: &Home) -> Result<SignalingClient, CliError> {
    let http = http_client(cli, home).await?;
    Ok(SignalingClient::new(http).with_progress(std::sync::Arc::new(note)))
}

/// The HTTP client for the server from the global flags (one connector; clones share it).
pub(crate) async fn http_client(cli: &Cli, home: &Home) -> Result<HttpClient, CliError> {
    let (connector, base) = connector_and_base(cli, home).await?;
    Ok(HttpClient::new(connector, base).with_request_timeout(Duration::from_secs(cli.timeout)))
}

/// The connector (direct, SOCKS5 or embedded Tor, from the network flags) and server URL.
pub(crate) async fn connector_and_base(
    cli: &Cli,
    home: &Home,
) -> Result<(Connector, BaseUrl), CliError> {
    let timeout = Duration::from_secs(cli.timeout);
    let base = BaseUrl::parse(&cli.server)?;
    let connector = cli.net.connector(home.dir(), timeout).await?;
    Ok((connector, base))
}

/// Parse a user-given public key (hex of either case) and check it is a valid point.
pub(crate) fn parse_key(input: &str) -> Result<PublicKey, CliError> {
    let bad = |source| CliError::BadKey {
        input: shorten(input),
        source,
    };
    let key = PublicKey::from_hex_any_case(input).map_err(bad)?;
    key.verifying_key().map_err(bad)?;
    Ok(key)
}

/// A user-given string cut to 80 characters for an error message.
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        let mut t: String = s.chars().take(80).collect();
        t.push('…');
        t
    } else {
        s.to_owned()
    }
}

/// Warn on stderr when the identity file is readable by others.
pub(crate) fn warn_loose_permissions(home: &Home) {
    if let Some(mode) = home.identity_insecure_mode() {
        note(&format!(
            "warning: {} is readable by others (mode {mode:o}); run chmod 600 on it",
            home.identity_path().display()
        ));
    }
}

/// A progress note or warning on stderr (never the result, never a secret).
pub(crate) fn note(msg: &str) {
    let _ = writeln!(io::stderr(), "{}", printable(msg));
}

pub(crate) fn emit(out: &mut (dyn Write + Send), bytes: &[u8]) -> Result<(), CliError> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn validates_keys() {
        let good = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
        assert_eq!(parse_key(&good.to_hex()).unwrap(), good);
        assert_eq!(parse_key(&good.to_hex().to_uppercase()).unwrap(), good);
        for bad in ["", "abc", &"zz".repeat(32), &"a".repeat(500)] {
            let err = parse_key(bad).unwrap_err();
            assert!(matches!(err, CliError::BadKey { .. }), "{err:?}");
            assert!(err.to_string().len() < 120);
        }
    }

    #[test]
    fn parses_global_flags_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "megatorrent",
            "lookup",
            "abc",
            "--server",
            "http://h:1",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.server, "http://h:1");
        assert!(matches!(cli.command, Command::Lookup { json: true, .. }));
        assert!(Cli::try_parse_from(["megatorrent", "publish", "--title", "t"]).is_err());
        assert!(Cli::try_parse_from(["megatorrent", "--timeout", "0", "whoami"]).is_err());
    }
}
