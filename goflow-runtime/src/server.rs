//! goflow inside a program of your own: [`Server`] runs the scheduler,
//! alerting, retention and log shipping as tokio tasks of the host's
//! runtime and hands out the web UI and API as an axum [`Router`] to merge
//! into the host's. The CLI's `scheduler` command is this same server
//! bound to a port of its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use goflow_runtime::server::Server;
//!
//! let server = Server::builder()
//!     .database_url("sqlite://goflow.db")
//!     .base_path("/goflow")
//!     .build()
//!     .await?;
//! let app = axum::Router::new()
//!     .route("/healthz", axum::routing::get(|| async { "host ok" }))
//!     .merge(server.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Tasks run by the `local_process` and Kubernetes executors re-execute
//! the host binary as a worker (`<binary> tasks run ...`): the host's
//! `main` calls [`worker_main_if_requested`] first, which runs the try and
//! exits when the process was started as a worker, and returns at once
//! otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chrono::{DateTime, SubsecRound, Utc};
use goflow_core::{DataInterval, ExecutorKind, RunState, RunType};
use goflow_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerts::{AlertConfig, AlertConfigError, AlertService};
use crate::db::MissingPool;
use crate::executor::{Executor, LocalProcessExecutor};
use crate::metrics::Metrics;
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use crate::web::{ApiToken, WebConfig, WebError, WebState};
use crate::{Registry, RegistryError};

/// The environment variable that marks a process as a goflow worker: the
/// executors set it on the processes (and pods) they start, and
/// [`worker_main_if_requested`] looks for it.
pub const WORKER_ENV: &str = "GOFLOW_WORKER";

/// Why a [`Server`] could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The binary's DAGs are inconsistent (duplicate ids, a bad graph).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The database is unreachable, or its migrations failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Tasks name pools that do not exist: they would run without limit.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    UnknownPools(Vec<MissingPool>),
    /// The scheduler refused to start (its id is in use) or failed.
    #[error(transparent)]
    Scheduler(SchedulerError),
    /// The web settings are not usable.
    #[error(transparent)]
    Web(#[from] WebError),
    /// An alerting, log-shipping or executor setting is not usable (the
    /// message names it).
    #[error("{0}")]
    InvalidSetting(String),
    /// [`Server::trigger`] named a DAG this binary does not declare.
    #[error("DAG {dag_id:?} is not declared by this binary; it has {known}")]
    UnknownDag {
        /// The id as given.
        dag_id: String,
        /// The DAGs it has, comma-separated.
        known: String,
    },
    /// [`Server::trigger`] was given a `conf` that is not a JSON object.
    #[error("invalid conf for DAG {dag_id:?}: expected a JSON object, got {got}")]
    InvalidConf {
        /// The DAG.
        dag_id: String,
        /// What was given instead.
        got: String,
    },
    /// A background task of the server panicked.
    #[error("goflow's {task} task panicked: {message}")]
    Panicked {
        /// Which (`scheduler`, `alerts`, ...).
        task: &'static str,
        /// The panic's message.
        message: String,
    },
}

impl From<SchedulerError> for ServerError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Startup(e) => ServerError::Store(e),
            SchedulerError::MissingPools(missing) => ServerError::UnknownPools(missing),
            other => ServerError::Scheduler(other),
        }
    }
}

/// Adds the local-process executor, whose workers re-execute this binary
/// (see [`worker_main_if_requested`]).
pub(crate) fn with_local_process(scheduler: Scheduler) -> Scheduler {
    match LocalProcessExecutor::current_exe() {
        Ok(local) => scheduler.with_executor(Arc::new(local)),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "the local-process executor is unavailable: cannot find this binary"
            );
            scheduler
        }
    }
}

impl From<AlertConfigError> for ServerError {
    fn from(e: AlertConfigError) -> Self {
        ServerError::InvalidSetting(e.to_string())
    }
}

