//! `tasks run`: the worker side of the local-process executor.

use std::io::Write;
use std::process::ExitCode;

use super::{CliError, TaskRunArgs};
use crate::worker::{run_task, TaskRunRequest};
use crate::Registry;

pub(super) async fn run(
    registry: &Registry,
    args: &TaskRunArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let request = TaskRunRequest {
        dag_id: args.dag_id.clone(),
        run_id: args.run_id.clone(),
        task_id: args.task_id.clone(),
        try_number: args.try_number,
        payload_file: args.payload_file.clone(),
    };
    Ok(run_task(registry, &request, out).await?)
}
