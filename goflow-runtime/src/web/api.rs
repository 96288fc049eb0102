//! The REST API under `/api/v1`: everything the UI does, as JSON, with an
//! OpenAPI document at `/api/v1/openapi.json`. Errors are
//! `{"error": message}` with the status from [`WebError::status`].

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use goflow_core::{EdgeKind, RunState, RunType, TaskState};
use goflow_store::{DagQuery, LogStream, RunRow, TaskInstanceRow, TaskTryRow};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::service::{self, ClearSpec, MAX_PAGE};
use super::{WebError, WebState};

/// Log lines per response at most.
const MAX_LOG_LINES: i64 = 5000;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/dags", get(list_dags))
        .route("/dags/{dag_id}", get(get_dag).patch(patch_dag))
        .route("/dags/{dag_id}/grid", get(grid))
        .route("/dags/{dag_id}/runs", get(list_runs).post(trigger_run))
        .route("/dags/{dag_id}/runs/{run_id}", get(get_run))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(clear_run))
        .route("/dags/{dag_id}/runs/{run_id}/stop", post(stop_run))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(get_task_instance),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(clear_task),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/state",
            post(mark_task),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
            get(task_logs),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream",
            get(task_log_stream),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/raw",
            get(task_log_raw),
        )
        .route("/dags/{dag_id}/tasks/{task_id}/history", get(task_history))
        .route("/dags/{dag_id}/calendar", get(calendar))
}

/// The API's fallback: `404` JSON.
pub(crate) async fn not_found(State(state): State<WebState>) -> Response {
    ApiError(WebError::NotFound(format!(
        "no such API endpoint; {} lists them",
        state.urls().api("/openapi.json")
    )))
    .into_response()
}

// ---------------------------------------------------------------------------
// Extractors whose rejections are JSON errors (see `super::error`).
// ---------------------------------------------------------------------------

/// `Json` answering bad bodies with `400` JSON.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
struct ApiJson<T>(T);

/// `Query` answering bad queries with `400` JSON.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
struct ApiQuery<T>(T);

/// `Path` answering bad paths with `400` JSON.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
struct ApiPath<T>(T);

type ApiResult<T> = Result<Json<T>, ApiError>;

// ---------------------------------------------------------------------------
// The document.
// ---------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "goflow",
        description = "The REST API of a goflow binary: DAGs, runs, task instances, logs, health. \
                       Authenticate with `Authorization: Bearer <token>`; errors are \
                       `{\"error\": message}`."
    ),
    paths(
        health, list_dags, get_dag, patch_dag, grid, list_runs, trigger_run, get_run,
        clear_run, stop_run, get_task_instance, clear_task, mark_task, task_logs, task_log_stream,
        task_log_raw, task_history,
        calendar
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "dags"), (name = "runs"), (name = "tasks"), (name = "health"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of this API, with paths under `/api/v1`; under a
/// base path, its server is the base path (a URL relative to the
/// document's), which the paths are relative to.
pub(crate) fn document(base: &str) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (format!("/api/v1{p}"), item))
        .collect();
    if !base.is_empty() {
        doc.servers = Some(vec![utoipa::openapi::Server::new(base)]);
    }
    doc
}

async fn openapi(State(state): State<WebState>) -> Json<utoipa::openapi::OpenApi> {
    Json(document(state.base_path()))
}

// ---------------------------------------------------------------------------
// Bodies.
// ---------------------------------------------------------------------------

/// A run, briefly.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RunBrief {
    run_id: String,
    #[schema(value_type = String, example = "success")]
    state: RunState,
    logical_date: DateTime<Utc>,
}

impl From<&RunRow> for RunBrief {
    fn from(r: &RunRow) -> Self {
        RunBrief {
            run_id: r.run_id.clone(),
            state: r.state,
            logical_date: r.execution_date(),
        }
    }
}

/// A DAG.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct DagJson {
    dag_id: String,
    description: Option<String>,
    /// As written: cron, `@daily`, `@every 15m`, `@once`, `@manual`.
    schedule: String,
    timezone: String,
    is_paused: bool,
    tags: Vec<String>,
    /// When the next scheduled run is due (none when paused or manual).
    next_run: Option<DateTime<Utc>>,
    version: i32,
    file_path: String,
    file_format: String,
    /// Whether this binary declares it (only then can it be triggered).
    declared: bool,
    /// The latest runs, latest first.
    recent_runs: Vec<RunBrief>,
}

impl From<service::DagSummary> for DagJson {
    fn from(d: service::DagSummary) -> Self {
        DagJson {
            declared: d.dag.is_some(),
            next_run: d.next_run,
            recent_runs: d.recent.iter().map(RunBrief::from).collect(),
            dag_id: d.row.id,
            description: d.row.description,
            schedule: d.row.schedule,
            timezone: d.row.timezone,
            is_paused: d.row.is_paused,
            tags: d.row.tags,
            version: d.row.version,
            file_path: d.row.file_path,
            file_format: d.row.file_format,
        }
    }
}

/// A page of DAGs.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct DagList {
    dags: Vec<DagJson>,
    /// DAGs matching the filters, on all pages.
    total: u64,
    limit: i64,
    offset: i64,
}

/// An edge into a task.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct EdgeJson {
    /// The upstream task.
    task_id: String,
    /// `data` (its output is an argument) or `order`.
    kind: String,
}

/// A task of a DAG.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TaskDef {
    task_id: String,
    function: String,
    upstream: Vec<EdgeJson>,
    trigger_rule: String,
    retries: u32,
    pool: String,
    executor: Option<String>,
    /// Its column in the graph: 0 without upstreams, else one more than
    /// its deepest upstream.
    layer: usize,
}

