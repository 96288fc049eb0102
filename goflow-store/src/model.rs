//! The rows the store reads and writes, as public types, and their
//! database forms.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use goflow_core::{Dag, DataInterval, ExecutorKind, RunState, RunType, TaskState, TaskStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::schema::{dag_runs, dags, pools, schedulers, task_instances, task_logs, task_tries};
use crate::{Result, StoreError};

// ---------------------------------------------------------------------------
// Conversions between database values and public types.
// ---------------------------------------------------------------------------

/// Microseconds since the Unix epoch: how every timestamp is stored.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(table: &'static str, column: &'static str, v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::corrupt(table, column, v, "timestamp out of range"))
}

fn opt_time(
    table: &'static str,
    column: &'static str,
    v: Option<i64>,
) -> Result<Option<DateTime<Utc>>> {
    v.map(|v| time(table, column, v)).transpose()
}

pub(crate) fn parse<T>(table: &'static str, column: &'static str, s: &str) -> Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse()
        .map_err(|e| StoreError::corrupt(table, column, s, e))
}

fn json<T: DeserializeOwned>(table: &'static str, column: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt(table, column, s, e))
}

fn unsigned(table: &'static str, column: &'static str, v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|e| StoreError::corrupt(table, column, v, e))
}

/// A `u32` as the database's `INTEGER`.
pub(crate) fn int(what: &'static str, v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::InvalidInput {
        what,
        value: v.to_string(),
        reason: "must be at most 2147483647",
    })
}

// ---------------------------------------------------------------------------
// DAGs
// ---------------------------------------------------------------------------

/// A DAG as the binary declares it, for [`Store::sync_dag`](crate::Store::sync_dag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagRecord {
    /// The DAG id.
    pub id: String,
    /// Display name (the id unless set otherwise).
    pub name: String,
    /// Kubernetes namespace of its Jobs.
    pub namespace: Option<String>,
    /// Structure fingerprint ([`Dag::fingerprint`]); a change bumps the version.
    pub fingerprint: String,
    /// The source file that declares it.
    pub file_path: String,
    /// `rust` (or `yaml` for declarative DAGs).
    pub file_format: String,
    /// The schedule as written (cron, interval, `@once`, `manual`).
    pub schedule: String,
    /// Time zone of the schedule.
    pub timezone: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Runs in flight at once.
    pub max_active_runs: u32,
    /// Task instances of the DAG running at once.
    pub max_active_tasks: u32,
    /// Whether a DAG seen for the first time starts paused. Never applied
    /// to a DAG already in the store: pausing is the operator's choice.
    pub is_paused_on_create: bool,
}

impl DagRecord {
    /// The record of `dag`, declared in Rust, not paused on creation.
    pub fn from_dag(dag: &Dag) -> Self {
        DagRecord {
            id: dag.id().to_string(),
            name: dag.id().to_string(),
            namespace: dag.namespace().map(str::to_owned),
            fingerprint: dag.fingerprint(),
            file_path: dag.source_file().to_owned(),
            file_format: "rust".to_owned(),
            schedule: dag.schedule().to_string(),
            timezone: dag.tz().name().to_owned(),
            description: dag.description().map(str::to_owned),
            tags: dag.tags().to_vec(),
            max_active_runs: dag.max_active_runs(),
            max_active_tasks: dag.max_active_tasks(),
            is_paused_on_create: false,
        }
    }
}

/// A DAG as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagRow {
    /// The DAG id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Starts at 1; bumped each time the structure fingerprint changes.
    pub version: i32,
    /// The structure fingerprint of this version.
    pub fingerprint: String,
    /// The source file.
    pub file_path: String,
    /// `rust` or `yaml`.
    pub file_format: String,
    /// When the DAG was first stored.
    pub created_date: DateTime<Utc>,
    /// When its version last changed.
    pub last_updated_date: DateTime<Utc>,
    /// When a binary last declared it.
    pub last_seen_date: DateTime<Utc>,
    /// Paused DAGs get no scheduled runs.
    pub is_paused: bool,
    /// The schedule as written.
    pub schedule: String,
    /// Time zone of the schedule.
    pub timezone: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Runs in flight at once.
    pub max_active_runs: u32,
    /// Task instances running at once.
    pub max_active_tasks: u32,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = dags)]
