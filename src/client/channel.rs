//! Channels: feeds with their own identity, optionally private (see `docs/mail.md`,
//! "Private channels").
//!
//! * [`seal`] — XChaCha20-Poly1305 under a channel's read key (items and message files).
//! * [`store`] — channels and received read keys under `--home`.
//! * [`invite`] — invitations sent and received as direct messages.
//!
//! Posting (`share --channel`) and reading (`find`) are in [`super::feed`].

pub mod invite;
pub mod seal;
pub mod store;

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::cli::{emit, note, Cli, CliError};
use super::contacts::Contacts;
use super::identity::{Home, IdentityError};
use super::localfile::LocalFileError;

/// `megatorrent channel` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel (its own identity) and print its public key
    Create {
        /// The channel's local name: 1-32 ASCII letters, digits, '-', '_' or '.', starting
        /// with a letter
        #[arg(value_name = "NAME")]
        name: String,
        /// Encrypt its messages under a random read key (readers need an invitation)
        #[arg(long)]
        private: bool,
    },
    /// List this home's channels: name, public key, private or public
    List,
    /// Write a channel's SECRET identity and read key to a new file (to add a writer)
    Export {
        /// The channel
        #[arg(value_name = "NAME")]
        name: String,
        /// The new file (mode 0600; an existing file is never replaced)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add the channel exported in FILE to this home (this home can then write to it)
    Import {
        /// The file written by `channel export`
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The local name [default: the exported name]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Send a private channel's read key to PUBKEY by direct message
    Invite {
        /// The channel
        #[arg(value_name = "NAME")]
        name: String,
        /// The invited reader: a public key (64 hex characters) or a contact's name
        #[arg(value_name = "PUBKEY")]
        to: String,
    },
}

/// Why a channel command failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A channel name breaks the naming rules.
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidName {
        /// The name (shortened).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// No own channel has this name.
    #[error("no channel named {0:?} here (see `megatorrent channel list`)")]
    Unknown(String),
    /// The name is taken.
    #[error("a channel named {0:?} already exists")]
    Exists(String),
    /// `invite` on a public channel.
    #[error("channel {0:?} is public: it has no read key; give its public key instead")]
    Public(String),
    /// Bad input or a limit.
    #[error("{0}")]
    Input(String),
    /// The channel's identity could not be used.
    #[error(transparent)]
    Identity(Box<IdentityError>),
    /// A channel file could not be read or written, or is not valid.
    #[error(transparent)]
    File(#[from] LocalFileError),
}

fn kind(private: bool) -> &'static str {
    if private {
        "private"
    } else {
        "public"
    }
}

/// Run `megatorrent channel …`.
pub async fn run(
    cli: &Cli,
    home: &Home,
    cmd: &ChannelCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        ChannelCommand::Create { name, private } => {
            let ch = store::create(home, name, *private)?;
            note(&format!(
                "created {} channel {name:?} in {}; post with `megatorrent share --channel {name}`",
                kind(*private),
                ch.home.dir().display()
            ));
            emit(out, format!("{}\n", ch.key()).as_bytes())
        }
        ChannelCommand::List => {
            let mut text = String::new();
            for ch in store::list(home)? {
                let k = kind(ch.read_key.is_some());
                text.push_str(&format!("{} {} {k}\n", ch.name, ch.key()));
            }
            emit(out, text.as_bytes())
        }
        ChannelCommand::Export { name, out: file } => {
            let ch = store::export(home, name, file)?;
            note(&format!(
                "wrote channel {name:?} ({}) to {} (mode 0600); anyone with this file can \
                 post to the channel and read it; keep it secret",
                ch.key(),
                file.display()
            ));
            Ok(())
        }
        ChannelCommand::Import { file, name } => {
            let ch = match store::import(home, file, name.as_deref())? {
                store::Imported::New(ch) => {
                    note(&format!(
                        "imported {} channel {:?}",
                        kind(ch.read_key.is_some()),
                        ch.name
                    ));
                    ch
                }
                store::Imported::Already(ch) => {
                    note(&format!("channel {:?} is already here", ch.name));
                    ch
                }
            };
            emit(out, format!("{}\n", ch.key()).as_bytes())
        }
        ChannelCommand::Invite { name, to } => {
            let ch = store::load(home, name)?;
            let Some(read_key) = &ch.read_key else {
                return Err(ChannelError::Public(name.clone()).into());
            };
            let contacts = Contacts::load(home)?;
            let to = contacts.resolve(to)?;
            let content = invite::content(&ch.key(), name, read_key);
            let line =
                super::inbox::send_letter(cli, home, &contacts, &to, &content, None, false).await?;
            note(&format!(
                "invited {} to channel {name:?} ({})",
                contacts.label(&to),
                ch.key()
            ));
            emit(out, line.as_bytes())
        }
    }
}