/// Sets up a [`Server`]; every setting has a default
/// ([`Server::builder`]).
#[must_use = "a builder does nothing until `build` is called"]
pub struct ServerBuilder {
    database_url: Option<String>,
    store: Option<Store>,
    registry: Option<Registry>,
    scheduler: SchedulerConfig,
    run_scheduler: bool,
    web: Option<WebConfig>,
    base_path: Option<String>,
    public_url: Option<String>,
    alerts: Option<AlertConfig>,
    retention: Option<Duration>,
    executors: Vec<Arc<dyn Executor>>,
    local_process: bool,
    metrics: Option<Metrics>,
    #[cfg(feature = "kubernetes")]
    kubernetes: Option<crate::executor::kubernetes::KubernetesConfig>,
    #[cfg(feature = "elasticsearch")]
    logship: Option<crate::logship::LogShipConfig>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("store", &self.store.as_ref().map(Store::url))
            .field("scheduler", &self.scheduler)
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            database_url: None,
            store: None,
            registry: None,
            scheduler: SchedulerConfig::default(),
            run_scheduler: true,
            web: None,
            base_path: None,
            public_url: None,
            alerts: None,
            retention: None,
            executors: Vec::new(),
            local_process: true,
            metrics: None,
            #[cfg(feature = "kubernetes")]
            kubernetes: None,
            #[cfg(feature = "elasticsearch")]
            logship: None,
        }
    }
}

impl ServerBuilder {
    /// The database: `sqlite://PATH`, `postgres://USER@HOST/DB`. Default:
    /// `GOFLOW_DATABASE_URL`, else `sqlite://goflow.db`. Migrated on
    /// [`build`](Self::build).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// A store opened (and migrated) by the caller, instead of
    /// [`database_url`](Self::database_url).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The DAGs to run. Default: every `#[dag]` of the binary.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The executor of tasks that do not name one. Default: `in_process`.
    pub fn executor(mut self, kind: ExecutorKind) -> Self {
        self.scheduler.default_executor = kind;
        self
    }

