//! The command line of a goflow binary: `scheduler`, `dags list|test|
//! trigger|pause|unpause|runs|backfill`, `tasks run|clear`, `db
//! migrate|clean`, `pools list|set|delete`.
//!
//! [`main`] is what `goflow::main!()` calls. The commands themselves run
//! through [`run`], which takes its registry, output and clock as
//! arguments so that tests drive it without a process.
//!
//! Exit codes: 0 when all went well, 1 when a DAG run failed, 2 for bad
//! input (clap's own usage errors keep clap's behaviour).
//!
//! Commands that work on the database (`dags trigger|pause|unpause|runs`,
//! `tasks clear`, `db migrate|clean`, `pools`, `scheduler`) use the one
//! given by `--database-url` (or `GOFLOW_DATABASE_URL`, default
//! `sqlite://goflow.db`). Those that write migrate it and sync this
//! binary's DAGs into it first; those that only read (`dags runs`, `pools
//! list`) open an up-to-date database read-only, so a read-only SQLite
//! file can be read. Every one refuses, with exit code 2, a database
//! migrated by a newer goflow (it has migrations this binary does not
//! know). `dags list` never touches it; `dags test` runs in a private
//! in-memory database of its own (in the `--database-url` one when built
//! without the `sqlite` feature).

mod clear;
mod dags;
mod db;
#[cfg(feature = "kubernetes")]
mod k8s;
mod pause;
mod pools;
mod runs;
mod scheduler;
mod stop;
mod table;
mod tasks;

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use goflow_store::StoreError;

use crate::telemetry::{self, LogFormat, TelemetryGuard};
use crate::{Registry, RegistryError};
pub use dags::{run_test, RunError, TaskReport, TestReport, TestRun};

/// The arguments of a goflow binary.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "goflow",
    about = "Workflows defined in Rust: scheduler, CLI and worker in one binary."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// The database: `sqlite://PATH`, `postgres://USER@HOST/DB`...
    /// [default: sqlite://goflow.db]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "GOFLOW_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// How log lines are written to stderr: `text`, or `json` (one object
    /// per line, with the span context: dag, run, task, try).
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = "GOFLOW_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

/// The top-level commands.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// List, inspect and run DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Run task tries.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Manage the database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Run the scheduler: create due runs and run their tasks until
    /// stopped (Ctrl-C or SIGTERM).
    Scheduler(Box<SchedulerArgs>),
    /// Manage pools: slot limits on how many tasks of a pool run at once.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Deploy to Kubernetes (the `kubernetes` feature).
    #[cfg(feature = "kubernetes")]
    #[command(subcommand)]
    K8s(K8sCommand),
}

#[cfg(feature = "kubernetes")]
pub use k8s::{K8sCommand, ManifestsArgs};

/// `pools ...`
#[derive(Clone, Debug, Subcommand)]
pub enum PoolsCommand {
    /// List the pools and their slots.
    List,
    /// Create a pool or change its slots.
    Set {
        /// The pool's name, as tasks give it in `#[task(pool = "...")]`.
        name: String,
        /// How many of its tasks may be queued or running at once.
        slots: u32,
        /// What the pool protects.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a pool: its tasks are no longer limited.
    Delete {
        /// The pool's name.
        name: String,
    },
}

/// `scheduler`
#[derive(Clone, Debug, Args)]
pub struct SchedulerArgs {
    /// This scheduler's id, distinct per live scheduler (a second
    /// scheduler given the id of a live one refuses to start). A stable id
    /// lets a restart take its runs back at once [default: unique per
    /// process: the host name, the pid and a random suffix].
    #[arg(long = "id", value_name = "ID", env = "GOFLOW_SCHEDULER_ID")]
    pub scheduler_id: Option<String>,
    /// The executor of tasks that do not name one.
    #[arg(
        long,
        env = "GOFLOW_EXECUTOR",
        default_value = "in_process",
        value_parser = scheduler::parse_executor
    )]
    pub executor: goflow_core::ExecutorKind,
    /// Where the web UI and API listen (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "GOFLOW_BIND", default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Delete finished runs (with their tasks, tries, outputs, logs and
    /// alert records) that ended longer ago than this, such as `90d`;
    /// checked at start and every hour. Unset: runs are kept forever.
    #[arg(
        long,
        value_name = "DURATION",
        env = "GOFLOW_RETENTION",
        value_parser = parse_retention
    )]
    pub retention: Option<std::time::Duration>,
    /// Largest output a try may hand on (JSON), e.g. `64Mi`; a try whose
    /// output is larger fails, naming its size.
    #[arg(long, value_name = "SIZE", env = "GOFLOW_MAX_OUTPUT_BYTES", default_value = "64Mi", value_parser = parse_size)]
    pub max_output_bytes: u64,
    /// Most log bytes stored per try, e.g. `100Mi`; lines past it are
    /// dropped, with one line saying how much was.
    #[arg(long, value_name = "SIZE", env = "GOFLOW_MAX_LOG_BYTES", default_value = "100Mi", value_parser = parse_size)]
    pub max_log_bytes: u64,
    /// Alert channels.
    #[command(flatten)]
    pub alerts: crate::alerts::AlertArgs,
    /// Shipping task logs to Elasticsearch.
    #[cfg(feature = "elasticsearch")]
    #[command(flatten)]
    pub logship: crate::logship::LogShipArgs,
    /// The Kubernetes executor.
    #[cfg(feature = "kubernetes")]
    #[command(flatten)]
    pub kubernetes: crate::executor::kubernetes::KubernetesArgs,
}

