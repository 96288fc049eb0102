//! The web server of a goflow binary: a server-rendered UI, a JSON REST API
//! under `/api/v1` with its OpenAPI document, Prometheus metrics, and
//! health probes. Everything is in the binary: pages are rendered with
//! `maud`, the stylesheet and script are embedded, no npm step exists.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use goflow_runtime::metrics::Metrics;
//! use goflow_runtime::web::{self, TokenOrigin, WebConfig, WebState};
//! use goflow_runtime::{db, Registry};
//!
//! let store = db::open("sqlite://goflow.db").await?;
//! let registry = Arc::new(Registry::from_inventory()?);
//! let state = WebState::new(store, registry, Metrics::new(), WebConfig::from_env()).await?;
//! if state.api_token().origin == TokenOrigin::Generated {
//!     println!("API token (also the UI password of `admin`): {}", state.api_token().token);
//! }
//! // Or mount `web::router(state)` in an axum application of your own.
//! web::serve("127.0.0.1:8080".parse()?, state, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Routes
//!
//! | path | what | auth |
//! |---|---|---|
//! | `/healthz` | the process answers: `200 ok` | none |
//! | `/readyz` | the database answers: `200 ok`, else `503` | none |
//! | `/metrics` | Prometheus text (see [`crate::metrics`]) | token or session |
//! | `/api/v1/...` | the REST API; `/api/v1/openapi.json` describes it | token or session |
//! | `/login`, `/logout` | UI login form, logout | none, CSRF |
//! | `/`, `/dags`, `/dags/{dag}`, `/dags/{dag}/runs/{run}`, ... | the UI | session |
//! | `/static/...` | the embedded stylesheet and script | none |
//!
//! # Authentication
//!
//! - **API**: `Authorization: Bearer <token>`. The token is
//!   `GOFLOW_API_TOKEN` when set (16 characters at least); otherwise one is
//!   generated on first start, stored in the database (table
//!   `web_settings`) and reused by every later start and every replica;
//!   [`WebState::api_token`] says which, so that the caller prints a
//!   generated token once.
//! - **UI**: a login form. The user is `admin` (or `GOFLOW_UI_USERNAME`);
//!   the password is `GOFLOW_UI_PASSWORD` when set, else the API token. A
//!   login creates a session, stored in the database (table
//!   `web_sessions`, so it survives restarts and works across replicas),
//!   whose random id travels in an `HttpOnly; SameSite=Strict` cookie
//!   (`Secure` too when `GOFLOW_COOKIE_SECURE=true`). Every form carries
//!   the session's CSRF token; a form without it, or with another, is
//!   refused with `403` and changes nothing. The login form itself is
//!   protected by a double-submit cookie.
//! - A UI session may also call the API (the log viewer polls it):
//!   reads need only the cookie, changes also need the `X-CSRF-Token`
//!   header.
//! - A request without credentials, or with wrong ones, gets `401` (JSON
//!   `{"error": ...}` from the API; a redirect to the login page for UI
//!   pages) and changes nothing.
//! - Routes given to [`router_with`] (the task API of workers, with its
//!   own per-try tokens) are outside all of this.

mod api;
mod auth;
mod error;
mod pages;
mod service;
mod svg;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use goflow_store::Store;
use tokio::net::TcpListener;

pub use error::WebError;

use crate::metrics::Metrics;
use crate::Registry;

/// The environment variable holding the API token.
pub const API_TOKEN_ENV: &str = "GOFLOW_API_TOKEN";
/// The environment variable holding the UI password (default: the API
/// token).
pub const UI_PASSWORD_ENV: &str = "GOFLOW_UI_PASSWORD";
/// The environment variable holding the UI user name (default: `admin`).
pub const UI_USERNAME_ENV: &str = "GOFLOW_UI_USERNAME";
/// The environment variable that, set to `true`, marks cookies `Secure`
/// (for a server behind HTTPS).
pub const COOKIE_SECURE_ENV: &str = "GOFLOW_COOKIE_SECURE";

/// The key of the generated API token in the `web_settings` table.
const TOKEN_SETTING: &str = "api_token";

/// The shortest API token or UI password accepted from the environment.
pub const MIN_SECRET_LEN: usize = 16;

