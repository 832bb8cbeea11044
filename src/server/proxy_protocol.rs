//! PROXY protocol v1 (HAProxy's text header), as sent by Tor with
//! `HiddenServiceExportCircuitID haproxy`.
//!
//! Tor prefixes each onion-service connection with
//! `PROXY TCP6 fc00:dead:beef:4dad::<circuit id> ::1 <src port> <dst port>\r\n`, where the
//! low 32 bits of the source address are the id of the rendezvous circuit. Every client of an
//! onion service otherwise looks like 127.0.0.1, so the circuit id is the only per-client key
//! the server can rate-limit on.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 header, CRLF included (from the PROXY protocol specification).
pub const MAX_HEADER_BYTES: usize = 107;

/// The /64 Tor puts circuit ids in.
const TOR_PREFIX: [u16; 4] = [0xfc00, 0xdead, 0xbeef, 0x4dad];

/// A parsed PROXY v1 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `TCP4` or `TCP6`: the original source and destination.
    Tcp {
        /// The original client (for Tor: the circuit-id address).
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// `UNKNOWN`: the proxy does not know the addresses.
    Unknown,
}

impl ProxyHeader {
    /// The Tor circuit id, if the source is in Tor's `fc00:dead:beef:4dad::/64`.
    #[must_use]
    pub fn tor_circuit_id(&self) -> Option<u32> {
        let ProxyHeader::Tcp {
            source: SocketAddr::V6(src),
            ..
        } = self
        else {
            return None;
        };
        let seg = src.ip().segments();
        if seg[..4] != TOR_PREFIX || seg[4] != 0 || seg[5] != 0 {
            return None;
        }
        Some((u32::from(seg[6]) << 16) | u32::from(seg[7]))
    }
}

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Not `PROXY …\r\n` of the v1 grammar.
    #[error("malformed PROXY header")]
    Malformed,
    /// No CRLF within [`MAX_HEADER_BYTES`].
    #[error("PROXY header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    /// The connection failed or closed before the header ended.
    #[error("connection closed while reading the PROXY header")]
    Io(#[from] std::io::Error),
}

/// Parse one header line (with its trailing CRLF).
pub fn parse_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if line.len() > MAX_HEADER_BYTES {
        return Err(ProxyError::TooLong);
    }
    let text = line
        .strip_suffix(b"\r\n")
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(ProxyError::Malformed)?;
    let mut parts = text.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(ProxyError::Malformed);
    }
    let family = parts.next().ok_or(ProxyError::Malformed)?;
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored (may be empty).
        return Ok(ProxyHeader::Unknown);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Malformed);
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let parsed = match family {
            "TCP4" => s.parse::<std::net::Ipv4Addr>().map(IpAddr::V4),
            "TCP6" => s.parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => return Err(ProxyError::Malformed),
        };
        parsed.map_err(|_| ProxyError::Malformed)
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyError::Malformed);
        }
        s.parse().map_err(|_| ProxyError::Malformed)
    };
    Ok(ProxyHeader::Tcp {
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
    })
}

/// Read exactly one header line from `io` (byte by byte, so nothing after it is consumed)
/// and parse it.
pub async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<ProxyHeader, ProxyError> {
    let mut line = Vec::with_capacity(MAX_HEADER_BYTES);
    loop {
        let b = io.read_u8().await?;
        line.push(b);
        if line.ends_with(b"\r\n") {
            return parse_line(&line);
        }
        if line.len() >= MAX_HEADER_BYTES {
            return Err(ProxyError::TooLong);
        }
        if line.len() == 6 && &line[..] != b"PROXY " {
            return Err(ProxyError::Malformed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tor_header_yields_the_circuit_id() {
        let h = parse_line(b"PROXY TCP6 fc00:dead:beef:4dad::0:1a2b ::1 65535 80\r\n").unwrap();
        assert_eq!(h.tor_circuit_id(), Some(0x1a2b));
        let h = parse_line(b"PROXY TCP6 fc00:dead:beef:4dad::ffff:ffff ::1 1 80\r\n").unwrap();
        assert_eq!(h.tor_circuit_id(), Some(u32::MAX));
        let h = parse_line(b"PROXY TCP6 fc00:dead:beef:4dad::1:0:0 ::1 1 80\r\n").unwrap();
        assert_eq!(h.tor_circuit_id(), None);
        let h = parse_line(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n").unwrap();
        assert!(matches!(h, ProxyHeader::Tcp { .. }));
        assert_eq!(h.tor_circuit_id(), None);
        assert_eq!(
            parse_line(b"PROXY UNKNOWN\r\n").unwrap(),
            ProxyHeader::Unknown
        );
        assert_eq!(
            parse_line(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n").unwrap(),
            ProxyHeader::Unknown
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            &b"PROXY TCP6 fc00:dead:beef:4dad::1 ::1 1 80\n"[..],
            b"PROXY TCP4 ::1 ::1 1 80\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.4 1 80\r\n",
            b"PROXY TCP6 ::1 ::1 65536 80\r\n",
            b"PROXY TCP6 ::1 ::1 +1 80\r\n",
            b"PROXY TCP6 ::1 ::1 1\r\n",
            b"PROXY TCP6 ::1 ::1 1 2 3\r\n",
            b"PROXY  TCP6 ::1 ::1 1 2\r\n",
            b"PROXY UDP6 ::1 ::1 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(
                parse_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn reads_exactly_the_header() {
        let mut input: &[u8] =
            b"PROXY TCP6 fc00:dead:beef:4dad::0:7 ::1 5 80\r\nGET / HTTP/1.1\r\n";
        let h = read_header(&mut input).await.unwrap();
        assert_eq!(h.tor_circuit_id(), Some(7));
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
        let mut early: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(
            read_header(&mut early).await,
            Err(ProxyError::Malformed)
        ));
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(
            read_header(&mut &long[..]).await,
            Err(ProxyError::TooLong)
        ));
        let mut cut: &[u8] = b"PROXY TCP6 ::1";
        assert!(matches!(
            read_header(&mut cut).await,
            Err(ProxyError::Io(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_lines_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..140)) {
            let _ = parse_line(&bytes);
        }

        /// Every Tor-shaped header parses back to its circuit id and ports.
        #[test]
        fn tor_headers_round_trip(id: u32, sport: u16, dport: u16) {
            let src = Ipv6Addr::new(0xfc00, 0xdead, 0xbeef, 0x4dad, 0, 0, (id >> 16) as u16, id as u16);
            let line = format!("PROXY TCP6 {src} ::1 {sport} {dport}\r\n");
            let h = parse_line(line.as_bytes()).unwrap();
            prop_assert_eq!(h.tor_circuit_id(), Some(id));
            let ProxyHeader::Tcp { source, destination } = h else { panic!("not TCP") };
            prop_assert_eq!((source.port(), destination.port()), (sport, dport));
        }
    }
}
