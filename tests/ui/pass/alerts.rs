// `alerts(...)`: per-DAG alert settings, checked at compile time.
use goflow::prelude::*;
use std::time::Duration;

#[task]
fn noop() {}

#[dag(
    schedule = "@hourly",
    start = "2026-01-01",
    alerts(task_retry = true, recovery = false, missed_grace = "15m", deadline = "1h30m", channels = ["slack", "email"])
)]
fn watched() {
    noop();
}

#[dag(alerts(enabled = false))]
fn muted() {
    noop();
}

#[dag]
fn defaults() {
    noop();
}

fn main() {
    let a = watched().alerts().clone();
    assert!(a.task_retry && !a.recovery && a.task_failed && a.run_failed);
    assert_eq!(a.missed_grace, Duration::from_secs(900));
    assert_eq!(a.deadline, Some(Duration::from_secs(5400)));
    assert_eq!(
        a.channels,
        Some(vec!["slack".to_owned(), "email".to_owned()])
    );
    assert!(!muted().alerts().enabled);
    assert_eq!(defaults().alerts(), &goflow::AlertSettings::default());
}
