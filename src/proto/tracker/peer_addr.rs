//! Peer addresses: IP endpoints and the hostname peers we allow (`.onion` v3, `.i2p`).
//!
//! BEP 3 lets `ip=` carry a DNS name. We accept exactly two kinds of name, strictly, and
//! never resolve them: Tor v3 onion services (56 base32 characters whose embedded version
//! byte and SHA3 checksum are verified, as in Tor's rend-spec-v3) and I2P names (the
//! 52-character `.b32.i2p` form or a plain `<labels>.i2p` host name). Names are accepted in
//! lowercase only, which is their canonical form, so one peer cannot appear under two
//! spellings. Every other host name is refused.

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use sha3::{Digest, Sha3_256};

use crate::proto::bencode;

/// Why an `ip=` value (or a peer's `ip` in a reply) is not an acceptable host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty value.
    #[error("empty host")]
    Empty,
    /// Longer than any acceptable host.
    #[error("host too long")]
    TooLong,
    /// Not printable ASCII.
    #[error("host is not ASCII")]
    NotAscii,
    /// A DNS name that is neither `.onion` nor `.i2p` (we never resolve names).
    #[error("only IP literals, .onion and .i2p names are accepted")]
    UnsupportedName,
    /// An onion name whose label is not 56 characters (only v3 is accepted).
    #[error("onion name must be 56 base32 characters (v3)")]
    OnionLength,
    /// An onion name with a character outside `a-z2-7`.
    #[error("onion name is not lowercase base32")]
    OnionAlphabet,
    /// An onion name whose version byte is not 3.
    #[error("onion version is not 3")]
    OnionVersion,
    /// An onion name whose checksum does not match its key.
    #[error("onion checksum mismatch")]
    OnionChecksum,
    /// A `.b32.i2p` name that is not 52 lowercase base32 characters encoding 32 bytes.
    #[error("b32.i2p name must be 52 lowercase base32 characters")]
    I2pB32,
    /// An `.i2p` host name that breaks the naming rules (labels of `a-z0-9-`, 1–63
    /// characters, no leading or trailing `-`, at most 67 characters in all).
    #[error("invalid .i2p host name")]
    I2pName,
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_val(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

/// Lowercase RFC 4648 base32 without padding; `out.len()` must be `ceil(8 * in / 5)`.
fn base32_encode(input: &[u8], out: &mut [u8]) {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut o = out.iter_mut();
    for &b in input {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            if let Some(slot) = o.next() {
                *slot = BASE32[((acc >> bits) & 31) as usize];
            }
        }
    }
    if bits > 0 {
        if let Some(slot) = o.next() {
            *slot = BASE32[((acc << (5 - bits)) & 31) as usize];
        }
    }
}

/// Decode lowercase base32 into `out`; returns the leftover (padding) bits' value, which a
/// canonical encoding has at zero. `None` on a character outside the alphabet.
fn base32_decode(input: &[u8], out: &mut [u8]) -> Option<u32> {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut o = out.iter_mut();
    for &c in input {
        acc = (acc << 5) | u32::from(base32_val(c)?);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            if let Some(slot) = o.next() {
                *slot = (acc >> bits) as u8;
            }
        }
        acc &= (1 << bits) - 1;
    }
    Some(acc)
}

/// A Tor v3 onion service name (the 56-character label, without `.onion`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnionName([u8; 56]);

impl OnionName {
    /// The suffix after the label.
    pub const SUFFIX: &'static str = ".onion";
    const VERSION: u8 = 3;

    fn checksum(pubkey: &[u8; 32]) -> [u8; 2] {
        let mut h = Sha3_256::new();
        h.update(b".onion checksum");
        h.update(pubkey);
        h.update([Self::VERSION]);
        let d = h.finalize();
        [d[0], d[1]]
    }

    /// The name of the onion service with this ed25519 identity key.
    #[must_use]
    pub fn from_public_key(pubkey: &[u8; 32]) -> Self {
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(pubkey);
        raw[32..34].copy_from_slice(&Self::checksum(pubkey));
        raw[34] = Self::VERSION;
        let mut label = [0u8; 56];
        base32_encode(&raw, &mut label);
        Self(label)
    }

