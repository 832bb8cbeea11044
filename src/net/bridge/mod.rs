//! The SOCKS5 bridge for the torrent engine: an in-process SOCKS5 server on
//! `127.0.0.1:<ephemeral>` that forwards every `CONNECT` through a [`Connector`].
//!
//! librqbit dials peers by `SocketAddr` only and cannot be handed a host name. In a proxied
//! mode its `proxy_url` points here ([`SocksBridge::proxy_url`]). Peers we learn by name
//! (`.onion`, `.i2p`) are given to librqbit as **placeholder** addresses from
//! `100.64.0.0/10` ([`SocksBridge::placeholder`]); the bridge translates a `CONNECT` to a
//! placeholder back to the name and dials it with [`Connector::connect`], so the proxy (Tor,
//! I2P) receives the name, never an address.
//!
//! Rules:
//! * Only RFC 1928 `CONNECT` with RFC 1929 username/password authentication is served, with
//!   credentials random per bridge (so other local programs cannot use it). `BIND`,
//!   `UDP ASSOCIATE`, other methods and other address types are refused.
//! * Only placeholders are dialled. A `CONNECT` to any other IP address, or to a name, is
//!   refused with "connection not allowed by ruleset": an IP peer in a proxied mode would
//!   have to go out through a Tor exit as an IP literal, and we never do that for peers.
//! * A `CONNECT` whose port differs from the placeholder's peer port is refused.
//! * At most [`MAX_PLACEHOLDERS`] placeholders exist; past that the oldest is reused (its
//!   name is forgotten and a later `CONNECT` to it is refused).
//! * At most [`MAX_CONNECTIONS`] connections at a time (more are closed at once); the
//!   SOCKS handshake must finish within [`HANDSHAKE_TIMEOUT`]; the outgoing connect is
//!   bounded by the connector's connect timeout. Relayed streams end when either side
//!   closes (the engine applies its own read/write timeouts to peers).
//!
//! Dropping the [`SocksBridge`] stops the listener and every relayed connection.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::{Connector, HostKind, NetErrorKind, TargetAddr};

/// The most placeholder addresses kept at once (oldest reused first).
pub const MAX_PLACEHOLDERS: u32 = 4096;
/// The most connections the bridge serves at once.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client has to finish the SOCKS5 handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first placeholder: `100.64.0.1` (RFC 6598 shared address space, never a peer we
/// would dial directly).
const PLACEHOLDER_BASE: u32 = u32::from_be_bytes([100, 64, 0, 1]);
/// `100.64.0.0/10`.
const PLACEHOLDER_NET: u32 = u32::from_be_bytes([100, 64, 0, 0]);
const PLACEHOLDER_MASK: u32 = 0xFFC0_0000;

// SOCKS5 constants (RFC 1928, RFC 1929).
const VER: u8 = 5;
const METHOD_USERPASS: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xFF;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;
const REP_OK: u8 = 0;
const REP_FAILURE: u8 = 1;
const REP_NOT_ALLOWED: u8 = 2;
const REP_HOST_UNREACHABLE: u8 = 4;
const REP_REFUSED: u8 = 5;
const REP_TTL_EXPIRED: u8 = 6;
const REP_CMD_UNSUPPORTED: u8 = 7;
const REP_ATYP_UNSUPPORTED: u8 = 8;

/// Is `ip` in the placeholder range `100.64.0.0/10`?
#[must_use]
pub fn is_placeholder(ip: Ipv4Addr) -> bool {
    u32::from(ip) & PLACEHOLDER_MASK == PLACEHOLDER_NET
}

/// The bounded two-way map between placeholders and named peers.
#[derive(Default)]
struct Placeholders {
    by_ip: HashMap<Ipv4Addr, TargetAddr>,
    by_target: HashMap<TargetAddr, Ipv4Addr>,
    /// Slots handed out so far (the next slot is `next % MAX_PLACEHOLDERS`).
    next: u64,
}

impl Placeholders {
    fn get_or_insert(&mut self, target: &TargetAddr) -> Ipv4Addr {
        if let Some(ip) = self.by_target.get(target) {
            return *ip;
        }
        let slot = u32::try_from(self.next % u64::from(MAX_PLACEHOLDERS)).unwrap_or(0);
        self.next = self.next.wrapping_add(1);
        let ip = Ipv4Addr::from(PLACEHOLDER_BASE + slot);
        if let Some(old) = self.by_ip.insert(ip, target.clone()) {
            self.by_target.remove(&old);
        }
        self.by_target.insert(target.clone(), ip);
        ip
    }
}

/// State shared by the bridge handle and its connection tasks.
struct Shared {
    connector: Connector,
    username: String,
    password: String,
    /// Held only to look up or insert; never across an `.await`.
    map: Mutex<Placeholders>,
}

impl Shared {
    fn lookup(&self, ip: Ipv4Addr) -> Option<TargetAddr> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_ip
            .get(&ip)
            .cloned()
    }
}

