use goflow::prelude::*;

struct Connection;

#[task]
fn connect() -> Connection {
    Connection
}

fn main() {}
