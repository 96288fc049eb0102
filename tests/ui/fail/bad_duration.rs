use goflow::prelude::*;

#[task(timeout = "5 minutes please")]
fn slow() {}

#[dag(defaults(retry_delay = "soon"))]
fn nightly() {
    slow();
}

fn main() {}