/// How the web server authenticates and what it reports on.
#[derive(Clone)]
pub struct WebConfig {
    /// The API token; `None` to use the one stored in the database
    /// (generated on first start).
    pub api_token: Option<String>,
    /// The UI user name.
    pub ui_username: String,
    /// The UI password; `None` for the API token.
    pub ui_password: Option<String>,
    /// How long a UI login lasts.
    pub session_ttl: Duration,
    /// Whether cookies are marked `Secure` (sent over HTTPS only).
    pub secure_cookies: bool,
    /// The scheduler whose health `/health` and `/api/v1/health` report
    /// first (its id in the `schedulers` table); `None` for all alike.
    pub scheduler_id: Option<String>,
    /// A scheduler whose last heartbeat is older than this is reported
    /// dead.
    pub scheduler_stale_after: Duration,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("api_token", &self.api_token.as_ref().map(|_| "<secret>"))
            .field("ui_username", &self.ui_username)
            .field(
                "ui_password",
                &self.ui_password.as_ref().map(|_| "<secret>"),
            )
            .field("session_ttl", &self.session_ttl)
            .field("secure_cookies", &self.secure_cookies)
            .field("scheduler_id", &self.scheduler_id)
            .field("scheduler_stale_after", &self.scheduler_stale_after)
            .finish()
    }
}

impl Default for WebConfig {
    /// No secrets given (a token is generated), user `admin`, 12-hour
    /// sessions, cookies not `Secure`, schedulers stale after 30 s.
    fn default() -> Self {
        WebConfig {
            api_token: None,
            ui_username: "admin".to_owned(),
            ui_password: None,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            scheduler_id: None,
            scheduler_stale_after: Duration::from_secs(30),
        }
    }
}

impl WebConfig {
    /// The defaults, with `GOFLOW_API_TOKEN`, `GOFLOW_UI_USERNAME`,
    /// `GOFLOW_UI_PASSWORD` and `GOFLOW_COOKIE_SECURE` applied (empty
    /// values are ignored).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = WebConfig {
            api_token: var(API_TOKEN_ENV),
            ui_password: var(UI_PASSWORD_ENV),
            secure_cookies: var(COOKIE_SECURE_ENV)
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes")),
            ..WebConfig::default()
        };
        if let Some(user) = var(UI_USERNAME_ENV) {
            config.ui_username = user;
        }
        config
    }

    /// Sets the scheduler whose health is reported.
    pub fn with_scheduler_id(mut self, id: impl Into<String>) -> Self {
        self.scheduler_id = Some(id.into());
        self
    }
}

/// Where the API token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `GOFLOW_API_TOKEN` (or [`WebConfig::api_token`]).
    Configured,
    /// Generated by an earlier start and read from the database.
    Stored,
    /// Generated and stored by this start: print it, it is needed to log
    /// in.
    Generated,
}

/// The API token and where it came from.
#[derive(Clone)]
pub struct ApiToken {
    /// The token: `Authorization: Bearer <token>`.
    pub token: String,
    /// Where it came from.
    pub origin: TokenOrigin,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<secret>")
            .field("origin", &self.origin)
            .finish()
    }
}

/// What the handlers share: the store, the binary's DAGs, the metrics, the
/// authentication settings. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    metrics: Metrics,
    config: WebConfig,
    token: ApiToken,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("store", &self.inner.store)
            .field("dags", &self.inner.registry.len())
            .field("config", &self.inner.config)
            .field("token", &self.inner.token)
            .finish()
    }
}

