//! The torrent engine (librqbit), wrapped so that our code owns every network decision.
//!
//! [`session_options`] is the one place the engine is configured: no DHT, no local service
//! discovery, no uTP, no UPnP, no tracker traffic of its own, and a TCP listener bound to the
//! configured address. Peers come only from our own tracker client
//! ([`super::announce`]), handed over as `initial_peers`; `udp://` trackers are stripped
//! from every magnet and torrent we create or add ([`strip_udp_trackers`]).
//!
//! In a proxied mode ([`Engine::start_bridged`]) librqbit's `proxy_url` points at a
//! [`SocksBridge`] over the command's connector, so every peer connection it makes goes
//! through Tor/I2P; named peers are handed over as the bridge's placeholder addresses
//! ([`Engine::engine_peers`]) and IP peers are dropped.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::net::{Connector, SocksBridge};
use librqbit::api::TorrentIdOrHash;
use librqbit::dht::Id20;
use librqbit::spawn_utils::BlockingSpawner;
use librqbit::{
    AddTorrent, AddTorrentOptions, ConnectionOptions, CreateTorrentOptions, ListenerMode,
    ListenerOptions, Magnet, PeerConnectionOptions, Session, SessionOptions,
};

/// Why an engine operation failed. librqbit reports `anyhow` errors; their text is kept.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// The session could not start (e.g. the listen address is taken).
    #[error("cannot start the torrent engine: {0}")]
    Start(String),
    /// The magnet link does not parse.
    #[error("invalid magnet link: {0}")]
    BadMagnet(String),
    /// A torrent could not be created or added.
    #[error("torrent engine error: {0}")]
    Engine(String),
    /// The torrent is larger than the caller allows.
    #[error("torrent is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Total size announced by the torrent.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The download did not finish in time.
    #[error("download did not finish within {}s", .0.as_secs())]
    Timeout(Duration),
}

fn engine_err(e: impl std::fmt::Display) -> TorrentError {
    TorrentError::Engine(format!("{e:#}"))
}

/// Engine settings chosen by the caller.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where the TCP peer listener binds (e.g. `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Our peer id (also sent in our own tracker announces).
    pub peer_id: [u8; 20],
    /// The SOCKS5 proxy every outgoing peer connection goes through (the bridge's
    /// `socks5://user:pass@127.0.0.1:port`); `None` = direct TCP.
    pub proxy_url: Option<String>,
}

impl EngineConfig {
    /// A config listening on `listen` with a fresh random peer id (`-MT0001-` + 12 random).
    #[must_use]
    pub fn new(listen: SocketAddr) -> Self {
        let mut peer_id = *b"-MT0001-000000000000";
        let tail: [u8; 12] = rand::random();
        for (dst, b) in peer_id[8..].iter_mut().zip(tail) {
            *dst = b"0123456789abcdefghijklmnopqrstuvwxyz"[usize::from(b) % 36];
        }
        Self {
            listen,
            peer_id,
            proxy_url: None,
        }
    }
}

/// Connect/read timeouts for peer connections.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The connect timeout for peer connections through the bridge: reaching an onion service
/// for the first time (descriptor, introduction, rendezvous) takes several round trips.
pub const PROXIED_PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// THE session options: every network decision of the engine is made here.
#[must_use]
pub fn session_options(cfg: &EngineConfig) -> SessionOptions {
    let connect_timeout = match cfg.proxy_url {
        Some(_) => PROXIED_PEER_CONNECT_TIMEOUT,
        None => PEER_CONNECT_TIMEOUT,
    };
    SessionOptions {
        // No DHT, no local service discovery, no trackers of its own: peers come only
        // from our tracker client, as `initial_peers`.
        dht: None,
        disable_local_service_discovery: true,
        disable_trackers: true,
        trackers: HashSet::new(),
        blocklist_url: None,
        allowlist_url: None,
        persistence: None,
        fastresume: false,
        peer_id: Some(Id20::new(cfg.peer_id)),
        ipv4_only: cfg.listen.is_ipv4(),
        listen: Some(ListenerOptions {
            // TCP only: no uTP socket, so no uTP in either direction.
            mode: ListenerMode::TcpOnly,
            listen_addr: cfg.listen,
            enable_upnp_port_forwarding: false,
            utp_opts: None,
            announce_port: None,
            ipv4_only: cfg.listen.is_ipv4(),
            ..ListenerOptions::default()
        }),
        connect: Some(ConnectionOptions {
            // With a proxy, librqbit dials every peer through it (and never directly);
            // direct TCP stays off then as a second guard.
            proxy_url: cfg.proxy_url.clone(),
            enable_tcp: cfg.proxy_url.is_none(),
            peer_opts: Some(PeerConnectionOptions {
                connect_timeout: Some(connect_timeout),
                read_write_timeout: Some(connect_timeout * 3),
                ..PeerConnectionOptions::default()
            }),
        }),
        ..SessionOptions::default()
    }
}