pub(crate) struct DbDag {
    pub id: String,
    pub name: String,
    pub namespace: Option<String>,
    pub version: i32,
    pub fingerprint: String,
    pub file_path: String,
    pub file_format: String,
    pub created_date: i64,
    pub last_updated_date: i64,
    pub last_seen_date: i64,
    pub is_paused: bool,
    pub schedule: String,
    pub timezone: String,
    pub description: Option<String>,
    pub tags: String,
    pub max_active_runs: i32,
    pub max_active_tasks: i32,
}

impl TryFrom<DbDag> for DagRow {
    type Error = StoreError;
    fn try_from(d: DbDag) -> Result<Self> {
        const T: &str = "dags";
        Ok(DagRow {
            created_date: time(T, "created_date", d.created_date)?,
            last_updated_date: time(T, "last_updated_date", d.last_updated_date)?,
            last_seen_date: time(T, "last_seen_date", d.last_seen_date)?,
            tags: json(T, "tags", &d.tags)?,
            max_active_runs: unsigned(T, "max_active_runs", d.max_active_runs)?,
            max_active_tasks: unsigned(T, "max_active_tasks", d.max_active_tasks)?,
            id: d.id,
            name: d.name,
            namespace: d.namespace,
            version: d.version,
            fingerprint: d.fingerprint,
            file_path: d.file_path,
            file_format: d.file_format,
            is_paused: d.is_paused,
            schedule: d.schedule,
            timezone: d.timezone,
            description: d.description,
        })
    }
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/// A task instance to create with its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTaskInstance {
    /// The task id.
    pub task_id: String,
    /// Tries allowed (retries + 1), per clearing.
    pub max_tries: u32,
    /// Higher is claimed first.
    pub priority_weight: i32,
    /// The pool whose slots it takes.
    pub pool: String,
    /// The executor that runs it.
    pub executor: ExecutorKind,
}

/// A run to create, for [`Store::create_run`](crate::Store::create_run). It
/// starts `queued`, its task instances `pending`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// The DAG (must be synced first).
    pub dag_id: String,
    /// The run id, unique in the DAG.
    pub run_id: String,
    /// How the run came to be.
    pub run_type: RunType,
    /// The data interval; its start is the logical date, unique in the DAG.
    pub data_interval: DataInterval,
    /// Run configuration (`{}` when none).
    pub conf: serde_json::Value,
    /// The DAG version the run runs with.
    pub dag_version: i32,
    /// Its task instances.
    pub tasks: Vec<NewTaskInstance>,
}

/// A DAG run as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Surrogate id: what the other calls take as `run`.
    pub id: i64,
    /// The DAG.
    pub dag_id: String,
    /// The run id, unique in the DAG.
    pub run_id: String,
    /// Its state (column `status`).
    pub state: RunState,
    /// How it came to be.
    pub run_type: RunType,
    /// Its data interval; `data_interval.start` is the logical date
    /// (`execution_date`).
    pub data_interval: DataInterval,
    /// Run configuration.
    pub conf: serde_json::Value,
    /// The DAG version it runs with.
    pub dag_version: i32,
    /// When it first started running.
    pub start_date: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_date: Option<DateTime<Utc>>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
    /// Creation.
    pub created_date: DateTime<Utc>,
    /// The scheduler that owns the run (see
    /// [`Store::claim_runs`](crate::Store::claim_runs)).
    pub claimed_by: Option<String>,
}

impl RunRow {
    /// The logical date: the start of the data interval.
    pub fn execution_date(&self) -> DateTime<Utc> {
        self.data_interval.start
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = dag_runs)]
pub(crate) struct DbRun {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub status: String,
    pub run_type: String,
    pub execution_date: i64,
    pub data_interval_start: i64,
    pub data_interval_end: i64,
    pub conf: String,
    pub dag_version: i32,
    pub start_date: Option<i64>,
    pub end_date: Option<i64>,
    pub last_updated_date: i64,
    pub created_date: i64,
    pub claimed_by: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = dag_runs)]
pub(crate) struct DbNewRun<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub status: &'static str,
    pub run_type: &'static str,
    pub execution_date: i64,
    pub data_interval_start: i64,
    pub data_interval_end: i64,
    pub conf: String,
    pub dag_version: i32,
    pub last_updated_date: i64,
    pub created_date: i64,
}

