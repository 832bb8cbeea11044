//! `megatorrent send` and `megatorrent inbox`: end-to-end encrypted direct messages through
//! the server's mailbox (see `docs/mail.md`).
//!
//! `send` signs a letter ([`super::mail::sign_letter`]), seals it to the `mailboxKey` of the
//! recipient's verified profile or, when it publishes none, to the key derived from the
//! recipient's identity, and posts it. `inbox` lists the mailbox with signed requests,
//! fetches each envelope, opens it with the derived key or a stored mailbox key
//! ([`super::mailkeys`]), verifies it (sender signature, addressed to us), prints the
//! verified ones in the order the server received them, and acknowledges (deletes) each
//! message once it was printed or found invalid. A message is acknowledged only after it
//! was written out, so a crash in between shows it again next time rather than losing it.
//! `inbox --keep` acknowledges nothing and remembers what it showed
//! ([`super::inbox_seen`]), for an identity read on several devices.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ed25519_dalek::SigningKey;

use super::api::SignalingClient;
use super::cli::{self, emit, note, warn_loose_permissions, Cli, CliError};
use super::contacts::Contacts;
use super::display::{iso8601_utc, printable};
use super::http::HttpClient;
use super::identity::Home;
use super::inbox_seen::Seen;
use super::mail::{self, Letter, MailError, MailboxSecret, LETTER_ID_CHARS, MAX_BUCKET};
use super::mailbox::{MailEntry, MailboxClient};
use super::mailkeys::MailboxKeyring;
use super::mailpush::MailPush;
use super::profile;
use super::ws::WsError;
use crate::proto::{MailboxKey, Profile, PublicKey};

/// Default seconds between two polls of `inbox --watch`.
pub const DEFAULT_INTERVAL_SECS: u64 = 10;

/// `megatorrent send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The recipient: a public key (64 hex characters) or a contact's name
    #[arg(value_name = "PUBKEY")]
    pub to: String,
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
    /// The id of the letter this answers (32 hex characters, as `inbox` shows it)
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<String>,
    /// Seal to the key derived from the recipient's identity without fetching their
    /// profile (by default a profile's mailboxKey is used when it publishes one)
    #[arg(long)]
    pub no_profile: bool,
}

/// `megatorrent inbox` arguments.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Keep polling for new messages until interrupted (Ctrl-C)
    #[arg(long)]
    pub watch: bool,
    /// Print each message as one JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Leave the messages on the server (for this identity's other devices) and only
    /// remember here which ones were shown, so they are not shown here again
    #[arg(long)]
    pub keep: bool,
    /// Seconds between polls with --watch
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = DEFAULT_INTERVAL_SECS,
        requires = "watch",
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub interval: u64,
}

