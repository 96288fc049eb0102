//! What a DAG author writes, end to end through the facade: tasks stay
//! plain functions, `#[dag]` builds the graph, and the generated entry
//! points pass typed data between tasks.

use goflow::prelude::*;
use goflow::{DataInterval, Inputs, RunId, RunType, TaskId, TriggerRule};

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
    TaskContext {
        dag_id: "daily-sales".parse().unwrap(),
        run_id: RunId::new("test").unwrap(),
        task_id: TaskId::new(task).unwrap(),
        try_number: 1,
        max_tries: 1,
        run_type: RunType::Test,
        data_interval: DataInterval::at(chrono::Utc::now()),
        conf,
    }
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
) -> Result<goflow::TaskOutput, TaskError> {
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
    let reg = goflow::runtime::Registry::from_inventory().unwrap();
    assert!(reg.get("daily-sales").is_ok());
    assert!(reg.get("broken-dag").is_ok());
    let tasks = goflow::runtime::registry::registered_tasks();
    assert!(tasks
        .iter()
        .any(|t| t.name == "summarize" && (t.options)().priority_weight == Some(5)));
}
