//! `dags list` and `dags test`.
//!
//! `dags test` runs one run through the scheduler's own path
//! ([`run_test`]): the same [`Scheduler`], executors and store code as
//! `scheduler`, in a private in-memory store, so a test run behaves as a
//! scheduled one and its output is what the scheduler records.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, SecondsFormat, Utc};
use goflow_core::duration::format as format_duration;
use goflow_core::schedule::parse_datetime;
use goflow_core::{Dag, DataInterval, ExecutorKind, RunId, RunState, RunType, Schedule, TaskState};
use serde::Serialize;
use tokio::sync::oneshot;

use super::{table, CliError, ListArgs, OutputFormat, TestArgs};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerError, SchedulerEvent, TaskChanged};
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
    url: &str,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let dag = Arc::clone(registry.get(&args.dag_id)?);
    let conf = parse_conf(args.conf.as_deref())?;
    let data_interval = data_interval(&dag, args.date.as_deref(), now)?;
    let run_id = RunId::new(crate::db::run_id(RunType::Test, data_interval.start))
        .map_err(CliError::InvalidDate)?;
    // Without SQLite there is no private store: the run goes to the
    // database of `--database-url`.
    let database_url = (!cfg!(feature = "sqlite")).then(|| url.to_owned());
    let test = TestRun {
        dag_id: dag.id().to_string(),
        data_interval,
        conf,
        executor: args.executor,
        declared_executors: args.declared_executors,
        database_url,
    };
    writeln!(
        out,
        "dag {}  run {run_id}  data interval {} .. {}",
        dag.id(),
        in_tz(&dag, data_interval.start),
        in_tz(&dag, data_interval.end)
    )?;
    if test.database_url.is_some() {
        writeln!(
            out,
            "(built without the sqlite feature: the run is stored in the --database-url database)"
        )?;
    }
    writeln!(out)?;
    let width = dag
        .tasks()
        .iter()
        .map(|t| t.id.as_str().len())
        .max()
        .unwrap_or(0);
    // The observer cannot return an error: keep the first and stop writing.
    let mut write_error = None;
    let report = run_test(registry, test, &mut |event| {
        if write_error.is_none() {
            write_error = print_event(out, event, width).err();
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

/// The store of a test run when none is named: SQLite in memory, private
/// to the run and gone with it.
const PRIVATE_STORE: &str = "sqlite::memory:";

/// The scheduler id of a test run in its private store.
const PRIVATE_SCHEDULER_ID: &str = "dags-test";

/// One run of one DAG as `dags test` runs it, without the command line
/// (see [`run_test`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TestRun {
    /// The DAG's id.
    pub dag_id: String,
    /// The data interval; its start is the run's logical date.
    pub data_interval: DataInterval,
    /// The run's configuration, a JSON object.
    pub conf: serde_json::Value,
    /// The executor every task runs on, whatever it names: `in_process`
    /// or `local_process` (`kubernetes` is not started by a test run).
    pub executor: ExecutorKind,
    /// Run each task on the executor it names instead (`executor` being
    /// that of tasks naming none).
    pub declared_executors: bool,
    /// The database the run is stored in: `None` for a private SQLite
    /// database in memory (the `sqlite` feature), gone once the run ends.
    /// A database named here keeps the run, and must not have a run of the
    /// DAG for the same logical date. There, as with `dags backfill`, the
    /// test run's scheduler also runs the DAG's runs no live scheduler
    /// owns, and a live scheduler may take the test run (its end is then
    /// read from the store, without its tasks' lines).
    pub database_url: Option<String>,
}

impl TestRun {
    /// A run of `dag_id` over `data_interval`, with an empty conf, on the
    /// in-process executor, in a private in-memory store.
    pub fn new(dag_id: impl Into<String>, data_interval: DataInterval) -> Self {
        Self {
            dag_id: dag_id.into(),
            data_interval,
            conf: serde_json::Value::Object(Default::default()),
            executor: ExecutorKind::InProcess,
            declared_executors: false,
            database_url: None,
        }
    }
}

/// How a test run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TestReport {
    /// The run's id.
    pub run_id: String,
    /// `success` or `failed`.
    pub state: RunState,
    /// From the run's creation to its end.
    pub duration: Duration,
    /// One row per task, in the DAG's declaration order.
    pub tasks: Vec<TaskReport>,
}

impl TestReport {
    /// The row of task `id`.
    pub fn task(&self, id: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.task_id == id)
    }
}

