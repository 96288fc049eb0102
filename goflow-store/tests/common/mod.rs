//! Test databases: SQLite in a temporary directory always, and PostgreSQL
//! when `GOFLOW_TEST_DATABASE_URL` (or `DATABASE_URL`) is set, each in a
//! fresh schema dropped at the end, so tests run in parallel.

#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use goflow_core::{DataInterval, ExecutorKind, RunType, TaskState};
use goflow_store::{DagRecord, NewRun, NewTaskInstance, RunRow, Store, TaskChange, TaskUpdate};

pub use goflow_store::testing::databases;

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
