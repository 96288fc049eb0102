//! The CLI commands that work on the database, driven through `cli::run`
//! on SQLite (a file in a temporary directory) and, when
//! `GOFLOW_TEST_DATABASE_URL` names a PostgreSQL server, on PostgreSQL too,
//! each test in a fresh schema dropped at the end.

use std::process::ExitCode;

use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use goflow_core::{
    DagBuilder, DataInterval, Inputs, RunState, RunType, Schedule, TaskContext, TaskFuture,
    TaskOptions, TaskOutput, TaskSpec, TaskState, Tz,
};
use goflow_runtime::cli::{run, Cli, CliError};
use goflow_runtime::Registry;
use goflow_store::testing::{empty_databases, TestDb};
use goflow_store::{RunRow, Store, TaskUpdate};
use serde_json::json;

// ---------------------------------------------------------------------------
// DAGs and the command line
// ---------------------------------------------------------------------------

fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: json!(1),
            follow: None,
        })
    })
}

fn spec(id: &str, data: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "test",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run: noop,
    }
}

fn paris() -> Tz {
    "Europe/Paris".parse().unwrap()
}

/// `etl` (daily at 06:00 in Paris): extract -> transform -> load, and
/// audit on its own. `adhoc`: manual, one task.
fn registry() -> Registry {
    let etl = DagBuilder::new("etl")
        .schedule(
            Schedule::parse("0 6 * * *", "Europe/Paris").unwrap(),
            paris(),
        )
        .start_date(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        .task(spec("extract", &[]))
        .task(spec("transform", &["extract"]))
        .task(spec("load", &["transform"]))
        .task(spec("audit", &[]))
        .build()
        .unwrap();
    let adhoc = DagBuilder::new("adhoc")
        .task(spec("obey", &[]))
        .build()
        .unwrap();
    Registry::from_dags([etl, adhoc]).unwrap()
}

/// 2026-03-10T12:00:00Z (13:00 in Paris).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// Runs `goflow --database-url <url> <args>`; returns the outcome and the
/// output.
async fn cli(url: &str, args: &[&str]) -> (Result<ExitCode, CliError>, String) {
    let argv = ["goflow", "--database-url", url]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let result = run(cli, &registry(), &mut out, now()).await;
    (result, String::from_utf8(out).unwrap())
}

/// Runs a command that must succeed; returns its output.
async fn ok(db: &TestDb, args: &[&str]) -> String {
    let (result, out) = cli(&db.url, args).await;
    match result {
        Ok(code) => assert_eq!(code, ExitCode::SUCCESS, "{} {args:?}: {out}", db.backend()),
        Err(e) => panic!("{} {args:?}: {e}", db.backend()),
    }
    out
}

/// Runs a command that must fail; returns the error.
async fn fails(db: &TestDb, args: &[&str]) -> CliError {
    let (result, out) = cli(&db.url, args).await;
    match result {
        Ok(code) => panic!("{} {args:?} succeeded ({code:?}): {out}", db.backend()),
        Err(e) => e,
    }
}

/// `dags runs <dag> --output json` (plus `extra`), parsed.
async fn runs_json(db: &TestDb, dag: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["dags", "runs", dag, "--output", "json"];
    args.extend_from_slice(extra);
    let out = ok(db, &args).await;
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .unwrap()
        .clone()
}

/// Moves a task instance along `path`, starting from pending.
async fn walk(store: &Store, run: i64, task: &str, path: &[TaskState]) {
    let mut from = TaskState::Pending;
    for &to in path {
        let moved = store
            .update_task(run, task, from, TaskUpdate::new(to), now())
            .await
            .unwrap();
        assert!(moved, "{task}: {from} -> {to}");
        from = to;
    }
}

async fn states(store: &Store, run: i64) -> Vec<(String, TaskState)> {
    store
        .task_instances(run)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.task_id, t.state))
        .collect()
}

fn pairs(expected: &[(&str, TaskState)]) -> Vec<(String, TaskState)> {
    expected
        .iter()
        .map(|(t, s)| ((*t).to_owned(), *s))
        .collect()
}

