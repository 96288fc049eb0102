//! goflow's own lines in a try's log (stream `system`): what the framework
//! did with the try, as Airflow's task log starts with. Pure text: the
//! scheduler decides when and stores them. Each line starts with its level
//! (`INFO`, `WARN`, `ERROR`), which the store keeps in a column of its own.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use goflow_core::{ExecutorKind, Finish, TaskError, TaskErrorKind, TaskOutput};

/// Where a try runs, in words, from its executor's handle: `pid 4242`,
/// `Job ns/name`.
fn place(executor: ExecutorKind, handle: Option<&str>) -> String {
    match (executor, handle.filter(|h| !h.is_empty())) {
        (ExecutorKind::LocalProcess, Some(h)) => {
            format!(" (pid {})", h.split(':').next().unwrap_or(h))
        }
        (ExecutorKind::Kubernetes, Some(h)) => format!(" (Job {h})"),
        (_, Some(h)) => format!(" ({h})"),
        (_, None) => String::new(),
    }
}

/// `try 2 started on local_process (pid 4242), attempt 2 of 4`.
pub(crate) fn started(
    try_number: u32,
    attempt: u32,
    max_attempts: u32,
    executor: ExecutorKind,
    handle: Option<&str>,
    scheduler: &str,
) -> String {
    format!(
        "INFO try {try_number} started on {executor}{}, attempt {attempt} of {max_attempts} \
         (scheduler {scheduler})",
        place(executor, handle)
    )
}

/// `try 1 adopted ...` after a scheduler restart.
pub(crate) fn adopted(
    try_number: u32,
    executor: ExecutorKind,
    handle: &str,
    scheduler: &str,
) -> String {
    format!(
        "INFO try {try_number} adopted by scheduler {scheduler} after the scheduler running it \
         stopped; still running on {executor}{}",
        place(executor, Some(handle))
    )
}

/// The line for a try's end: its outcome, how long it ran, its exit code,
/// the error, and what follows (a retry and when, a new try at once for a
/// lost one, or the end).
#[allow(clippy::too_many_arguments)]
pub(crate) fn ended(
    try_number: u32,
    result: &Result<TaskOutput, TaskError>,
    finish: &Finish,
    ran: Option<Duration>,
    exit_code: Option<i32>,
    next_retry: Option<DateTime<Utc>>,
    lost: (u32, u32),
    attempts: (u32, u32),
) -> String {
    let after = ran.map_or_else(String::new, |d| {
        format!(" after {}", goflow_core::duration::format(d))
    });
    let code = exit_code.map_or_else(String::new, |c| format!(" (exit code {c})"));
    match (result, finish) {
        (Ok(_), _) => format!("INFO try {try_number} succeeded{after}{code}"),
        (Err(e), _) if e.is_skip() => {
            format!(
                "INFO try {try_number} skipped itself{after}: {}",
                e.message()
            )
        }
        (Err(e), Finish::Retry { delay }) if e.is_lost() => format!(
            "WARN try {try_number} {}; tried again at once{} (lost {} of at most {}; \
             lost tries do not use retries)",
            lost_error(e),
            if delay.is_zero() { "" } else { " soon" },
            lost.0,
            lost.1
        ),
        (Err(e), Finish::Retry { delay }) => format!(
            "WARN try {try_number} failed{after}{code}: {e}; attempt {} of {} at {} (in {})",
            attempts.0 + 1,
            attempts.1,
            next_retry.map_or_else(
                || "once due".to_owned(),
                |t| t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            goflow_core::duration::format(*delay)
        ),
        (Err(e), _) if e.is_lost() => format!(
            "ERROR try {try_number} {}; it was lost {} times, its max_lost_tries: the task fails",
            lost_error(e),
            lost.0
        ),
        (Err(e), _) if e.kind() == TaskErrorKind::Stopped => {
            format!("ERROR try {try_number} stopped{after}: {e}; not retried")
        }
        (Err(e), _) if !e.is_retryable() => {
            format!(
                "ERROR try {try_number} failed{after}{code}: {e}; not retried ({})",
                kind(e)
            )
        }
        (Err(e), _) => format!(
            "ERROR try {try_number} failed{after}{code}: {e}; no attempts left ({} of {})",
            attempts.0, attempts.1
        ),
    }
}

/// `lost: why`, whether or not the error says `lost` already.
fn lost_error(e: &TaskError) -> String {
    if e.message().starts_with("lost") {
        e.to_string()
    } else {
        format!("lost: {e}")
    }
}

fn kind(e: &TaskError) -> &'static str {
    match e.kind() {
        TaskErrorKind::Fatal => "a fatal error",
        TaskErrorKind::Input => "an input error",
        _ => "this error is not retried",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-02T06:00:30Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_lines_say_what_happened_and_what_follows() {
        assert_eq!(
            started(2, 2, 4, ExecutorKind::LocalProcess, Some("4242:99"), "s1"),
            "INFO try 2 started on local_process (pid 4242), attempt 2 of 4 (scheduler s1)"
        );
        assert_eq!(
            started(1, 1, 1, ExecutorKind::Kubernetes, Some("jobs/etl-x"), "s1"),
            "INFO try 1 started on kubernetes (Job jobs/etl-x), attempt 1 of 1 (scheduler s1)"
        );
        let ok = Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        });
        assert_eq!(
            ended(
                1,
                &ok,
                &Finish::Success,
                Some(Duration::from_millis(1500)),
                Some(0),
                None,
                (0, 3),
                (1, 1)
            ),
            "INFO try 1 succeeded after 1.50s (exit code 0)"
        );
        let retry = ended(
            1,
            &Err(TaskError::msg("connection refused")),
            &Finish::Retry {
                delay: Duration::from_secs(30),
            },
            Some(Duration::from_secs(2)),
            Some(1),
            Some(at()),
            (0, 3),
            (1, 3),
        );
        assert_eq!(
            retry,
            "WARN try 1 failed after 2.00s (exit code 1): connection refused; attempt 2 of 3 at \
             2026-05-02T06:00:30Z (in 30.00s)"
        );
        let lost = ended(
            3,
            &Err(TaskError::lost("the scheduler stopped")),
            &Finish::Retry {
                delay: Duration::ZERO,
            },
            None,
            None,
            None,
            (2, 3),
            (1, 1),
        );
        assert!(
            lost.starts_with(
                "WARN try 3 lost: the scheduler stopped; tried again at once (lost 2 of at most 3"
            ),
            "{lost}"
        );
        let stopped = ended(
            1,
            &Err(TaskError::stopped("marked failed by admin")),
            &Finish::Failed,
            Some(Duration::from_secs(5)),
            None,
            None,
            (0, 3),
            (1, 3),
        );
        assert_eq!(
            stopped,
            "ERROR try 1 stopped after 5.00s: marked failed by admin; not retried"
        );
        let last = ended(
            3,
            &Err(TaskError::msg("boom")),
            &Finish::Failed,
            None,
            Some(2),
            None,
            (0, 3),
            (3, 3),
        );
        assert_eq!(
            last,
            "ERROR try 3 failed (exit code 2): boom; no attempts left (3 of 3)"
        );
        assert_eq!(
            goflow_store::LogLevel::of_line(&last),
            Some(goflow_store::LogLevel::Error)
        );
    }
}
