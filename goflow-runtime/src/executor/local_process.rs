//! The local-process executor: each try runs in a child process, the
//! binary itself re-executed as `<bin> tasks run <dag> <run> <task> --try
//! <n>` (see [`crate::worker`]).
//!
//! A child gets its context and inputs as a JSON [`LaunchPayload`] on
//! stdin, and writes its result and its own resource use to the file named
//! by [`RESULT_FILE_ENV`], in a temporary directory private to the try.
//! Its stdout and stderr lines become [`ExecutorEvent::Log`]s. A child
//! that dies without writing a result fails the try with its exit code or
//! signal.
//!
//! # Processes
//!
//! On Unix each worker leads a process group of its own, which the
//! processes its task starts inherit. Stopping a try (on
//! [`Executor::cancel`] or at its timeout) sends SIGTERM to that whole
//! group, and SIGKILL to what is left of it after a grace period
//! ([`LocalProcessExecutor::stop_grace`], [`DEFAULT_STOP_GRACE`] by
//! default); the try then ends with one [`ExecutorEvent::Finished`]: a
//! [`TaskErrorKind::Stopped`](goflow_core::TaskErrorKind::Stopped) error
//! when cancelled, [`TaskError::timed_out`] at its timeout. Lines the try
//! printed before it was stopped are still delivered. Processes a try
//! leaves behind after its worker exited are stopped the same way before
//! the try ends.
//!
//! A worker does not outlive the scheduler that started it: the executor
//! passes its own pid in [`PARENT_PID_ENV`], and a worker whose parent is
//! no longer that process (the scheduler was killed, even with SIGKILL)
//! kills its whole process group, itself and its task's processes
//! included (see [`crate::worker::bind_to_parent`]; at once on Linux,
//! through the parent-death signal, within a second elsewhere).
//!
//! The [`ExecutorEvent::Started`] handle is `<pid>:<start time>`, the
//! start time being the process's, in clock ticks since boot, from
//! `/proc/<pid>/stat` (Linux): together they name one process, also after
//! its pid is reused. Elsewhere, and in rows written by older versions,
//! the handle is the bare `<pid>`.
//!
//! # Delivery: at least once, never concurrently
//!
//! A new scheduler process cannot follow a worker an earlier one started
//! (its pipes died with that process), so [`Executor::adopt`] never takes
//! a try over: it makes sure the old worker is gone and returns `false`,
//! and the scheduler counts the try as lost and starts the next one. If
//! the worker is still alive (it is the process of the stored handle: the
//! same pid, the same start time, and the command line of this try), its
//! process group is stopped as a cancel stops it, and `adopt` returns
//! only once it is gone. A process whose identity does not match (its pid
//! was reused) is never signalled. So a try runs at least once, and two
//! tries of one task instance never run at the same time. On systems
//! without `/proc` an old worker cannot be identified, and is left to its
//! own parent-death check.

use std::collections::HashMap;
use std::fmt;
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

use super::{Adoption, EventSender, Executor, ExecutorEvent, Launch, TryKey, TryMetrics};
pub use crate::worker::PARENT_PID_ENV;
use crate::worker::{read_result_file, LaunchPayload, WorkerResult, RESULT_FILE_ENV};

/// How long the executor waits, after the child exited, for the rest of
/// its output (a grandchild may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// How long a try's processes get between SIGTERM and SIGKILL when the try
/// is stopped, unless [`LocalProcessExecutor::stop_grace`] says otherwise.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// How often the executor looks whether the processes it stops are gone.
const STOP_POLL: Duration = Duration::from_millis(25);