/// Why `send` or `inbox` failed.
#[derive(Debug, thiserror::Error)]
pub enum MailCmdError {
    /// Nothing to send.
    #[error("the message is empty")]
    Empty,
    /// The letter does not fit the largest padding bucket.
    #[error("the message is too long: {size} bytes once encoded, at most {max}")]
    TooLong {
        /// Encoded size.
        size: usize,
        /// The limit ([`MAX_BUCKET`]).
        max: usize,
    },
    /// `--file` could not be read.
    #[error("cannot read {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `--file` is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// `--reply-to` is not a letter id.
    #[error("invalid --reply-to {0:?}: expected a letter id of 32 hex characters")]
    BadReplyTo(String),
    /// The letter could not be sealed.
    #[error("cannot seal the message")]
    Seal(#[source] MailError),
    /// `507`: the recipient's quota is used up.
    #[error("the recipient's mailbox is full (server quota reached); try again once they have read their mail")]
    MailboxFull,
    /// `413`: the server's envelope cap is below this envelope.
    #[error("the server refuses an envelope of {size} bytes as too large; send a shorter message")]
    RefusedAsTooLarge {
        /// The envelope size.
        size: usize,
    },
    /// The recipient's profile could not be fetched or verified (a missing profile is not
    /// an error: the letter is then sealed to the derived key).
    #[error("cannot fetch the profile of {who} to find its mailbox key (`send --no-profile` seals to the key derived from the identity instead)")]
    ProfileFetch {
        /// The recipient's name or key.
        who: String,
        /// The cause.
        #[source]
        source: Box<CliError>,
    },
}

/// Read `--file`: at most one byte over [`MAX_BUCKET`] is read (longer text cannot be sent).
fn read_text(path: &Path) -> Result<String, MailCmdError> {
    let read_err = |source| MailCmdError::ReadFile {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    f.take(MAX_BUCKET as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() > MAX_BUCKET {
        return Err(MailCmdError::TooLong {
            size: buf.len(),
            max: MAX_BUCKET,
        });
    }
    String::from_utf8(buf).map_err(|_| MailCmdError::NotUtf8 {
        path: path.to_owned(),
    })
}

fn check_reply_to(id: &str) -> Result<String, MailCmdError> {
    if id.len() == LETTER_ID_CHARS && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(MailCmdError::BadReplyTo(id.chars().take(80).collect()))
    }
}

/// `megatorrent send`: seal a letter to the recipient and post it; prints
/// `sent <letter id> to <name or key>`.
pub async fn send(
    cli: &Cli,
    home: &Home,
    args: &SendArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let contacts = Contacts::load(home)?;
    let to = contacts.resolve(&args.to)?;
    let content = match (&args.text, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => read_text(path)?,
        (None, None) => return Err(MailCmdError::Empty.into()),
    };
    if content.is_empty() {
        return Err(MailCmdError::Empty.into());
    }
    let reply_to = args.reply_to.as_deref().map(check_reply_to).transpose()?;
    let line = send_letter(
        cli,
        home,
        &contacts,
        &to,
        &content,
        reply_to.as_deref(),
        args.no_profile,
    )
    .await?;
    emit(out, line.as_bytes())
}

/// Sign `content` as a letter to `to`, seal and post it; returns the line `send` prints
/// (`sent <letter id> to <name or key>, kept until <time>`).
pub(crate) async fn send_letter(
    cli: &Cli,
    home: &Home,
    contacts: &Contacts,
    to: &crate::proto::PublicKey,
    content: &str,
    reply_to: Option<&str>,
    no_profile: bool,
) -> Result<String, CliError> {
    let id = home.load_identity()?;
    warn_loose_permissions(home);
    let now = u64::try_from(crate::now_ms()).unwrap_or(0);
    let letter =
        mail::sign_letter(id.signing_key(), to, now, content, reply_to).map_err(|e| match e {
            MailError::TooLarge { size, max } => MailCmdError::TooLong { size, max },
            other => MailCmdError::Seal(other),
        })?;
    let letter_id = letter.id();
    let http = cli::http_client(cli, home).await?;
    let label = contacts.label(to);
    let mailbox_key = if no_profile {
        None
    } else {
        profile_mailbox_key(&http, to, &label).await?
    };
    let envelope = letter
        .seal(mailbox_key.as_ref())
        .map_err(MailCmdError::Seal)?;
    let size = envelope.len();
    let client = MailboxClient::new(http);
    let posted =
        client
            .post(to, envelope)
            .await
            .map_err(|e| match e.server().map(|s| s.status) {
                Some(507) => MailCmdError::MailboxFull.into(),
                Some(413) => MailCmdError::RefusedAsTooLarge { size }.into(),
                _ => CliError::from(e),
            })?;
    Ok(format!(
        "sent {letter_id} to {label}, kept until {}\n",
        iso8601_utc(posted.expires_at)
    ))
}

/// The key a letter is sealed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SealKey {
    /// The key derived from the recipient's identity.
    Derived,
    /// The `mailboxKey` of the recipient's profile.
    Mailbox(MailboxKey),
    /// The profile's `mailboxKey` is a key nothing can be sealed to: derived key instead.
    Unusable(MailboxKey),
}

/// Pick the key from the recipient's verified profile (`None`: it has none, or `404`).
fn seal_key(profile: Option<&Profile>) -> SealKey {
    match profile.and_then(Profile::mailbox_key) {
        Some(k) if mail::usable_mailbox_key(k) => SealKey::Mailbox(*k),
        Some(k) => SealKey::Unusable(*k),
        None => SealKey::Derived,
    }
}

/// Fetch `to`'s profile (verified, through the same connector) and pick its mailbox key;
/// `None` means the derived key. Any failure but "no profile" is an error: an unreachable
/// or misbehaving server must not silently change the key a letter is sealed to.
async fn profile_mailbox_key(
    http: &HttpClient,
    to: &PublicKey,
    label: &str,
) -> Result<Option<MailboxKey>, CliError> {
    let fetched = profile::fetch(&SignalingClient::new(http.clone()), to)
        .await
        .map_err(|e| MailCmdError::ProfileFetch {
            who: label.to_owned(),
            source: Box::new(e),
        })?;
    match seal_key(fetched.as_ref().map(|f| &f.profile)) {
        SealKey::Derived => Ok(None),
        SealKey::Mailbox(k) => {
            note(&format!(
                "sealing to the mailbox key {k} published in the profile of {label}"
            ));
            Ok(Some(k))
        }
        SealKey::Unusable(k) => {
            note(&format!(
                "warning: the profile of {label} publishes a mailbox key nothing can be sealed \
                 to ({k}); sealing to the key derived from the identity instead"
            ));
            Ok(None)
        }
    }
}

/// `megatorrent inbox`: print verified messages and acknowledge them; with `--watch`, poll
/// until interrupted (a failed poll is reported and retried).
pub async fn inbox(
    cli: &Cli,
    home: &Home,
    args: &InboxArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let id = home.load_identity()?;
    warn_loose_permissions(home);
    let client = MailboxClient::new(cli::http_client(cli, home).await?);
    let key = id.signing_key();
    if !args.watch {
        let pass = round(&client, key, home, args, out).await?;
        if pass.shown == 0 && pass.rejected == 0 {
            note("no new messages");
        }
        return Ok(());
    }
    let interval = Duration::from_secs(args.interval);
    // New mail wakes us at once through the server's push socket; the poll every
    // `interval` stays, so a lost push (or a server without it) only delays a message.
    let mut push: Option<MailPush> = None;
    loop {
        match round(&client, key, home, args, out).await {
            Ok(_) => {}
            Err(e @ CliError::Output(_)) => return Err(e),
            Err(e) => note(&format!(
                "warning: {}; retrying in {}s",
                error_chain(&e),
                args.interval
            )),
        }
        if push.is_none() {
            match MailPush::open(client.http(), key).await {
                Ok(p) => {
                    push = Some(p);
                    note(&format!(
                        "watching: the server pushes new mail; also polling every {}s",
                        args.interval
                    ));
                    // Mail stored between the last listing and the subscription got no
                    // push: list once more now.
                    continue;
                }
                Err(e) => note(&format!(
                    "warning: no new-mail push ({}); polling every {}s",
                    error_chain(&e),
                    args.interval
                )),
            }
        }
        let woke = tokio::select! {
            res = tokio::signal::ctrl_c() => {
                if let Some(p) = push.take() {
                    p.close().await;
                }
                return res.map_err(CliError::Output);
            }
            () = tokio::time::sleep(interval) => Wake::Timer,
            r = arrival(push.as_mut()) => Wake::Push(r),
        };
        if let Wake::Push(Err(e)) = woke {
            note(&format!(
                "warning: the new-mail push stopped ({}); polling every {}s",
                error_chain(&e),
                args.interval
            ));
            push = None;
        }
    }
}

/// What ended a wait of `inbox --watch`.
enum Wake {
    Timer,
    Push(Result<(), WsError>),
}

/// The next push, or never without a push socket.
async fn arrival(push: Option<&mut MailPush>) -> Result<(), WsError> {
    match push {
        Some(p) => p.arrival().await,
        None => std::future::pending().await,
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// What one pass over the mailbox did.
#[derive(Debug, Default)]
struct Pass {
    shown: usize,
    rejected: usize,
}

/// One pass over the mailbox. Without `--keep` every message is acknowledged once printed or
/// rejected (one this device already showed with `--keep` is acknowledged without being
/// shown again); with it nothing is, and the ids shown are remembered.
async fn round(
    client: &MailboxClient,
    key: &SigningKey,
    home: &Home,
    args: &InboxArgs,
    out: &mut (dyn Write + Send),
) -> Result<Pass, CliError> {
    let contacts = Contacts::load(home)?;
    let secrets: Vec<MailboxSecret> = MailboxKeyring::load(home, &PublicKey::from(key))?.secrets();
    let mut seen = Seen::load(home)?;
    let mut entries = client.list(key).await?;
    entries.sort_by_key(|e| e.received_at);
    seen.retain_listed(&entries);
    let (mut pass, mut cleared) = (Pass::default(), 0);
    for entry in &entries {
        if seen.contains(&entry.id) {
            if !args.keep && ack(client, key, &entry.id).await {
                seen.remove(&entry.id);
                cleared += 1;
            }
            continue;
        }
        let Some(envelope) = client.fetch(key, &entry.id).await? else {
            continue; // acknowledged meanwhile (another device) or expired
        };
        match mail::open_with(key, &secrets, &envelope) {
            Ok(mut letter) => {
                // A channel invitation is shown as what was done with it, never its key.
                if let Some(line) = super::channel::invite::receive(home, &letter) {
                    letter.content = line;
                }
                emit(out, render(&letter, entry, &contacts, args.json).as_bytes())?;
                pass.shown += 1;
            }
            Err(e) => {
                let fate = if args.keep {
                    "left on the server for your other devices"
                } else {
                    "deleted"
                };
                note(&format!(
                    "rejected message {}: {e}; it is not shown and is {fate}",
                    entry.id
                ));
                pass.rejected += 1;
            }
        }
        if args.keep {
            seen.insert(&entry.id);
            seen.save_if_changed(home)?;
        } else {
            ack(client, key, &entry.id).await;
        }
    }
    seen.save_if_changed(home)?;
    if cleared > 0 {
        note(&format!(
            "deleted {cleared} message(s) already shown on this device by `inbox --keep`"
        ));
    }
    Ok(pass)
}

/// Acknowledge one message; a failure is a warning (it may be shown again).
async fn ack(client: &MailboxClient, key: &SigningKey, id: &str) -> bool {
    match client.ack(key, id).await {
        Ok(_) => true,
        Err(e) => {
            note(&format!(
                "warning: could not delete message {id} from the server ({e}); it may be shown again"
            ));
            false
        }
    }
}

/// One message for the terminal (header line, then the text indented, control characters
/// escaped) or as one JSON line.
fn render(letter: &Letter, entry: &MailEntry, contacts: &Contacts, json: bool) -> String {
    if json {
        let v = serde_json::json!({
            "id": letter.id,
            "from": letter.from.to_hex(),
            "contact": contacts.name_of(&letter.from),
            "timestamp": letter.timestamp,
            "receivedAt": entry.received_at,
            "content": letter.content,
            "replyTo": letter.reply_to,
        });
        return format!("{v}\n");
    }
    let mut s = format!(
        "{} from {} [{}]",
        iso8601_utc(letter.timestamp),
        contacts.label(&letter.from),
        letter.id
    );
    if let Some(r) = &letter.reply_to {
        s.push_str(&format!(" re {}", printable(r)));
    }
    s.push('\n');
    for line in letter.content.split('\n') {
        s.push_str("  ");
        s.push_str(&printable(line));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PublicKey;

    #[test]
    fn renders_safely_with_petnames() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let letter = Letter {
            id: "ab".repeat(16),
            from: PublicKey::from(&a),
            timestamp: 0,
            content: "hi\n\u{1b}[31mred".into(),
            reply_to: None,
        };
        let entry = MailEntry {
            id: "cd".repeat(16),
            size: 561,
            received_at: 5,
            expires_at: 6,
        };
        let mut contacts = Contacts::default();
        let plain = render(&letter, &entry, &contacts, false);
        assert!(plain.contains(&PublicKey::from(&a).to_hex()), "{plain}");
        assert!(!plain.contains('\u{1b}'), "{plain}");
        assert_eq!(plain.lines().count(), 3, "{plain}");
        contacts.add("alice", PublicKey::from(&a)).unwrap();
        let plain = render(&letter, &entry, &contacts, false);
        assert!(
            plain.starts_with("1970-01-01T00:00:00.000Z from alice ["),
            "{plain}"
        );
        let json = render(&letter, &entry, &contacts, true);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["contact"], "alice");
        assert_eq!(v["content"], "hi\n\u{1b}[31mred");
        assert_eq!(json.lines().count(), 1);
    }

    #[test]
    fn the_profiles_usable_mailbox_key_is_chosen() {
        let owner = SigningKey::from_bytes(&[4; 32]);
        let profile = |mailbox_key| {
            crate::proto::UnsignedProfile {
                sequence: 1,
                timestamp: 1,
                name: "B".into(),
                avatar: None,
                mailbox_key,
            }
            .sign(&owner, &crate::proto::ProfileLimits::default())
            .unwrap()
        };
        assert_eq!(seal_key(None), SealKey::Derived);
        assert_eq!(seal_key(Some(&profile(None))), SealKey::Derived);
        let mk = MailboxSecret::generate().public();
        assert_eq!(seal_key(Some(&profile(Some(mk)))), SealKey::Mailbox(mk));
        // u = 0 is a low-order point: HPKE refuses it, so the derived key is used.
        let zero = MailboxKey::from([0; 32]);
        assert_eq!(
            seal_key(Some(&profile(Some(zero)))),
            SealKey::Unusable(zero)
        );
    }

    #[test]
    fn reply_to_must_be_a_letter_id() {
        assert_eq!(check_reply_to(&"AB".repeat(16)).unwrap(), "ab".repeat(16));
        assert!(check_reply_to("xyz").is_err());
        assert!(check_reply_to(&"a".repeat(33)).is_err());
    }
}
