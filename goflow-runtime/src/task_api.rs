//! The task API: how a worker that has no database credentials (a
//! Kubernetes Job's pod) gets its inputs and reports back, over HTTP,
//! through the scheduler that launched it.
//!
//! The executor [`register`](TaskApi::register)s each try it launches and
//! hands the worker a bearer token that is valid for that one try only,
//! while it runs. The worker, `<bin> tasks run <dag> <run> <task> --try N`
//! with [`TASK_API_URL_ENV`] and [`TASK_TOKEN_ENV`] set, then calls (paths
//! relative to the URL in [`TASK_API_URL_ENV`], each segment
//! percent-encoded):
//!
//! | request | body | what |
//! |---|---|---|
//! | `GET  /dags/{dag}/runs/{run}/tasks/{task}/tries/{n}/payload` | | the [`LaunchPayload`] (the same JSON the local-process executor writes to a worker's stdin) |
//! | `POST /dags/{dag}/runs/{run}/tasks/{task}/tries/{n}/result` | a [`WorkerResult`] | the try's outcome and metrics |
//! | `POST /dags/{dag}/runs/{run}/tasks/{task}/tries/{n}/logs` | `{"lines": [{"stream": "stdout", "line": "..."}]}` | log lines, stored at once |
//! | `POST /dags/{dag}/runs/{run}/tasks/{task}/tries/{n}/heartbeat` | | a sign of life |
//!
//! Every request carries `Authorization: Bearer <token>`. Answers: `401`
//! without a bearer token, `403` when the token is not the one of the try
//! in the path (a token never opens another try), `410` when the try is
//! not (or no longer) running, `400`/`422` for a body that is not what the
//! table says, `413` for a body over the limit (the scheduler's output
//! limit and room for the rest of the result; see
//! [`TaskApi::with_max_body_bytes`]). Errors are `{"error": "..."}`.
//!
//! [`router`] builds the axum router; the web server mounts it under
//! [`MOUNT_PATH`]:
//!
//! ```no_run
//! # fn doc(task_api: goflow_runtime::task_api::TaskApi) {
//! use goflow_runtime::task_api;
//! let app: axum::Router = axum::Router::new()
//!     .nest(task_api::MOUNT_PATH, task_api::router(task_api));
//! # }
//! ```
//!
//! Tokens are HMAC-SHA256 of the try's identity under the API's secret, so
//! nothing per token is stored, and a scheduler restarted with the same
//! secret ([`TASK_TOKEN_SECRET_ENV`]) accepts the tokens of the pods it
//! adopts. With the `kubernetes` feature, `TaskApiClient` is the
//! worker's side.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use goflow_core::EdgeKind;
use goflow_store::LogStream;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::time::Instant;

use crate::executor::{EventSender, ExecutorEvent, Launch, TryKey};
use crate::worker::{LaunchPayload, WorkerResult};

/// Where the web server mounts [`router`].
pub const MOUNT_PATH: &str = "/api/v1/task-api";
/// The environment variable giving a worker the task API's URL (the
/// scheduler's advertised URL followed by [`MOUNT_PATH`]).
pub const TASK_API_URL_ENV: &str = "GOFLOW_TASK_API_URL";
/// The environment variable giving a worker its try's bearer token.
pub const TASK_TOKEN_ENV: &str = "GOFLOW_TASK_TOKEN";
/// The environment variable holding the secret tokens are derived from.
/// Give every scheduler replica the same one (a Kubernetes Secret), so
/// that pods keep working across a restart or a take-over; without it
/// each process draws a random secret.
pub const TASK_TOKEN_SECRET_ENV: &str = "GOFLOW_TASK_TOKEN_SECRET";

/// One try, named the way a worker names it (its `tasks run` arguments).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TryRef {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's id.
    pub run_id: String,
    /// The task's id.
    pub task_id: String,
    /// The try number, from 1.
    pub try_number: u32,
}

impl TryRef {
    /// The try a launch is for.
    pub fn of(launch: &Launch) -> Self {
        TryRef {
            dag_id: launch.ctx.dag_id().to_string(),
            run_id: launch.ctx.run_id().to_string(),
            task_id: launch.ctx.task_id().to_string(),
            try_number: launch.ctx.try_number(),
        }
    }