impl WebState {
    /// The state of a web server over `store` (migrated) for the DAGs of
    /// `registry`. Resolves the API token: the configured one, else the
    /// one stored in the database, else a new one, generated and stored
    /// (see [`WebState::api_token`]).
    ///
    /// The UI lists the DAGs of the store: the scheduler syncs the
    /// binary's DAGs into it when it starts (or call
    /// [`crate::db::sync_registry`]).
    pub async fn new(
        store: Store,
        registry: Arc<Registry>,
        metrics: Metrics,
        config: WebConfig,
    ) -> Result<Self, WebError> {
        let now = chrono::Utc::now();
        let token = match &config.api_token {
            Some(t) if t.trim().chars().count() < MIN_SECRET_LEN => {
                return Err(WebError::Config(format!(
                    "{API_TOKEN_ENV} must be at least {MIN_SECRET_LEN} characters long"
                )))
            }
            Some(t) => ApiToken {
                token: t.trim().to_owned(),
                origin: TokenOrigin::Configured,
            },
            None => {
                let (token, inserted) = store
                    .init_setting(TOKEN_SETTING, &auth::random_token(), now)
                    .await?;
                ApiToken {
                    token,
                    origin: if inserted {
                        TokenOrigin::Generated
                    } else {
                        TokenOrigin::Stored
                    },
                }
            }
        };
        if let Some(p) = &config.ui_password {
            if p.chars().count() < MIN_SECRET_LEN {
                return Err(WebError::Config(format!(
                    "{UI_PASSWORD_ENV} must be at least {MIN_SECRET_LEN} characters long"
                )));
            }
        }
        if config.ui_username.trim().is_empty() {
            return Err(WebError::Config("the UI user name is empty".to_owned()));
        }
        Ok(WebState {
            inner: Arc::new(Inner {
                store,
                registry,
                metrics,
                config,
                token,
            }),
        })
    }

    /// The API token and where it came from.
    pub fn api_token(&self) -> &ApiToken {
        &self.inner.token
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The binary's DAGs.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The metrics served at `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// The UI password: the configured one, else the API token.
    fn ui_password(&self) -> &str {
        self.inner
            .config
            .ui_password
            .as_deref()
            .unwrap_or(&self.inner.token.token)
    }
}

/// The whole web application: UI, API, metrics and probes, for
/// [`serve`] or to mount in an axum application.
pub fn router(state: WebState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] merged with `extra` routes that the UI and API
/// authentication does not apply to: the task API of workers, which checks
/// its own per-try tokens, goes here, as
/// `Router::new().nest(task_api::MOUNT_PATH, task_api::router(api))`.
/// `extra` must not repeat a path of the UI or API: give it a prefix of
/// its own, as [`crate::task_api::MOUNT_PATH`] is.
pub fn router_with(state: WebState, extra: Router) -> Router {
    let api_auth = middleware::from_fn_with_state(state.clone(), auth::api_auth);
    let api = api::routes().route_layer(api_auth.clone());
    let metrics = Router::new()
        .route("/metrics", get(metrics_text))
        .route_layer(api_auth);
    let ui =
        pages::routes().route_layer(middleware::from_fn_with_state(state.clone(), auth::ui_auth));
    let public = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/static/{file}", get(views::asset));
    Router::new()
        .nest("/api/v1", api.fallback(api::not_found))
        .merge(metrics)
        .merge(ui)
        .merge(public)
        .fallback(pages::not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
        .merge(extra)
}

/// Serves [`router`]`(state)` on `bind` until `shutdown` completes. Prints
/// nothing.
pub async fn serve(
    bind: SocketAddr,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| WebError::Bind { addr: bind, source })?;
    serve_app(listener, router(state), shutdown).await
}

/// Serves `app` (e.g. [`router_with`]) on a listener bound beforehand (to
/// learn the port of `127.0.0.1:0`, say) until `shutdown` completes.
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(WebError::Serve)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and the scheduler of this process (if
/// any) is keeping up. Unauthenticated, so it says no more than that: the
/// reason is in the health API.
async fn readyz(State(state): State<WebState>) -> Response {
    let scheduler_ok = state.metrics().scheduler_problem().is_none();
    match state.store().ping().await {
        Ok(()) if scheduler_ok => "ok".into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response(),
    }
}

async fn metrics_text(State(state): State<WebState>) -> Result<Response, error::ApiError> {
    let store = state.store();
    let (runs, tasks) = tokio::try_join!(
        store.count_all_runs_by_state(),
        store.count_task_instances_by_state()
    )?;
    state.metrics().set_store_counts(&runs, &tasks);
    let text = state
        .metrics()
        .encode()
        .map_err(|_| WebError::Internal("cannot encode the metrics".to_owned()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Headers on every UI and API response: no framing, no sniffing, no
/// inline scripts or styles, no referrer to other sites.
async fn security_headers(req: axum::extract::Request, next: middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}
