//! `pools list|set|delete`: named slot limits shared by every run and
//! scheduler (a task names its pool with `#[task(pool = "...")]`; a pool
//! without a row here is unlimited).

use std::io::Write;
use std::process::ExitCode;

use super::{table, CliError, PoolsCommand};

pub(super) async fn pools(
    url: &str,
    command: &PoolsCommand,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let store = crate::db::open(url).await?;
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
