//! The keystore: the client's home directory, its Ed25519 identity and its local state.
//!
//! Layout of the home directory (default `~/.megatorrent`, created with mode 0700):
//!
//! * `identity.key` — the 32-byte Ed25519 seed as 64 lowercase hex characters and a newline,
//!   mode 0600. Created with `create_new` + fsync; replaced (with `--force`) by writing a 0600
//!   temporary file and renaming it over the old one.
//! * `state.json` — `{"publicKey": "<hex>", "highestSequence": N}`: the highest manifest
//!   sequence this identity has published from here, replaced atomically (temp + rename).
//! * `contacts.json` — petnames ([`super::contacts`]).
//! * `mailbox-keys.json` — X25519 mailbox secrets ([`super::mailkeys`]).
//! * `inbox-seen.json` — messages `inbox --keep` already showed ([`super::inbox_seen`]).
//!
//! The secret never appears in an error message or a `Debug` output.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::proto::PublicKey;

/// File name of the secret key inside the home directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// File name of the local publishing state inside the home directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the default home directory under the user's home.
pub const DEFAULT_HOME_NAME: &str = ".megatorrent";

/// Largest file accepted as an identity or state file (they are tiny).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why the keystore could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No `--home` was given and the user's home directory is unknown.
    #[error("cannot determine the home directory; pass --home DIR")]
    NoHomeDir,
    /// The home directory could not be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// There is no identity yet.
    #[error("no identity at {}; run `megatorrent keygen` first", path.display())]
    Missing {
        /// The identity file.
        path: PathBuf,
    },
    /// An identity exists and `--force` was not given.
    #[error("an identity already exists at {}; use --force to replace it", path.display())]
    Exists {
        /// The identity file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The identity file does not hold a valid key.
    #[error("identity file {} is corrupt: {reason}", path.display())]
    CorruptIdentity {
        /// The identity file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: &'static str,
    },
    /// The state file is not valid.
    #[error("state file {} is corrupt (delete it to start over)", path.display())]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// An Ed25519 identity (the signing key). `Debug` shows only the public key.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh random identity from the OS random number generator.
    #[must_use]
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// Wrap an existing signing key.
    #[must_use]
    pub fn from_signing_key(key: SigningKey) -> Self {
        Self { key }
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(&self.key)
    }

    /// The secret in the identity file format: 64 hex characters and a newline. The caller
    /// must not log it and should wipe the buffer after use.
    pub(crate) fn secret_text(&self) -> Vec<u8> {
        let mut seed = self.key.to_bytes();
        let text = format!("{}\n", hex::encode(seed)).into_bytes();
        wipe(&mut seed);
        text
    }

    /// Parse the identity file format (64 hex characters, surrounding whitespace allowed);
    /// the error never quotes the input.
    pub(crate) fn from_secret_text(text: &[u8]) -> Result<Self, &'static str> {
        let mut seed = parse_seed(text)?;
        let key = SigningKey::from_bytes(&seed);
        wipe(&mut seed);
        Ok(Self { key })
    }

    /// The signing key (for [`crate::proto::UnsignedManifest::sign`]).
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public_key())
    }
}

/// What this client has published, kept across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishState {
    /// The identity the sequence belongs to.
    pub public_key: Option<PublicKey>,
    /// The highest manifest sequence published for it.
    pub highest_sequence: u64,
}

impl PublishState {
    /// The highest sequence published for `pk` (0 if the state belongs to another key).
    #[must_use]
    pub fn highest_for(&self, pk: &PublicKey) -> u64 {
        if self.public_key.as_ref() == Some(pk) {
            self.highest_sequence
        } else {
            0
        }
    }

    /// Record that `pk` published `sequence` (state for another key is replaced).
    pub fn record(&mut self, pk: &PublicKey, sequence: u64) {
        let prev = self.highest_for(pk);
        self.public_key = Some(*pk);
        self.highest_sequence = prev.max(sequence);
    }
}

