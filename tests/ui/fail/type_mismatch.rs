use goflow::prelude::*;

#[derive(Serialize, Deserialize)]
struct Row {
    id: u32,
}

#[derive(Serialize, Deserialize)]
struct Summary {
    count: usize,
}

#[task]
fn extract() -> Vec<Row> {
    Vec::new()
}

#[task]
fn publish(summary: Summary) {
    let _ = summary.count;
}

#[dag]
fn report() {
    let rows = extract();
    publish(rows);
}

fn main() {}