/// A DAG with its tasks and schedule.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct DagDetail {
    #[serde(flatten)]
    dag: DagJson,
    namespace: Option<String>,
    max_active_runs: u32,
    max_active_tasks: u32,
    catchup: Option<bool>,
    source_line: Option<u32>,
    /// The next instants scheduled runs are due.
    next_runs: Vec<DateTime<Utc>>,
    /// In topological order; empty when this binary does not declare it.
    tasks: Vec<TaskDef>,
}

/// A DAG run.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RunJson {
    dag_id: String,
    run_id: String,
    #[schema(value_type = String, example = "running")]
    state: RunState,
    #[schema(value_type = String, example = "manual")]
    run_type: RunType,
    logical_date: DateTime<Utc>,
    data_interval_start: DateTime<Utc>,
    data_interval_end: DateTime<Utc>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    #[schema(value_type = Object)]
    conf: serde_json::Value,
    dag_version: i32,
}

impl From<&RunRow> for RunJson {
    fn from(r: &RunRow) -> Self {
        RunJson {
            dag_id: r.dag_id.clone(),
            run_id: r.run_id.clone(),
            state: r.state,
            run_type: r.run_type,
            logical_date: r.execution_date(),
            data_interval_start: r.data_interval.start,
            data_interval_end: r.data_interval.end,
            start_date: r.start_date,
            end_date: r.end_date,
            duration_ms: r
                .start_date
                .zip(r.end_date)
                .map(|(s, e)| (e - s).num_milliseconds()),
            conf: r.conf.clone(),
            dag_version: r.dag_version,
        }
    }
}

/// A page of runs, latest logical date first.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RunList {
    runs: Vec<RunJson>,
    limit: i64,
    offset: i64,
}

/// A task instance: one task in one run, its current (or last) try.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TaskInstanceJson {
    task_id: String,
    #[schema(value_type = String, example = "success")]
    state: TaskState,
    /// The number of the current or last try (counting every clearing).
    try_number: u32,
    /// Tries since the task was last cleared.
    tries: u32,
    /// Tries allowed per clearing.
    max_tries: u32,
    /// Tries since the last clearing lost with the process running them
    /// (they do not count against retries).
    lost_tries: u32,
    /// The executor of the current or last try, resolved when it was
    /// claimed.
    executor: String,
    executor_handle: Option<String>,
    /// A stop of the running try was asked for: the state it ends in.
    #[schema(value_type = Option<String>, example = "failed")]
    stopping: Option<TaskState>,
    queued_date: Option<DateTime<Utc>>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    next_retry_date: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    exit_code: Option<i32>,
    peak_memory_bytes: Option<i64>,
    cpu_user_ms: Option<i64>,
    cpu_system_ms: Option<i64>,
    /// CPU the pod requested, in millicores (Kubernetes tries).
    cpu_request_millis: Option<i64>,
    /// Memory the pod requested, in bytes (Kubernetes tries).
    memory_request_bytes: Option<i64>,
    /// The pod's CPU limit, in millicores (Kubernetes tries).
    cpu_limit_millis: Option<i64>,
    /// The pod's memory limit, in bytes (Kubernetes tries).
    memory_limit_bytes: Option<i64>,
    error: Option<String>,
}

impl From<&TaskInstanceRow> for TaskInstanceJson {
    fn from(t: &TaskInstanceRow) -> Self {
        TaskInstanceJson {
            task_id: t.task_id.clone(),
            state: t.state,
            try_number: t.try_number,
            tries: t.tries(),
            max_tries: t.max_tries,
            lost_tries: t.lost_tries,
            executor: t.executor.to_string(),
            executor_handle: t.executor_handle.clone(),
            stopping: t.stop_requested.as_ref().map(|s| s.to),
            queued_date: t.queued_date,
            start_date: t.start_date,
            end_date: t.end_date,
            next_retry_date: t.next_retry_date,
            duration_ms: t.duration_ms,
            exit_code: t.measurements.exit_code,
            peak_memory_bytes: t.measurements.peak_memory_bytes,
            cpu_user_ms: t.measurements.cpu_user_ms,
            cpu_system_ms: t.measurements.cpu_system_ms,
            cpu_request_millis: t.measurements.cpu_request_millis,
            memory_request_bytes: t.measurements.memory_request_bytes,
            cpu_limit_millis: t.measurements.cpu_limit_millis,
            memory_limit_bytes: t.measurements.memory_limit_bytes,
            error: t.last_error.clone(),
        }
    }
}

/// A run with its task instances.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RunDetail {
    #[serde(flatten)]
    run: RunJson,
    /// In the DAG's order.
    tasks: Vec<TaskInstanceJson>,
}

/// A finished try.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TryJson {
    /// Its run (absent if the run was deleted).
    run_id: Option<String>,
    try_number: u32,
    #[schema(value_type = String, example = "failed")]
    state: TaskState,
    queued_date: Option<DateTime<Utc>>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    exit_code: Option<i32>,
    peak_memory_bytes: Option<i64>,
    cpu_user_ms: Option<i64>,
    cpu_system_ms: Option<i64>,
    /// CPU the pod requested, in millicores (Kubernetes tries).
    cpu_request_millis: Option<i64>,
    /// Memory the pod requested, in bytes (Kubernetes tries).
    memory_request_bytes: Option<i64>,
    /// The pod's CPU limit, in millicores (Kubernetes tries).
    cpu_limit_millis: Option<i64>,
    /// The pod's memory limit, in bytes (Kubernetes tries).
    memory_limit_bytes: Option<i64>,
    error: Option<String>,
    /// The executor that ran it (absent for tries recorded before goflow
    /// stored it).
    executor: Option<String>,
    /// The executor's handle on it (a Job, a pid).
    executor_handle: Option<String>,
}

