//! Test databases: SQLite in a temporary directory always, and PostgreSQL
//! when `GOFLOW_TEST_DATABASE_URL` (or `DATABASE_URL`) is set, each in a
//! fresh schema dropped at the end, so tests run in parallel.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use goflow_core::{DataInterval, ExecutorKind, RunType, TaskState};
use goflow_store::{
    Backend, DagRecord, NewRun, NewTaskInstance, RunRow, Store, TaskChange, TaskUpdate,
};

/// A migrated store and what it takes to reach its database directly.
pub struct TestDb {
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

fn postgres_base_url() -> Option<String> {
    std::env::var("GOFLOW_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

async fn migrated(url: &str) -> Store {
    let store = Store::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let applied = store.migrate().await.expect("migrate");
    assert!(!applied.is_empty(), "a fresh database gets the migrations");
    store
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("goflow.db").display());
    TestDb {
        store: migrated(&url).await,
        url,
        guard: Guard::Sqlite(dir),
    }
}

pub async fn postgres(base: &str) -> TestDb {
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
        store: migrated(&url).await,
        url,
        guard,
    }
}

/// SQLite always; PostgreSQL too when a test database is configured.
pub async fn databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    if let Some(base) = postgres_base_url() {
        dbs.push(postgres(&base).await);
    }
    dbs
}

/// 2026-01-01T00:00:00Z plus `secs`.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

pub fn dag_record(id: &str, fingerprint: &str) -> DagRecord {
    DagRecord {
        id: id.to_owned(),
        name: id.to_owned(),
        namespace: Some("analytics".to_owned()),
        fingerprint: fingerprint.to_owned(),
        file_path: "src/dags.rs".to_owned(),
        file_format: "rust".to_owned(),
        schedule: "0 6 * * *".to_owned(),
        timezone: "Europe/Paris".to_owned(),
        description: Some("daily sales".to_owned()),
        tags: vec!["sales".to_owned(), "daily".to_owned()],
        max_active_runs: 16,
        max_active_tasks: 16,
        is_paused_on_create: false,
    }
}

pub fn task(id: &str, priority_weight: i32, pool: &str) -> NewTaskInstance {
    NewTaskInstance {
        task_id: id.to_owned(),
        max_tries: 3,
        priority_weight,
        pool: pool.to_owned(),
        executor: ExecutorKind::InProcess,
    }
}

/// A scheduled run of `dag` for the day starting `day` days after t(0).
pub fn new_run(dag: &str, day: i64, tasks: Vec<NewTaskInstance>) -> NewRun {
    let start = t(day * 86_400);
    NewRun {
        dag_id: dag.to_owned(),
        run_id: format!("scheduled__{}", start.to_rfc3339()),
        run_type: RunType::Scheduled,
        data_interval: DataInterval::new(start, start + chrono::Duration::days(1)),
        conf: serde_json::json!({}),
        dag_version: 1,
        tasks,
    }
}

/// Syncs `dag` and creates a run of it with `tasks`.
pub async fn dag_with_run(
    store: &Store,
    dag: &str,
    day: i64,
    tasks: Vec<NewTaskInstance>,
) -> RunRow {
    if store.get_dag(dag).await.unwrap().is_none() {
        store.sync_dag(&dag_record(dag, "f1"), t(0)).await.unwrap();
    }
    store
        .create_run(&new_run(dag, day, tasks), t(1))
        .await
        .unwrap()
}

/// Moves `tasks` of `run` from pending to scheduled.
pub async fn schedule(store: &Store, run: i64, tasks: &[&str]) {
    let changes = tasks
        .iter()
        .map(|t| {
            TaskChange::new(
                *t,
                TaskState::Pending,
                TaskUpdate::new(TaskState::Scheduled),
            )
        })
        .collect();
    assert!(store.update_tasks(run, changes, t(2)).await.unwrap());
}
