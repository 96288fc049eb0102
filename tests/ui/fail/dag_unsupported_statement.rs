use goflow::prelude::*;

#[task]
fn extract() -> Vec<u32> {
    vec![1, 2, 3]
}

#[task]
fn total(values: Vec<u32>) -> u32 {
    values.iter().sum()
}

#[dag]
fn report() {
    println!("building the DAG");
    let values = extract();
    if true {
        total(values);
    }
    let n = total(values.clone());
}

fn main() {}