impl TryJson {
    fn new(t: &TaskTryRow, run_id: Option<String>) -> Self {
        TryJson {
            run_id,
            try_number: t.try_number,
            state: t.state,
            executor: t.executor.map(|e| e.to_string()),
            executor_handle: t.executor_handle.clone(),
            queued_date: t.queued_date,
            start_date: t.start_date,
            end_date: t.end_date,
            duration_ms: t.duration_ms,
            exit_code: t.measurements.exit_code,
            peak_memory_bytes: t.measurements.peak_memory_bytes,
            cpu_user_ms: t.measurements.cpu_user_ms,
            cpu_system_ms: t.measurements.cpu_system_ms,
            cpu_request_millis: t.measurements.cpu_request_millis,
            memory_request_bytes: t.measurements.memory_request_bytes,
            cpu_limit_millis: t.measurements.cpu_limit_millis,
            memory_limit_bytes: t.measurements.memory_limit_bytes,
            error: t.error.clone(),
        }
    }
}

/// A task instance with its finished tries.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TaskInstanceDetail {
    #[serde(flatten)]
    instance: TaskInstanceJson,
    tries: Vec<TryJson>,
}

/// A task's finished tries across runs, oldest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TaskHistory {
    dag_id: String,
    task_id: String,
    tries: Vec<TryJson>,
}

/// One log line.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct LogLineJson {
    /// Increasing: pass the last one as `after_id` to follow the log.
    id: i64,
    try_number: u32,
    timestamp: DateTime<Utc>,
    #[schema(value_type = String, example = "stdout")]
    stream: LogStream,
    line: String,
}

/// Log lines of one try.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct LogsJson {
    lines: Vec<LogLineJson>,
    /// The `after_id` of the next call.
    next_after_id: i64,
    /// Whether more lines are already there (the limit was reached).
    more: bool,
    try_number: u32,
    /// The state of the task instance (for the current try) or of the try.
    #[schema(value_type = String, example = "running")]
    state: TaskState,
    /// Whether the try is still going: poll again for more lines.
    live: bool,
}

/// Recent runs × tasks.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GridJson {
    /// In the DAG's order.
    tasks: Vec<String>,
    /// Oldest first.
    runs: Vec<GridRun>,
}

/// A run's column of the grid.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GridRun {
    #[serde(flatten)]
    run: RunBrief,
    /// Task id → state.
    #[schema(value_type = Object)]
    states: BTreeMap<String, TaskState>,
}

/// `POST /dags/{dag_id}/runs`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerRequest {
    /// A JSON object tasks read with `ctx.param(...)`; `{}` when absent.
    #[schema(value_type = Option<Object>)]
    conf: Option<serde_json::Value>,
    /// In the DAG's time zone: `2026-01-01`, `2026-01-01T06:00`, or RFC
    /// 3339. Default: now.
    logical_date: Option<String>,
}

/// `PATCH /dags/{dag_id}`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DagPatch {
    is_paused: bool,
}

/// `POST .../clear`.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearRequest {
    /// The tasks to clear (for a run: every task when empty).
    #[serde(default)]
    tasks: Vec<String>,
    /// Also every task downstream of them.
    #[serde(default)]
    downstream: bool,
    /// Only those that failed or are upstream_failed.
    #[serde(default)]
    only_failed: bool,
}

/// `POST .../tasks/{task_id}/clear`.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskClearRequest {
    /// Also every task downstream of it.
    #[serde(default)]
    downstream: bool,
}

/// What a clear did.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ClearResult {
    /// The task ids put back to pending, in the DAG's order (a running
    /// one once its try has been stopped, within seconds).
    cleared: Vec<String>,
    /// The run's state afterwards (a finished run is queued again).
    #[schema(value_type = String, example = "queued")]
    run_state: RunState,
}

/// `POST .../tasks/{task_id}/state`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkRequest {
    /// `success` or `failed`.
    state: String,
    /// Also every task downstream of it.
    #[serde(default)]
    downstream: bool,
}

/// What a mark did.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct MarkResult {
    task_id: String,
    #[schema(value_type = String, example = "success")]
    state: TaskState,
    /// The run's state afterwards, recomputed from its tasks.
    #[schema(value_type = String, example = "success")]
    run_state: RunState,
    /// The task was running: its try is being stopped, and it ends in
    /// `state` once it has (within seconds).
    stopping: bool,
}

/// What a run stop did.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct StopResult {
    /// The task instances the stop covers: running tries are stopped and
    /// end `failed`, tasks not yet run end `skipped`; the run ends
    /// `failed` (at once when it had not started, else within seconds).
    tasks: usize,
}

/// The database's answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct DatabaseHealth {
    reachable: bool,
    latency_ms: Option<f64>,
    error: Option<String>,
}

/// A scheduler replica.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct SchedulerJson {
    id: String,
    hostname: String,
    pid: u32,
    started_date: DateTime<Utc>,
    heartbeat_date: DateTime<Utc>,
    heartbeat_age_seconds: f64,
    alive: bool,
    /// Whether it is the scheduler of the process serving this API.
    this_process: bool,
}

/// An executor's counts in this process.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ExecutorJson {
    kind: String,
    launched: u64,
    failed: u64,
}

/// The scheduler's health.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct HealthJson {
    /// The database answers and this process's scheduler (or, with none
    /// configured, some scheduler) heartbeats.
    healthy: bool,
    database: DatabaseHealth,
    schedulers: Vec<SchedulerJson>,
    /// Task instances by state.
    #[schema(value_type = Object)]
    task_instances: BTreeMap<String, u64>,
    /// Runs by state.
    #[schema(value_type = Object)]
    runs: BTreeMap<String, u64>,
    /// The latest scheduling step of this process's scheduler.
    loop_latency_seconds: Option<f64>,
    executors: Vec<ExecutorJson>,
    /// Why this process's scheduler is not ready (it cannot write to the
    /// store, runs it owns are not loaded); absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_ready_reason: Option<String>,
}

