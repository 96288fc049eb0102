//! The command line of a goflow binary: `dags list`, `dags test`, and (in
//! later milestones) the scheduler, `tasks run` and `db migrate`.
//!
//! [`main`] is what `goflow::main!()` calls. The commands themselves run
//! through [`run`], which takes its registry, output and clock as
//! arguments so that tests drive it without a process.
//!
//! Exit codes: 0 when all went well, 1 when a DAG run failed, 2 for bad
//! input (clap's own usage errors keep clap's behaviour).

mod dags;
mod table;

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runner::RunError;
use crate::{Registry, RegistryError};

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
}

/// The top-level commands.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// List, inspect and run DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
}

/// `dags ...`
#[derive(Clone, Debug, Subcommand)]
pub enum DagsCommand {
    /// List the DAGs of this binary with their schedules and next runs.
    List(ListArgs),
    /// Run one run of a DAG in this process, without the scheduler or the
    /// database, printing each task's state changes.
    Test(TestArgs),
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
    /// The run's logical date in the DAG's time zone: `2026-01-01`,
    /// `2026-01-01T06:00`, or RFC 3339 with an offset. Defaults to the
    /// latest complete data interval.
    #[arg(long)]
    pub date: Option<String>,
    /// The run's configuration, a JSON object tasks read with
    /// `ctx.param(...)`.
    #[arg(long)]
    pub conf: Option<String>,
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
pub enum CliError {
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
}

impl CliError {
    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Registry(_)
            | CliError::InvalidConf { .. }
            | CliError::InvalidDate(_)
            | CliError::NoInterval { .. } => ExitCode::from(2),
            CliError::Run(_) | CliError::Io(_) => ExitCode::FAILURE,
        }
    }
}

/// Runs the CLI on the process arguments, with the DAGs registered in the
/// binary.
pub fn main() -> ExitCode {
    // Parse first, so that `--help` works even when the DAGs do not load.
    let cli = Cli::parse();
    init_tracing(cli.command.default_log_filter());
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

/// Runs a parsed command against `registry`, writing to `out`, with `now`
/// as the current time.
pub async fn run(
    cli: Cli,
    registry: &Registry,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Dags(DagsCommand::List(args)) => dags::list(registry, &args, out, now),
        Command::Dags(DagsCommand::Test(args)) => dags::test(registry, &args, out, now).await,
    }
}

impl Command {
    /// The log filter used when `RUST_LOG` is not set.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            // Warnings only: the command's own output is the report.
            Command::Dags(_) => "warn",
        }
    }
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (or `default`).
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // An embedding program may have installed its own subscriber: keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