    /// The path of one of its endpoints (`payload`, `result`, `logs`,
    /// `heartbeat`) relative to the API's root, percent-encoded.
    pub fn path(&self, endpoint: &str) -> String {
        format!(
            "/dags/{}/runs/{}/tasks/{}/tries/{}/{endpoint}",
            utf8_percent_encode(&self.dag_id, UNRESERVED),
            utf8_percent_encode(&self.run_id, UNRESERVED),
            utf8_percent_encode(&self.task_id, UNRESERVED),
            self.try_number
        )
    }
}

impl fmt::Display for TryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} try {}",
            self.dag_id, self.run_id, self.task_id, self.try_number
        )
    }
}

/// What [`TryRef::path`] escapes in an id: every byte but RFC 3986's
/// unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The payload a worker of `launch` needs: its context and the outputs of
/// its data upstreams.
pub fn launch_payload(launch: &Launch) -> LaunchPayload {
    let dag = &launch.dag;
    let node = &dag.tasks()[launch.key.task];
    LaunchPayload {
        inputs: node
            .upstream
            .iter()
            .filter(|up| up.kind == EdgeKind::Data)
            .filter_map(|up| {
                let id = dag.tasks()[up.task].id.as_str();
                launch.inputs.raw(id).map(|v| (id.to_owned(), v.clone()))
            })
            .collect(),
        context: launch.ctx.clone(),
    }
}

/// A log line as a worker posts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its stream.
    pub stream: LogStream,
    /// The line, without its newline.
    pub line: String,
}

/// The body of a `logs` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    /// The lines, oldest first.
    pub lines: Vec<LogEntry>,
}

/// The tries the task API serves, and the secret their tokens derive
/// from. Cheap to clone: clones share the same tries.
#[derive(Clone)]
pub struct TaskApi {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Vec<u8>,
    tries: Mutex<HashMap<TryRef, Entry>>,
    max_body_bytes: AtomicUsize,
}

/// Room in a result body beside the output itself (error text, metrics).
const BODY_ENVELOPE_BYTES: usize = 1 << 20;

/// What the API holds for one registered try.
struct Entry {
    key: TryKey,
    /// The serialized [`LaunchPayload`].
    payload: Bytes,
    events: EventSender,
    result: Option<WorkerResult>,
    heartbeat: Option<Instant>,
}