// ---------------------------------------------------------------------------
// Parameters.
// ---------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DagListParams {
    /// Text the id or description contains.
    q: Option<String>,
    /// A tag the DAG has.
    tag: Option<String>,
    /// Only paused (`true`) or active (`false`) DAGs.
    paused: Option<bool>,
    /// At most this many (default 50, at most 500).
    limit: Option<i64>,
    /// Skip this many first.
    offset: Option<i64>,
    /// Latest runs per DAG to include (default 10, at most 100).
    recent_runs: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// At most this many (default 25, at most 500).
    limit: Option<i64>,
    /// Skip this many first (latest first).
    offset: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogParams {
    /// The try (default: the current or last one).
    #[serde(rename = "try")]
    #[param(rename = "try")]
    try_number: Option<u32>,
    /// Only lines after this id (default 0: from the start).
    after_id: Option<i64>,
    /// At most this many lines (default 1000, at most 5000).
    limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CalendarParams {
    /// The last this many days, today included (default 30, at most 3660).
    days: Option<u32>,
}

/// Which days a DAG ran and how those runs ended.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct CalendarJson {
    dag_id: String,
    /// Oldest first, by logical date in the DAG's time zone.
    days: Vec<crate::calendar::Day>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// The latest this many tries (default 50, at most 500).
    limit: Option<i64>,
}

fn limit(v: Option<i64>, default: i64) -> Result<i64, WebError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(WebError::BadRequest(format!(
            "invalid limit {n}: expected 1 to {MAX_PAGE}"
        ))),
    }
}

fn offset(v: Option<i64>) -> Result<i64, WebError> {
    match v {
        None => Ok(0),
        Some(n) if n >= 0 => Ok(n),
        Some(n) => Err(WebError::BadRequest(format!(
            "invalid offset {n}: expected 0 or more"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Handlers.
// ---------------------------------------------------------------------------

/// The scheduler's health: database, heartbeats, queue, loop latency.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthJson), (status = 401, body = ErrorBody)))]
async fn health(State(state): State<WebState>) -> Json<HealthJson> {
    let h = service::health(&state).await;
    Json(HealthJson {
        healthy: h.healthy(),
        database: match &h.database {
            Ok(d) => DatabaseHealth {
                reachable: true,
                latency_ms: Some(d.as_secs_f64() * 1000.0),
                error: None,
            },
            Err(e) => DatabaseHealth {
                reachable: false,
                latency_ms: None,
                error: Some(e.clone()),
            },
        },
        schedulers: h
            .schedulers
            .iter()
            .map(|s| SchedulerJson {
                id: s.row.id.clone(),
                hostname: s.row.hostname.clone(),
                pid: s.row.pid,
                started_date: s.row.started_date,
                heartbeat_date: s.row.heartbeat_date,
                heartbeat_age_seconds: s.heartbeat_age,
                alive: s.alive,
                this_process: s.this_process,
            })
            .collect(),
        task_instances: TaskState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), h.tasks.get(s).copied().unwrap_or(0)))
            .collect(),
        runs: RunState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), h.runs.get(s).copied().unwrap_or(0)))
            .collect(),
        loop_latency_seconds: h.loop_latency,
        not_ready_reason: h.scheduler_problem.clone(),
        executors: h
            .executors
            .iter()
            .map(|(k, l, f)| ExecutorJson {
                kind: k.clone(),
                launched: *l,
                failed: *f,
            })
            .collect(),
    })
}

