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

/// The grammar of literals, shared with the `#[task]` and `#[dag]` macros.
pub use goflow_syntax as syntax;

// The macros check inputs against goflow-syntax's bound.
const _: () = assert!(authoring::MAX_INPUTS == goflow_syntax::MAX_INPUTS);

impl From<goflow_syntax::Error> for Error {
    fn from(e: goflow_syntax::Error) -> Self {
        match e {
            goflow_syntax::Error::InvalidSchedule { schedule, reason } => {
                Error::InvalidSchedule { schedule, reason }
            }
            goflow_syntax::Error::InvalidTimeZone { tz } => Error::InvalidTimeZone { tz },
            goflow_syntax::Error::InvalidDate { date, reason } => {
                Error::InvalidDate { date, reason }
            }
            // `goflow_syntax::Error` is non-exhaustive.
            other => Error::InvalidDate {
                date: String::new(),
                reason: other.to_string(),
            },
        }
    }
}

/// goflow-syntax is the grammar the macros check literals with at compile
/// time; these tests keep it and the model's own types the same.
#[cfg(test)]
mod syntax_agrees {
    use super::*;

    #[test]
    fn time_zone_names_are_chrono_tz_s() {
        let ours: Vec<&str> = goflow_syntax::tz::names().to_vec();
        let mut theirs: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
        theirs.sort_unstable();
        assert_eq!(
            ours, theirs,
            "goflow-syntax/src/tz_names.rs is not chrono-tz's list: regenerate it from chrono_tz::TZ_VARIANTS"
        );
        for name in ["Europe/Paris", "Europe/Pariss", "utc"] {
            assert_eq!(
                goflow_syntax::tz::check(name).map_err(|e| e.to_string()),
                schedule::parse_tz(name)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn trigger_rules_and_channels_are_the_model_s() {
        let words: Vec<&str> = TriggerRule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(words, goflow_syntax::words::TRIGGER_RULE.words);
        assert_eq!(
            "all_sucess".parse::<TriggerRule>().unwrap_err().to_string(),
            goflow_syntax::words::TRIGGER_RULE
                .find("all_sucess")
                .unwrap_err()
                .to_string()
        );
        assert_eq!(alerts::CHANNELS, goflow_syntax::words::ALERT_CHANNELS);
        for name in ["email", "pager"] {
            assert_eq!(
                alerts::check_channel(name),
                goflow_syntax::words::check_channel(name)
            );
        }
    }

    #[test]
    fn messages_are_the_model_s() {
        let schedule = Schedule::parse("0 25 * * *", "UTC").unwrap_err();
        let syntax = goflow_syntax::schedule::parse("0 25 * * *").unwrap_err();
        assert_eq!(schedule.to_string(), syntax.to_string());
        let tz = Tz::UTC;
        let date = schedule::parse_datetime("2026-02-30", tz).unwrap_err();
        let syntax = goflow_syntax::date::parse("2026-02-30").unwrap_err();
        assert_eq!(date.to_string(), syntax.to_string());
        let tz = schedule::parse_tz("Mars/Olympus").unwrap_err();
        let syntax = goflow_syntax::tz::check("Mars/Olympus").unwrap_err();
        assert_eq!(tz.to_string(), syntax.to_string());
    }
}