impl TryFrom<DbRun> for RunRow {
    type Error = StoreError;
    fn try_from(r: DbRun) -> Result<Self> {
        const T: &str = "dag_runs";
        let _ = r.execution_date; // equal to data_interval_start by construction
        Ok(RunRow {
            state: parse(T, "status", &r.status)?,
            run_type: parse(T, "run_type", &r.run_type)?,
            data_interval: DataInterval::new(
                time(T, "data_interval_start", r.data_interval_start)?,
                time(T, "data_interval_end", r.data_interval_end)?,
            ),
            conf: json(T, "conf", &r.conf)?,
            start_date: opt_time(T, "start_date", r.start_date)?,
            end_date: opt_time(T, "end_date", r.end_date)?,
            last_updated_date: time(T, "last_updated_date", r.last_updated_date)?,
            created_date: time(T, "created_date", r.created_date)?,
            id: r.id,
            dag_id: r.dag_id,
            run_id: r.run_id,
            dag_version: r.dag_version,
            claimed_by: r.claimed_by,
        })
    }
}

// ---------------------------------------------------------------------------
// Task instances
// ---------------------------------------------------------------------------

/// One task in one run, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInstanceRow {
    /// Surrogate id.
    pub id: i64,
    /// The run's surrogate id.
    pub run: i64,
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Tries started so far, ever (clearing does not reset it); the number
    /// of the current or last try.
    pub try_number: u32,
    /// `try_number` when the task instance was last cleared.
    pub tries_before_clear: u32,
    /// Tries allowed per clearing (retries + 1).
    pub max_tries: u32,
    /// For a successful branch task, the downstreams it chose.
    pub follow: Option<Vec<String>>,
    /// Higher is claimed first.
    pub priority_weight: i32,
    /// Its pool.
    pub pool: String,
    /// Its executor.
    pub executor: ExecutorKind,
    /// The executor's handle on the current try (a Job name, a pid).
    pub executor_handle: Option<String>,
    /// When the current try was queued.
    pub queued_date: Option<DateTime<Utc>>,
    /// When the current try started.
    pub start_date: Option<DateTime<Utc>>,
    /// When the current try ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Duration of the current try.
    pub duration_ms: Option<i64>,
    /// When an `up_for_retry` task is due again.
    pub next_retry_date: Option<DateTime<Utc>>,
    /// What the current try measured and reserved (empty until it ends).
    #[serde(flatten)]
    pub measurements: TryMeasurements,
    /// The error of the current try.
    pub last_error: Option<String>,
    /// The scheduler that claimed it.
    pub claimed_by: Option<String>,
    /// Last sign of life of the current try.
    pub heartbeat_date: Option<DateTime<Utc>>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
    /// Tries since the last clearing that were lost with the process
    /// running them; they do not count against `retries`.
    pub lost_tries: u32,
    /// A stop of the active try was asked for.
    pub stop_requested: Option<StopRequest>,
}

/// What one try measured about itself and what its pod reserved, kept in
/// the same columns of `task_instances` (the current try) and `task_tries`
/// (each finished one). A figure is `None` when it was not measured or
/// nothing was reserved.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Queryable,
    Selectable,
    AsChangeset,
)]
#[diesel(table_name = task_instances, treat_none_as_null = true)]
pub struct TryMeasurements {
    /// Exit code of the try's process.
    pub exit_code: Option<i32>,
    /// Peak memory, in bytes.
    pub peak_memory_bytes: Option<i64>,
    /// User CPU time, in milliseconds.
    pub cpu_user_ms: Option<i64>,
    /// System CPU time, in milliseconds.
    pub cpu_system_ms: Option<i64>,
    /// CPU the try's pod requested, in millicores (Kubernetes only).
    pub cpu_request_millis: Option<i64>,
    /// Memory the try's pod requested, in bytes (Kubernetes only).
    pub memory_request_bytes: Option<i64>,
    /// The try's pod's CPU limit, in millicores (Kubernetes only).
    pub cpu_limit_millis: Option<i64>,
    /// The try's pod's memory limit, in bytes (Kubernetes only).
    pub memory_limit_bytes: Option<i64>,
}