/// A page of DAGs, by id, with their latest runs.
#[utoipa::path(get, path = "/dags", tag = "dags", params(DagListParams),
    responses((status = 200, body = DagList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_dags(
    State(state): State<WebState>,
    ApiQuery(p): ApiQuery<DagListParams>,
) -> ApiResult<DagList> {
    let limit = limit(p.limit, 50)?;
    let offset = offset(p.offset)?;
    let recent = p.recent_runs.unwrap_or(10);
    if recent > 100 {
        return Err(WebError::BadRequest(format!(
            "invalid recent_runs {recent}: expected at most 100"
        ))
        .into());
    }
    let query = DagQuery {
        text: p.q,
        tag: p.tag,
        paused: p.paused,
        limit,
        offset,
    };
    let (dags, total) = service::dag_list(&state, query, recent).await?;
    Ok(Json(DagList {
        dags: dags.into_iter().map(DagJson::from).collect(),
        total,
        limit,
        offset,
    }))
}

async fn dag_detail(state: &WebState, dag_id: &str) -> Result<DagDetail, WebError> {
    let row = service::dag_row(state, dag_id).await?;
    let dag = service::declared(state, dag_id);
    let recent = state
        .store()
        .latest_runs_of_dags(&[dag_id.to_owned()], 10)
        .await?
        .remove(dag_id)
        .unwrap_or_default();
    let now = Utc::now();
    let tasks = dag
        .as_ref()
        .map(|d| {
            let layers = super::svg::layers(d);
            d.topological_order()
                .iter()
                .map(|&i| {
                    let t = &d.tasks()[i];
                    TaskDef {
                        task_id: t.id.to_string(),
                        function: t.function.to_owned(),
                        upstream: t
                            .upstream
                            .iter()
                            .map(|u| EdgeJson {
                                task_id: d.tasks()[u.task].id.to_string(),
                                kind: match u.kind {
                                    EdgeKind::Data => "data",
                                    EdgeKind::Order => "order",
                                }
                                .to_owned(),
                            })
                            .collect(),
                        trigger_rule: t.options.trigger_rule().to_string(),
                        retries: t.options.retry_policy().max_tries().saturating_sub(1),
                        pool: t.options.pool().to_owned(),
                        executor: t.options.executor.map(|e| e.to_string()),
                        layer: layers[i],
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let next_runs = match &dag {
        Some(d) if !row.is_paused => service::next_runs(d, now, 5),
        _ => Vec::new(),
    };
    Ok(DagDetail {
        namespace: row.namespace.clone(),
        max_active_runs: row.max_active_runs,
        max_active_tasks: row.max_active_tasks,
        catchup: dag.as_ref().map(|d| d.catchup()),
        source_line: dag.as_ref().map(|d| d.source_line()),
        next_runs,
        tasks,
        dag: DagJson::from(service::DagSummary {
            next_run: dag
                .as_ref()
                .and_then(|d| service::next_run(d, row.is_paused, now)),
            dag,
            recent,
            row,
        }),
    })
}

/// A DAG: its settings, tasks and edges, schedule and next runs.
#[utoipa::path(get, path = "/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path, description = "The DAG id")),
    responses((status = 200, body = DagDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_dag(
    State(state): State<WebState>,
    ApiPath(dag_id): ApiPath<String>,
) -> ApiResult<DagDetail> {
    Ok(Json(dag_detail(&state, &dag_id).await?))
}

/// Pauses or unpauses a DAG.
#[utoipa::path(patch, path = "/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path, description = "The DAG id")),
    request_body = DagPatch,
    responses((status = 200, body = DagDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch_dag(
    State(state): State<WebState>,
    Extension(who): Extension<Principal>,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(patch): ApiJson<DagPatch>,
) -> ApiResult<DagDetail> {
    service::set_paused(&state, &dag_id, patch.is_paused, who.name()).await?;
    Ok(Json(dag_detail(&state, &dag_id).await?))
}

/// The recent runs of a DAG × its tasks, with their states.
#[utoipa::path(get, path = "/dags/{dag_id}/grid", tag = "dags",
    params(("dag_id" = String, Path, description = "The DAG id"), PageParams),
    responses((status = 200, body = GridJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn grid(
    State(state): State<WebState>,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<GridJson> {
    let (limit, offset) = (limit(p.limit, 25)?, offset(p.offset)?);
    service::dag_row(&state, &dag_id).await?;
    let g = service::grid(&state, &dag_id, limit, offset).await?;
    Ok(Json(GridJson {
        tasks: g.tasks,
        runs: g
            .runs
            .iter()
            .map(|(r, tis)| GridRun {
                run: RunBrief::from(r),
                states: tis.iter().map(|(k, v)| (k.clone(), v.state)).collect(),
            })
            .collect(),
    }))
}

/// A page of a DAG's runs, latest logical date first.
#[utoipa::path(get, path = "/dags/{dag_id}/runs", tag = "runs",
    params(("dag_id" = String, Path, description = "The DAG id"), PageParams),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_runs(
    State(state): State<WebState>,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<RunList> {
    let (limit, offset) = (limit(p.limit, 25)?, offset(p.offset)?);
    service::dag_row(&state, &dag_id).await?;
    let runs = state.store().list_runs(&dag_id, limit, offset).await?;
    Ok(Json(RunList {
        runs: runs.iter().map(RunJson::from).collect(),
        limit,
        offset,
    }))
}

/// Triggers a manual run, queued for the scheduler.
#[utoipa::path(post, path = "/dags/{dag_id}/runs", tag = "runs",
    params(("dag_id" = String, Path, description = "The DAG id")),
    request_body = TriggerRequest,
    responses((status = 201, body = RunJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "a run at this logical date exists", body = ErrorBody)))]
async fn trigger_run(
    State(state): State<WebState>,
    Extension(who): Extension<Principal>,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(req): ApiJson<TriggerRequest>,
) -> Result<Response, ApiError> {
    let conf = req.conf.unwrap_or_else(|| serde_json::json!({}));
    let run = service::trigger(
        &state,
        &dag_id,
        conf,
        req.logical_date.as_deref(),
        who.name(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(RunJson::from(&run))).into_response())
}

async fn run_detail(state: &WebState, run: &RunRow) -> Result<RunDetail, WebError> {
    let instances = state.store().task_instances(run.id).await?;
    let dag = service::declared(state, &run.dag_id);
    let order = service::task_order(dag.as_deref(), &instances);
    let mut tasks: Vec<&TaskInstanceRow> = instances.iter().collect();
    tasks.sort_by_key(|t| order.iter().position(|o| *o == t.task_id));
    Ok(RunDetail {
        run: RunJson::from(run),
        tasks: tasks.into_iter().map(TaskInstanceJson::from).collect(),
    })
}

/// A run with its task instances.
#[utoipa::path(get, path = "/dags/{dag_id}/runs/{run_id}", tag = "runs",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id")),
    responses((status = 200, body = RunDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(state): State<WebState>,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> ApiResult<RunDetail> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    Ok(Json(run_detail(&state, &run).await?))
}

async fn clear_result(
    state: &WebState,
    run: &RunRow,
    cleared: Vec<String>,
) -> Result<ClearResult, WebError> {
    let run_state = state
        .store()
        .get_run(run.id)
        .await?
        .map_or(run.state, |r| r.state);
    Ok(ClearResult { cleared, run_state })
}

/// Clears task instances of a run (all, some, or the failed ones) so that
/// they run again; a finished run is queued again.
#[utoipa::path(post, path = "/dags/{dag_id}/runs/{run_id}/clear", tag = "runs",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id")),
    request_body = ClearRequest,
    responses((status = 200, body = ClearResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "a task to clear is queued or running", body = ErrorBody)))]
async fn clear_run(
    State(state): State<WebState>,
    Extension(who): Extension<Principal>,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ClearRequest>,
) -> ApiResult<ClearResult> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let spec = ClearSpec {
        tasks: req.tasks,
        downstream: req.downstream,
        only_failed: req.only_failed,
    };
    let cleared = service::clear(&state, &run, &spec, who.name()).await?;
    Ok(Json(clear_result(&state, &run, cleared).await?))
}

/// Stops a queued or running run: its running tries are stopped (their
/// executors kill them) and end `failed`, its other unfinished tasks end
/// `skipped`, and the run ends `failed`.
#[utoipa::path(post, path = "/dags/{dag_id}/runs/{run_id}/stop", tag = "runs",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id")),
    responses((status = 200, body = StopResult), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "the run has finished", body = ErrorBody)))]
async fn stop_run(
    State(state): State<WebState>,
    Extension(who): Extension<Principal>,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> ApiResult<StopResult> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let tasks = service::stop_run(&state, &run, who.name()).await?;
    Ok(Json(StopResult { tasks }))
}

/// A task instance with its finished tries.
#[utoipa::path(get, path = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id")),
    responses((status = 200, body = TaskInstanceDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_task_instance(
    State(state): State<WebState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
) -> ApiResult<TaskInstanceDetail> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let ti = task_instance(&state, &run, &task_id).await?;
    let tries = state.store().task_tries(run.id, Some(&task_id)).await?;
    Ok(Json(TaskInstanceDetail {
        instance: TaskInstanceJson::from(&ti),
        tries: tries
            .iter()
            .map(|t| TryJson::new(t, Some(run.run_id.clone())))
            .collect(),
    }))
}

async fn task_instance(
    state: &WebState,
    run: &RunRow,
    task_id: &str,
) -> Result<TaskInstanceRow, WebError> {
    state
        .store()
        .task_instance(run.id, task_id)
        .await?
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "run '{}' of DAG '{}' has no task '{task_id}'",
                run.run_id, run.dag_id
            ))
        })
}

/// Clears one task instance (and with `downstream` what follows it) so
/// that it runs again.
#[utoipa::path(post, path = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id")),
    request_body = TaskClearRequest,
    responses((status = 200, body = ClearResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "the task is queued or running", body = ErrorBody)))]
async fn clear_task(
    State(state): State<WebState>,
    Extension(who): Extension<Principal>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<TaskClearRequest>,
) -> ApiResult<ClearResult> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let spec = ClearSpec {
        tasks: vec![task_id],
        downstream: req.downstream,
        only_failed: false,
    };
    let cleared = service::clear(&state, &run, &spec, who.name()).await?;
    Ok(Json(clear_result(&state, &run, cleared).await?))
}

/// Marks a task instance `success` or `failed` by hand; the run's state
/// follows. A running task is stopped first (its executor kills the try)
/// and ends in that state once it has (`stopping` in the answer).
#[utoipa::path(post, path = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/state", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id")),
    request_body = MarkRequest,
    responses((status = 200, body = MarkResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "the run is running and the task waits to run", body = ErrorBody)))]
