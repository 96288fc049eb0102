//! `pools list|set|delete`: named slot limits shared by every run and
//! scheduler (a task names its pool with `#[task(pool = "...")]`). The
//! scheduler refuses to start while a task names a pool that does not
//! exist; `default_pool`, the pool of tasks that name none, is unlimited
//! unless set here.

use std::io::Write;
use std::process::ExitCode;

use super::{table, CliError, PoolsCommand};

pub(super) async fn pools(
    url: &str,
    command: &PoolsCommand,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let store = match command {
        // Only reads: a read-only database will do.
        PoolsCommand::List => crate::db::open_read_only(url).await?,
        PoolsCommand::Set { .. } | PoolsCommand::Delete { .. } => crate::db::open(url).await?,
    };
    match command {
        PoolsCommand::List => {
            let rows: Vec<Vec<String>> = store
                .list_pools()
                .await?
                .into_iter()
                .map(|p| vec![p.name, p.slots.to_string(), p.description])
                .collect();
            table::write(out, &["POOL", "SLOTS", "DESCRIPTION"], &rows)?;
        }
        PoolsCommand::Set {
            name,
            slots,
            description,
        } => {
            if name.trim().is_empty() {
                return Err(CliError::InvalidPool { name: name.clone() });
            }
            store
                .set_pool(name, *slots, description.as_deref().unwrap_or(""))
                .await?;
            writeln!(
                out,
                "pool {name} has {slots} slot{}",
                if *slots == 1 { "" } else { "s" }
            )?;
        }
        PoolsCommand::Delete { name } => {
            if store.delete_pool(name).await? {
                writeln!(out, "pool {name} deleted: its tasks are no longer limited")?;
            } else {
                return Err(CliError::InvalidPool { name: name.clone() });
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
