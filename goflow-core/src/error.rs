//! The model's error type.

/// Errors raised while building or validating the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id breaks its naming rule.
    #[error("invalid {what} {id:?}: {reason}")]
    InvalidId {
        /// Which kind of id (`DAG id`, `task id`, `namespace`, `run id`).
        what: &'static str,
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A schedule that cannot be parsed.
    #[error("invalid schedule {schedule:?}: {reason}")]
    InvalidSchedule {
        /// The schedule as given.
        schedule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An unknown time zone name.
    #[error("unknown time zone {tz:?}: expected an IANA name such as \"Europe/Paris\" or \"UTC\"")]
    InvalidTimeZone {
        /// The name as given.
        tz: String,
    },
    /// A date or date-time that cannot be parsed.
    #[error("invalid date {date:?}: {reason}")]
    InvalidDate {
        /// The date as given.
        date: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value that is not one of the accepted words.
    #[error("invalid {what} {value:?}: expected one of {expected}")]
    InvalidOption {
        /// Which option.
        what: &'static str,
        /// The value as given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// Two tasks of one DAG share an id.
    #[error("DAG {dag}: duplicate task id {task:?}")]
    DuplicateTask {
        /// The DAG.
        dag: String,
        /// The repeated id.
        task: String,
    },
    /// An edge names a task the DAG does not have.
    #[error("DAG {dag}: task {task:?} depends on unknown task {upstream:?}")]
    UnknownUpstream {
        /// The DAG.
        dag: String,
        /// The task with the dangling edge.
        task: String,
        /// The missing upstream.
        upstream: String,
    },
    /// The edges form a cycle.
    #[error("DAG {dag}: the dependencies form a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The DAG.
        dag: String,
        /// The tasks on the cycle, first repeated at the end.
        cycle: Vec<String>,
    },
    /// A state change the state machine does not allow.
    #[error("illegal transition of {what} from {from} to {to}")]
    IllegalTransition {
        /// `task` or `run`.
        what: &'static str,
        /// The current state.
        from: &'static str,
        /// The requested state.
        to: &'static str,
    },
    /// A task id that the DAG does not contain.
    #[error("DAG {dag} has no task {task:?}")]
    UnknownTask {
        /// The DAG.
        dag: String,
        /// The id asked for.
        task: String,
    },
}

/// `Result` with the model's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
