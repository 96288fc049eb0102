//! The worker side of the local-process executor: what `<bin> tasks run`
//! does in the child process.
//!
//! The executor starts `<bin> tasks run <dag> <run> <task> --try <n>`,
//! writes a [`LaunchPayload`] (the task's context and inputs, as JSON) to
//! its stdin, and sets [`RESULT_FILE_ENV`] to a path in a private
//! temporary directory. The worker finds the task in its [`Registry`],
//! runs it on the tokio runtime, measures itself, and writes a
//! [`WorkerResult`] to that path (atomically: a temporary file, then a
//! rename). Without the variable, the result is printed as the last line
//! of stdout instead, so that a person can run a task by hand:
//!
//! ```text
//! echo '{"context": {...}, "inputs": {"extract": [1, 2]}}' \
//!     | my-dags tasks run etl 2026-01-01 transform --try 1
//! ```
//!
//! In a Kubernetes Job's pod the worker has neither stdin nor a shared
//! directory: with `$GOFLOW_TASK_API_URL` and `$GOFLOW_TASK_TOKEN` set
//! (and the `kubernetes` feature), it fetches the same payload from the
//! scheduler's task API and posts the same result there instead
//! (`run_task_via_api`, [`crate::task_api`]).
//!
//! A worker the local-process executor started stops when that executor's
//! process is gone: see [`bind_to_parent`].
//!
//! Exit codes: 0 when the task succeeded or skipped itself, 1 when it
//! failed (or the result could not be written or the task API could not
//! be used), 2 for bad input (unknown DAG or task, unreadable payload, a
//! payload for another try).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use goflow_core::{Inputs, TaskContext, TaskError, TaskErrorKind, TaskOutput};
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// The environment variable naming the file the worker writes its
/// [`WorkerResult`] to.
pub const RESULT_FILE_ENV: &str = "GOFLOW_RESULT_FILE";

/// The environment variable in which the local-process executor gives its
/// workers its own pid (see [`bind_to_parent`]).
pub const PARENT_PID_ENV: &str = "GOFLOW_PARENT_PID";

/// How often a worker bound to its parent checks that the parent is still
/// there, besides the Linux parent-death signal.
#[cfg(unix)]
const PARENT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Ties this worker's life to the process that started it, when that was
/// the local-process executor: [`PARENT_PID_ENV`] names the executor's
/// process, and the worker leads a process group of its own. Once its
/// parent is no longer that process (the scheduler ended, even killed
/// with SIGKILL), the worker kills its whole process group with SIGKILL,
/// the task's own processes included, and so ends: the scheduler's next
/// start can run the try again without its first try still running.
///
/// On Linux the kernel tells the worker at once (the parent-death signal,
/// SIGHUP, which the worker then handles); on every Unix the worker also
/// checks its parent every second. A worker whose parent is already gone
/// when it starts stops at once. Does nothing without the variable, in a
/// process that does not lead its group (a `tasks run` that a task
/// started inherits the variable, not the group), and off Unix.
///
/// [`run_task`] calls it first; calling it again does nothing.
pub fn bind_to_parent() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let parent = std::env::var(PARENT_PID_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i32>().ok())
            .filter(|&pid| pid > 0);
        #[cfg(unix)]
        if let Some(parent) = parent {
            parent_watch::bind(nix::unistd::Pid::from_raw(parent));
        }
        #[cfg(not(unix))]
        let _ = parent;
    });
}

#[cfg(unix)]
mod parent_watch {
    use std::io::Write;

    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::{getpgrp, getpid, getppid, Pid};