/// The client's home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Use `dir` as the home directory (it is created on first write).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `dir` if given, else `~/.megatorrent`.
    pub fn resolve(dir: Option<PathBuf>) -> Result<Self, IdentityError> {
        match dir {
            Some(d) => Ok(Self::new(d)),
            None => dirs::home_dir()
                .map(|h| Self::new(h.join(DEFAULT_HOME_NAME)))
                .ok_or(IdentityError::NoHomeDir),
        }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the identity file.
    #[must_use]
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// Path of the state file.
    #[must_use]
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Create the directory (and parents) if missing; a new directory gets mode 0700.
    pub fn ensure_dir(&self) -> Result<(), IdentityError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&self.dir)
            .map_err(|source| IdentityError::CreateDir {
                path: self.dir.clone(),
                source,
            })
    }

    /// Generate a new identity and store it. Refuses to replace an existing one unless
    /// `force`.
    pub fn create_identity(&self, force: bool) -> Result<Identity, IdentityError> {
        let id = Identity::generate();
        self.save_identity(&id, force)?;
        Ok(id)
    }

    /// Store `id` as this home's identity (mode 0600). Refuses to replace an existing one
    /// unless `force`.
    pub fn save_identity(&self, id: &Identity, force: bool) -> Result<(), IdentityError> {
        self.ensure_dir()?;
        let path = self.identity_path();
        let mut text = id.secret_text();
        let result = if force {
            replace_atomically(&self.dir, &path, &text)
        } else {
            write_new_private(&path, &text).inspect(|()| sync_dir(&self.dir))
        };
        wipe(&mut text);
        result.map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                IdentityError::Exists { path }
            } else {
                IdentityError::Write { path, source }
            }
        })
    }

    /// Load the identity.
    pub fn load_identity(&self) -> Result<Identity, IdentityError> {
        read_identity_file(&self.identity_path())
    }

    /// The identity file's permission bits if group or others can access it (Unix only).
    #[must_use]
    pub fn identity_insecure_mode(&self) -> Option<u32> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(self.identity_path())
                .ok()?
                .permissions()
                .mode()
                & 0o777;
            (mode & 0o077 != 0).then_some(mode)
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// Load the publishing state (a default state if there is none yet).
    pub fn load_state(&self) -> Result<PublishState, IdentityError> {
        let path = self.state_path();
        match read_small(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| IdentityError::CorruptState { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PublishState::default()),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// Store the publishing state atomically.
    pub fn save_state(&self, state: &PublishState) -> Result<(), IdentityError> {
        self.ensure_dir()?;
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| IdentityError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        replace_atomically(&self.dir, &path, &bytes)
            .map_err(|source| IdentityError::Write { path, source })
    }
}

/// Read an identity file (this home's or one made by `megatorrent key export`).
pub fn read_identity_file(path: &Path) -> Result<Identity, IdentityError> {
    let path = path.to_path_buf();
    let mut text = match read_small(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing { path })
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(IdentityError::CorruptIdentity {
                path,
                reason: "file is too large",
            })
        }
        Err(source) => return Err(IdentityError::Read { path, source }),
    };
    let parsed = parse_seed(&text);
    wipe(&mut text);
    let mut seed = parsed.map_err(|reason| IdentityError::CorruptIdentity {
        path: path.clone(),
        reason,
    })?;
    let key = SigningKey::from_bytes(&seed);
    wipe(&mut seed);
    Ok(Identity { key })
}

/// Parse 64 hex characters (surrounding whitespace allowed) into a seed.
pub(crate) fn parse_seed(text: &[u8]) -> Result<[u8; 32], &'static str> {
    let trimmed = text.trim_ascii();
    if trimmed.len() != 64 {
        return Err("expected 64 hex characters");
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(trimmed, &mut seed).map_err(|_| "not hex")?;
    Ok(seed)
}

/// Read a file of at most [`MAX_FILE_BYTES`]; larger files are `InvalidData`.
pub(crate) fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    read_capped(path, MAX_FILE_BYTES)
}

/// Read a file of at most `max` bytes; larger files are `InvalidData` (the bytes read are
/// wiped: they may be secret).
pub(crate) fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        wipe(&mut buf);
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(buf)
}

/// Create `path` (which must not exist) with mode 0600, write `bytes`, fsync. A partly
/// written file is removed.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    let result = f.write_all(bytes).and_then(|()| f.sync_all());
    if result.is_err() {
        drop(f);
        let _ = fs::remove_file(path);
    }
    result
}