/// Per-torrent options: no trackers of the torrent's own, only the peers we give.
fn add_options(output: &Path, peers: Vec<SocketAddr>) -> Result<AddTorrentOptions, TorrentError> {
    let output = output
        .to_str()
        .ok_or_else(|| TorrentError::Engine("output path is not UTF-8".into()))?;
    Ok(AddTorrentOptions {
        overwrite: true,
        output_folder: Some(output.to_owned()),
        disable_trackers: true,
        trackers: None,
        initial_peers: Some(peers),
        ..AddTorrentOptions::default()
    })
}

/// Drop every `udp://` tracker from a magnet link (librqbit would send UDP around any proxy).
pub fn strip_udp_trackers(magnet: &str) -> Result<String, TorrentError> {
    let mut m = Magnet::parse(magnet).map_err(|e| TorrentError::BadMagnet(format!("{e:#}")))?;
    m.trackers
        .retain(|t| !t.trim_start().to_ascii_lowercase().starts_with("udp:"));
    Ok(m.to_string())
}

/// The v1 info-hash of a magnet link.
pub fn magnet_info_hash(magnet: &str) -> Result<[u8; 20], TorrentError> {
    let m = Magnet::parse(magnet).map_err(|e| TorrentError::BadMagnet(format!("{e:#}")))?;
    m.as_id20()
        .map(|id| id.0)
        .ok_or_else(|| TorrentError::BadMagnet("no v1 (btih) info-hash".into()))
}

/// The magnet link of a v1 info-hash with one tracker (for torrents known only by their
/// info-hash, such as the proof of concept's).
#[must_use]
pub fn magnet_of_info_hash(info_hash: &[u8; 20], tracker: &str) -> String {
    Magnet::from_id20(Id20::new(*info_hash), vec![tracker.to_owned()], None).to_string()
}

/// A torrent we created and are seeding.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Its magnet link (our HTTP trackers only).
    pub magnet: String,
    /// Its info-hash.
    pub info_hash: [u8; 20],
}

/// A running librqbit session configured by [`session_options`].
pub struct Engine {
    session: Arc<Session>,
    peer_id: [u8; 20],
    /// The SOCKS bridge in a proxied mode (kept alive as long as the session).
    bridge: Option<SocksBridge>,
    /// Whatever must live as long as the engine (e.g. the listener's onion service).
    held: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Engine {
    /// Start the engine; downloads go under `output` unless told otherwise.
    pub async fn start(cfg: &EngineConfig, output: PathBuf) -> Result<Self, TorrentError> {
        let session = Session::new_with_opts(output, session_options(cfg))
            .await
            .map_err(|e| TorrentError::Start(format!("{e:#}")))?;
        Ok(Self {
            session,
            peer_id: cfg.peer_id,
            bridge: None,
            held: Vec::new(),
        })
    }

    /// Start the engine behind a [`SocksBridge`] over `connector`: every peer connection
    /// goes out through the connector (Tor/I2P), peers are given by name.
    pub async fn start_bridged(
        mut cfg: EngineConfig,
        output: PathBuf,
        connector: Connector,
    ) -> Result<Self, TorrentError> {
        let bridge = SocksBridge::start(connector.isolated("torrent-peers"))
            .await
            .map_err(|e| TorrentError::Start(format!("cannot start the SOCKS bridge: {e}")))?;
        cfg.proxy_url = Some(bridge.proxy_url());
        let mut engine = Self::start(&cfg, output).await?;
        engine.bridge = Some(bridge);
        Ok(engine)
    }

    /// Keep `thing` alive as long as the engine.
    pub fn hold(&mut self, thing: impl std::any::Any + Send + Sync) {
        self.held.push(Box::new(thing));
    }

    /// Whether peers are reached through the bridge.
    #[must_use]
    pub fn is_bridged(&self) -> bool {
        self.bridge.is_some()
    }

    /// The addresses to give librqbit for a tracker reply: bridged, the placeholders of the
    /// named peers (except `own`, our own onion) and never an IP peer; direct, the IP
    /// peers (except `own_port` on loopback, ourselves).
    #[must_use]
    pub fn engine_peers(
        &self,
        reply: &super::announce::AnnounceReply,
        own: Option<&str>,
        own_port: u16,
    ) -> Vec<SocketAddr> {
        match &self.bridge {
            Some(bridge) => reply
                .named
                .iter()
                .filter(|t| own.is_none_or(|o| !t.host().eq_ignore_ascii_case(o)))
                .filter_map(|t| bridge.placeholder(t))
                .collect(),
            None => reply
                .peers
                .iter()
                .copied()
                .filter(|p| !(p.port() == own_port && p.ip().is_loopback()))
                .collect(),
        }
    }

    /// Our peer id.
    #[must_use]
    pub fn peer_id(&self) -> &[u8; 20] {
        &self.peer_id
    }

    /// The port peers reach us on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.session
            .announce_port()
            .or_else(|| self.session.listen_addr().map(|a| a.port()))
            .unwrap_or(0)
    }

