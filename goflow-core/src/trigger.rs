//! Trigger rules: when a task may run, given the states of its upstreams.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// When a task runs, judged from the terminal states of its direct
/// upstream tasks (Airflow's trigger rules).
///
/// Non-exhaustive: more rules may come, so a `match` needs a `_` arm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TriggerRule {
    /// Every upstream succeeded (the default).
    #[default]
    AllSuccess,
    /// Every upstream failed.
    AllFailed,
    /// Every upstream finished, whatever its state.
    AllDone,
    /// At least one upstream succeeded; runs as soon as one has.
    OneSuccess,
    /// At least one upstream failed; runs as soon as one has.
    OneFailed,
    /// No upstream failed (skipped upstreams are fine).
    NoneFailed,
    /// No upstream was skipped.
    NoneSkipped,
    /// No upstream failed and at least one succeeded: the join after a
    /// branch, where the branches not taken are skipped.
    NoneFailedMinOneSuccess,
    /// Every upstream was skipped.
    AllSkipped,
    /// At least one upstream succeeded or failed; runs as soon as one has.
    OneDone,
    /// Runs regardless of its upstreams, as soon as the run starts.
    Always,
}

impl TriggerRule {
    /// Every rule, for listings and error messages.
    pub const ALL: [TriggerRule; 11] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
        TriggerRule::NoneSkipped,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::AllSkipped,
        TriggerRule::OneDone,
        TriggerRule::Always,
    ];

    /// The rule's name, as written in `#[task(trigger_rule = "...")]`.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneDone => "one_done",
            TriggerRule::Always => "always",
        }
    }

    /// Decides what happens to a task whose upstreams stand at `c`.
    ///
    /// A task without upstreams always runs. "Failed" counts upstreams
    /// that failed and those that never ran because their own upstreams
    /// failed (`upstream_failed`).
    pub fn evaluate(self, c: &UpstreamCounts) -> Verdict {
        if c.total == 0 {
            return Verdict::Run;
        }
        let all_done = c.done() == c.total;
        match self {
            TriggerRule::AllSuccess => {
                if c.failed > 0 {
                    Verdict::UpstreamFailed
                } else if c.skipped > 0 {
                    Verdict::Skip
                } else if c.success == c.total {
                    Verdict::Run
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::AllFailed => {
                if c.success > 0 || c.skipped > 0 {
                    Verdict::Skip
                } else if all_done {
                    Verdict::Run
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::AllDone => {
                if all_done {
                    Verdict::Run
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::OneSuccess => {
                if c.success > 0 {
                    Verdict::Run
                } else if !all_done {
                    Verdict::Wait
                } else if c.failed > 0 {
                    Verdict::UpstreamFailed
                } else {
                    Verdict::Skip
                }
            }
            TriggerRule::OneFailed => {
                if c.failed > 0 {
                    Verdict::Run
                } else if all_done {
                    Verdict::Skip
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::NoneFailed => {
                if c.failed > 0 {
                    Verdict::UpstreamFailed
                } else if all_done {
                    Verdict::Run
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::NoneSkipped => {
                if c.skipped > 0 {
                    Verdict::Skip
                } else if all_done {
                    Verdict::Run
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::NoneFailedMinOneSuccess => {
                if c.failed > 0 {
                    Verdict::UpstreamFailed
                } else if !all_done {
                    Verdict::Wait
                } else if c.success > 0 {
                    Verdict::Run
                } else {
                    Verdict::Skip
                }
            }
            TriggerRule::AllSkipped => {
                if c.success > 0 || c.failed > 0 {
                    Verdict::Skip
                } else if all_done {
                    Verdict::Run
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::OneDone => {
                if c.success > 0 || c.failed > 0 {
                    Verdict::Run
                } else if all_done {
                    Verdict::Skip
                } else {
                    Verdict::Wait
                }
            }
            TriggerRule::Always => Verdict::Run,
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for TriggerRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        TriggerRule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::InvalidOption {
                what: "trigger rule",
                value: s.to_owned(),
                expected: "all_success, all_failed, all_done, one_success, one_failed, \
                           none_failed, none_skipped, none_failed_min_one_success, \
                           all_skipped, one_done, always",
            })
    }
}

/// How many of a task's direct upstreams stand in each terminal state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Number of direct upstreams.
    pub total: usize,
    /// Upstreams that succeeded.
    pub success: usize,
    /// Upstreams that failed or are `upstream_failed`.
    pub failed: usize,
    /// Upstreams that were skipped.
    pub skipped: usize,
}

impl UpstreamCounts {
    /// Upstreams in a terminal state.
    pub fn done(&self) -> usize {
        self.success + self.failed + self.skipped
    }
}

/// What a trigger rule decides for a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet decidable: some upstreams are still running.
    Wait,
    /// The task may run.
    Run,
    /// The task will not run and is skipped.
    Skip,
    /// The task will not run because upstreams failed.
    UpstreamFailed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use TriggerRule::*;
    use Verdict::*;

    fn c(total: usize, success: usize, failed: usize, skipped: usize) -> UpstreamCounts {
        UpstreamCounts {
            total,
            success,
            failed,
            skipped,
        }
    }

    #[test]
    fn names_round_trip() {
        for r in TriggerRule::ALL {
            assert_eq!(r.as_str().parse::<TriggerRule>().unwrap(), r);
        }
        let err = "all_sucess".parse::<TriggerRule>().unwrap_err().to_string();
        assert!(
            err.contains("\"all_sucess\"") && err.contains("none_skipped"),
            "{err}"
        );
    }

    #[test]
    fn no_upstreams_always_runs() {
        for r in TriggerRule::ALL {
            assert_eq!(r.evaluate(&c(0, 0, 0, 0)), Run, "{r}");
        }
    }

    /// Every rule against a table of upstream outcomes (3 upstreams).
    #[test]
    fn rule_table() {
        let cases = [
            // (rule, success, failed, skipped, verdict)
            (AllSuccess, 3, 0, 0, Run),
            (AllSuccess, 2, 0, 0, Wait),
            (AllSuccess, 2, 1, 0, UpstreamFailed),
            (AllSuccess, 1, 0, 0, Wait),
            (AllSuccess, 1, 1, 0, UpstreamFailed),
            (AllSuccess, 2, 0, 1, Skip),
            (AllFailed, 0, 3, 0, Run),
            (AllFailed, 0, 2, 0, Wait),
            (AllFailed, 1, 2, 0, Skip),
            (AllFailed, 0, 2, 1, Skip),
            (AllDone, 1, 1, 1, Run),
            (AllDone, 1, 1, 0, Wait),
            (OneSuccess, 1, 0, 0, Run),
            (OneSuccess, 0, 1, 0, Wait),
            (OneSuccess, 0, 2, 1, UpstreamFailed),
            (OneSuccess, 0, 0, 3, Skip),
            (OneFailed, 0, 1, 0, Run),
            (OneFailed, 2, 0, 0, Wait),
            (OneFailed, 2, 0, 1, Skip),
            (NoneFailed, 2, 0, 1, Run),
            (NoneFailed, 2, 0, 0, Wait),
            (NoneFailed, 1, 1, 0, UpstreamFailed),
            (NoneSkipped, 2, 1, 0, Run),
            (NoneSkipped, 1, 0, 1, Skip),
            (NoneSkipped, 2, 0, 0, Wait),
            (NoneFailedMinOneSuccess, 1, 0, 2, Run),
            (NoneFailedMinOneSuccess, 3, 0, 0, Run),
            (NoneFailedMinOneSuccess, 1, 0, 1, Wait),
            (NoneFailedMinOneSuccess, 0, 0, 3, Skip),
            (NoneFailedMinOneSuccess, 1, 1, 0, UpstreamFailed),
            (AllSkipped, 0, 0, 3, Run),
            (AllSkipped, 0, 0, 2, Wait),
            (AllSkipped, 1, 0, 1, Skip),
            (AllSkipped, 0, 1, 0, Skip),
            (OneDone, 1, 0, 0, Run),
            (OneDone, 0, 1, 0, Run),
            (OneDone, 0, 0, 2, Wait),
            (OneDone, 0, 0, 3, Skip),
            (Always, 0, 0, 0, Run),
            (Always, 0, 3, 0, Run),
        ];
        for (rule, s, f, k, want) in cases {
            assert_eq!(
                rule.evaluate(&c(3, s, f, k)),
                want,
                "{rule} s={s} f={f} k={k}"
            );
        }
    }
}