// diesel derives `Selectable` and `AsChangeset` for a single table, so the
// derives above are `task_instances`'; the `task_tries` side of
// `TryMeasurements` (what `DbTaskTry` selects and inserts) is written here.

/// The measurement columns of `task_tries`, in the fields' order.
type TriedColumns = (
    task_tries::exit_code,
    task_tries::peak_memory_bytes,
    task_tries::cpu_user_ms,
    task_tries::cpu_system_ms,
    task_tries::cpu_request_millis,
    task_tries::memory_request_bytes,
    task_tries::cpu_limit_millis,
    task_tries::memory_limit_bytes,
);

type TriedValues = (
    diesel::dsl::Eq<task_tries::exit_code, Option<i32>>,
    diesel::dsl::Eq<task_tries::peak_memory_bytes, Option<i64>>,
    diesel::dsl::Eq<task_tries::cpu_user_ms, Option<i64>>,
    diesel::dsl::Eq<task_tries::cpu_system_ms, Option<i64>>,
    diesel::dsl::Eq<task_tries::cpu_request_millis, Option<i64>>,
    diesel::dsl::Eq<task_tries::memory_request_bytes, Option<i64>>,
    diesel::dsl::Eq<task_tries::cpu_limit_millis, Option<i64>>,
    diesel::dsl::Eq<task_tries::memory_limit_bytes, Option<i64>>,
);

impl Insertable<task_tries::table> for TryMeasurements {
    type Values = <TriedValues as Insertable<task_tries::table>>::Values;

    fn values(self) -> Self::Values {
        use task_tries as t;
        (
            t::exit_code.eq(self.exit_code),
            t::peak_memory_bytes.eq(self.peak_memory_bytes),
            t::cpu_user_ms.eq(self.cpu_user_ms),
            t::cpu_system_ms.eq(self.cpu_system_ms),
            t::cpu_request_millis.eq(self.cpu_request_millis),
            t::memory_request_bytes.eq(self.memory_request_bytes),
            t::cpu_limit_millis.eq(self.cpu_limit_millis),
            t::memory_limit_bytes.eq(self.memory_limit_bytes),
        )
            .values()
    }
}

impl Insertable<task_tries::table> for &TryMeasurements {
    type Values = <TryMeasurements as Insertable<task_tries::table>>::Values;

    fn values(self) -> Self::Values {
        (*self).values()
    }
}

/// A request to stop a task instance's active try, kept in the store until
/// the run's owner has stopped it (see
/// [`Store::request_stop`](crate::Store::request_stop)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// The state the task instance ends in once its try stopped: `failed`,
    /// `success`, `pending` (cleared, to run again) or `skipped`.
    pub to: TaskState,
    /// Who asked, and why; it becomes the try's error.
    pub reason: String,
    /// Whether the whole run is being stopped (it then ends `failed`).
    #[serde(default)]
    pub run: bool,
}

impl TaskInstanceRow {
    /// Tries started since the last clearing: what the retry policy counts.
    pub fn tries(&self) -> u32 {
        self.try_number.saturating_sub(self.tries_before_clear)
    }

    /// Where it stands, for [`goflow_core::RunProgress::from_statuses`].
    pub fn status(&self) -> TaskStatus {
        TaskStatus {
            state: self.state,
            tries: self.tries(),
            lost: self.lost_tries,
            follow: self.follow.clone(),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = task_instances)]
pub(crate) struct DbTaskInstance {
    pub id: i64,
    pub dag_run_id: i64,
    pub dag_id: String,
    pub task_id: String,
    pub state: String,
    pub try_number: i32,
    pub tries_before_clear: i32,
    pub max_tries: i32,
    pub follow: Option<String>,
    pub priority_weight: i32,
    pub pool: String,
    pub executor: String,
    pub executor_handle: Option<String>,
    pub queued_date: Option<i64>,
    pub start_date: Option<i64>,
    pub end_date: Option<i64>,
    pub duration_ms: Option<i64>,
    pub next_retry_date: Option<i64>,
    #[diesel(embed)]
    pub measurements: TryMeasurements,
    pub last_error: Option<String>,
    pub claimed_by: Option<String>,
    pub heartbeat_date: Option<i64>,
    pub last_updated_date: i64,
    pub lost_tries: i32,
    pub stop_requested: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = task_instances)]
