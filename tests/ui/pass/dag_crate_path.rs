// `#[dag(crate = ...)]` for a crate that reaches goflow through a
// re-export (a module here; a facade crate of one's own works the same).
mod flow {
    pub use goflow::*;
}

use flow::prelude::*;

#[task]
fn read() -> u32 {
    7
}

#[task]
fn double(n: u32, label: String) -> String {
    format!("{label}: {}", n * 2)
}

#[dag(crate = crate::flow, schedule = "@daily", start = "2026-01-01", defaults(retries = 1))]
fn doubled() {
    let n = read();
    let d = double(n, "twice");
    n >> d;
}

#[dag(crate = "crate::flow")]
fn quoted() {
    read();
}

fn main() {
    let dag = doubled();
    assert_eq!(dag.tasks().len(), 2);
    assert_eq!(quoted().tasks().len(), 1);
}
