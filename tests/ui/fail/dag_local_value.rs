use goflow::prelude::*;

#[task]
fn take(limit: u32) -> u32 {
    limit
}

#[dag]
fn limited() {
    let limit = 10;
    take(limit);
}

fn main() {}
