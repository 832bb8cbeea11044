//! Administrative subcommands of `megatorrentd` (run against the configured store, without
//! starting the server).

use super::tracker::Passkey;
use super::{open_store, Config};
use crate::store::StoreError;

/// A `megatorrentd` subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Manage private-tracker passkeys (`tracker.private = true`).
    #[command(subcommand)]
    Passkey(PasskeyCommand),
}

/// `megatorrentd passkey …`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum PasskeyCommand {
    /// Add a passkey (a random one is generated and printed if none is given).
    Add {
        /// 16–64 characters of A-Z, a-z, 0-9, '_' and '-'.
        passkey: Option<String>,
    },
    /// Remove a passkey.
    Remove {
        /// The passkey to remove.
        passkey: String,
    },
    /// Print every passkey, one per line.
    List,
}

/// Why an administrative command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store could not be opened or failed.
    #[error("database error")]
    Store(#[from] StoreError),
    /// The passkey breaks the format rules.
    #[error(transparent)]
    BadPasskey(#[from] super::tracker::passkey::BadPasskey),
    /// `remove` named a passkey that does not exist.
    #[error("no such passkey")]
    NoSuchPasskey,
}

/// Run `cmd` against the store in `config`; returns what to print. A running server sees
/// the change once its passkey cache entry expires (`tracker.passkey_cache_secs`) or on
/// SIGHUP.
pub async fn run(config: &Config, cmd: Command) -> Result<String, AdminError> {
    let store = open_store(config).await?;
    let result = match cmd {
        Command::Passkey(PasskeyCommand::Add { passkey }) => {
            let pk = match passkey {
                Some(text) => Passkey::parse(&text)?,
                None => Passkey::generate(),
            };
            store.add_passkey(pk.as_str(), crate::now_ms()).await?;
            Ok(format!("{}\n", pk.as_str()))
        }
        Command::Passkey(PasskeyCommand::Remove { passkey }) => {
            if store.remove_passkey(&passkey).await? {
                Ok(String::new())
            } else {
                Err(AdminError::NoSuchPasskey)
            }
        }
        Command::Passkey(PasskeyCommand::List) => {
            let keys = store.list_passkeys().await?;
            Ok(keys.iter().map(|k| format!("{k}\n")).collect())
        }
    };
    store.close().await;
    result
}
