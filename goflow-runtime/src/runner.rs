//! Runs one DAG run in-process, every task on the tokio runtime: what
//! `dags test` uses.
//!
//! [`RunProgress`] decides everything (what may run, in which order, what
//! is skipped, when to retry, when the run is over); this module only
//! executes what it decides and reports each state change to an observer.
//! The loop is event-driven: it wakes when a try ends or a retry delay
//! passes, never on a polling interval.
//!
//! ```
//! # use std::sync::Arc;
//! # use goflow_core::{DagBuilder, DataInterval, RunId, RunType};
//! # use goflow_runtime::runner::{run_dag, RunParams};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let dag = Arc::new(DagBuilder::new("empty").build()?);
//! let params = RunParams {
//!     run_id: RunId::new("manual__1")?,
//!     run_type: RunType::Manual,
//!     data_interval: DataInterval::at(chrono::Utc::now()),
//!     conf: serde_json::json!({}),
//! };
//! let report = run_dag(dag, params, &mut |event| println!("{event:?}")).await?;
//! assert!(report.state.is_terminal());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use goflow_core::{
    Dag, DagId, DataInterval, EdgeKind, Finish, Inputs, Outcome, RunId, RunProgress, RunState,
    RunType, TaskContext, TaskError, TaskId, TaskOutput, TaskState,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// What a run is: its id, how it came to be, the data it covers, its conf.
#[derive(Clone, Debug, PartialEq)]
pub struct RunParams {
    /// The run's id.
    pub run_id: RunId,
    /// How the run came to be.
    pub run_type: RunType,
    /// The data interval; its start is the logical date.
    pub data_interval: DataInterval,
    /// The run's configuration, `{}` when none was given.
    pub conf: serde_json::Value,
}

/// Something that happened in a run, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// The DAG.
        dag_id: DagId,
        /// The run.
        run_id: RunId,
        /// The data interval it covers.
        data_interval: DataInterval,
        /// When.
        at: DateTime<Utc>,
    },
    /// A task instance changed state.
    Task(TaskEvent),
    /// The run ended.
    RunFinished {
        /// The run.
        run_id: RunId,
        /// `success` or `failed`.
        state: RunState,
        /// How long the run took.
        duration: Duration,
        /// When.
        at: DateTime<Utc>,
    },
}

/// A task instance's state change.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEvent {
    /// The task.
    pub task_id: TaskId,
    /// Its state before.
    pub from: TaskState,
    /// Its state now.
    pub to: TaskState,
    /// The try the change belongs to (the current or last one; 0 before
    /// the first try).
    pub try_number: u32,
    /// The most tries the task instance gets.
    pub max_tries: u32,
    /// Why a try ended without success (or why the task skipped itself).
    pub error: Option<String>,
    /// After a failed try that will be retried: the wait before the retry.
    pub retry_delay: Option<Duration>,
    /// When a try ended: how long it ran.
    pub duration: Option<Duration>,
    /// When the change happened.
    pub at: DateTime<Utc>,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// `success` or `failed`.
    pub state: RunState,
    /// How long the run took.
    pub duration: Duration,
    /// One row per task, in the DAG's declaration order.
    pub tasks: Vec<TaskReport>,
}

/// How one task instance of a run ended.
#[derive(Debug)]
pub struct TaskReport {
    /// The task.
    pub task_id: TaskId,
    /// Its final state.
    pub state: TaskState,
    /// Tries started.
    pub tries: u32,
    /// Time spent running, over all tries.
    pub duration: Duration,
    /// The error of the last try, if it did not succeed (the task's own
    /// error stays reachable through [`TaskError::source_error`]).
    pub error: Option<TaskError>,
    /// The output of a successful task.
    pub output: Option<serde_json::Value>,
}

impl RunReport {
    /// The row of task `id`.
    pub fn task(&self, id: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.task_id.as_str() == id)
    }
}

/// Why the runner stopped before the run ended. Either means a bug in
/// goflow rather than in the DAG.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run's state machine refused a step the runner took.
    #[error("the run's state machine refused a step: {0}")]
    Transition(#[from] goflow_core::Error),
    /// Tasks are unfinished, yet nothing runs and no retry is due.
    #[error("the run stalled: {tasks} can never start")]
    Stalled {
        /// The unfinished tasks, comma-separated.
        tasks: String,
    },
}

