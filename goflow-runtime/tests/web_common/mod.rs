//! What the web tests share: DAGs, an app per test database, requests
//! through `Router::oneshot`, and runs driven through the store as a
//! scheduler would.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use goflow_core::{
    Dag, DagBuilder, DataInterval, Inputs, RunState, RunType, Schedule, TaskContext, TaskFuture,
    TaskOptions, TaskOutput, TaskSpec, TaskState,
};
use goflow_runtime::metrics::Metrics;
use goflow_runtime::web::{self, WebConfig, WebState};
use goflow_runtime::{db, Registry};
use goflow_store::testing::{databases, TestDb};
use goflow_store::{RunRow, Store, TaskUpdate};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const SCHEDULER_ID: &str = "web-test-scheduler";

fn value(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::json!(1),
            follow: None,
        })
    })
}

pub fn spec(id: &str, data: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "value",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run: value,
    }
}

pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// extract → (left, right) → merge, then notify (ordering only).
pub fn etl() -> Dag {
    DagBuilder::new("etl")
        .description("Loads the sales")
        .schedule(
            Schedule::parse("@daily", "UTC").unwrap(),
            goflow_core::Tz::UTC,
        )
        .start_date(start())
        .tags(["sales", "daily"])
        .task(spec("extract", &[]))
        .task(spec("left", &["extract"]))
        .task(spec("right", &["extract"]))
        .task(spec("merge", &["left", "right"]))
        .task(spec("notify", &[]))
        .order("merge", "notify")
        .source("examples/etl.rs", 12)
        .build()
        .unwrap()
}

/// A manual DAG with one task.
pub fn reports() -> Dag {
    DagBuilder::new("reports")
        .tags(["finance"])
        .task(spec("publish", &[]))
        .build()
        .unwrap()
}

pub struct App {
    pub db: TestDb,
    pub state: WebState,
    pub app: Router,
    pub token: String,
}

impl App {
    pub fn store(&self) -> &Store {
        &self.db.store
    }
}

/// One app per test database (SQLite; PostgreSQL too when configured),
/// over `dags`, synced into the store.
pub async fn apps_with(dags: Vec<Dag>, config: WebConfig) -> Vec<App> {
    let mut out = Vec::new();
    for db in databases().await {
        let registry = Arc::new(Registry::from_dags(dags.clone()).unwrap());
        db::sync_registry(&db.store, &registry, Utc::now())
            .await
            .unwrap();
        let state = WebState::new(db.store.clone(), registry, Metrics::new(), config.clone())
            .await
            .unwrap();
        let token = state.api_token().token.clone();
        out.push(App {
            app: web::router(state.clone()),
            state,
            db,
            token,
        });
    }
    out
}

pub async fn apps() -> Vec<App> {
    apps_with(
        vec![etl(), reports()],
        WebConfig::default().with_scheduler_id(SCHEDULER_ID),
    )
    .await
}

/// The base path of [`apps_under_base`].
pub const BASE: &str = "/goflow";

/// [`apps`] served under [`BASE`], as a host application mounts them.
pub async fn apps_under_base() -> Vec<App> {
    apps_with(
        vec![etl(), reports()],
        WebConfig::default()
            .with_scheduler_id(SCHEDULER_ID)
            .with_base_path(BASE)
            .unwrap(),
    )
    .await
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.text))
            .to_owned()
    }

    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `Set-Cookie` value of cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// An API call with `token` (none when `None`) and a JSON body.
pub async fn api(
    app: &App,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    send(&app.app, req).await
}

pub async fn get(app: &App, uri: &str) -> Resp {
    api(app, Method::GET, uri, Some(&app.token.clone()), None).await
}

pub async fn post(app: &App, uri: &str, body: serde_json::Value) -> Resp {
    api(app, Method::POST, uri, Some(&app.token.clone()), Some(body)).await
}

/// A queued manual run of `dag` at `at`.
pub async fn new_run(store: &Store, dag: &Dag, at: DateTime<Utc>) -> RunRow {
    let version = store
        .get_dag(dag.id().as_str())
        .await
        .unwrap()
        .unwrap()
        .version;
    let new = db::new_run(
        dag,
        version,
        RunType::Manual,
        DataInterval::at(at),
        serde_json::json!({}),
    );
    store.create_run(&new, Utc::now()).await.unwrap()
}