/// A size in bytes: `1048576`, `64Mi`, `1G` (Kubernetes quantity forms).
fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = goflow_core::options::quantity_millis(s).map(|millis| millis / 1000);
    match bytes {
        Ok(b) if b > 0 => u64::try_from(b).map_err(|_| format!("{s:?} is too large")),
        _ => Err(format!(
            "{s:?} is not a size in bytes such as 1048576, 64Mi or 1G"
        )),
    }
}

/// `dags backfill`
#[derive(Clone, Debug, Args)]
pub struct BackfillArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The first date, in the DAG's time zone: runs start with the first
    /// interval that starts at or after it.
    #[arg(long)]
    pub from: String,
    /// The last logical date (included; a bare date includes the whole
    /// day), in the DAG's time zone.
    #[arg(long)]
    pub to: String,
    /// The runs' configuration, a JSON object.
    #[arg(long)]
    pub conf: Option<String>,
    /// The executor of tasks that do not name one.
    #[arg(long, default_value = "in_process", value_parser = scheduler::parse_executor)]
    pub executor: goflow_core::ExecutorKind,
}

/// `db ...`
#[derive(Clone, Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the migrations the database lacks (creating it if needed).
    Migrate,
    /// Delete finished (success or failed) runs that ended before a date,
    /// with their task instances, tries, outputs, logs and alert records,
    /// in batches; queued and running runs are never deleted.
    Clean(CleanArgs),
}

/// `db clean`
#[derive(Clone, Debug, Args)]
pub struct CleanArgs {
    /// Delete the runs that ended before this instant: `2026-01-01`
    /// (midnight UTC) or RFC 3339 (`2026-01-01T06:00:00+01:00`).
    #[arg(long, value_name = "DATE")]
    pub before: String,
    /// Only the runs of this DAG.
    #[arg(long = "dag", value_name = "DAG_ID")]
    pub dag_id: Option<String>,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Runs deleted per transaction.
    #[arg(
        long,
        value_name = "N",
        default_value_t = goflow_store::DEFAULT_CLEAN_BATCH,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub batch_size: u32,
}

/// Reads `--retention`: a duration such as `90d`, at least a minute.
fn parse_retention(s: &str) -> Result<std::time::Duration, String> {
    let d = goflow_core::duration::parse(s)?;
    if d < std::time::Duration::from_secs(60) {
        return Err(format!(
            "{s:?} is too short to keep anything; expected a duration such as 90d"
        ));
    }
    Ok(d)
}

