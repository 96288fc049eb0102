// Every authoring feature in one file: async and sync tasks, context,
// constants, ordering edges with lists and chains, branches, options.
use goflow::prelude::*;

#[derive(Serialize, Deserialize)]
struct Row {
    id: u32,
}

#[task(retries = 2, retry_delay = "1s", backoff = "fixed", timeout = "1h30m")]
async fn load(ctx: &TaskContext) -> Result<Vec<Row>, TaskError> {
    let _ = ctx.logical_date();
    Ok(vec![Row { id: 1 }])
}

#[task(executor = "local_process", priority = -3)]
fn count(rows: Vec<Row>, offset: u32) -> u32 {
    rows.len() as u32 + offset
}

#[task(trigger_rule = "one_failed")]
fn alert() {}

#[task]
fn route(n: u32) -> Branch {
    if n > 1 { Branch::to(["alert"]) } else { Branch::none() }
}

mod more {
    use goflow::prelude::*;

    #[task]
    pub fn finish(total: u32) -> std::io::Result<String> {
        Ok(total.to_string())
    }
}

#[dag(schedule = "@every 15m", start = "2026-01-01T00:00:00Z", catchup = true, max_active_runs = 1, end = "2027-01-01", description = "all of it")]
fn everything() {
    let rows = load();
    let n = count(rows, 1);
    let r#type = route(n);
    alert();
    let done = more::finish(n);
    r#type >> alert;
    rows >> [n] >> done;
}

#[dag]
fn manual_only() {
    alert();
}

fn main() {
    let dag = everything();
    assert_eq!(dag.tasks().len(), 5);
    assert!(dag.task("type").is_ok());
    assert_eq!(manual_only().schedule().to_string(), "@manual");
}
