//! Where channels live under `--home`:
//!
//! * `channels/<name>/` — a channel this home can write to, itself laid out like a home
//!   directory (so the publishing code is the same): `identity.key` (the channel's Ed25519
//!   seed, mode 0600, written by [`Home::save_identity`]), `channel.json`
//!   (`{"version":1,"readKey":"<64 hex>"|null}`, 0600, replaced atomically), `state.json`
//!   (its highest published sequence) and `messages/` (its message torrents).
//! * `channel-keys.json` — read keys received by invitation, by channel public key:
//!   `{"version":1,"channels":{"<64 hex>":{"name":"news","readKey":"<64 hex>"}}}` (0600,
//!   replaced atomically).
//!
//! Limits: at most [`MAX_CHANNELS`] own channels and [`MAX_RECEIVED`] received keys; names
//! follow the petname rules (1–32 ASCII letters, digits, `-_.`, starting with a letter).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::seal::ReadKey;
use super::ChannelError;
use crate::client::contacts::check_name;
use crate::client::identity::{
    read_small, replace_atomically, write_new_private, Home, Identity, IdentityError,
};
use crate::client::localfile::LocalFileError;
use crate::proto::PublicKey;

/// The directory of own channels inside the home directory.
pub const CHANNELS_DIR: &str = "channels";
/// The settings file inside a channel's directory.
pub const CHANNEL_FILE: &str = "channel.json";
/// The read keys received by invitation, inside the home directory.
pub const RECEIVED_FILE: &str = "channel-keys.json";
/// Most own channels per home.
pub const MAX_CHANNELS: usize = 100;
/// Most received read keys kept (the file stays under the 64 KiB read cap).
pub const MAX_RECEIVED: usize = 256;
/// The `format` of an exported channel.
pub const EXPORT_FORMAT: &str = "megatorrent-channel/1";
const VERSION: u32 = 1;

/// A channel this home can write to.
#[derive(Debug)]
pub struct Channel {
    /// Its local name.
    pub name: String,
    /// Its directory, laid out like a home directory.
    pub home: Home,
    /// Its identity.
    pub identity: Identity,
    /// The read key of a private channel.
    pub read_key: Option<ReadKey>,
}

