//! The state machines of task instances and DAG runs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The state of one task instance (one task in one run) as it moves from
/// waiting to a terminal outcome.
///
/// Exhaustive on purpose: the states are the state machine, so a `match`
/// may name every one, and a new state is a breaking change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its upstreams.
    Pending,
    /// Its trigger rule is met; waiting for a slot (pool, max active tasks).
    Scheduled,
    /// Handed to an executor, not yet started.
    Queued,
    /// Running.
    Running,
    /// A try failed and another is due after the retry delay.
    UpForRetry,
    /// Finished successfully.
    Success,
    /// Failed on its last try.
    Failed,
    /// Did not run because its upstreams failed.
    UpstreamFailed,
    /// Did not run: skipped by itself, a branch, or its trigger rule.
    Skipped,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 9] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::UpForRetry,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
        }
    }

    /// Whether the task instance is finished for this run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
        )
    }

    /// Whether an executor holds (or is about to hold) the task.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Queued | TaskState::Running)
    }

    /// Whether the state machine allows moving from `self` to `to`.
    ///
    /// Clearing (back to `Pending`) is allowed from every state that no
    /// executor holds; an executor may report an outcome for a queued task
    /// whose start it never saw.
    pub fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        match (self, to) {
            (Pending, Scheduled | Skipped | UpstreamFailed) => true,
            (Scheduled, Queued | Skipped | UpstreamFailed) => true,
            (Queued, Running | Success | Failed | UpForRetry | Skipped | Scheduled) => true,
            (Running, Success | Failed | UpForRetry | Skipped) => true,
            (UpForRetry, Scheduled | Failed | Skipped) => true,
            (from, Pending) => !from.is_active(),
            _ => false,
        }
    }

    /// Moves to `to` if allowed.
    pub fn transition(self, to: TaskState) -> Result<TaskState, Error> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(Error::IllegalTransition {
                what: "task instance",
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

/// The state of a DAG run.
///
/// Exhaustive on purpose: the states are the state machine, so a `match`
/// may name every one, and a new state is a breaking change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created, waiting for a slot (max active runs).
    Queued,
    /// Its tasks are being scheduled.
    Running,
    /// Every task finished and none failed.
    Success,
    /// A task failed (or could not run because of a failure).
    Failed,
}

impl RunState {
    /// Every state.
    pub const ALL: [RunState; 4] = [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    /// Whether the run is finished.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }

    /// Whether the state machine allows moving from `self` to `to`.
    /// A finished run goes back to `Queued` when it is cleared.
    pub fn can_become(self, to: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Queued, Running | Failed) | (Running, Success | Failed) | (Success | Failed, Queued)
        )
    }

    /// Moves to `to` if allowed.
    pub fn transition(self, to: RunState) -> Result<RunState, Error> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(Error::IllegalTransition {
                what: "DAG run",
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

/// How a run came to be.
///
/// Non-exhaustive: more kinds of runs may come, so a `match` needs a `_`
/// arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunType {
    /// Created by the scheduler for a data interval.
    Scheduled,
    /// Triggered by a person (CLI, API, UI).
    Manual,
    /// Created by a backfill.
    Backfill,
    /// A `dags test` run (kept in a private in-memory store unless built
    /// without SQLite).
    Test,
}

impl RunType {
    /// The type's name as stored and shown; also the run id's prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
            RunType::Test => "test",
        }
    }
}

macro_rules! display_and_parse {
    ($ty:ty, $what:literal, $expected:literal, [$($v:expr),+ $(,)?]) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                [$($v),+]
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| Error::InvalidOption {
                        what: $what,
                        value: s.to_owned(),
                        expected: $expected,
                    })
            }
        }
    };
}

display_and_parse!(
    TaskState,
    "task state",
    "pending, scheduled, queued, running, up_for_retry, success, failed, upstream_failed, skipped",
    [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::UpForRetry,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
    ]
);
display_and_parse!(
    RunState,
    "run state",
    "queued, running, success, failed",
    [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed
    ]
);
display_and_parse!(
    RunType,
    "run type",
    "scheduled, manual, backfill, test",
    [
        RunType::Scheduled,
        RunType::Manual,
        RunType::Backfill,
        RunType::Test
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), s);
        }
        assert!("done".parse::<TaskState>().is_err());
    }

    #[test]
    fn task_lifecycle() {
        use TaskState::*;
        let path = [
            Pending, Scheduled, Queued, Running, UpForRetry, Scheduled, Queued, Running, Success,
        ];
        for w in path.windows(2) {
            assert!(w[0].can_become(w[1]), "{} -> {}", w[0], w[1]);
        }
        assert!(!Success.can_become(Running));
        assert!(!Pending.can_become(Running));
        assert!(
            !Running.can_become(Pending),
            "a running task must be cancelled before clearing"
        );
        assert!(Failed.can_become(Pending));
        let err = Success.transition(Running).unwrap_err().to_string();
        assert_eq!(
            err,
            "illegal transition of task instance from success to running"
        );
    }

    #[test]
    fn terminal_states_never_move_except_by_clearing() {
        for from in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert_eq!(
                    from.can_become(to),
                    to == TaskState::Pending,
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn run_lifecycle() {
        use RunState::*;
        assert!(Queued.can_become(Running));
        assert!(Running.can_become(Success));
        assert!(Failed.can_become(Queued));
        assert!(!Success.can_become(Running));
        assert!(!Queued.can_become(Success));
    }
}
