// A crate that reaches goflow only through a re-export of its own names
// it in every macro: `#[task(crate = ...)]`, `#[dag(crate = ...)]` and
// `main!(crate = ...)`.
mod flow {
    pub use goflow::*;
}

use flow::prelude::*;

#[task(crate = crate::flow, retries = 1)]
fn read() -> u32 {
    7
}

#[task(crate = "crate::flow")]
fn route(n: u32) -> Branch {
    Branch::to(if n > 5 { ["big"] } else { ["small"] })
}

#[task(crate = crate::flow)]
fn big() {}

#[task(crate = crate::flow)]
fn small() {}

#[dag(crate = crate::flow)]
fn reexported() {
    let n = read();
    let r = route(n);
    big();
    small();
    r >> [big, small];
}

mod entry {
    // In a module, so that this test's own `main` can check the DAG.
    crate::flow::main!(crate = crate::flow);
    pub(crate) fn goflow_main() -> std::process::ExitCode {
        main()
    }
}

fn main() {
    let _ = entry::goflow_main;
    assert_eq!(reexported().tasks().len(), 4);
}
