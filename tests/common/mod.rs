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

/// Run each `async fn NAME(pg: bool)` listed as two tests, `sqlite::NAME` (`false`) and
/// `postgres::NAME` (`true`).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(false).await; }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(true).await; }
        )* }
    };
}
