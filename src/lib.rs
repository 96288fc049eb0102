//! # goflow
//!
//! Workflows (DAGs of tasks) defined in Rust and compiled into one binary
//! that is at once the scheduler, the CLI and the worker.
//!
//! ```no_run
//! use goflow::prelude::*;
//!
//! #[task]
//! fn extract() -> Vec<u32> {
//!     vec![1, 2, 3]
//! }
//!
//! #[task(retries = 2, retry_delay = "10s")]
//! fn total(values: Vec<u32>) -> u32 {
//!     values.iter().sum()
//! }
//!
//! #[dag(schedule = "@daily", start = "2026-01-01")]
//! fn numbers() {
//!     let values = extract();
//!     let sum = total(values);
//! }
//!
//! goflow::main!();
//! ```
//!
//! Tasks are plain functions: call them in unit tests. `#[dag]` checks the
//! wiring at compile time: passing `values` (a `Vec<u32>`) where a task
//! expects a `String` does not compile.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use goflow_core::{
    AlertSettings, Backoff, Branch, Dag, DagBuilder, DagId, DataInterval, ExecutorKind, Inputs,
    KubernetesOptions, RunId, RunState, RunType, Schedule, TaskContext, TaskContextBuilder,
    TaskData, TaskDef, TaskError, TaskErrorKind, TaskId, TaskOptions, TaskOutput, TaskState,
    TriggerRule,
};
#[doc(inline)]
pub use goflow_macros::{dag, main, task};

/// Logging from tasks: `goflow::tracing::info!(rows = 3, "read the file")`.
/// Inside a task, events at `INFO` and above go to the try's log (with
/// their level), in every executor; `println!` in an in-process task goes
/// to the scheduler's stdout instead, which no try owns.
pub use tracing;

/// Dates and times, as [`TaskContext`] hands them out: one chrono version
/// for goflow and the tasks.
pub use chrono;

/// The model crate, for what the facade does not re-export. (Not named
/// `core`: under `use goflow::*;` that would shadow the `core` crate.)
pub use goflow_core as model;
/// The runtime crate: registry, CLI, runners.
pub use goflow_runtime as runtime;

// The README's Rust example compiles as a doc test, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

/// What a DAG file needs: `use goflow::prelude::*;`.
pub mod prelude {
    pub use crate::{dag, task, Branch, TaskContext, TaskError};
    pub use serde::{Deserialize, Serialize};
}

/// Paths used by the code the macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use goflow_core::authoring;
    pub use goflow_core::task;
    pub use goflow_core::{
        schedule, AlertSettings, Backoff, Dag, DagBuilder, ExecutorKind, Inputs, KubernetesOptions,
        Schedule, TaskContext, TaskData, TaskDef, TaskError, TaskFuture, TaskOptions, TaskOutput,
        TaskSpec, TriggerRule, Tz,
    };
    pub use goflow_runtime::{run_blocking, DagRegistration, TaskRegistration};
    pub use inventory;
    pub use serde_json;
    pub use std;

    /// The entry point `goflow::main!()` expands to.
    pub fn main() -> std::process::ExitCode {
        goflow_runtime::cli::main()
    }
}
