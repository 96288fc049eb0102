//! The quickstart (`examples/quickstart`, package `goflow-quickstart`),
//! driven through the CLI in this process: its DAG is listed, runs to
//! success with real data, and a broken run fails.

#[allow(dead_code)]
#[path = "../examples/quickstart/src/main.rs"]
mod quickstart;

use std::process::ExitCode;

use clap::Parser;
use goflow_runtime::cli::{run, Cli};
use goflow_runtime::Registry;

async fn cli(args: &[&str]) -> (ExitCode, String) {
    let registry = Registry::from_inventory().expect("registered DAGs");
    let cli = Cli::try_parse_from(std::iter::once("quickstart").chain(args.iter().copied()))
        .expect("valid arguments");
    let mut out = Vec::new();
    let code = run(cli, &registry, &mut out, chrono::Utc::now())
        .await
        .expect("the command runs");
    (code, String::from_utf8(out).expect("utf-8 output"))
}

/// Revenue per region straight from the CSV, to check the report against.
fn expected_revenue() -> std::collections::BTreeMap<String, f64> {
    let csv = include_str!("../examples/quickstart/data/sales.csv");
    let mut by_region = std::collections::BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let units: f64 = f[4].parse().unwrap();
        let price: f64 = f[5].parse().unwrap();
        *by_region.entry(f[2].to_owned()).or_insert(0.0) += units * price;
    }
    by_region
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_the_daily_dag() {
    let (code, out) = cli(&["dags", "list", "--output", "json"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dag = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dag_id"] == "daily-sales")
        .expect("daily-sales is listed");
    assert_eq!(dag["schedule"], "0 6 * * * (Europe/Paris)");
    assert_eq!(dag["tasks"], 8);
    assert!(
        dag["next_run"].as_str().unwrap().ends_with("05:00:00Z"),
        "{dag}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let conf = serde_json::json!({ "output_dir": dir.path() }).to_string();
    let (code, out) = cli(&[
        "dags",
        "test",
        "daily-sales",
        "--date",
        "2026-01-07T06:00",
        "--conf",
        &conf,
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    for task in [
        "sales", "north", "south", "east", "west", "report", "written", "archive",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(task) && l.contains("success")),
            "{task} should succeed:\n{out}"
        );
    }
    let report = std::fs::read_to_string(dir.path().join("report-2026-01-07.md")).unwrap();
    for (region, revenue) in expected_revenue() {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {region} |")))
            .unwrap_or_else(|| panic!("no row for {region}:\n{report}"));
        assert!(
            row.contains(&format!("{revenue:.2}")),
            "{row} should show {revenue:.2}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_input_fails_the_run_but_archive_still_runs() {
    let conf = r#"{"input": "/nonexistent/sales.csv"}"#;
    let (code, out) = cli(&["dags", "test", "daily-sales", "--conf", conf]).await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(out.contains("cannot read /nonexistent/sales.csv"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("report") && l.contains("upstream_failed")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("archive") && l.contains("success")),
        "{out}"
    );
    assert!(out.lines().last().unwrap().contains("failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_without_sales_skips() {
    let conf = r#"{"only_logical_day": true}"#;
    let (code, out) = cli(&[
        "dags",
        "test",
        "daily-sales",
        "--date",
        "2026-03-01T06:00",
        "--conf",
        conf,
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("no sales on 2026-03-01"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("written") && l.contains("skipped")),
        "{out}"
    );
}