async fn mark_task(
    State(state): State<WebState>,
    Extension(who): Extension<Principal>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<MarkRequest>,
) -> ApiResult<MarkResult> {
    let to = match req.state.as_str() {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(WebError::BadRequest(format!(
                "invalid state '{other}': expected success or failed"
            ))
            .into())
        }
    };
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let stopping = task_instance(&state, &run, &task_id)
        .await?
        .state
        .is_active();
    let run_state = service::mark(&state, &run, &task_id, to, req.downstream, who.name()).await?;
    Ok(Json(MarkResult {
        task_id,
        state: to,
        run_state,
        stopping,
    }))
}

/// Log lines of one try of a task instance, after `after_id`: poll with
/// the returned `next_after_id` while `live` to follow a running try.
#[utoipa::path(get, path = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"), LogParams),
    responses((status = 200, body = LogsJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn task_logs(
    State(state): State<WebState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> ApiResult<LogsJson> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let ti = task_instance(&state, &run, &task_id).await?;
    let try_number = pick_try(&ti, p.try_number)?;
    let after = p.after_id.unwrap_or(0).max(0);
    let n = match p.limit {
        None => 1000,
        Some(n) if (1..=MAX_LOG_LINES).contains(&n) => n,
        Some(n) => {
            return Err(WebError::BadRequest(format!(
                "invalid limit {n}: expected 1 to {MAX_LOG_LINES}"
            ))
            .into())
        }
    };
    let lines = state
        .store()
        .read_logs(run.id, &task_id, Some(try_number), after, n)
        .await?;
    let current = try_number == ti.try_number;
    let state_now = if current {
        ti.state
    } else {
        state
            .store()
            .task_tries(run.id, Some(&task_id))
            .await?
            .iter()
            .find(|t| t.try_number == try_number)
            .map_or(ti.state, |t| t.state)
    };
    Ok(Json(LogsJson {
        next_after_id: lines.last().map_or(after, |l| l.id),
        more: lines.len() as i64 == n,
        lines: lines.into_iter().map(line_json).collect(),
        try_number,
        state: state_now,
        live: current && !ti.state.is_terminal(),
    }))
}

/// The try `asked` for of `ti` (default: the current or last one).
fn pick_try(ti: &TaskInstanceRow, asked: Option<u32>) -> Result<u32, WebError> {
    let latest = ti.try_number.max(1);
    match asked {
        None => Ok(latest),
        Some(t) if (1..=latest).contains(&t) => Ok(t),
        Some(t) => Err(WebError::BadRequest(format!(
            "invalid try {t}: task '{}' has tries 1 to {latest}",
            ti.task_id
        ))),
    }
}

/// How a try stands.
struct TryStatus {
    state: TaskState,
    /// Its outcome is recorded, or the task instance is done with it.
    ended: bool,
    /// When it ended, as recorded.
    end_date: Option<DateTime<Utc>>,
}

/// How the try `try_number` of `task_id` stands.
async fn try_status(
    state: &WebState,
    run: i64,
    task_id: &str,
    try_number: u32,
) -> Result<TryStatus, WebError> {
    let ti = state
        .store()
        .task_instance(run, task_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("task '{task_id}' is gone from its run")))?;
    if ti.try_number == try_number && ti.state.is_active() {
        return Ok(TryStatus {
            state: ti.state,
            ended: false,
            end_date: None,
        });
    }
    let ended = state
        .store()
        .task_tries(run, Some(task_id))
        .await?
        .into_iter()
        .find(|t| t.try_number == try_number);
    let (state, ended, end_date) = match ended {
        Some(t) => (t.state, true, t.end_date),
        // Not started yet (waiting to run) or done without a try.
        None if ti.try_number <= try_number => (ti.state, ti.state.is_terminal(), ti.end_date),
        // An older try whose outcome was not recorded: it is over.
        None => (ti.state, true, None),
    };
    Ok(TryStatus {
        state,
        ended,
        end_date,
    })
}

fn line_json(l: goflow_store::LogLine) -> LogLineJson {
    LogLineJson {
        id: l.id,
        try_number: l.try_number,
        timestamp: l.timestamp,
        stream: l.stream,
        line: l.line,
    }
}

/// How often the stream looks for new lines while the try runs.
const STREAM_POLL: Duration = Duration::from_millis(250);
/// How long one stream lasts at most; `EventSource` then reconnects with
/// `Last-Event-ID` and goes on.
const STREAM_MAX: Duration = Duration::from_secs(3600);
/// How long after a try ended its last lines may still be stored (the
/// scheduler records the outcome, then the try's last lines): the stream
/// waits that long after the end before it says `end`.
const STREAM_END_GRACE: Duration = Duration::from_millis(500);
/// A try that ended this many seconds ago has stored all its lines.
const STREAM_SETTLED_SECS: i64 = 10;
/// Lines read per query by the stream and the raw download.
const STREAM_BATCH: i64 = 1000;

/// `?try=N&after_id=M` of the log stream and download.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogStreamParams {
    /// The try (default: the current or last one).
    #[serde(rename = "try")]
    #[param(rename = "try")]
    try_number: Option<u32>,
    /// Only lines after this id (default 0: from the start). A
    /// `Last-Event-ID` header, as a reconnecting `EventSource` sends,
    /// takes precedence.
    after_id: Option<i64>,
}

