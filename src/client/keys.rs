//! `megatorrent key export|import`: move an identity between devices.
//!
//! The exported form is the identity file itself (the 32-byte Ed25519 seed as 64 hex
//! characters and a newline). Whoever holds it can read the identity's mail and publish as
//! it; `export --out` creates the file with mode 0600 and never replaces an existing file.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Subcommand;

use super::cli::{emit, note, warn_loose_permissions, CliError};
use super::identity::{read_identity_file, write_identity_file, Home, IdentityError};

/// `megatorrent key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print this identity's SECRET key (or write it to --out) to import on another device
    Export {
        /// Write it to this new file (mode 0600; an existing file is not replaced)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make the identity in FILE (from `key export`) this device's identity
    Import {
        /// The exported identity file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace an existing, different identity (it is lost unless exported first)
        #[arg(long)]
        force: bool,
    },
}

/// Why `key export` or `key import` failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyCmdError {
    /// `--out` names an existing file.
    #[error("{} already exists; not replacing it", path.display())]
    OutExists {
        /// The file.
        path: PathBuf,
    },
    /// `--out` could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file to import does not exist.
    #[error("no such file {}", path.display())]
    NoSuchFile {
        /// The file.
        path: PathBuf,
    },
}

const RISK: &str = "anyone with this key can read your mail and publish as you; keep it secret";

/// Run `megatorrent key …`.
pub fn run(home: &Home, cmd: &KeyCommand, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    match cmd {
        KeyCommand::Export { out: None } => {
            let id = home.load_identity()?;
            warn_loose_permissions(home);
            note(&format!(
                "warning: this is the secret key of {}; {RISK}",
                id.public_key()
            ));
            let mut text = id.secret_text();
            let result = emit(out, &text);
            text.fill(0);
            result
        }
        KeyCommand::Export { out: Some(path) } => {
            let id = home.load_identity()?;
            warn_loose_permissions(home);
            write_identity_file(path, &id).map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    KeyCmdError::OutExists { path: path.clone() }
                } else {
                    KeyCmdError::Write {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
            note(&format!(
                "wrote the secret key of {} to {} (mode 0600); {RISK}",
                id.public_key(),
                path.display()
            ));
            Ok(())
        }
        KeyCommand::Import { file, force } => {
            let id = read_identity_file(file).map_err(|e| match e {
                IdentityError::Missing { path } => CliError::from(KeyCmdError::NoSuchFile { path }),
                other => other.into(),
            })?;
            let same = home
                .load_identity()
                .is_ok_and(|cur| cur.public_key() == id.public_key());
            if same {
                note("this identity is already in use here");
            } else {
                home.save_identity(&id, *force)?;
                note(&format!(
                    "imported identity to {}",
                    home.identity_path().display()
                ));
            }
            emit(out, format!("{}\n", id.public_key()).as_bytes())
        }
    }
}
