//! Posting to a private channel: every message torrent holds the sealed signed document
//! (`messages/sealed-<16 hex>.bin` under the channel's directory) and the manifest lists
//! sealed items instead of magnets (see [`crate::client::channel::seal`]).
//!
//! Private channels are never archived (an archive would list plain magnets): a share that
//! would take the manifest within [`CAP_MARGIN`] of the server's cap is refused.

use sha2::{Digest, Sha256};

use super::archive::{signed_size, Published, Shared, CAP_MARGIN};
use super::{io_err, own_dir, tracker_url, FeedError, MESSAGES_COLLECTION};
use crate::client::channel::seal::{self, ReadKey};
use crate::client::cli::{self, Cli, CliError};
use crate::client::identity::Home;
use crate::client::seeder;
use crate::proto::{Message, PublicKey};

/// The prefix of a sealed message file's name.
pub const SEALED_PREFIX: &str = "sealed-";
/// The suffix of a sealed message file's name.
pub const SEALED_SUFFIX: &str = ".bin";

fn sealing(e: seal::SealError) -> FeedError {
    FeedError::Input(format!("cannot seal the message: {e}"))
}

/// Seal `messages` (signed by the channel `author`), write their files, make their
/// torrents, and publish their sealed items. Written files are removed if publishing
/// fails.
pub(crate) async fn share_sealed(
    cli: &Cli,
    author: &Home,
    key: &ReadKey,
    messages: Vec<Message>,
) -> Result<(Vec<Shared>, Vec<String>), CliError> {
    let id = author.load_identity()?;
    let channel = id.public_key();
    let dir = own_dir(author);
    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let tracker = tracker_url(cli)?;
    let mut shared: Vec<Shared> = Vec::with_capacity(messages.len());
    let mut items = Vec::with_capacity(messages.len());
    let remove = |shared: &[Shared]| {
        for s in shared {
            let _ = std::fs::remove_file(&s.file);
        }
    };
    for message in messages {
        let bytes = seal::seal_file(key, &channel, message.canonical_bytes()).map_err(sealing)?;
        let short = &hex::encode(Sha256::digest(&bytes))[..16];
        let file = dir.join(format!("{SEALED_PREFIX}{short}{SEALED_SUFFIX}"));
        let made = match std::fs::write(&file, &bytes).map_err(io_err("write", &file)) {
            Ok(()) => seeder::magnet_of(&file, &tracker).await,
            Err(e) => Err(e),
        };
        let magnet = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                remove(&shared);
                return Err(e.into());
            }
        };
        match seal::seal_item(key, &channel, &magnet) {
            Ok(item) => items.push(item),
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                remove(&shared);
                return Err(sealing(e).into());
            }
        }
        shared.push(Shared {
            message,
            file,
            magnet,
        });
    }
    Ok((shared, items))
}

/// Add the sealed `items` to the channel's `messages` collection and publish, refusing if
/// the manifest would come within [`CAP_MARGIN`] of the server's cap.
pub(crate) async fn publish_sealed(
    cli: &Cli,
    author: &Home,
    items: &[String],
) -> Result<Published, CliError> {
    let client = cli::signaling(cli, author).await?;
    let cap = client.max_manifest_bytes().await?;
    let id = author.load_identity()?;
    let sequence = cli::publish_edit(author, &client, &mut |cur| {
        let mut c = cur.map(|m| m.collections().to_vec()).unwrap_or_default();
        cli::merge_items(&mut c, MESSAGES_COLLECTION, items);
        let size = signed_size(&c, id.signing_key())?;
        if size > cap.saturating_sub(CAP_MARGIN) {
            let listed = c
                .iter()
                .find(|col| col.title == MESSAGES_COLLECTION)
                .map_or(0, |col| col.items.len());
            return Err(FeedError::Input(format!(
                "the private channel is full: {listed} items would make its manifest \
                 {size} bytes, over the server's cap of {cap} less {CAP_MARGIN}; private \
                 channels are not archived (create a new channel)"
            ))
            .into());
        }
        Ok(c)
    })
    .await?;
    Ok(Published {
        sequence,
        archives: Vec::new(),
        archived: 0,
    })
}

/// The single sealed file of a downloaded torrent directory, opened with `key` and
/// verified as a message of `channel`.
pub(crate) fn load_sealed(
    dir: &std::path::Path,
    channel: &PublicKey,
    key: &ReadKey,
) -> Result<Message, String> {
    let file = super::single_file(dir, seal::MAX_FILE_BYTES)?;
    let bytes = std::fs::read(&file).map_err(|e| format!("cannot read the message file: {e}"))?;
    let document = seal::open_file(key, channel, &bytes).map_err(|e| e.to_string())?;
    Message::verify_from(&document, channel).map_err(|e| e.to_string())
}
