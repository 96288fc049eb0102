//! Alerts: what a DAG wants to be told about ([`AlertSettings`]), what an
//! alert says ([`Alert`]), and the rules that decide when one is due —
//! missed schedules, deadlines, recoveries — decided from the schedule,
//! the runs and the current time, without I/O.
//!
//! Delivery (channels, the outbox, retries) is the runtime's
//! (`goflow_runtime::alerts`); these are the pure parts it is built on.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::{Dag, DataInterval, Error, RunState, Schedule};

/// The default grace period after an interval's end within which its run
/// must have started, else the run missed its schedule.
pub const DEFAULT_MISSED_GRACE: Duration = Duration::from_secs(10 * 60);

/// The channel names a DAG may restrict its alerts to.
pub const CHANNELS: [&str; 3] = ["webhook", "slack", "email"];

/// Which alerts a DAG raises. Set with `#[dag(alerts(...))]` or
/// [`DagBuilder::alerts`](crate::DagBuilder::alerts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettings {
    /// Master switch: `false` silences every alert of the DAG.
    pub enabled: bool,
    /// A task failed after its last try. Default on.
    pub task_failed: bool,
    /// A task failed a try and will be retried. Default off.
    pub task_retry: bool,
    /// A run failed. Default on.
    pub run_failed: bool,
    /// A run succeeded after a failed one (the previous run, or itself
    /// before it was cleared). Default on.
    pub recovery: bool,
    /// A run missed its schedule: no run had started `missed_grace` after
    /// its interval ended. Default on.
    pub missed_schedule: bool,
    /// How late a run may start before it counts as missed.
    pub missed_grace: Duration,
    /// A run not finished this long after its interval's end is past its
    /// deadline (Airflow's SLA). Default none.
    pub deadline: Option<Duration>,
    /// Stop a run that passes its `deadline`: its running tries are killed
    /// and it ends `failed`. Default off (the deadline only alerts).
    pub stop_at_deadline: bool,
    /// Only these channels (`webhook`, `slack`, `email`); all configured
    /// channels when `None`.
    pub channels: Option<Vec<String>>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            task_failed: true,
            task_retry: false,
            run_failed: true,
            recovery: true,
            missed_schedule: true,
            missed_grace: DEFAULT_MISSED_GRACE,
            deadline: None,
            stop_at_deadline: false,
            channels: None,
        }
    }
}

impl AlertSettings {
    /// Whether alerts of `kind` are raised.
    pub fn wants(&self, kind: AlertKind) -> bool {
        self.enabled
            && match kind {
                AlertKind::TaskFailed => self.task_failed,
                AlertKind::TaskRetry => self.task_retry,
                AlertKind::RunFailed => self.run_failed,
                AlertKind::Recovery => self.recovery,
                AlertKind::MissedSchedule => self.missed_schedule,
                AlertKind::DeadlineMissed => self.deadline.is_some(),
            }
    }

    /// Whether alerts go to the channel named `channel`.
    pub fn uses_channel(&self, channel: &str) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|c| c.iter().any(|n| n == channel))
    }
}

/// Checks a channel name given to [`AlertSettings::channels`].
pub fn check_channel(name: &str) -> Result<(), String> {
    if CHANNELS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown alert channel {name:?}; expected one of: {}",
            CHANNELS.join(", ")
        ))
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A task failed after its last try.
    TaskFailed,
    /// A task failed a try and will be retried.
    TaskRetry,
    /// A run failed.
    RunFailed,
    /// A run succeeded after a failed one.
    Recovery,
    /// One or more runs did not start in time (or at all).
    MissedSchedule,
    /// A run did not finish by its deadline.
    DeadlineMissed,
}