    /// Adds (or replaces) an executor of its kind, e.g. a
    /// [`LocalProcessExecutor`] with a program of your own. The in-process
    /// executor and a local-process executor re-running this binary are
    /// there by default.
    pub fn with_executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executors.push(executor);
        self
    }

    /// Leaves out the default local-process executor (whose workers
    /// re-execute this binary, see [`worker_main_if_requested`]).
    pub fn without_local_process(mut self) -> Self {
        self.local_process = false;
        self
    }

    /// The scheduler's settings (its id, intervals, limits). Its
    /// `default_executor` is overridden by a later
    /// [`executor`](Self::executor).
    pub fn scheduler_config(mut self, config: SchedulerConfig) -> Self {
        self.scheduler = config;
        self
    }

    /// This scheduler's id (see [`SchedulerConfig::id`]).
    pub fn scheduler_id(mut self, id: impl Into<String>) -> Self {
        self.scheduler.id = id.into();
        self
    }

    /// Serve the UI and API only: no scheduler in this process (another
    /// process schedules).
    pub fn without_scheduler(mut self) -> Self {
        self.run_scheduler = false;
        self
    }

    /// The web settings. Default: [`WebConfig::from_env`].
    pub fn web_config(mut self, config: WebConfig) -> Self {
        self.web = Some(config);
        self
    }

    /// Where the host mounts goflow's routes: `""` (the root, default) or
    /// a prefix such as `/goflow`. The router [`Server::router`] returns
    /// carries the prefix itself: merge it into the host's router.
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = Some(path.into());
        self
    }

    /// The URL at which people reach this server, base path included
    /// (`https://ops.example.com/goflow`): links in alerts point there.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Alert channels. Default: [`AlertConfig::from_env`] (alerts are
    /// detected and shown in the UI even with no channel).
    pub fn alerts(mut self, config: AlertConfig) -> Self {
        self.alerts = Some(config);
        self
    }

    /// Deletes finished runs that ended longer ago than `keep`, at start
    /// and every hour. Default: runs are kept forever.
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = Some(keep);
        self
    }

    /// Metrics to record into (served at `<base>/metrics`). Default: new.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The Kubernetes executor's settings. Default: read from the
    /// environment (`GOFLOW_K8S_*`, `GOFLOW_IMAGE`), used only when the
    /// default executor or a task is `kubernetes`. Its `advertise_url`
    /// must include the base path.
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    pub fn kubernetes(mut self, config: crate::executor::kubernetes::KubernetesConfig) -> Self {
        self.kubernetes = Some(config);
        self
    }

    /// Ships task logs to Elasticsearch.
    #[cfg(feature = "elasticsearch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "elasticsearch")))]
    pub fn logship(mut self, config: crate::logship::LogShipConfig) -> Self {
        self.logship = Some(config);
        self
    }

    /// Opens the store, checks the DAGs and settings, starts the
    /// scheduler, alerting, retention and log shipping on the current
    /// tokio runtime, and returns the running server. Fails (starting
    /// nothing) on a bad setting, an unreachable database, a task naming
    /// a pool that does not exist, or a live scheduler with the same id.
    pub async fn build(self) -> Result<Server, ServerError> {
        let registry = Arc::new(match self.registry {
            Some(r) => r,
            None => Registry::from_inventory()?,
        });
        let store = match self.store {
            Some(store) => store,
            None => crate::db::open(&crate::db::database_url(self.database_url.as_deref())).await?,
        };
        let metrics = self.metrics.unwrap_or_default();
        let mut web_config = self.web.unwrap_or_else(WebConfig::from_env);
        if let Some(base) = &self.base_path {
            web_config = web_config.with_base_path(base)?;
        }
        let base_path = web_config.base_path.clone();
        if self.run_scheduler {
            web_config = web_config.with_scheduler_id(self.scheduler.id.clone());
        }
        let mut alert_config = match self.alerts {
            Some(c) => c,
            None => AlertConfig::from_env()?,
        };
        if let Some(url) = &self.public_url {
            alert_config.base_url = url.trim_end_matches('/').to_owned();
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut tasks: Vec<(&'static str, JoinHandle<Result<(), ServerError>>)> = Vec::new();
        #[allow(unused_mut)] // the task API joins it with `kubernetes`
        let mut extra_routes = Router::new();
        let default_executor = self.scheduler.default_executor;
        #[allow(unused_mut)] // set with `kubernetes`
        let mut runs_kubernetes = false;
        #[cfg(feature = "elasticsearch")]
        let logship_url = self.logship.as_ref().map(|c| c.url.to_string());
        let scheduler_id = self.scheduler.id.clone();
        if self.run_scheduler {
            let mut scheduler =
                Scheduler::new(store.clone(), Arc::clone(&registry), self.scheduler)
                    .with_metrics(metrics.clone());
            if self.local_process {
                scheduler = with_local_process(scheduler);
            }
            #[cfg(feature = "kubernetes")]
            if wants_kubernetes(&registry, default_executor) {
                use crate::executor::kubernetes::KubernetesExecutor;
                let config = match self.kubernetes {
                    Some(c) => c,
                    None => kubernetes_config_from_env()?,
                };
                let k8s = KubernetesExecutor::connect(
                    config,
                    crate::task_api::TaskApi::from_env()
                        .with_max_body_bytes(scheduler.max_output_bytes()),
                )
                .await;
                extra_routes = extra_routes.nest(
                    crate::task_api::MOUNT_PATH,
                    crate::task_api::router(k8s.task_api()),
                );
                scheduler = scheduler.with_executor(Arc::new(k8s));
                runs_kubernetes = true;
            }
            for executor in self.executors {
                scheduler = scheduler.with_executor(executor);
            }
            scheduler.prepare().await.map_err(ServerError::from)?;
            let stop = stopped();
            tasks.push((
                "scheduler",
                tokio::spawn(async move { scheduler.run(stop).await.map_err(ServerError::from) }),
            ));
            let alerts = AlertService::new(store.clone(), Arc::clone(&registry), alert_config)?;
            let stop = stopped();
            tasks.push((
                "alerts",
                tokio::spawn(async move {
                    alerts.run(stop).await;
                    Ok(())
                }),
            ));
            if let Some(keep) = self.retention {
                let (store, stop) = (store.clone(), stopped());
                tasks.push((
                    "retention",
                    tokio::spawn(async move {
                        crate::db::clean_periodically(store, keep, stop).await;
                        Ok(())
                    }),
                ));
            }
            #[cfg(feature = "elasticsearch")]
            if let Some(config) = self.logship {
                let shipper = crate::logship::LogShipper::new(store.clone(), config)
                    .map_err(|e| ServerError::InvalidSetting(e.to_string()))?;
                let stop = stopped();
                tasks.push((
                    "log shipping",
                    tokio::spawn(async move {
                        shipper.run(stop).await;
                        Ok(())
                    }),
                ));
            }
        }
        let web = WebState::new(store.clone(), Arc::clone(&registry), metrics, web_config).await;
        let web = match web {
            Ok(web) => web,
            Err(e) => {
                // Nothing half-started stays behind.
                let _ = stop_tx.send(true);
                for (_, task) in tasks {
                    let _ = task.await;
                }
                return Err(e.into());
            }
        };
        let router = crate::web::router_with(web.clone(), extra_routes);
        Ok(Server {
            store,
            registry,
            web,
            router,
            base_path,
            scheduler_id,
            default_executor,
            runs_kubernetes,
            #[cfg(feature = "elasticsearch")]
            logship_url,
            stop: stop_tx,
            tasks,
        })
    }
}

#[cfg(feature = "kubernetes")]
fn wants_kubernetes(registry: &Registry, default: ExecutorKind) -> bool {
    default == ExecutorKind::Kubernetes
        || registry
            .dags()
            .flat_map(|d| d.tasks().iter())
            .any(|t| t.options.executor == Some(ExecutorKind::Kubernetes))
}

/// The Kubernetes executor's settings as the `scheduler` command reads
/// them from the environment.
#[cfg(feature = "kubernetes")]
fn kubernetes_config_from_env() -> Result<crate::executor::kubernetes::KubernetesConfig, ServerError>
{
    use clap::Parser;
    #[derive(Parser)]
    struct FromEnv {
        #[command(flatten)]
        kubernetes: crate::executor::kubernetes::KubernetesArgs,
    }
    FromEnv::try_parse_from(["goflow"])
        .map(|parsed| parsed.kubernetes.to_config())
        .map_err(|e| ServerError::InvalidSetting(e.to_string()))
}

/// goflow running inside a host program: see the module docs.
pub struct Server {
    store: Store,
    registry: Arc<Registry>,
    web: WebState,
    router: Router,
    base_path: String,
    scheduler_id: String,
    default_executor: ExecutorKind,
    runs_kubernetes: bool,
    #[cfg(feature = "elasticsearch")]
    logship_url: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<Result<(), ServerError>>)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("store", &self.store.url())
            .field("base_path", &self.base_path)
            .field("scheduler_id", &self.scheduler_id)
            .finish_non_exhaustive()
    }
}