/// Runs one run of `dag` to its end and reports how each task ended.
///
/// Every runnable task is spawned on the current tokio runtime, at most
/// [`Dag::max_active_tasks`] at once, higher priority first. A try that
/// times out or panics fails (and is retried by its policy); the runner
/// survives it. `observer` sees every state change as it happens.
///
/// Dropping the returned future aborts the tasks still running.
pub async fn run_dag(
    dag: Arc<Dag>,
    params: RunParams,
    observer: &mut dyn FnMut(&RunEvent),
) -> Result<RunReport, RunError> {
    let mut run = Run::new(dag, params, observer);
    (run.observer)(&RunEvent::RunStarted {
        dag_id: run.dag.id().clone(),
        run_id: run.params.run_id.clone(),
        data_interval: run.params.data_interval,
        at: Utc::now(),
    });
    run.settle_and_launch(None)?;
    while !run.progress.run_state().is_terminal() {
        let Some(joined) = run.jobs.join_next_with_id().await else {
            return Err(run.stalled());
        };
        let changed = match joined {
            Ok((id, job)) => {
                run.slots.remove(&id);
                match job {
                    Job::Try { task, result } => run.finish_try(task, result)?,
                    Job::RetryDue { task } => run.retry_due(task)?,
                }
            }
            Err(e) => match run.slots.remove(&e.id()) {
                Some(Slot::Try(task)) => {
                    let error = if e.is_panic() {
                        TaskError::panicked(crate::panic_message(&*e.into_panic()))
                    } else {
                        TaskError::msg("the task was cancelled")
                    };
                    run.finish_try(task, Err(error))?
                }
                Some(Slot::Timer(task)) => run.retry_due(task)?,
                None => continue,
            },
        };
        run.settle_and_launch(Some(changed))?;
    }
    Ok(run.report())
}

/// What a spawned job returns.
enum Job {
    Try {
        task: usize,
        result: Result<TaskOutput, TaskError>,
    },
    RetryDue {
        task: usize,
    },
}

/// What a spawned job is, so that a panicked one is still known.
#[derive(Clone, Copy)]
enum Slot {
    Try(usize),
    Timer(usize),
}

/// Per task: what the report needs beyond [`RunProgress`].
#[derive(Default)]
struct Row {
    started: Option<Instant>,
    duration: Duration,
    error: Option<TaskError>,
    output: Option<serde_json::Value>,
}

struct Run<'o> {
    dag: Arc<Dag>,
    params: RunParams,
    progress: RunProgress,
    rows: Vec<Row>,
    jobs: JoinSet<Job>,
    slots: HashMap<tokio::task::Id, Slot>,
    started: Instant,
    observer: &'o mut dyn FnMut(&RunEvent),
}

impl<'o> Run<'o> {
    fn new(dag: Arc<Dag>, params: RunParams, observer: &'o mut dyn FnMut(&RunEvent)) -> Self {
        let progress = RunProgress::new(&dag);
        let rows = dag.tasks().iter().map(|_| Row::default()).collect();
        Self {
            dag,
            params,
            progress,
            rows,
            jobs: JoinSet::new(),
            slots: HashMap::new(),
            started: Instant::now(),
            observer,
        }
    }

    fn emit(&mut self, task: usize, from: TaskState, to: TaskState, details: Details) {
        let node = &self.dag.tasks()[task];
        let event = TaskEvent {
            task_id: node.id.clone(),
            from,
            to,
            try_number: self.progress.status(task).tries,
            max_tries: node.options.retry_policy().max_tries(),
            error: details.error,
            retry_delay: details.retry_delay,
            duration: details.duration,
            at: Utc::now(),
        };
        tracing::debug!(
            dag = %self.dag.id(), run = %self.params.run_id, task = %event.task_id,
            from = %from, to = %to, try_number = event.try_number, "task state changed"
        );
        (self.observer)(&RunEvent::Task(event));
    }

    /// Decides what pending tasks can now do (all of them at the start,
    /// then only what a change to task `after` affects), then fills free
    /// slots with runnable tasks, highest priority first.
    fn settle_and_launch(&mut self, after: Option<usize>) -> Result<(), RunError> {
        let changes = match after {
            None => self.progress.settle(&self.dag),
            Some(task) => self.progress.settle_after(&self.dag, &[task]),
        };
        for change in changes {
            self.emit(change.task, change.from, change.to, Details::default());
        }
        let limit = self.dag.max_active_tasks() as usize;
        let free = limit.saturating_sub(self.progress.active());
        for task in self.progress.runnable(&self.dag).into_iter().take(free) {
            self.progress.queue(&self.dag, task)?;
            self.emit(
                task,
                TaskState::Scheduled,
                TaskState::Queued,
                Details::default(),
            );
            let change = self.progress.start(&self.dag, task)?;
            self.emit(task, change.from, change.to, Details::default());
            self.spawn_try(task);
        }
        Ok(())
    }

