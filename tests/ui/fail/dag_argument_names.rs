use goflow::prelude::*;

#[task]
fn read() -> u32 {
    7
}

#[task]
fn take(n: u32) -> u32 {
    n
}

#[dag]
fn arguments() {
    let rows = read();
    let a = take(rowz);
    let b = take(read);
    let c = take(c);
    rows >> [a, bb];
}

fn main() {}