use TaskState::{Failed, Pending, Queued, Running, Scheduled, Success, UpstreamFailed};

/// Triggers a run of `etl` on 2026-03-01 and plays it to failure:
/// extract and audit succeed, transform fails, load is upstream_failed.
async fn failed_run(db: &TestDb) -> (Store, RunRow) {
    let out = ok(db, &["dags", "trigger", "etl", "--date", "2026-03-01"]).await;
    assert!(out.contains("manual__2026-02-28T23:00:00Z"), "{out}");
    let store = db.store.clone();
    let run = store
        .find_run("etl", "manual__2026-02-28T23:00:00Z")
        .await
        .unwrap()
        .unwrap();
    walk(
        &store,
        run.id,
        "extract",
        &[Scheduled, Queued, Running, Success],
    )
    .await;
    walk(
        &store,
        run.id,
        "audit",
        &[Scheduled, Queued, Running, Success],
    )
    .await;
    walk(
        &store,
        run.id,
        "transform",
        &[Scheduled, Queued, Running, Failed],
    )
    .await;
    walk(&store, run.id, "load", &[UpstreamFailed]).await;
    assert!(store
        .set_run_state(run.id, RunState::Queued, RunState::Running, now())
        .await
        .unwrap());
    assert!(store
        .set_run_state(run.id, RunState::Running, RunState::Failed, now())
        .await
        .unwrap());
    (store, run)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn db_migrate_applies_once_then_is_up_to_date() {
    for db in empty_databases().await {
        let first = ok(&db, &["db", "migrate"]).await;
        assert!(
            first.starts_with("applied ") && first.lines().count() >= 2,
            "{}: {first}",
            db.backend()
        );
        let second = ok(&db, &["db", "migrate"]).await;
        assert!(
            second.starts_with("database ") && second.trim_end().ends_with(" is up to date"),
            "{}: {second}",
            db.backend()
        );
    }
}

#[tokio::test]
async fn trigger_creates_a_queued_run_with_its_conf() {
    for db in empty_databases().await {
        let out = ok(
            &db,
            &[
                "dags",
                "trigger",
                "etl",
                "--conf",
                r#"{"region": "eu", "limit": 3}"#,
                "--date",
                "2026-03-02T06:00",
            ],
        )
        .await;
        assert!(
            out.starts_with("created run manual__2026-03-02T05:00:00Z of DAG etl (queued"),
            "{out}"
        );
        // Without --date the logical date is now.
        let out = ok(&db, &["dags", "trigger", "adhoc"]).await;
        assert!(out.contains("manual__2026-03-10T12:00:00Z"), "{out}");

        let runs = runs_json(&db, "etl", &[]).await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        let run = &runs[0];
        assert_eq!(run["run_id"], "manual__2026-03-02T05:00:00Z");
        assert_eq!(run["run_type"], "manual");
        assert_eq!(run["state"], "queued");
        assert_eq!(run["logical_date"], "2026-03-02T05:00:00Z");
        assert_eq!(run["conf"], json!({"region": "eu", "limit": 3}));
        assert_eq!(run["start_date"], serde_json::Value::Null);

        // The run is in the store, its tasks pending, for the scheduler.
        let store = db.store.clone();
        let stored = store
            .find_run("etl", "manual__2026-03-02T05:00:00Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, RunState::Queued);
        assert_eq!(stored.run_type, RunType::Manual);
        assert_eq!(
            states(&store, stored.id).await,
            pairs(&[
                ("extract", Pending),
                ("transform", Pending),
                ("load", Pending),
                ("audit", Pending),
            ])
        );

        // The table lists the same run.
        let table = ok(&db, &["dags", "runs", "etl"]).await;
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("RUN ID"), "{table}");
        assert_eq!(
            lines[1].split_whitespace().take(4).collect::<Vec<_>>(),
            [
                "manual__2026-03-02T05:00:00Z",
                "manual",
                "queued",
                "2026-03-02T06:00:00+01:00"
            ]
        );
    }
}

#[tokio::test]
async fn a_second_trigger_at_the_same_date_is_refused() {
    for db in empty_databases().await {
        ok(&db, &["dags", "trigger", "etl", "--date", "2026-03-02"]).await;
        let err = fails(&db, &["dags", "trigger", "etl", "--date", "2026-03-02"]).await;
        assert_eq!(err.exit_code(), ExitCode::from(2));
        let message = err.to_string();
        assert!(
            message.contains("etl") && message.contains("already has a run"),
            "{message}"
        );
        assert_eq!(runs_json(&db, "etl", &[]).await.len(), 1);
    }
}

#[tokio::test]
async fn bad_trigger_input_is_refused_before_the_database() {
    for db in empty_databases().await {
        let err = fails(&db, &["dags", "trigger", "adhoc", "--conf", "[1, 2]"]).await;
        assert_eq!(
            err.to_string(),
            "invalid --conf: expected a JSON object, got an array: [1, 2]"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));
        let err = fails(&db, &["dags", "trigger", "etl", "--date", "yesterday"]).await;
        assert!(err.to_string().starts_with("invalid --date"), "{err}");
        assert_eq!(err.exit_code(), ExitCode::from(2));
        let err = fails(&db, &["dags", "trigger", "nightly"]).await;
        assert_eq!(
            err.to_string(),
            "no DAG with id \"nightly\"; this binary has: adhoc, etl"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));
        assert!(runs_json(&db, "adhoc", &[]).await.is_empty());
    }
    // Bad conf is named even when the database is unreachable.
    let (result, _) = cli(
        "postgres://postgres@127.0.0.1:1/goflow",
        &["dags", "trigger", "adhoc", "--conf", "3"],
    )
    .await;
    assert!(matches!(result, Err(CliError::InvalidConf { .. })));
}