    pub(super) fn bind(parent: Pid) {
        if getpgrp() != getpid() {
            return;
        }
        // The handler is in place before the kernel is asked for the
        // signal, so that the signal never finds SIGHUP's default action
        // (which would end this process and leave its group running).
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("goflow-parent-watch".to_owned())
            .spawn(move || watch(parent, ready_tx));
        let handled = spawned.is_ok() && ready_rx.recv().unwrap_or(false);
        #[cfg(target_os = "linux")]
        if handled {
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGHUP) {
                tracing::warn!(error = %e, "cannot ask for a signal at the scheduler's end; checking every second instead");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = handled;
        // The parent may have ended before the signal was asked for.
        if getppid() != parent {
            parent_gone(parent);
        }
    }

    /// Runs on a thread of its own, with a runtime of its own: a task that
    /// blocks every thread of the main runtime does not stop it.
    fn watch(parent: Pid, ready: std::sync::mpsc::Sender<bool>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            let _ = ready.send(false);
            loop {
                std::thread::sleep(super::PARENT_POLL);
                if getppid() != parent {
                    parent_gone(parent);
                }
            }
        };
        runtime.block_on(async move {
            #[cfg(target_os = "linux")]
            let mut hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            #[cfg(not(target_os = "linux"))]
            let mut hangups: Option<tokio::signal::unix::Signal> = None;
            let _ = ready.send(hangups.is_some());
            loop {
                let hangup = async {
                    match hangups.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    received = hangup => {
                        if received.is_none() {
                            hangups = None;
                        }
                    }
                    () = tokio::time::sleep(super::PARENT_POLL) => {}
                }
                // A SIGHUP also comes when the thread that started this
                // process ends while its process lives on: only the parent
                // pid tells.
                if getppid() != parent {
                    parent_gone(parent);
                }
            }
        })
    }

    fn parent_gone(parent: Pid) -> ! {
        // The scheduler read the other end of stderr: this may go nowhere.
        let _ = writeln!(
            std::io::stderr(),
            "goflow worker: the scheduler that started it (pid {parent}) is gone; \
             killing this try's processes"
        );
        let _ = killpg(getpgrp(), Signal::SIGKILL);
        std::process::exit(1)
    }
}

/// What the executor sends a worker on its stdin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchPayload {
    /// The task's context.
    pub context: TaskContext,
    /// The outputs of its data upstreams, by upstream task id.
    #[serde(default)]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// What a worker reports about its try, in the result file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerResult {
    /// How the task ended.
    pub outcome: WorkerOutcome,
    /// What the worker measured about itself, when it could.
    #[serde(default)]
    pub metrics: Option<WorkerMetrics>,
}

/// How a task ended, as written to the result file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WorkerOutcome {
    /// The task returned a value.
    Ok {
        /// The returned value.
        value: serde_json::Value,
        /// For a branch task, the downstream task ids to follow.
        #[serde(default)]
        follow: Option<Vec<String>>,
    },
    /// The task failed or skipped itself.
    Err {
        /// Why.
        kind: TaskErrorKind,
        /// The error's message.
        message: String,
    },
}

impl WorkerOutcome {
    /// The outcome of a task's result. An error keeps its kind and message
    /// (its source error cannot cross the process boundary).
    pub fn from_result(result: &Result<TaskOutput, TaskError>) -> Self {
        match result {
            Ok(output) => WorkerOutcome::Ok {
                value: output.value.clone(),
                follow: output.follow.clone(),
            },
            Err(e) => WorkerOutcome::Err {
                kind: e.kind(),
                message: e.message().to_owned(),
            },
        }
    }

    /// The task's result again.
    pub fn into_result(self) -> Result<TaskOutput, TaskError> {
        match self {
            WorkerOutcome::Ok { value, follow } => Ok(TaskOutput { value, follow }),
            WorkerOutcome::Err { kind, message } => Err(TaskError::from_parts(kind, message)),
        }
    }
}

/// Set to `1` in a Kubernetes task's container by the executor: there the
/// worker is alone in its container's cgroup, so the cgroup's counters are
/// the task's, with every process it started. Elsewhere (a local process
/// shares the scheduler's cgroup) they would not be.
pub const CGROUP_METRICS_ENV: &str = "GOFLOW_CGROUP_METRICS";

/// Where a container sees its own cgroup.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Resource use the worker measured at the end of its task: its container's
/// cgroup when [`CGROUP_METRICS_ENV`] is set and the counters are readable,
/// else `getrusage` of the worker and the child processes it waited for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    /// Peak memory, in bytes: the largest resident set of the worker or of
    /// one of its children, or the cgroup's peak (page cache included,
    /// which is what the kernel's memory limit counts).
    pub peak_memory_bytes: Option<u64>,
    /// User CPU time, in milliseconds.
    pub cpu_user_ms: Option<u64>,
    /// System CPU time, in milliseconds.
    pub cpu_system_ms: Option<u64>,
}