pub(crate) struct DbNewTaskInstance<'a> {
    pub dag_run_id: i64,
    pub dag_id: &'a str,
    pub task_id: &'a str,
    pub state: &'static str,
    pub try_number: i32,
    pub tries_before_clear: i32,
    pub max_tries: i32,
    pub priority_weight: i32,
    pub pool: &'a str,
    pub executor: &'static str,
    pub last_updated_date: i64,
}

impl TryFrom<DbTaskInstance> for TaskInstanceRow {
    type Error = StoreError;
    fn try_from(t: DbTaskInstance) -> Result<Self> {
        const T: &str = "task_instances";
        Ok(TaskInstanceRow {
            state: parse(T, "state", &t.state)?,
            try_number: unsigned(T, "try_number", t.try_number)?,
            tries_before_clear: unsigned(T, "tries_before_clear", t.tries_before_clear)?,
            max_tries: unsigned(T, "max_tries", t.max_tries)?,
            follow: t
                .follow
                .as_deref()
                .map(|f| json(T, "follow", f))
                .transpose()?,
            executor: parse(T, "executor", &t.executor)?,
            queued_date: opt_time(T, "queued_date", t.queued_date)?,
            start_date: opt_time(T, "start_date", t.start_date)?,
            end_date: opt_time(T, "end_date", t.end_date)?,
            next_retry_date: opt_time(T, "next_retry_date", t.next_retry_date)?,
            heartbeat_date: opt_time(T, "heartbeat_date", t.heartbeat_date)?,
            last_updated_date: time(T, "last_updated_date", t.last_updated_date)?,
            lost_tries: unsigned(T, "lost_tries", t.lost_tries)?,
            stop_requested: t
                .stop_requested
                .as_deref()
                .map(|s| json(T, "stop_requested", s))
                .transpose()?,
            id: t.id,
            run: t.dag_run_id,
            dag_id: t.dag_id,
            task_id: t.task_id,
            priority_weight: t.priority_weight,
            pool: t.pool,
            executor_handle: t.executor_handle,
            duration_ms: t.duration_ms,
            measurements: t.measurements,
            last_error: t.last_error,
            claimed_by: t.claimed_by,
        })
    }
}

/// A change to one task instance, for
/// [`Store::update_task`](crate::Store::update_task). `None` leaves a
/// column as it is. Build it as
/// `TaskUpdate { start_date: Some(now), ..TaskUpdate::new(TaskState::Running) }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskUpdate {
    /// The new state (may equal the current one, to record metrics or a
    /// heartbeat).
    pub state: TaskState,
    /// Overrides the try number (normally set by
    /// [`Store::claim_tasks`](crate::Store::claim_tasks)).
    pub try_number: Option<u32>,
    /// When the try was queued.
    pub queued_date: Option<DateTime<Utc>>,
    /// When the try started.
    pub start_date: Option<DateTime<Utc>>,
    /// When the try ended; when a try ends without one, `now` is used.
    pub end_date: Option<DateTime<Utc>>,
    /// When an `up_for_retry` task is due again (cleared in other states).
    pub next_retry_date: Option<DateTime<Utc>>,
    /// A branch task's choice of downstreams.
    pub follow: Option<Vec<String>>,
    /// The try's error.
    pub error: Option<String>,
    /// What the try measured and reserved, recorded as a whole: a figure
    /// left `None` in it is stored as unknown.
    pub measurements: Option<TryMeasurements>,
    /// The executor's handle (a Job name, a pid).
    pub executor_handle: Option<String>,
    /// A sign of life.
    pub heartbeat_date: Option<DateTime<Utc>>,
    /// Tries lost since the last clearing, when a lost try ends.
    pub lost_tries: Option<u32>,
}

