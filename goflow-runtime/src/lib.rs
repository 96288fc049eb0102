//! The goflow runtime: the registry of DAGs, the CLI, the in-process
//! runner behind `dags test`, and (in later milestones) the scheduler,
//! executors, store and web UI. Use it through the `goflow` crate.

pub mod alerts;
pub mod calendar;
pub mod cli;
pub mod db;
pub mod executor;
#[cfg(feature = "kubernetes")]
pub mod k8s_manifests;
#[cfg(feature = "elasticsearch")]
pub mod logship;
pub mod metrics;
pub mod registry;
pub mod runner;
pub mod scheduler;
pub mod task_api;
pub mod web;
pub mod worker;

pub use registry::{DagRegistration, Registry, RegistryError, TaskRegistration};

/// Runs a synchronous task body on tokio's blocking thread pool, so that
/// CPU-bound tasks do not stall the scheduler.
pub async fn run_blocking<T, F>(f: F) -> Result<T, goflow_core::TaskError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            goflow_core::TaskError::panicked(panic_message(&*e.into_panic()))
        } else {
            goflow_core::TaskError::msg("the task was cancelled")
        }
    })
}

/// The message a panic was raised with (`panic!("...")` gives a `&str` or
/// a `String`; anything else has no message to show).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned())
}
