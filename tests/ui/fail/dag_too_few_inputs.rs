use goflow::prelude::*;

#[task]
fn read() -> u32 {
    7
}

#[task]
fn total(a: u32, b: u32) -> u32 {
    a + b
}

#[dag]
fn sums() {
    let r = read();
    let t = total(r);
}

fn main() {}
