//! Contacts: local petnames for public keys, and the one resolver every CLI argument that
//! takes a public key goes through ([`resolve_key`]).
//!
//! Stored in `contacts.json` under the home directory, replaced atomically (a 0600
//! temporary file renamed over the old one):
//!
//! ```json
//! { "version": 1, "contacts": { "alice": "<64 hex>", "bob": "<64 hex>" } }
//! ```
//!
//! Limits: at most [`MAX_CONTACTS`] entries; a name is 1..=[`MAX_NAME_CHARS`] ASCII letters,
//! digits, `-`, `_` or `.`, starting with a letter (so it can never be mistaken for a key),
//! compared exactly (case matters). A key is kept under one name only. Names never leave this
//! machine.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::cli::{emit, note, parse_key, CliError};
use super::identity::{Home, MAX_FILE_BYTES};
use super::localfile::{self, LocalFileError};
use crate::proto::PublicKey;

/// File name of the contacts inside the home directory.
pub const CONTACTS_FILE: &str = "contacts.json";
/// Most contacts kept (the file stays well below the 64 KiB read cap).
pub const MAX_CONTACTS: usize = 500;
/// Longest petname, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Version of the file format.
const VERSION: u32 = 1;

/// `megatorrent contacts` subcommands.
#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Save PUBKEY under the petname NAME
    Add {
        /// The petname: 1-32 ASCII letters, digits, '-', '_' or '.', starting with a letter
        #[arg(value_name = "NAME")]
        name: String,
        /// The public key (64 hex characters)
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
    },
    /// List the contacts (name and key, one per line, sorted by name)
    List,
    /// Forget the contact NAME
    Rm {
        /// The petname
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Why the contacts could not be used or changed.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    /// A petname breaks the naming rules.
    #[error("invalid contact name {name:?}: {reason}")]
    InvalidName {
        /// The name (shortened).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The name is taken.
    #[error("a contact named {0:?} already exists; remove it first")]
    NameTaken(String),
    /// The key is already saved under another name.
    #[error("this key is already saved as {0:?}")]
    KeyTaken(String),
    /// No contact has this name.
    #[error("no contact named {0:?} (and it is not a 64-hex public key); add one with `megatorrent contacts add NAME PUBKEY`")]
    Unknown(String),
    /// The list is full.
    #[error("too many contacts (at most {MAX_CONTACTS}); remove some first")]
    Full,
    /// The file could not be read or written, or is not a valid contacts file.
    #[error(transparent)]
    File(#[from] LocalFileError),
}

/// Check a petname against the naming rules.
pub fn check_name(name: &str) -> Result<(), ContactsError> {
    let bad = |reason| ContactsError::InvalidName {
        name: name.chars().take(MAX_NAME_CHARS + 8).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad("at most 32 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad("must start with a letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad("only ASCII letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    contacts: BTreeMap<String, PublicKey>,
}

/// The petnames of one home directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contacts {
    by_name: BTreeMap<String, PublicKey>,
}

impl Contacts {
    /// Load `contacts.json` (empty if there is none); every entry is checked.
    pub fn load(home: &Home) -> Result<Self, ContactsError> {
        let path = home.dir().join(CONTACTS_FILE);
        let Some(file) = localfile::load::<File>(&path, MAX_FILE_BYTES)? else {
            return Ok(Self::default());
        };
        let corrupt = |reason: String| ContactsError::from(LocalFileError::corrupt(&path, reason));
        if file.version != VERSION {
            return Err(corrupt(format!("unknown version {}", file.version)));
        }
        if file.contacts.len() > MAX_CONTACTS {
            return Err(corrupt(format!("more than {MAX_CONTACTS} contacts")));
        }
        let mut out = Self::default();
        for (name, key) in file.contacts {
            check_name(&name).map_err(|e| corrupt(e.to_string()))?;
            key.verifying_key()
                .map_err(|_| corrupt(format!("the key of {name:?} is not a valid key")))?;
            out.by_name.insert(name, key);
        }
        Ok(out)
    }

    /// Store atomically as `contacts.json` (mode 0600).
    pub fn save(&self, home: &Home) -> Result<(), ContactsError> {
        let file = File {
            version: VERSION,
            contacts: self.by_name.clone(),
        };
        Ok(localfile::save(
            home,
            &home.dir().join(CONTACTS_FILE),
            &file,
        )?)
    }

    /// Add `name` → `key`.
    pub fn add(&mut self, name: &str, key: PublicKey) -> Result<(), ContactsError> {
        check_name(name)?;
        if self.by_name.contains_key(name) {
            return Err(ContactsError::NameTaken(name.to_owned()));
        }
        if let Some(existing) = self.name_of(&key) {
            return Err(ContactsError::KeyTaken(existing.to_owned()));
        }
        if self.by_name.len() >= MAX_CONTACTS {
            return Err(ContactsError::Full);
        }
        self.by_name.insert(name.to_owned(), key);
        Ok(())
    }

    /// Remove `name`.
    pub fn remove(&mut self, name: &str) -> Result<PublicKey, ContactsError> {
        self.by_name
            .remove(name)
            .ok_or_else(|| ContactsError::Unknown(name.to_owned()))
    }

    /// The key saved as `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&PublicKey> {
        self.by_name.get(name)
    }

    /// The petname of `key`, if it has one.
    #[must_use]
    pub fn name_of(&self, key: &PublicKey) -> Option<&str> {
        self.by_name
            .iter()
            .find_map(|(n, k)| (k == key).then_some(n.as_str()))
    }

    /// The petname of `key`, else its hex.
    #[must_use]
    pub fn label(&self, key: &PublicKey) -> String {
        self.name_of(key)
            .map_or_else(|| key.to_hex(), str::to_owned)
    }

    /// All contacts, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.by_name.iter().map(|(n, k)| (n.as_str(), k))
    }

    /// Resolve a CLI argument: a 64-hex public key (either case), else a petname.
    pub fn resolve(&self, input: &str) -> Result<PublicKey, CliError> {
        let looks_like_key = input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit());
        if !looks_like_key && check_name(input).is_ok() {
            return self
                .get(input)
                .copied()
                .ok_or_else(|| ContactsError::Unknown(input.to_owned()).into());
        }
        parse_key(input)
    }
}

/// Resolve a CLI argument that names a public key: 64 hex characters, or the petname of a
/// contact. Every command that takes a key uses this.
pub fn resolve_key(home: &Home, input: &str) -> Result<PublicKey, CliError> {
    Contacts::load(home)?.resolve(input)
}

/// Like [`resolve_key`] for several arguments (the contacts file is read once).
pub fn resolve_keys(home: &Home, inputs: &[String]) -> Result<Vec<PublicKey>, CliError> {
    let contacts = Contacts::load(home)?;
    inputs.iter().map(|i| contacts.resolve(i)).collect()
}

/// Run `megatorrent contacts …`.
pub fn run(
    home: &Home,
    cmd: &ContactsCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut contacts = Contacts::load(home)?;
    match cmd {
        ContactsCommand::Add { name, pubkey } => {
            let key = parse_key(pubkey)?;
            contacts.add(name, key)?;
            contacts.save(home)?;
            note(&format!("saved {name} as {key}"));
            Ok(())
        }
        ContactsCommand::List => {
            let mut text = String::new();
            for (name, key) in contacts.iter() {
                text.push_str(&format!("{name} {key}\n"));
            }
            if text.is_empty() {
                note("no contacts yet; add one with `megatorrent contacts add NAME PUBKEY`");
            }
            emit(out, text.as_bytes())
        }
        ContactsCommand::Rm { name } => {
            contacts.remove(name)?;
            contacts.save(home)?;
            note(&format!("removed {name}"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> PublicKey {
        PublicKey::from(&SigningKey::from_bytes(&[n; 32]))
    }

    #[test]
    fn names_are_validated() {
        for good in ["a", "alice", "Bob-2", "x.y_z", &"a".repeat(MAX_NAME_CHARS)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "a b",
            "ä",
            "a\n",
            &"a".repeat(MAX_NAME_CHARS + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn add_list_remove_round_trip_through_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        let mut c = Contacts::load(&home).unwrap();
        c.add("alice", key(1)).unwrap();
        c.add("bob", key(2)).unwrap();
        assert!(matches!(
            c.add("alice", key(3)),
            Err(ContactsError::NameTaken(_))
        ));
        assert!(matches!(
            c.add("carol", key(1)),
            Err(ContactsError::KeyTaken(n)) if n == "alice"
        ));
        c.save(&home).unwrap();
        let loaded = Contacts::load(&home).unwrap();
        assert_eq!(loaded, c);
        assert_eq!(loaded.label(&key(2)), "bob");
        assert_eq!(loaded.label(&key(3)), key(3).to_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.dir().join(CONTACTS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut c = loaded;
        assert_eq!(c.remove("alice").unwrap(), key(1));
        assert!(matches!(c.remove("alice"), Err(ContactsError::Unknown(_))));
    }

    #[test]
    fn resolve_takes_keys_and_petnames() {
        let mut c = Contacts::default();
        c.add("alice", key(1)).unwrap();
        assert_eq!(c.resolve("alice").unwrap(), key(1));
        assert_eq!(c.resolve(&key(2).to_hex()).unwrap(), key(2));
        assert_eq!(c.resolve(&key(2).to_hex().to_uppercase()).unwrap(), key(2));
        let err = c.resolve("bob").unwrap_err();
        assert!(err.to_string().contains("no contact named"), "{err}");
        assert!(matches!(
            c.resolve("zz not a key"),
            Err(CliError::BadKey { .. })
        ));
    }

    /// A full list with the longest names still fits the read cap.
    #[test]
    fn a_full_list_fits_and_more_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let mut c = Contacts::default();
        for i in 0..MAX_CONTACTS {
            let name = format!("n{i:0>31}");
            let sk = SigningKey::from_bytes(&sha2_seed(i));
            c.add(&name, PublicKey::from(&sk)).unwrap();
        }
        assert!(matches!(c.add("extra", key(9)), Err(ContactsError::Full)));
        c.save(&home).unwrap();
        assert_eq!(Contacts::load(&home).unwrap().iter().count(), MAX_CONTACTS);
    }

    fn sha2_seed(i: usize) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn corrupt_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let path = home.dir().join(CONTACTS_FILE);
        for text in [
            "{not json",
            r#"{"version":2,"contacts":{}}"#,
            r#"{"version":1,"contacts":{"1bad":"00"}}"#,
            r#"{"version":1,"contacts":{},"x":1}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Contacts::load(&home).unwrap_err();
            assert!(
                matches!(err, ContactsError::File(LocalFileError::Corrupt { .. })),
                "{text}: {err}"
            );
            assert!(err.to_string().contains(CONTACTS_FILE));
        }
    }
}
