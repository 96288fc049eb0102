//! A scheduler running in a test: started in the background, killed as a
//! crash would or stopped cleanly, with the runs it finishes; and a
//! triggered run. Shared by the scheduler-level tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use goflow_core::{Dag, DataInterval, RunType};
use goflow_runtime::db;
use goflow_runtime::scheduler::{RunFinished, Scheduler, SchedulerConfig, SchedulerError};
use goflow_runtime::Registry;
use goflow_store::Store;
use tokio::sync::{mpsc, oneshot};

pub fn config(id: &str) -> SchedulerConfig {
    let mut config = SchedulerConfig::default();
    config.id = id.into();
    config.heartbeat_interval = Duration::from_millis(200);
    config.stale_after = Duration::from_secs(2);
    config.poll_interval = Duration::from_millis(100);
    config
}

/// A scheduler running in the background until killed (aborted as a crash
/// would: no clean-up) or stopped.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), SchedulerError>>>,
    /// The runs it finished, in order.
    pub finished: mpsc::UnboundedReceiver<RunFinished>,
}

impl Running {
    pub fn start(scheduler: Scheduler) -> Running {
        let mut scheduler = scheduler;
        let finished = scheduler.finished_runs();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(scheduler.run(async {
            let _ = rx.await;
        }));
        Running {
            stop: Some(stop),
            task: Some(task),
            finished,
        }
    }

    pub async fn next_finished(&mut self) -> RunFinished {
        tokio::time::timeout(Duration::from_secs(30), self.finished.recv())
            .await
            .expect("a run finishes within 30s")
            .expect("the scheduler is running")
    }

    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn scheduler(store: &Store, dag: &Dag, config: SchedulerConfig) -> Scheduler {
    let registry = Arc::new(Registry::from_dags([dag.clone()]).unwrap());
    Scheduler::new(store.clone(), registry, config)
}

/// A scheduler with `dags`, running.
pub fn start(store: &Store, dags: Vec<Dag>, config: SchedulerConfig) -> Running {
    let registry = Arc::new(Registry::from_dags(dags).unwrap());
    Running::start(Scheduler::new(store.clone(), registry, config))
}

/// A manual run of `dag`, queued.
pub async fn trigger(store: &Store, dag: &Dag) -> i64 {
    let rows = db::sync_registry(
        store,
        &Registry::from_dags([dag.clone()]).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap();
    let new = db::new_run(
        dag,
        rows[dag.id().as_str()].version,
        RunType::Manual,
        DataInterval::at(Utc::now()),
        serde_json::json!({}),
    );
    store.create_run(&new, Utc::now()).await.unwrap().id
}
