//! What a DAG author writes, end to end through the facade: tasks stay
//! plain functions, `#[dag]` builds the graph, and the generated entry
//! points pass typed data between tasks.

use goflow::prelude::*;
use goflow::TriggerRule;
use goflow_core::Inputs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sale {
    region: String,
    amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    region: String,
    total: f64,
}

#[task(
    retries = 3,
    retry_delay = "30s",
    backoff = "exponential",
    max_retry_delay = "10m",
    timeout = "5m"
)]
async fn extract(ctx: &TaskContext) -> Result<Vec<Sale>, TaskError> {
    let n = ctx.param::<usize>("rows")?.unwrap_or(2);
    Ok((0..n)
        .map(|i| Sale {
            region: if i % 2 == 0 {
                "north".into()
            } else {
                "south".into()
            },
            amount: 10.0 * (i + 1) as f64,
        })
        .collect())
}

#[task(priority = 5, pool = "cpu")]
fn summarize(sales: Vec<Sale>, region: String) -> Summary {
    let total = sales
        .iter()
        .filter(|s| s.region == region)
        .map(|s| s.amount)
        .sum();
    Summary { region, total }
}

#[task]
fn merge(a: Summary, b: Summary) -> Vec<Summary> {
    vec![a, b]
}

#[task(trigger_rule = "all_done", image = "registry.example.com/report:1", memory = "512Mi", cpu = "250m", env = ["MODE=fast"], node_selector = ["disk=ssd"], service_account = "reporter")]
fn cleanup() {}

#[task]
fn choose(summaries: Vec<Summary>) -> Branch {
    if summaries.iter().any(|s| s.total > 100.0) {
        Branch::to(["big"])
    } else {
        Branch::to(["small"])
    }
}

#[task]
fn big() -> String {
    "big".into()
}

#[task]
fn small() -> String {
    "small".into()
}

#[task]
fn broken() -> Result<u32, std::io::Error> {
    Err(std::io::Error::other("disk on fire"))
}

/// Sales per region, merged into one report.
#[dag(schedule = "0 6 * * *", tz = "Europe/Paris", start = "2026-01-01", namespace = "analytics", tags = ["sales", "daily"], max_active_tasks = 4, defaults(retries = 1))]
fn daily_sales() {
    let sales = extract();
    let north = summarize(sales, "north");
    let south = summarize(sales, "south");
    let merged = merge(north, south);
    let route = choose(merged);
    big();
    small();
    cleanup();
    route >> [big, small];
    merged >> cleanup;
}

#[dag(id = "broken-dag")]
fn broken_dag() {
    let b = broken();
}

fn ctx(task: &str, conf: serde_json::Value) -> TaskContext {
    TaskContext::for_test(task)
        .dag("daily-sales")
        .logical_date(chrono::Utc::now())
        .conf(conf)
        .build()
}

#[test]
fn tasks_are_plain_functions() {
    let s = summarize(
        vec![
            Sale {
                region: "north".into(),
                amount: 2.5,
            },
            Sale {
                region: "south".into(),
                amount: 1.0,
            },
        ],
        "north".into(),
    );
    assert_eq!(
        s,
        Summary {
            region: "north".into(),
            total: 2.5
        }
    );
    assert!(broken().is_err());
}

