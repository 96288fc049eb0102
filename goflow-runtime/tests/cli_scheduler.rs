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
