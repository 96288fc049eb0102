//! The grammar of goflow's literals: durations, ids, Kubernetes
//! quantities, option words, schedules, dates and time-zone names, and the
//! check that a DAG's dependencies have no cycle.
//!
//! goflow-core parses with these functions, and the `#[task]` and `#[dag]`
//! macros check literals with them at compile time, so a literal means the
//! same in both places. This crate depends on nothing heavy (no chrono, no
//! time-zone database, no serde): a proc-macro's dependencies are compiled
//! a second time, for the host.
//!
//! Every check returns a sentence saying what is wrong, for error messages.
//!
//! ```
//! use goflow_syntax::{duration, id, schedule};
//!
//! assert_eq!(duration::parse("1h30m").unwrap().as_secs(), 5400);
//! assert!(id::check_dns1123_label("daily-sales").is_ok());
//! assert!(schedule::parse("0 6 * * 1-5").unwrap().is_scheduled());
//! assert_eq!(
//!     schedule::parse("0 25 * * *").unwrap_err().to_string(),
//!     "invalid schedule \"0 25 * * *\": hour field \"25\" is not valid \
//!      (expected 0-23, lists, ranges and steps)"
//! );
//! ```

pub mod cron;
pub mod date;
pub mod duration;
pub mod graph;
pub mod id;
pub mod quantity;
pub mod schedule;
pub mod tz;
pub mod words;

mod tz_names;

/// The most upstream outputs a task wired by `#[dag]` may take
/// (goflow-core's `authoring::MAX_INPUTS`, checked equal there).
pub const MAX_INPUTS: usize = 16;

/// A literal that does not parse. The messages are goflow-core's own
/// (`goflow_core::Error`'s variants of the same names, checked equal in
/// its tests).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A schedule that cannot be parsed.
    InvalidSchedule {
        /// The schedule as given.
        schedule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An unknown time zone name.
    InvalidTimeZone {
        /// The name as given.
        tz: String,
    },
    /// A date or date-time that cannot be parsed.
    InvalidDate {
        /// The date as given.
        date: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidSchedule { schedule, reason } => {
                write!(f, "invalid schedule {schedule:?}: {reason}")
            }
            Error::InvalidTimeZone { tz } => write!(
                f,
                "unknown time zone {tz:?}: expected an IANA name such as \"Europe/Paris\" or \"UTC\""
            ),
            Error::InvalidDate { date, reason } => write!(f, "invalid date {date:?}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