/// How long the executor waits for processes to vanish after SIGKILL
/// (which cannot be ignored, but takes a moment to land).
const KILL_WAIT: Duration = Duration::from_secs(5);

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
    stop_grace: Duration,
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
                stop_grace: DEFAULT_STOP_GRACE,
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

    /// How long the processes of a try being stopped (cancelled, timed out,
    /// or found alive on adoption) get between SIGTERM and SIGKILL.
    /// [`DEFAULT_STOP_GRACE`] by default.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        Arc::make_mut(&mut self.config).stop_grace = grace;
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
            let _ = events
                .send(ExecutorEvent::Finished {
                    key,
                    result,
                    metrics,
                })
                .await;
        });
    }

    fn cancel(&self, key: &TryKey) {
        if let Some(stop) = self.running.lock().ok().and_then(|m| m.get(key).cloned()) {
            // `notify_one` keeps a permit if the waiter is not waiting yet.
            stop.notify_one();
        }
    }

    /// Never takes the try over (see the module docs): stops its worker if
    /// it is still alive, waits until it is gone, and returns `false`.
    /// Blocks for as long as that takes (at most the stop grace and a few
    /// seconds), outside the async runtime's worker threads when it can.
    fn adopt(&self, launch: Launch, previous: &Adoption, _events: EventSender) -> bool {
        let Some(node) = launch.dag.tasks().get(launch.key.task) else {
            return false;
        };
        let args = worker_args(
            launch.dag.id().as_str(),
            launch.ctx.run_id().as_str(),
            node.id.as_str(),
            launch.key.try_number,
        );
        let grace = self.config.stop_grace;
        outside_the_runtime(|| adoption::stop_previous_worker(&previous.handle, &args, grace));
        false
    }
}

/// The arguments that make a goflow binary run one try (after any prefix).
fn worker_args(dag_id: &str, run_id: &str, task_id: &str, try_number: u32) -> Vec<String> {
    vec![
        "tasks".to_owned(),
        "run".to_owned(),
        dag_id.to_owned(),
        run_id.to_owned(),
        task_id.to_owned(),
        "--try".to_owned(),
        try_number.to_string(),
    ]
}

/// Runs blocking work without stalling other tasks of a multi-threaded
/// runtime (a current-thread runtime has no other thread to hand its tasks
/// to, so there it simply blocks).
fn outside_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A worker process as its [`ExecutorEvent::Started`] handle names it:
/// `<pid>:<start time>`, or a bare `<pid>` where the start time is not
/// known (no `/proc`, rows of older versions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WorkerHandle {
    pid: u32,
    /// In clock ticks since boot (`/proc/<pid>/stat`, field 22).
    start_time: Option<u64>,
}

impl WorkerHandle {
    /// The handle of the running process `pid`.
    fn of(pid: u32) -> Self {
        #[cfg(target_os = "linux")]
        let start_time = procfs::read_stat(pid).map(|s| s.start_time);
        #[cfg(not(target_os = "linux"))]
        let start_time = None;
        Self { pid, start_time }
    }

    /// Reads a stored handle; `None` when it is not one (empty, garbled).
    fn parse(handle: &str) -> Option<Self> {
        let handle = handle.trim();
        let (pid, start_time) = match handle.split_once(':') {
            Some((pid, start)) => (pid, Some(start.parse::<u64>().ok()?)),
            None => (handle, None),
        };
        let pid = pid.parse::<u32>().ok().filter(|&p| p > 1)?;
        Some(Self { pid, start_time })
    }
}

impl fmt::Display for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start_time {
            Some(start) => write!(f, "{}:{start}", self.pid),
            None => write!(f, "{}", self.pid),
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

