use std::fs::File;
use std::io;

use goflow::prelude::*;

#[task]
fn open() -> io::Result<File> {
    File::open("sales.csv")
}

struct Connection;

type Outcome<T> = Result<T, String>;

#[task]
async fn connect() -> Outcome<Connection> {
    Ok(Connection)
}

// Not `Send`: still reported once, as not an output.
#[task]
fn counter() -> std::rc::Rc<u32> {
    std::rc::Rc::new(1)
}

fn main() {}
