use goflow::prelude::*;

#[task]
fn total() -> f64 {
    1500.0
}

#[task]
fn route(total: f64) -> Branch {
    if total > 1000.0 {
        Branch::to(["big_reprot"])
    } else {
        Branch::to(["small_report"])
    }
}

#[task]
fn report(total: f64) -> String {
    format!("{total}")
}

#[dag]
fn sales() {
    let sum = total();
    let route = route(sum);
    let big_report = report(sum);
    let small_report = report(sum);
    route >> [big_report, small_report];
}

fn main() {}