/// `tasks ...`
#[derive(Clone, Debug, Subcommand)]
pub enum TasksCommand {
    /// Run one try of one task in this process, as the local-process
    /// executor's worker: reads the launch payload (`{"context": ...,
    /// "inputs": ...}`) from stdin or `--payload-file`, writes the result
    /// to `$GOFLOW_RESULT_FILE` (else prints it as the last line of stdout).
    /// Exits 0 when the task succeeded or skipped itself, 1 when it failed,
    /// 2 for bad input.
    Run(TaskRunArgs),
    /// Put task instances of a run back to pending so the scheduler runs
    /// them again (a finished run is queued again). Running ones are
    /// stopped first (their executor kills the try) and cleared once
    /// stopped.
    Clear(ClearArgs),
    /// Stop running tries: their executor kills them (a Kubernetes Job is
    /// deleted, a local worker's process group killed) and each task ends
    /// `failed` (or `--state success`). The scheduler owning the run does
    /// it within seconds.
    Kill(KillArgs),
}

/// `tasks kill`
#[derive(Clone, Debug, Args)]
pub struct KillArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's id, as `dags runs` shows it.
    pub run_id: String,
    /// The running tasks to stop.
    #[arg(required = true)]
    pub tasks: Vec<String>,
    /// The state they end in.
    #[arg(long, value_enum, default_value_t = KillState::Failed)]
    pub state: KillState,
}

/// The state `tasks kill` ends tasks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KillState {
    /// Failed, without retries.
    Failed,
    /// Success (downstreams that read its output find none).
    Success,
}

/// `dags stop`
#[derive(Clone, Debug, Args)]
pub struct StopArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's id, as `dags runs` shows it.
    pub run_id: String,
}

/// `tasks run`
#[derive(Clone, Debug, Args)]
pub struct TaskRunArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's id.
    pub run_id: String,
    /// The task's id.
    pub task_id: String,
    /// The try number, from 1.
    #[arg(long = "try", value_name = "N", default_value_t = 1)]
    pub try_number: u32,
    /// Read the launch payload from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    pub payload_file: Option<std::path::PathBuf>,
}

/// `dags ...`
#[derive(Clone, Debug, Subcommand)]
pub enum DagsCommand {
    /// List the DAGs of this binary with their schedules and next runs.
    List(ListArgs),
    /// Run one run of a DAG with a scheduler of its own in this process
    /// and a private in-memory database, printing each task's state
    /// changes and log lines.
    Test(TestArgs),
    /// Create a manual run of a DAG, queued for the scheduler; prints its
    /// run id.
    Trigger(TriggerArgs),
    /// Pause a DAG: the scheduler creates no scheduled runs for it.
    Pause(PauseArgs),
    /// Unpause a DAG.
    Unpause(PauseArgs),
    /// Show a DAG's recent runs, or with `--days` a per-day summary.
    Runs(RunsArgs),
    /// Create and run the runs of every interval between two dates, with
    /// progress; exits 1 if any failed.
    Backfill(BackfillArgs),
    /// Stop a queued or running run: running tries are killed and end
    /// `failed`, tasks not yet run end `skipped`, the run ends `failed`.
    Stop(StopArgs),
}

/// `dags list`
#[derive(Clone, Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `dags test`
#[derive(Clone, Debug, Args)]
pub struct TestArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's date, in the DAG's time zone (`2026-01-01`,
    /// `2026-01-01T06:00`, or RFC 3339 with an offset): the run covers the
    /// first interval of the schedule that starts at or after it, as in
    /// `dags trigger` and `dags backfill`. Defaults to the latest complete
    /// data interval.
    #[arg(long)]
    pub date: Option<String>,
    /// The run's configuration, a JSON object tasks read with
    /// `ctx.param(...)`.
    #[arg(long)]
    pub conf: Option<String>,
    /// The executor every task runs on, whatever it names: `in_process`
    /// (each try a tokio task of this process) or `local_process` (each
    /// try this binary's `tasks run` in a child process, as the scheduler
    /// runs it).
    #[arg(long, default_value = "in_process", value_parser = scheduler::parse_executor)]
    pub executor: goflow_core::ExecutorKind,
    /// Run each task on the executor it names (`--executor` being that of
    /// tasks naming none), as the scheduler would.
    #[arg(long)]
    pub declared_executors: bool,
}

/// `dags trigger`
#[derive(Clone, Debug, Args)]
pub struct TriggerArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's configuration, a JSON object tasks read with
    /// `ctx.param(...)`.
    #[arg(long)]
    pub conf: Option<String>,
    /// The run's date, in the DAG's time zone (`2026-01-01`,
    /// `2026-01-01T06:00`, or RFC 3339 with an offset): the run covers the
    /// first interval of the schedule that starts at or after it, as in
    /// `dags test` and `dags backfill`. Defaults to now, an empty interval.
    #[arg(long)]
    pub date: Option<String>,
}

