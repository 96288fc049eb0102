//! Test databases for goflow's own tests and for users testing code that
//! uses the store: SQLite in a temporary directory always, and PostgreSQL
//! when `GOFLOW_TEST_DATABASE_URL` (or `DATABASE_URL`) is set, each in a
//! fresh schema dropped at the end, so tests run in parallel.
//!
//! Enabled by the `testing` feature. Panics on set-up failures: it is
//! meant for tests only.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::Connection;

use crate::{Backend, Store};

/// A migrated store and what it takes to reach its database directly.
pub struct TestDb {
    /// The store, migrated.
    pub store: Store,
    /// The URL the store was opened with (for a second store or raw SQL).
    pub url: String,
    guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { base: String, schema: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { base, schema } = self {
            match diesel::PgConnection::establish(base) {
                Ok(mut c) => {
                    if let Err(e) =
                        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    {
                        eprintln!("could not drop test schema {schema}: {e}");
                    }
                }
                Err(e) => eprintln!("could not drop test schema {schema}: {e}"),
            }
        }
    }
}

impl TestDb {
    /// The store's backend.
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Runs SQL on the database behind the store's back.
    pub fn execute_raw(&self, sql: &str) {
        match &self.guard {
            Guard::Sqlite(_) => {
                let path = self.url.trim_start_matches("sqlite://");
                diesel::SqliteConnection::establish(path)
                    .unwrap()
                    .batch_execute(sql)
                    .unwrap()
            }
            Guard::Postgres { .. } => diesel::PgConnection::establish(&self.url)
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }
}

/// The PostgreSQL test database, if one is configured.
pub fn postgres_base_url() -> Option<String> {
    std::env::var("GOFLOW_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

async fn connect(url: &str, migrate: bool) -> Store {
    let store = Store::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    if migrate {
        let applied = store.migrate().await.expect("migrate");
        assert!(!applied.is_empty(), "a fresh database gets the migrations");
    }
    store
}

/// A fresh SQLite database in a temporary directory, migrated if asked.
pub async fn sqlite(migrate: bool) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("goflow.db").display());
    TestDb {
        store: connect(&url, migrate).await,
        url,
        guard: Guard::Sqlite(dir),
    }
}

/// A fresh schema in the PostgreSQL database at `base`, migrated if asked.
pub async fn postgres(base: &str, migrate: bool) -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "goflow_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Utc::now().timestamp_micros()
    );
    diesel::PgConnection::establish(base)
        .unwrap_or_else(|e| panic!("GOFLOW_TEST_DATABASE_URL {base}: {e}"))
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .unwrap();
    let guard = Guard::Postgres {
        base: base.to_owned(),
        schema: schema.clone(),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    TestDb {
        store: connect(&url, migrate).await,
        url,
        guard,
    }
}

/// SQLite always; PostgreSQL too when a test database is configured.
pub async fn databases() -> Vec<TestDb> {
    with_schema(true).await
}

/// Like [`databases`], without the schema: for tests of migrating.
pub async fn empty_databases() -> Vec<TestDb> {
    with_schema(false).await
}

async fn with_schema(migrate: bool) -> Vec<TestDb> {
    let mut dbs = vec![sqlite(migrate).await];
    if let Some(base) = postgres_base_url() {
        dbs.push(postgres(&base, migrate).await);
    }
    dbs
}
