use goflow::prelude::*;

#[task]
fn noop() {}

#[dag(id = "Daily_Sales")]
fn daily() {
    noop();
}

#[dag(namespace = "team.analytics")]
fn other() {
    noop();
}

fn main() {}
