//! `megatorrent profile set|get`: publish your signed profile, read someone else's.
//!
//! `set` makes the profile exactly what its options say (an option left out is not
//! published), signs it with the next sequence after the server's and publishes it; running
//! it again also renews the server's TTL. `get` verifies the signature and that the profile
//! is the requested key's before showing anything. See docs/api.md ("Profiles").

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::json;

use super::api::{error_from, ApiError};
use super::cli::{emit, note, signaling, Cli, CliError, MAX_CONFLICT_RETRIES};
use super::contacts;
use super::display::{iso8601_utc, printable};
use super::identity::Home;
use super::mail::MailboxSecret;
use super::mailkeys::{MailboxKeyring, StoredKey, MAX_MAILBOX_KEYS};
use crate::proto::profile::check_name;
use crate::proto::{HexError, MailboxKey, Profile, ProfileError, ProfileLimits, PublicKey};

/// `megatorrent profile` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Sign and publish your profile with the next sequence; prints the sequence
    ///
    /// The published profile holds exactly the given options (one left out is not
    /// published). The server keeps it for its TTL (`/v1/info`: profiles.ttlDays); run
    /// `profile set` again to renew it.
    Set(SetArgs),
    /// Fetch a profile, verify its signature and key, and show it
    Get(GetArgs),
}

/// `megatorrent profile set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Display name: 1 to 64 characters, no control characters
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// An image file to publish as the avatar (at most 64 KiB)
    #[arg(long, value_name = "FILE")]
    pub avatar: Option<PathBuf>,
    /// The key others seal mail to: `new` (generate a key pair and keep its secret here),
    /// `current` (the newest one kept here) or an X25519 public key (64 hex characters)
    #[arg(long, value_name = "new|current|HEX")]
    pub mailbox_key: Option<String>,
}

/// `megatorrent profile get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The owner's public key (64 hex characters) or contact name
    #[arg(value_name = "PUBKEY")]
    pub pubkey: String,
    /// Print a JSON summary on one line instead of text
    #[arg(long)]
    pub json: bool,
    /// Save the avatar to this new file (an existing file is not replaced)
    #[arg(long, value_name = "FILE")]
    pub avatar_out: Option<PathBuf>,
}

/// Why `profile set` or `profile get` failed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileCmdError {
    /// The name, avatar or numbers were refused before anything was sent.
    #[error(transparent)]
    Invalid(#[from] ProfileError),
    /// `--avatar` names nothing readable.
    #[error("cannot read the avatar {}", path.display())]
    AvatarRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `--avatar` names a directory or other non-file.
    #[error("the avatar {} is not a regular file", path.display())]
    AvatarNotAFile {
        /// The path.
        path: PathBuf,
    },
    /// `--avatar` is over the cap.
    #[error("the avatar {} is {size} bytes, over the {max}-byte limit", path.display())]
    AvatarTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or a lower bound).
        size: u64,
        /// The cap.
        max: usize,
    },
    /// `--mailbox-key` is not `new`, `current` or 64 hex characters.
    #[error("invalid --mailbox-key (expected new, current or 64 hex characters)")]
    MailboxKey(#[source] HexError),
    /// `--mailbox-key current` without a stored mailbox key.
    #[error("no mailbox key is kept here; use --mailbox-key new to generate one")]
    NoMailboxKey,
    /// The server has no (unexpired) profile for the key.
    #[error("no profile for {0} (none was published, or it expired)")]
    NotFound(PublicKey),
    /// The server sent a profile that does not verify.
    #[error("the server sent an invalid profile for {key}")]
    BadProfile {
        /// The key asked for.
        key: PublicKey,
        /// Why it was rejected.
        #[source]
        source: ProfileError,
    },
    /// The server sent a validly signed profile of another key.
    #[error("the server sent the profile of {got} when asked for {requested}")]
    WrongKey {
        /// The key asked for.
        requested: PublicKey,
        /// The key in the profile.
        got: PublicKey,
    },
    /// `--avatar-out` was given but the profile has no avatar.
    #[error("the profile of {0} has no avatar")]
    NoAvatar(PublicKey),
    /// `--avatar-out` could not be written.
    #[error("cannot write {}", path.display())]
    AvatarWrite {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Every publish attempt met a newer profile.
    #[error("gave up after {0} attempts: another publisher keeps updating this profile")]
    TooManyConflicts(u32),
}

/// A verified profile as fetched, with the server's expiry if it sent one.
#[derive(Debug, Clone)]
pub struct FetchedProfile {
    /// The verified profile.
    pub profile: Profile,
    /// When the server drops it (ms since the epoch), from `X-Expires-At`.
    pub expires_at_ms: Option<u64>,
}

/// Run `megatorrent profile …`.
pub async fn run(
    cli: &Cli,
    home: &Home,
    cmd: &ProfileCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        ProfileCommand::Set(args) => {
            let seq = set(cli, home, args).await?;
            emit(out, format!("{seq}\n").as_bytes())
        }
        ProfileCommand::Get(args) => get(cli, home, args, out).await,
    }
}

