use goflow::prelude::*;

#[task]
fn ping() {}

#[dag(crate = crate::flw)]
fn health() {
    ping();
}

fn main() {}
