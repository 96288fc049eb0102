//! The Kubernetes executor: every task try is one `batch/v1` Job running
//! this same binary's image as `<binary> tasks run <dag> <run> <task>
//! --try N` (the `kubernetes` cargo feature).
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use goflow_runtime::executor::kubernetes::{KubernetesConfig, KubernetesExecutor};
//! use goflow_runtime::task_api::{self, TaskApi};
//!
//! let mut config = KubernetesConfig::default();
//! config.image = Some("registry.example.com/my-dags:1".into());
//! let task_api = TaskApi::from_env();
//! // Never fails: without a cluster, each try fails with the reason.
//! let executor = KubernetesExecutor::connect(config, task_api.clone()).await;
//! // The web server serves the workers' API...
//! let app: axum::Router =
//!     axum::Router::new().nest(task_api::MOUNT_PATH, task_api::router(task_api));
//! // ...and the scheduler runs tasks with the executor:
//! // Scheduler::new(store, registry, config).with_executor(Arc::new(executor))
//! # let _ = (app, Arc::new(executor)); Ok(()) }
//! ```
//!
//! # The Job of a try
//! [`job_manifest`] builds it (tested as a value):
//! - named `<dag>-<task>-<hash>-<try>` (a DNS-1123 label of at most 63
//!   characters, unique per deployment, DAG, run, task and try even when
//!   ids are long: see [`job_name`]), so that a try never gets two Jobs,
//!   also with two scheduler replicas: creating it again answers `409`,
//!   and the executor follows the Job that exists;
//! - in the DAG's namespace, else [`KubernetesConfig::namespace`];
//! - image from the task's options, its DAG's defaults, else
//!   [`KubernetesConfig::image`] (`GOFLOW_IMAGE`); checked before the Job
//!   is created;
//! - labels `goflow.rs/{dag,run,task,try,instance}` and
//!   `app.kubernetes.io/managed-by=goflow` (values made valid by
//!   [`label_value`]), the exact ids as annotations;
//! - `backoffLimit: 0` (goflow owns retries), `activeDeadlineSeconds`
//!   from the task's timeout, `ttlSecondsAfterFinished`;
//! - one container, `task`, with the task's resources, env, service
//!   account and node selector, and the environment a worker needs: the run
//!   context, the task API's URL (the advertise URL plus
//!   [`crate::task_api::MOUNT_PATH`]) and the try's token.
//!
//! # Following it
//! One watch per namespace over the deployment's Jobs and their pods
//! (kube-runtime's `watcher`, label-selected, which re-lists after a
//! `410 Gone`) drives every try of that namespace:
//! - the `task` container's exit code decides success or failure, with the
//!   result the worker posted to the task API; a sidecar still running
//!   does not hold the try;
//! - a pod that does not start within [`KubernetesConfig::pending_deadline`]
//!   (image pull errors, unschedulable, no pod created at all) fails the
//!   try with the reason Kubernetes gave; an invalid image name fails it
//!   at once;
//! - a Job deleted by someone else fails the try, saying so;
//! - the CPU and memory the pod requested and was limited to (as admitted,
//!   `LimitRange` defaults and injected sidecars included) are recorded
//!   with the try, beside what the worker measured;
//! - the Job's `activeDeadlineSeconds` ends a try that runs past its
//!   timeout (and the executor deletes the Job itself a grace period
//!   later if Kubernetes has not);
//! - a worker silent for [`KubernetesConfig::heartbeat_timeout`] (no
//!   heartbeat to the task API) while the watch knows no pod of its Job
//!   fails the try as lost, and its Job is deleted;
//! - `cancel` deletes the Job with `propagationPolicy: Foreground` (its
//!   pod is killed), copies the log as far as it got, and ends the try
//!   once, as cancelled; for an unknown or finished try it does nothing.
//!   Every Job goflow stops (cancel, timeout, pending deadline, lost) is
//!   deleted in the foreground; finished Jobs with
//!   [`KubernetesConfig::propagation`].
//!
//! # At most one live Job per task instance
//! Before the Job of try N is created, the Jobs of earlier tries of the
//! same task instance that have not finished (a stopped scheduler left
//! them running) are deleted in the foreground, and try N's Job is created
//! once they are gone; if a delete is refused, try N fails without a Job.
//!
//! The pod's log is followed into goflow's log while the task container
//! runs (as `stdout` lines; Kubernetes merges the streams) and completed
//! before a finished Job is deleted, each line once (see `pod_log`); when
//! it cannot be read, a `system` line says why.
//!
//! # Restarts
//! [`Executor::adopt`] takes over a try that an earlier scheduler process
//! launched: if its Job still exists it is followed (or, if it finished
//! meanwhile, reported); if it is gone, and its worker reported no result,
//! the try fails as lost and is retried by policy. An adopted try whose
//! worker stays silent while no pod of it exists is lost too.
//!
//! # Load
//! Job creations run concurrently, bounded by a rate limiter
//! ([`KubernetesConfig::creates_per_second`] and
//! [`KubernetesConfig::create_burst`]) so that a large fan-out does not
//! flood the API server. A tracked try costs a few hundred bytes plus its
//! launch payload (see `benches/kubernetes_executor.rs`); watch events
//! are not cached.
//!
//! # Errors
//! No kubeconfig, RBAC refusals, missing namespaces, invalid images and
//! other mistakes fail the try with a message naming what is wrong; the
//! scheduler goes on.