impl AlertKind {
    /// The name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::TaskFailed => "task_failed",
            AlertKind::TaskRetry => "task_retry",
            AlertKind::RunFailed => "run_failed",
            AlertKind::Recovery => "recovery",
            AlertKind::MissedSchedule => "missed_schedule",
            AlertKind::DeadlineMissed => "deadline_missed",
        }
    }

    /// Every kind.
    pub const ALL: [AlertKind; 6] = [
        AlertKind::TaskFailed,
        AlertKind::TaskRetry,
        AlertKind::RunFailed,
        AlertKind::Recovery,
        AlertKind::MissedSchedule,
        AlertKind::DeadlineMissed,
    ];

    /// Whether this is good news (shown green rather than red).
    pub fn is_good_news(self) -> bool {
        self == AlertKind::Recovery
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::InvalidOption {
                what: "alert kind",
                value: s.to_owned(),
                expected: "task_failed, task_retry, run_failed, recovery, missed_schedule, \
                           deadline_missed",
            })
    }
}

/// One interval whose run missed its schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedRun {
    /// The interval; its start is the logical date.
    pub interval: DataInterval,
    /// Why it counts as missed.
    #[serde(flatten)]
    pub reason: MissReason,
}

/// Why a scheduled interval counts as missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// No run exists for it.
    NoRun,
    /// Its run exists but had not started by the end of the grace period.
    NotStarted,
    /// Its run started after the grace period.
    StartedLate {
        /// When it started.
        started: DateTime<Utc>,
    },
}

/// An alert: everything a channel needs to tell a person what happened and
/// where to look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// The DAG.
    pub dag_id: String,
    /// The run, when about one run.
    pub run_id: Option<String>,
    /// The run's logical date (`execution_date`).
    pub execution_date: Option<DateTime<Utc>>,
    /// The task, when about one task.
    pub task_id: Option<String>,
    /// The try, when about one try.
    pub try_number: Option<u32>,
    /// The state of the task or run it is about (`failed`, `up_for_retry`,
    /// `success`, `running`...).
    pub state: Option<String>,
    /// The error's last lines, when there was one.
    pub error: Option<String>,
    /// The last lines of the try's log.
    #[serde(default)]
    pub log_tail: Vec<String>,
    /// The runs that missed their schedule (for
    /// [`AlertKind::MissedSchedule`]).
    #[serde(default)]
    pub missed: Vec<MissedRun>,
    /// When the run was due to finish (for [`AlertKind::DeadlineMissed`]).
    pub deadline: Option<DateTime<Utc>>,
    /// A link to the page in the UI.
    pub url: Option<String>,
    /// When the event happened (the try or run ended, the deadline passed).
    pub at: DateTime<Utc>,
}

impl Alert {
    /// An alert of `kind` about `dag_id`, with nothing else set.
    pub fn new(kind: AlertKind, dag_id: impl Into<String>, at: DateTime<Utc>) -> Self {
        Alert {
            kind,
            dag_id: dag_id.into(),
            run_id: None,
            execution_date: None,
            task_id: None,
            try_number: None,
            state: None,
            error: None,
            log_tail: Vec::new(),
            missed: Vec::new(),
            deadline: None,
            url: None,
            at,
        }
    }

    /// The key that makes an event unique: an alert with the same key is
    /// never sent twice, across restarts and replicas.
    /// `kind:dag:run:task:try`, with empty parts left out; for run
    /// failures and recoveries the run's end (micros) is part of it, so a
    /// run that is cleared and fails again alerts again; for missed
    /// schedules, the first missed logical date.
    pub fn dedupe_key(&self) -> String {
        let mut key = format!("{}:{}", self.kind, self.dag_id);
        if let Some(run) = &self.run_id {
            key.push(':');
            key.push_str(run);
        }
        if let Some(task) = &self.task_id {
            key.push(':');
            key.push_str(task);
        }
        if let Some(t) = self.try_number {
            key.push_str(&format!(":{t}"));
        }
        match self.kind {
            AlertKind::RunFailed | AlertKind::Recovery => {
                key.push_str(&format!(":{}", self.at.timestamp_micros()));
            }
            AlertKind::MissedSchedule => {
                if let Some(first) = self.missed.first() {
                    key.push_str(&format!(":{}", first.interval.start.timestamp_micros()));
                }
            }
            _ => {}
        }
        key
    }