#[tokio::test]
async fn pause_and_unpause_reach_the_store() {
    for db in empty_databases().await {
        let out = ok(&db, &["dags", "pause", "etl"]).await;
        assert_eq!(out, "DAG etl is paused\n");
        let store = db.store.clone();
        assert!(store.get_dag("etl").await.unwrap().unwrap().is_paused);
        assert!(!store.get_dag("adhoc").await.unwrap().unwrap().is_paused);

        // A trigger on a paused DAG works, with a note.
        let out = ok(&db, &["dags", "trigger", "etl"]).await;
        assert!(out.contains("note: DAG etl is paused"), "{out}");

        let out = ok(&db, &["dags", "unpause", "etl"]).await;
        assert_eq!(out, "DAG etl is unpaused\n");
        assert!(!store.get_dag("etl").await.unwrap().unwrap().is_paused);
        let out = ok(&db, &["dags", "unpause", "etl"]).await;
        assert_eq!(out, "DAG etl is unpaused (unchanged)\n");

        let err = fails(&db, &["dags", "pause", "nightly"]).await;
        assert!(err.to_string().contains("no DAG with id \"nightly\""));
        assert_eq!(err.exit_code(), ExitCode::from(2));
    }
}

#[tokio::test]
async fn runs_days_counts_each_day_in_the_dags_time_zone() {
    for db in empty_databases().await {
        ok(&db, &["db", "migrate"]).await;
        // Sync the DAGs: create runs through the store as a scheduler would.
        ok(&db, &["dags", "runs", "etl"]).await;
        let store = db.store.clone();
        let dags = registry();
        let etl = dags.get("etl").unwrap();
        let at = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
        // (logical date in UTC, final state); Paris is UTC+1 in March.
        let plan = [
            (at(7, 22, 30), Some(RunState::Success)), // Mar 7 23:30 Paris: outside
            (at(7, 23, 30), Some(RunState::Failed)),  // Mar 8 00:30 Paris
            (at(9, 5, 0), Some(RunState::Success)),   // Mar 9
            (at(9, 6, 0), Some(RunState::Failed)),    // Mar 9
            (at(9, 23, 30), Some(RunState::Success)), // Mar 10 00:30 Paris
            (at(10, 5, 0), Some(RunState::Running)),  // Mar 10
            (at(10, 6, 0), None),                     // Mar 10, queued
        ];
        for (start, state) in plan {
            let new = goflow_runtime::db::new_run(
                etl,
                1,
                RunType::Scheduled,
                DataInterval::new(start, start + chrono::Duration::days(1)),
                json!({}),
            );
            let run = store.create_run(&new, now()).await.unwrap();
            if let Some(state) = state {
                store
                    .set_run_state(run.id, RunState::Queued, RunState::Running, now())
                    .await
                    .unwrap();
                if state != RunState::Running {
                    store
                        .set_run_state(run.id, RunState::Running, state, now())
                        .await
                        .unwrap();
                }
            }
        }
        // Another DAG's run on the same days does not count.
        ok(&db, &["dags", "trigger", "adhoc", "--date", "2026-03-10"]).await;

        let out = ok(
            &db,
            &["dags", "runs", "etl", "--days", "3", "--output", "json"],
        )
        .await;
        let days: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            days,
            json!([
                {"day": "2026-03-08", "runs": 1, "success": 0, "failed": 1, "running": 0, "queued": 0},
                {"day": "2026-03-09", "runs": 2, "success": 1, "failed": 1, "running": 0, "queued": 0},
                {"day": "2026-03-10", "runs": 3, "success": 1, "failed": 0, "running": 1, "queued": 1},
            ]),
            "{}",
            db.backend()
        );

        let table = ok(&db, &["dags", "runs", "etl", "--days", "4"]).await;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["DAY", "RUNS", "SUCCESS", "FAILED", "RUNNING", "QUEUED"],
                vec!["2026-03-07", "1", "1", "0", "0", "0"],
                vec!["2026-03-08", "1", "0", "1", "0", "0"],
                vec!["2026-03-09", "2", "1", "1", "0", "0"],
                vec!["2026-03-10", "3", "1", "0", "1", "1"],
            ]
        );

        // The plain listing: latest logical date first, --limit honoured,
        // a finished run has a duration.
        let runs = runs_json(&db, "etl", &["--limit", "2"]).await;
        let ids: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "scheduled__2026-03-10T06:00:00Z",
                "scheduled__2026-03-10T05:00:00Z"
            ]
        );
        let all = runs_json(&db, "etl", &[]).await;
        assert_eq!(all.len(), 7);
        assert_eq!(all[2]["state"], "success");
        assert_eq!(all[2]["duration_seconds"], json!(0.0));
        assert_eq!(all[0]["duration_seconds"], serde_json::Value::Null);
    }
}

