use goflow::prelude::*;

#[task]
fn noop() {}

#[dag(schedule = "@hourly", tz = "Europe/Pariss")]
fn hourly() {
    noop();
}

fn main() {}
