//! What a task returns: its output, its errors, its inputs, and the trait
//! `#[task]` implements.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{TaskContext, TaskOptions};

/// Why a try ended without success.
///
/// Non-exhaustive: more kinds may come, so a `match` needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
/// [`TaskError::source_error`] and [`TaskError::downcast_ref`]. A task may
/// also return its own error type: see [`IntoTaskError`] for which ones.
pub struct TaskError {
    kind: TaskErrorKind,
    message: String,
    source: Option<Box<dyn HeldError>>,
}

/// Where a [`TaskError`] keeps the task's own error.
trait HeldError: Send + Sync + 'static {
    fn error(&self) -> &(dyn StdError + Send + Sync + 'static);
}

/// A `std::error::Error` kept as it is.
struct Owned<E>(E);

impl<E: StdError + Send + Sync + 'static> HeldError for Owned<E> {
    fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &self.0
    }
}

/// A handle to an error (`Box<dyn Error + Send + Sync>`, `anyhow::Error`):
/// the error it points to is the one shown and downcast.
struct Behind<D>(D);

impl<D> HeldError for Behind<D>
where
    D: Deref<Target = dyn StdError + Send + Sync + 'static> + Send + Sync + 'static,
{
    fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

/// `error`'s message followed by those of its causes: `a: b: c`.
fn message_with_causes(error: &(dyn StdError + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
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

    /// The task's own error, if it returned one that can be kept (see
    /// [`IntoTaskError`]).
    pub fn source_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref().map(HeldError::error)
    }

    /// The task's own error as an `E`, if it is one or one of its causes
    /// is (as with `anyhow::Error::downcast_ref`, an error given context
    /// is still found).
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        let mut error: Option<&(dyn StdError + 'static)> = Some(self.source_error()?);
        while let Some(e) = error {
            if let Some(found) = e.downcast_ref::<E>() {
                return Some(found);
            }
            error = e.source();
        }
        None
    }

    /// A failure caused by `error`, kept as the source.
    fn caused_by(error: Box<dyn HeldError>) -> Self {
        Self {
            kind: TaskErrorKind::Failed,
            message: message_with_causes(error.error()),
            source: Some(error),
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        Self::caused_by(Box::new(Owned(e)))
    }
}

/// An error type a task may return: a task returning `Result<T, E>` (or an
/// alias of it, such as `io::Result<T>` or `anyhow::Result<T>`) fails with
/// the `Err` converted by this trait. Implemented for:
///
/// - every `std::error::Error + Send + Sync + 'static`: kept, so
///   [`TaskError::downcast_ref`] finds it;
/// - what dereferences (mutably) to `dyn Error + Send + Sync`:
///   `anyhow::Error`, `Box<dyn Error + Send + Sync>`; the error behind it
///   is kept;
/// - `Box<dyn Error>` and `Box<dyn Error + Send>`: their message and
///   causes only (they cannot cross threads, so they cannot be kept);
/// - `String`, `&str` and `Cow<str>`: the message;
/// - [`TaskError`] itself, to fail with a chosen kind
///   ([`TaskError::fatal`], [`TaskError::skip`], ...).
///
/// The message of a kept or boxed error is followed by its causes:
/// `reading config: file not found`.
///
/// `Via` only tells the implementations apart; it is inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's error type",
    label = "not an error type",
    note = "a task's error must implement `std::error::Error + Send + Sync + 'static`, or be `anyhow::Error`, `Box<dyn Error>` (with or without `+ Send + Sync`), `String`, `&str` or `goflow::TaskError`"
)]
pub trait IntoTaskError<Via> {
    /// The failure this error stands for.
    fn into_task_error(self) -> TaskError;
}

/// The markers telling [`IntoTaskError`]'s implementations apart.
#[doc(hidden)]
pub mod via {
    /// A `std::error::Error + Send + Sync + 'static`.
    pub enum StdError {}
    /// A handle to a `dyn Error + Send + Sync`.
    pub enum Handle {}
    /// A boxed error that cannot be kept.
    pub enum Local {}
    /// A message.
    pub enum Message {}
    /// A `TaskError`.
    pub enum Itself {}
}

#[diagnostic::do_not_recommend]
impl<E: StdError + Send + Sync + 'static> IntoTaskError<via::StdError> for E {
    fn into_task_error(self) -> TaskError {
        TaskError::from(self)
    }
}

