//! Return types are read by their type: a user's `Result` and `Branch`
//! shadowing std's and goflow's are plain outputs, aliases of `Result` are
//! results, and the generated code does not depend on what is in scope.

use goflow::{dag, task, TaskError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Result<T> {
    pub value: T,
}

#[derive(Serialize, Deserialize)]
pub struct Branch(Vec<String>);

type Fallible<T> = std::result::Result<T, TaskError>;
type Res = std::io::Result<Vec<u8>>;

#[task]
fn wrapped() -> Result<u32> {
    Result { value: 1 }
}

#[task]
fn named() -> Branch {
    Branch(vec!["a".into()])
}

#[task]
fn unwrap_it(r: Result<u32>, b: Branch) -> Fallible<u32> {
    Ok(r.value + b.0.len() as u32)
}

#[task]
async fn read() -> Res {
    Ok(Vec::new())
}

#[task]
fn sum(n: u32, bytes: Vec<u8>) -> std::fmt::Result {
    let _ = (n, bytes);
    Ok(())
}

#[task]
fn route(n: u32) -> std::result::Result<goflow::Branch, Box<dyn std::error::Error>> {
    if n > 1 {
        Ok(goflow::Branch::to(["done"]))
    } else {
        Err("too small".into())
    }
}

#[task]
fn done() {}

// Error types without a `Via` of their own.
#[task]
fn shared() -> std::result::Result<u32, std::sync::Arc<dyn std::error::Error + Send + Sync>> {
    Ok(1)
}

#[task]
fn cow() -> std::result::Result<u32, std::borrow::Cow<'static, str>> {
    Err("no".into())
}

#[dag]
fn shapes() {
    let r = wrapped();
    let b = named();
    let n = unwrap_it(r, b);
    let bytes = read();
    let s = sum(n, bytes);
    let chosen = route(n);
    done();
    chosen >> done;
    shared();
    cow();
}

fn main() {
    let _ = shapes();
}