async fn set(cli: &Cli, home: &Home, args: &SetArgs) -> Result<u64, CliError> {
    let limits = ProfileLimits::default();
    check_name(&args.name).map_err(ProfileCmdError::from)?;
    let avatar = match &args.avatar {
        Some(path) => Some(read_avatar(path, limits.max_avatar_bytes)?),
        None => None,
    };
    let mailbox_arg = args
        .mailbox_key
        .as_deref()
        .map(MailboxKeyArg::parse)
        .transpose()?;
    let identity = home.load_identity()?;
    let key = identity.public_key();
    let mailbox_key = mailbox_key_to_publish(home, &key, mailbox_arg)?;
    let client = signaling(cli, home).await?;
    let mut next = match fetch(&client, &key).await? {
        Some(current) => current.profile.sequence().saturating_add(1),
        None => 1,
    };
    for _ in 0..=MAX_CONFLICT_RETRIES {
        let profile = crate::proto::UnsignedProfile {
            sequence: next,
            timestamp: u64::try_from(crate::now_ms()).unwrap_or(0),
            name: args.name.clone(),
            avatar: avatar.clone(),
            mailbox_key,
        }
        .sign(identity.signing_key(), &limits)
        .map_err(ProfileCmdError::from)?;
        match client
            .put_signed(&profile_path(&key), profile.canonical_bytes(), next)
            .await
        {
            Ok(put) => return Ok(put.sequence()),
            // A newer profile (perhaps expired, its sequence still held): go above it.
            Err(e) => match e.conflict() {
                Some(current) => {
                    next = current.unwrap_or(next).max(next).saturating_add(1);
                    note(&format!(
                        "the server holds a newer profile; retrying as {next}"
                    ));
                }
                None => return Err(e.into()),
            },
        }
    }
    Err(ProfileCmdError::TooManyConflicts(MAX_CONFLICT_RETRIES + 1).into())
}

async fn get(
    cli: &Cli,
    home: &Home,
    args: &GetArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let key = contacts::resolve_key(home, &args.pubkey)?;
    let client = signaling(cli, home).await?;
    let fetched = fetch(&client, &key)
        .await?
        .ok_or(ProfileCmdError::NotFound(key))?;
    let p = &fetched.profile;
    if let Some(path) = &args.avatar_out {
        let avatar = p.avatar().ok_or(ProfileCmdError::NoAvatar(key))?;
        write_new(path, avatar).map_err(|source| ProfileCmdError::AvatarWrite {
            path: path.clone(),
            source,
        })?;
        note(&format!("saved the avatar to {}", path.display()));
    }
    if args.json {
        let summary = json!({
            "publicKey": key.to_hex(),
            "sequence": p.sequence(),
            "timestamp": p.timestamp(),
            "name": p.name(),
            "avatarBytes": p.avatar().map(<[u8]>::len),
            "mailboxKey": p.mailbox_key().map(MailboxKey::to_hex),
            "expiresAt": fetched.expires_at_ms,
        });
        return emit(out, format!("{summary}\n").as_bytes());
    }
    let avatar = p
        .avatar()
        .map_or_else(|| "none".to_owned(), |a| format!("{} bytes", a.len()));
    let mailbox = p
        .mailbox_key()
        .map_or_else(|| "none".to_owned(), MailboxKey::to_hex);
    let expires = fetched
        .expires_at_ms
        .map_or_else(|| "unknown".to_owned(), iso8601_utc);
    let text = format!(
        "key:         {key}\nname:        {}\nsequence:    {}\npublished:   {}\n\
         expires:     {expires}\navatar:      {avatar}\nmailbox key: {mailbox}\n",
        printable(p.name()),
        p.sequence(),
        iso8601_utc(p.timestamp()),
    );
    emit(out, text.as_bytes())
}

/// Fetch and verify the profile of `key`; `None` if the server has none (or it expired).
pub async fn fetch(
    client: &super::api::SignalingClient,
    key: &PublicKey,
) -> Result<Option<FetchedProfile>, CliError> {
    let accept = (header::ACCEPT, HeaderValue::from_static("application/json"));
    let resp = client
        .http()
        .request(Method::GET, &profile_path(key), &[accept], None)
        .await
        .map_err(ApiError::from)?;
    match resp.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(None),
        _ => return Err(error_from(&resp).into()),
    }
    // The server decides its own avatar cap; accept up to the hard one.
    let limits = ProfileLimits {
        max_avatar_bytes: ProfileLimits::HARD_MAX_AVATAR_BYTES,
    };
    let profile = Profile::verify(&resp.body, &limits)
        .map_err(|source| ProfileCmdError::BadProfile { key: *key, source })?;
    if profile.public_key() != key {
        return Err(ProfileCmdError::WrongKey {
            requested: *key,
            got: *profile.public_key(),
        }
        .into());
    }
    let expires_at_ms = resp
        .headers
        .get("x-expires-at")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(Some(FetchedProfile {
        profile,
        expires_at_ms,
    }))
}