    /// Make a single-file torrent of `file` announcing to `trackers` (`udp://` ones are
    /// dropped) and seed it from where it lies.
    pub async fn seed_file(
        &self,
        file: &Path,
        trackers: &[String],
    ) -> Result<Seeded, TorrentError> {
        let trackers: Vec<String> = trackers
            .iter()
            .filter(|t| !t.to_ascii_lowercase().starts_with("udp:"))
            .cloned()
            .collect();
        let spawner = BlockingSpawner::new(1);
        let created = librqbit::create_torrent(
            file,
            CreateTorrentOptions {
                name: None,
                trackers,
                piece_length: None,
            },
            &spawner,
        )
        .await
        .map_err(engine_err)?;
        let bytes = created.as_bytes().map_err(engine_err)?;
        let dir = file.parent().unwrap_or(Path::new("."));
        self.session
            .add_torrent(
                AddTorrent::from_bytes(bytes),
                Some(add_options(dir, Vec::new())?),
            )
            .await
            .map_err(engine_err)?;
        Ok(Seeded {
            magnet: strip_udp_trackers(&created.as_magnet().to_string())?,
            info_hash: created.info_hash().0,
        })
    }

    /// Download `magnet` into `output` from `peers` only; give up after `limit`, or as soon as
    /// the torrent turns out larger than `max_bytes`. On failure the torrent is removed
    /// from the session (its partial files stay).
    pub async fn fetch(
        &self,
        magnet: &str,
        peers: Vec<SocketAddr>,
        output: &Path,
        max_bytes: u64,
        limit: Duration,
    ) -> Result<(), TorrentError> {
        let magnet = strip_udp_trackers(magnet)?;
        let hash = Id20::new(magnet_info_hash(&magnet)?);
        let result = tokio::time::timeout(limit, async {
            let handle = self
                .session
                .add_torrent(
                    AddTorrent::from_url(magnet),
                    Some(add_options(output, peers)?),
                )
                .await
                .map_err(engine_err)?
                .into_handle()
                .ok_or_else(|| TorrentError::Engine("torrent was not added".into()))?;
            let size = handle.stats().total_bytes;
            if size > max_bytes {
                return Err(TorrentError::TooLarge {
                    size,
                    max: max_bytes,
                });
            }
            handle.wait_until_completed().await.map_err(engine_err)
        })
        .await
        .unwrap_or(Err(TorrentError::Timeout(limit)));
        if result.is_err() {
            let _ = self
                .session
                .delete(TorrentIdOrHash::Hash(hash), false)
                .await;
        }
        result
    }