/// A run created by [`Server::trigger`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggeredRun {
    /// The DAG.
    pub dag_id: String,
    /// The run's id (`manual__2026-05-02T06:00:00Z`).
    pub run_id: String,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// Its state: `queued` until a scheduler starts it.
    pub state: RunState,
}

impl Server {
    /// A builder with every default: see [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// goflow's UI, API, metrics and probes (and the workers' task API),
    /// under the base path: merge it into the host's router
    /// (`host.merge(server.router())`). It has no fallback, so the host's
    /// stays in charge of unknown paths.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The base path the router serves under (`""` for the root).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The API token (`Authorization: Bearer ...`, and the UI password by
    /// default) and where it came from: print a generated one once.
    pub fn api_token(&self) -> &ApiToken {
        self.web.api_token()
    }

    /// The web settings in use (UI user name, base path, ...).
    pub fn web_config(&self) -> &WebConfig {
        self.web.config()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The DAGs it runs.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The scheduler's id.
    pub fn scheduler_id(&self) -> &str {
        &self.scheduler_id
    }

    /// The executor of tasks that do not name one.
    pub fn default_executor(&self) -> ExecutorKind {
        self.default_executor
    }

    /// Whether the Kubernetes executor is on (the default executor or a
    /// task is `kubernetes`).
    pub fn runs_kubernetes(&self) -> bool {
        self.runs_kubernetes
    }

    /// Where task logs are shipped, if anywhere.
    #[cfg(feature = "elasticsearch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "elasticsearch")))]
    pub fn logship_url(&self) -> Option<&str> {
        self.logship_url.as_deref()
    }

    /// Creates a queued manual run of `dag_id` with `conf` (a JSON object;
    /// `serde_json::json!({})` for none) at `logical_date` (default: now);
    /// the scheduler starts it at once.
    pub async fn trigger(
        &self,
        dag_id: &str,
        conf: serde_json::Value,
        logical_date: Option<DateTime<Utc>>,
    ) -> Result<TriggeredRun, ServerError> {
        let dag = self
            .registry
            .get(dag_id)
            .map_err(|_| ServerError::UnknownDag {
                dag_id: dag_id.to_owned(),
                known: self
                    .registry
                    .dags()
                    .map(|d| d.id().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if !conf.is_object() {
            return Err(ServerError::InvalidConf {
                dag_id: dag_id.to_owned(),
                got: conf.to_string(),
            });
        }
        let now = Utc::now();
        // The store keeps microseconds: so does the run id.
        let logical = logical_date.unwrap_or(now).trunc_subsecs(6);
        let version = match self.store.get_dag(dag_id).await? {
            Some(row) => row.version,
            None => crate::db::sync_registry(&self.store, &self.registry, now)
                .await?
                .get(dag_id)
                .map_or(1, |row| row.version),
        };
        let new = crate::db::new_run(
            dag,
            version,
            RunType::Manual,
            DataInterval::at(logical),
            conf,
        );
        let run = self.store.create_run(&new, now).await?;
        Ok(TriggeredRun {
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
            logical_date: run.execution_date(),
            state: run.state,
        })
    }

    /// The state of run `run_id` of `dag_id` (as [`trigger`](Self::trigger)
    /// returned it), or `None` when there is no such run.
    pub async fn run_state(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<RunState>, ServerError> {
        Ok(self.store.find_run(dag_id, run_id).await?.map(|r| r.state))
    }

    /// Stops the scheduler and the other background tasks (running tries
    /// are left to a restarted scheduler to adopt or retry) and waits for
    /// them. Returns the scheduler's error if it had stopped on one.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (name, task) in self.tasks {
            let result = match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(ServerError::Panicked {
                    task: name,
                    message: crate::panic_message(&*e.into_panic()),
                }),
                Err(_) => Ok(()),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Serves [`router`](Self::router) (with a not-found page for other
    /// paths) on `listener` until `shutdown` completes, then shuts the
    /// server down: the `scheduler` command.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = crate::web::standalone(self.router(), &self.base_path);
        let served = crate::web::serve_app(listener, app, shutdown).await;
        let stopped = self.shutdown().await;
        served?;
        stopped
    }
}

/// Makes a host binary its own goflow worker. Call it first thing in
/// `main` (before the host parses its own arguments): when this process
/// was started by goflow's `local_process` or Kubernetes executor to run
/// a task try (`<binary> tasks run ...`, with [`WORKER_ENV`] set), it runs
/// the try and exits with the worker's exit code; otherwise it returns at
/// once. Safe to call from inside a tokio runtime.
pub fn worker_main_if_requested() {
    if !is_worker_invocation(std::env::var_os(WORKER_ENV), std::env::args()) {
        return;
    }
    // The worker runs on a runtime of its own; a thread keeps it apart
    // from the host's runtime, if `main` is already inside one.
    let code = std::thread::spawn(crate::cli::worker_main)
        .join()
        .unwrap_or(1);
    std::process::exit(code);
}

/// Whether the process is a worker started by an executor: the marker
/// variable is set and the arguments are `tasks run ...` (after the
/// program name).
fn is_worker_invocation(
    marker: Option<std::ffi::OsString>,
    args: impl Iterator<Item = String>,
) -> bool {
    let marked = marker.is_some_and(|v| !v.is_empty() && v != "0");
    let args: Vec<String> = args.skip(1).take(2).collect();
    marked && args == ["tasks", "run"]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn only_marked_tasks_run_invocations_are_workers() {
        let marked = || Some(std::ffi::OsString::from("1"));
        assert!(is_worker_invocation(
            marked(),
            args(&["host", "tasks", "run", "d", "r", "t"])
        ));
        assert!(!is_worker_invocation(
            None,
            args(&["host", "tasks", "run", "d"])
        ));
        assert!(!is_worker_invocation(marked(), args(&["host", "serve"])));
        assert!(!is_worker_invocation(
            Some(std::ffi::OsString::from("0")),
            args(&["host", "tasks", "run"])
        ));
    }
}
