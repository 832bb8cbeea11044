//! The `megatorrent` client library.
//!
//! * [`identity`] — the keystore (home directory, `identity.key`, `state.json`).
//! * [`http`] — a minimal HTTP/1.1 client over [`crate::net::Connector`].
//! * [`api`] — the signaling client (fetch and publish manifests, never trusting the server).
//! * [`display`] — terminal rendering of manifests.
//! * [`ws`] — a WebSocket to the server over the connector (strictly parsed frames).
//! * [`subscribe`] — following keys live and publishing over the WebSocket.
//! * [`cli`] — the `megatorrent` command line.

pub mod api;
pub mod cli;
pub mod display;
pub mod http;
pub mod identity;
pub mod subscribe;
pub mod ws;

#[cfg(test)]
mod testutil;