    /// Stop every torrent and the listener.
    pub async fn stop(&self) {
        self.session.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_disable_every_other_peer_source() {
        let cfg = EngineConfig::new("127.0.0.1:0".parse().unwrap());
        let o = session_options(&cfg);
        assert!(o.dht.is_none(), "DHT must be off");
        assert!(o.disable_local_service_discovery, "LSD must be off");
        assert!(o.disable_trackers, "librqbit must not announce by itself");
        assert!(o.trackers.is_empty());
        assert!(o.persistence.is_none());
        assert!(o.blocklist_url.is_none() && o.allowlist_url.is_none());
        assert_eq!(o.peer_id, Some(Id20::new(cfg.peer_id)));
        let l = o.listen.expect("listener configured");
        assert!(matches!(l.mode, ListenerMode::TcpOnly), "no uTP");
        assert!(l.utp_opts.is_none());
        assert!(!l.enable_upnp_port_forwarding, "no UPnP");
        assert_eq!(l.listen_addr, cfg.listen);
        let c = o.connect.expect("connect options");
        assert!(c.proxy_url.is_none());
        assert!(c.enable_tcp);
        assert!(cfg.peer_id.starts_with(b"-MT0001-"));

        // Proxied: every peer connection through the bridge, no direct TCP.
        let mut cfg = EngineConfig::new("127.0.0.1:0".parse().unwrap());
        let url = "socks5://u:p@127.0.0.1:1080".to_owned();
        cfg.proxy_url = Some(url.clone());
        let o = session_options(&cfg);
        assert!(o.dht.is_none() && o.disable_local_service_discovery && o.disable_trackers);
        let l = o.listen.expect("listener configured");
        assert!(matches!(l.mode, ListenerMode::TcpOnly) && !l.enable_upnp_port_forwarding);
        let c = o.connect.expect("connect options");
        assert_eq!(c.proxy_url.as_deref(), Some(url.as_str()));
        assert!(!c.enable_tcp);
        let peer = c.peer_opts.expect("peer options");
        assert_eq!(peer.connect_timeout, Some(PROXIED_PEER_CONNECT_TIMEOUT));
    }

    /// librqbit accepts the bridge's URL (user and password in it) and its downloads go
    /// through the bridge: a session starts with it, and a peer given as a placeholder is
    /// dialled through the bridge as the name.
    #[tokio::test]
    async fn a_bridged_engine_dials_placeholders_through_the_connector() {
        use crate::net::{ProxyUrl, TargetAddr};
        let (port, seen) = crate::net::socks_recording::start().await;
        let proxy = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start_bridged(
            EngineConfig::new("127.0.0.1:0".parse().unwrap()),
            dir.path().to_owned(),
            Connector::socks5(proxy),
        )
        .await
        .unwrap();
        assert!(engine.is_bridged());
        let onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";
        let reply = super::super::announce::AnnounceReply {
            interval: 60,
            peers: vec!["192.0.2.7:6881".parse().unwrap()],
            named: vec![
                TargetAddr::new(onion, 6881).unwrap(),
                TargetAddr::new("mine.i2p", 1).unwrap(),
            ],
        };
        let peers = engine.engine_peers(&reply, Some("MINE.i2p"), 0);
        assert_eq!(peers.len(), 1, "IP peers and our own name are dropped");
        let magnet = format!("magnet:?xt=urn:btih:{}", "ab".repeat(20));
        let fetch = engine.fetch(&magnet, peers, dir.path(), 1024, Duration::from_secs(5));
        let _ = fetch.await; // the recorder is no peer: the fetch fails or times out
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "librqbit did not dial through the bridge");
        assert!(
            seen.iter()
                .all(|s| s.atyp == 3 && s.host == onion && s.port == 6881),
            "{seen:?}"
        );
        engine.stop().await;
    }

    #[test]
    fn add_options_carry_only_our_peers() {
        let peers = vec!["127.0.0.1:7000".parse().unwrap()];
        let o = add_options(Path::new("/tmp/x"), peers.clone()).unwrap();
        assert!(o.disable_trackers);
        assert!(o.trackers.is_none());
        assert_eq!(o.initial_peers, Some(peers));
    }

    #[test]
    fn udp_trackers_are_stripped_from_magnets() {
        let ih = "aa".repeat(20);
        let m = format!(
            "magnet:?xt=urn:btih:{ih}&tr=udp%3A%2F%2Ft.example%3A1337&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=UDP://x:1"
        );
        let s = strip_udp_trackers(&m).unwrap();
        assert!(!s.to_ascii_lowercase().contains("udp"), "{s}");
        assert!(s.contains("tr=http://127.0.0.1:6969/announce"), "{s}");
        assert_eq!(magnet_info_hash(&s).unwrap(), [0xaa; 20]);
        assert!(strip_udp_trackers("http://not-a-magnet").is_err());
        assert!(magnet_info_hash("magnet:?dn=x").is_err());
    }

    #[test]
    fn magnets_are_built_from_info_hashes() {
        let m = magnet_of_info_hash(&[0xab; 20], "http://127.0.0.1:6969/announce");
        assert!(
            m.starts_with(&format!("magnet:?xt=urn:btih:{}", "ab".repeat(20))),
            "{m}"
        );
        assert_eq!(magnet_info_hash(&m).unwrap(), [0xab; 20]);
        assert_eq!(strip_udp_trackers(&m).unwrap(), m);
    }
}
