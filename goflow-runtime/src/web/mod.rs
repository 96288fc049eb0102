//! The web server of a goflow binary: a server-rendered UI, a JSON REST API
//! under `/api/v1` with its OpenAPI document, Prometheus metrics, and
//! health probes. Everything is in the binary: pages are rendered with
//! `maud`, the stylesheet and script are embedded, no npm step exists.
//!
//! Everything is served under a base path ([`WebConfig::base_path`],
//! `GOFLOW_BASE_PATH`; empty for the root), so the router merges into a
//! host application as it is: every link, redirect, form, asset, script
//! URL and cookie of the UI carries the base path.
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
//! web::serve("127.0.0.1:8080".parse()?, state, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Or merge goflow into an axum application of your own, under a base
//! path: the host keeps its routes, its own `/healthz` and its fallback.
//!
//! ```no_run
//! # async fn demo(store: goflow_store::Store, registry: std::sync::Arc<goflow_runtime::Registry>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use axum::routing::get;
//! use goflow_runtime::metrics::Metrics;
//! use goflow_runtime::web::{self, WebConfig, WebState};
//!
//! let config = WebConfig::from_env().with_base_path("/goflow")?;
//! let state = WebState::new(store, registry, Metrics::new(), config).await?;
//! let app = axum::Router::new()
//!     .route("/healthz", get(|| async { "host ok" }))
//!     .merge(web::router(state)) // /goflow/dags, /goflow/api/v1/..., /goflow/healthz
//!     .fallback(|| async { "the host's own 404" });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Routes
//!
//! Every path is under the base path `<base>` (empty by default).
//!
//! | path | what | auth |
//! |---|---|---|
//! | `<base>/healthz` | the process answers: `200 ok` ([`Probes::liveness`]) | none |
//! | `<base>/readyz` | the database answers: `200 ok`, else `503` ([`Probes::readiness`]) | none |
//! | `<base>/metrics` | Prometheus text (see [`crate::metrics`]) | token or session |
//! | `<base>/api/v1/...` | the REST API; `<base>/api/v1/openapi.json` describes it | token or session |
//! | `<base>/login`, `<base>/logout` | UI login form, logout | none, CSRF |
//! | `<base>/`, `<base>/dags`, `<base>/dags/{dag}`, `<base>/dags/{dag}/runs/{run}`, ... | the UI | session |
//! | `<base>/static/...` | the embedded stylesheet and script | none |
//!
//! The router has no fallback of its own at the top: under a non-empty
//! base, unknown paths under `<base>/` get the UI's 404 page (and
//! `<base>/api/v1/...` a JSON 404), and what is outside the base is the
//! host's. [`standalone`] adds the 404 page for every other path, as
//! [`serve`] does.
//!
//! Every response of these routes carries security headers
//! (`Content-Security-Policy` without inline scripts, `X-Frame-Options`,
//! `X-Content-Type-Options`, `Referrer-Policy`), is traced at `DEBUG`
//! (target `tower_http::trace`), is gzip-compressed when the client
//! accepts it (never the log event stream), and must start within
//! [`WebConfig::request_timeout`] (`503` otherwise; a streamed body, as
//! the live log, is not cut).
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
//!   whose `Path` is the base path (`Secure` too when
//!   `GOFLOW_COOKIE_SECURE=true`). Every form carries
//!   the session's CSRF token; a form without it, or with another, is
//!   refused with `403` and changes nothing. The login form itself is
//!   protected by a double-submit cookie. After a login the user goes
//!   back to the page asked for (`?next=`), which must be a path under
//!   the base path.
//! - A UI session may also call the API (the log viewer polls it):
//!   reads need only the cookie, changes also need the `X-CSRF-Token`
//!   header.
//! - A request without credentials, or with wrong ones, gets `401` (JSON
//!   `{"error": ...}` from the API; a redirect to the login page for UI
//!   pages) and changes nothing.
//! - Routes given to [`router_with`] (the task API of workers, with its
//!   own per-try tokens) are outside all of this; they are mounted under
//!   the base path too.

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
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use goflow_store::Store;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{
    DefaultMakeSpan, DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, TraceLayer,
};
use tracing::Level;

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
/// The environment variable holding the base path everything is served
/// under (`/goflow`, say; default: the root). See [`WebConfig::base_path`].
pub const BASE_PATH_ENV: &str = "GOFLOW_BASE_PATH";

/// The key of the generated API token in the `web_settings` table.
const TOKEN_SETTING: &str = "api_token";

/// The shortest API token or UI password accepted from the environment.
pub const MIN_SECRET_LEN: usize = 16;

/// The first segments of the UI's and API's own paths, which a probe may
/// not take.
const RESERVED_SEGMENTS: [&str; 7] = [
    "api", "dags", "health", "login", "logout", "metrics", "static",
];