impl Channel {
    /// The channel's public key.
    #[must_use]
    pub fn key(&self) -> PublicKey {
        self.identity.public_key()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    version: u32,
    read_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Export {
    format: String,
    name: String,
    secret_key: String,
    read_key: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Received {
    name: String,
    read_key: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReceivedFile {
    version: u32,
    channels: BTreeMap<String, Received>,
}

fn valid_name(name: &str) -> Result<(), ChannelError> {
    check_name(name).map_err(|e| match e {
        crate::client::contacts::ContactsError::InvalidName { reason, .. } => {
            ChannelError::InvalidName {
                name: name.chars().take(40).collect(),
                reason,
            }
        }
        other => ChannelError::Input(other.to_string()),
    })
}

fn channels_dir(home: &Home) -> PathBuf {
    home.dir().join(CHANNELS_DIR)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ChannelError {
    let path = path.to_owned();
    move |source| {
        ChannelError::File(LocalFileError::Io {
            action,
            path,
            source,
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, maps of strings) cannot fail.
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Create channel `name` with a fresh identity (and a fresh read key if `private`).
pub fn create(home: &Home, name: &str, private: bool) -> Result<Channel, ChannelError> {
    let read_key = private.then(ReadKey::generate);
    store(home, name, Identity::generate(), read_key)
}

fn store(
    home: &Home,
    name: &str,
    identity: Identity,
    read_key: Option<ReadKey>,
) -> Result<Channel, ChannelError> {
    valid_name(name)?;
    if list(home)?.len() >= MAX_CHANNELS {
        return Err(ChannelError::Input(format!(
            "too many channels (at most {MAX_CHANNELS})"
        )));
    }
    let final_dir = channels_dir(home).join(name);
    if final_dir.exists() {
        return Err(ChannelError::Exists(name.to_owned()));
    }
    // Built in a hidden directory, then renamed into place: a crash leaves no half channel
    // (hidden names are not channel names), and a concurrent create of the same name fails.
    let tmp =
        Home::new(channels_dir(home).join(format!(".new-{name}-{:016x}", rand::random::<u64>())));
    let built = build(&tmp, &identity, read_key.as_ref()).and_then(|()| {
        std::fs::rename(tmp.dir(), &final_dir).map_err(io_err("create", &final_dir))
    });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(tmp.dir());
        return Err(if final_dir.exists() {
            ChannelError::Exists(name.to_owned())
        } else {
            e
        });
    }
    Ok(Channel {
        name: name.to_owned(),
        home: Home::new(final_dir),
        identity,
        read_key,
    })
}

/// Write a channel's identity and settings into the new directory `ch_home`.
fn build(
    ch_home: &Home,
    identity: &Identity,
    read_key: Option<&ReadKey>,
) -> Result<(), ChannelError> {
    ch_home.ensure_dir()?;
    ch_home.save_identity(identity, false)?;
    let settings = Settings {
        version: VERSION,
        read_key: read_key.map(ReadKey::to_hex),
    };
    let path = ch_home.dir().join(CHANNEL_FILE);
    write_new_private(&path, &to_json(&settings)).map_err(io_err("write", &path))
}

/// Load own channel `name`.
pub fn load(home: &Home, name: &str) -> Result<Channel, ChannelError> {
    valid_name(name)?;
    let ch_home = Home::new(channels_dir(home).join(name));
    if !ch_home.dir().is_dir() {
        return Err(ChannelError::Unknown(name.to_owned()));
    }
    let identity = ch_home.load_identity()?;
    let path = ch_home.dir().join(CHANNEL_FILE);
    let bytes = read_small(&path).map_err(io_err("read", &path))?;
    let corrupt = |reason: String| ChannelError::from(LocalFileError::corrupt(&path, reason));
    // The parser's message could quote the read key: give a fixed reason instead.
    let settings: Settings = serde_json::from_slice(&bytes)
        .map_err(|_| corrupt("not a channel settings file".into()))?;
    if settings.version != VERSION {
        return Err(corrupt(format!("unknown version {}", settings.version)));
    }
    let read_key = settings
        .read_key
        .as_deref()
        .map(ReadKey::from_hex)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(Channel {
        name: name.to_owned(),
        home: ch_home,
        identity,
        read_key,
    })
}

/// Every own channel, sorted by name (at most [`MAX_CHANNELS`]). Entries whose names are
/// not channel names (such as a hidden half-built one) are skipped; a channel directory
/// that does not load is an error naming its file.
pub fn list(home: &Home) -> Result<Vec<Channel>, ChannelError> {
    let dir = channels_dir(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| valid_name(n).is_ok())
        .collect();
    names.sort();
    names.truncate(MAX_CHANNELS);
    names.iter().map(|n| load(home, n)).collect()
}

/// Write own channel `name` (identity and read key) to the new file `out` (mode 0600).
pub fn export(home: &Home, name: &str, out: &Path) -> Result<Channel, ChannelError> {
    let ch = load(home, name)?;
    let mut secret = ch.identity.secret_text();
    let export = Export {
        format: EXPORT_FORMAT.to_owned(),
        name: ch.name.clone(),
        secret_key: String::from_utf8_lossy(secret.trim_ascii()).into_owned(),
        read_key: ch.read_key.as_ref().map(ReadKey::to_hex),
    };
    secret.fill(0);
    let mut bytes = to_json(&export);
    let result = write_new_private(out, &bytes);
    bytes.fill(0);
    result.map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ChannelError::Input(format!(
                "{} already exists; not replacing it",
                out.display()
            ))
        } else {
            io_err("write", out)(e)
        }
    })?;
    Ok(ch)
}

/// What [`import`] did.
pub enum Imported {
    /// A new channel was stored.
    New(Channel),
    /// The same channel was already there under this name.
    Already(Channel),
}

/// Store the channel exported in `file` as `name` (default: the exported name).
pub fn import(home: &Home, file: &Path, name: Option<&str>) -> Result<Imported, ChannelError> {
    let bytes = read_small(file).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => LocalFileError::corrupt(file, "file is too large").into(),
        _ => io_err("read", file)(e),
    })?;
    let corrupt = |reason: &str| ChannelError::from(LocalFileError::corrupt(file, reason));
    // The parser's message could quote the secret: give a fixed reason instead.
    let parsed: Export =
        serde_json::from_slice(&bytes).map_err(|_| corrupt("not an exported channel"))?;
    if parsed.format != EXPORT_FORMAT {
        return Err(corrupt("unknown format"));
    }
    let identity = Identity::from_secret_text(parsed.secret_key.as_bytes())
        .map_err(|_| corrupt("the secret key is not 64 hex characters"))?;
    let read_key = parsed
        .read_key
        .as_deref()
        .map(ReadKey::from_hex)
        .transpose()
        .map_err(|_| corrupt("the read key is not 64 hex characters"))?;
    let name = name.unwrap_or(&parsed.name);
    valid_name(name)?;
    for ch in list(home)? {
        if ch.key() == identity.public_key() {
            if ch.name == name && ch.read_key == read_key {
                return Ok(Imported::Already(ch));
            }
            return Err(ChannelError::Input(format!(
                "this channel is already here as {:?} (with {} read key)",
                ch.name,
                if ch.read_key == read_key {
                    "the same"
                } else {
                    "another"
                }
            )));
        }
    }
    store(home, name, identity, read_key).map(Imported::New)
}

fn load_received(home: &Home) -> Result<ReceivedFile, ChannelError> {
    let path = home.dir().join(RECEIVED_FILE);
    let bytes = match read_small(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(ReceivedFile {
                version: VERSION,
                channels: BTreeMap::new(),
            })
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |reason: String| ChannelError::from(LocalFileError::corrupt(&path, reason));
    let file: ReceivedFile =
        serde_json::from_slice(&bytes).map_err(|_| corrupt("not a channel key file".into()))?;
    if file.version != VERSION {
        return Err(corrupt(format!("unknown version {}", file.version)));
    }
    if file.channels.len() > MAX_RECEIVED {
        return Err(corrupt(format!("more than {MAX_RECEIVED} channels")));
    }
    for (key, r) in &file.channels {
        PublicKey::from_hex(key).map_err(|_| corrupt("a channel key is not 64 hex".into()))?;
        ReadKey::from_hex(&r.read_key).map_err(|_| corrupt("a read key is not 64 hex".into()))?;
    }
    Ok(file)
}

/// The read key for `channel`, if this home has one (received, or an own channel's).
pub fn read_key_for(home: &Home, channel: &PublicKey) -> Result<Option<ReadKey>, ChannelError> {
    if let Some(r) = load_received(home)?.channels.get(&channel.to_hex()) {
        return Ok(ReadKey::from_hex(&r.read_key).ok());
    }
    Ok(list(home)?
        .into_iter()
        .find(|c| c.key() == *channel)
        .and_then(|c| c.read_key))
}

/// What [`accept`] did with an offered read key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored: this home had no read key for the channel.
    Stored,
    /// This home already had exactly this key.
    Known,
    /// This home has a different key for the channel; it was kept, the offer ignored.
    Conflict,
}

/// Remember `read_key` for `channel` (named `name` by whoever offered it), never replacing
/// a different key this home already has.
pub fn accept(
    home: &Home,
    channel: &PublicKey,
    name: &str,
    read_key: &ReadKey,
) -> Result<Accepted, ChannelError> {
    match read_key_for(home, channel)? {
        Some(k) if k == *read_key => return Ok(Accepted::Known),
        Some(_) => return Ok(Accepted::Conflict),
        None => {}
    }
    let mut file = load_received(home)?;
    if file.channels.len() >= MAX_RECEIVED {
        return Err(ChannelError::Input(format!(
            "too many channel keys (at most {MAX_RECEIVED})"
        )));
    }
    valid_name(name)?;
    file.channels.insert(
        channel.to_hex(),
        Received {
            name: name.to_owned(),
            read_key: read_key.to_hex(),
        },
    );
    home.ensure_dir()?;
    let path = home.dir().join(RECEIVED_FILE);
    let mut bytes = to_json(&file);
    let result = replace_atomically(home.dir(), &path, &bytes);
    bytes.fill(0);
    result.map_err(io_err("write", &path))?;
    Ok(Accepted::Stored)
}

impl From<IdentityError> for ChannelError {
    fn from(e: IdentityError) -> Self {
        ChannelError::Identity(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let t = tempfile::tempdir().unwrap();
        let h = Home::new(t.path().join("h"));
        (t, h)
    }

    #[test]
    fn create_load_list_export_import() {
        let (_t, a) = home();
        let ch = create(&a, "news", true).unwrap();
        assert!(ch.read_key.is_some());
        assert!(matches!(
            create(&a, "news", false),
            Err(ChannelError::Exists(_))
        ));
        assert!(matches!(
            create(&a, "9bad", false),
            Err(ChannelError::InvalidName { .. })
        ));
        create(&a, "open", false).unwrap();
        let all = list(&a).unwrap();
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["news", "open"]
        );
        assert!(all[1].read_key.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(ch.home.dir().join(CHANNEL_FILE)), 0o600);
            assert_eq!(mode(ch.home.identity_path()), 0o600);
        }
        assert_eq!(read_key_for(&a, &ch.key()).unwrap(), ch.read_key);

        let out = a.dir().join("news.channel");
        export(&a, "news", &out).unwrap();
        assert!(export(&a, "news", &out).is_err(), "never overwrites");
        let (_u, b) = home();
        let Imported::New(got) = import(&b, &out, None).unwrap() else {
            panic!("expected a new channel");
        };
        assert_eq!(got.key(), ch.key());
        assert_eq!(got.read_key, ch.read_key);
        assert!(matches!(
            import(&b, &out, None).unwrap(),
            Imported::Already(_)
        ));
        assert!(
            import(&b, &out, Some("other")).is_err(),
            "one name per channel"
        );

        std::fs::write(&out, b"{\"format\":\"x\"}").unwrap();
        assert!(matches!(
            import(&b, &out, None),
            Err(ChannelError::File(LocalFileError::Corrupt { .. }))
        ));
    }

    #[test]
    fn accept_never_replaces_a_different_key() {
        let (_t, h) = home();
        let ch = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[4; 32]));
        let k = ReadKey::generate();
        assert_eq!(read_key_for(&h, &ch).unwrap(), None);
        assert_eq!(accept(&h, &ch, "news", &k).unwrap(), Accepted::Stored);
        assert_eq!(accept(&h, &ch, "news", &k).unwrap(), Accepted::Known);
        assert_eq!(
            accept(&h, &ch, "news", &ReadKey::generate()).unwrap(),
            Accepted::Conflict
        );
        assert_eq!(read_key_for(&h, &ch).unwrap(), Some(k));
        // An own channel's key counts too.
        let own = create(&h, "mine", true).unwrap();
        assert_eq!(
            accept(&h, &own.key(), "mine", &ReadKey::generate()).unwrap(),
            Accepted::Conflict
        );
        std::fs::write(h.dir().join(RECEIVED_FILE), b"[]").unwrap();
        assert!(matches!(
            read_key_for(&h, &ch),
            Err(ChannelError::File(LocalFileError::Corrupt { .. }))
        ));
    }
}