    /// Parse `<56 chars>.onion` (lowercase; version and checksum verified).
    pub fn parse(host: &str) -> Result<Self, HostError> {
        let label = host
            .strip_suffix(Self::SUFFIX)
            .ok_or(HostError::UnsupportedName)?;
        let label: [u8; 56] = label
            .as_bytes()
            .try_into()
            .map_err(|_| HostError::OnionLength)?;
        let mut raw = [0u8; 35];
        base32_decode(&label, &mut raw).ok_or(HostError::OnionAlphabet)?;
        if raw[34] != Self::VERSION {
            return Err(HostError::OnionVersion);
        }
        let mut pubkey = [0u8; 32];
        pubkey.copy_from_slice(&raw[..32]);
        if raw[32..34] != Self::checksum(&pubkey) {
            return Err(HostError::OnionChecksum);
        }
        Ok(Self(label))
    }

    /// The service's ed25519 identity key.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        let mut raw = [0u8; 35];
        // The label was validated at construction, so decoding cannot fail.
        let _ = base32_decode(&self.0, &mut raw);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[..32]);
        pk
    }

    /// The 56-character label (without `.onion`).
    #[must_use]
    pub fn label(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for OnionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.label(), Self::SUFFIX)
    }
}

impl fmt::Debug for OnionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionName({self})")
    }
}

/// An I2P destination name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum I2pName {
    /// `<52 chars>.b32.i2p`: the base32 SHA-256 hash of a destination (label stored).
    B32([u8; 52]),
    /// A host-name such as `tracker.example.i2p` (stored in full, suffix included).
    Host(Box<str>),
}

impl I2pName {
    /// Longest I2P host name, suffix included (the I2P naming rules).
    pub const MAX_LEN: usize = 67;
    const B32_SUFFIX: &'static str = ".b32.i2p";

    /// The `.b32.i2p` name of the destination with this SHA-256 hash.
    #[must_use]
    pub fn from_destination_hash(hash: &[u8; 32]) -> Self {
        let mut label = [0u8; 52];
        base32_encode(hash, &mut label);
        Self::B32(label)
    }

    /// Parse a lowercase `.i2p` name.
    pub fn parse(host: &str) -> Result<Self, HostError> {
        if let Some(label) = host.strip_suffix(Self::B32_SUFFIX) {
            let label: [u8; 52] = label.as_bytes().try_into().map_err(|_| HostError::I2pB32)?;
            let mut hash = [0u8; 32];
            match base32_decode(&label, &mut hash) {
                Some(0) => return Ok(Self::B32(label)),
                _ => return Err(HostError::I2pB32),
            }
        }
        let stem = host
            .strip_suffix(".i2p")
            .ok_or(HostError::UnsupportedName)?;
        if host.len() > Self::MAX_LEN || stem.is_empty() {
            return Err(HostError::I2pName);
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if stem.split('.').all(label_ok) {
            Ok(Self::Host(host.into()))
        } else {
            Err(HostError::I2pName)
        }
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        match self {
            Self::B32(label) => bencode::write_bytes_parts(out, &[label, b".b32.i2p"]),
            Self::Host(h) => bencode::write_bytes(out, h.as_bytes()),
        }
    }
}

impl fmt::Display for I2pName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::B32(label) => {
                let label = std::str::from_utf8(label).unwrap_or_default();
                write!(f, "{label}{}", Self::B32_SUFFIX)
            }
            Self::Host(h) => f.write_str(h),
        }
    }
}

impl fmt::Debug for I2pName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "I2pName({self})")
    }
}

/// A peer's host: an IP address or an allowed name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerHost {
    /// IPv4 (IPv4-mapped IPv6 literals are folded into this).
    V4(Ipv4Addr),
    /// IPv6.
    V6(Ipv6Addr),
    /// A Tor v3 onion service.
    Onion(OnionName),
    /// An I2P destination.
    I2p(I2pName),
}

impl PeerHost {
    /// The longest host text accepted.
    pub const MAX_LEN: usize = 255;