impl WorkerMetrics {
    /// This process's resource use so far, plus that of the children it
    /// has waited for (a task that shells out is charged for its tools);
    /// `None` where the platform does not say.
    pub fn of_this_process() -> Option<Self> {
        self_usage()
    }

    /// The counters of the cgroup at `dir` (v2: `cpu.stat`, `memory.peak`;
    /// v1: `cpuacct/`, `memory/`). Fields the kernel does not offer are
    /// `None`; `None` if it offers none.
    pub fn of_cgroup(dir: &Path) -> Option<Self> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let number = |name: &str| read(name).and_then(|s| s.trim().parse::<u64>().ok());
        let stat = read("cpu.stat").unwrap_or_default();
        let stat_field = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let m = WorkerMetrics {
            peak_memory_bytes: number("memory.peak")
                .or_else(|| number("memory/memory.max_usage_in_bytes")),
            cpu_user_ms: stat_field("user_usec")
                .map(|us| us / 1000)
                .or_else(|| number("cpuacct/cpuacct.usage_user").map(|ns| ns / 1_000_000)),
            cpu_system_ms: stat_field("system_usec")
                .map(|us| us / 1000)
                .or_else(|| number("cpuacct/cpuacct.usage_sys").map(|ns| ns / 1_000_000)),
        };
        (m != WorkerMetrics::default()).then_some(m)
    }

    /// What a worker reports: see the type's docs.
    pub(crate) fn measure() -> Option<Self> {
        let process = Self::of_this_process();
        let in_own_cgroup = std::env::var(CGROUP_METRICS_ENV).is_ok_and(|v| v == "1");
        let cgroup = in_own_cgroup
            .then(|| Self::of_cgroup(Path::new(CGROUP_ROOT)))
            .flatten();
        match (cgroup, process) {
            (Some(c), Some(p)) => Some(WorkerMetrics {
                peak_memory_bytes: c.peak_memory_bytes.or(p.peak_memory_bytes),
                cpu_user_ms: c.cpu_user_ms.or(p.cpu_user_ms),
                cpu_system_ms: c.cpu_system_ms.or(p.cpu_system_ms),
            }),
            (c, p) => c.or(p),
        }
    }
}

#[cfg(unix)]
fn self_usage() -> Option<WorkerMetrics> {
    use nix::sys::resource::{getrusage, Usage, UsageWho};
    use nix::sys::time::TimeVal;

    let me = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let children = getrusage(UsageWho::RUSAGE_CHILDREN).ok();
    let ms = |t: TimeVal| {
        let ms = i128::from(t.tv_sec()) * 1000 + i128::from(t.tv_usec()) / 1000;
        u64::try_from(ms).ok()
    };
    let both = |f: fn(&Usage) -> TimeVal| {
        let mine = ms(f(&me))?;
        Some(mine.saturating_add(children.as_ref().and_then(|c| ms(f(c))).unwrap_or(0)))
    };
    // `ru_maxrss` is in bytes on Apple platforms, in KiB elsewhere; for
    // children it is the largest child's, so the two are not added.
    let rss_unit: u64 = if cfg!(target_vendor = "apple") {
        1
    } else {
        1024
    };
    let max_rss = me
        .max_rss()
        .max(children.as_ref().map_or(0, Usage::max_rss));
    Some(WorkerMetrics {
        peak_memory_bytes: u64::try_from(max_rss)
            .ok()
            .map(|n| n.saturating_mul(rss_unit)),
        cpu_user_ms: both(Usage::user_time),
        cpu_system_ms: both(Usage::system_time),
    })
}

#[cfg(not(unix))]
fn self_usage() -> Option<WorkerMetrics> {
    None
}

/// What `tasks run` is asked to run.
#[derive(Clone, Debug)]
pub struct TaskRunRequest {
    /// The DAG's id.
    pub dag_id: String,
    /// The run's id.
    pub run_id: String,
    /// The task's id.
    pub task_id: String,
    /// The try number, from 1.
    pub try_number: u32,
    /// Where the payload is; stdin when `None`.
    pub payload_file: Option<PathBuf>,
}

