use goflow::prelude::*;

#[task]
fn a() {}
#[task]
fn b() {}
#[task]
fn c() {}

#[dag]
fn circular() {
    a();
    b();
    c();
    a >> b >> c;
    c >> a;
}

fn main() {}