/// A running bridge (see the module docs). Dropping it stops it.
pub struct SocksBridge {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SocksBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocksBridge")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SocksBridge {
    /// Bind `127.0.0.1:0` and serve, dialling through `connector`.
    pub async fn start(connector: Connector) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            connector,
            username: hex::encode(rand::random::<[u8; 16]>()),
            password: hex::encode(rand::random::<[u8; 16]>()),
            map: Mutex::new(Placeholders::default()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Where the bridge listens (always `127.0.0.1`).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `socks5://<user>:<password>@127.0.0.1:<port>`: the URL librqbit's `proxy_url` takes
    /// (it parses user and password from the URL and authenticates with RFC 1929).
    #[must_use]
    pub fn proxy_url(&self) -> String {
        format!(
            "socks5://{}:{}@{}",
            self.shared.username, self.shared.password, self.addr
        )
    }

    /// The placeholder address that stands for the named peer `target`, allocating one if
    /// needed; `None` for an IP literal (IP peers are never bridged).
    #[must_use]
    pub fn placeholder(&self, target: &TargetAddr) -> Option<SocketAddr> {
        if matches!(target.kind(), HostKind::Ip(_)) {
            return None;
        }
        let ip = self
            .shared
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(target);
        Some(SocketAddr::new(ip.into(), target.port()))
    }
}

impl Drop for SocksBridge {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set stays bounded.
        while tasks.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // Accept errors (e.g. out of descriptors) are transient; back off briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // over the connection cap
            continue;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            let _permit = permit;
            serve(stream, &shared).await;
        });
    }
}

/// What a SOCKS request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Dest {
    V4(Ipv4Addr, u16),
    Other,
}

/// Why a handshake ended without a stream to relay.
#[derive(Debug)]
enum Refused {
    /// The client broke the protocol or went away: just close.
    Close,
    /// Answer this reply code, then close.
    Reply(u8),
}

impl From<std::io::Error> for Refused {
    fn from(_: std::io::Error) -> Self {
        Refused::Close
    }
}

async fn serve(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut client, shared));
    let dest = match handshake.await {
        Ok(Ok(d)) => d,
        Ok(Err(Refused::Reply(code))) => {
            let _ = reply(&mut client, code).await;
            return;
        }
        Ok(Err(Refused::Close)) | Err(_) => return,
    };
    let Some(target) = resolve(&dest, shared) else {
        let _ = reply(&mut client, REP_NOT_ALLOWED).await;
        return;
    };
    match shared.connector.connect(&target).await {
        Ok(mut upstream) => {
            if reply(&mut client, REP_OK).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            let _ = upstream.shutdown().await;
        }
        Err(e) => {
            let code = match e.kind() {
                NetErrorKind::Timeout => REP_TTL_EXPIRED,
                NetErrorKind::ForbiddenTarget | NetErrorKind::InvalidTarget => REP_NOT_ALLOWED,
                NetErrorKind::ConnectFailed => REP_REFUSED,
                NetErrorKind::ResolveFailed => REP_HOST_UNREACHABLE,
                NetErrorKind::ProxyUnreachable
                | NetErrorKind::ProxyFailed
                | NetErrorKind::TorBootstrap => REP_FAILURE,
            };
            let _ = reply(&mut client, code).await;
        }
    }
}

/// The named peer a request stands for: only a known placeholder with the matching port.
fn resolve(dest: &Dest, shared: &Shared) -> Option<TargetAddr> {
    match dest {
        Dest::V4(ip, port) if is_placeholder(*ip) => {
            shared.lookup(*ip).filter(|t| t.port() == *port)
        }
        Dest::V4(..) | Dest::Other => None,
    }
}

/// Greeting, authentication and request; returns the requested destination.
async fn handshake(s: &mut TcpStream, shared: &Shared) -> Result<Dest, Refused> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != VER || head[1] == 0 {
        return Err(Refused::Close);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&METHOD_USERPASS) {
        s.write_all(&[VER, NO_ACCEPTABLE]).await?;
        return Err(Refused::Close);
    }
    s.write_all(&[VER, METHOD_USERPASS]).await?;

    // RFC 1929: VER(1) ULEN UNAME PLEN PASSWD.
    let mut vl = [0u8; 2];
    s.read_exact(&mut vl).await?;
    if vl[0] != 1 {
        return Err(Refused::Close);
    }
    let mut user = vec![0u8; usize::from(vl[1])];
    s.read_exact(&mut user).await?;
    let mut plen = [0u8; 1];
    s.read_exact(&mut plen).await?;
    let mut pass = vec![0u8; usize::from(plen[0])];
    s.read_exact(&mut pass).await?;
    let user_ok = same(&user, shared.username.as_bytes());
    let pass_ok = same(&pass, shared.password.as_bytes());
    if !(user_ok & pass_ok) {
        s.write_all(&[1, 1]).await?;
        return Err(Refused::Close);
    }
    s.write_all(&[1, 0]).await?;

    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != VER {
        return Err(Refused::Close);
    }
    let dest = match req[3] {
        ATYP_V4 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            Dest::V4(Ipv4Addr::from(a), read_port(s).await?)
        }
        ATYP_V6 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            read_port(s).await?;
            Dest::Other
        }
        ATYP_NAME => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut name).await?;
            read_port(s).await?;
            Dest::Other
        }
        _ => return Err(Refused::Reply(REP_ATYP_UNSUPPORTED)),
    };
    if req[1] != CMD_CONNECT {
        return Err(Refused::Reply(REP_CMD_UNSUPPORTED));
    }
    Ok(dest)
}

async fn read_port(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut p = [0u8; 2];
    s.read_exact(&mut p).await?;
    Ok(u16::from_be_bytes(p))
}

/// Compare without an early exit (the credentials are a local secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A reply with an all-zero IPv4 bound address (we never reveal the upstream's).
async fn reply(s: &mut TcpStream, code: u8) -> std::io::Result<()> {
    s.write_all(&[VER, code, 0, ATYP_V4, 0, 0, 0, 0, 0, 0])
        .await?;
    s.flush().await
}

#[cfg(test)]
mod tests;