/// How one task instance of a test run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskReport {
    /// The task.
    pub task_id: String,
    /// Its final state.
    pub state: TaskState,
    /// Tries started.
    pub tries: u32,
    /// Time spent running, over all tries.
    pub duration: Duration,
    /// The error of the last try, if it did not succeed (or why the task
    /// skipped itself).
    pub error: Option<String>,
    /// The output of a successful task.
    pub output: Option<serde_json::Value>,
}

/// Why a test run stopped before its end: a bug in goflow rather than in
/// the DAG.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The scheduler running the test run ended before the run did.
    #[error("the scheduler of the test run stopped before the run ended: {reason}")]
    SchedulerStopped {
        /// What it ended with.
        reason: String,
    },
}

/// Runs one run of a DAG to its end, as `dags test` does, and reports how
/// each task ended.
///
/// It is the scheduler's path, not a copy of it: the run is created in a
/// store (a private in-memory SQLite database unless
/// [`TestRun::database_url`] names one), and a [`Scheduler`] of its own
/// (no scheduled runs, only this DAG) runs it with the in-process and
/// local-process executors, then stops. `observer` sees what the scheduler
/// records about the run as it records it: every task state change and
/// every line of the tries' logs, goflow's own (`try 1 started on
/// in_process, attempt 1 of 3`) and the tasks' (see [`SchedulerEvent`]).
///
/// In a private store, the pools the DAG's tasks name are created with
/// room for all of them: a test run does not share slots.
pub async fn run_test(
    registry: &Registry,
    test: TestRun,
    observer: &mut dyn FnMut(&SchedulerEvent),
) -> Result<TestReport, CliError> {
    let dag = Arc::clone(registry.get(&test.dag_id)?);
    let dag_id = dag.id().to_string();
    let (store, registry, id) = match &test.database_url {
        None => (
            crate::db::open(PRIVATE_STORE).await?,
            // The private store needs no other DAG.
            Registry::from_dags([Dag::clone(&dag)])?,
            PRIVATE_SCHEDULER_ID.to_owned(),
        ),
        Some(url) => (
            crate::db::open(url).await?,
            registry.clone(),
            format!("dags-test-{}", crate::scheduler::default_id()),
        ),
    };
    let now = Utc::now();
    let dags = crate::db::sync_registry(&store, &registry, now).await?;
    let missing = crate::db::missing_pools(&store, &registry, Some(&dag_id)).await?;
    if test.database_url.is_none() {
        let slots = u32::try_from(dag.tasks().len()).unwrap_or(u32::MAX).max(1);
        let pools: BTreeSet<&str> = missing.iter().map(|m| m.pool.as_str()).collect();
        for pool in pools {
            store.set_pool(pool, slots, "created by dags test").await?;
        }
    } else if !missing.is_empty() {
        return Err(CliError::UnknownPools(missing));
    }
    let version = dags.get(&dag_id).map_or(1, |d| d.version);
    let new = crate::db::new_run(&dag, version, RunType::Test, test.data_interval, test.conf);
    let run = store.create_run(&new, now).await?;
    let started = Instant::now();

    let config = SchedulerConfig {
        id,
        create_scheduled_runs: false,
        only_dags: Some(HashSet::from([dag_id])),
        default_executor: test.executor,
        // A test run stays on this machine: every task on the chosen
        // executor, whatever it names, unless asked otherwise.
        executor_override: (!test.declared_executors).then_some(test.executor),
        ..SchedulerConfig::default()
    };
    let mut scheduler = crate::server::with_local_process(Scheduler::new(
        store.clone(),
        Arc::new(registry),
        config,
    ));
    let mut events = scheduler.observe();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut handle = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));

    let mut tally = Tally::new(&dag, run.run_id.clone());
    // Another scheduler on a shared database may take the run: its end is
    // then only seen in the store.
    let shared = test.database_url.is_some();
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + SHARED_POLL, SHARED_POLL);
    let state = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    // The scheduler ended: it could not start.
                    return Err(scheduler_ended((&mut handle).await));
                };
                if !of_run(&event, run.id) {
                    continue;
                }
                tally.apply(&event);
                observer(&event);
                if let SchedulerEvent::RunFinished(f) = event {
                    break f.state;
                }
            }
            _ = poll.tick(), if shared => {
                if let Some(row) = store.get_run(run.id).await? {
                    if row.state.is_terminal() {
                        tally.reconcile(&store.task_instances(run.id).await?);
                        break row.state;
                    }
                }
            }
        }
    };
    let _ = stop.send(());
    match handle.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the test run's scheduler stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the test run's scheduler panicked"),
    }
    Ok(tally.report(state, started.elapsed()))
}

