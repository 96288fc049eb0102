//! The CLI, driven through `cli::run` with a registry of hand-built DAGs.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clap::{CommandFactory, Parser};
use goflow_core::{
    DagBuilder, Inputs, Schedule, TaskContext, TaskError, TaskFn, TaskFuture, TaskOptions,
    TaskOutput, TaskSpec, Tz,
};
use goflow_runtime::cli::{run, Cli, CliError};
use goflow_runtime::Registry;
use serde_json::json;

fn spec(id: &str, data: &[&str], run: TaskFn) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "test",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: json!(1),
            follow: None,
        })
    })
}

fn fail(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::fatal("the warehouse is gone")) })
}

/// Fails when the run's conf says `{"fail": true}`.
fn obey_conf(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.param::<bool>("fail")? == Some(true) {
            return Err(TaskError::fatal("told to fail"));
        }
        Ok(TaskOutput {
            value: json!(null),
            follow: None,
        })
    })
}

/// Fails its first try.
fn flaky(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.try_number() == 1 {
            return Err(TaskError::msg("connection reset"));
        }
        Ok(TaskOutput {
            value: json!(null),
            follow: None,
        })
    })
}

fn registry() -> Registry {
    let paris: Tz = "Europe/Paris".parse().unwrap();
    let etl = DagBuilder::new("etl")
        .description("Daily sales")
        .schedule(Schedule::parse("0 6 * * *", "Europe/Paris").unwrap(), paris)
        .start_date(
            paris
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .unwrap()
                .with_timezone(&Utc),
        )
        .tags(["sales", "daily"])
        .task(spec("extract", &[], noop))
        .task(spec("load", &["extract"], noop))
        .build()
        .unwrap();
    let mut retried = spec("flaky", &[], flaky);
    retried.options.retries = Some(1);
    retried.options.retry_delay = Some(Duration::from_millis(10));
    let broken = DagBuilder::new("broken")
        .task(retried)
        .task(spec("load", &["flaky"], fail))
        .task(spec("publish", &["load"], noop))
        .build()
        .unwrap();
    let adhoc = DagBuilder::new("adhoc")
        .task(spec("obey", &[], obey_conf))
        .build()
        .unwrap();
    Registry::from_dags([etl, broken, adhoc]).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// Runs the command line `args` and returns the outcome and the output.
async fn cli(args: &[&str]) -> (Result<ExitCode, CliError>, String) {
    let cli = Cli::try_parse_from(std::iter::once("goflow").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let result = run(cli, &registry(), &mut out, now()).await;
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
    assert!(Cli::try_parse_from(["goflow", "dags", "list", "--output", "xml"]).is_err());
}

#[tokio::test]
async fn dags_list_json_has_one_object_per_dag() {
    let (result, out) = cli(&["dags", "list", "--output", "json"]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS);
    let dags: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        dags[2],
        json!({
            "dag_id": "etl",
            "schedule": "0 6 * * * (Europe/Paris)",
            // 06:00 in Paris, winter time.
            "next_run": "2026-03-11T05:00:00Z",
            "tasks": 2,
            "tags": ["sales", "daily"],
            "description": "Daily sales",
        })
    );
    assert_eq!(dags[0]["dag_id"], "adhoc");
    assert_eq!(dags[0]["next_run"], serde_json::Value::Null);
    assert_eq!(dags.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn dags_list_table_shows_next_runs_in_the_dags_time_zone() {
    let (result, out) = cli(&["dags", "list"]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["DAG", "SCHEDULE", "NEXT", "RUN", "TASKS", "TAGS"]
    );
    let etl = lines.iter().find(|l| l.starts_with("etl")).unwrap();
    assert!(
        etl.contains("2026-03-11T06:00:00+01:00") && etl.contains("sales,daily"),
        "{out}"
    );
    let adhoc = lines.iter().find(|l| l.starts_with("adhoc")).unwrap();
    assert_eq!(
        adhoc.split_whitespace().collect::<Vec<_>>(),
        ["adhoc", "@manual", "-", "1"]
    );
}

#[tokio::test]
async fn dags_test_runs_every_task_and_prints_a_summary() {
    let (result, out) = cli(&["dags", "test", "etl", "--date", "2026-02-03T06:00"]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(
        out.starts_with(
            "dag etl  run test__2026-02-03T05:00:00Z  \
             data interval 2026-02-03T06:00:00+01:00 .. 2026-02-04T06:00:00+01:00\n"
        ),
        "{out}"
    );
    let summary: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("TASK"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(summary[1][..3], ["extract", "success", "1"], "{out}");
    assert_eq!(summary[2][..3], ["load", "success", "1"], "{out}");
    assert!(out
        .lines()
        .last()
        .unwrap()
        .starts_with("run test__2026-02-03T05:00:00Z success in "));
}

#[tokio::test]
async fn dags_test_defaults_to_the_latest_complete_interval() {
    let (result, out) = cli(&["dags", "test", "etl"]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS);
    assert!(
        out.contains("data interval 2026-03-09T06:00:00+01:00 .. 2026-03-10T06:00:00+01:00"),
        "{out}"
    );
    // A manual DAG has no intervals: the run covers the instant `now`.
    let (_, out) = cli(&["dags", "test", "adhoc"]).await;
    assert!(out.contains("run test__2026-03-10T12:00:00Z"), "{out}");
}

#[tokio::test]
async fn a_failed_run_exits_1_and_shows_each_state_change() {
    let (result, out) = cli(&["dags", "test", "broken"]).await;
    assert_eq!(result.unwrap(), ExitCode::FAILURE, "{out}");
    let changes: Vec<String> = out
        .lines()
        .filter(|l| l.len() > 14 && l.as_bytes()[2] == b':')
        .map(|l| {
            l[14..]
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        changes,
        [
            "flaky scheduled",
            "flaky running",
            "flaky up_for_retry",
            "flaky scheduled",
            "flaky running",
            "flaky success",
            "load scheduled",
            "load running",
            "load failed",
            "publish upstream_failed",
        ],
        "{out}"
    );
    assert!(
        out.contains("try 1/2  ") && out.contains("retry in 10ms: connection reset"),
        "{out}"
    );
    assert!(
        out.contains("try 1/1  ") && out.contains(": the warehouse is gone"),
        "{out}"
    );
    assert!(out.lines().last().unwrap().contains(" failed in "), "{out}");
}

#[tokio::test]
async fn conf_reaches_the_tasks() {
    let (result, _) = cli(&["dags", "test", "adhoc", "--conf", r#"{"fail": false}"#]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS);
    let (result, _) = cli(&["dags", "test", "adhoc", "--conf", r#"{"fail": true}"#]).await;
    assert_eq!(result.unwrap(), ExitCode::FAILURE);
}

#[tokio::test]
async fn bad_input_is_named_and_exits_2() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["dags", "test", "adhoc", "--conf", "[1, 2]"],
            "invalid --conf: expected a JSON object, got an array: [1, 2]",
        ),
        (
            &["dags", "test", "adhoc", "--conf", "{fail: true}"],
            "invalid --conf: expected a JSON object, but \"{fail: true}\" is not valid JSON: \
             key must be a string at line 1 column 2",
        ),
        (
            &["dags", "test", "nightly"],
            "no DAG with id \"nightly\"; this binary has: adhoc, broken, etl",
        ),
        (
            &["dags", "test", "etl", "--date", "2026-02-30"],
            "invalid --date: invalid date \"2026-02-30\": expected YYYY-MM-DD, \
             YYYY-MM-DDTHH:MM[:SS], or RFC 3339 with an offset",
        ),
        (
            &["dags", "test", "etl", "--date", "2026-03-29T02:30"],
            "invalid --date: invalid date \"2026-03-29T02:30\": \
             this local time does not exist in Europe/Paris",
        ),
    ];
    for (args, message) in cases {
        let (result, out) = cli(args).await;
        let err = result.unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.exit_code(), ExitCode::from(2));
        assert!(out.is_empty(), "nothing ran: {out}");
    }
}