    fn spawn_try(&mut self, task: usize) {
        let node = &self.dag.tasks()[task];
        let try_number = self.progress.status(task).tries;
        let ctx = TaskContext::builder(
            self.dag.id().clone(),
            self.params.run_id.clone(),
            node.id.clone(),
        )
        .try_number(try_number)
        .max_tries(node.options.retry_policy().max_tries())
        .run_type(self.params.run_type)
        .data_interval(self.params.data_interval)
        .conf(self.params.conf.clone())
        .tz(self.dag.tz())
        .build();
        let inputs = self.inputs_of(task);
        let body = node.run;
        let timeout = node.options.timeout;
        let span = tracing::info_span!(
            "task", dag = %self.dag.id(), run = %self.params.run_id, task = %node.id, try_number
        );
        let handle = self.jobs.spawn(
            async move {
                let fut = body(ctx, &inputs);
                let result = match timeout {
                    Some(limit) => tokio::time::timeout(limit, fut)
                        .await
                        .unwrap_or_else(|_| Err(TaskError::timed_out(limit))),
                    None => fut.await,
                };
                Job::Try { task, result }
            }
            .instrument(span),
        );
        self.slots.insert(handle.id(), Slot::Try(task));
        self.rows[task].started = Some(Instant::now());
    }

    /// The outputs of the task's data upstreams, by upstream id. Settling
    /// only schedules a task once all of them succeeded.
    fn inputs_of(&self, task: usize) -> Inputs {
        let mut inputs = Inputs::new();
        for up in self.dag.tasks()[task]
            .upstream
            .iter()
            .filter(|u| u.kind == EdgeKind::Data)
        {
            if let Some(value) = &self.rows[up.task].output {
                inputs.insert(self.dag.tasks()[up.task].id.as_str(), value.clone());
            }
        }
        inputs
    }

    fn finish_try(
        &mut self,
        task: usize,
        result: Result<TaskOutput, TaskError>,
    ) -> Result<usize, RunError> {
        let elapsed = self.rows[task]
            .started
            .take()
            .map(|s| s.elapsed())
            .unwrap_or_default();
        let result = match self.dag.branch_failure(task, &result) {
            Some(e) => Err(e),
            None => result,
        };
        let (change, finish) = self
            .progress
            .finish(&self.dag, task, Outcome::of(&result))?;
        let row = &mut self.rows[task];
        row.duration += elapsed;
        let error = match result {
            Ok(out) => {
                row.output = Some(out.value);
                row.error = None;
                None
            }
            Err(e) => {
                let message = e.to_string();
                row.error = Some(e);
                Some(message)
            }
        };
        let retry_delay = match finish {
            Finish::Retry { delay } => {
                let handle = self.jobs.spawn(async move {
                    tokio::time::sleep(delay).await;
                    Job::RetryDue { task }
                });
                self.slots.insert(handle.id(), Slot::Timer(task));
                Some(delay)
            }
            Finish::Success | Finish::Skipped | Finish::Failed => None,
        };
        let details = Details {
            error,
            retry_delay,
            duration: Some(elapsed),
        };
        self.emit(task, change.from, change.to, details);
        Ok(task)
    }

    fn retry_due(&mut self, task: usize) -> Result<usize, RunError> {
        let change = self.progress.retry_due(&self.dag, task)?;
        self.emit(task, change.from, change.to, Details::default());
        Ok(task)
    }

    fn stalled(&self) -> RunError {
        let tasks = self
            .dag
            .tasks()
            .iter()
            .zip(self.progress.statuses())
            .filter(|(_, s)| !s.state.is_terminal())
            .map(|(t, s)| format!("{} ({})", t.id, s.state))
            .collect::<Vec<_>>()
            .join(", ");
        RunError::Stalled { tasks }
    }

    fn report(self) -> RunReport {
        let duration = self.started.elapsed();
        let state = self.progress.run_state();
        (self.observer)(&RunEvent::RunFinished {
            run_id: self.params.run_id.clone(),
            state,
            duration,
            at: Utc::now(),
        });
        let tasks = self
            .dag
            .tasks()
            .iter()
            .zip(self.progress.statuses())
            .zip(self.rows)
            .map(|((node, status), row)| TaskReport {
                task_id: node.id.clone(),
                state: status.state,
                tries: status.tries,
                duration: row.duration,
                error: row.error,
                output: row.output,
            })
            .collect();
        RunReport {
            run_id: self.params.run_id,
            state,
            duration,
            tasks,
        }
    }
}

/// What a state change carries besides the states.
#[derive(Default)]
struct Details {
    error: Option<String>,
    retry_delay: Option<Duration>,
    duration: Option<Duration>,
}