/// `dags pause` and `dags unpause`
#[derive(Clone, Debug, Args)]
pub struct PauseArgs {
    /// The DAG's id.
    pub dag_id: String,
}

/// `dags runs`
#[derive(Clone, Debug, Args)]
pub struct RunsArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// How many runs to show, latest logical date first.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Instead of runs, each of the last N days (today included, in the
    /// DAG's time zone, by logical date) with its runs counted by state.
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "limit",
        value_parser = clap::value_parser!(u32).range(1..=3660)
    )]
    pub days: Option<u32>,
}

/// `tasks clear`
#[derive(Clone, Debug, Args)]
pub struct ClearArgs {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's id, as `dags runs` shows it.
    pub run_id: String,
    /// The tasks to clear; every task of the run when none is given.
    pub tasks: Vec<String>,
    /// Also clear every task downstream of those given.
    #[arg(long)]
    pub downstream: bool,
}

/// How listings are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// A JSON array for programs.
    Json,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// `k8s manifests` got a bad namespace, name or image.
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    K8sManifests(#[from] crate::k8s_manifests::ManifestsError),
    /// A DAG id that is not registered (the message lists those that are).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `--conf` is not a JSON object.
    #[error("invalid --conf: expected a JSON object, {problem}")]
    InvalidConf {
        /// What is wrong with it.
        problem: String,
    },
    /// `--date` cannot be read as a date.
    #[error("invalid --date: {0}")]
    InvalidDate(#[source] goflow_core::Error),
    /// The DAG's schedule has no data interval containing `--date`.
    #[error("invalid --date {date:?}: the schedule {schedule} of DAG {dag} has no data interval containing it")]
    NoInterval {
        /// The date as given.
        date: String,
        /// The DAG.
        dag: String,
        /// Its schedule.
        schedule: String,
    },
    /// The run stopped before its end.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
    /// `tasks run` could not run its task.
    #[error(transparent)]
    Worker(#[from] crate::worker::WorkerError),
    /// The database refused the command or could not be reached (the
    /// message names the URL or what was refused).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `tasks clear` named a run the DAG does not have.
    #[error("DAG {dag} has no run {run_id:?}; `dags runs {dag}` lists them")]
    UnknownRun {
        /// The DAG.
        dag: String,
        /// The run id as given.
        run_id: String,
    },
    /// `tasks kill` named tasks that are not running.
    #[error(
        "cannot stop {tasks} of run {run_id:?} of DAG {dag}: not queued or running",
        tasks = tasks.join(", ")
    )]
    TasksNotActive {
        /// The DAG.
        dag: String,
        /// The run.
        run_id: String,
        /// The tasks that are not running.
        tasks: Vec<String>,
    },
    /// `dags stop` named a run that has finished.
    #[error("run {run_id:?} of DAG {dag} is {state} already: only a queued or running run can be stopped")]
    RunFinished {
        /// The DAG.
        dag: String,
        /// The run.
        run_id: String,
        /// Its state.
        state: goflow_core::RunState,
    },
    /// `tasks clear` named a task the run does not have.
    #[error("run {run_id:?} of DAG {dag} has no task {task:?}; it has: {known}")]
    UnknownTask {
        /// The DAG.
        dag: String,
        /// The run.
        run_id: String,
        /// The task id as given.
        task: String,
        /// The run's tasks, comma-separated.
        known: String,
    },
    /// The web server could not start (its settings, or the database).
    #[error(transparent)]
    Web(crate::web::WebError),
    /// The scheduler and web server could not start, or stopped on an
    /// error.
    #[error(transparent)]
    Server(crate::server::ServerError),
    /// An alerting or log-shipping setting is not usable (the message
    /// names it).
    #[error("{0}")]
    InvalidSetting(String),
    /// The web server cannot listen on `--bind`.
    #[error("cannot listen on {addr} (--bind / GOFLOW_BIND): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pool name that is empty, or unknown to `pools delete`.
    #[error("no pool {name:?}; `pools list` shows them")]
    InvalidPool {
        /// The name as given.
        name: String,
    },
    /// Tasks name pools that do not exist: they would run without limit.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    UnknownPools(Vec<crate::db::MissingPool>),
    /// `db clean --before` is not a date goflow can use.
    #[error("invalid --before {input:?}: {reason}")]
    InvalidBefore {
        /// The date as given.
        input: String,
        /// What was expected.
        reason: String,
    },
    /// `dags backfill --to` is before `--from`.
    #[error("invalid range: --to {to:?} is before --from {from:?}")]
    InvalidRange {
        /// `--from` as given.
        from: String,
        /// `--to` as given.
        to: String,
    },
    /// `dags backfill` of a DAG without a recurring schedule.
    #[error("DAG {dag} has no recurring schedule, so it has no intervals to backfill; use `dags trigger`")]
    NotScheduled {
        /// The DAG.
        dag: String,
    },
    /// `tasks clear` named task instances an executor holds.
    #[error(
        "cannot clear {} of run {run_id:?} of DAG {dag}: queued or running; \
         they must finish or be cancelled first",
        tasks.join(", ")
    )]
    TasksActive {
        /// The DAG.
        dag: String,
        /// The run.
        run_id: String,
        /// The queued or running tasks.
        tasks: Vec<String>,
    },
}

