//! The `megatorrent` client library.
//!
//! * [`identity`] — the keystore (home directory, `identity.key`, `state.json`).
//! * [`http`] — a minimal HTTP/1.1 client over [`crate::net::Connector`].
//! * [`api`] — the signaling client (fetch and publish manifests, never trusting the server).
//! * [`display`] — terminal rendering of manifests.
//! * [`ws`] — a WebSocket to the server over the connector (strictly parsed frames).
//! * [`subscribe`] — following keys live and publishing over the WebSocket.
//! * [`network`] — the `--proxy` / `--tor` / `--i2p-proxy` flags and the connector they pick.
//! * [`announce`], [`torrent`], [`feed`], [`seeder`], [`peer_net`] — messages as torrents
//!   (feature `torrent`): our tracker client, the librqbit wrapper, `share`/`find`, `seed`,
//!   and the peer listener / onion flags.
//! * [`mail`], [`mailbox`], [`inbox`] — direct messages: sealing letters, the mailbox HTTP
//!   client, and the `send`/`inbox` commands; [`mailkeys`] (mailbox key pairs published in
//!   profiles) and [`inbox_seen`] (what `inbox --keep` showed) under `--home`, through
//!   [`localfile`].
//! * [`contacts`] — petnames, and the resolver for every PUBKEY argument.
//! * [`keys`] — `key export|import` (one identity on several devices).
//! * [`channel`] — channels with their own identity, and private channels (sealed items).
//! * [`publish`] — the `publish` command.
//! * [`cli`] — the `megatorrent` command line.

#[cfg(feature = "torrent")]
pub mod announce;
pub mod api;
pub mod channel;
pub mod cli;
pub mod contacts;
pub mod display;
#[cfg(feature = "torrent")]
pub mod feed;
pub mod http;
pub mod identity;
pub mod inbox;
pub mod inbox_seen;
pub mod keys;
pub mod localfile;
pub mod mail;
pub mod mailbox;
pub mod mailkeys;
pub mod mailpush;
pub mod network;
#[cfg(feature = "torrent")]
pub mod peer_net;
pub mod profile;
pub mod publish;
#[cfg(feature = "torrent")]
pub mod seeder;
pub mod subscribe;
#[cfg(feature = "torrent")]
pub mod torrent;
pub mod ws;

#[cfg(test)]
mod testutil;