impl TaskUpdate {
    /// A move to `state` that changes nothing else.
    pub fn new(state: TaskState) -> Self {
        TaskUpdate {
            state,
            try_number: None,
            queued_date: None,
            start_date: None,
            end_date: None,
            next_retry_date: None,
            follow: None,
            error: None,
            measurements: None,
            executor_handle: None,
            heartbeat_date: None,
            lost_tries: None,
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = task_instances)]
pub(crate) struct DbTaskChange {
    pub state: &'static str,
    pub try_number: Option<i32>,
    pub queued_date: Option<i64>,
    pub start_date: Option<i64>,
    pub end_date: Option<i64>,
    pub next_retry_date: Option<Option<i64>>,
    pub follow: Option<Option<String>>,
    pub last_error: Option<String>,
    #[diesel(embed)]
    pub measurements: Option<TryMeasurements>,
    pub executor_handle: Option<String>,
    pub heartbeat_date: Option<i64>,
    pub lost_tries: Option<i32>,
    pub stop_requested: Option<Option<String>>,
    pub last_updated_date: i64,
}

/// Empties the columns that describe one try, when a new try is claimed or
/// the task is cleared, so nothing of the last try is shown as the next
/// one's.
#[derive(AsChangeset, Clone, Default)]
#[diesel(table_name = task_instances, treat_none_as_null = true)]
pub(crate) struct DbTryReset {
    pub start_date: Option<i64>,
    pub end_date: Option<i64>,
    pub duration_ms: Option<i64>,
    pub next_retry_date: Option<i64>,
    #[diesel(embed)]
    pub measurements: TryMeasurements,
    pub last_error: Option<String>,
    pub executor_handle: Option<String>,
    pub follow: Option<String>,
    pub heartbeat_date: Option<i64>,
    pub stop_requested: Option<String>,
}

/// A task instance handed to a scheduler by
/// [`Store::claim_tasks`](crate::Store::claim_tasks): now `queued`, its try
/// number incremented, owned by the claimer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedTask {
    /// The run's run id (the instance carries the surrogate id).
    pub run_id: String,
    /// The task instance as it is now.
    pub instance: TaskInstanceRow,
}

// ---------------------------------------------------------------------------
// Tries, outputs, logs, schedulers, pools
// ---------------------------------------------------------------------------

/// One finished try of a task instance: history for Gantt charts and
/// metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTryRow {
    /// The run's surrogate id.
    pub run: i64,
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// The try's number.
    pub try_number: u32,
    /// How it ended: success, failed, up_for_retry or skipped.
    pub state: TaskState,
    /// When it was queued.
    pub queued_date: Option<DateTime<Utc>>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// How long it ran.
    pub duration_ms: Option<i64>,
    /// What it measured and reserved.
    #[serde(flatten)]
    pub measurements: TryMeasurements,
    /// The executor's handle.
    pub executor_handle: Option<String>,
    /// Its error.
    pub error: Option<String>,
    /// The executor that ran it (`None` for tries recorded before goflow
    /// stored it).
    pub executor: Option<ExecutorKind>,
}

/// A finished try. Inserted with `None` bound as `NULL` (the columns'
/// default anyway), so every row is the same statement, prepared once.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = task_tries, treat_none_as_default_value = false)]
pub(crate) struct DbTaskTry {
    pub dag_run_id: i64,
    pub dag_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub state: String,
    pub queued_date: Option<i64>,
    pub start_date: Option<i64>,
    pub end_date: Option<i64>,
    pub duration_ms: Option<i64>,
    #[diesel(
        embed,
        select_expression = TriedColumns::default(),
        select_expression_type = TriedColumns
    )]
    pub measurements: TryMeasurements,
    pub executor_handle: Option<String>,
    pub error: Option<String>,
    pub executor: Option<String>,
}

impl DbTaskTry {
    /// The try that `t` (just updated to its outcome) ended.
    pub(crate) fn ended(t: DbTaskInstance) -> Self {
        DbTaskTry {
            dag_run_id: t.dag_run_id,
            dag_id: t.dag_id,
            task_id: t.task_id,
            try_number: t.try_number,
            state: t.state,
            queued_date: t.queued_date,
            start_date: t.start_date,
            end_date: t.end_date,
            duration_ms: t.duration_ms,
            measurements: t.measurements,
            executor_handle: t.executor_handle,
            error: t.last_error,
            executor: Some(t.executor),
        }
    }
}