impl CliError {
    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Registry(_)
            | CliError::InvalidConf { .. }
            | CliError::InvalidDate(_)
            | CliError::NoInterval { .. } => ExitCode::from(2),
            CliError::Run(_) | CliError::Io(_) | CliError::Web(_) | CliError::Server(_) => {
                ExitCode::FAILURE
            }
            CliError::Bind { .. } | CliError::InvalidSetting(_) => ExitCode::from(2),
            CliError::Worker(e) => e.exit_code(),
            CliError::UnknownRun { .. }
            | CliError::InvalidRange { .. }
            | CliError::InvalidPool { .. }
            | CliError::NotScheduled { .. }
            | CliError::UnknownTask { .. }
            | CliError::TasksActive { .. }
            | CliError::TasksNotActive { .. }
            | CliError::RunFinished { .. }
            | CliError::UnknownPools(_)
            | CliError::InvalidBefore { .. }
            | CliError::Store(
                StoreError::InvalidUrl { .. }
                | StoreError::BackendNotCompiled { .. }
                | StoreError::RunExists { .. }
                | StoreError::InvalidInput { .. }
                | StoreError::UnknownMigrations { .. }
                | StoreError::NotMigrated { .. },
            ) => ExitCode::from(2),
            CliError::Store(_) => ExitCode::FAILURE,
            #[cfg(feature = "kubernetes")]
            CliError::K8sManifests(crate::k8s_manifests::ManifestsError::Yaml(_)) => {
                ExitCode::FAILURE
            }
            #[cfg(feature = "kubernetes")]
            CliError::K8sManifests(_) => ExitCode::from(2),
        }
    }
}