#[test]
fn dag_function_builds_the_graph() {
    let dag = daily_sales();
    assert_eq!(dag.id().as_str(), "daily-sales");
    assert_eq!(dag.namespace(), Some("analytics"));
    assert_eq!(dag.tags(), ["sales", "daily"]);
    assert_eq!(dag.max_active_tasks(), 4);
    assert_eq!(
        dag.description(),
        Some("Sales per region, merged into one report.")
    );
    assert_eq!(dag.schedule().to_string(), "0 6 * * * (Europe/Paris)");
    assert_eq!(dag.start_date().to_rfc3339(), "2025-12-31T23:00:00+00:00");
    let ids: Vec<&str> = dag.tasks().iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        ["sales", "north", "south", "merged", "route", "big", "small", "cleanup"]
    );
    assert!(dag.source_file().ends_with("authoring.rs"));

    let north = dag.task("north").unwrap();
    assert_eq!(north.function, "summarize");
    assert_eq!(north.options.priority_weight, Some(5));
    assert_eq!(north.options.pool(), "cpu");
    assert_eq!(
        north.options.retries,
        Some(1),
        "DAG defaults fill unset options"
    );

    let sales = dag.task("sales").unwrap();
    assert_eq!(sales.options.retries, Some(3), "the task's own options win");
    assert_eq!(
        sales.options.timeout,
        Some(std::time::Duration::from_secs(300))
    );
    assert_eq!(sales.options.backoff, Some(goflow::Backoff::Exponential));

    let cleanup = dag.task("cleanup").unwrap();
    assert_eq!(cleanup.options.trigger_rule(), TriggerRule::AllDone);
    let k = &cleanup.options.kubernetes;
    assert_eq!(k.image.as_deref(), Some("registry.example.com/report:1"));
    assert_eq!(k.memory_request.as_deref(), Some("512Mi"));
    assert_eq!(k.cpu_request.as_deref(), Some("250m"));
    assert_eq!(k.env, [("MODE".to_string(), "fast".to_string())]);
    assert_eq!(k.node_selector, [("disk".to_string(), "ssd".to_string())]);
    assert_eq!(k.service_account.as_deref(), Some("reporter"));

    let merged = dag.index_of("merged").unwrap();
    let down: Vec<&str> = dag
        .downstream(merged)
        .iter()
        .map(|i| dag.tasks()[*i].id.as_str())
        .collect();
    assert_eq!(down, ["route", "cleanup"]);
}

fn run(
    dag: &goflow::Dag,
    task: &str,
    inputs: &Inputs,
    conf: serde_json::Value,
) -> Result<goflow_core::TaskOutput, TaskError> {
    let node = dag.task(task).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on((node.run)(ctx(task, conf), inputs))
}

#[test]
fn generated_entry_points_pass_typed_data() {
    let dag = daily_sales();
    let out = run(
        &dag,
        "sales",
        &Inputs::new(),
        serde_json::json!({"rows": 4}),
    )
    .unwrap();
    let sales: Vec<Sale> = serde_json::from_value(out.value.clone()).unwrap();
    assert_eq!(sales.len(), 4);

    let mut inputs = Inputs::new();
    inputs.insert("sales", out.value);
    let north = run(&dag, "north", &inputs, serde_json::json!({})).unwrap();
    assert_eq!(
        north.value,
        serde_json::json!({"region": "north", "total": 40.0})
    );

    let mut inputs = Inputs::new();
    inputs.insert(
        "merged",
        serde_json::json!([{"region": "north", "total": 400.0}]),
    );
    let route = run(&dag, "route", &inputs, serde_json::json!({})).unwrap();
    assert_eq!(route.follow, Some(vec!["big".to_string()]));
}

#[test]
fn errors_and_bad_inputs_surface_as_task_errors() {
    let dag = broken_dag();
    let err = run(&dag, "b", &Inputs::new(), serde_json::json!({})).unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    assert!(
        err.downcast_ref::<std::io::Error>().is_some(),
        "the user's error stays reachable"
    );

    let dag = daily_sales();
    let mut inputs = Inputs::new();
    inputs.insert("sales", serde_json::json!("not a list"));
    let err = run(&dag, "north", &inputs, serde_json::json!({})).unwrap_err();
    assert_eq!(err.kind(), goflow::TaskErrorKind::Input);
    let err = run(
        &dag,
        "sales",
        &Inputs::new(),
        serde_json::json!({"rows": "many"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"rows\""), "{err}");
}

#[test]
fn registrations_are_collected() {
    let reg = goflow_runtime::Registry::from_inventory().unwrap();
    assert!(reg.get("daily-sales").is_ok());
    assert!(reg.get("broken-dag").is_ok());
    let tasks = goflow_runtime::registry::registered_tasks();
    assert!(tasks
        .iter()
        .any(|t| t.name == "summarize" && (t.options)().priority_weight == Some(5)));
}

// ---------------------------------------------------------------------------
// Return types are read by their type, not their name: aliases of `Result`
// fail the task on `Err`, every common error type works, and a user's
// types named `Result` or `Branch` are plain outputs.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct QuotaError {
    used: u32,
}

impl std::fmt::Display for QuotaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quota exceeded ({} used)", self.used)
    }
}

