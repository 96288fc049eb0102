use goflow::prelude::*;

#[task]
fn borrow(rows: &Vec<u32>) -> usize {
    rows.len()
}

#[task]
fn generic<T: Clone>(x: T) -> u32 {
    let _ = x.clone();
    1
}

fn main() {}
