//! `use goflow::*;` brings in no name that shadows a crate users reach
//! for (`core`, `std`), and `goflow::chrono` is the chrono goflow uses.
use goflow::*;

#[task]
fn size() -> usize {
    core::mem::size_of::<u64>()
}

#[task]
fn day(ctx: &TaskContext) -> String {
    let date: chrono::DateTime<chrono::Utc> = ctx.logical_date();
    date.format("%Y-%m-%d").to_string()
}

#[dag]
fn globbed() {
    size();
    day();
}

fn main() {}