/// How often a test run in a shared database checks whether another
/// scheduler ended it.
const SHARED_POLL: Duration = Duration::from_secs(1);

/// Whether `event` is about run `run`.
fn of_run(event: &SchedulerEvent, run: i64) -> bool {
    match event {
        SchedulerEvent::Task(t) => t.run == run,
        SchedulerEvent::Log(l) => l.run == run,
        SchedulerEvent::RunFinished(f) => f.run == run,
    }
}

/// The error of a test run whose scheduler ended before the run did, from
/// how it ended: its start-up errors as `scheduler` reports them.
fn scheduler_ended(joined: Result<Result<(), SchedulerError>, tokio::task::JoinError>) -> CliError {
    match joined {
        Ok(Err(SchedulerError::Startup(e))) => CliError::Store(e),
        Ok(Err(SchedulerError::MissingPools(missing))) => CliError::UnknownPools(missing),
        Ok(Err(e @ SchedulerError::IdInUse { .. })) => CliError::InvalidSetting(e.to_string()),
        Ok(Ok(())) => RunError::SchedulerStopped {
            reason: "it was shut down".to_owned(),
        }
        .into(),
        Err(e) => RunError::SchedulerStopped {
            reason: if e.is_panic() {
                format!("it panicked: {}", crate::panic_message(&*e.into_panic()))
            } else {
                "it was cancelled".to_owned()
            },
        }
        .into(),
    }
}

/// The report of a test run, kept from the scheduler's events.
struct Tally<'d> {
    dag: &'d Dag,
    run_id: String,
    tasks: Vec<TaskReport>,
}

impl<'d> Tally<'d> {
    fn new(dag: &'d Dag, run_id: String) -> Self {
        let tasks = dag
            .tasks()
            .iter()
            .map(|t| TaskReport {
                task_id: t.id.to_string(),
                state: TaskState::Pending,
                tries: 0,
                duration: Duration::ZERO,
                error: None,
                output: None,
            })
            .collect();
        Self { dag, run_id, tasks }
    }

    fn apply(&mut self, event: &SchedulerEvent) {
        let SchedulerEvent::Task(e) = event else {
            return;
        };
        let Some(row) = self.dag.index_of(&e.task_id).map(|i| &mut self.tasks[i]) else {
            return;
        };
        row.state = e.to;
        row.tries = row.tries.max(e.try_number);
        row.duration += e.duration.unwrap_or_default();
        if e.to == TaskState::Success {
            row.error = None;
            row.output.clone_from(&e.output);
        } else if e.error.is_some() {
            row.error.clone_from(&e.error);
        }
    }

    /// Takes the final states from the store, for a run another scheduler
    /// ended.
    fn reconcile(&mut self, instances: &[goflow_store::TaskInstanceRow]) {
        for ti in instances {
            if let Some(i) = self.dag.index_of(&ti.task_id) {
                let row = &mut self.tasks[i];
                row.state = ti.state;
                row.tries = row.tries.max(ti.try_number);
                if ti.state != TaskState::Success {
                    row.error.clone_from(&ti.last_error);
                }
            }
        }
    }

    fn report(self, state: RunState, duration: Duration) -> TestReport {
        TestReport {
            run_id: self.run_id,
            state,
            duration,
            tasks: self.tasks,
        }
    }
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

/// A state change as a line (`HH:MM:SS.mmm  task  state  details`), a log
/// line indented under its task.
fn print_event(out: &mut dyn Write, event: &SchedulerEvent, width: usize) -> io::Result<()> {
    match event {
        // A task is queued and started within moments: the `queued` step
        // would only double the lines.
        SchedulerEvent::Task(e) if e.to == TaskState::Queued => Ok(()),
        SchedulerEvent::Task(e) => {
            let time = e.at.with_timezone(&Local).format("%H:%M:%S%.3f");
            // Padding needs `&str`: the states' `Display` ignores it.
            let (task, state) = (e.task_id.as_str(), e.to.as_str());
            let line = format!("{time}  {task:<width$}  {state:<15}  {}", details(e));
            writeln!(out, "{}", line.trim_end())
        }
        SchedulerEvent::Log(l) => {
            let task = l.task_id.as_str();
            writeln!(out, "{:12}  {task:<width$}  | {}", "", l.line.trim_end())
        }
        // The summary follows the run.
        SchedulerEvent::RunFinished(_) => Ok(()),
    }
}

/// `try 1/3  1.20s  retry in 30s: connection refused`
fn details(e: &TaskChanged) -> String {
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

fn print_summary(out: &mut dyn Write, report: &TestReport) -> io::Result<()> {
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