    /// A one-line summary, such as `Task extract failed (try 3) in
    /// daily-sales, run scheduled__2026-01-01T06:00:00Z`.
    pub fn title(&self) -> String {
        let run = self
            .run_id
            .as_deref()
            .map(|r| format!(", run {r}"))
            .unwrap_or_default();
        let task = self.task_id.as_deref().unwrap_or("?");
        let tries = self
            .try_number
            .map(|t| format!(" (try {t})"))
            .unwrap_or_default();
        match self.kind {
            AlertKind::TaskFailed => format!("Task {task} failed{tries} in {}{run}", self.dag_id),
            AlertKind::TaskRetry => format!(
                "Task {task} failed{tries} and will be retried, in {}{run}",
                self.dag_id
            ),
            AlertKind::RunFailed => format!("Run failed: {}{run}", self.dag_id),
            AlertKind::Recovery => format!("Recovered: {}{run} succeeded", self.dag_id),
            AlertKind::MissedSchedule => {
                let n = self.missed.len();
                let what = if n == 1 { "run" } else { "runs" };
                format!("{} missed its schedule: {n} {what}", self.dag_id)
            }
            AlertKind::DeadlineMissed => {
                format!(
                    "Deadline missed: {}{run} did not finish in time",
                    self.dag_id
                )
            }
        }
    }

