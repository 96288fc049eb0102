use goflow::prelude::*;

#[task]
fn take(limit: u32, label: String) -> String {
    format!("{label}: {limit}")
}

#[dag]
fn constants() {
    let a = take(1.5, "ok");
    let b = take(10, 5);
}

fn main() {}