/// Why a worker could not run its task. Not a task failure: a task that
/// ran and failed is reported in the result, with exit code 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// No DAG with this id in the binary.
    #[error(transparent)]
    UnknownDag(#[from] RegistryError),
    /// The DAG has no task with this id.
    #[error("DAG {dag:?} has no task {task:?}; its tasks are: {known}")]
    UnknownTask {
        /// The DAG.
        dag: String,
        /// The task id asked for.
        task: String,
        /// The task ids there are, comma-separated.
        known: String,
    },
    /// The payload could not be read.
    #[error("cannot read the launch payload from {from}: {source}")]
    ReadPayload {
        /// `stdin` or the file's path.
        from: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The payload is not a launch payload.
    #[error(
        "invalid launch payload from {from}: expected a JSON object \
         {{\"context\": {{...}}, \"inputs\": {{...}}}}, {source}"
    )]
    InvalidPayload {
        /// `stdin` or the file's path.
        from: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The payload is for another try than the arguments name.
    #[error("the launch payload is for another try: its {field} is {payload:?}, the arguments say {arg:?}")]
    PayloadMismatch {
        /// `dag_id`, `run_id`, `task_id` or `try_number`.
        field: &'static str,
        /// The payload's value.
        payload: String,
        /// The argument's value.
        arg: String,
    },
    /// The task API (`$GOFLOW_TASK_API_URL`) could not be used.
    #[error(transparent)]
    TaskApi(#[from] crate::task_api::TaskApiError),
    /// The result could not be written.
    #[error("cannot write the task's result to {path}: {source}")]
    WriteResult {
        /// The result file (or `stdout`).
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl WorkerError {
    /// The process exit code: 2 for bad input, 1 when the result could
    /// not be written.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            WorkerError::WriteResult { .. } | WorkerError::TaskApi(_) => ExitCode::FAILURE,
            _ => ExitCode::from(2),
        }
    }
}

/// Runs one try of one task as `tasks run` does: reads the payload, runs
/// the task, writes the result (to [`RESULT_FILE_ENV`], else as the last
/// line of `out`). Returns exit code 0 when the task succeeded or skipped
/// itself, 1 when it failed. A worker of the local-process executor is
/// first bound to its parent ([`bind_to_parent`]).
pub async fn run_task(
    registry: &Registry,
    request: &TaskRunRequest,
    out: &mut dyn Write,
) -> Result<ExitCode, WorkerError> {
    bind_to_parent();
    let task = resolve(registry, request)?;
    let payload = read_payload(request.payload_file.as_deref()).await?;
    let (code, report) = execute(&task, request, payload).await?;
    match std::env::var_os(RESULT_FILE_ENV) {
        Some(path) if !path.is_empty() => write_result_file(Path::new(&path), &report)?,
        _ => print_result(&report, out)?,
    }
    Ok(code)
}

/// Prints `report` as one JSON line.
fn print_result(report: &WorkerResult, out: &mut dyn Write) -> Result<(), WorkerError> {
    let line = serde_json::to_string(report).map_err(|e| WorkerError::WriteResult {
        path: "stdout".to_owned(),
        source: e.into(),
    })?;
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|source| WorkerError::WriteResult {
            path: "stdout".to_owned(),
            source,
        })
}

/// The task a request names, found in the registry.
struct ResolvedTask {
    dag_id: String,
    body: goflow_core::TaskFn,
    timeout: Option<std::time::Duration>,
}

