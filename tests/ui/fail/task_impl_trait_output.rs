use goflow::prelude::*;

#[task]
fn rows() -> impl Serialize {
    vec![1, 2, 3]
}

#[task]
async fn more_rows() -> Result<Vec<impl Serialize>, TaskError> {
    Ok(vec![1])
}

fn main() {}