#[diagnostic::do_not_recommend]
impl<D> IntoTaskError<via::Handle> for D
where
    // `DerefMut` leaves out `Arc<dyn Error + Send + Sync>`, an error
    // itself: one implementation per type, so `Via` can be inferred.
    D: DerefMut<Target = dyn StdError + Send + Sync + 'static> + Send + Sync + 'static,
{
    fn into_task_error(self) -> TaskError {
        TaskError::caused_by(Box::new(Behind(self)))
    }
}

#[diagnostic::do_not_recommend]
impl IntoTaskError<via::Local> for Box<dyn StdError> {
    fn into_task_error(self) -> TaskError {
        TaskError::msg(message_with_causes(&*self))
    }
}

#[diagnostic::do_not_recommend]
impl IntoTaskError<via::Local> for Box<dyn StdError + Send> {
    fn into_task_error(self) -> TaskError {
        TaskError::msg(message_with_causes(&*self))
    }
}

#[diagnostic::do_not_recommend]
impl IntoTaskError<via::Message> for String {
    fn into_task_error(self) -> TaskError {
        TaskError::msg(self)
    }
}

#[diagnostic::do_not_recommend]
impl IntoTaskError<via::Message> for &str {
    fn into_task_error(self) -> TaskError {
        TaskError::msg(self)
    }
}

#[diagnostic::do_not_recommend]
impl IntoTaskError<via::Message> for Cow<'_, str> {
    fn into_task_error(self) -> TaskError {
        TaskError::msg(self)
    }
}

#[diagnostic::do_not_recommend]
impl IntoTaskError<via::Itself> for TaskError {
    fn into_task_error(self) -> TaskError {
        self
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
    note = "task outputs are passed between tasks (and processes) as JSON; derive `Serialize` and `Deserialize` for it (and keep it `Send`: no `Rc`, no borrowed data)"
)]
pub trait TaskData: Serialize + DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
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
    /// For branch tasks, the chosen downstreams: those of an output that
    /// is goflow's [`Branch`] (by type: a user's type named `Branch` is
    /// data), else `None`.
    fn follow(output: &Self::Output) -> Option<Vec<String>> {
        let output: &dyn std::any::Any = output;
        output
            .downcast_ref::<Branch>()
            .map(|branch| branch.targets().to_vec())
    }
}

/// A type a task may output: every [`TaskData`]. `#[task]` names a
/// task's output type as `<T as SerializableOutput>::Output` (which is
/// `T`), so that when `T` cannot be an output the error names `T` and
/// says why, once: unlike `TaskData`, this trait has no supertraits for
/// rustc to report one by one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's output: it must implement `Serialize` and `Deserialize`",
    label = "not serializable",
    note = "task outputs are passed between tasks (and processes) as JSON; derive `Serialize` and `Deserialize` for it (and keep it `Send`: no `Rc`, no borrowed data)"
)]
pub trait SerializableOutput {
    /// `Self`.
    type Output;
}

#[diagnostic::do_not_recommend]
impl<T: TaskData> SerializableOutput for T {
    type Output = T;
}

/// How `#[task]` reads a task function's return type, by its type rather
/// than by its name: an alias of `Result` is a `Result`, a user's type
/// named `Result` or `Branch` is data. Not a public API.
///
/// Tasks are not generic, so the generated code names the concrete return
/// type `R` and asks, in this order:
///
/// - [`Probe::<R>::KIND`](returns::Probe): `1` for a
///   `std::result::Result`, else `0` (the inherent constant of
///   `Probe<Result<T, E>>` takes precedence over the trait constant of
///   [`Plain`](returns::Plain); stable Rust has no specialization, but it
///   does have this);
/// - [`TaskReturn<R>`](returns::TaskReturn) for
///   [`Returns<KIND>`](returns::Returns): the output type and the error
///   type, and how to split a value into them;
/// - [`SerializableOutput`]: that the output can be stored (with a
///   message naming the output type);
/// - [`IntoTaskError`]: the failure an `Err` is.
///
/// Whether an output chooses downstreams is also a matter of its type:
/// see [`TaskDef::follow`].
#[doc(hidden)]
pub mod returns {
    use std::convert::Infallible;
    use std::marker::PhantomData;

    /// Tells a `Result` return type (`KIND` 1) from any other (0).
    pub struct Probe<R: ?Sized>(PhantomData<R>);