/// Starts a queued run.
pub async fn start_run(store: &Store, run: &RunRow) {
    assert!(store
        .set_run_state(run.id, RunState::Queued, RunState::Running, Utc::now())
        .await
        .unwrap());
}

/// Ends a running run.
pub async fn end_run(store: &Store, run: &RunRow, state: RunState) {
    assert!(store
        .set_run_state(run.id, RunState::Running, state, Utc::now())
        .await
        .unwrap());
}

/// Moves a pending task of a running run to running, as a scheduler
/// would: scheduled, claimed (queued, a new try), started.
pub async fn run_task(store: &Store, run: &RunRow, task: &str) {
    let now = Utc::now();
    assert!(store
        .update_task(
            run.id,
            task,
            TaskState::Pending,
            TaskUpdate::new(TaskState::Scheduled),
            now
        )
        .await
        .unwrap());
    let claimed = store
        .claim_tasks_in("web-test", &[run.id], &Default::default(), 1, now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "claimed {task}");
    assert_eq!(claimed[0].instance.task_id, task);
    let update = TaskUpdate {
        start_date: Some(now - Duration::milliseconds(1500)),
        ..TaskUpdate::new(TaskState::Running)
    };
    assert!(store
        .update_task(run.id, task, TaskState::Queued, update, now)
        .await
        .unwrap());
}

/// Ends a running task with `end`, its try measured and its pod's
/// reservation recorded.
pub async fn end_task(store: &Store, run: &RunRow, task: &str, end: TaskState) {
    let update = TaskUpdate {
        end_date: Some(Utc::now()),
        measurements: Some(goflow_store::TryMeasurements {
            exit_code: Some(if end == TaskState::Success { 0 } else { 1 }),
            peak_memory_bytes: Some(64 * 1024 * 1024),
            cpu_user_ms: Some(900),
            cpu_system_ms: Some(100),
            // As a Kubernetes pod would have reserved.
            cpu_request_millis: Some(500),
            memory_request_bytes: Some(128 * 1024 * 1024),
            memory_limit_bytes: Some(256 * 1024 * 1024),
            ..Default::default()
        }),
        error: (end == TaskState::Failed).then(|| "boom".to_owned()),
        ..TaskUpdate::new(end)
    };
    assert!(store
        .update_task(run.id, task, TaskState::Running, update, Utc::now())
        .await
        .unwrap());
}

/// A pending task that will not run because an upstream failed.
pub async fn upstream_failed(store: &Store, run: &RunRow, task: &str) {
    assert!(store
        .update_task(
            run.id,
            task,
            TaskState::Pending,
            TaskUpdate::new(TaskState::UpstreamFailed),
            Utc::now()
        )
        .await
        .unwrap());
}

/// A finished run of `etl` at `at` where everything succeeded.
pub async fn succeeded_run(store: &Store, at: DateTime<Utc>) -> RunRow {
    let run = new_run(store, &etl(), at).await;
    start_run(store, &run).await;
    for t in ["extract", "left", "right", "merge", "notify"] {
        run_task(store, &run, t).await;
        end_task(store, &run, t, TaskState::Success).await;
    }
    end_run(store, &run, RunState::Success).await;
    store.get_run(run.id).await.unwrap().unwrap()
}

/// A finished run of `etl` at `at` where `left` failed.
pub async fn failed_run(store: &Store, at: DateTime<Utc>) -> RunRow {
    let run = new_run(store, &etl(), at).await;
    start_run(store, &run).await;
    for (t, end) in [
        ("extract", TaskState::Success),
        ("left", TaskState::Failed),
        ("right", TaskState::Success),
    ] {
        run_task(store, &run, t).await;
        end_task(store, &run, t, end).await;
    }
    upstream_failed(store, &run, "merge").await;
    upstream_failed(store, &run, "notify").await;
    end_run(store, &run, RunState::Failed).await;
    store.get_run(run.id).await.unwrap().unwrap()
}

pub async fn task_state(store: &Store, run: &RunRow, task: &str) -> TaskState {
    store
        .task_instance(run.id, task)
        .await
        .unwrap()
        .unwrap()
        .state
}

pub fn at(day: u32) -> DateTime<Utc> {
    start() + Duration::days(i64::from(day))
}

/// The path of a run in the API.
pub fn run_path(run: &RunRow) -> String {
    format!("/api/v1/dags/{}/runs/{}", run.dag_id, run.run_id)
}
