use goflow::prelude::*;

#[task]
fn produce() -> u32 {
    1
}

#[task]
fn consume(n: u32) -> u32 {
    n
}

#[dag]
fn backwards() {
    let c = consume(p);
    let p = produce();
}

fn main() {}
