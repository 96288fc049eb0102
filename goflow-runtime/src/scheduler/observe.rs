//! Watching a scheduler work: [`Scheduler::observe`] hands out a stream of
//! what it records, as it records it — task state changes, the lines of
//! the tries' logs, and the runs it finishes. `dags test` prints it.
//!
//! Events are sent once the store has them (a write that fails is retried
//! with the batch, and only then reported), in the order the scheduler
//! saw them happen: a try's `running` change, its `started` line, its own
//! lines, its `ended` line, its end, then what its end unblocked.

use std::time::Duration;

use chrono::{DateTime, Utc};
use goflow_core::TaskState;
use goflow_store::NewLogLine;
use tokio::sync::mpsc;

use super::active::ActiveRun;
use super::{RunFinished, Scheduler};

/// Something a scheduler recorded (see [`Scheduler::observe`]).
#[derive(Clone, Debug, PartialEq)]
pub enum SchedulerEvent {
    /// A task instance changed state.
    Task(TaskChanged),
    /// A line was added to a try's log: goflow's own (stream `system`) or
    /// the task's.
    Log(NewLogLine),
    /// A run ended.
    RunFinished(RunFinished),
}

/// A task instance's state change, as a scheduler made it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskChanged {
    /// The run's row id.
    pub run: i64,
    /// The task.
    pub task_id: String,
    /// Its state before.
    pub from: TaskState,
    /// Its state now.
    pub to: TaskState,
    /// The try the change belongs to, as the store numbers it (the
    /// current or last one; 0 before the first try).
    pub try_number: u32,
    /// The number the last try allowed will have.
    pub max_tries: u32,
    /// Why a try ended without success (or why the task skipped itself).
    pub error: Option<String>,
    /// After a failed try that will be retried: the wait before the retry.
    pub retry_delay: Option<Duration>,
    /// When a try ended: how long it ran, as the scheduler saw it.
    pub duration: Option<Duration>,
    /// When a try succeeded: the output it hands on.
    pub output: Option<serde_json::Value>,
    /// When the change was made.
    pub at: DateTime<Utc>,
}

/// What a state change carries besides the states.
#[derive(Default)]
pub(super) struct Details {
    pub error: Option<String>,
    pub retry_delay: Option<Duration>,
    pub duration: Option<Duration>,
    pub output: Option<serde_json::Value>,
}

/// Events of one step, kept until the step's writes succeed; nothing is
/// kept (or built) when nobody observes.
pub(super) struct Observed(Option<Vec<SchedulerEvent>>);

impl Observed {
    /// Task `task` of `run` went from `from` to `to` at `at`.
    pub fn task(
        &mut self,
        run: &ActiveRun,
        task: usize,
        (from, to): (TaskState, TaskState),
        at: DateTime<Utc>,
        details: impl FnOnce() -> Details,
    ) {
        if let Some(events) = &mut self.0 {
            let d = details();
            let node = &run.dag.tasks()[task];
            events.push(SchedulerEvent::Task(TaskChanged {
                run: run.row.id,
                task_id: node.id.to_string(),
                from,
                to,
                try_number: run.try_number(task),
                max_tries: run.tries_before_clear[task] + node.options.retry_policy().max_tries(),
                error: d.error,
                retry_delay: d.retry_delay,
                duration: d.duration,
                output: d.output,
                at,
            }));
        }
    }

    /// `line` was added to a try's log.
    pub fn log(&mut self, line: Option<&NewLogLine>) {
        if let (Some(events), Some(line)) = (&mut self.0, line) {
            events.push(SchedulerEvent::Log(line.clone()));
        }
    }
}

impl Scheduler {
    /// A stream of what this scheduler records from now on: task state
    /// changes, log lines and finished runs (see [`SchedulerEvent`]), of
    /// the runs it drives — not the changes it makes when it takes over
    /// the runs of a stopped scheduler, nor those stop requests make. The
    /// stream ends when the scheduler stops. A later call replaces the
    /// earlier stream.
    pub fn observe(&mut self) -> mpsc::UnboundedReceiver<SchedulerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.observer = Some(tx);
        rx
    }

    /// A buffer for the events of a step.
    pub(super) fn observed(&self) -> Observed {
        Observed(self.observer.as_ref().map(|_| Vec::new()))
    }

    /// Sends the events of a step whose writes succeeded.
    pub(super) fn send_observed(&self, observed: Observed) {
        if let (Some(tx), Some(events)) = (&self.observer, observed.0) {
            for event in events {
                let _ = tx.send(event);
            }
        }
    }
}
