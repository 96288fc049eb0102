//! The local-process executor: each try runs in a child process, the
//! binary itself re-executed as `<bin> tasks run <dag> <run> <task> --try
//! <n>` (see [`crate::worker`]).
//!
//! A child gets its context and inputs as a JSON [`LaunchPayload`] on
//! stdin, and writes its result and its own resource use to the file named
//! by [`RESULT_FILE_ENV`], in a temporary directory private to the try.
//! Its stdout and stderr lines become [`ExecutorEvent::Log`]s. The executor
//! kills the child (SIGKILL) on timeout and on cancel; a child that dies
//! without writing a result fails the try with its exit code or signal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goflow_core::{EdgeKind, ExecutorKind, TaskError, TaskOutput};
use goflow_store::LogStream;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{EventSender, Executor, ExecutorEvent, Launch, TryKey, TryMetrics};
use crate::worker::{read_result_file, LaunchPayload, WorkerResult, RESULT_FILE_ENV};

/// How long the executor waits, after the child exited, for the rest of
/// its output (a grandchild may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs each try in a child process: `program args_prefix... tasks run
/// <dag_id> <run_id> <task_id> --try <n>`.
#[derive(Clone, Debug)]
pub struct LocalProcessExecutor {
    config: Arc<Config>,
    running: Arc<Mutex<HashMap<TryKey, Arc<Notify>>>>,
}

#[derive(Clone, Debug)]
struct Config {
    program: PathBuf,
    args_prefix: Vec<String>,
    env: Vec<(String, String)>,
}

impl LocalProcessExecutor {
    /// Re-executes the current binary (`std::env::current_exe()`).
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(Self::with_program(std::env::current_exe()?, Vec::new()))
    }

    /// Runs `program`, with `args_prefix` before `tasks run ...` (e.g. the
    /// arguments a test harness needs to reach its worker entry point).
    pub fn with_program(program: impl Into<PathBuf>, args_prefix: Vec<String>) -> Self {
        Self {
            config: Arc::new(Config {
                program: program.into(),
                args_prefix,
                env: Vec::new(),
            }),
            running: Arc::default(),
        }
    }

    /// Sets an environment variable in every child, on top of the
    /// executor's own environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config)
            .env
            .push((key.into(), value.into()));
        self
    }

    /// The program children run.
    pub fn program(&self) -> &Path {
        &self.config.program
    }

    /// Tries currently running.
    pub fn running(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Executor for LocalProcessExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::LocalProcess
    }

    fn launch(&self, launch: Launch, events: EventSender) {
        let stop = Arc::new(Notify::new());
        if let Ok(mut running) = self.running.lock() {
            running.insert(launch.key.clone(), Arc::clone(&stop));
        }
        let config = Arc::clone(&self.config);
        let running = Arc::clone(&self.running);
        tokio::spawn(async move {
            let key = launch.key.clone();
            let (result, metrics) = run_try(&config, launch, &events, &stop).await;
            if let Ok(mut running) = running.lock() {
                running.remove(&key);
            }
            let _ = events.send(ExecutorEvent::Finished {
                key,
                result,
                metrics,
            });
        });
    }

    fn cancel(&self, key: &TryKey) {
        if let Some(stop) = self.running.lock().ok().and_then(|m| m.get(key).cloned()) {
            // `notify_one` keeps a permit if the waiter is not waiting yet.
            stop.notify_one();
        }
    }
}

/// Why the executor stopped waiting for the child.
enum Ended {
    Exited(ExitStatus),
    TimedOut(Duration),
    Cancelled,
    /// Waiting failed (should not happen): the child cannot be followed
    /// any more, so it is stopped.
    WaitFailed(std::io::Error),
}

