//! Publishing messages, and the archive path: when adding messages would take the manifest
//! within [`CAP_MARGIN`] of the server's cap, the oldest items of `messages` move into
//! archive torrents ([`crate::proto::Archive`]) and the `archive` collection lists only the
//! newest archive, which links to the older ones. See docs/messages.md.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::{io_err, own_dir, tracker_url, FeedError, ARCHIVE_COLLECTION, MESSAGES_COLLECTION};
use crate::client::cli::{self, Cli, CliError};
use crate::client::identity::Home;
use crate::client::seeder;
use crate::client::torrent::magnet_info_hash;
use crate::proto::{Archive, Collection, Message, UnsignedManifest};

/// Bytes kept free under the server's manifest cap when deciding to archive (room for a
/// longer sequence or timestamp and for estimates being a few bytes off).
pub const CAP_MARGIN: usize = 512;
/// Room kept in each archive file for its header (at most [`Archive::MAX_PREVIOUS`] links
/// of [`Archive::MAX_LINK_BYTES`]).
const HEADER_ROOM: usize = Archive::MAX_PREVIOUS * (Archive::MAX_LINK_BYTES + 3) + 64;

/// A message being shared: its document (already written under `messages/`) and magnet.
pub(crate) struct Shared {
    /// The signed message.
    pub message: Message,
    /// Its file.
    pub file: PathBuf,
    /// Its torrent's magnet.
    pub magnet: String,
}

/// What [`publish_messages`] did.
pub(crate) struct Published {
    /// The published sequence.
    pub sequence: u64,
    /// Magnets of the archives made (oldest first; empty if none was needed).
    pub archives: Vec<String>,
    /// How many messages moved into them.
    pub archived: usize,
}

/// Add `new` to the `messages` collection and publish, first moving the oldest messages
/// into archives if the manifest would otherwise come within [`CAP_MARGIN`] of the
/// server's cap (`/v1/info`). Archived message files are removed once published.
pub(crate) async fn publish_messages(
    cli: &Cli,
    home: &Home,
    new: &[Shared],
) -> Result<Published, CliError> {
    let client = cli::signaling(cli, home).await?;
    let cap = client.max_manifest_bytes().await?;
    let id = home.load_identity()?;
    let current = client.get_manifest(&id.public_key()).await?;
    let new_magnets: Vec<String> = new.iter().map(|s| s.magnet.clone()).collect();
    let mut collections = current
        .as_ref()
        .map(|m| m.collections().to_vec())
        .unwrap_or_default();
    cli::merge_items(&mut collections, MESSAGES_COLLECTION, &new_magnets);
    let size = signed_size(&collections, id.signing_key())?;
    let mut made: Vec<(String, PathBuf)> = Vec::new();
    let mut moved: Vec<(String, PathBuf)> = Vec::new();
    if size > cap.saturating_sub(CAP_MARGIN) {
        let messages = items_of(&collections, MESSAGES_COLLECTION);
        let mut docs = own_documents(home, cli, new, &messages).await?;
        let archivable: Vec<bool> = messages.iter().map(|m| docs.contains_key(m)).collect();
        let longest = messages.iter().map(String::len).max().unwrap_or(0);
        // The archive collection, holding one magnet about as long as a message's.
        let target = (cap / 2).saturating_sub(longest + 64);
        let chosen = choose(&messages, &archivable, size, target);
        let skipped = archivable.iter().filter(|a| !**a).count();
        if skipped > 0 {
            cli::note(&format!(
                "warning: {skipped} listed messages are not under {} and stay listed",
                own_dir(home).display()
            ));
        }
        let mut batch: Vec<(String, Message, PathBuf)> = Vec::new();
        for i in chosen {
            if let Some((m, f)) = docs.remove(&messages[i]) {
                batch.push((messages[i].clone(), m, f));
            }
        }
        let previous = items_of(&collections, ARCHIVE_COLLECTION);
        made = write_archives(cli, home, &previous, &batch).await?;
        moved = batch.into_iter().map(|(mg, _, f)| (mg, f)).collect();
    }
    let newest = made.last().map(|(m, _)| m.clone());
    let result = cli::publish_edit(home, &client, &mut |cur| {
        let mut c = cur.map(|m| m.collections().to_vec()).unwrap_or_default();
        cli::merge_items(&mut c, MESSAGES_COLLECTION, &new_magnets);
        if let Some(newest) = &newest {
            for col in &mut c {
                if col.title == MESSAGES_COLLECTION {
                    col.items.retain(|i| !moved.iter().any(|(m, _)| m == i));
                }
            }
            c.retain(|col| col.title != ARCHIVE_COLLECTION);
            c.push(Collection {
                title: ARCHIVE_COLLECTION.to_owned(),
                items: vec![newest.clone()],
            });
        }
        Ok(c)
    })
    .await;
    let sequence = match result {
        Ok(s) => s,
        Err(e) => {
            for (_, file) in &made {
                let _ = std::fs::remove_file(file);
            }
            return Err(e);
        }
    };
    for (_, file) in &moved {
        if let Err(e) = std::fs::remove_file(file) {
            cli::note(&format!(
                "warning: cannot remove archived {}: {e}",
                file.display()
            ));
        }
    }
    Ok(Published {
        sequence,
        archives: made.into_iter().map(|(m, _)| m).collect(),
        archived: moved.len(),
    })
}

