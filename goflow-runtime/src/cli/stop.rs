//! `tasks kill` and `dags stop`: stop requests for the scheduler owning a
//! run (see `goflow_store::Store::request_stop`).

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use goflow_core::TaskState;
use goflow_store::{RunRow, Store, StoreError};

use super::{db, CliError, KillArgs, KillState, StopArgs};
use crate::Registry;

/// Who asked, for the try's error and the logs: the OS user of the CLI.
pub(super) fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("CLI user {user}")
}

async fn open_run(
    registry: &Registry,
    url: &str,
    dag_id: &str,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<(Store, RunRow), CliError> {
    let dag = registry.get(dag_id)?;
    let (store, _) = db::open(url, registry, now).await?;
    let dag_id = dag.id().to_string();
    let run = store
        .find_run(&dag_id, run_id)
        .await?
        .ok_or_else(|| CliError::UnknownRun {
            dag: dag_id,
            run_id: run_id.to_owned(),
        })?;
    Ok((store, run))
}

/// `tasks kill`
pub(super) async fn kill(
    registry: &Registry,
    url: &str,
    args: &KillArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let (store, run) = open_run(registry, url, &args.dag_id, &args.run_id, now).await?;
    let to = match args.state {
        KillState::Failed => TaskState::Failed,
        KillState::Success => TaskState::Success,
    };
    let reason = format!("killed by {} (tasks kill)", cli_actor());
    store
        .request_stop(run.id, &args.tasks, to, &reason, now)
        .await
        .map_err(|e| match e {
            StoreError::TasksNotActive { tasks, .. } => CliError::TasksNotActive {
                dag: run.dag_id.clone(),
                run_id: run.run_id.clone(),
                tasks,
            },
            StoreError::TaskNotFound { task_id, .. } => CliError::UnknownTask {
                dag: run.dag_id.clone(),
                run_id: run.run_id.clone(),
                task: task_id,
                known: String::new(),
            },
            other => other.into(),
        })?;
    writeln!(
        out,
        "stopping {} of run {} of DAG {}: the scheduler owning the run kills {} and ends {} {to}",
        args.tasks.join(", "),
        run.run_id,
        run.dag_id,
        if args.tasks.len() == 1 {
            "its try"
        } else {
            "their tries"
        },
        if args.tasks.len() == 1 { "it" } else { "them" },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `dags stop`
pub(super) async fn stop_run(
    registry: &Registry,
    url: &str,
    args: &StopArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let (store, run) = open_run(registry, url, &args.dag_id, &args.run_id, now).await?;
    let reason = format!("run stopped by {} (dags stop)", cli_actor());
    let tasks = store
        .request_run_stop(run.id, &reason, now)
        .await
        .map_err(|e| match e {
            StoreError::RunNotActive { state, .. } => CliError::RunFinished {
                dag: run.dag_id.clone(),
                run_id: run.run_id.clone(),
                state,
            },
            other => other.into(),
        })?;
    writeln!(
        out,
        "stopping run {} of DAG {} ({tasks} unfinished task instance{}): running tries are \
         killed and end failed, the others skipped; the run ends failed",
        run.run_id,
        run.dag_id,
        if tasks == 1 { "" } else { "s" }
    )?;
    Ok(ExitCode::SUCCESS)
}