impl std::error::Error for QuotaError {}

type Outcome<T> = Result<T, String>;

/// A user's types that happen to be named like goflow's or std's.
mod shapes {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Branch {
        pub name: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Result<T> {
        pub value: T,
    }
}

mod counting {
    use super::shapes::Result;
    use goflow::prelude::*;

    #[task]
    pub fn counted() -> Result<u32> {
        Result { value: 3 }
    }
}

fn fail(ctx: &TaskContext) -> bool {
    ctx.param::<bool>("fail").unwrap().unwrap_or(false)
}

#[task]
async fn with_anyhow(ctx: &TaskContext) -> anyhow::Result<u32> {
    if fail(ctx) {
        anyhow::bail!("no rows for {}", "north");
    }
    Ok(1)
}

#[task]
fn with_anyhow_error(ctx: &TaskContext) -> Result<u32, anyhow::Error> {
    if fail(ctx) {
        return Err(anyhow::Error::new(QuotaError { used: 7 }).context("loading sales"));
    }
    Ok(2)
}

#[task]
async fn with_box_dyn(ctx: &TaskContext) -> Result<u32, Box<dyn std::error::Error>> {
    if fail(ctx) {
        let io: Box<dyn std::error::Error> = Box::new(std::io::Error::other("socket closed"));
        return Err(io);
    }
    Ok(3)
}

#[task]
fn with_box_dyn_sync(ctx: &TaskContext) -> Result<u32, Box<dyn std::error::Error>> {
    if fail(ctx) {
        return Err("boxed message".into());
    }
    Ok(4)
}

#[task]
fn with_box_send_sync(ctx: &TaskContext) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    if fail(ctx) {
        return Err(Box::new(QuotaError { used: 9 }));
    }
    Ok(5)
}

#[task]
fn with_string(ctx: &TaskContext) -> Result<u32, String> {
    if fail(ctx) {
        return Err(format!("{} rows missing", 2));
    }
    Ok(6)
}

#[task]
fn with_str(ctx: &TaskContext) -> Result<u32, &'static str> {
    if fail(ctx) {
        return Err("static message");
    }
    Ok(7)
}

#[task]
async fn with_own_error(ctx: &TaskContext) -> Result<u32, QuotaError> {
    if fail(ctx) {
        return Err(QuotaError { used: 11 });
    }
    Ok(8)
}

#[task]
fn with_task_error(ctx: &TaskContext) -> Result<u32, TaskError> {
    if fail(ctx) {
        return Err(TaskError::fatal("bad configuration"));
    }
    // `?` still converts std errors in a task returning `TaskError`.
    let n: u32 = "9".parse()?;
    Ok(n)
}

#[task]
fn with_alias(ctx: &TaskContext) -> Outcome<u32> {
    if fail(ctx) {
        return Err("boom".into());
    }
    Ok(10)
}

#[task]
fn with_io_alias(ctx: &TaskContext) -> std::io::Result<u32> {
    if fail(ctx) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "sales.csv",
        ));
    }
    Ok(11)
}

/// Takes the alias task's output: it is a `u32`, not a `Result`.
#[task]
fn doubled(n: u32) -> u32 {
    n * 2
}

#[task]
fn user_branch() -> shapes::Branch {
    shapes::Branch {
        name: "not goflow's".into(),
    }
}

#[task]
fn user_result() -> shapes::Result<String> {
    shapes::Result {
        value: "not std's".into(),
    }
}

#[task]
fn fallible_route(ctx: &TaskContext) -> Outcome<Branch> {
    if fail(ctx) {
        return Err("cannot route".into());
    }
    Ok(Branch::to(["doubled"]))
}

#[dag(id = "return-types")]
fn return_types() {
    with_anyhow();
    with_anyhow_error();
    with_box_dyn();
    with_box_dyn_sync();
    with_box_send_sync();
    with_string();
    with_str();
    with_own_error();
    with_task_error();
    let alias = with_alias();
    with_io_alias();
    doubled(alias);
    user_branch();
    user_result();
    counting::counted();
    let route = fallible_route();
    route >> doubled;
}