/// How the web server authenticates, where it is mounted, and what it
/// reports on.
///
/// Non-exhaustive: start from [`WebConfig::default`] (or
/// [`WebConfig::from_env`]) and set the fields you need.
#[derive(Clone)]
#[non_exhaustive]
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
    /// The path every route is served under: `""` for the root (the
    /// default), else `/goflow` or `/tools/goflow` — a leading slash, no
    /// trailing one, segments of letters, digits, `-`, `.`, `_` and `~`.
    /// Set it with [`WebConfig::with_base_path`], which checks and
    /// normalises it (`goflow/` becomes `/goflow`); [`WebState::new`]
    /// refuses a bad one.
    pub base_path: String,
    /// The health probes' paths (under [`base_path`](Self::base_path));
    /// `None` serves none (a host with probes of its own, say).
    pub probes: Option<Probes>,
    /// How long a request may take until its response starts; then it is
    /// answered `503`. A streamed body (the live log) is not cut.
    pub request_timeout: Duration,
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
            .field("base_path", &self.base_path)
            .field("probes", &self.probes)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for WebConfig {
    /// No secrets given (a token is generated), user `admin`, 12-hour
    /// sessions, cookies not `Secure`, schedulers stale after 30 s,
    /// served at the root with probes at `/healthz` and `/readyz`,
    /// requests timed out after 30 s.
    fn default() -> Self {
        WebConfig {
            api_token: None,
            ui_username: "admin".to_owned(),
            ui_password: None,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            scheduler_id: None,
            scheduler_stale_after: Duration::from_secs(30),
            base_path: String::new(),
            probes: Some(Probes::default()),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl WebConfig {
    /// The defaults, with `GOFLOW_API_TOKEN`, `GOFLOW_UI_USERNAME`,
    /// `GOFLOW_UI_PASSWORD`, `GOFLOW_COOKIE_SECURE` and `GOFLOW_BASE_PATH`
    /// applied (empty values are ignored). A base path is normalised
    /// when valid, and kept as given otherwise, for [`WebState::new`] to
    /// refuse with a message naming it.
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
        if let Some(base) = var(BASE_PATH_ENV) {
            config.base_path = normalize_path("base path", &base, true).unwrap_or(base);
        }
        config
    }

    /// Sets the scheduler whose health is reported.
    pub fn with_scheduler_id(mut self, id: impl Into<String>) -> Self {
        self.scheduler_id = Some(id.into());
        self
    }

    /// Serves everything under `path` (see [`base_path`](Self::base_path)):
    /// `""` or `/` for the root, else `/goflow`, `goflow/` (normalised to
    /// `/goflow`), `/tools/goflow`. Refused with [`WebError::Config`]
    /// naming the value when it has a `?`, `#`, `//`, a `.` or `..`
    /// segment, or another character than letters, digits, `-`, `.`, `_`,
    /// `~` and `/`.
    pub fn with_base_path(mut self, path: impl AsRef<str>) -> Result<Self, WebError> {
        self.base_path = normalize_path("base path", path.as_ref(), true)?;
        Ok(self)
    }

    /// Sets the health probes' paths, or leaves them out with `None`.
    pub fn with_probes(mut self, probes: impl Into<Option<Probes>>) -> Self {
        self.probes = probes.into();
        self
    }

    /// Sets how long a request may take until its response starts.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// This configuration checked, with its paths normalised, as
    /// [`WebState::new`] takes it: a [`WebError::Config`] names what is
    /// wrong (a short token or password, an empty user, a bad base path
    /// or probe path, a zero timeout).
    pub fn validate(mut self) -> Result<Self, WebError> {
        if let Some(t) = &self.api_token {
            if t.trim().chars().count() < MIN_SECRET_LEN {
                return Err(WebError::Config(format!(
                    "{API_TOKEN_ENV} must be at least {MIN_SECRET_LEN} characters long"
                )));
            }
        }
        if let Some(p) = &self.ui_password {
            if p.chars().count() < MIN_SECRET_LEN {
                return Err(WebError::Config(format!(
                    "{UI_PASSWORD_ENV} must be at least {MIN_SECRET_LEN} characters long"
                )));
            }
        }
        if self.ui_username.trim().is_empty() {
            return Err(WebError::Config("the UI user name is empty".to_owned()));
        }
        if self.request_timeout.is_zero() {
            return Err(WebError::Config(
                "the request timeout must be longer than zero".to_owned(),
            ));
        }
        self.base_path = normalize_path("base path", &self.base_path, true)?;
        if let Some(p) = self.probes.take() {
            self.probes = Some(Probes::new(p.liveness, p.readiness)?);
        }
        Ok(self)
    }
}

/// The paths of the health probes, under the base path. Both answer
/// without credentials: the liveness probe `200 ok` while the process
/// serves, the readiness probe `200 ok` while the database answers and
/// this process's scheduler keeps up (`503` otherwise).
///
/// Non-exhaustive: build it with [`Probes::new`], which checks the
/// paths, or [`Probes::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probes {
    /// The liveness probe's path (default `/healthz`).
    pub liveness: String,
    /// The readiness probe's path (default `/readyz`).
    pub readiness: String,
}

impl Default for Probes {
    /// `/healthz` and `/readyz`.
    fn default() -> Self {
        Probes {
            liveness: "/healthz".to_owned(),
            readiness: "/readyz".to_owned(),
        }
    }
}

impl Probes {
    /// Probes at `liveness` and `readiness` (normalised as base paths
    /// are: `livez` becomes `/livez`). Refused with [`WebError::Config`]
    /// naming the value when a path is empty, the same for both, not a
    /// valid path, or one of the UI's or API's own (`/dags`, `/api/...`,
    /// `/login`, `/health`, ...).
    pub fn new(
        liveness: impl Into<String>,
        readiness: impl Into<String>,
    ) -> Result<Self, WebError> {
        let check = |what: &str, raw: String| -> Result<String, WebError> {
            let path = normalize_path(what, &raw, false)?;
            let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
            if RESERVED_SEGMENTS.contains(&first) {
                return Err(WebError::Config(format!(
                    "invalid {what} {raw:?}: /{first} is a path of the UI or API; choose another"
                )));
            }
            Ok(path)
        };
        let liveness = check("liveness probe path", liveness.into())?;
        let readiness = check("readiness probe path", readiness.into())?;
        if liveness == readiness {
            return Err(WebError::Config(format!(
                "the liveness and readiness probes have the same path {liveness:?}"
            )));
        }
        Ok(Probes {
            liveness,
            readiness,
        })
    }
}

/// `raw` as a path: a leading slash, no trailing one; `""` (or `/`) only
/// when `empty_ok` (the root). `what` names it in the error.
fn normalize_path(what: &str, raw: &str, empty_ok: bool) -> Result<String, WebError> {
    let bad = |why: &str| {
        WebError::Config(format!(
            "invalid {what} {raw:?}: {why}; expected a path such as \"/goflow\"{}",
            if empty_ok {
                " or \"\" for the root"
            } else {
                ""
            }
        ))
    };
    let trimmed = raw.trim();
    let inner = trimmed.trim_start_matches('/');
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if trimmed.starts_with("//") {
        return Err(bad("it starts with //"));
    }
    if inner.is_empty() {
        return if empty_ok {
            Ok(String::new())
        } else {
            Err(bad("it is empty"))
        };
    }
    if let Some(c) = inner
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed (only letters, digits, '-', '.', '_', '~' and '/')"
        )));
    }
    for segment in inner.split('/') {
        match segment {
            "" => return Err(bad("it has an empty segment (//)")),
            "." | ".." => return Err(bad(&format!("it has a {segment:?} segment"))),
            _ => {}
        }
    }
    Ok(format!("/{inner}"))
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
    /// (see [`WebState::api_token`]). Checks `config` first (see
    /// [`WebConfig::validate`]).
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
        let config = config.validate()?;
        let now = chrono::Utc::now();
        let token = match &config.api_token {
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

    /// The configuration, checked and normalised.
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// The path everything is served under (`""` for the root).
    pub fn base_path(&self) -> &str {
        &self.inner.config.base_path
    }

    /// The UI's URLs under the base path.
    fn urls(&self) -> views::Urls<'_> {
        views::Urls::new(self.base_path())
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

/// The whole web application: UI, API, metrics and probes, all under
/// [`WebConfig::base_path`], to merge into an axum application
/// (`host.merge(web::router(state))`) or to serve with [`serve`]. It has
/// no top-level fallback (see [`standalone`]).
pub fn router(state: WebState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] merged with `extra` routes that the UI and API
/// authentication does not apply to: the task API of workers, which checks
/// its own per-try tokens, goes here, as
/// `Router::new().nest(task_api::MOUNT_PATH, task_api::router(api))`.
/// `extra` is mounted under the base path too, and must not repeat a path
/// of the UI or API: give it a prefix of its own, as
/// [`crate::task_api::MOUNT_PATH`] is. Its responses get none of the UI's
/// headers, tracing, timeout or compression.
pub fn router_with(state: WebState, extra: Router) -> Router {
    let base = state.base_path().to_owned();
    let config = state.config().clone();
    let api_auth = middleware::from_fn_with_state(state.clone(), auth::api_auth);
    let api = api::routes()
        .route_layer(api_auth.clone())
        .fallback(api::not_found);
    let metrics = Router::new()
        .route("/metrics", get(metrics_text))
        .route_layer(api_auth);
    let ui =
        pages::routes().route_layer(middleware::from_fn_with_state(state.clone(), auth::ui_auth));
    let mut public = Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/static/{file}", get(views::asset));
    if let Some(p) = &config.probes {
        public = public
            .route(&p.liveness, get(healthz))
            .route(&p.readiness, get(readyz));
    }
    let mut app = Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .merge(ui)
        .merge(public);
    if !base.is_empty() {
        // Under the base only: what is outside it is the host's.
        app = app.fallback(pages::not_found);
    }
    let app = app
        .layer(middleware::map_response_with_state(
            state.clone(),
            error::render_page_error,
        ))
        .layer(security_headers())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        // Not `text/event-stream`: the default predicate leaves the log
        // stream alone (as it does images and tiny bodies).
        .layer(CompressionLayer::new())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // Server errors are logged once, by `WebError`.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .with_state(state)
        .merge(extra);
    if base.is_empty() {
        app
    } else {
        let home = format!("{base}/dags");
        Router::new().nest(&base, app).route(
            &format!("{base}/"),
            get(move || async move { Redirect::to(&home) }),
        )
    }
}

/// `app` (a [`router`] or [`router_with`] served under `base_path`) with
/// what a server of its own needs on top: the UI's 404 page for every
/// path no route takes, and, under a non-empty base path, `/` redirecting
/// to the UI. Not for a host application, which has its own fallback.
pub fn standalone(app: Router, base_path: &str) -> Router {
    let base = base_path.to_owned();
    let app = if base.is_empty() {
        app
    } else {
        let home = format!("{base}/dags");
        app.route("/", get(move || async move { Redirect::to(&home) }))
    };
    let not_found = axum::routing::any(move || {
        let base = base.clone();
        async move { pages::not_found_at(&base) }
    })
    .layer(security_headers());
    app.fallback_service(not_found)
}

/// Serves [`standalone`]`(`[`router`]`(state))` on `bind` until `shutdown`
/// completes. Prints nothing.
pub async fn serve(
    bind: SocketAddr,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| WebError::Bind { addr: bind, source })?;
    let base = state.base_path().to_owned();
    serve_app(listener, standalone(router(state), &base), shutdown).await
}

