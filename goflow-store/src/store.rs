//! [`Store`]: the async API over a pool of connections.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::{case_when, count_star};
use diesel::prelude::*;
use diesel::r2d2::Pool;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use goflow_core::{ExecutorKind, RunState, RunType, TaskState};

use crate::conn::{
    applied_migrations, check_schema, open_first, per_backend, savepoint_if, transaction,
    transaction_if, AnyConnection, Cached, Manager, Setup,
};
use crate::model::{
    convert, int, micros, parse, ClaimedTask, DagRecord, DagRow, DbDag, DbLogLine, DbNewLogLine,
    DbNewRun, DbNewTaskInstance, DbPool, DbRun, DbScheduler, DbTaskChange, DbTaskInstance,
    DbTaskTry, DbTryReset, LogLevel, LogLine, LogStream, NewLogLine, NewRun, NewTaskInstance,
    PoolRow, RunRow, SchedulerRow, TaskInstanceRow, TaskTryRow, TaskUpdate,
};
use crate::schema::{
    dag_runs, dags, pools, schedulers, task_instances as ti, task_logs, task_outputs, task_tries,
};
use crate::url::{self, DbUrl, Target};
use crate::{Backend, Result, StoreError};

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The versions of the migrations this build embeds for `backend`, oldest
/// first, as diesel records them (`20260101000000`).
pub(crate) fn known_migrations(backend: Backend) -> Result<Vec<String>> {
    fn versions<DB: diesel::backend::Backend>(
        source: &impl diesel::migration::MigrationSource<DB>,
    ) -> Result<Vec<String>> {
        let mut versions: Vec<String> = source
            .migrations()
            .map_err(|source| StoreError::Migration { source })?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect();
        versions.sort();
        Ok(versions)
    }
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => versions::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS),
        #[cfg(feature = "postgres")]
        Backend::Postgres => versions::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS),
        #[allow(unreachable_patterns)]
        other => Err(StoreError::BackendNotCompiled {
            url: String::new(),
            feature: other.as_str(),
        }),
    }
}

diesel::define_sql_function! {
    /// SQL's `COALESCE` of two nullable `BIGINT`s.
    fn coalesce(
        x: diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        y: diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::BigInt>;
}

/// Key of the PostgreSQL advisory lock that serializes concurrent
/// migrations (ASCII "goflow").
#[cfg(feature = "postgres")]
const MIGRATION_LOCK: i64 = 0x676f_666c_6f77;

/// Rows per multi-row `INSERT`, well under both backends' bind limits.
const INSERT_CHUNK: usize = 1000;

/// The longest `IN` list of a statement kept prepared ([`Cached`]) on
/// SQLite, whose text has one `?` per item: a statement per length up to
/// this, not one per length there can be.
#[cfg(feature = "sqlite")]
const CACHED_LIST: usize = 16;

/// Tuning for [`Store::connect_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most pooled connections (an in-memory SQLite database always has one).
    pub max_connections: u32,
    /// How long a SQLite writer waits for another before failing.
    pub busy_timeout: Duration,
    /// How long a call waits for a free pooled connection.
    pub checkout_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            busy_timeout: Duration::from_secs(10),
            checkout_timeout: Duration::from_secs(30),
        }
    }
}

/// One change in [`Store::update_tasks`].
#[derive(Clone, Debug, PartialEq)]
pub struct TaskChange {
    /// The task.
    pub task_id: String,
    /// The state it must be in for the change to apply.
    pub expected: TaskState,
    /// The change.
    pub update: TaskUpdate,
    /// The task's output, written in the same transaction (so a task is
    /// never `success` without its output).
    pub output: Option<serde_json::Value>,
}

impl TaskChange {
    /// A change of `task_id` from `expected` by `update`, without output.
    pub fn new(task_id: impl Into<String>, expected: TaskState, update: TaskUpdate) -> Self {
        TaskChange {
            task_id: task_id.into(),
            expected,
            update,
            output: None,
        }
    }
}

/// The changes to one run in [`Store::update_runs`], applied all or
/// nothing: its task changes, a move of its own state, and letting go of
/// it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunChange {
    /// The run.
    pub run: i64,
    /// Changes to its task instances, each compare-and-set.
    pub tasks: Vec<TaskChange>,
    /// A move of the run's state `(from, to)`, compare-and-set.
    pub state: Option<(RunState, RunState)>,
    /// Lets go of the run's ownership, if this scheduler holds it.
    pub release_by: Option<String>,
}

impl RunChange {
    /// Changes to the task instances of `run`, nothing else.
    pub fn tasks(run: i64, tasks: Vec<TaskChange>) -> Self {
        RunChange {
            run,
            tasks,
            state: None,
            release_by: None,
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.state.is_none() && self.release_by.is_none()
    }
}

/// The durable store: DAGs, runs, task instances, tries, outputs, logs,
/// scheduler heartbeats and pools, in SQLite or PostgreSQL.
///
/// Cloning is cheap (the pool is shared). Every method runs its queries on
/// a blocking thread (`spawn_blocking`) with a pooled connection, so the
/// async runtime is never blocked; every change is one transaction.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: Backend,
    /// An in-memory SQLite database (one connection, private to this store).
    memory: bool,
    url: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

pub(crate) const QUEUED: &str = "queued";
pub(crate) const RUNNING: &str = "running";

impl Store {
    /// Connects to `url` with default [`StoreOptions`]: `postgres://...` or
    /// `postgresql://...` for PostgreSQL; `sqlite://PATH`, `sqlite::memory:`
    /// or a bare file path for SQLite (the file is created if missing).
    ///
    /// A database that does not answer is an error naming the URL (without
    /// its password) and the cause. Does not migrate: call
    /// [`migrate`](Self::migrate).
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects to `url` with `options`.
    ///
    /// A database migrated by a newer goflow (it has migrations this build
    /// does not know) is refused with [`StoreError::UnknownMigrations`].
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store> {
        Self::connect_mode(url, options, false).await
    }

    /// Connects to `url` to read only: nothing is written, not even the
    /// SQLite journal mode, so a read-only SQLite file (or a read-only
    /// PostgreSQL role) can be read. The database must be migrated to this
    /// build's schema ([`StoreError::NotMigrated`] otherwise; a SQLite file
    /// that does not exist is not created); writes fail.
    pub async fn connect_read_only(url: &str) -> Result<Store> {
        Self::connect_mode(url, StoreOptions::default(), true).await
    }

