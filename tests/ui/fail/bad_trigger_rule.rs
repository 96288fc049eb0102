use goflow::prelude::*;

#[task(trigger_rule = "all_sucess", backoff = "linear", memory = "512MB")]
fn noop() {}

fn main() {}
