use goflow::prelude::*;

#[task]
fn noop() {}

#[dag(
    schedule = "@daily",
    start = "2026-01-01",
    alerts(deadline = "two hours", missed_grace = "5", channels = ["slack", "pager"], on_fire = true, task_retry = "yes")
)]
fn nightly() {
    noop();
}

fn main() {}