fn resolve(registry: &Registry, request: &TaskRunRequest) -> Result<ResolvedTask, WorkerError> {
    let dag = registry.get(&request.dag_id)?;
    let node = dag
        .tasks()
        .iter()
        .find(|t| t.id.as_str() == request.task_id)
        .ok_or_else(|| WorkerError::UnknownTask {
            dag: dag.id().to_string(),
            task: request.task_id.clone(),
            known: dag
                .tasks()
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    Ok(ResolvedTask {
        dag_id: dag.id().to_string(),
        body: node.run,
        timeout: node.options.timeout,
    })
}

/// Runs the task with `payload`: the exit code and the report.
async fn execute(
    task: &ResolvedTask,
    request: &TaskRunRequest,
    payload: LaunchPayload,
) -> Result<(ExitCode, WorkerResult), WorkerError> {
    check_payload(&payload.context, &task.dag_id, request)?;

    let mut inputs = Inputs::new();
    for (upstream, value) in payload.inputs {
        inputs.insert(upstream, value);
    }
    // The timeout is the executor's to enforce; the body's own is a safety
    // net for a body that yields. The worker's lines carry the try, as
    // the scheduler's do.
    let span = tracing::info_span!(
        "try",
        dag = %task.dag_id,
        run = %request.run_id,
        task = %request.task_id,
        r#try = i64::from(request.try_number)
    );
    let result = crate::executor::body::spawn_body(
        task.body,
        payload.context,
        inputs,
        task.timeout,
        span,
        None,
    )
    .await;
    let code = match &result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if e.is_skip() => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    };
    let report = WorkerResult {
        outcome: WorkerOutcome::from_result(&result),
        metrics: WorkerMetrics::measure(),
    };
    Ok((code, report))
}

/// How often a worker run through the task API sends a heartbeat.
#[cfg(feature = "kubernetes")]
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs one try as [`run_task`] does, but with the task API of the
/// scheduler instead of stdin and a result file: fetches the payload from
/// `api`, sends heartbeats while the task runs, and posts the result. A
/// worker that cannot resolve its task (an image built from other code)
/// posts that as its failed result, so the scheduler shows why. When the
/// result cannot be posted, it is printed as the last line of `out`
/// instead (the executor reads it from the pod's log) and this still
/// returns the task's exit code.
#[cfg(feature = "kubernetes")]
pub async fn run_task_via_api(
    registry: &Registry,
    request: &TaskRunRequest,
    api: &crate::task_api::TaskApiClient,
    out: &mut dyn Write,
) -> Result<ExitCode, WorkerError> {
    let task = match resolve(registry, request) {
        Ok(task) => task,
        Err(e) => {
            let report = WorkerResult {
                outcome: WorkerOutcome::Err {
                    kind: TaskErrorKind::Fatal,
                    message: format!("the worker cannot run this task: {e}"),
                },
                metrics: None,
            };
            if let Err(post) = api.post_result(&report).await {
                tracing::warn!(error = %post, "cannot report the failure to the task API");
            }
            return Err(e);
        }
    };
    let payload = api.payload().await?;
    let heartbeats = {
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = api.heartbeat().await {
                    tracing::debug!(error = %e, "heartbeat to the task API failed");
                }
            }
        })
    };
    let executed = execute(&task, request, payload).await;
    heartbeats.abort();
    let (code, report) = executed?;
    if let Err(e) = api.post_result(&report).await {
        tracing::error!(error = %e, "cannot post the result to the task API; printing it instead");
        print_result(&report, out)?;
    }
    Ok(code)
}