impl fmt::Debug for TaskApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskApi")
            .field("tries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for TaskApi {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskApi {
    /// An API with the secret of [`TASK_TOKEN_SECRET_ENV`] if it is set and
    /// not empty, else a random one.
    pub fn from_env() -> Self {
        match std::env::var(TASK_TOKEN_SECRET_ENV) {
            Ok(s) if !s.trim().is_empty() => Self::with_secret(s.trim().as_bytes()),
            _ => Self::new(),
        }
    }

    /// An API with a random secret: tokens it issues are valid only while
    /// this process runs.
    pub fn new() -> Self {
        let mut secret = vec![0u8; 32];
        if let Err(e) = getrandom::fill(&mut secret) {
            // No entropy source at all: fall back on what differs per
            // process and instant, still unguessable enough to scope tries.
            tracing::warn!(error = %e, "no random source for the task API secret");
            let seed = format!(
                "{}-{:?}-{:?}",
                std::process::id(),
                std::time::SystemTime::now(),
                std::time::Instant::now()
            );
            secret = <Sha256 as sha2::Digest>::digest(seed.as_bytes()).to_vec();
        }
        Self::with_secret(&secret)
    }

    /// An API whose tokens derive from `secret`.
    pub fn with_secret(secret: &[u8]) -> Self {
        TaskApi {
            inner: Arc::new(Inner {
                secret: secret.to_vec(),
                tries: Mutex::new(HashMap::new()),
                max_body_bytes: AtomicUsize::new(
                    crate::scheduler::DEFAULT_MAX_OUTPUT_BYTES as usize + BODY_ENVELOPE_BYTES,
                ),
            }),
        }
    }

    /// Accepts request bodies up to the scheduler's output limit
    /// `max_output_bytes` (and room for the rest of a result); larger ones
    /// are answered `413` with a JSON error. Call it before [`router`].
    pub fn with_max_body_bytes(self, max_output_bytes: u64) -> Self {
        let limit = usize::try_from(max_output_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(BODY_ENVELOPE_BYTES);
        self.inner.max_body_bytes.store(limit, Ordering::Relaxed);
        self
    }

    fn mac(&self, try_ref: &TryRef) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"));
        for part in [&try_ref.dag_id, &try_ref.run_id, &try_ref.task_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.update(&try_ref.try_number.to_be_bytes());
        mac
    }

    /// The bearer token of `try_ref`.
    pub fn token_for(&self, try_ref: &TryRef) -> String {
        hex::encode(self.mac(try_ref).finalize().into_bytes())
    }

    /// Whether `token` is `try_ref`'s (in constant time).
    pub fn verify(&self, try_ref: &TryRef, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(try_ref).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// Serves `try_ref` until [`unregister`](Self::unregister): its worker
    /// can fetch `payload`, and what it posts goes to `events` (logs) or
    /// is kept for the executor (its result). Returns the try's token.
    /// Registering a try again replaces its payload and keeps a result it
    /// already posted.
    pub fn register(
        &self,
        try_ref: TryRef,
        key: TryKey,
        payload: &LaunchPayload,
        events: EventSender,
    ) -> Result<String, serde_json::Error> {
        let payload = Bytes::from(serde_json::to_vec(payload)?);
        let token = self.token_for(&try_ref);
        let mut tries = self.lock();
        let entry = tries.entry(try_ref).or_insert_with(|| Entry {
            key: key.clone(),
            payload: Bytes::new(),
            events: events.clone(),
            result: None,
            heartbeat: None,
        });
        entry.key = key;
        entry.payload = payload;
        entry.events = events;
        Ok(token)
    }

    /// Stops serving `try_ref` (its token is refused from now on); returns
    /// the result its worker posted, if any.
    pub fn unregister(&self, try_ref: &TryRef) -> Option<WorkerResult> {
        self.lock().remove(try_ref).and_then(|e| e.result)
    }

    /// The result `try_ref`'s worker posted, if any, leaving the try
    /// registered.
    pub fn result(&self, try_ref: &TryRef) -> Option<WorkerResult> {
        self.lock().get(try_ref).and_then(|e| e.result.clone())
    }

    /// When `try_ref`'s worker last sent a heartbeat (or fetched its
    /// payload, or posted anything), since it was registered in this
    /// process; `None` if it has not yet. On tokio's clock, so that an
    /// executor's deadlines (and tests with paused time) compare with it.
    pub fn last_heartbeat(&self, try_ref: &TryRef) -> Option<Instant> {
        self.lock().get(try_ref).and_then(|e| e.heartbeat)
    }

    /// How many tries are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no try is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TryRef, Entry>> {
        // A panic while holding the lock leaves the map consistent (every
        // change is a single insert or remove): keep serving.
        self.inner
            .tries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The task API's routes, relative to [`MOUNT_PATH`]. See the module docs.
pub fn router(api: TaskApi) -> Router {
    const TRY: &str = "/dags/{dag}/runs/{run}/tasks/{task}/tries/{try}";
    Router::new()
        .route(&format!("{TRY}/payload"), get(get_payload))
        .route(&format!("{TRY}/result"), post(post_result))
        .route(&format!("{TRY}/logs"), post(post_logs))
        .route(&format!("{TRY}/heartbeat"), post(post_heartbeat))
        .layer(DefaultBodyLimit::max(
            api.inner.max_body_bytes.load(Ordering::Relaxed),
        ))
        .with_state(api)
}

/// The body, or a JSON `413` when it is over the limit (axum's own answer
/// is plain text).
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is over the limit: a try's output may be at most the \
             scheduler's --max-output-bytes"
                .to_owned()
        } else {
            format!("cannot read the request body: {e}")
        };
        ApiError::new(status, message)
    })
}

/// A refusal, as JSON `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

type TryPath = Path<(String, String, String, u32)>;