fn items_of(collections: &[Collection], title: &str) -> Vec<String> {
    collections
        .iter()
        .find(|c| c.title == title)
        .map(|c| c.items.clone())
        .unwrap_or_default()
}

/// The size of the manifest with `collections` once signed (sequence and timestamp as
/// large as they get, so the estimate errs on the big side).
pub(crate) fn signed_size(collections: &[Collection], key: &SigningKey) -> Result<usize, CliError> {
    let m = UnsignedManifest {
        sequence: crate::proto::MAX_SAFE_INTEGER,
        timestamp: crate::proto::MAX_SAFE_INTEGER,
        collections: collections.to_vec(),
    }
    .sign(key)
    .map_err(CliError::Sign)?;
    Ok(m.canonical_bytes().len())
}

/// Which of `messages` (oldest first) to archive so that the manifest of `size` bytes
/// shrinks to `target`: the oldest archivable ones, each saving its JSON string and comma.
fn choose(messages: &[String], archivable: &[bool], size: usize, target: usize) -> Vec<usize> {
    let mut size = size;
    let mut chosen = Vec::new();
    for (i, (m, ok)) in messages.iter().zip(archivable).enumerate() {
        if size <= target {
            break;
        }
        if *ok {
            chosen.push(i);
            size = size.saturating_sub(m.len() + 3);
        }
    }
    chosen
}

/// Our own signed documents of the listed `messages`, by magnet: the new ones, and those
/// found under `messages/` (each file's info-hash computed).
async fn own_documents(
    home: &Home,
    cli: &Cli,
    new: &[Shared],
    messages: &[String],
) -> Result<HashMap<String, (Message, PathBuf)>, CliError> {
    let mut by_hash: HashMap<[u8; 20], &String> = HashMap::new();
    for m in messages {
        if let Ok(h) = magnet_info_hash(m) {
            by_hash.insert(h, m);
        }
    }
    let fresh: HashSet<&Path> = new.iter().map(|s| s.file.as_path()).collect();
    let mut docs = HashMap::new();
    for s in new {
        docs.insert(s.magnet.clone(), (s.message.clone(), s.file.clone()));
    }
    let key = home.load_identity()?.public_key();
    let tracker = tracker_url(cli)?;
    let dir = own_dir(home);
    let entries = std::fs::read_dir(&dir).map_err(io_err("list", &dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("msg-") && name.ends_with(".json")) || fresh.contains(path.as_path())
        {
            continue;
        }
        let Ok(magnet) = seeder::magnet_of(&path, &tracker).await else {
            continue;
        };
        let Some(listed) = magnet_info_hash(&magnet).ok().and_then(|h| by_hash.get(&h)) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(m) = Message::verify_from(&bytes, &key) {
            docs.insert((*listed).clone(), (m, path));
        }
    }
    Ok(docs)
}