/// Runs the CLI on the process arguments, with the DAGs registered in the
/// binary.
pub fn main() -> ExitCode {
    // Parse first, so that `--help` works even when the DAGs do not load.
    let cli = Cli::parse();
    // Kept to the end: dropping it flushes the traces.
    let _telemetry = init_tracing_for(&cli);
    let registry = match Registry::from_inventory() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Not `stdout().lock()`: tasks that print from worker threads would
    // block on the lock for the whole run.
    let mut out = std::io::stdout();
    match runtime.block_on(run(cli, &registry, &mut out, Utc::now())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// [`main`] for [`crate::server::worker_main_if_requested`]: the exit
/// code as a number, for `std::process::exit`.
pub(crate) fn worker_main() -> i32 {
    let code = main();
    (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .map_or(1, i32::from)
}

impl From<crate::server::ServerError> for CliError {
    fn from(e: crate::server::ServerError) -> Self {
        use crate::server::ServerError;
        match e {
            ServerError::Registry(e) => CliError::Registry(e),
            ServerError::Store(e) => CliError::Store(e),
            ServerError::UnknownPools(missing) => CliError::UnknownPools(missing),
            ServerError::Web(e) => CliError::Web(e),
            ServerError::InvalidSetting(s) => CliError::InvalidSetting(s),
            e @ ServerError::Scheduler(crate::scheduler::SchedulerError::IdInUse { .. }) => {
                CliError::InvalidSetting(e.to_string())
            }
            other => CliError::Server(other),
        }
    }
}

/// Runs a parsed command against `registry`, writing to `out`, with `now`
/// as the current time.
pub async fn run(
    cli: Cli,
    registry: &Registry,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    // Resolved only by the commands that use the database.
    let explicit_url = cli.database_url.filter(|u| !u.trim().is_empty());
    let url = || crate::db::database_url(explicit_url.as_deref());
    match cli.command {
        Command::Dags(DagsCommand::List(args)) => dags::list(registry, &args, out, now),
        Command::Dags(DagsCommand::Test(args)) => {
            dags::test(registry, &args, &url(), out, now).await
        }
        Command::Tasks(TasksCommand::Run(args)) => tasks::run(registry, &args, out).await,
        Command::Dags(DagsCommand::Trigger(args)) => {
            runs::trigger(registry, &url(), &args, out, now).await
        }
        Command::Dags(DagsCommand::Pause(args)) => {
            pause::set_paused(registry, &url(), &args, true, out, now).await
        }
        Command::Dags(DagsCommand::Unpause(args)) => {
            pause::set_paused(registry, &url(), &args, false, out, now).await
        }
        Command::Dags(DagsCommand::Runs(args)) => {
            runs::list(registry, &url(), &args, out, now).await
        }
        Command::Tasks(TasksCommand::Clear(args)) => {
            clear::clear(registry, &url(), &args, out, now).await
        }
        Command::Tasks(TasksCommand::Kill(args)) => {
            stop::kill(registry, &url(), &args, out, now).await
        }
        Command::Dags(DagsCommand::Stop(args)) => {
            stop::stop_run(registry, &url(), &args, out, now).await
        }
        Command::Db(DbCommand::Migrate) => db::migrate(&url(), out).await,
        Command::Db(DbCommand::Clean(args)) => db::clean(&url(), &args, out).await,
        Command::Scheduler(args) => scheduler::serve(registry, &url(), &args, out).await,
        Command::Pools(command) => pools::pools(&url(), &command, out).await,
        #[cfg(feature = "kubernetes")]
        Command::K8s(command) => k8s::run(&command, out),
        Command::Dags(DagsCommand::Backfill(args)) => {
            scheduler::backfill(registry, &url(), &args, out, now).await
        }
    }
}

impl Command {
    /// The log filter used when `RUST_LOG` is not set.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            // Warnings only: the command's own output is the report, and a
            // test run's report has what its tasks log (at INFO and above).
            Command::Dags(_) => "warn",
            // A worker's stderr is the task's log: keep the task's own
            // `tracing` lines.
            Command::Tasks(TasksCommand::Run(_)) => "info",
            Command::Tasks(TasksCommand::Clear(_) | TasksCommand::Kill(_))
            | Command::Db(_)
            | Command::Pools(_) => "warn",
            // The scheduler's log is its output.
            Command::Scheduler(_) => "info",
            #[cfg(feature = "kubernetes")]
            Command::K8s(_) => "warn",
        }
    }
}

/// Sets up `tracing` for a parsed command line as `main` does: the
/// command's default filter, `--log-format`, OTLP traces when asked for.
/// Keep the guard while the command runs.
pub fn init_tracing_for(cli: &Cli) -> TelemetryGuard {
    init_tracing(cli.command.default_log_filter(), cli.log_format)
}

/// Sends `tracing` output to stderr in `format`, filtered by `RUST_LOG`
/// (or `default`), and exports the spans over OTLP when the environment
/// asks for it (see [`crate::telemetry`]). The guard returned
/// flushes the traces when dropped.
fn init_tracing(default: &str, format: LogFormat) -> TelemetryGuard {
    use tracing_subscriber::prelude::*;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Each layer has its own filter: `RUST_LOG` quiets the log without
    // taking the spans away from the traces.
    let logs = telemetry::log_layer(format, std::io::stderr).with_filter(filter);
    let (traces, guard, trace_error) = match telemetry::otlp_from_env() {
        Ok((traces, guard)) => (traces, guard, None),
        Err(e) => (None, TelemetryGuard::default(), Some(e)),
    };
    // An embedding program may have installed its own subscriber: keep it.
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if let (true, Some(e)) = (installed, trace_error) {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::warn!("{message}");
    }
    guard
}
