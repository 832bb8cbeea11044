//! The `megatorrent` client library.
//!
//! * [`identity`] — the keystore (home directory, `identity.key`, `state.json`).
//! * [`http`] — a minimal HTTP/1.1 client over [`crate::net::Connector`].
//! * [`api`] — the signaling client (fetch and publish manifests, never trusting the server).
//! * [`display`] — terminal rendering of manifests.
//! * [`network`] — the `--proxy` / `--tor` / `--i2p-proxy` flags and the connector they pick.
//! * [`cli`] — the `megatorrent` command line.

pub mod api;
pub mod cli;
pub mod display;
pub mod http;
pub mod identity;
pub mod network;

#[cfg(test)]
mod testutil;