    /// The alert as plain text: the title, then one `key: value` line per
    /// detail, the error, the log tail and the link.
    pub fn text(&self) -> String {
        let mut out = self.title();
        out.push('\n');
        let mut line = |k: &str, v: &str| {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push('\n');
        };
        line("DAG", &self.dag_id);
        if let Some(r) = &self.run_id {
            line("Run", r);
        }
        if let Some(d) = self.execution_date {
            line("Execution date", &d.to_rfc3339());
        }
        if let Some(t) = &self.task_id {
            line("Task", t);
        }
        if let Some(t) = self.try_number {
            line("Try", &t.to_string());
        }
        if let Some(s) = &self.state {
            line("State", s);
        }
        if let Some(d) = self.deadline {
            line("Deadline", &d.to_rfc3339());
        }
        for m in &self.missed {
            let why = match m.reason {
                MissReason::NoRun => "no run".to_owned(),
                MissReason::NotStarted => "not started".to_owned(),
                MissReason::StartedLate { started } => {
                    format!("started late, at {}", started.to_rfc3339())
                }
            };
            line(
                "Missed",
                &format!(
                    "{} to {} ({why})",
                    m.interval.start.to_rfc3339(),
                    m.interval.end.to_rfc3339()
                ),
            );
        }
        if let Some(u) = &self.url {
            line("Link", u);
        }
        if let Some(e) = &self.error {
            out.push_str("\nError:\n");
            out.push_str(e);
            out.push('\n');
        }
        if !self.log_tail.is_empty() {
            out.push_str("\nLast log lines:\n");
            for l in &self.log_tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// The last `n` lines of `text` (an error message can be a whole
/// backtrace; an alert carries its end).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A link to a run's page in the UI: `{base}/dags/{dag}/runs/{run}`, the
/// run id percent-encoded.
pub fn run_url(base_url: &str, dag_id: &str, run_id: &str) -> String {
    format!(
        "{}/runs/{}",
        dag_url(base_url, dag_id),
        encode_path_segment(run_id)
    )
}

/// A link to a DAG's page in the UI: `{base}/dags/{dag}`.
pub fn dag_url(base_url: &str, dag_id: &str) -> String {
    format!(
        "{}/dags/{}",
        base_url.trim_end_matches('/'),
        encode_path_segment(dag_id)
    )
}

/// What [`encode_path_segment`] escapes: every byte but RFC 3986's
/// unreserved characters and `:` `@` (which a path segment may hold).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// Percent-encodes everything but RFC 3986 unreserved characters and `:`
/// `@`, so that any run id is one path segment.
pub fn encode_path_segment(s: &str) -> String {
    utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// The scheduled intervals of `dag` that end in `(after, until]`, oldest
/// first, at most `limit` of them: the ones whose runs must have started
/// by now when `until` is `now - grace`. None for manual DAGs; none
/// before the start date or starting after the end date.
pub fn intervals_ending_in(
    dag: &Dag,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> Vec<DataInterval> {
    let schedule = dag.schedule();
    let start = dag.start_date();
    let in_range = |i: &DataInterval| dag.end_date().is_none_or(|end| i.start <= end);
    let mut out = Vec::new();
    if until <= after || limit == 0 {
        return out;
    }
    match schedule {
        Schedule::Manual => {}
        Schedule::Once => {
            let i = DataInterval::at(start);
            if i.end > after && i.end <= until && in_range(&i) {
                out.push(i);
            }
        }
        Schedule::Cron(_) | Schedule::Interval(_) => {
            let Some(first) = schedule.next_interval(start, None) else {
                return out;
            };
            let mut cur = if after < first.end {
                first
            } else {
                match schedule.interval_for(start, after) {
                    // The interval holding `after` ends after it.
                    Some(i) if i.start >= first.start => i,
                    _ => first,
                }
            };
            while out.len() < limit && cur.end <= until && in_range(&cur) {
                if cur.end > after {
                    out.push(cur);
                }
                match schedule.next_interval(start, Some(cur.start)) {
                    Some(next) if next.start > cur.start => cur = next,
                    _ => break,
                }
            }
        }
    }
    out
}

/// Whether the run of `interval` missed its schedule, judged at or after
/// `interval.end + grace`. `run_started` is `None` when the interval has
/// no run, `Some(None)` when its run has not started, `Some(Some(t))` when
/// it started at `t`.
pub fn missed_schedule(
    interval: &DataInterval,
    run_started: Option<Option<DateTime<Utc>>>,
    grace: Duration,
) -> Option<MissReason> {
    let limit = interval.end + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    match run_started {
        None => Some(MissReason::NoRun),
        Some(None) => Some(MissReason::NotStarted),
        Some(Some(started)) if started > limit => Some(MissReason::StartedLate { started }),
        Some(Some(_)) => None,
    }
}

/// When a run of `interval` is due to finish, `deadline` after its
/// interval's end.
pub fn deadline_of(interval: &DataInterval, deadline: Duration) -> DateTime<Utc> {
    interval.end + chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX)
}

/// Whether a run is past its deadline: it finished after it (`finished`
/// is its end), or has not finished and `now` is after it. Returns the
/// deadline when it is.
pub fn past_deadline(
    interval: &DataInterval,
    deadline: Duration,
    finished: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let due = deadline_of(interval, deadline);
    (finished.unwrap_or(now) > due).then_some(due)
}

/// Whether a run that ended in `state` is a recovery: it succeeded and
/// either the DAG's previous finished run failed, or this run itself had
/// failed before it was cleared and run again.
pub fn is_recovery(state: RunState, previous: Option<RunState>, failed_before: bool) -> bool {
    state == RunState::Success && (previous == Some(RunState::Failed) || failed_before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::tests::spec;
    use crate::DagBuilder;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn any_id_is_one_path_segment() {
        assert_eq!(
            encode_path_segment("manual__2026-01-01T06:00:00+00:00 a/b?c#d%é~@"),
            "manual__2026-01-01T06:00:00%2B00:00%20a%2Fb%3Fc%23d%25%C3%A9~@"
        );
        assert_eq!(
            dag_url("http://ui.example/", "a b"),
            "http://ui.example/dags/a%20b"
        );
    }

    fn daily() -> Dag {
        DagBuilder::new("d")
            .schedule(Schedule::parse("0 6 * * *", "UTC").unwrap(), chrono_tz::UTC)
            .start_date(utc("2026-01-01T00:00:00Z"))
            .task(spec("a", &[]))
            .build()
            .unwrap()
    }

    #[test]
    fn settings_default_to_failures_recoveries_and_missed_runs() {
        let s = AlertSettings::default();
        assert!(s.wants(AlertKind::TaskFailed));
        assert!(!s.wants(AlertKind::TaskRetry));
        assert!(s.wants(AlertKind::RunFailed));
        assert!(s.wants(AlertKind::Recovery));
        assert!(s.wants(AlertKind::MissedSchedule));
        assert!(!s.wants(AlertKind::DeadlineMissed), "no deadline set");
        let s = AlertSettings {
            deadline: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(s.wants(AlertKind::DeadlineMissed));
        let off = AlertSettings {
            enabled: false,
            ..s
        };
        assert!(AlertKind::ALL.iter().all(|k| !off.wants(*k)));
        let only_slack = AlertSettings {
            channels: Some(vec!["slack".into()]),
            ..Default::default()
        };
        assert!(only_slack.uses_channel("slack") && !only_slack.uses_channel("email"));
        assert!(check_channel("email").is_ok());
        assert!(check_channel("pager").unwrap_err().contains("webhook"));
        assert_eq!(
            "recovery".parse::<AlertKind>().unwrap(),
            AlertKind::Recovery
        );
        assert!("nope".parse::<AlertKind>().is_err());
    }

    #[test]
    fn intervals_ending_in_a_window() {
        let dag = daily();
        let got = intervals_ending_in(
            &dag,
            utc("2026-01-02T06:00:00Z"),
            utc("2026-01-05T07:00:00Z"),
            100,
        );
        let ends: Vec<String> = got.iter().map(|i| i.end.format("%d").to_string()).collect();
        // The interval ending exactly at `after` is excluded, at `until` included.
        assert_eq!(ends, ["03", "04", "05"]);
        assert_eq!(got[0].start, utc("2026-01-02T06:00:00Z"));
        // From before the start date: the first interval starts at the first tick.
        let got = intervals_ending_in(
            &dag,
            utc("2025-06-01T00:00:00Z"),
            utc("2026-01-03T06:00:00Z"),
            100,
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].start, utc("2026-01-01T06:00:00Z"));
        // Limits and empty windows.
        assert_eq!(
            intervals_ending_in(
                &dag,
                utc("2026-01-01T00:00:00Z"),
                utc("2026-02-01T00:00:00Z"),
                5
            )
            .len(),
            5
        );
        assert!(intervals_ending_in(
            &dag,
            utc("2026-01-03T07:00:00Z"),
            utc("2026-01-04T05:00:00Z"),
            10
        )
        .is_empty());
        let manual = DagBuilder::new("m").task(spec("a", &[])).build().unwrap();
        assert!(intervals_ending_in(
            &manual,
            utc("2026-01-01T00:00:00Z"),
            utc("2027-01-01T00:00:00Z"),
            10
        )
        .is_empty());
    }

    #[test]
    fn fixed_intervals_and_end_dates() {
        let dag = DagBuilder::new("e")
            .schedule(
                Schedule::parse("@every 15m", "UTC").unwrap(),
                chrono_tz::UTC,
            )
            .start_date(utc("2026-01-01T00:00:00Z"))
            .end_date(Some(utc("2026-01-01T00:30:00Z")))
            .task(spec("a", &[]))
            .build()
            .unwrap();
        let got = intervals_ending_in(
            &dag,
            utc("2026-01-01T00:10:00Z"),
            utc("2026-01-01T05:00:00Z"),
            100,
        );
        let starts: Vec<String> = got
            .iter()
            .map(|i| i.start.format("%H:%M").to_string())
            .collect();
        assert_eq!(
            starts,
            ["00:00", "00:15", "00:30"],
            "none starts after the end"
        );
    }

    #[test]
    fn a_run_missed_its_schedule_when_it_did_not_start_in_time() {
        let i = DataInterval::new(utc("2026-01-01T06:00:00Z"), utc("2026-01-02T06:00:00Z"));
        let grace = Duration::from_secs(600);
        assert_eq!(missed_schedule(&i, None, grace), Some(MissReason::NoRun));
        assert_eq!(
            missed_schedule(&i, Some(None), grace),
            Some(MissReason::NotStarted)
        );
        assert_eq!(
            missed_schedule(&i, Some(Some(utc("2026-01-02T06:09:00Z"))), grace),
            None
        );
        let late = utc("2026-01-02T06:11:00Z");
        assert_eq!(
            missed_schedule(&i, Some(Some(late)), grace),
            Some(MissReason::StartedLate { started: late })
        );
    }

    #[test]
    fn deadlines_and_recoveries() {
        let i = DataInterval::new(utc("2026-01-01T06:00:00Z"), utc("2026-01-02T06:00:00Z"));
        let d = Duration::from_secs(3600);
        let due = utc("2026-01-02T07:00:00Z");
        assert_eq!(
            past_deadline(&i, d, None, utc("2026-01-02T06:59:00Z")),
            None
        );
        assert_eq!(
            past_deadline(&i, d, None, utc("2026-01-02T07:01:00Z")),
            Some(due)
        );
        assert_eq!(
            past_deadline(
                &i,
                d,
                Some(utc("2026-01-02T06:30:00Z")),
                utc("2026-01-03T00:00:00Z")
            ),
            None,
            "finished in time"
        );
        assert_eq!(
            past_deadline(
                &i,
                d,
                Some(utc("2026-01-02T08:00:00Z")),
                utc("2026-01-03T00:00:00Z")
            ),
            Some(due),
            "finished late"
        );
        assert!(is_recovery(
            RunState::Success,
            Some(RunState::Failed),
            false
        ));
        assert!(is_recovery(RunState::Success, None, true));
        assert!(!is_recovery(
            RunState::Success,
            Some(RunState::Success),
            false
        ));
        assert!(!is_recovery(RunState::Success, None, false));
        assert!(!is_recovery(RunState::Failed, Some(RunState::Failed), true));
    }

    #[test]
    fn alerts_have_keys_titles_text_and_links() {
        let at = utc("2026-01-02T06:05:00Z");
        let mut a = Alert::new(AlertKind::TaskFailed, "daily-sales", at);
        a.run_id = Some("scheduled__2026-01-01T06:00:00+00:00".into());
        a.task_id = Some("extract".into());
        a.try_number = Some(3);
        a.error = Some(last_lines("line 1\nline 2\nline 3", 2));
        a.url = Some(run_url(
            "http://ui.example/",
            "daily-sales",
            a.run_id.as_deref().unwrap(),
        ));
        assert_eq!(
            a.dedupe_key(),
            "task_failed:daily-sales:scheduled__2026-01-01T06:00:00+00:00:extract:3"
        );
        assert_eq!(
            a.title(),
            "Task extract failed (try 3) in daily-sales, run scheduled__2026-01-01T06:00:00+00:00"
        );
        assert_eq!(
            a.url.as_deref(),
            Some("http://ui.example/dags/daily-sales/runs/scheduled__2026-01-01T06:00:00%2B00:00")
        );
        let text = a.text();
        assert!(text.contains("Error:\nline 2\nline 3\n"), "{text}");
        assert!(!text.contains("line 1"), "{text}");

        let mut r = Alert::new(AlertKind::RunFailed, "d", at);
        r.run_id = Some("r".into());
        let first = r.dedupe_key();
        r.at = at + chrono::Duration::hours(1);
        assert_ne!(first, r.dedupe_key(), "a run failing again after a clear");

        let mut m = Alert::new(AlertKind::MissedSchedule, "d", at);
        m.missed.push(MissedRun {
            interval: DataInterval::new(at, at),
            reason: MissReason::NoRun,
        });
        assert_eq!(
            m.dedupe_key(),
            format!("missed_schedule:d:{}", at.timestamp_micros())
        );
        assert_eq!(m.title(), "d missed its schedule: 1 run");
        assert!(m.text().contains("(no run)"), "{}", m.text());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["kind"], "missed_schedule");
        assert_eq!(json["missed"][0]["reason"], "no_run");
        let back: Alert = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }
}
