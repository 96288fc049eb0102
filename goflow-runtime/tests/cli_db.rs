//! The CLI commands that work on the database, driven through `cli::run`
//! on SQLite (a file in a temporary directory) and, when
//! `GOFLOW_TEST_DATABASE_URL` names a PostgreSQL server, on PostgreSQL too,
//! each test in a fresh schema dropped at the end.
//!
//! A few tests run the commands in a child process, as a goflow binary
//! would (see `support`): this test binary re-executed as `<test binary>
//! --exact goflow_entry --nocapture -- <goflow args>`.

mod support;

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
    Registry::from_dags(dags()).unwrap()
}

/// The DAGs of [`registry`].
fn dags() -> Vec<goflow_core::Dag> {
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
    vec![etl, adhoc]
}

/// 2026-03-10T12:00:00Z (13:00 in Paris).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// Runs `goflow --database-url <url> <args>`; returns the outcome and the
/// output.
async fn cli(url: &str, args: &[&str]) -> (Result<ExitCode, CliError>, String) {
    cli_with(&registry(), url, args).await
}

/// [`cli`] with the DAGs of `registry`.
async fn cli_with(
    registry: &Registry,
    url: &str,
    args: &[&str],
) -> (Result<ExitCode, CliError>, String) {
    let argv = ["goflow", "--database-url", url]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    // A command that should have been refused must not run forever.
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run(cli, registry, &mut out, now()),
    )
    .await
    .unwrap_or_else(|_| panic!("{args:?} still running after 60s"));
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
    assert!(out.contains("manual__2026-03-01T05:00:00Z"), "{out}");
    let store = db.store.clone();
    let run = store
        .find_run("etl", "manual__2026-03-01T05:00:00Z")
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
        // Sync the DAGs (`dags runs` only reads): create runs through the
        // store as a scheduler would.
        goflow_runtime::db::sync_registry(&db.store, &registry(), now())
            .await
            .unwrap();
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
            "cleared 1 task instance of run manual__2026-03-01T05:00:00Z of DAG etl: transform\n\
             run manual__2026-03-01T05:00:00Z is queued again\n"
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
            out.starts_with("cleared 3 task instances of run manual__2026-03-01T05:00:00Z of DAG etl: extract, transform, load\n"),
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
async fn clearing_unknown_tasks_is_refused_and_running_ones_are_stopped() {
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
            "run \"manual__2026-03-01T05:00:00Z\" of DAG etl has no task \"nosuch\"; \
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

        // Clearing extract's downstreams takes a running task: it is asked
        // to stop (its scheduler clears it once stopped), the rest is
        // cleared at once.
        let out = ok(&db, &["dags", "trigger", "etl", "--date", "2026-03-02"]).await;
        let other_run = store
            .find_run("etl", "manual__2026-03-02T05:00:00Z")
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
        let out = ok(
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
        assert!(out.contains("stopping transform (running)"), "{out}");
        let transform = store
            .task_instance(other_run.id, "transform")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            transform.state, Running,
            "stopped by its scheduler, not here"
        );
        let stop = transform.stop_requested.expect("a stop is requested");
        assert_eq!(stop.to, Pending);
        assert!(stop.reason.contains("CLI user"), "{}", stop.reason);
        assert_eq!(
            states(&store, other_run.id).await,
            pairs(&[
                ("extract", Pending),
                ("transform", Running),
                ("load", Pending),
                ("audit", Pending),
            ])
        );

        // `tasks kill` asks for running tries only, naming what is not.
        let err = fails(&db, &["tasks", "kill", "etl", &other_run.run_id, "load"]).await;
        assert_eq!(
            err.to_string(),
            "cannot stop load of run \"manual__2026-03-02T05:00:00Z\" of DAG etl: \
             not queued or running"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));
        let out = ok(
            &db,
            &[
                "tasks",
                "kill",
                "etl",
                &other_run.run_id,
                "transform",
                "--state",
                "success",
            ],
        )
        .await;
        assert!(out.contains("stopping transform"), "{out}");
        let stop = store
            .task_instance(other_run.id, "transform")
            .await
            .unwrap()
            .unwrap()
            .stop_requested
            .unwrap();
        assert_eq!(stop.to, Success);

        // `dags stop` covers every unfinished task; a finished run is refused.
        let out = ok(&db, &["dags", "stop", "etl", &other_run.run_id]).await;
        assert!(
            out.contains("stopping run manual__2026-03-02T05:00:00Z"),
            "{out}"
        );
        let requested: Vec<(String, Option<TaskState>)> = store
            .task_instances(other_run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.stop_requested.map(|s| s.to)))
            .collect();
        assert_eq!(
            requested,
            [
                ("extract".to_owned(), Some(TaskState::Skipped)),
                ("transform".to_owned(), Some(Failed)),
                ("load".to_owned(), Some(TaskState::Skipped)),
                ("audit".to_owned(), Some(TaskState::Skipped)),
            ]
        );
        let err = fails(&db, &["dags", "stop", "etl", &run.run_id]).await;
        assert_eq!(
            err.to_string(),
            "run \"manual__2026-03-01T05:00:00Z\" of DAG etl is failed already: only a queued \
             or running run can be stopped"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2));
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

