use goflow::prelude::*;

#[task]
fn extract() -> u32 {
    1
}

#[dag]
fn twice() {
    let rows = extract();
    let rows = extract();
}

fn main() {}
