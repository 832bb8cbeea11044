//! `megatorrent key export|import`: move an identity between devices.
//!
//! Two export formats, both read by `import`:
//!
//! * version 1, written when this home keeps no mailbox keys: the identity file itself (the
//!   32-byte Ed25519 seed as 64 hex characters and a newline), as every earlier version
//!   wrote and reads;
//! * version 2, written when it keeps some ([`super::mailkeys`]): one JSON object
//!   `{"version": 2, "secretKey": "<64 hex seed>", "mailboxKeys": [{"secret", "publicKey",
//!   "created"}, …]}` (oldest first, at most [`super::mailkeys::MAX_MAILBOX_KEYS`]), so the
//!   other device also opens letters sealed to the mailbox keys the profile published.
//!
//! Whoever holds an export can read the identity's mail and publish as it; `export --out`
//! creates the file with mode 0600 and never replaces an existing file. `import` of the
//! identity already in use adds the file's mailbox keys to the ones kept here.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::cli::{emit, note, warn_loose_permissions, CliError};
use super::identity::{
    parse_seed, read_identity_file, read_small, wipe, write_new_private, Home, Identity,
    IdentityError, MAX_FILE_BYTES,
};
use super::localfile::{self, LocalFileError};
use super::mailkeys::{Entry, MailboxKeyring};

/// `megatorrent key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print this identity's SECRET key and mailbox keys (or write them to --out) to import
    /// on another device
    Export {
        /// Write it to this new file (mode 0600; an existing file is not replaced)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make the identity in FILE (from `key export`) this device's identity, and keep the
    /// mailbox keys it carries
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

/// The version-2 export file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExportV2 {
    version: u32,
    secret_key: String,
    mailbox_keys: Vec<Entry>,
}

impl Drop for ExportV2 {
    fn drop(&mut self) {
        wipe(&mut std::mem::take(&mut self.secret_key).into_bytes());
    }
}

const EXPORT_V2: u32 = 2;

/// The export of `id` and its mailbox keys (version 1 without any, else version 2). The
/// caller must not log it and should wipe it after use.
fn export_bytes(id: &Identity, ring: &MailboxKeyring) -> Result<Vec<u8>, CliError> {
    let mut text = id.secret_text();
    if ring.keys().is_empty() {
        return Ok(text);
    }
    let file = ExportV2 {
        version: EXPORT_V2,
        secret_key: String::from_utf8_lossy(text.trim_ascii()).into_owned(),
        mailbox_keys: ring.entries(),
    };
    wipe(&mut text);
    let mut out = serde_json::to_vec_pretty(&file).map_err(|e| CliError::Output(e.into()))?;
    out.push(b'\n');
    Ok(out)
}

/// Read an export of either version: the identity and its mailbox keys.
fn read_export(path: &Path) -> Result<(Identity, MailboxKeyring), CliError> {
    let missing = |e: IdentityError| match e {
        IdentityError::Missing { path } => CliError::from(KeyCmdError::NoSuchFile { path }),
        other => other.into(),
    };
    // Unreadable, missing or too large: reported as for a version-1 file, below.
    let is_json = read_small(path).is_ok_and(|mut bytes| {
        let json = bytes.trim_ascii_start().first() == Some(&b'{');
        wipe(&mut bytes);
        json
    });
    if !is_json {
        let id = read_identity_file(path).map_err(missing)?;
        let ring = MailboxKeyring::empty(id.public_key());
        return Ok((id, ring));
    }
    let file = localfile::load::<ExportV2>(path, MAX_FILE_BYTES)?.ok_or_else(|| {
        KeyCmdError::NoSuchFile {
            path: path.to_owned(),
        }
    })?;
    if file.version != EXPORT_V2 {
        let reason = format!("unknown key export version {}", file.version);
        return Err(LocalFileError::corrupt(path, reason).into());
    }
    let mut seed = parse_seed(file.secret_key.as_bytes()).map_err(|reason| {
        IdentityError::CorruptIdentity {
            path: path.to_owned(),
            reason,
        }
    })?;
    let id = Identity::from_signing_key(SigningKey::from_bytes(&seed));
    wipe(&mut seed);
    let ring = MailboxKeyring::from_entries(path, id.public_key(), &file.mailbox_keys)?;
    Ok((id, ring))
}