impl TryFrom<DbTaskTry> for TaskTryRow {
    type Error = StoreError;
    fn try_from(t: DbTaskTry) -> Result<Self> {
        const T: &str = "task_tries";
        Ok(TaskTryRow {
            try_number: unsigned(T, "try_number", t.try_number)?,
            state: parse(T, "state", &t.state)?,
            queued_date: opt_time(T, "queued_date", t.queued_date)?,
            start_date: opt_time(T, "start_date", t.start_date)?,
            end_date: opt_time(T, "end_date", t.end_date)?,
            run: t.dag_run_id,
            dag_id: t.dag_id,
            task_id: t.task_id,
            duration_ms: t.duration_ms,
            measurements: t.measurements,
            executor: t
                .executor
                .as_deref()
                .map(|e| parse(T, "executor", e))
                .transpose()?,
            executor_handle: t.executor_handle,
            error: t.error,
        })
    }
}

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The task's standard output.
    Stdout,
    /// The task's standard error.
    Stderr,
    /// goflow's own lines about the try (queued, started, retried...).
    System,
}

impl LogStream {
    /// The stream's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log stream name that is not `stdout`, `stderr` or `system`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown log stream '{0}', expected stdout, stderr or system")]
pub struct UnknownLogStream(pub String);

impl FromStr for LogStream {
    type Err = UnknownLogStream;
    fn from_str(s: &str) -> Result<Self, UnknownLogStream> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            "system" => Ok(LogStream::System),
            _ => Err(UnknownLogStream(s.to_owned())),
        }
    }
}

/// A log line to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogLine {
    /// The run's surrogate id.
    pub run: i64,
    /// The task.
    pub task_id: String,
    /// The try that wrote it.
    pub try_number: u32,
    /// When it was written.
    pub timestamp: DateTime<Utc>,
    /// Its stream.
    pub stream: LogStream,
    /// The line, without its newline.
    pub line: String,
}

/// A stored log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Increasing id: pass the last one seen as `after_id` to follow a log.
    pub id: i64,
    /// The run's surrogate id.
    pub run: i64,
    /// The task.
    pub task_id: String,
    /// The try that wrote it.
    pub try_number: u32,
    /// When it was written.
    pub timestamp: DateTime<Utc>,
    /// Its stream.
    pub stream: LogStream,
    /// The line.
    pub line: String,
    /// Its level, for a `tracing` event of the task or a line of goflow's
    /// own (see [`LogLevel::of_line`]); `None` for plain output.
    pub level: Option<LogLevel>,
}

/// The level of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// `TRACE`
    Trace,
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `WARN`
    Warn,
    /// `ERROR`
    Error,
}

impl LogLevel {
    /// The level's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }

    /// The level a line starts with, as `tracing` writes its events (and
    /// goflow its own lines): `INFO target: message`, with the level
    /// padded (` INFO`), after a timestamp or not
    /// (`2026-05-02T06:00:01.5Z  WARN target: message`). `None` for other
    /// lines.
    pub fn of_line(line: &str) -> Option<LogLevel> {
        let mut words = line.split_whitespace();
        let first = words.next()?;
        if let Ok(level) = first.parse() {
            return Some(level);
        }
        let timestamp = first.starts_with(|c: char| c.is_ascii_digit())
            && first.contains('T')
            && first.contains(':');
        if !timestamp {
            return None;
        }
        words.next()?.parse().ok()
    }
}

