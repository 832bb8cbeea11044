//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! Tests run against the local server at `postgres://postgres@127.0.0.1:5432` (trust auth);
//! set `MEGATORRENT_TEST_PG_URL` to another server URL *without* a database path to use
//! that instead. An unreachable server fails the test: these tests never skip.
#![cfg(feature = "postgres")]

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};

/// The server used when `MEGATORRENT_TEST_PG_URL` is unset.
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// A database created for one test. Call [`PgTestDb::drop_db`] at the end; if the test panics
/// first, `Drop` removes the database on a helper thread instead.
pub struct PgTestDb {
    /// URL of the fresh database, for `store::open` or a server config.
    pub url: String,
    /// The database's name (`mt_test_<hex>`).
    pub name: String,
    server_url: String,
    dropped: bool,
}

fn server_url() -> String {
    std::env::var("MEGATORRENT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// A connection to the server's `postgres` maintenance database.
async fn admin(server_url: &str) -> PgConnection {
    let opts = PgConnectOptions::from_str(server_url)
        .unwrap_or_else(|e| panic!("MEGATORRENT_TEST_PG_URL is not a PostgreSQL URL: {e}"))
        .database("postgres");
    opts.connect().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for these tests and could not be reached ({e}). \
             Start it on 127.0.0.1:5432 with trust auth for user `postgres`, \
             or set MEGATORRENT_TEST_PG_URL."
        )
    })
}

async fn drop_database(server_url: &str, name: &str) {
    let mut conn = admin(server_url).await;
    // `name` is generated below from hex digits only, so it is safe to splice in.
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("dropping test database {name}: {e}"));
}

impl PgTestDb {
    /// Create a uniquely named empty database on the test server.
    pub async fn create() -> PgTestDb {
        let server_url = server_url();
        let name = format!("mt_test_{:016x}", rand::random::<u64>());
        let mut conn = admin(&server_url).await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let url = format!("{}/{name}", server_url.trim_end_matches('/'));
        PgTestDb {
            url,
            name,
            server_url,
            dropped: false,
        }
    }

    /// Drop the database, disconnecting anything still connected to it.
    pub async fn drop_db(mut self) {
        drop_database(&self.server_url, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Reached when a test panicked before `drop_db`. We may be inside a runtime, so do the
        // async clean-up on a thread with its own; never panic while already unwinding.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(opts) = PgConnectOptions::from_str(&server_url) else {
                    return;
                };
                let Ok(mut conn) = opts.database("postgres").connect().await else {
                    return;
                };
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await;
            });
        });
        let _ = cleanup.join();
    }
}
