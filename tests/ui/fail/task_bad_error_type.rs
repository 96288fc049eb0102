use goflow::prelude::*;

#[task]
fn count() -> Result<u32, u32> {
    Err(1)
}

type Checked<T> = Result<T, Vec<String>>;

#[task]
async fn validate() -> Checked<u32> {
    Err(vec!["no rows".into()])
}

fn main() {}
