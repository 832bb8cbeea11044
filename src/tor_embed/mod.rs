//! Embedded Tor (arti) pieces shared by the client connector (feature `tor`) and the
//! server's onion service (feature `onion-server`): configuration, bootstrap with progress,
//! and a stream wrapper that always ends Tor streams cleanly; [`service`] hosts onion
//! services (feature `arti-service`).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arti_client::config::{CfgPath, TorClientConfigBuilder};
use arti_client::{DataStream, TorClient, TorClientConfig};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tor_rtcompat::PreferredRuntime;

#[cfg(feature = "arti-service")]
pub mod service;

/// Why the embedded Tor client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ArtiError {
    /// The `--tor-config` / `onion.tor_config` file could not be read or parsed.
    #[error("cannot use Tor config file {path}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The state or cache directory could not be created.
    #[error("cannot create Tor directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// arti rejected the configuration.
    #[error("invalid Tor configuration")]
    InvalidConfig(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// arti failed to start or bootstrap.
    #[error("Tor client failed")]
    Arti(#[source] arti_client::Error),
    /// Bootstrap did not finish in time.
    #[error("Tor did not bootstrap within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// Where the embedded Tor client keeps its files and which network it joins.
#[derive(Debug, Clone)]
pub struct ArtiSetup {
    /// Persistent state (guards, keys of onion services).
    pub state_dir: PathBuf,
    /// Directory cache (may be deleted at any time).
    pub cache_dir: PathBuf,
    /// Optional TOML file in arti's configuration format (e.g. a private network's
    /// `tor_network` section). Its `storage` directories are overridden by the two above.
    pub config_file: Option<PathBuf>,
}

impl ArtiSetup {
    /// State and cache under `dir` (`dir/state`, `dir/cache`).
    #[must_use]
    pub fn under(dir: &Path, config_file: Option<PathBuf>) -> Self {
        Self {
            state_dir: dir.join("state"),
            cache_dir: dir.join("cache"),
            config_file,
        }
    }

    /// Build arti's configuration.
    pub fn config(&self) -> Result<TorClientConfig, ArtiError> {
        let mut builder = match &self.config_file {
            Some(path) => {
                let cfg_err =
                    |source: Box<dyn std::error::Error + Send + Sync>| ArtiError::ConfigFile {
                        path: path.clone(),
                        source,
                    };
                let text = std::fs::read_to_string(path).map_err(|e| cfg_err(Box::new(e)))?;
                toml::from_str::<TorClientConfigBuilder>(&text).map_err(|e| cfg_err(Box::new(e)))?
            }
            None => TorClientConfigBuilder::default(),
        };
        for dir in [&self.state_dir, &self.cache_dir] {
            create_private_dir(dir).map_err(|source| ArtiError::Dir {
                path: dir.clone(),
                source,
            })?;
        }
        builder
            .storage()
            .state_dir(CfgPath::new_literal(&self.state_dir))
            .cache_dir(CfgPath::new_literal(&self.cache_dir));
        builder
            .build()
            .map_err(|e| ArtiError::InvalidConfig(Box::new(e)))
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Install the process-wide rustls crypto provider (ring) arti's TLS needs. Idempotent.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Create a Tor client for `setup` and bootstrap it within `timeout`, reporting progress
/// lines (e.g. `tor: bootstrap 40%: …`) to `progress` whenever the percentage changes.
pub async fn bootstrap(
    setup: &ArtiSetup,
    timeout: Duration,
    mut progress: impl FnMut(&str) + Send + 'static,
) -> Result<Arc<TorClient<PreferredRuntime>>, ArtiError> {
    install_crypto_provider();
    let config = setup.config()?;
    let client = TorClient::builder()
        .config(config)
        .create_unbootstrapped()
        .map_err(ArtiError::Arti)?;
    let mut events = client.bootstrap_events();
    let reporter = tokio::spawn(async move {
        let mut last = None;
        while let Some(status) = events.next().await {
            let pct = (status.as_frac() * 100.0).round() as u32;
            if last != Some(pct) {
                last = Some(pct);
                progress(&format!("tor: bootstrap {status}"));
            }
            if status.ready_for_traffic() {
                break;
            }
        }
    });
    let outcome = tokio::time::timeout(timeout, client.bootstrap()).await;
    reporter.abort();
    match outcome {
        Ok(Ok(())) => Ok(client),
        Ok(Err(e)) => Err(ArtiError::Arti(e)),
        Err(_) => Err(ArtiError::Timeout(timeout)),
    }
}

/// A Tor [`DataStream`] that is always flushed before it ends, and can leave the closing to
/// the peer.
///
/// A `DataStream` buffers up to a cell of written data; dropping it unflushed loses that
/// tail. This wrapper flushes on `shutdown` and, when dropped unclosed, hands the stream to a
/// task that flushes and closes it.
///
/// arti 0.47 ends every stream it closes — by drop or by `shutdown` — with an `END` cell of
/// reason `MISC` (there is no public way to send `DONE`), which an arti peer reports as an
/// error rather than end-of-file. A server therefore uses [`CleanStream::lingering`] and
/// [`CleanStream::close_after_peer`]: `shutdown` then only flushes, and the stream is
/// closed once the peer has closed its side (or a grace period passed), so a client that
/// reads a framed response and hangs up never sees our `END` at all.
pub struct CleanStream {
    inner: Option<DataStream>,
    closed: bool,
    linger: bool,
}

impl CleanStream {
    /// Wrap a stream.
    #[must_use]
    pub fn new(stream: DataStream) -> Self {
        Self {
            inner: Some(stream),
            closed: false,
            linger: false,
        }
    }

    /// Wrap a stream whose `shutdown` only flushes; close it with
    /// [`CleanStream::close_after_peer`].
    #[must_use]
    pub fn lingering(stream: DataStream) -> Self {
        Self {
            inner: Some(stream),
            closed: false,
            linger: true,
        }
    }

    /// Flush, wait (at most `grace`) for the peer to end the stream, discarding anything it
    /// still sends, then close.
    pub async fn close_after_peer(&mut self, grace: Duration) {
        use tokio::io::AsyncReadExt;
        let _ = self.flush().await;
        let drain = async {
            let mut buf = [0u8; 512];
            while let Ok(n) = self.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
        self.linger = false;
        let _ = self.shutdown().await;
    }

    fn stream(&mut self) -> io::Result<Pin<&mut DataStream>> {
        self.inner
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for CleanStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for CleanStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        if this.linger {
            return match this.stream() {
                Ok(s) => s.poll_flush(cx),
                Err(e) => Poll::Ready(Err(e)),
            };
        }
        let res = match this.stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        };
        if res.is_ready() {
            this.closed = true;
        }
        res
    }
}

impl Drop for CleanStream {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let (Some(mut stream), Ok(rt)) =
            (self.inner.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), stream.shutdown()).await;
            });
        }
    }
}
