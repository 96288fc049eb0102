//! What a task sees and returns: its context, its inputs, its output, its
//! errors, and the trait `#[task]` implements.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{DagId, DataInterval, RunId, RunType, TaskId, TaskOptions};

/// What a running task knows about itself and its run.
///
/// A task takes `ctx: &TaskContext` as a parameter to read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskContext {
    /// The DAG.
    pub dag_id: DagId,
    /// The run.
    pub run_id: RunId,
    /// This task.
    pub task_id: TaskId,
    /// Which try this is, from 1.
    pub try_number: u32,
    /// The most tries this task instance gets.
    pub max_tries: u32,
    /// How the run came to be.
    pub run_type: RunType,
    /// The run's data interval; its start is the logical date.
    pub data_interval: DataInterval,
    /// The run's configuration (`--conf` JSON), `{}` when none was given.
    pub conf: serde_json::Value,
}

impl TaskContext {
    /// The run's logical date (the seed's `execution_date`): the start of
    /// its data interval.
    pub fn logical_date(&self) -> DateTime<Utc> {
        self.data_interval.start
    }

    /// Alias of [`TaskContext::logical_date`], as the seed names it.
    pub fn execution_date(&self) -> DateTime<Utc> {
        self.data_interval.start
    }

    /// The span of data this run covers.
    pub fn data_interval(&self) -> DataInterval {
        self.data_interval
    }

    /// Whether this is a retry rather than the first try.
    pub fn is_retry(&self) -> bool {
        self.try_number > 1
    }

    /// Reads `key` of the run's conf as a `T`; `Ok(None)` when absent.
    pub fn param<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TaskError> {
        match self.conf.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| {
                TaskError::fatal(format!(
                    "conf key {key:?} cannot be read as {}: {e}",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }
}

/// Why a try ended without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskErrorKind {
    /// The task failed; it is retried while tries remain.
    Failed,
    /// The task failed and must not be retried.
    Fatal,
    /// The task chose not to run; it ends `skipped`, not failed.
    Skipped,
    /// The try ran past its timeout.
    TimedOut,
    /// The task panicked.
    Panicked,
    /// An input from an upstream task was missing or of the wrong shape.
    Input,
    /// The try was lost with the scheduler or worker running it (a crash,
    /// a vanished pod): it is tried again without using the task's
    /// `retries`, up to its `max_lost_tries`.
    Lost,
    /// A person or a deadline stopped the try; it is not retried.
    Stopped,
}

/// A task's failure (or decision to skip itself).
///
/// Any error type converts into it with `?`, and stays reachable through
/// [`TaskError::source_error`] and [`TaskError::downcast_ref`].
pub struct TaskError {
    kind: TaskErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl TaskError {
    fn new(kind: TaskErrorKind, message: impl fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
            source: None,
        }
    }

    /// A failure described by a message; retried while tries remain.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Failed, message)
    }

    /// A failure that must not be retried (bad configuration, bad data).
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Fatal, message)
    }

    /// The task skips itself: it ends `skipped` and its downstreams follow
    /// their trigger rules.
    pub fn skip(reason: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Skipped, reason)
    }

    /// The try ran past its timeout.
    pub fn timed_out(timeout: std::time::Duration) -> Self {
        Self::new(
            TaskErrorKind::TimedOut,
            format!("timed out after {}", crate::duration::format(timeout)),
        )
    }

    /// The task panicked with `message`.
    pub fn panicked(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Panicked, format!("panicked: {message}"))
    }

    /// The try was lost with the process running it (see
    /// [`TaskErrorKind::Lost`]).
    pub fn lost(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Lost, message)
    }

    /// The try was stopped on request (see [`TaskErrorKind::Stopped`]).
    pub fn stopped(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Stopped, message)
    }

    /// Whether the try was lost rather than failed.
    pub fn is_lost(&self) -> bool {
        self.kind == TaskErrorKind::Lost
    }

    /// An input could not be read.
    pub fn input(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Input, message)
    }

    /// Rebuilds an error from its kind and message (e.g. as reported by a
    /// worker process).
    pub fn from_parts(kind: TaskErrorKind, message: impl fmt::Display) -> Self {
        Self::new(kind, message)
    }

    /// Why the try ended.
    pub fn kind(&self) -> TaskErrorKind {
        self.kind
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the task skipped itself.
    pub fn is_skip(&self) -> bool {
        self.kind == TaskErrorKind::Skipped
    }

    /// Whether another try may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            TaskErrorKind::Failed | TaskErrorKind::TimedOut | TaskErrorKind::Panicked
        )
    }

    /// The task's own error, if it returned one.
    pub fn source_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// The task's own error as an `E`, if it is one.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.as_deref().and_then(|e| e.downcast_ref::<E>())
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        Self {
            kind: TaskErrorKind::Failed,
            message,
            source: Some(Box::new(e)),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

/// The downstream tasks a branch task chose to run. Direct downstreams
/// not named are skipped.
///
/// ```
/// # use goflow_core::Branch;
/// fn route(total: f64) -> Branch {
///     if total > 1000.0 { Branch::to(["big_report"]) } else { Branch::to(["small_report"]) }
/// }
/// assert_eq!(route(5.0).targets(), ["small_report"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Branch(Vec<String>);

impl Branch {
    /// Follow the named downstream tasks.
    pub fn to<I, S>(tasks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Branch(tasks.into_iter().map(Into::into).collect())
    }

    /// Follow no downstream task.
    pub fn none() -> Self {
        Branch(Vec::new())
    }

    /// The chosen task ids.
    pub fn targets(&self) -> &[String] {
        &self.0
    }
}

/// A finished task's output: its value as JSON and, for branch tasks, the
/// downstreams it chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// The returned value.
    pub value: serde_json::Value,
    /// For a branch task, the downstream task ids to follow.
    pub follow: Option<Vec<String>>,
}