/// Run `megatorrent key …`.
pub fn run(home: &Home, cmd: &KeyCommand, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    match cmd {
        KeyCommand::Export { out: target } => {
            let id = home.load_identity()?;
            warn_loose_permissions(home);
            let ring = MailboxKeyring::load(home, &id.public_key())?;
            let mut bytes = export_bytes(&id, &ring)?;
            let what = match ring.keys().len() {
                0 => String::new(),
                n => format!(" and {n} mailbox key(s)"),
            };
            let result = match target {
                None => {
                    note(&format!(
                        "warning: this is the secret key of {}{what}; {RISK}",
                        id.public_key()
                    ));
                    emit(out, &bytes)
                }
                Some(path) => write_new_private(path, &bytes).map_err(|source| {
                    CliError::from(if source.kind() == io::ErrorKind::AlreadyExists {
                        KeyCmdError::OutExists { path: path.clone() }
                    } else {
                        KeyCmdError::Write {
                            path: path.clone(),
                            source,
                        }
                    })
                }),
            };
            wipe(&mut bytes);
            result?;
            if let Some(path) = target {
                note(&format!(
                    "wrote the secret key of {}{what} to {} (mode 0600); {RISK}",
                    id.public_key(),
                    path.display()
                ));
            }
            Ok(())
        }
        KeyCommand::Import { file, force } => {
            let (id, imported) = read_export(file)?;
            let same = home
                .load_identity()
                .is_ok_and(|cur| cur.public_key() == id.public_key());
            let count = imported.keys().len();
            if same {
                note("this identity is already in use here");
                let mut ring = MailboxKeyring::load(home, &id.public_key())?;
                if imported.keys().iter().any(|k| !ring.holds(&k.public)) {
                    ring.add(imported.keys().to_vec());
                    ring.save(home)?;
                }
            } else {
                home.save_identity(&id, *force)?;
                note(&format!(
                    "imported identity to {}",
                    home.identity_path().display()
                ));
                // The keys kept here belonged to the identity just replaced.
                if count > 0 || MailboxKeyring::path(home).exists() {
                    imported.save(home)?;
                }
            }
            if count > 0 {
                note(&format!("imported {count} mailbox key(s)"));
            }
            emit(out, format!("{}\n", id.public_key()).as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::mail::MailboxSecret;
    use crate::client::mailkeys::StoredKey;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn exports_stay_version_1_without_mailbox_keys_and_both_versions_import() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::generate();
        let mut ring = MailboxKeyring::empty(id.public_key());
        let v1 = export_bytes(&id, &ring).unwrap();
        assert_eq!(v1, id.secret_text(), "exactly the identity file");
        let (back, keys) = read_export(&write(dir.path(), "v1", &v1)).unwrap();
        assert_eq!(back.public_key(), id.public_key());
        assert!(keys.keys().is_empty());

        let made: Vec<_> = (0..3)
            .map(|i| StoredKey::new(MailboxSecret::generate(), 10 + i))
            .collect();
        ring.add(made.clone());
        let v2 = export_bytes(&id, &ring).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&v2).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["mailboxKeys"].as_array().unwrap().len(), 3);
        let (back, keys) = read_export(&write(dir.path(), "v2", &v2)).unwrap();
        assert_eq!(back.public_key(), id.public_key());
        let publics: Vec<_> = keys.keys().iter().map(|k| k.public).collect();
        assert_eq!(publics, made.iter().map(|k| k.public).collect::<Vec<_>>());
        assert_eq!(keys.identity(), &id.public_key());
    }

    #[test]
    fn bad_exports_are_clear_errors_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::generate();
        let mut ring = MailboxKeyring::empty(id.public_key());
        ring.add([StoredKey::new(MailboxSecret::generate(), 1)]);
        let good = String::from_utf8(export_bytes(&id, &ring).unwrap()).unwrap();
        let seed = String::from_utf8(id.secret_text())
            .unwrap()
            .trim()
            .to_owned();
        let other = MailboxSecret::generate().public().to_hex();
        let mine = ring.keys()[0].public.to_hex();
        for (text, needle) in [
            (
                good.replace("\"version\": 2", "\"version\": 3"),
                "unknown key export version 3",
            ),
            (
                good.replace(&seed, &seed[..62]),
                "expected 64 hex characters",
            ),
            (good.replace(&mine, &other), "does not match the secret"),
            (
                good.replace("\"mailboxKeys\"", "\"extra\": 1, \"mailboxKeys\""),
                "unexpected content",
            ),
            ("{\"version\": 2".to_owned(), "truncated JSON"),
            ("not a key\n".to_owned(), "expected 64 hex characters"),
        ] {
            let err = read_export(&write(dir.path(), "bad", text.as_bytes())).unwrap_err();
            let msg = format!("{err}");
            assert!(
                msg.contains("bad") && msg.contains(needle),
                "{needle}: {msg}"
            );
            assert!(!msg.contains(&seed), "{msg}");
        }
        let err = read_export(&dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(err, CliError::Key(KeyCmdError::NoSuchFile { .. })),
            "{err}"
        );
    }
}