/// Checks the bearer token against the try in the path, and that the try
/// is registered.
fn authorize(api: &TaskApi, path: TryPath, headers: &HeaderMap) -> Result<TryRef, ApiError> {
    let Path((dag_id, run_id, task_id, try_number)) = path;
    let try_ref = TryRef {
        dag_id,
        run_id,
        task_id,
        try_number,
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("missing `Authorization: Bearer <token>`; workers get theirs in ${TASK_TOKEN_ENV}"),
            )
        })?;
    if !api.verify(&try_ref, token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token is not valid for {try_ref}"),
        ));
    }
    if !api.lock().contains_key(&try_ref) {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("{try_ref} is not running (it finished, was cancelled, or another scheduler runs it)"),
        ));
    }
    Ok(try_ref)
}

async fn get_payload(
    State(api): State<TaskApi>,
    path: TryPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let try_ref = authorize(&api, path, &headers)?;
    let payload = {
        let mut tries = api.lock();
        let entry = tries
            .get_mut(&try_ref)
            .ok_or_else(|| ApiError::new(StatusCode::GONE, format!("{try_ref} is not running")))?;
        entry.heartbeat = Some(Instant::now());
        entry.payload.clone()
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], payload).into_response())
}

/// A JSON request body; a 422 saying what was `expected` if it is not.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid body: expected {expected}: {e}"),
        )
    })
}