#[test]
fn every_error_type_fails_the_task_and_ok_is_the_output() {
    let dag = return_types();
    let ok = serde_json::json!({});
    let failing = serde_json::json!({"fail": true});
    let cases: [(&str, u32, &str); 11] = [
        ("with_anyhow", 1, "no rows for north"),
        (
            "with_anyhow_error",
            2,
            "loading sales: quota exceeded (7 used)",
        ),
        ("with_box_dyn", 3, "socket closed"),
        ("with_box_dyn_sync", 4, "boxed message"),
        ("with_box_send_sync", 5, "quota exceeded (9 used)"),
        ("with_string", 6, "2 rows missing"),
        ("with_str", 7, "static message"),
        ("with_own_error", 8, "quota exceeded (11 used)"),
        ("with_task_error", 9, "bad configuration"),
        ("alias", 10, "boom"),
        ("with_io_alias", 11, "sales.csv"),
    ];
    for (task, value, message) in cases {
        let out =
            run(&dag, task, &Inputs::new(), ok.clone()).unwrap_or_else(|e| panic!("{task}: {e}"));
        assert_eq!(out.value, serde_json::json!(value), "{task}");
        assert_eq!(out.follow, None, "{task}");
        let err = run(&dag, task, &Inputs::new(), failing.clone())
            .err()
            .unwrap_or_else(|| panic!("{task}: `Err` must fail the task"));
        assert_eq!(err.to_string(), message, "{task}");
    }

    // The error stays reachable where it can cross threads.
    let err = |task| run(&dag, task, &Inputs::new(), failing.clone()).unwrap_err();
    let own = err("with_own_error");
    assert_eq!(own.downcast_ref::<QuotaError>().unwrap().used, 11);
    assert_eq!(own.kind(), goflow::TaskErrorKind::Failed);
    assert_eq!(
        err("with_box_send_sync")
            .downcast_ref::<QuotaError>()
            .unwrap()
            .used,
        9
    );
    assert_eq!(
        err("with_anyhow_error")
            .downcast_ref::<QuotaError>()
            .unwrap()
            .used,
        7,
        "found behind anyhow's context"
    );
    assert_eq!(
        err("with_anyhow_error").source_error().unwrap().to_string(),
        "loading sales"
    );
    assert_eq!(
        err("with_io_alias")
            .downcast_ref::<std::io::Error>()
            .unwrap()
            .kind(),
        std::io::ErrorKind::NotFound
    );
    // `Box<dyn Error>` is not `Send`: its message is kept, not the error.
    assert!(err("with_box_dyn").source_error().is_none());
    // A `TaskError` keeps its kind.
    let fatal = err("with_task_error");
    assert_eq!(fatal.kind(), goflow::TaskErrorKind::Fatal);
    assert!(!fatal.is_retryable());
}

#[test]
fn alias_outputs_flow_as_their_ok_type() {
    let dag = return_types();
    let alias = run(&dag, "alias", &Inputs::new(), serde_json::json!({})).unwrap();
    let mut inputs = Inputs::new();
    inputs.insert("alias", alias.value);
    let d = run(&dag, "doubled", &inputs, serde_json::json!({})).unwrap();
    assert_eq!(d.value, serde_json::json!(20));

    let route = run(&dag, "route", &Inputs::new(), serde_json::json!({})).unwrap();
    assert_eq!(route.follow, Some(vec!["doubled".to_string()]));
    assert_eq!(route.value, serde_json::json!(["doubled"]));
    let err = run(
        &dag,
        "route",
        &Inputs::new(),
        serde_json::json!({"fail": true}),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "cannot route");
}

#[test]
fn types_named_result_or_branch_are_plain_outputs() {
    let dag = return_types();
    let none = || Inputs::new();
    let out = run(&dag, "user_branch", &none(), serde_json::json!({})).unwrap();
    assert_eq!(out.value, serde_json::json!({"name": "not goflow's"}));
    assert_eq!(
        out.follow, None,
        "only goflow's `Branch` chooses downstreams"
    );
    let out = run(&dag, "user_result", &none(), serde_json::json!({})).unwrap();
    assert_eq!(out.value, serde_json::json!({"value": "not std's"}));
    let out = run(&dag, "counted", &none(), serde_json::json!({})).unwrap();
    assert_eq!(out.value, serde_json::json!({"value": 3}));
    // Still plain functions.
    assert_eq!(counting::counted(), shapes::Result { value: 3 });
}