    /// Parse an `ip=` value (already percent-decoded): an IPv4 or IPv6 literal (IPv6 may be
    /// bracketed), a v3 `.onion` or an `.i2p` name.
    pub fn parse(text: &[u8]) -> Result<Self, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(HostError::TooLong);
        }
        if !text.iter().all(u8::is_ascii_graphic) {
            return Err(HostError::NotAscii);
        }
        let s = std::str::from_utf8(text).map_err(|_| HostError::NotAscii)?;
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::from_ip(ip));
        }
        if s.ends_with(OnionName::SUFFIX) {
            OnionName::parse(s).map(Self::Onion)
        } else if s.ends_with(".i2p") {
            I2pName::parse(s).map(Self::I2p)
        } else {
            Err(HostError::UnsupportedName)
        }
    }

    /// From an IP address, folding IPv4-mapped IPv6 into IPv4.
    #[must_use]
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6(v6),
            },
        }
    }

    /// Whether this is a name (onion/I2P) rather than an IP address.
    #[must_use]
    pub fn is_name(&self) -> bool {
        matches!(self, Self::Onion(_) | Self::I2p(_))
    }
}

impl fmt::Display for PeerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => ip.fmt(f),
            Self::V6(ip) => ip.fmt(f),
            Self::Onion(n) => n.fmt(f),
            Self::I2p(n) => n.fmt(f),
        }
    }
}

/// A peer's full address: where other peers should connect.
///
/// Name peers exist only in the dictionary peer list of an HTTP reply; the compact writers
/// take `SocketAddrV4`/`SocketAddrV6`, so a name can never reach a compact list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// IPv4 endpoint.
    V4(SocketAddrV4),
    /// IPv6 endpoint (flow info and scope id are always 0).
    V6(SocketAddrV6),
    /// An onion service and port.
    Onion {
        /// The service name.
        name: OnionName,
        /// The port on the service.
        port: u16,
    },
    /// An I2P destination and port.
    I2p {
        /// The destination name.
        name: I2pName,
        /// The port.
        port: u16,
    },
}

impl PeerAddr {
    /// Combine a host and a port.
    #[must_use]
    pub fn new(host: PeerHost, port: u16) -> Self {
        match host {
            PeerHost::V4(ip) => Self::V4(SocketAddrV4::new(ip, port)),
            PeerHost::V6(ip) => Self::V6(SocketAddrV6::new(ip, port, 0, 0)),
            PeerHost::Onion(name) => Self::Onion { name, port },
            PeerHost::I2p(name) => Self::I2p { name, port },
        }
    }

    /// From a socket address (IPv4-mapped IPv6 becomes IPv4; flow info and scope dropped).
    #[must_use]
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self::new(PeerHost::from_ip(addr.ip()), addr.port())
    }

    /// The host part.
    #[must_use]
    pub fn host(&self) -> PeerHost {
        match self {
            Self::V4(a) => PeerHost::V4(*a.ip()),
            Self::V6(a) => PeerHost::V6(*a.ip()),
            Self::Onion { name, .. } => PeerHost::Onion(*name),
            Self::I2p { name, .. } => PeerHost::I2p(name.clone()),
        }
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        match self {
            Self::V4(a) => a.port(),
            Self::V6(a) => a.port(),
            Self::Onion { port, .. } | Self::I2p { port, .. } => *port,
        }
    }

    /// Whether this is a name peer (onion/I2P).
    #[must_use]
    pub fn is_name(&self) -> bool {
        matches!(self, Self::Onion { .. } | Self::I2p { .. })
    }

    /// Append the host as a bencoded string (`ip` of a dictionary peer), without
    /// allocating.
    pub(crate) fn write_host_bencoded(&self, out: &mut Vec<u8>) {
        match self {
            Self::V4(a) => write_ip_bencoded(out, IpAddr::V4(*a.ip())),
            Self::V6(a) => write_ip_bencoded(out, IpAddr::V6(*a.ip())),
            Self::Onion { name, .. } => {
                bencode::write_bytes_parts(out, &[&name.0, OnionName::SUFFIX.as_bytes()]);
            }
            Self::I2p { name, .. } => name.write_text(out),
        }
    }
}