#[tokio::test]
async fn clearing_a_failed_task_puts_it_and_its_run_back_in_line() {
    for db in empty_databases().await {
        let (store, run) = failed_run(&db).await;
        let out = ok(&db, &["tasks", "clear", "etl", &run.run_id, "transform"]).await;
        assert_eq!(
            out,
            "cleared 1 task instance of run manual__2026-02-28T23:00:00Z of DAG etl: transform\n\
             run manual__2026-02-28T23:00:00Z is queued again\n"
        );
        assert_eq!(
            states(&store, run.id).await,
            pairs(&[
                ("extract", Success),
                ("transform", Pending),
                ("load", UpstreamFailed),
                ("audit", Success),
            ])
        );
        let run = store.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Queued);
        assert_eq!(run.end_date, None);
    }
}

#[tokio::test]
async fn clearing_downstream_includes_every_downstream() {
    for db in empty_databases().await {
        let (store, run) = failed_run(&db).await;
        let out = ok(
            &db,
            &[
                "tasks",
                "clear",
                "etl",
                &run.run_id,
                "extract",
                "--downstream",
            ],
        )
        .await;
        assert!(
            out.starts_with("cleared 3 task instances of run manual__2026-02-28T23:00:00Z of DAG etl: extract, transform, load\n"),
            "{out}"
        );
        assert_eq!(
            states(&store, run.id).await,
            pairs(&[
                ("extract", Pending),
                ("transform", Pending),
                ("load", Pending),
                ("audit", Success),
            ])
        );
        // No task named: all of them.
        let out = ok(&db, &["tasks", "clear", "etl", &run.run_id]).await;
        assert!(out.contains(": extract, transform, load, audit\n"), "{out}");
        assert!(states(&store, run.id)
            .await
            .iter()
            .all(|(_, s)| *s == Pending));
    }
}

