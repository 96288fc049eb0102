use goflow::prelude::*;

#[task]
fn read() -> u32 {
    7
}

#[task]
fn ping() {}

#[dag]
fn health() {
    let r = read();
    ping(r);
}

fn main() {}