/// Serves `app` on a listener bound beforehand (to learn the port of
/// `127.0.0.1:0`, say) until `shutdown` completes. `app` is served as it
/// is: give it [`standalone`]`(`[`router_with`]`(..), base)` for the
/// UI's 404 page on unknown paths.
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

/// The response headers of the UI and API: no framing, no sniffing, no
/// inline scripts or styles, no referrer to other sites.
fn security_headers() -> (
    SetResponseHeaderLayer<HeaderValue>,
    SetResponseHeaderLayer<HeaderValue>,
    SetResponseHeaderLayer<HeaderValue>,
    SetResponseHeaderLayer<HeaderValue>,
) {
    (
        SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ),
        SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ),
        SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_normalised() {
        let base = |p: &str| WebConfig::default().with_base_path(p).map(|c| c.base_path);
        assert_eq!(base("").unwrap(), "");
        assert_eq!(base("/").unwrap(), "");
        assert_eq!(base("/goflow").unwrap(), "/goflow");
        assert_eq!(base("goflow/").unwrap(), "/goflow");
        assert_eq!(
            base(" /tools/goflow-1.x_~ ").unwrap(),
            "/tools/goflow-1.x_~"
        );
    }

    #[test]
    fn bad_base_paths_are_refused_by_name() {
        for bad in [
            "/a?b", "/a#b", "//a", "/a//b", "/a/../b", "/./a", "/a b", "/{x}", "/a*", "/é",
        ] {
            let err = WebConfig::default().with_base_path(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{bad}: {msg}");
            assert!(msg.contains("invalid base path"), "{msg}");
        }
        // Set directly, it is refused when the state is made.
        let config = WebConfig {
            base_path: "/a?b".into(),
            ..WebConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn probes_are_checked() {
        let p = Probes::new("livez", "/ready/").unwrap();
        assert_eq!(
            (p.liveness.as_str(), p.readiness.as_str()),
            ("/livez", "/ready")
        );
        assert!(Probes::new("", "/readyz").is_err());
        assert!(Probes::new("/x", "/x").is_err());
        let err = Probes::new("/dags", "/readyz").unwrap_err().to_string();
        assert!(err.contains("\"/dags\""), "{err}");
        assert!(Probes::new("/healthz", "/api/v1/ready").is_err());
        // Set directly, they are checked when the state is made.
        let config = WebConfig::default().with_probes(Probes {
            liveness: "/login".into(),
            readiness: "/readyz".into(),
        });
        assert!(config.validate().is_err());
        assert!(WebConfig::default().with_probes(None).validate().is_ok());
    }
}
