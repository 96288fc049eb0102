//! `db migrate` and `db clean`, and opening the database for the commands
//! that need it.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use goflow_store::{CleanOptions, CleanReport, DagRow, Store};

use super::{table, CleanArgs, CliError};
use crate::Registry;

/// `db migrate`: applies the migrations the database lacks and says which.
pub(super) async fn migrate(url: &str, out: &mut dyn Write) -> Result<ExitCode, CliError> {
    let store = Store::connect(url).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        writeln!(out, "database {} is up to date", store.url())?;
    } else {
        writeln!(
            out,
            "applied {} migration{} to {}:",
            applied.len(),
            if applied.len() == 1 { "" } else { "s" },
            store.url()
        )?;
        for version in &applied {
            writeln!(out, "  {version}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `db clean`: deletes (or with `--dry-run` counts) the finished runs that
/// ended before `--before`, batch by batch, then prints the counts by DAG.
pub(super) async fn clean(
    url: &str,
    args: &CleanArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    // Bad input is refused before the database is touched.
    let before = parse_before(&args.before)?;
    let store = if args.dry_run {
        crate::db::open_read_only(url).await?
    } else {
        crate::db::open(url).await?
    };
    let options = CleanOptions {
        before,
        dag_id: args.dag_id.clone(),
        dry_run: args.dry_run,
        batch_size: args.batch_size,
    };
    let which = match &args.dag_id {
        Some(dag) => format!("DAG {dag}"),
        None => "every DAG".to_owned(),
    };
    writeln!(
        out,
        "{} finished runs of {which} that ended before {} in {}, {} run{} per batch{}",
        if args.dry_run { "counting" } else { "deleting" },
        before.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        store.url(),
        args.batch_size,
        if args.batch_size == 1 { "" } else { "s" },
        if args.dry_run {
            " (dry run: nothing is deleted)"
        } else {
            ""
        }
    )?;
    out.flush()?;
    // The progress callback cannot fail: keep the first write error.
    let mut write_error = None;
    let report = store
        .clean(&options, |so_far| {
            if write_error.is_none() {
                write_error = print_progress(out, so_far).err();
            }
        })
        .await?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    print_report(out, &report)?;
    Ok(ExitCode::SUCCESS)
}

fn print_progress(out: &mut dyn Write, so_far: &CleanReport) -> std::io::Result<()> {
    let total = so_far.total();
    writeln!(
        out,
        "  batch {}: {} run{} so far",
        so_far.batches,
        total.runs,
        if total.runs == 1 { "" } else { "s" }
    )?;
    out.flush()
}

fn print_report(out: &mut dyn Write, report: &CleanReport) -> std::io::Result<()> {
    let total = report.total();
    if total.runs == 0 {
        return writeln!(out, "no finished run to delete");
    }
    let row = |name: &str, c: &goflow_store::CleanCounts| {
        vec![
            name.to_owned(),
            c.runs.to_string(),
            c.task_instances.to_string(),
            c.task_tries.to_string(),
            c.task_outputs.to_string(),
            c.task_logs.to_string(),
            c.alerts.to_string(),
        ]
    };
    let mut rows: Vec<Vec<String>> = report.dags.iter().map(|(d, c)| row(d, c)).collect();
    if report.dags.len() > 1 {
        rows.push(row("(total)", &total));
    }
    table::write(
        out,
        &[
            "DAG",
            "RUNS",
            "TASK INSTANCES",
            "TRIES",
            "OUTPUTS",
            "LOG LINES",
            "ALERTS",
        ],
        &rows,
    )?;
    if report.dry_run {
        writeln!(
            out,
            "dry run: would delete {} run{}; nothing was deleted",
            total.runs,
            if total.runs == 1 { "" } else { "s" }
        )
    } else {
        writeln!(
            out,
            "deleted {} run{} in {} batch{}",
            total.runs,
            if total.runs == 1 { "" } else { "s" },
            report.batches,
            if report.batches == 1 { "" } else { "es" }
        )
    }
}

/// Reads `--before`: `YYYY-MM-DD` (midnight UTC) or RFC 3339, from 1970 to
/// the year 9999.
pub(super) fn parse_before(input: &str) -> Result<DateTime<Utc>, CliError> {
    let text = input.trim();
    let invalid = |reason: &str| CliError::InvalidBefore {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let at = if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0)
            .ok_or_else(|| invalid("not a day"))?
            .and_utc()
    } else {
        DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                invalid(
                    "expected a date such as 2026-01-01 (midnight UTC) or RFC 3339 such as \
                     2026-01-01T06:00:00Z",
                )
            })?
            .with_timezone(&Utc)
    };
    if at.year() < 1970 {
        return Err(invalid("goflow keeps no run from before 1970"));
    }
    if at.year() > 9999 {
        return Err(invalid("expected a date no later than the year 9999"));
    }
    Ok(at)
}

