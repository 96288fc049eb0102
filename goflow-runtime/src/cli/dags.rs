//! `dags list` and `dags test`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use goflow_core::duration::format as format_duration;
use goflow_core::schedule::parse_datetime;
use goflow_core::{Dag, DataInterval, RunId, RunState, RunType, Schedule, TaskState};
use serde::Serialize;

use super::{table, CliError, ListArgs, OutputFormat, TestArgs};
use crate::runner::{run_dag, RunEvent, RunParams, RunReport, TaskEvent};
use crate::Registry;

/// One DAG in `dags list --output json`.
#[derive(Serialize)]
struct DagRow<'a> {
    dag_id: &'a str,
    schedule: String,
    next_run: Option<String>,
    tasks: usize,
    tags: &'a [String],
    description: Option<&'a str>,
}

pub(super) fn list(
    registry: &Registry,
    args: &ListArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let next_run = |dag: &Dag| {
        dag.schedule()
            .next_due_after(dag.start_date(), dag.end_date(), now)
    };
    match args.output {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = registry
                .dags()
                .map(|dag| {
                    vec![
                        dag.id().to_string(),
                        dag.schedule().to_string(),
                        next_run(dag).map_or_else(|| "-".to_owned(), |t| in_tz(dag, t)),
                        dag.tasks().len().to_string(),
                        dag.tags().join(","),
                    ]
                })
                .collect();
            table::write(
                out,
                &["DAG", "SCHEDULE", "NEXT RUN", "TASKS", "TAGS"],
                &rows,
            )?;
        }
        OutputFormat::Json => {
            let rows: Vec<DagRow<'_>> = registry
                .dags()
                .map(|dag| DagRow {
                    dag_id: dag.id().as_str(),
                    schedule: dag.schedule().to_string(),
                    next_run: next_run(dag).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                    tasks: dag.tasks().len(),
                    tags: dag.tags(),
                    description: dag.description(),
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn test(
    registry: &Registry,
    args: &TestArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let dag = Arc::clone(registry.get(&args.dag_id)?);
    let conf = parse_conf(args.conf.as_deref())?;
    let data_interval = data_interval(&dag, args.date.as_deref(), now)?;
    let run_id = RunId::new(crate::db::run_id(RunType::Test, data_interval.start))
        .map_err(CliError::InvalidDate)?;
    let params = RunParams {
        run_id,
        run_type: RunType::Test,
        data_interval,
        conf,
    };
    let width = dag
        .tasks()
        .iter()
        .map(|t| t.id.as_str().len())
        .max()
        .unwrap_or(0);
    // The observer cannot return an error: keep the first and stop writing.
    let mut write_error = None;
    let report = run_dag(Arc::clone(&dag), params, &mut |event| {
        if write_error.is_none() {
            write_error = print_event(out, &dag, event, width).err();
        }
    })
    .await?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    print_summary(out, &report)?;
    Ok(match report.state {
        RunState::Success => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Reads `--conf`: a JSON object, `{}` when absent.
pub(super) fn parse_conf(conf: Option<&str>) -> Result<serde_json::Value, CliError> {
    let Some(text) = conf else {
        return Ok(serde_json::Value::Object(Default::default()));
    };
    let problem = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => return Ok(value),
        Ok(serde_json::Value::Array(_)) => format!("got an array: {text}"),
        Ok(serde_json::Value::String(_)) => format!("got a string: {text}"),
        Ok(serde_json::Value::Number(_)) => format!("got a number: {text}"),
        Ok(serde_json::Value::Bool(_)) => format!("got a boolean: {text}"),
        Ok(serde_json::Value::Null) => "got null".to_owned(),
        Err(e) => format!("but {text:?} is not valid JSON: {e}"),
    };
    Err(CliError::InvalidConf { problem })
}

/// The data interval of the run: the one containing `--date`, else the
/// latest complete one, else (manual DAGs, or no interval has ended yet)
/// the instant `now`.
/// The data interval `dags test` runs: the one `--date` names (see
/// [`interval_of_date`]), or the latest complete one.
fn data_interval(
    dag: &Dag,
    date: Option<&str>,
    now: DateTime<Utc>,
) -> Result<DataInterval, CliError> {
    match date {
        Some(text) => interval_of_date(dag, text),
        None => Ok(dag
            .schedule()
            .latest_complete_interval(dag.start_date(), now)
            .unwrap_or_else(|| DataInterval::at(now))),
    }
}

/// What `--date` means in `dags test`, `dags trigger` and `dags backfill
/// --from`: read in the DAG's time zone, it picks the first interval of
/// the schedule that starts at or after it, whose start is the run's
/// logical date. A date on a tick is that tick's interval, and a bare
/// date (`2026-05-02`) is the first interval of that day even when the
/// schedule ticks at 06:00, as Airflow users read a date. DAGs without a
/// schedule run at the instant itself.
pub(super) fn interval_of_date(dag: &Dag, text: &str) -> Result<DataInterval, CliError> {
    let date = parse_datetime(text, dag.tz()).map_err(CliError::InvalidDate)?;
    first_interval_from(dag, date).ok_or_else(|| CliError::NoInterval {
        date: text.to_owned(),
        dag: dag.id().to_string(),
        schedule: dag.schedule().to_string(),
    })
}

/// The first interval of `dag`'s schedule that starts at or after `date`
/// (the instant itself for unscheduled DAGs).
pub(super) fn first_interval_from(dag: &Dag, date: DateTime<Utc>) -> Option<DataInterval> {
    let schedule = dag.schedule();
    if matches!(schedule, Schedule::Manual | Schedule::Once) {
        return Some(DataInterval::at(date));
    }
    let start = dag.start_date();
    let containing = schedule.interval_for(start, date)?;
    if containing.start >= date {
        return Some(containing);
    }
    schedule.next_interval(start, Some(containing.start))
}

/// An instant in the DAG's time zone, as RFC 3339.
pub(super) fn in_tz(dag: &Dag, t: DateTime<Utc>) -> String {
    t.with_timezone(&dag.tz())
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn print_event(out: &mut dyn Write, dag: &Dag, event: &RunEvent, width: usize) -> io::Result<()> {
    match event {
        RunEvent::RunStarted {
            dag_id,
            run_id,
            data_interval,
            ..
        } => writeln!(
            out,
            "dag {dag_id}  run {run_id}  data interval {} .. {}\n",
            in_tz(dag, data_interval.start),
            in_tz(dag, data_interval.end)
        ),
        // In-process, a task is queued and started at the same instant:
        // the `queued` step would only double the lines.
        RunEvent::Task(e) if e.to == TaskState::Queued => Ok(()),
        RunEvent::Task(e) => {
            let time = e.at.with_timezone(&Local).format("%H:%M:%S%.3f");
            // Padding needs `&str`: the ids' and states' `Display` ignore it.
            let (task, state) = (e.task_id.as_str(), e.to.as_str());
            let line = format!("{time}  {task:<width$}  {state:<15}  {}", details(e));
            writeln!(out, "{}", line.trim_end())
        }
        // The summary follows the run.
        RunEvent::RunFinished { .. } => Ok(()),
    }
}

/// `try 1/3  1.20s  retry in 30s: connection refused`
fn details(e: &TaskEvent) -> String {
    let mut parts = Vec::new();
    if matches!(
        e.to,
        TaskState::Running | TaskState::UpForRetry | TaskState::Failed
    ) {
        parts.push(format!("try {}/{}", e.try_number, e.max_tries));
    }
    if let Some(d) = e.duration {
        parts.push(format_duration(d));
    }
    if let Some(d) = e.retry_delay {
        parts.push(format!("retry in {}", format_duration(d)));
    }
    let mut text = parts.join("  ");
    if let Some(error) = &e.error {
        text.push_str(": ");
        text.push_str(error);
    }
    text
}

fn print_summary(out: &mut dyn Write, report: &RunReport) -> io::Result<()> {
    let rows: Vec<Vec<String>> = report
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.to_string(),
                t.state.to_string(),
                t.tries.to_string(),
                if t.tries == 0 {
                    "-".to_owned()
                } else {
                    format_duration(t.duration)
                },
            ]
        })
        .collect();
    writeln!(out)?;
    table::write(out, &["TASK", "STATE", "TRIES", "DURATION"], &rows)?;
    writeln!(
        out,
        "\nrun {} {} in {}",
        report.run_id,
        report.state,
        format_duration(report.duration)
    )
}
