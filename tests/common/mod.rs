//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "client")]
pub mod cli;
pub mod http;
pub mod netns;
pub mod pg;
pub mod server;
#[cfg(feature = "client")]
pub mod tor;
pub mod ws;
