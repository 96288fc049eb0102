//! `dags trigger` and `dags runs`: creating manual runs and looking at a
//! DAG's recent runs, one by one or as a per-day summary.

use std::io::{self, Write};
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use goflow_core::duration::format as format_duration;
use goflow_core::{DataInterval, RunState, RunType};
use goflow_store::{RunRow, StoreError};
use serde::Serialize;

use super::dags::{in_tz, interval_of_date, parse_conf};
use super::{db, table, CliError, OutputFormat, RunsArgs, TriggerArgs};
use crate::Registry;

/// `dags trigger`: creates a queued manual run, which a running scheduler
/// picks up.
pub(super) async fn trigger(
    registry: &Registry,
    url: &str,
    args: &TriggerArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    // Bad input is refused before the database is touched.
    let dag = registry.get(&args.dag_id)?;
    let conf = parse_conf(args.conf.as_deref())?;
    let data_interval = match &args.date {
        Some(text) => interval_of_date(dag, text)?,
        // The store keeps microseconds: so does the run id.
        None => DataInterval::at(now.trunc_subsecs(6)),
    };
    let (store, dags) = db::open(url, registry, now).await?;
    let version = dags
        .get(dag.id().as_str())
        .ok_or_else(|| StoreError::DagNotFound {
            dag_id: dag.id().to_string(),
        })?
        .version;
    let new = crate::db::new_run(dag, version, RunType::Manual, data_interval, conf);
    let run = store.create_run(&new, now).await?;
    writeln!(
        out,
        "created run {} of DAG {} ({}, logical date {})",
        run.run_id,
        run.dag_id,
        run.state,
        in_tz(dag, run.execution_date())
    )?;
    if dags.get(dag.id().as_str()).is_some_and(|d| d.is_paused) {
        writeln!(
            out,
            "note: DAG {} is paused; `dags unpause {}` to let it run",
            dag.id(),
            dag.id()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One run in `dags runs --output json`.
#[derive(Serialize)]
struct RunJson<'a> {
    run_id: &'a str,
    run_type: RunType,
    state: RunState,
    logical_date: String,
    data_interval_start: String,
    data_interval_end: String,
    start_date: Option<String>,
    end_date: Option<String>,
    duration_seconds: Option<f64>,
    conf: &'a serde_json::Value,
    dag_version: i32,
}

/// `dags runs`: the latest runs of a DAG, or with `--days` how many ran
/// each day and how they ended.
pub(super) async fn list(
    registry: &Registry,
    url: &str,
    args: &RunsArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let dag = registry.get(&args.dag_id)?;
    // Only reads: a read-only database will do.
    let store = crate::db::open_read_only(url).await?;
    if let Some(days) = args.days {
        let summary = crate::calendar::last_days(&store, dag, days, now).await?;
        return print_days(out, args.output, &summary);
    }
    let runs = store
        .list_runs(dag.id().as_str(), i64::from(args.limit), 0)
        .await?;
    match args.output {
        OutputFormat::Table if runs.is_empty() => {
            writeln!(out, "DAG {} has no runs", dag.id())?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|run| {
                    let shown = |t: Option<DateTime<Utc>>| {
                        t.map_or_else(|| "-".to_owned(), |t| in_tz(dag, t))
                    };
                    vec![
                        run.run_id.clone(),
                        run.run_type.as_str().to_owned(),
                        run.state.as_str().to_owned(),
                        in_tz(dag, run.execution_date()),
                        shown(run.start_date),
                        shown(run.end_date),
                        duration(run).map_or_else(|| "-".to_owned(), format_duration),
                    ]
                })
                .collect();
            table::write(
                out,
                &[
                    "RUN ID",
                    "TYPE",
                    "STATE",
                    "LOGICAL DATE",
                    "START",
                    "END",
                    "DURATION",
                ],
                &rows,
            )?;
        }
        OutputFormat::Json => {
            let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            let rows: Vec<RunJson<'_>> = runs
                .iter()
                .map(|run| RunJson {
                    run_id: &run.run_id,
                    run_type: run.run_type,
                    state: run.state,
                    logical_date: rfc3339(run.execution_date()),
                    data_interval_start: rfc3339(run.data_interval.start),
                    data_interval_end: rfc3339(run.data_interval.end),
                    start_date: run.start_date.map(rfc3339),
                    end_date: run.end_date.map(rfc3339),
                    duration_seconds: duration(run).map(|d| d.as_secs_f64()),
                    conf: &run.conf,
                    dag_version: run.dag_version,
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a finished run took.
fn duration(run: &RunRow) -> Option<std::time::Duration> {
    (run.end_date? - run.start_date?).to_std().ok()
}

fn print_days(
    out: &mut dyn Write,
    format: OutputFormat,
    days: &[crate::calendar::Day],
) -> Result<ExitCode, CliError> {
    match format {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = days
                .iter()
                .map(|d| {
                    vec![
                        d.day.clone(),
                        d.runs.to_string(),
                        d.success.to_string(),
                        d.failed.to_string(),
                        d.running.to_string(),
                        d.queued.to_string(),
                    ]
                })
                .collect();
            table::write(
                out,
                &["DAY", "RUNS", "SUCCESS", "FAILED", "RUNNING", "QUEUED"],
                &rows,
            )?;
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, days).map_err(io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
