//! The goflow model: DAGs, schedules, trigger rules, task options and the
//! state machines of runs and task instances.
//!
//! This crate does no I/O and needs no async runtime: everything here can
//! be decided without a clock, a socket or a disk, and is unit-tested
//! here. The scheduler's rules live in [`run::RunProgress`].
//!
//! Users reach these types through the `goflow` crate.

pub mod alerts;
pub mod authoring;
mod context;
pub mod dag;
pub mod due;
pub mod duration;
mod error;
pub mod id;
pub mod options;
pub mod run;
pub mod schedule;
pub mod state;
pub mod task;
pub mod trigger;

pub use alerts::{Alert, AlertKind, AlertSettings};
pub use context::{TaskContext, TaskContextBuilder};
pub use dag::{Dag, DagBuilder, EdgeKind, TaskNode, TaskSpec, Upstream};
pub use error::{Error, Result};
pub use id::{DagId, RunId, TaskId};
pub use options::{Backoff, ExecutorKind, KubernetesOptions, RetryPolicy, TaskOptions};
pub use run::{Finish, Outcome, RunProgress, TaskStatus};
pub use schedule::{DataInterval, Schedule};
pub use state::{RunState, RunType, TaskState};
pub use task::{
    Branch, Inputs, TaskData, TaskDef, TaskError, TaskErrorKind, TaskFn, TaskFuture, TaskOutput,
};
pub use trigger::{TriggerRule, Verdict};

/// Re-exported so that generated code and users name one version.
pub use chrono_tz::Tz;