/// The `end` event of a log stream.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct LogEndJson {
    try_number: u32,
    /// How the try ended.
    #[schema(value_type = String, example = "success")]
    state: TaskState,
}

/// A log being followed: the events due, and where to read next.
struct LogFollower {
    state: WebState,
    run: i64,
    task_id: String,
    try_number: u32,
    after: i64,
    deadline: tokio::time::Instant,
    due: VecDeque<Event>,
    /// Read again at once: the last read was a full batch.
    hurry: bool,
    /// When this stream first saw the try ended.
    ended_seen: Option<tokio::time::Instant>,
    first: bool,
    done: bool,
}

impl LogFollower {
    /// Reads what is new: lines, then `end` once the try has ended and
    /// every line was read. The state is read before the lines, so the
    /// lines a try wrote before it ended are all sent before `end`.
    async fn step(&mut self) {
        if !self.hurry && !self.first {
            tokio::time::sleep(STREAM_POLL).await;
        }
        self.first = false;
        if tokio::time::Instant::now() >= self.deadline {
            self.done = true;
            return;
        }
        let read = async {
            let status = try_status(&self.state, self.run, &self.task_id, self.try_number).await?;
            let lines = self
                .state
                .store()
                .read_logs(
                    self.run,
                    &self.task_id,
                    Some(self.try_number),
                    self.after,
                    STREAM_BATCH,
                )
                .await?;
            Ok::<_, WebError>((status, lines))
        };
        let (status, lines) = match read.await {
            Ok(r) => r,
            Err(e) => {
                // The client reconnects and resumes after the last id.
                tracing::warn!(error = %e, task = %self.task_id, "log stream stopped");
                self.done = true;
                return;
            }
        };
        self.hurry = lines.len() as i64 == STREAM_BATCH;
        for l in lines {
            self.after = l.id;
            let id = l.id.to_string();
            match Event::default().id(id).json_data(line_json(l)) {
                Ok(e) => self.due.push_back(e),
                Err(e) => tracing::warn!(error = %e, "unserializable log line"),
            }
        }
        if !status.ended || self.hurry {
            return;
        }
        // Seen ended for the grace, or ended long before (the recorded end
        // may be the worker's, so the grace is counted from when the
        // outcome was seen here).
        let seen = *self
            .ended_seen
            .get_or_insert_with(tokio::time::Instant::now);
        let settled = seen.elapsed() >= STREAM_END_GRACE
            || status
                .end_date
                .is_none_or(|e| Utc::now() - e >= chrono::Duration::seconds(STREAM_SETTLED_SECS));
        if settled {
            let end = LogEndJson {
                try_number: self.try_number,
                state: status.state,
            };
            if let Ok(e) = Event::default().event("end").json_data(end) {
                self.due.push_back(e);
            }
            self.done = true;
        }
    }
}

