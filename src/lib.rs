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

// Authoring: what a DAG file writes.
#[doc(inline)]
pub use goflow_core::{Branch, TaskContext, TaskContextBuilder, TaskError, TaskErrorKind};
#[doc(inline)]
pub use goflow_macros::{dag, main, task};

/// What a task may return and fail with: rustc names these traits when
/// a task's output is not serializable or its error type is not one goflow
/// can keep.
#[doc(inline)]
pub use goflow_core::task::{IntoTaskError, SerializableOutput};

// Inspecting DAGs and runs: what `Registry` and `Server` hand out.
#[doc(inline)]
pub use goflow_core::{
    AlertSettings, Backoff, Dag, DagId, DataInterval, ExecutorKind, KubernetesOptions, RunId,
    RunState, RunType, Schedule, TaskId, TaskNode, TaskOptions, TaskState, TriggerRule,
};
#[doc(inline)]
pub use goflow_runtime::{Registry, RegistryError};

// Embedding: goflow inside a program of your own.
#[doc(inline)]
pub use goflow_runtime::server::{
    worker_main_if_requested, Server, ServerBuilder, ServerError, TriggeredRun,
};

/// Logging from tasks: `goflow::tracing::info!(rows = 3, "read the file")`.
/// Inside a task, events at `INFO` and above go to the try's log (with
/// their level), in every executor; `println!` in an in-process task goes
/// to the scheduler's stdout instead, which no try owns.
pub use tracing;

/// Dates and times, as [`TaskContext`] hands them out: one chrono version
/// for goflow and the tasks.
pub use chrono;

/// The scheduler's settings, for [`ServerBuilder::scheduler_config`].
pub mod scheduler {
    #[doc(inline)]
    pub use goflow_runtime::scheduler::SchedulerConfig;
}

/// The web UI and API's settings, for [`ServerBuilder::web_config`].
pub mod web {
    #[doc(inline)]
    pub use goflow_runtime::web::{ApiToken, Probes, TokenOrigin, WebConfig, WebError};
}

/// Alert channels' settings, for [`ServerBuilder::alerts`].
pub mod alerts {
    #[doc(inline)]
    pub use goflow_runtime::alerts::{AlertConfig, AlertConfigError};
}

/// Executors, for [`ServerBuilder::with_executor`]: the local-process
/// executor with a program of your own, the Kubernetes executor's
/// settings, or an executor you write (the [`Executor`](executor::Executor)
/// trait and the types it uses).
pub mod executor {
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    #[doc(inline)]
    pub use goflow_runtime::executor::kubernetes::{KubernetesConfig, KubernetesExecutor};
    #[doc(inline)]
    pub use goflow_runtime::executor::{
        Adoption, EventSender, Executor, ExecutorEvent, InProcessExecutor, Launch,
        LocalProcessExecutor, TryKey, TryMetrics,
    };
}

/// Helpers for your own tests and benchmarks (feature `testing`).
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing {
    /// A fake Kubernetes API server in memory: Jobs are stored, pods never
    /// start. It measures the executor's own cost; it does not imitate
    /// Kubernetes.
    #[cfg(feature = "kubernetes")]
    #[doc(inline)]
    pub use goflow_runtime::executor::kubernetes::testing::FakeApiServer;
}

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
    /// Only what the generated code needs: the traits rustc names in
    /// errors are reached through their public paths.
    pub mod task {
        pub use goflow_core::task::returns;
    }
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