async fn read_payload(file: Option<&Path>) -> Result<LaunchPayload, WorkerError> {
    let (from, bytes) = match file {
        Some(path) => {
            let from = path.display().to_string();
            match tokio::fs::read(path).await {
                Ok(bytes) => (from, bytes),
                Err(source) => return Err(WorkerError::ReadPayload { from, source }),
            }
        }
        None => {
            let read = tokio::task::spawn_blocking(|| {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok(bytes) => ("stdin".to_owned(), bytes),
                Err(source) => {
                    return Err(WorkerError::ReadPayload {
                        from: "stdin".to_owned(),
                        source,
                    })
                }
            }
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| WorkerError::InvalidPayload { from, source })
}

fn check_payload(
    ctx: &TaskContext,
    dag_id: &str,
    request: &TaskRunRequest,
) -> Result<(), WorkerError> {
    let checks = [
        ("dag_id", ctx.dag_id().to_string(), dag_id.to_owned()),
        ("run_id", ctx.run_id().to_string(), request.run_id.clone()),
        (
            "task_id",
            ctx.task_id().to_string(),
            request.task_id.clone(),
        ),
        (
            "try_number",
            ctx.try_number().to_string(),
            request.try_number.to_string(),
        ),
    ];
    for (field, payload, arg) in checks {
        if payload != arg {
            return Err(WorkerError::PayloadMismatch {
                field,
                payload,
                arg,
            });
        }
    }
    Ok(())
}

/// Writes `result` to `path` atomically: a reader sees no file or the
/// whole result, never part of it.
fn write_result_file(path: &Path, result: &WorkerResult) -> Result<(), WorkerError> {
    let err = |source: std::io::Error| WorkerError::WriteResult {
        path: path.display().to_string(),
        source,
    };
    let json = serde_json::to_vec(result).map_err(|e| err(e.into()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads a result file written by [`run_task`]: `Ok(None)` when there is
/// none (the worker died before writing it).
pub fn read_result_file(path: &Path) -> std::io::Result<Option<WorkerResult>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(Into::into),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_json() {
        for result in [
            Ok(TaskOutput {
                value: serde_json::json!({"rows": 3}),
                follow: Some(vec!["b".into()]),
            }),
            Err(TaskError::skip("no data today")),
            Err(TaskError::fatal("bad config")),
        ] {
            let report = WorkerResult {
                outcome: WorkerOutcome::from_result(&result),
                metrics: Some(WorkerMetrics::default()),
            };
            let json = serde_json::to_string(&report).unwrap();
            let back: WorkerResult = serde_json::from_str(&json).unwrap();
            match (back.outcome.into_result(), result) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => {
                    assert_eq!((a.kind(), a.message()), (b.kind(), b.message()));
                }
                (a, b) => panic!("{a:?} != {b:?}"),
            }
        }
    }

    #[test]
    fn result_files_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        assert!(read_result_file(&path).unwrap().is_none());
        let report = WorkerResult {
            outcome: WorkerOutcome::Err {
                kind: TaskErrorKind::Failed,
                message: "x".into(),
            },
            metrics: None,
        };
        write_result_file(&path, &report).unwrap();
        assert_eq!(read_result_file(&path).unwrap(), Some(report));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn this_process_has_metrics() {
        let m = WorkerMetrics::of_this_process().unwrap();
        assert!(m.peak_memory_bytes.unwrap() > 0);
    }

    #[cfg(unix)]
    #[test]
    fn the_cpu_of_children_it_waited_for_counts() {
        let before = WorkerMetrics::of_this_process().unwrap();
        // A child that burns CPU in its own process: shells count to a
        // number, which takes a measurable share of a second.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = WorkerMetrics::of_this_process().unwrap();
        let cpu = |m: WorkerMetrics| m.cpu_user_ms.unwrap() + m.cpu_system_ms.unwrap();
        // This thread only waited; the CPU time is the child's.
        assert!(
            cpu(after) >= cpu(before) + 50,
            "before {before:?}, after {after:?}"
        );
    }

    #[test]
    fn cgroup_v2_counters_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1200000\nsystem_usec 300000\nnr_periods 0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory.peak"), "268435456\n").unwrap();
        assert_eq!(
            WorkerMetrics::of_cgroup(dir.path()),
            Some(WorkerMetrics {
                peak_memory_bytes: Some(256 << 20),
                cpu_user_ms: Some(1200),
                cpu_system_ms: Some(300),
            })
        );
    }

    #[test]
    fn cgroup_v1_counters_are_read_and_nothing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(WorkerMetrics::of_cgroup(dir.path()), None);
        std::fs::create_dir(dir.path().join("cpuacct")).unwrap();
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        std::fs::write(dir.path().join("cpuacct/cpuacct.usage_user"), "2000000000").unwrap();
        std::fs::write(dir.path().join("cpuacct/cpuacct.usage_sys"), "5000000").unwrap();
        std::fs::write(
            dir.path().join("memory/memory.max_usage_in_bytes"),
            "1048576",
        )
        .unwrap();
        assert_eq!(
            WorkerMetrics::of_cgroup(dir.path()),
            Some(WorkerMetrics {
                peak_memory_bytes: Some(1 << 20),
                cpu_user_ms: Some(2000),
                cpu_system_ms: Some(5),
            })
        );
    }
}