fn write_ip_bencoded(out: &mut Vec<u8>, ip: IpAddr) {
    // The longest IPv6 text is 45 bytes.
    let mut buf = [0u8; 48];
    let mut cursor = &mut buf[..];
    let _ = write!(cursor, "{ip}");
    let left = cursor.len();
    let n = buf.len() - left;
    bencode::write_bytes(out, &buf[..n]);
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => a.fmt(f),
            Self::V6(a) => write!(f, "[{}]:{}", a.ip(), a.port()),
            Self::Onion { name, port } => write!(f, "{name}:{port}"),
            Self::I2p { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real, published v3 onion address.
    const DDG: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

    #[test]
    fn real_onion_validates_and_round_trips_its_key() {
        let name = OnionName::parse(DDG).unwrap();
        assert_eq!(name.to_string(), DDG);
        assert_eq!(OnionName::from_public_key(&name.public_key()), name);
    }

    #[test]
    fn onion_rules() {
        let good = OnionName::from_public_key(&[9u8; 32]).to_string();
        assert!(OnionName::parse(&good).is_ok());
        // Flip one character of the key: checksum breaks.
        let mut bad = good.clone().into_bytes();
        bad[0] = if bad[0] == b'a' { b'b' } else { b'a' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(OnionName::parse(&bad), Err(HostError::OnionChecksum));
        // Upper case is not canonical.
        assert_eq!(
            OnionName::parse(&DDG.to_uppercase().replace(".ONION", ".onion")),
            Err(HostError::OnionAlphabet)
        );
        assert_eq!(
            OnionName::parse("expyuzz4wqqyqhjn.onion"),
            Err(HostError::OnionLength)
        );
        assert_eq!(
            PeerHost::parse(format!("www.{DDG}").as_bytes()),
            Err(HostError::OnionLength)
        );
        // Version byte 0 (last char encodes the low bits of the version).
        let mut v0 = DDG.as_bytes().to_vec();
        v0[55] = b'a';
        assert!(matches!(
            OnionName::parse(std::str::from_utf8(&v0).unwrap()),
            Err(HostError::OnionVersion | HostError::OnionChecksum)
        ));
    }

    #[test]
    fn i2p_rules() {
        let b32 = I2pName::from_destination_hash(&[7u8; 32]).to_string();
        assert_eq!(b32.len(), 52 + 8);
        assert!(matches!(I2pName::parse(&b32), Ok(I2pName::B32(_))));
        // Non-zero padding bits in the last character.
        let mut bad = b32.clone().into_bytes();
        bad[51] = b'b';
        assert_eq!(
            I2pName::parse(std::str::from_utf8(&bad).unwrap()),
            Err(HostError::I2pB32)
        );
        assert_eq!(I2pName::parse("short.b32.i2p"), Err(HostError::I2pB32));
        assert!(I2pName::parse("tracker.postman.i2p").is_ok());
        assert!(I2pName::parse("a-b.i2p").is_ok());
        for bad in [
            ".i2p",
            "-a.i2p",
            "a-.i2p",
            "a..b.i2p",
            "A.i2p",
            "a_b.i2p",
            &format!("{}.i2p", "a".repeat(64)),
        ] {
            assert_eq!(I2pName::parse(bad), Err(HostError::I2pName), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            PeerHost::parse(b"1.2.3.4"),
            Ok(PeerHost::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        assert_eq!(
            PeerHost::parse(b"[::1]"),
            Ok(PeerHost::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(
            PeerHost::parse(b"::ffff:1.2.3.4"),
            Ok(PeerHost::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        assert_eq!(
            PeerHost::parse(b"example.com"),
            Err(HostError::UnsupportedName)
        );
        assert_eq!(
            PeerHost::parse(b"01.2.3.4"),
            Err(HostError::UnsupportedName)
        );
        assert_eq!(PeerHost::parse(b""), Err(HostError::Empty));
        assert_eq!(PeerHost::parse(b"a b.i2p"), Err(HostError::NotAscii));
        assert_eq!(PeerHost::parse(&[b'a'; 300]), Err(HostError::TooLong));
    }

    #[test]
    fn host_text_is_bencoded_without_brackets() {
        let mut out = Vec::new();
        PeerAddr::new(PeerHost::V6(Ipv6Addr::LOCALHOST), 1).write_host_bencoded(&mut out);
        assert_eq!(out, b"3:::1");
        let mut out = Vec::new();
        let addr = PeerAddr::new(PeerHost::parse(DDG.as_bytes()).unwrap(), 1);
        addr.write_host_bencoded(&mut out);
        assert_eq!(out, format!("62:{DDG}").into_bytes());
        assert_eq!(addr.to_string(), format!("{DDG}:1"));
    }
}