/// Follows one try's log as Server-Sent Events: each line after
/// `after_id` (or `Last-Event-ID`) as an event whose `id` is the line's
/// and whose `data` is the line as JSON (see `LogLineJson`); then, once
/// the try has ended and every line was sent, an `end` event whose data is
/// `{"try_number", "state"}` (see `LogEndJson`), and the stream closes. A
/// stream lasts an hour at most; `EventSource` reconnects and resumes.
#[utoipa::path(get, path = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"), LogStreamParams,
           ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this line id (sent by a reconnecting EventSource)")),
    responses((status = 200, content_type = "text/event-stream", body = String,
               description = "Events: unnamed ones carry a `LogLineJson` and the line id as `id`; a final `end` event carries a `LogEndJson`"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn task_log_stream(
    State(state): State<WebState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(p): ApiQuery<LogStreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    WebError::BadRequest("invalid Last-Event-ID: expected a line id".to_owned())
                })?,
        ),
    };
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let ti = task_instance(&state, &run, &task_id).await?;
    let try_number = pick_try(&ti, p.try_number)?;
    let follower = LogFollower {
        state,
        run: run.id,
        task_id,
        try_number,
        after: last_event.or(p.after_id).unwrap_or(0).max(0),
        deadline: tokio::time::Instant::now() + STREAM_MAX,
        due: VecDeque::from([Event::default()
            .retry(Duration::from_secs(1))
            .comment("following")]),
        hurry: false,
        ended_seen: None,
        first: true,
        done: false,
    };
    let events = futures::stream::unfold(follower, |mut f| async move {
        loop {
            if let Some(e) = f.due.pop_front() {
                return Some((Ok::<_, Infallible>(e), f));
            }
            if f.done {
                return None;
            }
            f.step().await;
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A safe file name part: what is not a letter, digit, `.`, `-` or `_`
/// becomes `_`.
fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every line of one try as a text file to download, in order; stderr and
/// system lines are prefixed with `[stderr] ` and `[system] `.
#[utoipa::path(get, path = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/raw", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"), LogStreamParams),
    responses((status = 200, content_type = "text/plain", body = String,
               description = "The try's log, as an attachment named `<dag>_<run>_<task>_try<N>.log`"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn task_log_raw(
    State(state): State<WebState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(p): ApiQuery<LogStreamParams>,
) -> Result<Response, ApiError> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let ti = task_instance(&state, &run, &task_id).await?;
    let try_number = pick_try(&ti, p.try_number)?;
    let mut text = String::new();
    let mut after = p.after_id.unwrap_or(0).max(0);
    loop {
        let lines = state
            .store()
            .read_logs(run.id, &task_id, Some(try_number), after, MAX_LOG_LINES)
            .await
            .map_err(WebError::from)?;
        let full = lines.len() as i64 == MAX_LOG_LINES;
        for l in lines {
            after = l.id;
            match l.stream {
                LogStream::Stdout => {}
                LogStream::Stderr => text.push_str("[stderr] "),
                LogStream::System => text.push_str("[system] "),
            }
            text.push_str(&l.line);
            text.push('\n');
        }
        if !full {
            break;
        }
    }
    let name = format!(
        "{}_{}_{}_try{try_number}.log",
        file_part(&dag_id),
        file_part(&run_id),
        file_part(&task_id)
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        text,
    )
        .into_response())
}

/// A task's latest finished tries across runs (duration, CPU, memory),
/// oldest first.
#[utoipa::path(get, path = "/dags/{dag_id}/tasks/{task_id}/history", tag = "tasks",
    params(("dag_id" = String, Path, description = "The DAG id"), ("task_id" = String, Path, description = "The task id"), HistoryParams),
    responses((status = 200, body = TaskHistory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn task_history(
    State(state): State<WebState>,
    ApiPath((dag_id, task_id)): ApiPath<(String, String)>,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> ApiResult<TaskHistory> {
    let n = limit(p.limit, 50)?;
    service::dag_row(&state, &dag_id).await?;
    let entries = service::history(&state, &dag_id, &task_id, n).await?;
    Ok(Json(TaskHistory {
        tries: entries
            .iter()
            .map(|e| TryJson::new(&e.try_row, e.run_id.clone()))
            .collect(),
        dag_id,
        task_id,
    }))
}

/// The DAG's calendar: each of the last days with its runs counted by
/// state, by logical date in the DAG's time zone.
#[utoipa::path(get, path = "/dags/{dag_id}/calendar", tag = "dags",
    params(("dag_id" = String, Path, description = "The DAG id"), CalendarParams),
    responses((status = 200, body = CalendarJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn calendar(
    State(state): State<WebState>,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(p): ApiQuery<CalendarParams>,
) -> ApiResult<CalendarJson> {
    let days = p.days.unwrap_or(30);
    if !(1..=3660).contains(&days) {
        return Err(
            WebError::BadRequest(format!("days must be from 1 to 3660, got {days}")).into(),
        );
    }
    service::dag_row(&state, &dag_id).await?;
    let Some(dag) = service::declared(&state, &dag_id) else {
        return Err(
            WebError::NotFound(format!("DAG {dag_id} is not declared by this binary")).into(),
        );
    };
    let days = crate::calendar::last_days(state.store(), &dag, days, Utc::now())
        .await
        .map_err(WebError::from)?;
    Ok(Json(CalendarJson { dag_id, days }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_under_the_prefix() {
        let doc = serde_json::to_value(document("")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/v1/dags",
            "/api/v1/dags/{dag_id}",
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream",
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/raw",
            "/api/v1/health",
        ] {
            assert!(paths.contains_key(p), "missing {p}: {:?}", paths.keys());
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(
            doc.get("servers").is_none(),
            "at the root, the document's own server"
        );
        let doc = serde_json::to_value(document("/goflow")).unwrap();
        assert_eq!(doc["servers"][0]["url"], "/goflow");
        assert!(doc["paths"]["/api/v1/dags"].is_object());
    }

    #[test]
    fn download_names_keep_only_safe_characters() {
        assert_eq!(
            file_part("manual__2026-01-01T06:00:00+00:00"),
            "manual__2026-01-01T06_00_00_00_00"
        );
        assert_eq!(file_part("a\"b/c d"), "a_b_c_d");
    }
}
