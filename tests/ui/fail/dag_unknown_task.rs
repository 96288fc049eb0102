use goflow::prelude::*;

#[task]
fn extract() -> u32 {
    7
}

#[task]
fn transform(n: u32) -> u32 {
    n * 2
}

#[dag]
fn etl() {
    let n = extract();
    let t = transfrom(n);
}

fn main() {}
