//! `dags pause` and `dags unpause`.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{db, CliError, PauseArgs};
use crate::Registry;

/// Pauses (`paused`) or unpauses a DAG: a paused DAG gets no scheduled
/// runs.
pub(super) async fn set_paused(
    registry: &Registry,
    url: &str,
    args: &PauseArgs,
    paused: bool,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let dag = registry.get(&args.dag_id)?;
    let (store, dags) = db::open(url, registry, now).await?;
    let was = dags.get(dag.id().as_str()).map(|d| d.is_paused);
    store.set_paused(dag.id().as_str(), paused).await?;
    let state = |p: bool| if p { "paused" } else { "unpaused" };
    if was == Some(paused) {
        writeln!(out, "DAG {} is {} (unchanged)", dag.id(), state(paused))?;
    } else {
        writeln!(out, "DAG {} is {}", dag.id(), state(paused))?;
    }
    Ok(ExitCode::SUCCESS)
}