    async fn connect_mode(url: &str, options: StoreOptions, read_only: bool) -> Result<Store> {
        let parsed = url::parse(url)?;
        let job = move || Self::connect_blocking(parsed, options, read_only);
        match tokio::task::spawn_blocking(job).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Cancelled),
        }
    }

    fn connect_blocking(parsed: DbUrl, options: StoreOptions, read_only: bool) -> Result<Store> {
        let DbUrl {
            target,
            display: shown,
        } = parsed;
        let setup = Setup {
            busy_timeout: options.busy_timeout,
            read_only,
        };
        // One connection first, for a precise error instead of a pool
        // timeout, and to refuse a schema this build does not know.
        // It becomes the pool's first connection.
        let (target, probe) = open_first(target, setup, &shown, known_migrations)?;
        let backend = probe.backend();
        let memory = is_memory(&target);

        let builder = Pool::builder()
            .connection_customizer(Box::new(setup))
            .connection_timeout(options.checkout_timeout);
        let builder = if memory {
            // Every connection to `:memory:` is a new database: keep one,
            // forever. It cannot be lost as a socket can, so it is not
            // tested (a `SELECT 1`) on every checkout.
            builder
                .max_size(1)
                .min_idle(Some(1))
                .idle_timeout(None)
                .max_lifetime(None)
                .test_on_check_out(false)
        } else {
            // No idle connections kept topped up: r2d2 opens those on
            // its own threads, and a process that exits while one is
            // half-open (libpq inside OpenSSL) crashes in OpenSSL's exit
            // handler. Connections are made on demand and reused instead.
            builder
                .max_size(options.max_connections.max(1))
                .min_idle(Some(0))
        };
        let pool = builder
            .build(Manager::new(target, probe))
            .map_err(|source| StoreError::Pool {
                url: shown.clone(),
                source,
            })?;
        tracing::debug!(url = %shown, backend = backend.as_str(), "connected to the store");
        Ok(Store {
            pool,
            backend,
            memory,
            url: shown.into(),
        })
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let url = self.url.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|source| StoreError::Pool {
                url: url.to_string(),
                source,
            })?;
            f(&mut conn)
        });
        match job.await {
            Ok(r) => r.map_err(|e| e.in_op(op)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Cancelled),
        }
    }

    // -----------------------------------------------------------------------
    // Schema
    // -----------------------------------------------------------------------

    /// Applies the embedded migrations not yet applied, returning their
    /// versions. Idempotent, and safe to call from several processes at
    /// once (a write lock on SQLite, an advisory lock on PostgreSQL).
    ///
    /// A database migrated by a newer goflow since this store connected is
    /// refused ([`StoreError::UnknownMigrations`]), like at connection.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let url = self.url.clone();
        let memory = self.memory;
        self.run("migrate", move |conn| {
            let known = known_migrations(conn.backend())?;
            let before = applied_migrations(conn)?;
            check_schema(&before, &known, &url, false)?;
            #[cfg(not(feature = "sqlite"))]
            let _ = memory;
            let applied = match conn {
                #[cfg(feature = "postgres")]
                AnyConnection::Postgres(c) => c.transaction::<_, StoreError, _>(|c| {
                    diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                        .execute(c)?;
                    c.run_pending_migrations(POSTGRES_MIGRATIONS)
                        .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
                        .map_err(|source| StoreError::Migration { source })
                })?,
                #[cfg(feature = "sqlite")]
                AnyConnection::Sqlite(c) => {
                    // A new in-memory database (`dags test`'s) is given the
                    // schema the migrations make, copied, instead of being
                    // migrated step by step.
                    let copied = if memory && before.is_empty() {
                        sqlite_schema::copy_to(c)?
                    } else {
                        None
                    };
                    match copied {
                        Some(applied) => applied,
                        None => c.immediate_transaction::<_, StoreError, _>(|c| {
                            c.run_pending_migrations(SQLITE_MIGRATIONS)
                                .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
                                .map_err(|source| StoreError::Migration { source })
                        })?,
                    }
                }
            };
            if !applied.is_empty() {
                tracing::info!(?applied, "applied store migrations");
            }
            Ok(applied)
        })
        .await
    }

    // -----------------------------------------------------------------------
    // DAGs
    // -----------------------------------------------------------------------

    /// Inserts or updates a DAG. A new DAG gets version 1; an existing one
    /// keeps its `created_date` and `is_paused`, and gets a new version and
    /// `last_updated_date` only when its fingerprint changed. Descriptive
    /// fields (schedule, description, tags...) always follow the record.
    pub async fn sync_dag(&self, record: &DagRecord, now: DateTime<Utc>) -> Result<DagRow> {
        let record = record.clone();
        self.run("sync_dag", move |conn| upsert_dag(conn, &record, now))
            .await
    }

    /// Pauses or unpauses a DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let dag_id = dag_id.to_owned();
        self.run("set_paused", move |conn| {
            let n = diesel::update(dags::table.find(&dag_id))
                .set(dags::is_paused.eq(paused))
                .execute(conn)?;
            if n == 0 {
                return Err(StoreError::DagNotFound { dag_id });
            }
            Ok(())
        })
        .await
    }

    /// The DAG `dag_id`, if stored.
    pub async fn get_dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        let dag_id = dag_id.to_owned();
        self.run("get_dag", move |conn| {
            dags::table
                .find(&dag_id)
                .select(DbDag::as_select())
                .first(conn)
                .optional()?
                .map(DagRow::try_from)
                .transpose()
        })
        .await
    }

    /// Every DAG, by id.
    pub async fn list_dags(&self) -> Result<Vec<DagRow>> {
        self.run("list_dags", |conn| {
            convert(
                dags::table
                    .order(dags::id)
                    .select(DbDag::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    // -----------------------------------------------------------------------
    // Runs
    // -----------------------------------------------------------------------

    /// Creates a run (`queued`) and all its task instances (`pending`) in
    /// one transaction. A run with the same run id or logical date in the
    /// DAG is [`StoreError::RunExists`], and nothing is written.
    pub async fn create_run(&self, new: &NewRun, now: DateTime<Utc>) -> Result<RunRow> {
        let new = new.clone();
        self.run("create_run", move |conn| {
            transaction(conn, |c| create_run_tx(c, &new, now))
        })
        .await
    }

    /// The run with surrogate id `run`.
    pub async fn get_run(&self, run: i64) -> Result<Option<RunRow>> {
        self.run("get_run", move |conn| {
            dag_runs::table
                .find(run)
                .select(DbRun::as_select())
                .first(conn)
                .optional()?
                .map(RunRow::try_from)
                .transpose()
        })
        .await
    }

    /// The run `run_id` of DAG `dag_id`.
    pub async fn find_run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>> {
        let (dag_id, run_id) = (dag_id.to_owned(), run_id.to_owned());
        self.run("find_run", move |conn| {
            dag_runs::table
                .filter(dag_runs::dag_id.eq(&dag_id))
                .filter(dag_runs::run_id.eq(&run_id))
                .select(DbRun::as_select())
                .first(conn)
                .optional()?
                .map(RunRow::try_from)
                .transpose()
        })
        .await
    }

    /// A page of a DAG's runs, latest logical date first.
    pub async fn list_runs(&self, dag_id: &str, limit: i64, offset: i64) -> Result<Vec<RunRow>> {
        let dag_id = dag_id.to_owned();
        self.run("list_runs", move |conn| {
            convert(
                dag_runs::table
                    .filter(dag_runs::dag_id.eq(&dag_id))
                    .order((dag_runs::execution_date.desc(), dag_runs::id.desc()))
                    .limit(limit)
                    .offset(offset)
                    .select(DbRun::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    /// Queued and running runs, of one DAG or of all, oldest logical date
    /// first.
    pub async fn active_runs(&self, dag_id: Option<&str>) -> Result<Vec<RunRow>> {
        let dag_id = dag_id.map(str::to_owned);
        self.run("active_runs", move |conn| {
            let mut q = dag_runs::table
                .filter(dag_runs::status.eq_any([QUEUED, RUNNING]))
                .order((dag_runs::execution_date.asc(), dag_runs::id.asc()))
                .select(DbRun::as_select())
                .into_boxed();
            if let Some(d) = dag_id {
                q = q.filter(dag_runs::dag_id.eq(d));
            }
            convert(q.load(conn)?)
        })
        .await
    }

    /// How many runs of a DAG are in each state (states with none are
    /// absent).
    pub async fn count_runs_by_state(&self, dag_id: &str) -> Result<HashMap<RunState, u64>> {
        let dag_id = dag_id.to_owned();
        self.run("count_runs_by_state", move |conn| {
            let rows: Vec<(String, i64)> = dag_runs::table
                .filter(dag_runs::dag_id.eq(&dag_id))
                .group_by(dag_runs::status)
                .select((dag_runs::status, count_star()))
                .load(conn)?;
            rows.into_iter()
                .map(|(s, n)| Ok((parse("dag_runs", "status", &s)?, n.unsigned_abs())))
                .collect()
        })
        .await
    }

    /// The run with the latest logical date, of any type or of `run_type`
    /// (the scheduler asks for [`RunType::Scheduled`] to find the next
    /// interval).
    pub async fn latest_run(
        &self,
        dag_id: &str,
        run_type: Option<RunType>,
    ) -> Result<Option<RunRow>> {
        let dag_id = dag_id.to_owned();
        self.run("latest_run", move |conn| {
            let mut q = dag_runs::table
                .filter(dag_runs::dag_id.eq(dag_id))
                .order((dag_runs::execution_date.desc(), dag_runs::id.desc()))
                .select(DbRun::as_select())
                .into_boxed();
            if let Some(t) = run_type {
                q = q.filter(dag_runs::run_type.eq(t.as_str()));
            }
            q.first(conn).optional()?.map(RunRow::try_from).transpose()
        })
        .await
    }

    /// Moves a run from `from` to `to` if it is still in `from`
    /// (compare-and-set); returns whether it moved. Sets `start_date` when
    /// it first runs, `end_date` when it finishes, and clears `end_date`
    /// when it is queued again. An illegal transition is an error.
    pub async fn set_run_state(
        &self,
        run: i64,
        from: RunState,
        to: RunState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        from.transition(to)?;
        self.run("set_run_state", move |conn| {
            transaction(conn, |c| apply_run_state(c, run, from, to, micros(now)))
        })
        .await
    }

    // -----------------------------------------------------------------------
    // Task instances
    // -----------------------------------------------------------------------

    /// The task instances of a run, in the order they were created.
    pub async fn task_instances(&self, run: i64) -> Result<Vec<TaskInstanceRow>> {
        self.run("task_instances", move |conn| {
            convert(
                ti::table
                    .filter(ti::dag_run_id.eq(run))
                    .order(ti::id)
                    .select(DbTaskInstance::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    /// One task instance.
    pub async fn task_instance(&self, run: i64, task_id: &str) -> Result<Option<TaskInstanceRow>> {
        let task_id = task_id.to_owned();
        self.run("task_instance", move |conn| {
            ti::table
                .filter(ti::dag_run_id.eq(run))
                .filter(ti::task_id.eq(&task_id))
                .select(DbTaskInstance::as_select())
                .first(conn)
                .optional()?
                .map(TaskInstanceRow::try_from)
                .transpose()
        })
        .await
    }

    /// Applies `update` to a task instance if it is still in `expected`
    /// (compare-and-set: of two schedulers, one wins); returns whether it
    /// applied. When a try ends (queued or running to success, failed,
    /// up_for_retry or skipped) its row in `task_tries` is written in the
    /// same transaction. An illegal transition is an error; a missing task
    /// instance is [`StoreError::TaskNotFound`].
    pub async fn update_task(
        &self,
        run: i64,
        task_id: &str,
        expected: TaskState,
        update: TaskUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let change = TaskChange::new(task_id, expected, update);
        self.update_tasks(run, vec![change], now).await
    }

    /// Applies several changes to a run's task instances in one
    /// transaction, all or nothing: if any task instance is no longer in
    /// its expected state, nothing changes and the result is `false`.
    pub async fn update_tasks(
        &self,
        run: i64,
        changes: Vec<TaskChange>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let applied = self
            .update_runs(vec![RunChange::tasks(run, changes)], now)
            .await?;
        Ok(applied.first().copied().unwrap_or(true))
    }

    /// Applies the changes of several runs in one transaction, each run's
    /// all or nothing (as [`Store::update_tasks`], with the run's own
    /// state and ownership): returns, per run, whether its changes applied.
    /// One commit for all: on PostgreSQL every commit waits for the disk,
    /// so a scheduler writes each wake-up's changes at once.
    pub async fn update_runs(
        &self,
        changes: Vec<RunChange>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        self.update_runs_with_logs(changes, Vec::new(), now).await
    }

    /// [`Store::update_runs`], appending `lines` to the log in the same
    /// transaction, whichever runs' changes applied: a scheduler writes
    /// what a batch of executor events changed and the lines they logged
    /// in one commit.
    pub async fn update_runs_with_logs(
        &self,
        changes: Vec<RunChange>,
        lines: Vec<NewLogLine>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        for change in &changes {
            for c in &change.tasks {
                if c.expected != c.update.state {
                    c.expected.transition(c.update.state)?;
                }
            }
            if let Some((from, to)) = change.state {
                from.transition(to)?;
            }
        }
        if changes.iter().all(RunChange::is_empty) && lines.is_empty() {
            return Ok(vec![true; changes.len()]);
        }
        self.run("update_runs", move |conn| {
            let now = micros(now);
            let mut changed = changes.iter().enumerate().filter(|(_, c)| !c.is_empty());
            if let (Some((one, change)), None) = (changed.next(), changed.next()) {
                // One run (the usual case): no savepoint. If its
                // compare-and-set is refused, everything is rolled back
                // and the lines are written alone.
                let done = transaction_if(conn, |c| {
                    if apply_run_change(c, change, now)?.is_none() {
                        return Ok(None);
                    }
                    insert_logs(c, &lines)?;
                    Ok(Some(()))
                })?;
                if done.is_none() && !lines.is_empty() {
                    transaction(conn, |c| insert_logs(c, &lines))?;
                }
                let mut applied = vec![true; changes.len()];
                applied[one] = done.is_some();
                return Ok(applied);
            }
            transaction(conn, |conn| {
                let mut applied = Vec::with_capacity(changes.len());
                for change in &changes {
                    if change.is_empty() {
                        applied.push(true);
                        continue;
                    }
                    // A savepoint per run: one run's refused compare-and-set
                    // undoes that run's changes, not the others'.
                    let done = savepoint_if(conn, |c| apply_run_change(c, change, now))?;
                    applied.push(done.is_some());
                }
                insert_logs(conn, &lines)?;
                Ok(applied)
            })
        })
        .await
    }

    /// Atomically moves up to `limit` `scheduled` task instances to
    /// `queued`, owned by `scheduler_id`, highest priority weight first
    /// (then oldest): each gets a new try number and is returned. Two
    /// claimers never get the same task instance: PostgreSQL locks the rows
    /// with `FOR UPDATE SKIP LOCKED`, SQLite takes the write lock up front.
    ///
    /// Pools are honoured: a pool with a row in `pools` never has more than
    /// `slots` task instances queued or running. On PostgreSQL the pool rows
    /// are locked while slots are counted, so concurrent claimers queue on
    /// them (as Airflow's schedulers do).
    pub async fn claim_tasks(
        &self,
        scheduler_id: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedTask>> {
        let scheduler_id = scheduler_id.to_owned();
        self.run("claim_tasks", move |conn| {
            transaction(conn, |c| {
                claim_tx(c, &scheduler_id, None, None, i64::from(limit), micros(now))
            })
        })
        .await
    }

    /// Like [`Store::claim_tasks`], restricted to the task instances of
    /// `runs` (e.g. the runs of one DAG that a scheduler owns, so that it
    /// can honour the DAG's `max_active_tasks`). Each claimed try is given
    /// the executor `executors` names for its task id, in the same
    /// transaction, so the executor running a try is a stored fact from
    /// the moment it is claimed (adoption after a crash reads it); a task
    /// id missing from `executors` keeps the stored one.
    pub async fn claim_tasks_in(
        &self,
        scheduler_id: &str,
        runs: &[i64],
        executors: &HashMap<String, ExecutorKind>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedTask>> {
        let scheduler_id = scheduler_id.to_owned();
        let runs = runs.to_vec();
        let executors = executors.clone();
        self.run("claim_tasks", move |conn| {
            transaction(conn, |c| {
                claim_tx(
                    c,
                    &scheduler_id,
                    Some(&runs),
                    Some(&executors),
                    i64::from(limit),
                    micros(now),
                )
            })
        })
        .await
    }

    /// Gives `scheduler_id` ownership of up to `limit` queued or running
    /// runs that no live scheduler owns: unowned runs, runs it owns
    /// already, and runs whose owner's heartbeat is older than
    /// `stale_before` (it died). Returns the runs it did not own before,
    /// oldest logical date first. Two claimers never get the same run:
    /// PostgreSQL locks the rows with `FOR UPDATE SKIP LOCKED`, SQLite
    /// takes the write lock up front.
    pub async fn claim_runs(
        &self,
        scheduler_id: &str,
        limit: u32,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RunRow>> {
        let me = scheduler_id.to_owned();
        self.run("claim_runs", move |conn| {
            transaction(conn, |c| {
                let alive: Vec<String> = schedulers::table
                    .filter(schedulers::heartbeat_date.ge(micros(stale_before)))
                    .filter(schedulers::id.ne(&me))
                    .select(schedulers::id)
                    .load(c)?;
                let q = dag_runs::table
                    .filter(dag_runs::status.eq_any([QUEUED, RUNNING]))
                    .filter(
                        dag_runs::claimed_by
                            .is_null()
                            .or(dag_runs::claimed_by.ne_all(alive)),
                    )
                    .filter(
                        dag_runs::claimed_by
                            .is_null()
                            .or(dag_runs::claimed_by.ne(&me)),
                    )
                    .order((dag_runs::execution_date.asc(), dag_runs::id.asc()))
                    .limit(i64::from(limit))
                    .select(dag_runs::id);
                let ids: Vec<i64> = match &mut *c {
                    #[cfg(feature = "postgres")]
                    AnyConnection::Postgres(pc) => q.for_update().skip_locked().load(pc)?,
                    #[cfg(feature = "sqlite")]
                    AnyConnection::Sqlite(sc) => q.load(sc)?,
                };
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                diesel::update(dag_runs::table.filter(dag_runs::id.eq_any(&ids)))
                    .set((
                        dag_runs::claimed_by.eq(&me),
                        dag_runs::last_updated_date.eq(micros(now)),
                    ))
                    .execute(c)?;
                convert(
                    dag_runs::table
                        .filter(dag_runs::id.eq_any(&ids))
                        .order((dag_runs::execution_date.asc(), dag_runs::id.asc()))
                        .select(DbRun::as_select())
                        .load(c)?,
                )
            })
        })
        .await
    }

    /// Gives up ownership of a run (when it finished, or on shutdown), if
    /// `scheduler_id` owns it.
    pub async fn release_run(&self, run: i64, scheduler_id: &str) -> Result<bool> {
        let me = scheduler_id.to_owned();
        self.run("release_run", move |conn| {
            let n = diesel::update(
                dag_runs::table
                    .find(run)
                    .filter(dag_runs::claimed_by.eq(&me)),
            )
            .set(dag_runs::claimed_by.eq(None::<String>))
            .execute(conn)?;
            Ok(n == 1)
        })
        .await
    }

    /// Adds pending task instances to run `run` for tasks its DAG gained
    /// after the run was created, so the run can go on under the DAG as it
    /// is now. Task ids the run has already are left as they are. Returns
    /// the ids added.
    pub async fn add_task_instances(
        &self,
        run: i64,
        tasks: Vec<NewTaskInstance>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.run("add_task_instances", move |conn| {
            transaction(conn, |c| {
                let dag_id: String = dag_runs::table
                    .find(run)
                    .select(dag_runs::dag_id)
                    .first(c)
                    .optional()?
                    .ok_or(StoreError::RunNotFound { run })?;
                let have: HashSet<String> = ti::table
                    .filter(ti::dag_run_id.eq(run))
                    .select(ti::task_id)
                    .load::<String>(c)?
                    .into_iter()
                    .collect();
                let missing: Vec<NewTaskInstance> = tasks
                    .into_iter()
                    .filter(|t| !have.contains(&t.task_id))
                    .collect();
                insert_task_instances(c, run, &dag_id, &missing, micros(now))?;
                Ok(missing.into_iter().map(|t| t.task_id).collect())
            })
        })
        .await
    }

    /// Hands a queued or running task instance over from `from` (its
    /// current owner; `None` for none) to `to`, e.g. when a scheduler adopts
    /// the work of one that died. Returns whether it applied.
    pub async fn adopt_task(
        &self,
        run: i64,
        task_id: &str,
        from: Option<&str>,
        to: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (task_id, from, to) = (task_id.to_owned(), from.map(str::to_owned), to.to_owned());
        self.run("adopt_task", move |conn| {
            // The owner is checked by the UPDATE itself: of two adopters, one wins.
            let target = ti::table
                .filter(ti::dag_run_id.eq(run))
                .filter(ti::task_id.eq(&task_id))
                .filter(ti::state.eq_any([QUEUED, RUNNING]));
            let set = (
                ti::claimed_by.eq(&to),
                ti::last_updated_date.eq(micros(now)),
            );
            let n = match &from {
                Some(owner) => diesel::update(target.filter(ti::claimed_by.eq(owner)))
                    .set(set)
                    .execute(conn)?,
                None => diesel::update(target.filter(ti::claimed_by.is_null()))
                    .set(set)
                    .execute(conn)?,
            };
            Ok(n == 1)
        })
        .await
    }

    /// Puts task instances back to `pending` for another round of tries,
    /// dropping their outputs, and puts a finished run back to `queued`;
    /// all in one transaction. Queued or running task instances cannot be
    /// cleared ([`StoreError::TasksActive`]), nor unknown ones
    /// ([`StoreError::TaskNotFound`]); then nothing changes. Returns how
    /// many were cleared.
    pub async fn clear_tasks(
        &self,
        run: i64,
        task_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let task_ids = task_ids.to_vec();
        self.run("clear_tasks", move |conn| {
            transaction(conn, |c| clear_tx(c, run, &task_ids, micros(now)))
        })
        .await
    }

    /// The finished tries of a run's task instances (of one task, or all),
    /// in the order they ended.
    pub async fn task_tries(&self, run: i64, task_id: Option<&str>) -> Result<Vec<TaskTryRow>> {
        let task_id = task_id.map(str::to_owned);
        self.run("task_tries", move |conn| {
            let mut q = task_tries::table
                .filter(task_tries::dag_run_id.eq(run))
                .order(task_tries::id)
                .select(DbTaskTry::as_select())
                .into_boxed();
            if let Some(t) = task_id {
                q = q.filter(task_tries::task_id.eq(t));
            }
            convert(q.load(conn)?)
        })
        .await
    }

    /// The latest `limit` finished tries of one task across runs, newest
    /// first: duration, CPU and memory over time.
    pub async fn task_try_history(
        &self,
        dag_id: &str,
        task_id: &str,
        limit: i64,
    ) -> Result<Vec<TaskTryRow>> {
        let (dag_id, task_id) = (dag_id.to_owned(), task_id.to_owned());
        self.run("task_try_history", move |conn| {
            convert(
                task_tries::table
                    .filter(task_tries::dag_id.eq(&dag_id))
                    .filter(task_tries::task_id.eq(&task_id))
                    .order(task_tries::id.desc())
                    .limit(limit)
                    .select(DbTaskTry::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    // -----------------------------------------------------------------------
    // Outputs and logs
    // -----------------------------------------------------------------------

    /// Stores (or replaces) a task instance's output.
    pub async fn put_output(
        &self,
        run: i64,
        task_id: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        let (task_id, value) = (task_id.to_owned(), value.to_string());
        self.run("put_output", move |conn| {
            transaction(conn, |c| write_output(c, run, &task_id, &value))
        })
        .await
    }

    /// A task instance's output, if it has one.
    pub async fn get_output(&self, run: i64, task_id: &str) -> Result<Option<serde_json::Value>> {
        let task_id = task_id.to_owned();
        self.run("get_output", move |conn| {
            let value: Option<String> = task_outputs::table
                .filter(task_outputs::dag_run_id.eq(run))
                .filter(task_outputs::task_id.eq(&task_id))
                .select(task_outputs::value)
                .first(conn)
                .optional()?;
            value
                .map(|v| {
                    serde_json::from_str(&v)
                        .map_err(|e| StoreError::corrupt("task_outputs", "value", v, e))
                })
                .transpose()
        })
        .await
    }

    /// Appends log lines, in order, in one transaction.
    pub async fn append_logs(&self, lines: Vec<NewLogLine>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.run("append_logs", move |conn| {
            transaction(conn, |c| insert_logs(c, &lines))
        })
        .await
    }

    /// Up to `limit` log lines of a task instance (of one try, or all)
    /// with an id above `after_id` (0 for the start), in order.
    pub async fn read_logs(
        &self,
        run: i64,
        task_id: &str,
        try_number: Option<u32>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        let task_id = task_id.to_owned();
        let try_number = try_number.map(|t| int("try number", t)).transpose()?;
        self.run("read_logs", move |conn| {
            let mut q = task_logs::table
                .filter(task_logs::dag_run_id.eq(run))
                .filter(task_logs::task_id.eq(task_id))
                .filter(task_logs::id.gt(after_id))
                .order(task_logs::id)
                .limit(limit)
                .select(DbLogLine::as_select())
                .into_boxed();
            if let Some(t) = try_number {
                q = q.filter(task_logs::try_number.eq(t));
            }
            convert(q.load(conn)?)
        })
        .await
    }

    /// How many lines of its output (`stdout` and `stderr`, not goflow's
    /// own `system` lines) try `try_number` of a task has in the log: where
    /// a scheduler adopting the try resumes copying its output.
    pub async fn count_output_lines(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
    ) -> Result<u64> {
        let task_id = task_id.to_owned();
        let try_number = int("try number", try_number)?;
        self.run("count_output_lines", move |conn| {
            let n: i64 = task_logs::table
                .filter(task_logs::dag_run_id.eq(run))
                .filter(task_logs::task_id.eq(task_id))
                .filter(task_logs::try_number.eq(try_number))
                .filter(
                    task_logs::stream
                        .eq_any([LogStream::Stdout.as_str(), LogStream::Stderr.as_str()]),
                )
                .count()
                .get_result(conn)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    // -----------------------------------------------------------------------
    // Schedulers and pools
    // -----------------------------------------------------------------------

    /// Records that scheduler `id` is alive at `now` (registering it on its
    /// first heartbeat).
    pub async fn heartbeat(
        &self,
        id: &str,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (id, hostname) = (id.to_owned(), hostname.to_owned());
        let pid = int("pid", pid)?;
        self.run("heartbeat", move |conn| {
            let now = micros(now);
            let row = DbScheduler {
                id,
                hostname,
                pid,
                started_date: now,
                heartbeat_date: now,
            };
            // A scheduler seen before keeps its `started_date`.
            per_backend!(&mut *conn, c => diesel::insert_into(schedulers::table)
                .values(&row)
                .on_conflict(schedulers::id)
                .do_update()
                .set((
                    schedulers::hostname.eq(excluded(schedulers::hostname)),
                    schedulers::pid.eq(excluded(schedulers::pid)),
                    schedulers::heartbeat_date.eq(excluded(schedulers::heartbeat_date)),
                ))
                .execute(c))?;
            Ok(())
        })
        .await
    }

    /// Removes a scheduler that shuts down cleanly; what it still owns is
    /// then orphaned at once.
    pub async fn remove_scheduler(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run("remove_scheduler", move |conn| {
            Ok(diesel::delete(schedulers::table.find(&id)).execute(conn)? == 1)
        })
        .await
    }

    /// Every registered scheduler, by id.
    pub async fn list_schedulers(&self) -> Result<Vec<SchedulerRow>> {
        self.run("list_schedulers", |conn| {
            convert(
                schedulers::table
                    .order(schedulers::id)
                    .select(DbScheduler::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    /// Queued or running task instances whose owner has not heartbeat
    /// since `stale_before` (or is unknown, or absent): the work of a
    /// scheduler that died, to adopt or fail on recovery.
    pub async fn orphaned_tasks(
        &self,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<TaskInstanceRow>> {
        self.run("orphaned_tasks", move |conn| {
            let alive: Vec<String> = schedulers::table
                .filter(schedulers::heartbeat_date.ge(micros(stale_before)))
                .select(schedulers::id)
                .load(conn)?;
            convert(
                ti::table
                    .filter(ti::state.eq_any([QUEUED, RUNNING]))
                    .filter(ti::claimed_by.is_null().or(ti::claimed_by.ne_all(alive)))
                    .order(ti::id)
                    .select(DbTaskInstance::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    /// Creates or resizes a pool.
    pub async fn set_pool(&self, name: &str, slots: u32, description: &str) -> Result<()> {
        let (name, description) = (name.to_owned(), description.to_owned());
        let slots = int("pool slots", slots)?;
        self.run("set_pool", move |conn| {
            let row = DbPool {
                name,
                slots,
                description,
            };
            per_backend!(&mut *conn, c => diesel::insert_into(pools::table)
                .values(&row)
                .on_conflict(pools::name)
                .do_update()
                .set((
                    pools::slots.eq(excluded(pools::slots)),
                    pools::description.eq(excluded(pools::description)),
                ))
                .execute(c))?;
            Ok(())
        })
        .await
    }

    /// Deletes a pool (its tasks then have no limit); returns whether it
    /// existed.
    pub async fn delete_pool(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.run("delete_pool", move |conn| {
            Ok(diesel::delete(pools::table.find(&name)).execute(conn)? == 1)
        })
        .await
    }

    /// Every pool, by name.
    pub async fn list_pools(&self) -> Result<Vec<PoolRow>> {
        self.run("list_pools", |conn| {
            convert(
                pools::table
                    .order(pools::name)
                    .select(DbPool::as_select())
                    .load(conn)?,
            )
        })
        .await
    }
}

/// The schema this build's migrations give a new SQLite database, as a
/// script that makes it again: what a new in-memory database is given
/// instead of running the migrations one by one (`dags test` opens one per
/// run, and the migrations' `ALTER TABLE`s each reload the whole schema).
#[cfg(feature = "sqlite")]
mod sqlite_schema {
    use std::sync::OnceLock;

    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::SqliteConnection;
    use diesel_migrations::MigrationHarness;

    use super::SQLITE_MIGRATIONS;
    use crate::{Result, StoreError};

    /// The schema, made once per process.
    struct Schema {
        /// The `CREATE` statements of the migrated database, in the order
        /// it made them, and the rows recording the migrations.
        script: String,
        /// The migrations' versions, oldest first.
        versions: Vec<String>,
    }

    #[derive(QueryableByName)]
    struct Object {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        sql: Option<String>,
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    /// Runs the migrations on a scratch in-memory database and reads back
    /// what they made. `None` if they left rows in a table: the script
    /// would miss them, so such a build migrates each database.
    fn read() -> Result<Option<Schema>> {
        let mut c =
            SqliteConnection::establish(":memory:").map_err(|source| StoreError::Connect {
                url: "sqlite::memory:".to_owned(),
                source,
            })?;
        let versions: Vec<String> = c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|source| StoreError::Migration { source })?
            .iter()
            .map(ToString::to_string)
            .collect();
        let objects: Vec<Object> =
            diesel::sql_query("SELECT type AS kind, name, sql FROM sqlite_master ORDER BY rowid")
                .load(&mut c)?;
        let mut script = String::new();
        for o in objects {
            // SQLite's own tables (`sqlite_sequence`) make themselves.
            let Some(sql) = o.sql.filter(|_| !o.name.starts_with("sqlite_")) else {
                continue;
            };
            if o.kind == "table" && o.name != "__diesel_schema_migrations" {
                let rows: Count = diesel::sql_query(format!(
                    "SELECT COUNT(*) AS n FROM \"{}\"",
                    o.name.replace('"', "\"\"")
                ))
                .get_result(&mut c)?;
                if rows.n > 0 {
                    return Ok(None);
                }
            }
            script.push_str(&sql);
            script.push_str(";\n");
        }
        for v in &versions {
            script.push_str(&format!(
                "INSERT INTO __diesel_schema_migrations (version) VALUES ('{}');\n",
                v.replace('\'', "''")
            ));
        }
        Ok(Some(Schema { script, versions }))
    }

    /// Gives `c`, a database with nothing in it, this build's schema;
    /// returns the migrations it counts as applied. `None` (and nothing
    /// done) if the database is not empty, or the schema cannot be
    /// copied: then it is migrated as any other.
    pub(super) fn copy_to(c: &mut SqliteConnection) -> Result<Option<Vec<String>>> {
        static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
        let schema = SCHEMA.get_or_init(|| {
            read().unwrap_or_else(|e| {
                tracing::debug!(error = %e, "could not read the migrated schema; migrating");
                None
            })
        });
        let Some(schema) = schema else {
            return Ok(None);
        };
        c.immediate_transaction(|c| {
            let objects: Count =
                diesel::sql_query("SELECT COUNT(*) AS n FROM sqlite_master").get_result(c)?;
            if objects.n > 0 {
                return Ok(None);
            }
            c.batch_execute(&schema.script)?;
            Ok(Some(schema.versions.clone()))
        })
    }
}

fn is_memory(target: &Target) -> bool {
    match target {
        #[cfg(feature = "sqlite")]
        Target::Sqlite { memory, .. } => *memory,
        #[cfg(feature = "postgres")]
        Target::Postgres { .. } => false,
    }
}

/// Inserts `rec`, or updates the DAG stored under its id, in one
/// statement (of schedulers syncing at once, each sees a consistent row).
fn upsert_dag(conn: &mut AnyConnection, rec: &DagRecord, now: DateTime<Utc>) -> Result<DagRow> {
    let now = micros(now);
    let row = DbDag {
        id: rec.id.clone(),
        name: rec.name.clone(),
        namespace: rec.namespace.clone(),
        version: 1,
        fingerprint: rec.fingerprint.clone(),
        file_path: rec.file_path.clone(),
        file_format: rec.file_format.clone(),
        created_date: now,
        last_updated_date: now,
        last_seen_date: now,
        is_paused: rec.is_paused_on_create,
        schedule: rec.schedule.clone(),
        timezone: rec.timezone.clone(),
        description: rec.description.clone(),
        tags: serde_json::Value::from(rec.tags.clone()).to_string(),
        max_active_runs: int("max_active_runs", rec.max_active_runs)?,
        max_active_tasks: int("max_active_tasks", rec.max_active_tasks)?,
    };
    // A DAG already stored keeps `created_date` and `is_paused` (not set
    // here); its version and `last_updated_date` move only when its
    // structure changed. `SET` expressions read the row as it was.
    let changed = || dags::fingerprint.ne(excluded(dags::fingerprint));
    let stored: DbDag = per_backend!(&mut *conn, c => diesel::insert_into(dags::table)
        .values(&row)
        .on_conflict(dags::id)
        .do_update()
        .set((
            dags::name.eq(excluded(dags::name)),
            dags::namespace.eq(excluded(dags::namespace)),
            dags::version.eq(case_when(changed(), dags::version + 1).otherwise(dags::version)),
            dags::fingerprint.eq(excluded(dags::fingerprint)),
            dags::file_path.eq(excluded(dags::file_path)),
            dags::file_format.eq(excluded(dags::file_format)),
            dags::last_updated_date.eq(
                case_when(changed(), excluded(dags::last_updated_date))
                    .otherwise(dags::last_updated_date),
            ),
            dags::last_seen_date.eq(excluded(dags::last_seen_date)),
            dags::schedule.eq(excluded(dags::schedule)),
            dags::timezone.eq(excluded(dags::timezone)),
            dags::description.eq(excluded(dags::description)),
            dags::tags.eq(excluded(dags::tags)),
            dags::max_active_runs.eq(excluded(dags::max_active_runs)),
            dags::max_active_tasks.eq(excluded(dags::max_active_tasks)),
        ))
        .returning(DbDag::as_returning())
        .get_result(c))?;
    stored.try_into()
}

fn create_run_tx(conn: &mut AnyConnection, new: &NewRun, now: DateTime<Utc>) -> Result<RunRow> {
    let exists = || StoreError::RunExists {
        dag_id: new.dag_id.clone(),
        run_id: new.run_id.clone(),
        execution_date: new.data_interval.start,
    };
    let now = micros(now);
    let logical = micros(new.data_interval.start);
    let clashes: i64 = dag_runs::table
        .filter(dag_runs::dag_id.eq(&new.dag_id))
        .filter(
            dag_runs::run_id
                .eq(&new.run_id)
                .or(dag_runs::execution_date.eq(logical)),
        )
        .count()
        .get_result(conn)?;
    if clashes > 0 {
        return Err(exists());
    }
    let values = DbNewRun {
        dag_id: &new.dag_id,
        run_id: &new.run_id,
        status: RunState::Queued.as_str(),
        run_type: new.run_type.as_str(),
        execution_date: logical,
        data_interval_start: logical,
        data_interval_end: micros(new.data_interval.end),
        conf: new.conf.to_string(),
        dag_version: new.dag_version,
        last_updated_date: now,
        created_date: now,
    };
    let inserted: QueryResult<DbRun> = per_backend!(&mut *conn, c => diesel::insert_into(dag_runs::table)
        .values(&values)
        .returning(DbRun::as_returning())
        .get_result(c));
    let run = inserted.map_err(|e| match e {
        // A concurrent creator won the race past the check above.
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => exists(),
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::DagNotFound {
                dag_id: new.dag_id.clone(),
            }
        }
        e => e.into(),
    })?;
    insert_task_instances(conn, run.id, &new.dag_id, &new.tasks, now)?;
    run.try_into()
}

/// Inserts `tasks` as pending task instances of run `run`.
fn insert_task_instances(
    conn: &mut AnyConnection,
    run: i64,
    dag_id: &str,
    tasks: &[NewTaskInstance],
    now: i64,
) -> Result<()> {
    let tasks = tasks
        .iter()
        .map(|t| {
            Ok(DbNewTaskInstance {
                dag_run_id: run,
                dag_id,
                task_id: &t.task_id,
                state: TaskState::Pending.as_str(),
                try_number: 0,
                tries_before_clear: 0,
                max_tries: int("max_tries", t.max_tries)?,
                priority_weight: t.priority_weight,
                pool: &t.pool,
                executor: t.executor.as_str(),
                last_updated_date: now,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for chunk in tasks.chunks(INSERT_CHUNK) {
        per_backend!(&mut *conn, c => diesel::insert_into(ti::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// Inserts log lines, in order.
fn insert_logs(conn: &mut AnyConnection, lines: &[NewLogLine]) -> Result<()> {
    let rows = lines
        .iter()
        .map(|l| {
            Ok(DbNewLogLine {
                dag_run_id: l.run,
                task_id: &l.task_id,
                try_number: int("try number", l.try_number)?,
                timestamp: micros(l.timestamp),
                stream: l.stream.as_str(),
                line: &l.line,
                level: LogLevel::of_line(&l.line).map(LogLevel::as_str),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            for chunk in rows.chunks(INSERT_CHUNK) {
                diesel::insert_into(task_logs::table)
                    .values(chunk)
                    .execute(c)?;
            }
        }
        // One row at a time, one statement kept prepared: in-process SQLite
        // inserts a row in microseconds, and a multi-row `INSERT` of each
        // length would be compiled afresh.
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => {
            for row in &rows {
                diesel::insert_into(task_logs::table)
                    .values(row)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// One run's changes; `None` (to roll back) if a compare-and-set fails.
fn apply_run_change(conn: &mut AnyConnection, change: &RunChange, now: i64) -> Result<Option<()>> {
    for c in &change.tasks {
        if !apply_task_change(conn, change.run, c, now)? {
            return Ok(None);
        }
    }
    if let Some((from, to)) = change.state {
        if !apply_run_state(conn, change.run, from, to, now)? {
            return Ok(None);
        }
    }
    if let Some(me) = &change.release_by {
        diesel::update(
            dag_runs::table
                .find(change.run)
                .filter(dag_runs::claimed_by.eq(me)),
        )
        .set(dag_runs::claimed_by.eq(None::<String>))
        .execute(conn)?;
    }
    Ok(Some(()))
}

/// The row of run `run`, or [`StoreError::RunNotFound`].
pub(crate) fn find_run(conn: &mut AnyConnection, run: i64) -> Result<DbRun> {
    // `get_result`, not `first`: SQLite compiles a statement with a bound
    // `LIMIT` again on every execution.
    dag_runs::table
        .find(run)
        .select(DbRun::as_select())
        .get_result(conn)
        .optional()?
        .ok_or(StoreError::RunNotFound { run })
}

/// Moves a run from `from` to `to`, setting its start and end dates;
/// `false` if it is no longer in `from`.
fn apply_run_state(
    conn: &mut AnyConnection,
    run: i64,
    from: RunState,
    to: RunState,
    now: i64,
) -> Result<bool> {
    let row: DbRun = find_run(conn, run)?;
    if row.status != from.as_str() {
        return Ok(false);
    }
    let start = match to {
        RunState::Running => row.start_date.or(Some(now)),
        _ => row.start_date,
    };
    let end = if to.is_terminal() { Some(now) } else { None };
    let n = diesel::update(
        dag_runs::table
            .find(run)
            .filter(dag_runs::status.eq(from.as_str())),
    )
    .set((
        dag_runs::status.eq(to.as_str()),
        dag_runs::start_date.eq(start),
        dag_runs::end_date.eq(end),
        dag_runs::last_updated_date.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Applies one compare-and-set change; `false` if the task instance is no
/// longer in the expected state.
///
/// One `UPDATE` of the row, compare-and-set on its state, returning the row
/// when it ends a try (for the try's history row); the task instance is
/// read only when the update did not apply, to tell a missing one from one
/// in another state.
fn apply_task_change(conn: &mut AnyConnection, run: i64, c: &TaskChange, now: i64) -> Result<bool> {
    use diesel::sql_types::{BigInt, Nullable};

    let u = &c.update;
    let moves = u.state != c.expected;
    let ends_try = c.expected.is_active()
        && matches!(
            u.state,
            TaskState::Success | TaskState::Failed | TaskState::UpForRetry | TaskState::Skipped
        );
    let start = u
        .start_date
        .map(micros)
        .or_else(|| (moves && u.state == TaskState::Running).then_some(now));
    let end = u
        .end_date
        .map(micros)
        .or_else(|| (moves && (ends_try || u.state.is_terminal())).then_some(now));
    let change = DbTaskChange {
        state: u.state.as_str(),
        try_number: u.try_number.map(|t| int("try number", t)).transpose()?,
        queued_date: u.queued_date.map(micros),
        start_date: start,
        end_date: end,
        next_retry_date: Some(if u.state == TaskState::UpForRetry {
            u.next_retry_date.map(micros)
        } else {
            None
        }),
        follow: u
            .follow
            .as_ref()
            .map(|f| Some(serde_json::Value::from(f.clone()).to_string())),
        last_error: u.error.clone(),
        measurements: u.measurements,
        executor_handle: u.executor_handle.clone(),
        heartbeat_date: u.heartbeat_date.map(micros),
        lost_tries: u.lost_tries.map(|n| int("lost tries", n)).transpose()?,
        // A stop asked for is carried out once the task is no longer active.
        stop_requested: (!u.state.is_active()).then_some(None),
        last_updated_date: now,
    };
    // The try's duration once it ends, from its start (this change's, else
    // the stored one; `SET` expressions read the row as it was); otherwise
    // the stored figure stays.
    let duration = ti::duration_ms.eq(coalesce(
        (end.into_sql::<Nullable<BigInt>>()
            - coalesce(start.into_sql::<Nullable<BigInt>>(), ti::start_date))
            / 1000_i64,
        ti::duration_ms,
    ));
    let update = diesel::update(
        ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq(&c.task_id))
            .filter(ti::state.eq(c.expected.as_str())),
    )
    .set((&change, duration));
    let applied = if ends_try {
        let ended: Option<DbTaskInstance> = per_backend!(&mut *conn, c => Cached(
            update.returning(DbTaskInstance::as_returning())
        )
        .get_result(c)
        .optional())?;
        match ended {
            Some(ended) => {
                per_backend!(&mut *conn, c => diesel::insert_into(task_tries::table)
                    .values(DbTaskTry::ended(ended))
                    .execute(c))?;
                true
            }
            None => false,
        }
    } else {
        let updated: Option<i64> = per_backend!(&mut *conn, c => Cached(
            update.returning(ti::id)
        )
        .get_result(c)
        .optional())?;
        updated.is_some()
    };
    if !applied {
        let exists: i64 = ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq(&c.task_id))
            .count()
            .get_result(conn)?;
        if exists == 0 {
            return Err(StoreError::TaskNotFound {
                run,
                task_id: c.task_id.clone(),
            });
        }
        return Ok(false);
    }
    if let Some(value) = &c.output {
        write_output(conn, run, &c.task_id, &value.to_string())?;
    }
    Ok(true)
}

fn write_output(conn: &mut AnyConnection, run: i64, task_id: &str, value: &str) -> Result<()> {
    let written = per_backend!(&mut *conn, c => Cached(diesel::insert_into(task_outputs::table)
        .values((
            task_outputs::dag_run_id.eq(run),
            task_outputs::task_id.eq(task_id),
            task_outputs::value.eq(value),
        ))
        .on_conflict((task_outputs::dag_run_id, task_outputs::task_id))
        .do_update()
        .set(task_outputs::value.eq(excluded(task_outputs::value)))
        .returning(task_outputs::dag_run_id))
        .get_result::<i64>(c));
    written.map_err(|e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::RunNotFound { run }
        }
        e => e.into(),
    })?;
    Ok(())
}

/// Claims up to `limit` scheduled task instances (of `runs`, or of any
/// run) for `scheduler_id`, within the pools' free slots, giving each the
/// executor `executors` names for its task id (the stored one otherwise).
fn claim_tx(
    conn: &mut AnyConnection,
    scheduler_id: &str,
    runs: Option<&[i64]>,
    executors: Option<&HashMap<String, ExecutorKind>>,
    limit: i64,
    now: i64,
) -> Result<Vec<ClaimedTask>> {
    // Slots left per limited pool. PostgreSQL: lock the pool rows (in name
    // order, so claimers never deadlock) until commit, so that two claimers
    // cannot both count the same free slot.
    let limits: Vec<(String, i32)> = {
        let q = pools::table
            .order(pools::name)
            .select((pools::name, pools::slots));
        match &mut *conn {
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => q.for_update().load(c)?,
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => q.load(c)?,
        }
    };
    let mut free: HashMap<String, i64> =
        limits.into_iter().map(|(p, s)| (p, i64::from(s))).collect();
    if !free.is_empty() {
        let used: Vec<(String, i64)> = ti::table
            .filter(ti::state.eq_any([QUEUED, RUNNING]))
            .filter(ti::pool.eq_any(free.keys().cloned().collect::<Vec<_>>()))
            .group_by(ti::pool)
            .select((ti::pool, count_star()))
            .load(conn)?;
        for (pool, n) in used {
            if let Some(f) = free.get_mut(&pool) {
                *f -= n;
            }
        }
    }

    let mut claimed: Vec<DbTaskInstance> = Vec::new();
    let mut run_ids: HashMap<i64, String> = HashMap::new();
    while (claimed.len() as i64) < limit {
        let full: Vec<String> = free
            .iter()
            .filter(|(_, f)| **f <= 0)
            .map(|(p, _)| p.clone())
            .collect();
        // SQLite's text of the query has one `?` per run and full pool.
        #[cfg(feature = "sqlite")]
        let cacheable = full.len() <= CACHED_LIST && runs.unwrap_or_default().len() <= CACHED_LIST;
        let wanted = limit - claimed.len() as i64;
        // One query shape for both cases, so it runs on either backend.
        let any_run = runs.is_none();
        // The run's own id, read with each candidate: a subquery, so that
        // PostgreSQL locks only the task instances' rows.
        let run_id = dag_runs::table
            .filter(dag_runs::id.eq(ti::dag_run_id))
            .select(dag_runs::run_id)
            .single_value();
        let q = ti::table
            .filter(ti::state.eq(TaskState::Scheduled.as_str()))
            .filter(ti::pool.ne_all(full))
            .filter(
                ti::dag_run_id
                    .eq_any(runs.unwrap_or_default().to_vec())
                    .or(any_run.into_sql::<diesel::sql_types::Bool>()),
            )
            .order((ti::priority_weight.desc(), ti::id.asc()))
            .select((
                ti::id,
                ti::pool,
                ti::task_id,
                ti::executor,
                ti::dag_run_id,
                run_id,
            ));
        let candidates: Vec<(i64, String, String, String, i64, Option<String>)> = match &mut *conn {
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => q.limit(wanted).for_update().skip_locked().load(c)?,
            // The first `wanted` rows, without a `LIMIT`: SQLite compiles
            // a statement with a bound `LIMIT` twice on every execution.
            // The claim index yields them in order; no more are read.
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => {
                use diesel::connection::DefaultLoadingMode as Rows;
                let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
                if cacheable {
                    Cached(q)
                        .load_iter::<_, Rows>(c)?
                        .take(wanted)
                        .collect::<QueryResult<_>>()?
                } else {
                    q.load_iter::<_, Rows>(c)?
                        .take(wanted)
                        .collect::<QueryResult<_>>()?
                }
            }
        };
        if candidates.is_empty() {
            break;
        }
        let found = candidates.len();
        // The accepted ones, by the executor each is to run on.
        let mut batches: HashMap<String, Vec<i64>> = HashMap::new();
        let mut accepted = 0;
        for (id, pool, task_id, stored, run, run_id) in candidates {
            match free.get_mut(&pool) {
                Some(f) if *f <= 0 => continue,
                Some(f) => *f -= 1,
                None => {}
            }
            accepted += 1;
            let executor = executors
                .and_then(|e| e.get(&task_id))
                .map_or(stored, |k| k.as_str().to_owned());
            batches.entry(executor).or_default().push(id);
            run_ids.insert(run, run_id.unwrap_or_default());
        }
        if accepted == 0 {
            break;
        }
        for (executor, ids) in batches {
            let claim = (
                ti::state.eq(QUEUED),
                ti::claimed_by.eq(scheduler_id),
                ti::try_number.eq(ti::try_number + 1),
                ti::queued_date.eq(now),
                ti::executor.eq(&executor),
                DbTryReset::default(),
                ti::last_updated_date.eq(now),
            );
            match &mut *conn {
                // `id = ANY($1)`: one statement, whatever the number.
                #[cfg(feature = "postgres")]
                AnyConnection::Postgres(c) => claimed.extend(
                    Cached(
                        diesel::update(ti::table.filter(ti::id.eq_any(&ids)))
                            .set(claim)
                            .returning(DbTaskInstance::as_returning()),
                    )
                    .load::<DbTaskInstance>(c)?,
                ),
                // One statement per row, kept prepared: SQLite runs it in
                // microseconds, where it would compile an `IN` list of
                // each length afresh.
                #[cfg(feature = "sqlite")]
                AnyConnection::Sqlite(c) => {
                    for id in ids {
                        claimed.push(
                            Cached(
                                diesel::update(ti::table.find(id))
                                    .set(claim.clone())
                                    .returning(DbTaskInstance::as_returning()),
                            )
                            .get_result(c)?,
                        );
                    }
                }
            }
        }
        // Fewer than asked for, and none passed over for a full pool:
        // there are no more to claim.
        if (found as i64) < wanted && accepted == found {
            break;
        }
    }
    claimed.sort_by_key(|r| (std::cmp::Reverse(r.priority_weight), r.id));
    claimed
        .into_iter()
        .map(|r| {
            let run_id = run_ids.get(&r.dag_run_id).cloned().unwrap_or_default();
            Ok(ClaimedTask {
                run_id,
                instance: r.try_into()?,
            })
        })
        .collect()
}

/// Checks that the run has every one of `task_ids` and that no executor
/// holds any of them (queued or running), before they are changed by hand.
/// Returns how many task instances that is.
pub(crate) fn check_idle(conn: &mut AnyConnection, run: i64, task_ids: &[String]) -> Result<usize> {
    let found = task_states(conn, run, task_ids)?;
    let active: Vec<String> = found
        .iter()
        .filter(|(_, state)| state.is_active())
        .map(|(task, _)| task.clone())
        .collect();
    if !active.is_empty() {
        return Err(StoreError::TasksActive { run, tasks: active });
    }
    Ok(found.len())
}

/// The states of `task_ids` in run `run`; [`StoreError::TaskNotFound`]
/// names the first the run does not have.
pub(crate) fn task_states(
    conn: &mut AnyConnection,
    run: i64,
    task_ids: &[String],
) -> Result<Vec<(String, TaskState)>> {
    let found: Vec<(String, String)> = ti::table
        .filter(ti::dag_run_id.eq(run))
        .filter(ti::task_id.eq_any(task_ids))
        .select((ti::task_id, ti::state))
        .load(conn)?;
    if let Some(missing) = task_ids
        .iter()
        .find(|t| !found.iter().any(|(f, _)| f == *t))
    {
        return Err(StoreError::TaskNotFound {
            run,
            task_id: missing.clone(),
        });
    }
    found
        .into_iter()
        .map(|(task, state)| Ok((task, parse("task_instances", "state", &state)?)))
        .collect()
}

fn clear_tx(conn: &mut AnyConnection, run: i64, task_ids: &[String], now: i64) -> Result<usize> {
    let run_row: DbRun = find_run(conn, run)?;
    let found = check_idle(conn, run, task_ids)?;
    // The state is checked again by the UPDATE: on PostgreSQL a claim may
    // have queued one of them since it was read.
    let n = diesel::update(
        ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq_any(task_ids))
            .filter(ti::state.ne_all([QUEUED, RUNNING])),
    )
    .set((
        ti::state.eq(TaskState::Pending.as_str()),
        ti::tries_before_clear.eq(ti::try_number),
        ti::lost_tries.eq(0),
        ti::queued_date.eq(None::<i64>),
        ti::claimed_by.eq(None::<String>),
        DbTryReset::default(),
        ti::last_updated_date.eq(now),
    ))
    .execute(conn)?;
    if n != found {
        let active: Vec<String> = ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq_any(task_ids))
            .filter(ti::state.eq_any([QUEUED, RUNNING]))
            .select(ti::task_id)
            .load(conn)?;
        return Err(StoreError::TasksActive { run, tasks: active });
    }
    diesel::delete(
        task_outputs::table
            .filter(task_outputs::dag_run_id.eq(run))
            .filter(task_outputs::task_id.eq_any(task_ids)),
    )
    .execute(conn)?;
    let run_state: RunState = parse("dag_runs", "status", &run_row.status)?;
    if n > 0 && run_state.is_terminal() {
        diesel::update(dag_runs::table.find(run))
            .set((
                dag_runs::status.eq(RunState::Queued.as_str()),
                dag_runs::end_date.eq(None::<i64>),
                dag_runs::last_updated_date.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(n)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[derive(QueryableByName, Clone, Debug, PartialEq)]
    struct Object {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        sql: Option<String>,
    }

    /// Every table, index and SQLite table of `store`'s database, and the
    /// migrations it records.
    async fn schema(store: &Store) -> (Vec<Object>, Vec<String>) {
        store
            .run("schema", |conn| {
                let objects = per_backend!(&mut *conn, c => diesel::sql_query(
                    "SELECT type AS kind, name, sql FROM sqlite_master ORDER BY type, name",
                )
                .load::<Object>(c))?;
                Ok((objects, applied_migrations(conn)?))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_in_memory_database_gets_the_schema_the_migrations_make() {
        let dir = tempfile::tempdir().unwrap();
        let file = Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("goflow.db").display()
        ))
        .await
        .unwrap();
        let known = known_migrations(Backend::Sqlite).unwrap();
        assert_eq!(file.migrate().await.unwrap(), known);
        let (migrated, versions) = schema(&file).await;
        assert_eq!(versions, known);
        assert!(migrated.iter().any(|o| o.name == "task_instances"));

        // Twice: the schema is read once per process, then copied.
        for _ in 0..2 {
            let memory = Store::connect("sqlite::memory:").await.unwrap();
            assert_eq!(memory.migrate().await.unwrap(), known);
            assert_eq!(schema(&memory).await, (migrated.clone(), known.clone()));
            assert_eq!(memory.migrate().await.unwrap(), Vec::<String>::new());
        }
    }
}
