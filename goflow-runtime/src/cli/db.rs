//! `db migrate`, and opening the database for the commands that need it.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use goflow_store::{DagRow, Store};

use super::CliError;
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
