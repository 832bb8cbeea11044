//! Many datagrams per system call for the UDP tracker: `recvmmsg` takes up to [`BATCH`]
//! waiting datagrams at once, and `sendmmsg` sends the replies to all of them at once.
//!
//! Under load the kernel's per-call cost (entry, socket lookup and locking) was most of the
//! tracker's CPU with one `recvfrom` and one `sendto` per datagram (BENCHMARKS.md, the UDP
//! profile). An idle socket still answers each datagram at once: a batch is whatever is
//! already queued when the socket becomes readable, never waited for.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams received, and replies sent, per system call.
pub const BATCH: usize = 32;

/// The buffers of one receive loop: [`BATCH`] receive buffers and the replies to them.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    /// Length and source of each datagram of the last receive, in order.
    got: Vec<(usize, SocketAddr)>,
    /// The replies, one after the other.
    replies: Vec<u8>,
    /// Where each reply is in `replies`, and whom it goes to.
    spans: Vec<(Range<usize>, SocketAddr)>,
}

impl Batch {
    /// Buffers for datagrams of up to `buf_len` bytes (longer ones are cut to `buf_len`).
    #[must_use]
    pub fn new(buf_len: usize) -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; buf_len]).collect(),
            got: Vec::with_capacity(BATCH),
            replies: Vec::with_capacity(BATCH * 128),
            spans: Vec::with_capacity(BATCH),
        }
    }

    /// Wait until datagrams arrive and take those queued (at most [`BATCH`]); returns how
    /// many. Datagrams whose source is not an IP address are dropped.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.recv_now(socket)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }

    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        // Headers are per call: they hold raw pointers into the buffers, so they must not
        // outlive this borrow (nor cross an await).
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
            self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let msgs = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        self.got.clear();
        for m in msgs {
            // Keep the index aligned with `bufs`: a datagram without an IP source keeps its
            // slot with an impossible length, and `datagram` skips it.
            self.got.push(match m.address.as_ref().and_then(to_std) {
                Some(from) => (m.bytes, from),
                None => (usize::MAX, unspecified()),
            });
        }
        Ok(self.got.len())
    }

    /// The `i`-th datagram of the last receive and its source; `None` for one to skip.
    #[must_use]
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, from) = self.got.get(i)?;
        Some((self.bufs.get(i)?.get(..len)?, from))
    }

    /// Queue `reply` for `to`; sent by the next [`Batch::flush`].
    pub fn push_reply(&mut self, reply: &[u8], to: SocketAddr) {
        let start = self.replies.len();
        self.replies.extend_from_slice(reply);
        self.spans.push((start..self.replies.len(), to));
    }

    /// Send every queued reply (as few system calls as the socket allows), then forget them.
    /// A reply the kernel refuses (say, an unreachable address) is logged and dropped, as
    /// a lost datagram would be.
    pub async fn flush(&mut self, socket: &UdpSocket) {
        let mut next = 0;
        while next < self.spans.len() {
            match socket.try_io(Interest::WRITABLE, || self.send_now(socket, next)) {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "udp send failed");
                    next += 1;
                }
            }
        }
        self.replies.clear();
        self.spans.clear();
    }

    fn send_now(&self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        let spans = self.spans.get(from..).unwrap_or_default();
        let spans = spans.get(..BATCH.min(spans.len())).unwrap_or_default();
        let slices: Vec<[IoSlice<'_>; 1]> = spans
            .iter()
            .map(|(r, _)| {
                [IoSlice::new(
                    self.replies.get(r.clone()).unwrap_or_default(),
                )]
            })
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = spans
            .iter()
            .map(|(_, to)| Some(SockaddrStorage::from(*to)))
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(spans.len(), None);
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter(),
            addrs,
            no_cmsgs,
            MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(sent.count())
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