/// The outputs of a task's upstream tasks, by task id.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    values: HashMap<String, serde_json::Value>,
}

impl Inputs {
    /// No inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the output of `upstream`.
    pub fn insert(&mut self, upstream: impl Into<String>, value: serde_json::Value) {
        self.values.insert(upstream.into(), value);
    }

    /// The raw output of `upstream`.
    pub fn raw(&self, upstream: &str) -> Option<&serde_json::Value> {
        self.values.get(upstream)
    }

    /// Reads the output of `upstream` as a `T`.
    pub fn read<T: DeserializeOwned>(&self, upstream: &str) -> Result<T, TaskError> {
        let value = self.values.get(upstream).ok_or_else(|| {
            TaskError::input(format!(
                "the output of upstream task {upstream:?} is missing"
            ))
        })?;
        T::deserialize(value).map_err(|e| {
            TaskError::input(format!(
                "the output of upstream task {upstream:?} cannot be read as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The future a task's body runs as.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<TaskOutput, TaskError>> + Send>>;

/// A node's entry point, generated by `#[dag]`: reads the inputs, calls the
/// task function, serializes its output.
pub type TaskFn = fn(TaskContext, &Inputs) -> TaskFuture;

/// A value that can flow between tasks: serializable, deserializable and
/// sendable across threads.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's output: it must implement `Serialize` and `Deserialize`",
    label = "not serializable",
    note = "task outputs are passed between tasks (and processes) as JSON; derive `Serialize` and `Deserialize` for it"
)]
pub trait TaskData: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> TaskData for T {}

/// Implemented by `#[task]` for a hidden type named like the task
/// function, so that `#[dag]` can name the task's output type and options.
pub trait TaskDef {
    /// What the task returns on success.
    type Output: TaskData;
    /// The function's name.
    const NAME: &'static str;
    /// The options given in `#[task(...)]`.
    fn options() -> TaskOptions;
    /// For branch tasks, the chosen downstreams.
    fn follow(_output: &Self::Output) -> Option<Vec<String>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct DiskFull;
    impl fmt::Display for DiskFull {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("disk full")
        }
    }
    impl StdError for DiskFull {}

    #[test]
    fn user_errors_stay_reachable() {
        let e: TaskError = DiskFull.into();
        assert_eq!(e.to_string(), "disk full");
        assert!(e.downcast_ref::<DiskFull>().is_some());
        assert!(e.is_retryable());
        assert!(!TaskError::fatal("bad config").is_retryable());
        assert!(TaskError::skip("no data").is_skip());
    }

    #[test]
    fn inputs_name_what_is_wrong() {
        let mut inputs = Inputs::new();
        inputs.insert("load", serde_json::json!([1, 2, 3]));
        assert_eq!(inputs.read::<Vec<u32>>("load").unwrap(), vec![1, 2, 3]);
        let err = inputs.read::<String>("load").unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Input);
        assert!(err.to_string().contains("\"load\""), "{err}");
        assert!(inputs
            .read::<u32>("other")
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }

    #[test]
    fn params_from_conf() {
        let ctx = TaskContext {
            dag_id: DagId::new("d").unwrap(),
            run_id: RunId::new("r").unwrap(),
            task_id: TaskId::new("t").unwrap(),
            try_number: 1,
            max_tries: 1,
            run_type: RunType::Manual,
            data_interval: DataInterval::at(Utc::now()),
            conf: serde_json::json!({"limit": 10, "name": "x"}),
        };
        assert_eq!(ctx.param::<u32>("limit").unwrap(), Some(10));
        assert_eq!(ctx.param::<u32>("absent").unwrap(), None);
        assert!(ctx.param::<u32>("name").is_err());
    }
}