async fn run_try(
    config: &Config,
    launch: Launch,
    events: &EventSender,
    stop: &Notify,
) -> (Result<TaskOutput, TaskError>, TryMetrics) {
    let failed = |e: TaskError| (Err(e), TryMetrics::default());
    let Launch {
        key,
        dag,
        ctx,
        inputs,
    } = launch;
    let node = &dag.tasks()[key.task];
    let timeout = node.options.timeout;

    let run_id = ctx.run_id.to_string();
    let payload = LaunchPayload {
        inputs: node
            .upstream
            .iter()
            .filter(|up| up.kind == EdgeKind::Data)
            .filter_map(|up| {
                let id = dag.tasks()[up.task].id.as_str();
                inputs.raw(id).map(|v| (id.to_owned(), v.clone()))
            })
            .collect(),
        context: ctx,
    };
    let payload = match serde_json::to_vec(&payload) {
        Ok(bytes) => bytes,
        Err(e) => {
            return failed(TaskError::msg(format!(
                "cannot encode the launch payload: {e}"
            )))
        }
    };
    let dir = match tempfile::Builder::new().prefix("goflow-try-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            return failed(TaskError::msg(format!(
                "cannot create a temporary directory for the worker's result: {e}"
            )))
        }
    };
    let result_file = dir.path().join("result.json");

    let mut command = Command::new(&config.program);
    command
        .args(&config.args_prefix)
        .args(["tasks", "run"])
        .arg(dag.id().as_str())
        .arg(&run_id)
        .arg(node.id.as_str())
        .arg("--try")
        .arg(key.try_number.to_string())
        // Workers never get the database's credentials: they receive
        // their inputs on stdin and hand back their result as a file.
        .env_remove(crate::db::DATABASE_URL_ENV)
        .env_remove("DATABASE_URL")
        .env_remove("GOFLOW_API_TOKEN")
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .env(RESULT_FILE_ENV, &result_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return failed(TaskError::msg(format!(
                "cannot start the worker process {}: {e}",
                config.program.display()
            )))
        }
    };
    let _ = events.send(ExecutorEvent::Started {
        key: key.clone(),
        handle: child.id().map(|pid| pid.to_string()),
    });

    // Feed stdin concurrently with reading the output, so that neither side
    // blocks on a full pipe. A child that exits without reading it (an
    // unknown task) makes the write fail: that is not the try's error.
    let feeder = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        })
    });
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(forward_lines(
            out,
            LogStream::Stdout,
            key.clone(),
            events.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(forward_lines(
            err,
            LogStream::Stderr,
            key.clone(),
            events.clone(),
        ));
    }

    let ended = wait(&mut child, timeout, stop).await;
    let status = match ended {
        Ended::Exited(status) => Some(status),
        Ended::TimedOut(_) | Ended::Cancelled | Ended::WaitFailed(_) => kill(&mut child).await,
    };
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    drain(readers).await;

    let exit_code = status.and_then(|s| s.code());
    let mut metrics = TryMetrics {
        exit_code,
        ..TryMetrics::default()
    };
    let result = match ended {
        Ended::TimedOut(limit) => Err(TaskError::timed_out(limit)),
        Ended::Cancelled => Err(TaskError::msg("the try was cancelled")),
        Ended::WaitFailed(e) => Err(TaskError::msg(format!(
            "cannot wait for the worker process: {e}"
        ))),
        Ended::Exited(status) => match read_result_file(&result_file) {
            Ok(Some(WorkerResult {
                outcome,
                metrics: measured,
            })) => {
                if let Some(m) = measured {
                    metrics.peak_memory_bytes = m.peak_memory_bytes;
                    metrics.cpu_user_ms = m.cpu_user_ms;
                    metrics.cpu_system_ms = m.cpu_system_ms;
                }
                outcome.into_result()
            }
            Ok(None) => Err(TaskError::msg(died(status))),
            Err(e) => Err(TaskError::msg(format!(
                "{}, and its result file {} cannot be read: {e}",
                died(status),
                result_file.display()
            ))),
        },
    };
    drop(dir);
    (result, metrics)
}

/// Waits for the child to exit, its timeout to pass, or a cancel.
async fn wait(child: &mut Child, timeout: Option<Duration>, stop: &Notify) -> Ended {
    let deadline = async {
        match timeout {
            Some(limit) => {
                tokio::time::sleep(limit).await;
                limit
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(e) => Ended::WaitFailed(e),
        },
        limit = deadline => Ended::TimedOut(limit),
        () = stop.notified() => Ended::Cancelled,
    }
}

/// Kills the child (SIGKILL on Unix) and reaps it.
async fn kill(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill().await;
    child.wait().await.ok()
}

/// Describes a child that exited without reporting a result.
fn died(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("the worker process exited with code {code} without reporting a result");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => format!("the worker process was killed by signal {signal} ({name})"),
                Err(_) => format!("the worker process was killed by signal {signal}"),
            };
        }
    }
    format!("the worker process ended without reporting a result ({status})")
}

/// Sends each line of `stream` as a log event, until it closes.
fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    which: LogStream,
    key: TryKey,
    events: EventSender,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    let _ = events.send(ExecutorEvent::Log {
                        key: key.clone(),
                        stream: which,
                        line,
                    });
                }
            }
        }
    })
}

/// Waits for the output readers to reach the end of their streams, at
/// most [`OUTPUT_GRACE`]; then stops them.
async fn drain(readers: Vec<JoinHandle<()>>) {
    let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    let all = futures::future::join_all(readers);
    if tokio::time::timeout(OUTPUT_GRACE, all).await.is_err() {
        for abort in aborts {
            abort.abort();
        }
    }
}