pub mod config;
mod driver;
mod errors;
pub mod manifest;
mod pod_log;
mod resources;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

use std::sync::Arc;

use goflow_core::ExecutorKind;

pub use config::{KubernetesArgs, KubernetesConfig, Propagation};
/// The Kubernetes API types this executor is built on.
pub use k8s_openapi;
/// The kube-rs client crate this executor is built on.
pub use kube;
pub use manifest::{job_manifest, job_name, label_value, JobParams, ManifestError};

use super::{Adoption, EventSender, Executor, Launch, TryKey};
use crate::task_api::TaskApi;

/// Runs each task try as a Kubernetes Job. See the module docs.
#[derive(Clone)]
pub struct KubernetesExecutor {
    shared: Arc<driver::Shared>,
}

impl std::fmt::Debug for KubernetesExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesExecutor")
            .field("namespace", &self.shared.config.namespace)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

/// Why the executor has no client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

impl KubernetesExecutor {
    /// An executor talking to the API server through `client` (a real one,
    /// or a mock in tests). Spawns its watch task: call it inside a tokio
    /// runtime.
    pub fn new(client: kube::Client, config: KubernetesConfig, task_api: TaskApi) -> Self {
        KubernetesExecutor {
            shared: driver::Shared::start(Ok(client), config, task_api),
        }
    }

    /// An executor with the client of the environment (in-cluster service
    /// account, else `$KUBECONFIG` / `~/.kube/config`), or the reason there
    /// is none.
    pub async fn try_connect(
        config: KubernetesConfig,
        task_api: TaskApi,
    ) -> Result<Self, ConnectError> {
        let client = kube::Client::try_default().await.map_err(|e| {
            ConnectError(match &e {
                kube::Error::InferConfig(inner) => errors::no_config(inner),
                other => errors::describe(other, "connect to Kubernetes", &config.namespace),
            })
        })?;
        Ok(Self::new(client, config, task_api))
    }

    /// Like [`try_connect`](Self::try_connect), but without a client the
    /// executor still exists and fails each try it is given with the
    /// reason, so that a scheduler without cluster access keeps running
    /// its other tasks.
    pub async fn connect(config: KubernetesConfig, task_api: TaskApi) -> Self {
        match Self::try_connect(config.clone(), task_api.clone()).await {
            Ok(executor) => executor,
            Err(e) => {
                tracing::error!(error = %e, "the Kubernetes executor has no cluster; its tasks will fail");
                KubernetesExecutor {
                    shared: driver::Shared::start(Err(e.0), config, task_api),
                }
            }
        }
    }

    /// The task API this executor registers its tries with: mount its
    /// [`router`](crate::task_api::router) in the web server.
    pub fn task_api(&self) -> TaskApi {
        self.shared.task_api.clone()
    }

    /// Its settings.
    pub fn config(&self) -> &KubernetesConfig {
        &self.shared.config
    }

    /// Tries it is following (created, pending, running or finishing).
    pub fn tracked(&self) -> usize {
        self.shared.tracked()
    }

    /// Namespaces it watches.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.shared.watched_namespaces()
    }
}

impl Executor for KubernetesExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Kubernetes
    }

    fn launch(&self, launch: Launch, events: EventSender) {
        driver::launch(&self.shared, launch, events);
    }

    fn cancel(&self, key: &TryKey) {
        driver::cancel(&self.shared, key);
    }

    fn adopt(&self, launch: Launch, previous: &Adoption, events: EventSender) -> bool {
        driver::adopt(&self.shared, launch, previous, events)
    }
}