    impl<T, E> Probe<Result<T, E>> {
        /// A `Result`: its `Ok` is the output, its `Err` a failure.
        pub const KIND: u8 = 1;
    }

    /// The fallback of [`Probe`]: must be in scope where `KIND` is read.
    pub trait Plain {
        /// Any other type is the output itself.
        const KIND: u8 = 0;
    }

    impl<R: ?Sized> Plain for Probe<R> {}

    /// A kind of return type, as [`Probe`] found it.
    pub struct Returns<const KIND: u8>;

    /// How a return type `R` of this kind splits into the task's output
    /// and its error.
    pub trait TaskReturn<R> {
        /// What the task outputs on success.
        type Output;
        /// What it fails with.
        type Error;
        /// The output, or the error.
        fn split(ret: R) -> Result<Self::Output, Self::Error>;
    }

    impl<T> TaskReturn<T> for Returns<0> {
        type Output = T;
        type Error = Infallible;
        fn split(ret: T) -> Result<T, Infallible> {
            Ok(ret)
        }
    }

    impl<T, E> TaskReturn<Result<T, E>> for Returns<1> {
        type Output = T;
        type Error = E;
        fn split(ret: Result<T, E>) -> Result<T, E> {
            ret
        }
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

    #[derive(Debug)]
    struct ReadFailed(std::io::Error);
    impl fmt::Display for ReadFailed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading sales.csv")
        }
    }
    impl StdError for ReadFailed {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn convert<E: IntoTaskError<V>, V>(e: E) -> TaskError {
        e.into_task_error()
    }

    #[test]
    fn every_error_type_converts() {
        let e = convert(ReadFailed(std::io::Error::other("disk full")));
        assert_eq!(e.to_string(), "reading sales.csv: disk full");
        assert!(e.downcast_ref::<ReadFailed>().is_some());
        assert!(
            e.downcast_ref::<std::io::Error>().is_some(),
            "causes are searched too"
        );

        let boxed: Box<dyn StdError + Send + Sync> = Box::new(DiskFull);
        let e = convert(boxed);
        assert_eq!(e.to_string(), "disk full");
        assert!(
            e.downcast_ref::<DiskFull>().is_some(),
            "the boxed error is kept"
        );

        let local: Box<dyn StdError> = Box::new(ReadFailed(std::io::Error::other("gone")));
        let e = convert(local);
        assert_eq!(e.to_string(), "reading sales.csv: gone");
        assert!(e.source_error().is_none());
        let local: Box<dyn StdError + Send> = Box::new(DiskFull);
        assert_eq!(convert(local).to_string(), "disk full");

        assert_eq!(convert(String::from("owned")).to_string(), "owned");
        assert_eq!(convert("borrowed").to_string(), "borrowed");
        let e = convert(TaskError::skip("nothing to do"));
        assert!(e.is_skip(), "a TaskError keeps its kind");
        assert!(convert(DiskFull).is_retryable());
    }

    #[test]
    fn return_types_are_told_apart_by_type() {
        use returns::{Plain as _, Probe};
        type Outcome<T> = std::result::Result<T, String>;
        #[allow(dead_code)]
        struct Result<T>(T);
        assert_eq!(Probe::<std::result::Result<u8, String>>::KIND, 1);
        assert_eq!(Probe::<Outcome<u8>>::KIND, 1);
        assert_eq!(Probe::<std::io::Result<()>>::KIND, 1);
        assert_eq!(
            Probe::<Result<u8>>::KIND,
            0,
            "a type named `Result` is data"
        );
        assert_eq!(Probe::<Vec<u8>>::KIND, 0);
        assert_eq!(Probe::<Branch>::KIND, 0);
    }

    #[test]
    fn only_goflows_branch_follows() {
        #[derive(Serialize, Deserialize)]
        struct Branch(Vec<String>);
        struct Routes;
        impl TaskDef for Routes {
            type Output = super::Branch;
            const NAME: &'static str = "routes";
            fn options() -> TaskOptions {
                TaskOptions::default()
            }
        }
        struct Named;
        impl TaskDef for Named {
            type Output = Branch;
            const NAME: &'static str = "named";
            fn options() -> TaskOptions {
                TaskOptions::default()
            }
        }
        let chosen = Routes::follow(&super::Branch::to(["a"]));
        assert_eq!(chosen, Some(vec!["a".to_string()]));
        assert_eq!(Named::follow(&Branch(vec!["a".into()])), None);
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
}
