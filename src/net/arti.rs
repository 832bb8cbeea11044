//! The embedded Tor mode of the [`Connector`](super::Connector): arti, no Tor daemon.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arti_client::config::BoolOrAuto;
use arti_client::{ErrorKind, HasKind, IsolationToken, StreamPrefs, TorClient};
use tor_rtcompat::PreferredRuntime;

use super::{BoxStream, NetError, NetErrorKind, Sensitive, TargetAddr};
use crate::tor_embed::{self, ArtiError, ArtiSetup, CleanStream};

/// How to start the embedded Tor client.
#[derive(Debug, Clone)]
pub struct ArtiOptions {
    /// Where arti keeps its state and cache (`DIR/state`, `DIR/cache`); the client uses
    /// `HOME/arti`.
    pub dir: PathBuf,
    /// Optional arti TOML configuration (e.g. a private network's `arti.toml`).
    pub config_file: Option<PathBuf>,
    /// How long bootstrapping may take.
    pub bootstrap_timeout: Duration,
}

/// A bootstrapped Tor client plus one isolation token per (isolation key, destination).
pub(crate) struct ArtiConn {
    client: Arc<TorClient<PreferredRuntime>>,
    /// Held only to look up or insert a token; never across an `.await`.
    tokens: Mutex<HashMap<(Option<String>, String, u16), IsolationToken>>,
}

impl ArtiConn {
    /// Bootstrap (with progress reported to `progress`).
    pub(crate) async fn start(
        opts: &ArtiOptions,
        progress: impl FnMut(&str) + Send + 'static,
    ) -> Result<Self, NetError> {
        let setup = ArtiSetup::under(&opts.dir, opts.config_file.clone());
        let client = tor_embed::bootstrap(&setup, opts.bootstrap_timeout, progress)
            .await
            .map_err(|e| match e {
                ArtiError::Timeout(after) => NetError::TorBootstrapTimeout { after },
                ArtiError::ConfigFile { .. } | ArtiError::InvalidConfig(_) => {
                    NetError::TorBootstrap {
                        what: "bad configuration",
                        source: Box::new(e),
                    }
                }
                ArtiError::Dir { .. } => NetError::TorBootstrap {
                    what: "cannot create its directories",
                    source: Box::new(e),
                },
                ArtiError::Arti(_) => NetError::TorBootstrap {
                    what: "bootstrap failed",
                    source: Box::new(e),
                },
            })?;
        Ok(Self {
            client,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn token(&self, key: Option<&str>, target: &TargetAddr) -> IsolationToken {
        let k = (
            key.map(str::to_owned),
            target.host().to_ascii_lowercase(),
            target.port(),
        );
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(k).or_insert_with(IsolationToken::new)
    }

    /// Open a stream; the caller has already checked that an IP literal is allowed.
    pub(crate) async fn connect(
        &self,
        target: &TargetAddr,
        key: Option<&str>,
    ) -> Result<BoxStream, NetError> {
        let mut prefs = StreamPrefs::new();
        prefs.connect_to_onion_services(BoolOrAuto::Explicit(true));
        prefs.set_isolation(self.token(key, target));
        let addr = target.to_string();
        match self.client.connect_with_prefs(addr.as_str(), &prefs).await {
            Ok(stream) => Ok(Box::new(CleanStream::new(stream))),
            Err(e) => {
                let kind = match e.kind() {
                    ErrorKind::RemoteNetworkTimeout
                    | ErrorKind::TorNetworkTimeout
                    | ErrorKind::ExitTimeout => NetErrorKind::Timeout,
                    ErrorKind::ForbiddenStreamTarget | ErrorKind::InvalidStreamTarget => {
                        NetErrorKind::ForbiddenTarget
                    }
                    _ => NetErrorKind::ConnectFailed,
                };
                Err(NetError::Tor {
                    target: Sensitive::new(addr),
                    kind,
                    source: Box::new(e),
                })
            }
        }
    }
}