async fn post_result(
    State(api): State<TaskApi>,
    path: TryPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let try_ref = authorize(&api, path, &headers)?;
    let body = body_or_error(body)?;
    let result: WorkerResult = json_body(
        &body,
        "a result: {\"outcome\": {\"status\": \"ok\", \"value\": ...}} \
         or {\"outcome\": {\"status\": \"err\", \"kind\": ..., \"message\": ...}}",
    )?;
    let mut tries = api.lock();
    if let Some(entry) = tries.get_mut(&try_ref) {
        entry.heartbeat = Some(Instant::now());
        entry.result = Some(result);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn post_logs(
    State(api): State<TaskApi>,
    path: TryPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let try_ref = authorize(&api, path, &headers)?;
    let body = body_or_error(body)?;
    let batch: LogBatch = json_body(
        &body,
        "a log batch: {\"lines\": [{\"stream\": \"stdout\"|\"stderr\"|\"system\", \"line\": \"...\"}]}",
    )?;
    let (key, events) = {
        let mut tries = api.lock();
        let Some(entry) = tries.get_mut(&try_ref) else {
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("{try_ref} is not running"),
            ));
        };
        entry.heartbeat = Some(Instant::now());
        (entry.key.clone(), entry.events.clone())
    };
    for LogEntry { stream, line } in batch.lines {
        let _ = events
            .send(ExecutorEvent::Log {
                key: key.clone(),
                stream,
                line,
            })
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn post_heartbeat(
    State(api): State<TaskApi>,
    path: TryPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let try_ref = authorize(&api, path, &headers)?;
    if let Some(entry) = api.lock().get_mut(&try_ref) {
        entry.heartbeat = Some(Instant::now());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Why a worker could not talk to the task API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskApiError {
    /// [`TASK_API_URL_ENV`] is set but this binary cannot use it.
    #[error(
        "${TASK_API_URL_ENV} is set, but this binary was built without goflow's `kubernetes` \
         feature, which the task API client needs; enable it in the binary's Cargo.toml"
    )]
    NotCompiled,
    /// The URL is not an http(s) URL.
    #[error("invalid task API URL {url:?} (from ${TASK_API_URL_ENV}): {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`TASK_API_URL_ENV`] is set without [`TASK_TOKEN_ENV`].
    #[error("${TASK_API_URL_ENV} is set but ${TASK_TOKEN_ENV} is not: the worker has no token for the task API")]
    MissingToken,
    /// The API answered with an error status.
    #[error("the task API refused {what} at {url}: {status}: {message}")]
    Refused {
        /// `GET payload`, `POST result`...
        what: &'static str,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The API could not be reached (after retrying).
    #[error(
        "cannot reach the task API for {what} at {url} (retried for {retried_secs}s): {source}"
    )]
    Unreachable {
        /// `GET payload`, `POST result`...
        what: &'static str,
        /// The URL called.
        url: String,
        /// How long it was retried.
        retried_secs: u64,
        /// The last error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API's answer is not what was expected.
    #[error("the task API's answer to {what} at {url} is not valid: {source}")]
    InvalidResponse {
        /// `GET payload`...
        what: &'static str,
        /// The URL called.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

#[cfg(feature = "kubernetes")]
pub use client::TaskApiClient;

#[cfg(feature = "kubernetes")]
mod client {
    use std::time::Duration;

    use super::{LogBatch, LogEntry, TaskApiError, TryRef, TASK_API_URL_ENV, TASK_TOKEN_ENV};
    use crate::worker::{LaunchPayload, WorkerResult};

    /// A worker's client of the task API (reqwest with rustls).
    ///
    /// Connection failures, timeouts and `5xx`/`410`/`429` answers are retried
    /// with exponential backoff for [`retry_for`](Self::retry_for) (a pod
    /// may start before its network is ready; the scheduler may be
    /// restarting); other refusals are not.
    #[derive(Clone, Debug)]
    pub struct TaskApiClient {
        http: reqwest::Client,
        base: String,
        token: String,
        try_ref: TryRef,
        retry_for: Duration,
    }

    impl TaskApiClient {
        /// A client of the API at `base_url` (with [`super::MOUNT_PATH`]) for
        /// `try_ref`, authenticating with `token`.
        pub fn new(
            base_url: &str,
            token: impl Into<String>,
            try_ref: TryRef,
        ) -> Result<Self, TaskApiError> {
            let base = base_url.trim().trim_end_matches('/').to_owned();
            let invalid = |reason: &str| TaskApiError::InvalidUrl {
                url: base_url.to_owned(),
                reason: reason.to_owned(),
            };
            let parsed = reqwest::Url::parse(&base).map_err(|e| invalid(&e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("expected an http:// or https:// URL"));
            }
            let http = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| invalid(&e.to_string()))?;
            Ok(TaskApiClient {
                http,
                base,
                token: token.into(),
                try_ref,
                retry_for: Duration::from_secs(120),
            })
        }

        /// The client [`TASK_API_URL_ENV`] and [`TASK_TOKEN_ENV`] describe,
        /// or `None` when [`TASK_API_URL_ENV`] is not set.
        pub fn from_env(try_ref: TryRef) -> Result<Option<Self>, TaskApiError> {
            let url = match std::env::var(TASK_API_URL_ENV) {
                Ok(url) if !url.trim().is_empty() => url,
                _ => return Ok(None),
            };
            let token = std::env::var(TASK_TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .ok_or(TaskApiError::MissingToken)?;
            Self::new(&url, token.trim(), try_ref).map(Some)
        }

        /// How long failures that may pass are retried (default 2 minutes).
        pub fn retry_for(mut self, limit: Duration) -> Self {
            self.retry_for = limit;
            self
        }

        /// The try this client is for.
        pub fn try_ref(&self) -> &TryRef {
            &self.try_ref
        }

        /// Fetches the try's launch payload.
        pub async fn payload(&self) -> Result<LaunchPayload, TaskApiError> {
            let (url, bytes) = self.call("GET payload", "payload", None).await?;
            serde_json::from_slice(&bytes).map_err(|source| TaskApiError::InvalidResponse {
                what: "GET payload",
                url,
                source,
            })
        }

        /// Reports the try's result.
        pub async fn post_result(&self, result: &WorkerResult) -> Result<(), TaskApiError> {
            let body =
                serde_json::to_vec(result).map_err(|source| TaskApiError::InvalidResponse {
                    what: "POST result",
                    url: self.url("result"),
                    source,
                })?;
            self.call("POST result", "result", Some(body))
                .await
                .map(drop)
        }

        /// Sends log lines.
        pub async fn post_logs(&self, lines: Vec<LogEntry>) -> Result<(), TaskApiError> {
            let body = serde_json::to_vec(&LogBatch { lines }).map_err(|source| {
                TaskApiError::InvalidResponse {
                    what: "POST logs",
                    url: self.url("logs"),
                    source,
                }
            })?;
            self.call("POST logs", "logs", Some(body)).await.map(drop)
        }

        /// Sends a heartbeat (not retried: the next one follows).
        pub async fn heartbeat(&self) -> Result<(), TaskApiError> {
            let url = self.url("heartbeat");
            let response = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| TaskApiError::Unreachable {
                    what: "POST heartbeat",
                    url: url.clone(),
                    retried_secs: 0,
                    source: Box::new(e),
                })?;
            refusal("POST heartbeat", &url, response).await.map(drop)
        }

        fn url(&self, endpoint: &str) -> String {
            format!("{}{}", self.base, self.try_ref.path(endpoint))
        }

        async fn call(
            &self,
            what: &'static str,
            endpoint: &str,
            body: Option<Vec<u8>>,
        ) -> Result<(String, Vec<u8>), TaskApiError> {
            let url = self.url(endpoint);
            let started = tokio::time::Instant::now();
            let mut delay = Duration::from_millis(250);
            loop {
                let request = match &body {
                    Some(body) => self
                        .http
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone()),
                    None => self.http.get(&url),
                };
                let failure: Box<dyn std::error::Error + Send + Sync> =
                    match request.bearer_auth(&self.token).send().await {
                        Ok(response) => {
                            let status = response.status();
                            // 410: the try is not registered (yet) — a
                            // restarted scheduler registers it again when it
                            // adopts the pod's Job.
                            if status.is_server_error() || matches!(status.as_u16(), 410 | 429) {
                                let text = response.text().await.unwrap_or_default();
                                format!("{status}: {}", error_message(&text)).into()
                            } else {
                                let response = refusal(what, &url, response).await?;
                                let bytes = response.bytes().await.map_err(|e| {
                                    TaskApiError::Unreachable {
                                        what,
                                        url: url.clone(),
                                        retried_secs: started.elapsed().as_secs(),
                                        source: Box::new(e),
                                    }
                                })?;
                                return Ok((url, bytes.to_vec()));
                            }
                        }
                        Err(e) => Box::new(e),
                    };
                if started.elapsed() + delay > self.retry_for {
                    return Err(TaskApiError::Unreachable {
                        what,
                        url,
                        retried_secs: started.elapsed().as_secs(),
                        source: failure,
                    });
                }
                tracing::debug!(%url, error = %failure, "task API call failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
        }
    }

    /// The response if it is a success, else the refusal it describes.
    async fn refusal(
        what: &'static str,
        url: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, TaskApiError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(TaskApiError::Refused {
            what,
            url: url.to_owned(),
            status: status.as_u16(),
            message: error_message(&text),
        })
    }

    /// The `error` of a JSON error body, else the body itself.
    fn error_message(text: &str) -> String {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().chars().take(500).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_ref(n: u32) -> TryRef {
        TryRef {
            dag_id: "etl".into(),
            run_id: "scheduled__2026-01-01T00:00:00+00:00".into(),
            task_id: "load_rows".into(),
            try_number: n,
        }
    }

    #[test]
    fn tokens_are_per_try_and_per_secret() {
        let api = TaskApi::with_secret(b"s3cret");
        let t1 = api.token_for(&try_ref(1));
        assert_eq!(t1.len(), 64);
        assert!(api.verify(&try_ref(1), &t1));
        assert!(!api.verify(&try_ref(2), &t1));
        assert!(!api.verify(&try_ref(1), "zz"));
        assert!(!api.verify(&try_ref(1), &t1[..63]), "an odd length");
        assert!(
            api.verify(&try_ref(1), &t1.to_uppercase()),
            "hex digits in either case"
        );
        assert!(!api.verify(&try_ref(1), ""));
        // Same secret, same token: a restarted scheduler keeps its pods.
        assert_eq!(TaskApi::with_secret(b"s3cret").token_for(&try_ref(1)), t1);
        assert_ne!(TaskApi::with_secret(b"other").token_for(&try_ref(1)), t1);
        assert_ne!(
            TaskApi::new().token_for(&try_ref(1)),
            TaskApi::new().token_for(&try_ref(1))
        );
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let a = TryRef {
            dag_id: "ab".into(),
            run_id: "c".into(),
            ..try_ref(1)
        };
        let b = TryRef {
            dag_id: "a".into(),
            run_id: "bc".into(),
            ..try_ref(1)
        };
        assert_ne!(api.token_for(&a), api.token_for(&b));
    }

    #[test]
    fn paths_encode_run_ids() {
        assert_eq!(
            try_ref(3).path("payload"),
            "/dags/etl/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/load_rows/tries/3/payload"
        );
    }
}
