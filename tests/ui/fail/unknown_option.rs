use goflow::prelude::*;

#[task(retries = 2, retry = "30s")]
fn noop() {}

#[dag(schedulee = "@daily", start = "2026-01-01")]
fn nightly() {
    noop();
}

fn main() {}