impl std::str::FromStr for LogLevel {
    type Err = UnknownLogLevel;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownLogLevel> {
        Ok(match s {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARN" => LogLevel::Warn,
            "ERROR" => LogLevel::Error,
            other => return Err(UnknownLogLevel(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod log_level_tests {
    use super::LogLevel;

    #[test]
    fn the_level_is_read_where_tracing_writes_it() {
        for (line, level) in [
            ("INFO extract: read 3 rows", Some(LogLevel::Info)),
            (" WARN extract: slow", Some(LogLevel::Warn)),
            (
                "2026-05-02T06:00:01.500000Z ERROR goflow: boom",
                Some(LogLevel::Error),
            ),
            ("2026-05-02T06:00:01Z  DEBUG x: y", Some(LogLevel::Debug)),
            ("ERROR: disk full", None),
            ("information", None),
            ("2026-05-02 the day", None),
            ("", None),
        ] {
            assert_eq!(LogLevel::of_line(line), level, "{line:?}");
        }
    }
}

/// A name that is not a [`LogLevel`].
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a log level (TRACE, DEBUG, INFO, WARN or ERROR)")]
pub struct UnknownLogLevel(pub String);

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = task_logs)]
pub(crate) struct DbLogLine {
    pub id: i64,
    pub dag_run_id: i64,
    pub task_id: String,
    pub try_number: i32,
    pub timestamp: i64,
    pub stream: String,
    pub line: String,
    pub level: Option<String>,
}

/// A log line to insert. `None` is bound as `NULL` (the column's default
/// anyway), so every row is the same statement, prepared once.
#[derive(Insertable)]
#[diesel(table_name = task_logs, treat_none_as_default_value = false)]
pub(crate) struct DbNewLogLine<'a> {
    pub dag_run_id: i64,
    pub task_id: &'a str,
    pub try_number: i32,
    pub timestamp: i64,
    pub stream: &'static str,
    pub line: &'a str,
    pub level: Option<&'static str>,
}

impl TryFrom<DbLogLine> for LogLine {
    type Error = StoreError;
    fn try_from(l: DbLogLine) -> Result<Self> {
        const T: &str = "task_logs";
        Ok(LogLine {
            try_number: unsigned(T, "try_number", l.try_number)?,
            timestamp: time(T, "timestamp", l.timestamp)?,
            stream: parse(T, "stream", &l.stream)?,
            id: l.id,
            run: l.dag_run_id,
            task_id: l.task_id,
            line: l.line,
            level: l
                .level
                .as_deref()
                .map(|v| parse(T, "level", v))
                .transpose()?,
        })
    }
}

/// A scheduler replica and its last heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerRow {
    /// Its id (unique per process).
    pub id: String,
    /// Host it runs on.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// First heartbeat.
    pub started_date: DateTime<Utc>,
    /// Last heartbeat.
    pub heartbeat_date: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = schedulers)]
pub(crate) struct DbScheduler {
    pub id: String,
    pub hostname: String,
    pub pid: i32,
    pub started_date: i64,
    pub heartbeat_date: i64,
}

impl TryFrom<DbScheduler> for SchedulerRow {
    type Error = StoreError;
    fn try_from(s: DbScheduler) -> Result<Self> {
        const T: &str = "schedulers";
        Ok(SchedulerRow {
            pid: unsigned(T, "pid", s.pid)?,
            started_date: time(T, "started_date", s.started_date)?,
            heartbeat_date: time(T, "heartbeat_date", s.heartbeat_date)?,
            id: s.id,
            hostname: s.hostname,
        })
    }
}

/// A pool: at most `slots` of its task instances are queued or running at
/// once. A pool with no row has no limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRow {
    /// Its name.
    pub name: String,
    /// Its slots.
    pub slots: u32,
    /// Description.
    pub description: String,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = pools)]
pub(crate) struct DbPool {
    pub name: String,
    pub slots: i32,
    pub description: String,
}

impl TryFrom<DbPool> for PoolRow {
    type Error = StoreError;
    fn try_from(p: DbPool) -> Result<Self> {
        Ok(PoolRow {
            slots: unsigned("pools", "slots", p.slots)?,
            name: p.name,
            description: p.description,
        })
    }
}

/// Converts every row, stopping at the first invalid one.
pub(crate) fn convert<D, R>(rows: Vec<D>) -> Result<Vec<R>>
where
    R: TryFrom<D, Error = StoreError>,
{
    rows.into_iter().map(R::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dag_record_describes_the_dag() {
        let dag = goflow_core::DagBuilder::new("daily-sales")
            .namespace("analytics")
            .tags(["sales"])
            .build()
            .unwrap();
        let rec = DagRecord::from_dag(&dag);
        assert_eq!(rec.id, "daily-sales");
        assert_eq!(rec.fingerprint, dag.fingerprint());
        assert_eq!(rec.file_format, "rust");
        assert_eq!(rec.namespace.as_deref(), Some("analytics"));
        assert_eq!(rec.tags, ["sales"]);
        assert!(!rec.is_paused_on_create);
    }

    #[test]
    fn stored_names_are_checked() {
        let err = parse::<TaskState>("task_instances", "state", "done")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid value 'done' in task_instances.state"),
            "{err}"
        );
        assert!("stdout".parse::<LogStream>().is_ok());
        assert!("console".parse::<LogStream>().is_err());
        assert!(time("t", "c", i64::MAX).is_err());
        assert!(int("slots", u32::MAX).is_err());
    }

    #[test]
    fn errors_and_stores_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<StoreError>();
        send_sync::<crate::Store>();
    }
}
