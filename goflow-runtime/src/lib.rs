//! The goflow runtime: the registry of DAGs, the CLI, and (in later
//! milestones) the scheduler, executors, store and web UI; `dags test`
//! runs through the same scheduler. Use it through the `goflow` crate.

#![cfg_attr(docsrs, feature(doc_cfg))]

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
pub mod scheduler;
pub mod server;
pub mod task_api;
pub mod telemetry;
pub mod web;
pub mod worker;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub use registry::{DagRegistration, Registry, RegistryError, TaskRegistration};

/// Runs a synchronous task body on tokio's blocking thread pool, so that
/// CPU-bound tasks do not stall the scheduler.
///
/// A thread cannot be killed: when the try is stopped or times out, the
/// try ends at once but the function runs on to its end in the
/// background. Such threads are counted ([`abandoned_blocking_threads`],
/// the `goflow_abandoned_blocking_threads` metric) and a warning names
/// the remedy: `executor = "local_process"` for blocking work that must be
/// stoppable.
pub async fn run_blocking<T, F>(f: F) -> Result<T, goflow_core::TaskError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let thread = Arc::new(BlockingThread::default());
    let mut guard = AbandonGuard(Some(Arc::clone(&thread)));
    // The thread logs where the task does: in its span, to its subscriber
    // (an in-process try's log capture).
    let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
    let span = tracing::Span::current();
    let handle = tokio::task::spawn_blocking(move || {
        let out = tracing::dispatcher::with_default(&dispatch, || span.in_scope(f));
        thread.finished();
        out
    });
    let joined = handle.await;
    guard.0 = None;
    joined.map_err(|e| {
        if e.is_panic() {
            goflow_core::TaskError::panicked(panic_message(&*e.into_panic()))
        } else {
            goflow_core::TaskError::msg("the task was cancelled")
        }
    })
}

static ABANDONED_BLOCKING: AtomicI64 = AtomicI64::new(0);

/// Synchronous in-process task bodies whose try ended (stopped, timed
/// out) while their thread still runs.
pub fn abandoned_blocking_threads() -> i64 {
    ABANDONED_BLOCKING.load(Ordering::Relaxed)
}

/// A blocking task body's thread: whether it finished, and whether its try
/// gave up on it first.
#[derive(Default)]
struct BlockingThread {
    state: std::sync::Mutex<(bool, bool)>,
}

impl BlockingThread {
    fn finished(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = true;
            if s.1 {
                ABANDONED_BLOCKING.fetch_sub(1, Ordering::Relaxed);
                tracing::info!("an abandoned synchronous task body has returned");
            }
        }
    }

    fn abandoned(&self) {
        if let Ok(mut s) = self.state.lock() {
            if !s.0 && !s.1 {
                s.1 = true;
                ABANDONED_BLOCKING.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "a synchronous in-process task was stopped or timed out, but a thread \
                     cannot be killed: its function keeps running in the background until it \
                     returns; use executor = \"local_process\" for blocking work that must be \
                     stoppable"
                );
            }
        }
    }
}

/// Dropped only when the try stops waiting for the thread before it
/// returned (the future was aborted or timed out).
struct AbandonGuard(Option<Arc<BlockingThread>>);

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(thread) = &self.0 {
            thread.abandoned();
        }
    }
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