    let run_id = ctx.run_id().to_string();
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
        .args(worker_args(
            dag.id().as_str(),
            &run_id,
            node.id.as_str(),
            key.try_number,
        ))
        // Workers never get the database's credentials: they receive
        // their inputs on stdin and hand back their result as a file.
        .env_remove(crate::db::DATABASE_URL_ENV)
        .env_remove("DATABASE_URL")
        .env_remove("GOFLOW_API_TOKEN")
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .env(RESULT_FILE_ENV, &result_file)
        // A host binary embedding goflow knows by it that it is a worker.
        .env(crate::server::WORKER_ENV, "1")
        // The worker stops (with its group) when this process is gone.
        .env(PARENT_PID_ENV, std::process::id().to_string())
        // Its stderr is the try's log: plain lines, whatever the
        // scheduler's own log format.
        .env("GOFLOW_LOG_FORMAT", "text")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own process group: the try's processes are stopped together,
    // and a terminal's Ctrl-C reaches the scheduler only.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return failed(TaskError::msg(format!(
                "cannot start the worker process {}: {e}",
                config.program.display()
            )))
        }
    };
    let pid = child.id();
    // Kills the group if this try is dropped before its end (the runtime
    // shuts down); `kill_on_drop` only reaches the worker itself.
    let mut group = pid.map(group::Group::new);
    let _ = events
        .send(ExecutorEvent::Started {
            key: key.clone(),
            handle: pid.map(|pid| WorkerHandle::of(pid).to_string()),
        })
        .await;
    // The command, in the try's log (goflow's own line).
    let argv: Vec<String> = std::iter::once(command.as_std().get_program())
        .chain(command.as_std().get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let _ = events
        .send(ExecutorEvent::Log {
            key: key.clone(),
            stream: LogStream::System,
            line: format!(
                "INFO worker pid {} runs: {}",
                pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                argv.join(" ")
            ),
        })
        .await;

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
    let exited = match &ended {
        Ended::Exited(status) => Some(*status),
        Ended::TimedOut(_) | Ended::Cancelled | Ended::WaitFailed(_) => None,
    };
    // Stops the worker when it has not exited, and what it left behind
    // when it has.
    let status = match group.as_mut() {
        Some(group) => group.stop(&mut child, exited, config.stop_grace).await,
        None => match exited {
            Some(status) => Some(status),
            None => kill(&mut child).await,
        },
    };
    if let Some(group) = group.as_mut() {
        group.disarm();
    }
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
        Ended::Cancelled => Err(TaskError::stopped(
            "the try was cancelled: its processes were stopped",
        )),
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

/// Kills the child (SIGKILL on Unix) and reaps it: for a child whose
/// process group is not known.
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
                    let _ = events
                        .send(ExecutorEvent::Log {
                            key: key.clone(),
                            stream: which,
                            line,
                        })
                        .await;
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

/// The process group a worker leads, and how to stop it.
#[cfg(unix)]
mod group {
    use std::process::ExitStatus;
    use std::time::Duration;

    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    use tokio::process::Child;
    use tokio::time::Instant;

    use super::{KILL_WAIT, STOP_POLL};

    /// A worker's process group: its id is the worker's pid.
    pub(super) struct Group {
        pgid: u32,
        /// Whether the worker was reaped. From then on its pid may be
        /// given to another process, and only the processes left in the
        /// group keep the id theirs.
        leader_reaped: bool,
        /// Whether dropping it kills the group.
        armed: bool,
    }

    impl Group {
        pub(super) fn new(pgid: u32) -> Self {
            Self {
                pgid,
                leader_reaped: false,
                armed: true,
            }
        }

        /// Whether processes of the group may still run: the worker until
        /// it is reaped, then whatever it left behind.
        fn alive(&self) -> bool {
            !self.leader_reaped || leftovers(self.pgid)
        }

        /// Signals every process of the group, as long as the group is
        /// still the worker's (an id in use as a group id is never given
        /// to a new process, so this cannot reach a stranger).
        fn signal(&self, signal: Signal) {
            if self.alive() {
                if let Ok(pgid) = i32::try_from(self.pgid) {
                    let _ = killpg(Pid::from_raw(pgid), signal);
                }
            }
        }

        /// Stops the group: SIGTERM to all its processes, SIGKILL to those
        /// left after `grace`. `exited` is the worker's status if it has
        /// exited (and was reaped) already: then only what it left behind
        /// is stopped, if anything. Returns the worker's exit status.
        pub(super) async fn stop(
            &mut self,
            child: &mut Child,
            exited: Option<ExitStatus>,
            grace: Duration,
        ) -> Option<ExitStatus> {
            let mut status = exited;
            self.leader_reaped = status.is_some();
            if !self.alive() {
                return status;
            }
            self.signal(Signal::SIGTERM);
            // A stopped process acts on SIGTERM only once continued.
            self.signal(Signal::SIGCONT);
            let deadline = Instant::now() + grace;
            loop {
                if status.is_none() {
                    if let Ok(Some(s)) = child.try_wait() {
                        status = Some(s);
                        self.leader_reaped = true;
                    }
                }
                if !self.alive() {
                    return status;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                tokio::time::sleep(STOP_POLL.min(deadline - now)).await;
            }
            self.signal(Signal::SIGKILL);
            if status.is_none() {
                status = child.wait().await.ok();
                self.leader_reaped = true;
            }
            let deadline = Instant::now() + KILL_WAIT;
            while self.alive() && Instant::now() < deadline {
                tokio::time::sleep(STOP_POLL).await;
            }
            status
        }

        /// The try ended: dropping the group no longer kills it.
        pub(super) fn disarm(&mut self) {
            self.armed = false;
        }
    }

    impl Drop for Group {
        fn drop(&mut self) {
            if self.armed {
                self.signal(Signal::SIGKILL);
            }
        }
    }

    /// Whether the group `pgid`, whose leader was reaped, still has
    /// running processes.
    #[cfg(target_os = "linux")]
    fn leftovers(pgid: u32) -> bool {
        let members = super::procfs::group(pgid);
        // A process with the leader's pid is a new one: the group id is
        // free again, and what bears it now is another group.
        !members.iter().any(|m| m.pid == pgid) && members.iter().any(|m| m.is_live())
    }

    /// Without `/proc`: whether the group has processes (zombies too).
    #[cfg(not(target_os = "linux"))]
    fn leftovers(pgid: u32) -> bool {
        i32::try_from(pgid).is_ok_and(|pgid| killpg(Pid::from_raw(pgid), None).is_ok())
    }
}

/// Without process groups: the worker alone is killed.
#[cfg(not(unix))]
mod group {
    use std::process::ExitStatus;
    use std::time::Duration;

    use tokio::process::Child;

    pub(super) struct Group;

    impl Group {
        pub(super) fn new(_pgid: u32) -> Self {
            Group
        }

        pub(super) async fn stop(
            &mut self,
            child: &mut Child,
            exited: Option<ExitStatus>,
            _grace: Duration,
        ) -> Option<ExitStatus> {
            match exited {
                Some(status) => Some(status),
                None => super::kill(child).await,
            }
        }

        pub(super) fn disarm(&mut self) {}
    }
}

/// What Linux's `/proc` says about processes.
#[cfg(target_os = "linux")]
mod procfs {
    /// The fields of `/proc/<pid>/stat` goflow uses.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(super) struct ProcStat {
        /// Field 1.
        pub(super) pid: u32,
        /// Field 2, the executable's name (truncated to 15 bytes by the
        /// kernel), without its parentheses. It may hold spaces and
        /// parentheses itself.
        pub(super) comm: String,
        /// Field 3: `R`, `S`, `D`, `Z` (zombie), ...
        pub(super) state: char,
        /// Field 5, the process group.
        pub(super) pgrp: u32,
        /// Field 22, when the process started, in clock ticks since boot.
        pub(super) start_time: u64,
    }

    impl ProcStat {
        /// Whether it still runs: not a zombie waiting to be reaped.
        pub(super) fn is_live(&self) -> bool {
            !matches!(self.state, 'Z' | 'X' | 'x')
        }
    }

    /// Parses the text of `/proc/<pid>/stat`. The name in field 2 runs
    /// from the first `(` to the last `)`, whatever it contains.
    pub(super) fn parse_stat(text: &str) -> Option<ProcStat> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        if close < open {
            return None;
        }
        let pid = text[..open].trim().parse().ok()?;
        let comm = text[open + 1..close].to_owned();
        // Fields 3 onwards.
        let mut fields = text[close + 1..].split_ascii_whitespace();
        let mut state = fields.next()?.chars();
        let (Some(state), None) = (state.next(), state.next()) else {
            return None;
        };
        let _ppid: i64 = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        // Skips fields 6 to 21.
        let start_time = fields.nth(16)?.parse().ok()?;
        Some(ProcStat {
            pid,
            comm,
            state,
            pgrp,
            start_time,
        })
    }

    /// The process `pid`, if there is one.
    pub(super) fn read_stat(pid: u32) -> Option<ProcStat> {
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The arguments `pid` was started with (its program first).
    pub(super) fn cmdline(pid: u32) -> Option<Vec<String>> {
        let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
        Some(
            bytes
                .split(|&b| b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect(),
        )
    }

    /// The processes of process group `pgid`, zombies included.
    pub(super) fn group(pgid: u32) -> Vec<ProcStat> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(read_stat)
            .filter(|stat| stat.pgrp == pgid)
            .collect()
    }
}

/// [`Executor::adopt`]: stopping a worker that an earlier scheduler
/// process started.
mod adoption {
    use std::time::Duration;

    /// Makes sure the worker of `handle` no longer runs: when it still
    /// does (same pid, same start time, started with `args`), stops its
    /// process group (SIGTERM, SIGKILL after `grace`) and waits until it
    /// is gone. Anything else is left alone.
    #[cfg(target_os = "linux")]
    pub(super) fn stop_previous_worker(handle: &str, args: &[String], grace: Duration) {
        use super::procfs;
        use super::{WorkerHandle, KILL_WAIT};
        use nix::sys::signal::Signal;

        let Some(handle) = WorkerHandle::parse(handle) else {
            if !handle.trim().is_empty() {
                tracing::warn!(handle, "not a local worker's handle: nothing to stop");
            }
            return;
        };
        let Some(stat) = procfs::read_stat(handle.pid).filter(procfs::ProcStat::is_live) else {
            tracing::debug!(%handle, "the previous worker is gone");
            return;
        };
        if handle.start_time.is_some_and(|t| t != stat.start_time) {
            tracing::debug!(%handle, start_time = stat.start_time, "the previous worker is gone; its pid is another process's now");
            return;
        }
        // The pid and start time name a process; its arguments say it runs
        // this try (they alone identify an old row's bare pid).
        let runs_this_try = procfs::cmdline(handle.pid)
            .is_some_and(|argv| argv.windows(args.len()).any(|w| w == args));
        if !runs_this_try || handle.pid == std::process::id() {
            tracing::info!(%handle, process = %stat.comm, "pid {} does not run this try: left alone", handle.pid);
            return;
        }
        let own_group = nix::unistd::getpgrp().as_raw();
        let target = Target {
            pid: handle.pid,
            start_time: stat.start_time,
            group: stat.pgrp == stat.pid && i32::try_from(stat.pgrp).ok() != Some(own_group),
        };
        tracing::warn!(%handle, "the worker an earlier scheduler started for this try still runs: stopping it");
        target.signal(Signal::SIGTERM);
        target.signal(Signal::SIGCONT);
        if target.gone_within(grace) {
            return;
        }
        target.signal(Signal::SIGKILL);
        if !target.gone_within(KILL_WAIT) {
            tracing::error!(%handle, "the earlier worker of this try still runs after SIGKILL");
        }
    }

    /// Without `/proc` a process cannot be told from another that got its
    /// pid later: the earlier worker is left to its own check of its
    /// parent (it stops within a second of its scheduler's end).
    #[cfg(not(target_os = "linux"))]
    pub(super) fn stop_previous_worker(handle: &str, _args: &[String], _grace: Duration) {
        if !handle.trim().is_empty() {
            tracing::debug!(
                handle,
                "cannot identify an earlier worker on this system: left to stop itself"
            );
        }
    }

    /// An earlier worker, identified.
    #[cfg(target_os = "linux")]
    struct Target {
        pid: u32,
        start_time: u64,
        /// Whether it leads a process group of its own (workers of older
        /// versions did not: they are stopped alone).
        group: bool,
    }

    #[cfg(target_os = "linux")]
    impl Target {
        /// Whether it, or a process of its group, still runs.
        fn alive(&self) -> bool {
            match super::procfs::read_stat(self.pid) {
                // Its pid is another process's: so is the group id.
                Some(s) if s.start_time != self.start_time => false,
                Some(s) if s.is_live() => true,
                _ => {
                    self.group
                        && super::procfs::group(self.pid)
                            .iter()
                            .any(|m| m.pid != self.pid && m.is_live())
                }
            }
        }

        fn signal(&self, signal: nix::sys::signal::Signal) {
            use nix::sys::signal::{kill, killpg};
            use nix::unistd::Pid;
            let Ok(pid) = i32::try_from(self.pid) else {
                return;
            };
            if !self.alive() {
                return;
            }
            let _ = if self.group {
                killpg(Pid::from_raw(pid), signal)
            } else {
                kill(Pid::from_raw(pid), signal)
            };
        }

        /// Waits, at most `limit`, until nothing of it runs.
        fn gone_within(&self, limit: Duration) -> bool {
            let deadline = std::time::Instant::now() + limit;
            loop {
                if !self.alive() {
                    return true;
                }
                let now = std::time::Instant::now();
                if now >= deadline {
                    return false;
                }
                std::thread::sleep(super::STOP_POLL.min(deadline - now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_old_bare_pids_are_read() {
        let handle = WorkerHandle {
            pid: 4242,
            start_time: Some(123_456),
        };
        assert_eq!(handle.to_string(), "4242:123456");
        assert_eq!(WorkerHandle::parse("4242:123456"), Some(handle));
        assert_eq!(
            WorkerHandle::parse(" 4242 "),
            Some(WorkerHandle {
                pid: 4242,
                start_time: None
            })
        );
        for garbled in [
            "", "abc", "12:", "12:x", ":5", "-3", "0", "1", "1:5", "job-abc",
        ] {
            assert_eq!(WorkerHandle::parse(garbled), None, "{garbled:?}");
        }
    }

    #[cfg(target_os = "linux")]
    mod procfs {
        use super::super::procfs::{cmdline, group, parse_stat, read_stat, ProcStat};
        use super::super::WorkerHandle;

        /// A stat line of a process named `comm`, started at tick 987654.
        fn line(comm: &str, state: char) -> String {
            format!(
                "4242 ({comm}) {state} 1 4240 4240 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 \
                 987654 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n"
            )
        }

        #[test]
        fn a_stat_line_is_parsed() {
            assert_eq!(
                parse_stat(&line("goflow", 'S')),
                Some(ProcStat {
                    pid: 4242,
                    comm: "goflow".into(),
                    state: 'S',
                    pgrp: 4240,
                    start_time: 987_654,
                })
            );
        }

        #[test]
        fn the_name_may_hold_spaces_and_parentheses() {
            for comm in [
                "my worker",
                "a) S 1 2 (b",
                "((x))",
                ")",
                "",
                "tasks run ) 7",
            ] {
                let stat = parse_stat(&line(comm, 'R')).unwrap_or_else(|| panic!("{comm:?}"));
                assert_eq!(stat.comm, comm);
                assert_eq!(
                    (stat.pid, stat.pgrp, stat.start_time),
                    (4242, 4240, 987_654)
                );
            }
        }

        #[test]
        fn zombies_are_not_live() {
            assert!(parse_stat(&line("w", 'S')).unwrap().is_live());
            assert!(!parse_stat(&line("w", 'Z')).unwrap().is_live());
        }

        #[test]
        fn malformed_lines_are_none() {
            let full = line("w", 'S');
            for bad in [
                "",
                "4242",
                "4242 (w",
                "x (w) S 1 2 3",
                "4242 (w) S 1 2",
                &full[..full.find("987654").unwrap()],
                &full.replace("987654", "-1"),
                &full.replace(") S", ") SS"),
            ] {
                assert_eq!(parse_stat(bad), None, "{bad:?}");
            }
        }

        #[test]
        fn this_process_is_read_from_proc() {
            let me = std::process::id();
            let stat = read_stat(me).unwrap();
            assert_eq!(stat.pid, me);
            assert!(stat.is_live());
            assert!(stat.start_time > 0);
            assert!(group(stat.pgrp).iter().any(|s| s.pid == me));
            let handle = WorkerHandle::of(me);
            assert_eq!(handle.start_time, Some(stat.start_time));
            assert_eq!(WorkerHandle::parse(&handle.to_string()), Some(handle));
            let argv = cmdline(me).unwrap();
            assert_eq!(argv.len(), std::env::args().count());
            assert!(read_stat(u32::MAX).is_none());
        }
    }
}
