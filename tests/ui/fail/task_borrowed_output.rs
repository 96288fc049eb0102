use goflow::prelude::*;

#[task]
fn region() -> &'static str {
    "north"
}

#[task]
fn dag_name(ctx: &TaskContext) -> &str {
    let _ = ctx;
    "north"
}

#[task]
fn regions() -> Result<Vec<&'static str>, String> {
    Ok(vec!["north"])
}

#[task]
fn label() -> std::borrow::Cow<'static, str> {
    "north".into()
}

// Borrowed data in the error is fine: the error is not stored as output.
#[task]
fn checked() -> Result<u32, &'static str> {
    Err("no")
}

fn main() {}