/// What `--mailbox-key` asks to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MailboxKeyArg {
    /// Generate a key pair and keep its secret.
    New,
    /// The newest key kept here.
    Current,
    /// This public key.
    Key(MailboxKey),
}

impl MailboxKeyArg {
    fn parse(arg: &str) -> Result<Self, ProfileCmdError> {
        match arg {
            "new" => Ok(Self::New),
            "current" => Ok(Self::Current),
            hex => MailboxKey::from_hex_any_case(hex)
                .map(Self::Key)
                .map_err(ProfileCmdError::MailboxKey),
        }
    }
}

/// The mailbox key to publish for `identity`. A new key's secret is stored before anything
/// is published, so a published key's secret is never lost; a given key whose secret this
/// home does not hold is published with a warning.
fn mailbox_key_to_publish(
    home: &Home,
    identity: &PublicKey,
    arg: Option<MailboxKeyArg>,
) -> Result<Option<MailboxKey>, CliError> {
    let mut ring = MailboxKeyring::load(home, identity)?;
    let path = MailboxKeyring::path(home);
    match arg {
        None => {
            if let Some(newest) = ring.newest() {
                note(&format!(
                    "publishing no mailbox key: senders will seal to the key derived from \
                     your identity (`--mailbox-key current` keeps publishing {newest})"
                ));
            }
            Ok(None)
        }
        Some(MailboxKeyArg::New) => {
            let created = u64::try_from(crate::now_ms()).unwrap_or(0);
            let stored = StoredKey::new(MailboxSecret::generate(), created);
            let public = stored.public;
            for old in ring.add([stored]) {
                note(&format!(
                    "forgot the oldest mailbox key {old} (at most {MAX_MAILBOX_KEYS} are kept)"
                ));
            }
            ring.save(home)?;
            note(&format!(
                "generated the mailbox key {public}; its secret is kept in {} \
                 (`key export` carries it to your other devices)",
                path.display()
            ));
            Ok(Some(public))
        }
        Some(MailboxKeyArg::Current) => {
            Ok(Some(*ring.newest().ok_or(ProfileCmdError::NoMailboxKey)?))
        }
        Some(MailboxKeyArg::Key(k)) => {
            if !ring.holds(&k) {
                note(&format!(
                    "warning: {} holds no secret for the mailbox key {k}: letters sealed to \
                     it cannot be read on this device (only where its secret is kept)",
                    path.display()
                ));
            }
            Ok(Some(k))
        }
    }
}

fn profile_path(key: &PublicKey) -> String {
    format!("/v1/profiles/{}", key.to_hex())
}

/// Read an avatar file of at most `max` bytes.
fn read_avatar(path: &Path, max: usize) -> Result<Vec<u8>, ProfileCmdError> {
    let read_err = |source| ProfileCmdError::AvatarRead {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ProfileCmdError::AvatarNotAFile {
            path: path.to_owned(),
        });
    }
    let too_large = |size| ProfileCmdError::AvatarTooLarge {
        path: path.to_owned(),
        size,
        max,
    };
    if meta.len() > max as u64 {
        return Err(too_large(meta.len()));
    }
    // The file may grow between the check and the read: read one byte past the cap at most.
    let mut bytes = Vec::with_capacity(max.min(64 * 1024));
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Write `bytes` to a file that must not exist yet.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn avatars_are_read_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.png");
        std::fs::write(&ok, [1u8; 100]).unwrap();
        assert_eq!(read_avatar(&ok, 100).unwrap().len(), 100);
        assert!(matches!(
            read_avatar(&ok, 99),
            Err(ProfileCmdError::AvatarTooLarge {
                size: 100,
                max: 99,
                ..
            })
        ));
        assert!(matches!(
            read_avatar(dir.path(), 99),
            Err(ProfileCmdError::AvatarNotAFile { .. })
        ));
        assert!(matches!(
            read_avatar(&dir.path().join("missing"), 99),
            Err(ProfileCmdError::AvatarRead { .. })
        ));
        write_new(&dir.path().join("new"), b"x").unwrap();
        assert!(write_new(&ok, b"x").is_err(), "never replaces a file");
    }
}
