//! The glue between the registry and the store: where the database is,
//! syncing the binary's DAGs into it, and the shape of new runs.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use goflow_core::{Dag, DataInterval, RunType};
use goflow_store::{CleanOptions, DagRecord, DagRow, NewRun, NewTaskInstance, Store, StoreError};

use crate::Registry;

/// The database used when none is given: `goflow.db` in the working
/// directory, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://goflow.db";

/// The environment variable naming the database.
pub const DATABASE_URL_ENV: &str = "GOFLOW_DATABASE_URL";

/// The database URL to use: the one given (e.g. `--database-url`), else
/// `GOFLOW_DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
pub fn database_url(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| {
            std::env::var(DATABASE_URL_ENV)
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// Connects to `url` and brings its schema up to date.
///
/// A database migrated by a newer goflow is refused
/// ([`StoreError::UnknownMigrations`]), before anything is written.
pub async fn open(url: &str) -> Result<Store, StoreError> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// Connects to `url` for commands that only read: read-only (nothing
/// written, not even the SQLite journal mode, so a read-only SQLite file
/// can be read) when the schema is this build's; otherwise, as [`open`]
/// does, connecting and migrating (a database that does not exist yet is
/// created, and reads as empty).
pub async fn open_read_only(url: &str) -> Result<Store, StoreError> {
    match Store::connect_read_only(url).await {
        Err(StoreError::NotMigrated { .. }) => open(url).await,
        other => other,
    }
}

/// Writes every DAG of the registry into the store (created on first
/// sight, version bumped when its structure changed) and returns the rows
/// by DAG id.
pub async fn sync_registry(
    store: &Store,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<HashMap<String, DagRow>, StoreError> {
    let mut rows = HashMap::new();
    for dag in registry.dags() {
        let row = store.sync_dag(&DagRecord::from_dag(dag), now).await?;
        rows.insert(row.id.clone(), row);
    }
    Ok(rows)
}

/// A task that names a pool the store does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingPool {
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// The pool it names.
    pub pool: String,
}

impl std::fmt::Display for MissingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task {} of DAG {} uses pool {:?}, which does not exist; create it with `pools set {} <slots>`",
            self.task_id, self.dag_id, self.pool, self.pool
        )
    }
}

/// The tasks of `registry` (of the DAG `only`, if given) that name a pool
/// the store does not have, by DAG and task. Such a task would otherwise
/// run without any limit; `default_pool`, the pool of tasks that name
/// none, needs no row.
pub async fn missing_pools(
    store: &Store,
    registry: &Registry,
    only: Option<&str>,
) -> Result<Vec<MissingPool>, StoreError> {
    let known: std::collections::HashSet<String> = store
        .list_pools()
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut missing = Vec::new();
    for dag in registry.dags() {
        if only.is_some_and(|id| id != dag.id().as_str()) {
            continue;
        }
        for task in dag.tasks() {
            let pool = task.options.pool();
            if pool != goflow_core::options::DEFAULT_POOL && !known.contains(pool) {
                missing.push(MissingPool {
                    dag_id: dag.id().to_string(),
                    task_id: task.id.to_string(),
                    pool: pool.to_owned(),
                });
            }
        }
    }
    missing.sort_by(|a, b| (&a.dag_id, &a.task_id).cmp(&(&b.dag_id, &b.task_id)));
    Ok(missing)
}

/// The run id of a run: `<type>__<logical date>`, as Airflow names them,
/// e.g. `scheduled__2026-01-01T06:00:00Z`.
pub fn run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
    format!(
        "{}__{}",
        run_type.as_str(),
        logical_date.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// A new run of `dag` (at `version`) with one pending task instance per
/// task.
pub fn new_run(
    dag: &Dag,
    version: i32,
    run_type: RunType,
    data_interval: DataInterval,
    conf: serde_json::Value,
) -> NewRun {
    NewRun {
        dag_id: dag.id().to_string(),
        run_id: run_id(run_type, data_interval.start),
        run_type,
        data_interval,
        conf,
        dag_version: version,
        tasks: dag
            .tasks()
            .iter()
            .map(|t| NewTaskInstance {
                task_id: t.id.to_string(),
                max_tries: t.options.retry_policy().max_tries(),
                priority_weight: t.options.priority_weight(),
                pool: t.options.pool().to_owned(),
                executor: t
                    .options
                    .executor
                    .unwrap_or(goflow_core::ExecutorKind::InProcess),
            })
            .collect(),
    }
}

/// How often the scheduler's `--retention` cleans.
pub(crate) const RETENTION_PERIOD: std::time::Duration = std::time::Duration::from_secs(3600);

/// The scheduler's `--retention`: at once and then every
/// [`RETENTION_PERIOD`] until `stop`, deletes the finished runs that ended
/// more than `keep` ago. A failed clean is logged and tried again next
/// time; each batch is one transaction, so a stop mid-way loses nothing.
pub(crate) async fn clean_periodically(
    store: Store,
    keep: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(RETENTION_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let Some(before) = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| Utc::now().checked_sub_signed(keep))
        else {
            // Longer ago than any date: nothing can be that old.
            continue;
        };
        let options = CleanOptions::new(before);
        let clean = store.clean(&options, |_| {});
        let report = tokio::select! {
            _ = &mut stop => return,
            report = clean => report,
        };
        match report {
            Ok(report) => {
                for (dag, c) in &report.dags {
                    tracing::info!(
                        dag,
                        runs = c.runs,
                        task_instances = c.task_instances,
                        log_lines = c.task_logs,
                        before = %before,
                        "retention: deleted old runs"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: cleaning old runs failed; trying again in an hour")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_follow_airflow() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            run_id(RunType::Scheduled, t),
            "scheduled__2026-01-01T06:00:00Z"
        );
    }

    #[test]
    fn explicit_url_wins() {
        assert_eq!(database_url(Some("sqlite://x.db")), "sqlite://x.db");
    }
}
