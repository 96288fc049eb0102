use goflow::prelude::*;

#[task]
fn load() {}
#[task]
fn save() {}

#[dag]
fn pipeline() {
    load();
    save();
    load >> sav;
}

fn main() {}