/// Opens the database at `url` (connecting and migrating) and syncs the
/// registry's DAGs into it; returns the store and the DAG rows by id.
pub(super) async fn open(
    url: &str,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<(Store, HashMap<String, DagRow>), CliError> {
    let store = crate::db::open(url).await?;
    let dags = crate::db::sync_registry(&store, registry, now).await?;
    Ok((store, dags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use goflow_core::{DagBuilder, DataInterval, RunState, RunType, TaskOutput, TaskSpec};

    fn noop(_: goflow_core::TaskContext, _: &goflow_core::Inputs) -> goflow_core::TaskFuture {
        Box::pin(async {
            Ok(TaskOutput {
                value: serde_json::json!(null),
                follow: None,
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_cleans_at_start_until_stopped() {
        let dag = DagBuilder::new("old")
            .task(TaskSpec {
                id: "a".into(),
                function: "noop",
                options: Default::default(),
                data_upstream: Vec::new(),
                run: noop,
            })
            .build()
            .unwrap();
        let registry = Registry::from_dags([dag]).unwrap();
        let store = crate::db::open("sqlite::memory:").await.unwrap();
        let now = Utc::now();
        let rows = crate::db::sync_registry(&store, &registry, now)
            .await
            .unwrap();
        let dag = registry.get("old").unwrap();
        let mut runs = Vec::new();
        for (days_ago, finish) in [(10, true), (3, true), (11, false)] {
            let at = now - chrono::Duration::days(days_ago);
            let new = crate::db::new_run(
                dag,
                rows["old"].version,
                RunType::Manual,
                DataInterval::at(at),
                serde_json::json!({}),
            );
            let run = store.create_run(&new, at).await.unwrap();
            if finish {
                store
                    .set_run_state(run.id, RunState::Queued, RunState::Running, at)
                    .await
                    .unwrap();
                store
                    .set_run_state(run.id, RunState::Running, RunState::Success, at)
                    .await
                    .unwrap();
            }
            runs.push(run.id);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::db::clean_periodically(
            store.clone(),
            std::time::Duration::from_secs(7 * 86_400),
            async {
                let _ = stopped.await;
            },
        ));
        // The first clean runs at once: the run finished 10 days ago goes.
        let mut gone = false;
        for _ in 0..250 {
            if store.get_run(runs[0]).await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(gone, "the old finished run is cleaned at start");
        // Finished 3 days ago, or never finished: kept.
        assert!(store.get_run(runs[1]).await.unwrap().is_some());
        assert!(store.get_run(runs[2]).await.unwrap().is_some());
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("stops when told")
            .unwrap();
    }

    #[test]
    fn retention_is_a_duration_of_a_minute_or_more() {
        use clap::Parser;
        let parse = |v: &str| {
            crate::cli::Cli::try_parse_from(["goflow", "scheduler", "--retention", v])
                .map(|cli| match cli.command {
                    crate::cli::Command::Scheduler(args) => args.retention,
                    _ => unreachable!("a scheduler command"),
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse("90d").unwrap(),
            Some(std::time::Duration::from_secs(90 * 86_400))
        );
        assert!(parse("30s").unwrap_err().contains("too short"));
        assert!(parse("soon").unwrap_err().contains("is not a duration"));
    }

    #[test]
    fn before_takes_days_and_rfc3339() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            parse_before("2026-01-02").unwrap(),
            utc("2026-01-02T00:00:00Z")
        );
        assert_eq!(
            parse_before(" 2026-01-02T06:30:00+01:00 ").unwrap(),
            utc("2026-01-02T05:30:00Z")
        );
        assert_eq!(
            parse_before("1970-01-01").unwrap(),
            DateTime::<Utc>::UNIX_EPOCH
        );
    }

    #[test]
    fn before_out_of_range_or_garbage_is_named() {
        for (input, reason) in [
            ("1969-12-31", "before 1970"),
            ("1970-01-01T00:30:00+01:00", "before 1970"),
            ("+10000-01-01", "no later than the year 9999"),
            ("9999-12-31T23:00:00-02:00", "no later than the year 9999"),
            ("yesterday", "expected a date such as 2026-01-01"),
            ("2026-02-30", "expected a date such as 2026-01-01"),
        ] {
            let err = parse_before(input).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid --before {input:?}: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{input}: {text}");
            assert_eq!(err.exit_code(), ExitCode::from(2));
        }
    }
}