/// Write `bytes` to a fresh 0600 temporary file in `dir`, then rename it over `path`.
pub(crate) fn replace_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    write_new_private(&tmp, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir);
    Ok(())
}

/// Make a directory entry change durable (best effort: not every platform allows it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Overwrite a buffer that held secret material (best effort).
pub(crate) fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        (tmp, home)
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keygen_writes_a_0600_hex_seed_and_loads_back() {
        let (_t, home) = home();
        let id = home.create_identity(false).unwrap();
        let text = fs::read_to_string(home.identity_path()).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(text[..64]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let loaded = home.load_identity().unwrap();
        assert_eq!(loaded.public_key(), id.public_key());
        assert_eq!(home.identity_insecure_mode(), None);
        #[cfg(unix)]
        {
            assert_eq!(mode(&home.identity_path()), 0o600);
            assert_eq!(mode(home.dir()), 0o700);
        }
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let (_t, home) = home();
        let first = home.create_identity(false).unwrap();
        let err = home.create_identity(false).unwrap_err();
        assert!(matches!(err, IdentityError::Exists { .. }), "{err:?}");
        assert!(err.to_string().contains("--force"));
        assert_eq!(
            home.load_identity().unwrap().public_key(),
            first.public_key()
        );

        let second = home.create_identity(true).unwrap();
        assert_ne!(second.public_key(), first.public_key());
        assert_eq!(
            home.load_identity().unwrap().public_key(),
            second.public_key()
        );
        #[cfg(unix)]
        assert_eq!(mode(&home.identity_path()), 0o600);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(home.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_or_missing_identity_is_a_clear_error() {
        let (_t, home) = home();
        let err = home.load_identity().unwrap_err();
        assert!(matches!(err, IdentityError::Missing { .. }));
        assert!(err.to_string().contains("keygen"));

        home.ensure_dir().unwrap();
        let secretish = "zz".repeat(32);
        fs::write(home.identity_path(), &secretish).unwrap();
        let err = home.load_identity().unwrap_err();
        assert!(
            matches!(err, IdentityError::CorruptIdentity { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(IDENTITY_FILE), "{msg}");
        assert!(!msg.contains(&secretish), "{msg}");

        fs::write(home.identity_path(), "abcd\n").unwrap();
        assert!(matches!(
            home.load_identity().unwrap_err(),
            IdentityError::CorruptIdentity { .. }
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = Identity::generate();
        let secret = hex::encode(id.signing_key().to_bytes());
        let dbg = format!("{id:?}");
        assert!(!dbg.contains(&secret));
        assert!(dbg.contains(&id.public_key().to_hex()));
    }

    #[cfg(unix)]
    #[test]
    fn reports_loose_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let (_t, home) = home();
        home.create_identity(false).unwrap();
        fs::set_permissions(home.identity_path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(home.identity_insecure_mode(), Some(0o644));
    }

    #[test]
    fn state_round_trips_and_tracks_the_key() {
        let (_t, home) = home();
        assert_eq!(home.load_state().unwrap(), PublishState::default());
        let a = Identity::generate().public_key();
        let b = Identity::generate().public_key();
        let mut st = PublishState::default();
        st.record(&a, 5);
        st.record(&a, 3);
        assert_eq!(st.highest_for(&a), 5);
        assert_eq!(st.highest_for(&b), 0);
        home.save_state(&st).unwrap();
        assert_eq!(home.load_state().unwrap(), st);
        let json = fs::read_to_string(home.state_path()).unwrap();
        assert!(json.contains("\"highestSequence\": 5"), "{json}");

        st.record(&b, 1);
        assert_eq!(st.highest_for(&a), 0);
        home.save_state(&st).unwrap();
        assert_eq!(home.load_state().unwrap().highest_for(&b), 1);

        fs::write(home.state_path(), "{not json").unwrap();
        let err = home.load_state().unwrap_err();
        assert!(matches!(err, IdentityError::CorruptState { .. }));
        assert!(err.to_string().contains(STATE_FILE));
    }
}
