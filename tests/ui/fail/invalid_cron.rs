use goflow::prelude::*;

#[task]
fn noop() {}

#[dag(schedule = "0 25 * * *", start = "2026-01-01")]
fn nightly() {
    noop();
}

fn main() {}