/// Write `batch` (oldest first) into as many archives as the caps need, the first linking
/// to `previous`, each later one to the one before; returns (magnet, file) of each.
async fn write_archives(
    cli: &Cli,
    home: &Home,
    previous: &[String],
    batch: &[(String, Message, PathBuf)],
) -> Result<Vec<(String, PathBuf)>, FeedError> {
    let tracker = tracker_url(cli).map_err(|e| FeedError::Input(e.to_string()))?;
    let mut links: Vec<String> = previous.to_vec();
    if links.len() > Archive::MAX_PREVIOUS {
        cli::note("warning: the feed lists too many archives; linking the newest ones");
        links.drain(..links.len() - Archive::MAX_PREVIOUS);
    }
    let mut made: Vec<(String, PathBuf)> = Vec::new();
    for chunk in chunks(batch) {
        let messages: Vec<Message> = chunk.iter().map(|(_, m, _)| m.clone()).collect();
        let bytes = match Archive::write(&links, &messages) {
            Ok(b) => b,
            Err(e) => {
                remove_all(&made);
                return Err(FeedError::Input(format!("cannot write an archive: {e}")));
            }
        };
        let Some(last) = messages.last() else {
            continue;
        };
        let short = &last.signature().to_hex()[..16];
        let file = own_dir(home).join(format!("archive-{short}.jsonl"));
        let written = std::fs::write(&file, bytes).map_err(io_err("write", &file));
        let magnet = match written {
            Ok(()) => seeder::magnet_of(&file, &tracker).await,
            Err(e) => Err(e),
        };
        match magnet {
            Ok(m) => {
                links = vec![m.clone()];
                made.push((m, file));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                remove_all(&made);
                return Err(e);
            }
        }
    }
    Ok(made)
}

fn remove_all(made: &[(String, PathBuf)]) {
    for (_, f) in made {
        let _ = std::fs::remove_file(f);
    }
}

/// Split `batch` into runs that fit one archive: at most [`Archive::MAX_MESSAGES`]
/// messages and [`Archive::MAX_BYTES`] bytes with the header.
fn chunks<T, P>(batch: &[(T, Message, P)]) -> Vec<&[(T, Message, P)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = HEADER_ROOM;
    for (i, (_, m, _)) in batch.iter().enumerate() {
        let len = m.canonical_bytes().len() + 1;
        if i > start && (i - start >= Archive::MAX_MESSAGES || bytes + len > Archive::MAX_BYTES) {
            out.push(&batch[start..i]);
            start = i;
            bytes = HEADER_ROOM;
        }
        bytes += len;
    }
    if start < batch.len() {
        out.push(&batch[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::UnsignedMessage;

    #[test]
    fn choose_takes_the_oldest_archivable_items_until_the_target() {
        let items: Vec<String> = (0..6).map(|i| format!("magnet-{i}")).collect();
        // Each item saves 7 + 3 = 10 bytes.
        let all = vec![true; 6];
        assert_eq!(choose(&items, &all, 100, 100), Vec::<usize>::new());
        assert_eq!(choose(&items, &all, 125, 100), vec![0, 1, 2]);
        let some = vec![false, true, false, true, true, true];
        assert_eq!(choose(&items, &some, 125, 100), vec![1, 3, 4]);
        assert_eq!(choose(&items, &some, 1000, 100), vec![1, 3, 4, 5]);
    }

    #[test]
    fn chunks_respect_the_archive_caps() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let m = UnsignedMessage {
            timestamp: 1,
            content: "x".into(),
        }
        .sign(&key)
        .unwrap();
        let batch: Vec<((), Message, PathBuf)> =
            (0..2500).map(|_| ((), m.clone(), PathBuf::new())).collect();
        let sizes: Vec<usize> = chunks(&batch).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let big = UnsignedMessage {
            timestamp: 1,
            content: "\u{1}".repeat(Message::MAX_CONTENT_BYTES),
        }
        .sign(&key)
        .unwrap();
        let batch: Vec<((), Message, PathBuf)> = (0..100)
            .map(|_| ((), big.clone(), PathBuf::new()))
            .collect();
        for c in chunks(&batch) {
            let msgs: Vec<Message> = c.iter().map(|(_, m, _)| m.clone()).collect();
            assert!(Archive::write(&[], &msgs).is_ok());
        }
        assert!(chunks(&batch).len() > 1);
    }
}
