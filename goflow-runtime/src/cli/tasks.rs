//! `tasks run`: the worker side of the local-process and Kubernetes
//! executors.

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
    // In a Kubernetes Job's pod: payload and result go through the
    // scheduler's task API.
    if let Some(code) = run_via_task_api(registry, &request, out).await? {
        return Ok(code);
    }
    Ok(run_task(registry, &request, out).await?)
}

/// Runs the try through the task API when `$GOFLOW_TASK_API_URL` is set.
#[cfg(feature = "kubernetes")]
async fn run_via_task_api(
    registry: &Registry,
    request: &TaskRunRequest,
    out: &mut dyn Write,
) -> Result<Option<ExitCode>, CliError> {
    use crate::task_api::{TaskApiClient, TryRef};
    let try_ref = TryRef {
        dag_id: request.dag_id.clone(),
        run_id: request.run_id.clone(),
        task_id: request.task_id.clone(),
        try_number: request.try_number,
    };
    let Some(api) = TaskApiClient::from_env(try_ref).map_err(crate::worker::WorkerError::from)?
    else {
        return Ok(None);
    };
    Ok(Some(
        crate::worker::run_task_via_api(registry, request, &api, out).await?,
    ))
}

/// Without the `kubernetes` feature there is no task API client: say so
/// rather than wait for a payload on stdin that never comes.
#[cfg(not(feature = "kubernetes"))]
async fn run_via_task_api(
    _registry: &Registry,
    _request: &TaskRunRequest,
    _out: &mut dyn Write,
) -> Result<Option<ExitCode>, CliError> {
    match std::env::var(crate::task_api::TASK_API_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => {
            Err(crate::worker::WorkerError::from(crate::task_api::TaskApiError::NotCompiled).into())
        }
        _ => Ok(None),
    }
}
