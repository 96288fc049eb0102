//! A run this scheduler owns: its DAG, the in-memory [`RunProgress`]
//! (authoritative while the run is owned, every change written through
//! with compare-and-set), and what the store knows beyond it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use goflow_core::{Dag, ExecutorKind, RunProgress, TaskState, TaskStatus};
use goflow_store::{RunRow, TaskInstanceRow};

pub(crate) struct ActiveRun {
    pub row: RunRow,
    pub dag: Arc<Dag>,
    pub progress: RunProgress,
    /// Per task: the store's try number when it was last cleared, so that
    /// `progress` counts tries per clearing while ids keep counting.
    pub tries_before_clear: Vec<u32>,
    /// Per task: when an `up_for_retry` task is due again.
    pub next_retry: Vec<Option<DateTime<Utc>>>,
    /// Outputs of successful tasks, filled as they finish or on demand.
    pub outputs: HashMap<usize, serde_json::Value>,
    /// Per task: when its current try started and last ended, as this
    /// scheduler saw them (for latency and duration metrics).
    pub started_at: Vec<Option<DateTime<Utc>>>,
    pub ended_at: Vec<Option<DateTime<Utc>>>,
    /// Per task: the executor stored with its current try.
    pub executor: Vec<ExecutorKind>,
    /// A person stopped the run: it ends `failed`.
    pub stopped: bool,
    /// The run's span (`dag`, `run` fields): the parent of its tries'
    /// spans, so a log or a trace can be followed by run.
    pub span: tracing::Span,
}

/// The ids of the tasks of `dag` that have no task instance among
/// `instances` (tasks added to the DAG after the run was created).
pub(crate) fn missing_tasks(dag: &Dag, instances: &[TaskInstanceRow]) -> Vec<String> {
    dag.tasks()
        .iter()
        .map(|t| t.id.as_str())
        .filter(|id| !instances.iter().any(|ti| ti.task_id == *id))
        .map(str::to_owned)
        .collect()
}

impl ActiveRun {
    /// Builds the run from its stored task instances (see
    /// [`missing_tasks`]: a task without one counts as pending). Task
    /// instances of tasks the DAG no longer has are left alone.
    pub fn load(row: RunRow, dag: Arc<Dag>, instances: &[TaskInstanceRow]) -> Self {
        let n = dag.tasks().len();
        let mut statuses = vec![TaskStatus::default(); n];
        let mut tries_before_clear = vec![0; n];
        let mut next_retry = vec![None; n];
        let mut executor = vec![ExecutorKind::InProcess; n];
        for ti in instances {
            let Some(i) = dag.index_of(&ti.task_id) else {
                continue;
            };
            statuses[i] = ti.status();
            tries_before_clear[i] = ti.tries_before_clear;
            next_retry[i] = ti.next_retry_date;
            executor[i] = ti.executor;
        }
        let progress = RunProgress::from_statuses(&dag, statuses);
        let ended_at = instances_end(&dag, instances);
        let span = tracing::info_span!("run", dag = %row.dag_id, run = %row.run_id);
        Self {
            span,
            row,
            dag,
            progress,
            tries_before_clear,
            next_retry,
            outputs: HashMap::new(),
            started_at: vec![None; n],
            ended_at,
            executor,
            stopped: false,
        }
    }

    /// A span for a try of `task` (`task`, `try` fields), in the run's.
    pub fn try_span(&self, task: usize, try_number: u32) -> tracing::Span {
        tracing::info_span!(parent: &self.span, "try", task = %self.task_id(task), r#try = i64::from(try_number))
    }

    pub fn task_id(&self, task: usize) -> &str {
        self.dag.tasks()[task].id.as_str()
    }

    pub fn state(&self, task: usize) -> TaskState {
        self.progress.status(task).state
    }

    /// The store's (absolute) try number of the current try of `task`.
    pub fn try_number(&self, task: usize) -> u32 {
        self.tries_before_clear[task] + self.progress.status(task).tries
    }

    /// Tasks whose retry delay has passed.
    pub fn retries_due(&self, now: DateTime<Utc>) -> Vec<usize> {
        (0..self.dag.tasks().len())
            .filter(|t| self.state(*t) == TaskState::UpForRetry)
            .filter(|t| self.next_retry[*t].is_none_or(|at| at <= now))
            .collect()
    }

    /// The earliest pending retry.
    pub fn next_retry_at(&self) -> Option<DateTime<Utc>> {
        (0..self.dag.tasks().len())
            .filter(|t| self.state(*t) == TaskState::UpForRetry)
            .filter_map(|t| self.next_retry[t])
            .min()
    }
}

/// When each task's last try ended, from the store.
fn instances_end(dag: &Dag, instances: &[TaskInstanceRow]) -> Vec<Option<DateTime<Utc>>> {
    let mut ends = vec![None; dag.tasks().len()];
    for ti in instances {
        if let Some(i) = dag.index_of(&ti.task_id) {
            ends[i] = ti.end_date;
        }
    }
    ends
}

impl ActiveRun {
    /// How long task `task` waited after its last upstream ended, if known.
    pub fn schedule_latency(&self, task: usize, started: DateTime<Utc>) -> Option<f64> {
        let last = self.dag.tasks()[task]
            .upstream
            .iter()
            .filter_map(|u| self.ended_at[u.task])
            .max()?;
        Some((started - last).num_microseconds()? as f64 / 1e6)
    }
}