#[tokio::test]
async fn clearing_unknown_or_busy_tasks_is_refused_and_changes_nothing() {
    for db in empty_databases().await {
        let (store, run) = failed_run(&db).await;
        let before = states(&store, run.id).await;

        let err = fails(
            &db,
            &["tasks", "clear", "etl", &run.run_id, "transform", "nosuch"],
        )
        .await;
        assert_eq!(
            err.to_string(),
            "run \"manual__2026-02-28T23:00:00Z\" of DAG etl has no task \"nosuch\"; \
             it has: extract, transform, load, audit"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));

        let err = fails(
            &db,
            &["tasks", "clear", "etl", "manual__1999-01-01T00:00:00Z"],
        )
        .await;
        assert_eq!(
            err.to_string(),
            "DAG etl has no run \"manual__1999-01-01T00:00:00Z\"; `dags runs etl` lists them"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));

        // Clearing extract's downstreams would take a running task.
        let out = ok(&db, &["dags", "trigger", "etl", "--date", "2026-03-02"]).await;
        let other_run = store
            .find_run("etl", "manual__2026-03-01T23:00:00Z")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{out}"));
        walk(
            &store,
            other_run.id,
            "extract",
            &[Scheduled, Queued, Running, Success],
        )
        .await;
        walk(
            &store,
            other_run.id,
            "transform",
            &[Scheduled, Queued, Running],
        )
        .await;
        let err = fails(
            &db,
            &[
                "tasks",
                "clear",
                "etl",
                &other_run.run_id,
                "extract",
                "--downstream",
            ],
        )
        .await;
        assert_eq!(
            err.to_string(),
            "cannot clear transform of run \"manual__2026-03-01T23:00:00Z\" of DAG etl: \
             queued or running; they must finish or be cancelled first"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));
        assert_eq!(
            states(&store, other_run.id).await,
            pairs(&[
                ("extract", Success),
                ("transform", Running),
                ("load", Pending),
                ("audit", Pending),
            ])
        );
        assert_eq!(states(&store, run.id).await, before);
    }
}

#[tokio::test]
async fn an_unreachable_database_is_named_and_does_not_panic() {
    let url = "postgres://postgres@127.0.0.1:1/goflow";
    for args in [
        &["db", "migrate"][..],
        &["dags", "trigger", "etl"],
        &["dags", "pause", "etl"],
        &["dags", "runs", "etl"],
        &["tasks", "clear", "etl", "manual__2026-03-01T00:00:00Z"],
    ] {
        let (result, out) = cli(url, args).await;
        let err = result.expect_err("no database answers on port 1");
        assert!(
            err.to_string()
                .contains("postgres://postgres@127.0.0.1:1/goflow"),
            "{args:?}: {err}"
        );
        assert_eq!(err.exit_code(), ExitCode::FAILURE, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
    }
    // A SQLite file in a directory that does not exist: named too.
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}/no/such/dir/goflow.db", dir.path().display());
    let (result, _) = cli(&missing, &["dags", "runs", "etl"]).await;
    let err = result.expect_err("the directory does not exist");
    assert!(err.to_string().contains("/no/such/dir/goflow.db"), "{err}");

    // The commands that do not need the database do not touch it.
    let (result, out) = cli(url, &["dags", "list"]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
    let (result, out) = cli(url, &["dags", "test", "adhoc"]).await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
}

#[test]
fn the_database_url_is_a_global_option() {
    let cli = Cli::try_parse_from([
        "goflow",
        "dags",
        "runs",
        "etl",
        "--database-url",
        "sqlite://x.db",
    ])
    .unwrap();
    assert_eq!(cli.database_url.as_deref(), Some("sqlite://x.db"));
    assert!(
        Cli::try_parse_from(["goflow", "dags", "runs", "etl", "--days", "0"]).is_err(),
        "--days counts days from 1"
    );
    assert!(
        Cli::try_parse_from(["goflow", "dags", "runs", "etl", "--days", "3", "--limit", "5"])
            .is_err(),
        "--days and --limit do not mix"
    );
}