// ---------------------------------------------------------------------------
// Operations you can trust: schema guard, read-only reads, retention, pools
// ---------------------------------------------------------------------------

/// [`registry`] plus `pooled`, whose task `load` names the pool `nope`.
fn pooled_registry() -> Registry {
    let mut dags = dags();
    let mut load = spec("load", &["extract"]);
    load.options.pool = Some("nope".into());
    dags.push(
        DagBuilder::new("pooled")
            .schedule(Schedule::parse("0 6 * * *", "UTC").unwrap(), Tz::UTC)
            .start_date(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
            .task(spec("extract", &[]))
            .task(load)
            .build()
            .unwrap(),
    );
    Registry::from_dags(dags).unwrap()
}

/// The `main` of this test binary re-run as a goflow binary.
#[test]
fn goflow_entry() {
    support::act_as_goflow_binary(pooled_registry);
}

/// Whether this process runs as root, whom file modes do not stop.
#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `goflow --database-url <url> <args>` in a child process (as the
/// user `nobody` when `unprivileged` and this process is root, so that
/// file modes apply); returns its exit code, stdout and stderr.
async fn goflow_process(url: &str, args: &[&str], unprivileged: bool) -> (i32, String, String) {
    let exe = std::env::current_exe().unwrap();
    let mut command = if unprivileged && cfg!(unix) && is_root() {
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        tokio::process::Command::new(&exe)
    };
    command
        .args(support::entry_args("goflow_entry"))
        .args(["--database-url", url])
        .args(args)
        .env(support::WORKER_ENV, "1")
        .env("RUST_LOG", "warn")
        .env_remove("GOFLOW_DATABASE_URL")
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} still running after 60s"))
        .unwrap_or_else(|e| panic!("{args:?}: cannot start: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A version no build of goflow has: as if a newer goflow had migrated.
const NEWER: &str = "20991231000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_goflow_is_refused_by_every_command() {
    for db in empty_databases().await {
        let b = db.backend();
        ok(&db, &["db", "migrate"]).await;
        db.execute_raw(&format!(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('{NEWER}')"
        ));
        for args in [
            &["db", "migrate"][..],
            &["db", "clean", "--before", "2026-01-01"],
            &["db", "clean", "--before", "2026-01-01", "--dry-run"],
            &["dags", "trigger", "etl"],
            &["dags", "pause", "etl"],
            &["dags", "unpause", "etl"],
            &["dags", "runs", "etl"],
            &["dags", "runs", "etl", "--days", "3"],
            &[
                "dags",
                "backfill",
                "etl",
                "--from",
                "2026-03-01",
                "--to",
                "2026-03-02",
            ],
            &["tasks", "clear", "etl", "manual__2026-03-01T00:00:00Z"],
            &["pools", "list"],
            &["pools", "set", "db", "3"],
            &["pools", "delete", "db"],
            &["scheduler", "--bind", "127.0.0.1:0"],
        ] {
            let err = fails(&db, args).await;
            let text = err.to_string();
            assert!(
                text.contains("migrated by a newer goflow") && text.contains(NEWER),
                "{b} {args:?}: {text}"
            );
            assert_eq!(err.exit_code(), ExitCode::from(2), "{b} {args:?}: {text}");
        }
        // Nothing was written: no DAG synced, no pool, no run.
        assert!(db.store.list_dags().await.unwrap().is_empty(), "{b}");
        assert!(db.store.list_pools().await.unwrap().is_empty(), "{b}");

        // A real process exits 2 and says why on stderr.
        for args in [
            &["db", "migrate"][..],
            &["scheduler", "--bind", "127.0.0.1:0"],
        ] {
            let (code, _, stderr) = goflow_process(&db.url, args, false).await;
            assert_eq!(code, 2, "{b} {args:?}: {stderr}");
            assert!(
                stderr.contains("migrated by a newer goflow") && stderr.contains(NEWER),
                "{b} {args:?}: {stderr}"
            );
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_read_a_read_only_sqlite_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("goflow.db");
    let url = format!("sqlite://{}", file.display());
    {
        let db_url = url.clone();
        let (result, out) = cli(&db_url, &["dags", "trigger", "etl", "--date", "2026-03-01"]).await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
    }
    // Every connection is closed: the WAL files are gone.
    for _ in 0..100 {
        if !dir.path().join("goflow.db-wal").exists() && !dir.path().join("goflow.db-shm").exists()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = std::fs::read(&file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();

    // A process that cannot write the file or the directory.
    let runs = goflow_process(&url, &["dags", "runs", "etl", "--output", "json"], true).await;
    let pools = goflow_process(&url, &["pools", "list"], true).await;
    let dry = goflow_process(
        &url,
        &["db", "clean", "--before", "2026-04-01", "--dry-run"],
        true,
    )
    .await;
    // And this one (which, as root, could).
    let (in_process, out) = cli(&url, &["dags", "runs", "etl", "--output", "json"]).await;

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(runs.0, 0, "dags runs: {}{}", runs.1, runs.2);
    assert!(
        runs.1
            .contains("\"run_id\": \"manual__2026-03-01T05:00:00Z\""),
        "{}",
        runs.1
    );
    assert_eq!(pools.0, 0, "pools list: {}{}", pools.1, pools.2);
    assert!(pools.1.contains("POOL"), "{}", pools.1);
    assert_eq!(dry.0, 0, "db clean --dry-run: {}{}", dry.1, dry.2);
    assert!(dry.1.contains("no finished run to delete"), "{}", dry.1);
    assert_eq!(in_process.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(out.contains("manual__2026-03-01T05:00:00Z"), "{out}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "reading changed the database file"
    );
}

/// Finishes run `run_id` of `dag` (queued) in `state` at [`now`].
async fn finish(store: &Store, dag: &str, run_id: &str, state: RunState) -> i64 {
    let run = store.find_run(dag, run_id).await.unwrap().unwrap();
    assert!(store
        .set_run_state(run.id, RunState::Queued, RunState::Running, now())
        .await
        .unwrap());
    assert!(store
        .set_run_state(run.id, RunState::Running, state, now())
        .await
        .unwrap());
    run.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_clean_deletes_old_finished_runs_and_says_what() {
    for db in empty_databases().await {
        let b = db.backend();
        // etl: one failed run with its tasks. adhoc: three successful
        // runs and a queued one. All finished at now() (2026-03-10 12:00Z).
        let (store, etl_run) = failed_run(&db).await;
        for day in ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"] {
            ok(&db, &["dags", "trigger", "adhoc", "--date", day]).await;
        }
        let adhoc = runs_json(&db, "adhoc", &[]).await;
        let ids: Vec<&str> = adhoc
            .iter()
            .map(|r| r["run_id"].as_str().unwrap())
            .collect();
        for run_id in &ids[1..] {
            finish(&store, "adhoc", run_id, RunState::Success).await;
        }
        let queued = ids[0].to_owned(); // the latest logical date

        // Ended after the date: nothing to delete.
        let out = ok(&db, &["db", "clean", "--before", "2026-03-10"]).await;
        assert!(out.contains("no finished run to delete"), "{b}: {out}");

        // A dry run counts, and deletes nothing.
        let out = ok(
            &db,
            &[
                "db",
                "clean",
                "--before",
                "2026-03-11",
                "--dry-run",
                "--batch-size",
                "2",
            ],
        )
        .await;
        assert!(out.contains("(dry run: nothing is deleted)"), "{b}: {out}");
        assert!(out.contains("batch 1: 2 runs so far"), "{b}: {out}");
        assert!(out.contains("batch 2: 4 runs so far"), "{b}: {out}");
        assert!(
            out.contains("dry run: would delete 4 runs; nothing was deleted"),
            "{b}: {out}"
        );
        let row = |dag: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("{dag} ")))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_else(|| panic!("{b}: no row for {dag}: {out}"))
        };
        // DAG, runs, task instances, tries, outputs, log lines, alerts.
        assert_eq!(row("adhoc")[..3], ["adhoc", "3", "3"], "{b}: {out}");
        assert_eq!(row("etl")[..3], ["etl", "1", "4"], "{b}: {out}");
        assert_eq!(runs_json(&db, "adhoc", &[]).await.len(), 4, "{b}");
        assert_eq!(runs_json(&db, "etl", &[]).await.len(), 1, "{b}");

        // One DAG, one run per batch.
        let out = ok(
            &db,
            &[
                "db",
                "clean",
                "--before",
                "2026-03-11",
                "--dag",
                "etl",
                "--batch-size",
                "1",
            ],
        )
        .await;
        assert!(out.contains("batch 1: 1 run so far"), "{b}: {out}");
        assert!(out.contains("deleted 1 run in 1 batch\n"), "{b}: {out}");
        assert!(runs_json(&db, "etl", &[]).await.is_empty(), "{b}");
        assert!(
            store.task_instances(etl_run.id).await.unwrap().is_empty(),
            "{b}"
        );
        assert_eq!(runs_json(&db, "adhoc", &[]).await.len(), 4, "{b}");

        // Every DAG: the queued run stays.
        let out = ok(
            &db,
            &["db", "clean", "--before", "2026-03-11T00:00:00+01:00"],
        )
        .await;
        assert!(out.contains("deleted 3 runs in 1 batch\n"), "{b}: {out}");
        let left = runs_json(&db, "adhoc", &[]).await;
        assert_eq!(left.len(), 1, "{b}");
        assert_eq!(left[0]["run_id"], queued.as_str(), "{b}");
        assert_eq!(left[0]["state"], "queued", "{b}");
    }
}

#[tokio::test]
async fn db_clean_refuses_bad_dates_before_touching_the_database() {
    let url = "postgres://postgres@127.0.0.1:1/goflow";
    for (date, reason) in [
        ("1969-12-31", "before 1970"),
        ("+10000-01-01", "9999"),
        ("last week", "expected a date such as 2026-01-01"),
    ] {
        let (result, out) = cli(url, &["db", "clean", "--before", date]).await;
        let err = result.expect_err(date);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("invalid --before {date:?}: ")) && text.contains(reason),
            "{text}"
        );
        assert_eq!(err.exit_code(), ExitCode::from(2), "{text}");
        assert!(out.is_empty(), "{out}");
    }
    assert!(
        Cli::try_parse_from(["goflow", "db", "clean"]).is_err(),
        "--before is required"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_in_a_pool_that_does_not_exist_stops_the_scheduler_from_starting() {
    let message = "task load of DAG pooled uses pool \"nope\", which does not exist; \
                   create it with `pools set nope <slots>`";
    for db in empty_databases().await {
        let b = db.backend();
        let registry = pooled_registry();
        for args in [
            &["scheduler", "--bind", "127.0.0.1:0"][..],
            &[
                "dags",
                "backfill",
                "pooled",
                "--from",
                "2026-03-01",
                "--to",
                "2026-03-01",
            ],
        ] {
            let (result, out) = cli_with(&registry, &db.url, args).await;
            let err = result.expect_err("an unknown pool is refused");
            assert_eq!(err.to_string(), message, "{b} {args:?}: {out}");
            assert_eq!(err.exit_code(), ExitCode::from(2), "{b} {args:?}");
        }
        // A real process exits 2 and says why.
        let (code, _, stderr) =
            goflow_process(&db.url, &["scheduler", "--bind", "127.0.0.1:0"], false).await;
        assert_eq!(code, 2, "{b}: {stderr}");
        assert!(stderr.contains(message), "{b}: {stderr}");

        // Once the pool exists, nothing is missing.
        let (result, _) = cli_with(&registry, &db.url, &["pools", "set", "nope", "2"]).await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{b}");
        let missing = goflow_runtime::db::missing_pools(&db.store, &registry, None)
            .await
            .unwrap();
        assert!(missing.is_empty(), "{b}: {missing:?}");
    }
}
