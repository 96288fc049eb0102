//! `dags backfill` through the CLI: runs every interval of a range with a
//! scheduler of its own, reports progress, and exits by the outcome.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use goflow_core::{
    DagBuilder, Inputs, RunState, RunType, Schedule, TaskContext, TaskError, TaskFuture,
    TaskOptions, TaskOutput, TaskSpec, Tz,
};
use goflow_runtime::cli::{run, Cli, CliError};
use goflow_runtime::Registry;
use goflow_store::testing::databases;

fn ok(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        Ok(TaskOutput {
            value: serde_json::json!(ctx.logical_date().to_rfc3339()),
            follow: None,
        })
    })
}

fn fails_on_the_3rd(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.logical_date().format("%d").to_string() == "03" {
            return Err(TaskError::msg("bad day"));
        }
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

fn registry() -> Registry {
    let daily = |id: &str, run: fn(TaskContext, &Inputs) -> TaskFuture| {
        DagBuilder::new(id)
            .schedule(
                Schedule::parse("0 6 * * *", "Europe/Paris").unwrap(),
                "Europe/Paris".parse::<Tz>().unwrap(),
            )
            .start_date("2026-01-01T00:00:00Z".parse().unwrap())
            .task(TaskSpec {
                id: "t".into(),
                function: "t",
                options: TaskOptions::default(),
                data_upstream: vec![],
                run,
            })
            .build()
            .unwrap()
    };
    let manual = DagBuilder::new("manual")
        .task(TaskSpec {
            id: "t".into(),
            function: "t",
            options: TaskOptions::default(),
            data_upstream: vec![],
            run: ok,
        })
        .build()
        .unwrap();
    Registry::from_dags([daily("daily", ok), daily("shaky", fails_on_the_3rd), manual]).unwrap()
}

async fn cli(url: &str, args: &[&str]) -> (Result<ExitCode, CliError>, String) {
    let cli = Cli::try_parse_from(
        ["goflow", "--database-url", url]
            .iter()
            .copied()
            .chain(args.iter().copied()),
    )
    .unwrap();
    let mut out = Vec::new();
    let result = run(cli, &registry(), &mut out, Utc::now()).await;
    (result, String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_runs_every_interval_of_the_range() {
    for db in databases().await {
        let (result, out) = cli(
            &db.url,
            &[
                "dags",
                "backfill",
                "daily",
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-05",
            ],
        )
        .await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
        assert!(out.contains("5 intervals"), "{out}");
        assert!(out.contains("[5/5]"), "{out}");
        let runs = db.store.list_runs("daily", 100, 0).await.unwrap();
        assert_eq!(runs.len(), 5);
        for r in &runs {
            assert_eq!(
                (r.run_type, r.state),
                (RunType::Backfill, RunState::Success)
            );
        }
        // Again: the runs exist, nothing is created twice.
        let (result, out) = cli(
            &db.url,
            &[
                "dags",
                "backfill",
                "daily",
                "--from",
                "2026-01-02",
                "--to",
                "2026-01-03",
            ],
        )
        .await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
        assert!(out.contains("0 new runs, 2 already there"), "{out}");
        assert_eq!(db.store.list_runs("daily", 100, 0).await.unwrap().len(), 5);
    }
}

/// `--date D` picks the same interval in `dags test`, `dags trigger` and
/// `dags backfill --from D --to D`: the first one of the schedule that
/// starts at or after D in the DAG's zone (06:00 Paris, 05:00 UTC in
/// winter), with one run id format per run type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_means_the_same_interval_in_test_trigger_and_backfill() {
    let interval = |runs: Vec<goflow_store::RunRow>| -> Vec<(String, String, String)> {
        runs.into_iter()
            .map(|r| {
                (
                    r.run_id,
                    r.data_interval.start.to_rfc3339(),
                    r.data_interval.end.to_rfc3339(),
                )
            })
            .collect()
    };
    let at = |run_id: &str| {
        vec![(
            run_id.to_owned(),
            "2026-01-02T05:00:00+00:00".to_owned(),
            "2026-01-03T05:00:00+00:00".to_owned(),
        )]
    };
    for db in databases().await {
        for date in ["2026-01-02", "2026-01-02T06:00", "2026-01-02T05:00:00Z"] {
            let (result, out) = cli(&db.url, &["dags", "test", "daily", "--date", date]).await;
            assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
            assert!(
                out.starts_with(
                    "dag daily  run test__2026-01-02T05:00:00Z  \
                     data interval 2026-01-02T06:00:00+01:00 .. 2026-01-03T06:00:00+01:00\n"
                ),
                "{date}: {out}"
            );
        }
        // Past the day's tick, the next day's interval.
        let (_, out) = cli(
            &db.url,
            &["dags", "test", "daily", "--date", "2026-01-02T07:00"],
        )
        .await;
        assert!(out.contains("run test__2026-01-03T05:00:00Z"), "{out}");

        let (result, out) = cli(
            &db.url,
            &["dags", "trigger", "daily", "--date", "2026-01-02"],
        )
        .await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
        let runs = db.store.list_runs("daily", 100, 0).await.unwrap();
        assert_eq!(interval(runs), at("manual__2026-01-02T05:00:00Z"));

        let backfill = |dag: &'static str| {
            [
                "dags",
                "backfill",
                dag,
                "--from",
                "2026-01-02",
                "--to",
                "2026-01-02",
            ]
        };
        // The manual run holds that logical date already.
        let (result, out) = cli(&db.url, &backfill("daily")).await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
        assert!(out.contains("0 new runs, 1 already there"), "{out}");
        let (result, out) = cli(&db.url, &backfill("shaky")).await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
        let runs = db.store.list_runs("shaky", 100, 0).await.unwrap();
        assert_eq!(interval(runs), at("backfill__2026-01-02T05:00:00Z"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_interval_fails_the_backfill() {
    for db in databases().await {
        let (result, out) = cli(
            &db.url,
            &[
                "dags",
                "backfill",
                "shaky",
                "--from",
                "2026-01-02",
                "--to",
                "2026-01-04",
            ],
        )
        .await;
        assert_eq!(result.unwrap(), ExitCode::FAILURE, "{out}");
        assert!(out.contains("2 runs succeeded, 1 failed"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backfills_are_refused_before_touching_the_database() {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let (result, _) = cli(
        url,
        &[
            "dags",
            "backfill",
            "daily",
            "--from",
            "2026-01-05",
            "--to",
            "2026-01-01",
        ],
    )
    .await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("--to \"2026-01-01\" is before --from"),
        "{err}"
    );
    assert_eq!(err.exit_code(), ExitCode::from(2));
    let (result, _) = cli(
        url,
        &[
            "dags",
            "backfill",
            "manual",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-02",
        ],
    )
    .await;
    assert!(result
        .unwrap_err()
        .to_string()
        .contains("no recurring schedule"));
    let (result, _) = cli(
        url,
        &[
            "dags",
            "backfill",
            "daily",
            "--from",
            "yesterday",
            "--to",
            "2026-01-02",
        ],
    )
    .await;
    assert!(result.unwrap_err().to_string().contains("\"yesterday\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_set_listed_and_deleted() {
    for db in databases().await {
        let (result, out) = cli(
            &db.url,
            &["pools", "set", "db", "3", "--description", "the warehouse"],
        )
        .await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS, "{out}");
        assert_eq!(out.trim(), "pool db has 3 slots");
        let (_, out) = cli(&db.url, &["pools", "list"]).await;
        assert!(
            out.lines()
                .any(|l| l.starts_with("db") && l.contains('3') && l.contains("the warehouse")),
            "{out}"
        );
        let pools = db.store.list_pools().await.unwrap();
        assert_eq!((pools[0].name.as_str(), pools[0].slots), ("db", 3));
        let (result, _) = cli(&db.url, &["pools", "delete", "db"]).await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS);
        let (result, _) = cli(&db.url, &["pools", "delete", "db"]).await;
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::from(2));
        assert!(err.to_string().contains("no pool \"db\""), "{err}");
    }
}
