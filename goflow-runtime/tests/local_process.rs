//! The local-process executor against a real child process.
//!
//! There is no goflow binary for tests to run, so this test binary is its
//! own worker: the executor re-runs it as `<this test binary> --exact
//! worker_entry --nocapture -- tasks run ...` with `GOFLOW_TEST_WORKER=1`,
//! and [`worker_entry`] then behaves like a goflow binary's `main`. In the
//! same way [`scheduler_entry`] runs a scheduler, for the test that kills
//! one with SIGKILL.

mod support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use goflow_core::{
    Dag, DagBuilder, DataInterval, ExecutorKind, Inputs, RunId, RunType, TaskContext,
    TaskContextBuilder, TaskError, TaskErrorKind, TaskFn, TaskFuture, TaskOptions, TaskOutput,
    TaskSpec,
};
use goflow_runtime::cli::{run, Cli, CliError};
use goflow_runtime::executor::{
    Adoption, Executor, ExecutorEvent, Launch, LocalProcessExecutor, TryKey, TryMetrics,
};
use goflow_runtime::scheduler::{Scheduler, SchedulerConfig};
use goflow_runtime::worker::{LaunchPayload, WorkerOutcome, WorkerResult};
use goflow_runtime::Registry;
use goflow_store::LogStream;
use serde_json::json;

use support::WORKER_ENV;
const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// The test DAG: one task per behaviour under test.
// ---------------------------------------------------------------------------

fn output(value: serde_json::Value) -> Result<TaskOutput, TaskError> {
    Ok(TaskOutput {
        value,
        follow: None,
    })
}

fn source(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { output(json!(21)) })
}

/// Reads its upstream's output, prints on both streams, returns a value
/// derived from the input and the context, and chooses a branch.
fn double(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let n = inputs.read::<u64>("source");
    // `fail` is no upstream of this task: its output must not be sent.
    let leaked = inputs.raw("fail").is_some();
    Box::pin(async move {
        let n = n?;
        println!("doubling {n}");
        eprintln!("a warning on stderr");
        tracing::warn!(n, "an odd number of rows");
        Ok(TaskOutput {
            value: json!({"doubled": n * 2, "run": ctx.run_id().as_str(), "try": ctx.try_number(), "leaked": leaked}),
            follow: Some(vec!["fail".to_owned()]),
        })
    })
}

fn fail(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::fatal("the warehouse is gone")) })
}

fn skip(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::skip("no data today")) })
}

/// Blocks its thread: only killing the process stops it (the worker's own
/// timeout cannot fire while the body holds the thread).
fn hang(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        println!("hanging");
        std::thread::sleep(Duration::from_secs(3600));
        output(json!(null))
    })
}

fn sleep(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        println!("sleeping");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        output(json!(null))
    })
}

fn boom(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { panic!("kaboom") })
}

fn exit3(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { std::process::exit(3) })
}

fn abort(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { std::process::abort() })
}

/// Allocates and touches 64 MiB.
fn memory(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        let block = vec![1u8; 64 << 20];
        let block = std::hint::black_box(block);
        output(json!(block
            .iter()
            .step_by(4096)
            .map(|&b| u64::from(b))
            .sum::<u64>()))
    })
}

/// Burns about 400 ms of CPU.
fn burn(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        let start = Instant::now();
        let mut x = 1u64;
        while start.elapsed() < Duration::from_millis(400) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        output(json!(x % 2))
    })
}

/// Starts a grandchild that ignores SIGTERM (`sleep` under `trap "" TERM`),
/// writes `<its own pid> <the grandchild's pid>` to the file named by the
/// run's `pid_file` conf, and sleeps.
fn family(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    let pid_file = ctx.conf()["pid_file"].as_str().map(PathBuf::from);
    Box::pin(async move {
        let pid_file = pid_file.ok_or_else(|| TaskError::fatal("no pid_file in the conf"))?;
        let grandchild = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 300"])
            .spawn()?;
        let tmp = pid_file.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}", std::process::id(), grandchild.id()))?;
        std::fs::rename(&tmp, &pid_file)?;
        println!("sleeping");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        output(json!(null))
    })
}

/// Handles SIGTERM by saying so, and sleeps on: only SIGKILL ends it.
fn stubborn(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        println!("ignoring SIGTERM");
        loop {
            term.recv().await;
            println!("got SIGTERM, ignoring it");
        }
    })
}

fn env_probe(_: TaskContext, _: &Inputs) -> TaskFuture {
    let seen: Vec<String> = ["GOFLOW_DATABASE_URL", "DATABASE_URL"]
        .into_iter()
        .filter(|k| std::env::var_os(k).is_some())
        .map(str::to_owned)
        .collect();
    Box::pin(async move { output(json!(seen)) })
}

fn spec(id: &str, data: &[&str], timeout: Option<Duration>, run: TaskFn) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "test",
        options: TaskOptions {
            timeout,
            ..Default::default()
        },
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

fn tasks() -> Vec<TaskSpec> {
    vec![
        spec("source", &[], None, source),
        spec("double", &["source"], None, double),
        spec("fail", &[], None, fail),
        spec("skip", &[], None, skip),
        spec("hang", &[], Some(Duration::from_millis(300)), hang),
        spec("sleep", &[], None, sleep),
        spec("boom", &[], None, boom),
        spec("exit3", &[], None, exit3),
        spec("abort", &[], None, abort),
        spec("memory", &[], None, memory),
        spec("burn", &[], None, burn),
        spec("env_probe", &[], None, env_probe),
        spec("family", &[], None, family),
        spec("stubborn", &[], None, stubborn),
    ]
}

/// The DAG of the scheduler that is killed: one local-process task whose
/// worker and grandchild sleep.
fn orphans_dag() -> Dag {
    let mut family = spec("family", &[], None, family);
    family.options.executor = Some(ExecutorKind::LocalProcess);
    DagBuilder::new("orphans").task(family).build().unwrap()
}

/// The DAG as the worker knows it.
fn dag() -> Dag {
    tasks()
        .into_iter()
        .fold(DagBuilder::new("lp"), DagBuilder::task)
        .build()
        .unwrap()
}

/// The DAG as a scheduler with a newer build would know it: one task more
/// than the worker has.
fn dag_with_ghost() -> Dag {
    tasks()
        .into_iter()
        .chain([spec("ghost", &[], None, source)])
        .fold(DagBuilder::new("lp"), DagBuilder::task)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// The worker: this same binary, re-run by the executor.
// ---------------------------------------------------------------------------

/// Returns at once in a normal test run; in a child started by the
/// executor, runs `tasks run ...` like a goflow binary and exits.
#[test]
fn worker_entry() {
    support::act_as_goflow_binary(|| Registry::from_dags([dag(), orphans_dag()]).unwrap());
}

/// Set to a database URL in the environment of a scheduler this binary
/// runs as a child process.
const SCHEDULER_DB_ENV: &str = "GOFLOW_TEST_SCHEDULER_DB";

/// Returns at once in a normal test run; with [`SCHEDULER_DB_ENV`] set,
/// runs a scheduler of [`orphans_dag`] on that database until killed,
/// its tasks in worker processes (this binary again, as [`worker_entry`]).
/// It is built as an embedding service builds one: the CLI's `scheduler`
/// re-executes its binary without the test harness's arguments.
#[test]
fn scheduler_entry() {
    let Ok(url) = std::env::var(SCHEDULER_DB_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let store = goflow_runtime::db::open(&url).await.expect("the store");
        let mut config = SchedulerConfig::default();
        config.id = "orphans-test".to_owned();
        config.default_executor = ExecutorKind::LocalProcess;
        let registry = Registry::from_dags([orphans_dag()]).unwrap();
        Scheduler::new(store, Arc::new(registry), config)
            .with_executor(Arc::new(executor()))
            .run(std::future::pending())
            .await
            .expect("the scheduler runs");
    });
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn executor() -> LocalProcessExecutor {
    LocalProcessExecutor::with_program(
        std::env::current_exe().unwrap(),
        support::entry_args("worker_entry"),
    )
    .env(WORKER_ENV, "1")
}

fn context(dag: &Dag, task: &str) -> TaskContextBuilder {
    TaskContext::builder(
        dag.id().clone(),
        RunId::new("manual__1").unwrap(),
        dag.task(task).unwrap().id.clone(),
    )
    .try_number(2)
    .max_tries(3)
    .logical_date(Utc::now())
}

fn launch_of(dag: Dag, task: &str, inputs: Inputs) -> Launch {
    Launch {
        key: TryKey {
            run: 1,
            task: dag.index_of(task).unwrap(),
            try_number: 2,
        },
        ctx: context(&dag, task).build(),
        dag: Arc::new(dag),
        inputs,
    }
}

/// Everything the executor reported about one try.
#[derive(Debug)]
struct Report {
    started: Option<Option<String>>,
    logs: Vec<(LogStream, String)>,
    result: Result<TaskOutput, TaskError>,
    metrics: TryMetrics,
}

impl Report {
    fn log(&self, stream: LogStream, text: &str) -> bool {
        self.logs
            .iter()
            .any(|(s, line)| *s == stream && line.contains(text))
    }

    fn error(&self) -> &TaskError {
        self.result
            .as_ref()
            .expect_err("the try should have failed")
    }
}

/// Launches and collects events up to `Finished`; `then` runs after the
/// first event for which `ready` is true (e.g. to cancel).
async fn run_with(
    exec: &LocalProcessExecutor,
    launch: Launch,
    ready: impl Fn(&ExecutorEvent) -> bool,
    then: impl FnOnce(&TryKey),
) -> Report {
    let key = launch.key.clone();
    let (tx, mut rx) =
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
    exec.launch(launch, tx);
    let mut then = Some(then);
    let mut started = None;
    let mut logs = Vec::new();
    let collect = async {
        loop {
            let event = rx.recv().await.expect("a Finished event");
            if ready(&event) {
                if let Some(f) = then.take() {
                    f(&key);
                }
            }
            match event {
                ExecutorEvent::Started { key: k, handle } => {
                    assert_eq!(k, key);
                    assert!(started.is_none(), "Started twice");
                    started = Some(handle);
                }
                ExecutorEvent::Log { stream, line, .. } => logs.push((stream, line)),
                ExecutorEvent::Finished {
                    key: k,
                    result,
                    metrics,
                } => {
                    assert_eq!(k, key);
                    return (result, metrics);
                }
            }
        }
    };
    let (result, metrics) = tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("the try should finish within a minute");
    // Exactly one Finished, and nothing after it.
    assert!(rx.recv().await.is_none(), "events after Finished");
    Report {
        started,
        logs,
        result,
        metrics,
    }
}

async fn run_task(task: &str) -> Report {
    run_with(
        &executor(),
        launch_of(dag(), task, Inputs::new()),
        |_| false,
        |_| {},
    )
    .await
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_task_gets_its_inputs_and_returns_its_output() {
    let mut inputs = Inputs::new();
    inputs.insert("source", json!(21));
    // Not a data upstream of `double`: must not be sent.
    inputs.insert("fail", json!("unrelated"));
    let exec = executor();
    let report = run_with(&exec, launch_of(dag(), "double", inputs), |_| false, |_| {}).await;

    let handle = report.started.clone().flatten().expect("a handle");
    let (pid, start) = handle.split_once(':').expect("<pid>:<start time>");
    assert!(pid.parse::<u32>().is_ok(), "{handle}");
    assert!(start.parse::<u64>().is_ok(), "{handle}");
    let out = report.result.as_ref().expect("success");
    assert_eq!(
        out.value,
        json!({"doubled": 42, "run": "manual__1", "try": 2, "leaked": false})
    );
    assert_eq!(out.follow, Some(vec!["fail".to_owned()]));
    assert_eq!(report.metrics.exit_code, Some(0));
    assert_eq!(exec.running(), 0);
}

#[tokio::test]
async fn stdout_and_stderr_lines_become_log_events() {
    let mut inputs = Inputs::new();
    inputs.insert("source", json!(5));
    let report = run_with(
        &executor(),
        launch_of(dag(), "double", inputs),
        |_| false,
        |_| {},
    )
    .await;
    assert!(
        report.log(LogStream::Stdout, "doubling 5"),
        "{:?}",
        report.logs
    );
    assert!(
        report.log(LogStream::Stderr, "a warning on stderr"),
        "{:?}",
        report.logs
    );
    // The task's `tracing` events come with their level, as the store
    // reads it.
    let warned: Vec<&String> = report
        .logs
        .iter()
        .filter(|(s, line)| *s == LogStream::Stderr && line.contains("an odd number of rows"))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", report.logs);
    assert_eq!(
        goflow_store::LogLevel::of_line(warned[0]),
        Some(goflow_store::LogLevel::Warn),
        "{}",
        warned[0]
    );
    assert!(
        !warned[0].contains('\u{1b}'),
        "no colours in a log: {}",
        warned[0]
    );
    // goflow's own line names the worker and its command.
    assert!(
        report.logs.iter().any(|(s, line)| *s == LogStream::System
            && line.starts_with("INFO worker pid ")
            && line.contains(" tasks run lp ")
            && line.contains(" double --try ")),
        "{:?}",
        report.logs
    );
    assert!(
        report.logs.iter().all(|(_, line)| !line.ends_with('\n')),
        "{:?}",
        report.logs
    );
    assert!(
        !report.log(LogStream::Stdout, "a warning"),
        "{:?}",
        report.logs
    );
}

#[tokio::test]
async fn a_missing_input_fails_as_an_input_error() {
    let report = run_task("double").await;
    let err = report.error();
    assert_eq!(err.kind(), TaskErrorKind::Input);
    assert!(err.message().contains("\"source\""), "{err}");
}

#[tokio::test]
async fn a_failure_keeps_its_kind_and_message_and_exits_1() {
    let report = run_task("fail").await;
    let err = report.error();
    assert_eq!(err.kind(), TaskErrorKind::Fatal);
    assert_eq!(err.message(), "the warehouse is gone");
    assert_eq!(report.metrics.exit_code, Some(1));
}

#[tokio::test]
async fn a_skip_round_trips_and_exits_0() {
    let report = run_task("skip").await;
    let err = report.error();
    assert!(err.is_skip(), "{err:?}");
    assert_eq!(err.message(), "no data today");
    assert_eq!(report.metrics.exit_code, Some(0));
}

#[tokio::test]
async fn the_timeout_kills_a_task_that_blocks() {
    let report = run_task("hang").await;
    let err = report.error();
    assert_eq!(err.kind(), TaskErrorKind::TimedOut, "{err:?}");
    // Killed by the executor, not ended by the worker's own timeout.
    assert_eq!(report.metrics.exit_code, None);
}

#[tokio::test]
async fn cancel_kills_the_process() {
    let exec = executor();
    let report = run_with(
        &exec,
        launch_of(dag(), "sleep", Inputs::new()),
        |e| matches!(e, ExecutorEvent::Log { line, .. } if line == "sleeping"),
        |key| exec.cancel(key),
    )
    .await;
    let err = report.error();
    assert_eq!(err.kind(), TaskErrorKind::Stopped, "{err:?}");
    assert!(err.message().contains("cancelled"), "{err}");
    assert_eq!(report.metrics.exit_code, None);
    assert_eq!(exec.running(), 0);
}

#[tokio::test]
async fn a_panic_is_reported_as_panicked() {
    let report = run_task("boom").await;
    let err = report.error();
    assert_eq!(err.kind(), TaskErrorKind::Panicked);
    assert!(err.message().contains("kaboom"), "{err}");
    assert_eq!(report.metrics.exit_code, Some(1));
}

#[tokio::test]
async fn a_process_that_exits_without_a_result_fails_with_its_code() {
    let report = run_task("exit3").await;
    let err = report.error();
    assert_eq!(err.kind(), TaskErrorKind::Failed);
    assert!(err.message().contains("exited with code 3"), "{err}");
    assert_eq!(report.metrics.exit_code, Some(3));
}

#[tokio::test]
async fn a_process_killed_by_a_signal_fails_naming_it() {
    let report = run_task("abort").await;
    let err = report.error();
    assert!(
        err.message().contains("killed by signal 6 (SIGABRT)"),
        "{err}"
    );
    assert_eq!(report.metrics.exit_code, None);
}

#[tokio::test]
async fn the_worker_reports_its_peak_memory() {
    let report = run_task("memory").await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    let peak = report.metrics.peak_memory_bytes.expect("peak memory");
    assert!(peak >= 64 * MIB, "peak {} MiB", peak / MIB);
}

#[tokio::test]
async fn the_worker_reports_its_cpu_time() {
    let report = run_task("burn").await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    let user = report.metrics.cpu_user_ms.expect("user CPU time");
    assert!(user > 100, "{user} ms");
    assert!(report.metrics.cpu_system_ms.is_some());
    // A task that does little uses little: the number is the worker's own.
    let idle = run_task("skip")
        .await
        .metrics
        .cpu_user_ms
        .expect("user CPU");
    assert!(idle < user, "{idle} ms idle vs {user} ms burning");
}

#[tokio::test]
async fn an_unknown_task_exits_2_with_a_message_naming_it() {
    let report = run_with(
        &executor(),
        launch_of(dag_with_ghost(), "ghost", Inputs::new()),
        |_| false,
        |_| {},
    )
    .await;
    assert_eq!(report.metrics.exit_code, Some(2));
    assert!(
        report.error().message().contains("exited with code 2"),
        "{:?}",
        report.error()
    );
    assert!(
        report.log(LogStream::Stderr, "DAG \"lp\" has no task \"ghost\""),
        "{:?}",
        report.logs
    );
}

#[tokio::test]
async fn a_missing_program_is_a_failure_naming_it() {
    let exec = LocalProcessExecutor::with_program("/nonexistent/goflow-worker", vec![]);
    let report = run_with(
        &exec,
        launch_of(dag(), "source", Inputs::new()),
        |_| false,
        |_| {},
    )
    .await;
    assert!(report.started.is_none());
    let err = report.error();
    assert!(
        err.message().contains("/nonexistent/goflow-worker"),
        "{err}"
    );
    assert_eq!(exec.running(), 0);
}

// ---------------------------------------------------------------------------
// `tasks run` by hand, in this process.
// ---------------------------------------------------------------------------

async fn tasks_run(args: &[&str], payload: &LaunchPayload) -> (Result<ExitCode, CliError>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.json");
    std::fs::write(&path, serde_json::to_vec(payload).unwrap()).unwrap();
    let argv = ["goflow", "tasks", "run"]
        .iter()
        .copied()
        .chain(args.iter().copied())
        .chain(["--payload-file", path.to_str().unwrap()]);
    let cli = Cli::try_parse_from(argv).unwrap();
    let registry = Registry::from_dags([dag()]).unwrap();
    let mut out = Vec::new();
    let result = run(cli, &registry, &mut out, Utc::now()).await;
    (result, String::from_utf8(out).unwrap())
}

fn payload(task: &str, inputs: serde_json::Value) -> LaunchPayload {
    LaunchPayload {
        context: context(&dag(), task).build(),
        inputs: serde_json::from_value(inputs).unwrap(),
    }
}

#[tokio::test]
async fn by_hand_the_result_is_the_last_line_of_stdout() {
    assert!(std::env::var_os(goflow_runtime::worker::RESULT_FILE_ENV).is_none());
    let (result, out) = tasks_run(
        &["lp", "manual__1", "double", "--try", "2"],
        &payload("double", json!({"source": 4})),
    )
    .await;
    assert_eq!(result.unwrap(), ExitCode::SUCCESS);
    let last = out.lines().last().expect("a result line");
    let report: WorkerResult = serde_json::from_str(last).unwrap();
    assert_eq!(
        report.outcome,
        WorkerOutcome::Ok {
            value: json!({"doubled": 8, "run": "manual__1", "try": 2, "leaked": false}),
            follow: Some(vec!["fail".to_owned()]),
        }
    );
    assert!(report.metrics.is_some());

    let (result, out) = tasks_run(
        &["lp", "manual__1", "fail", "--try", "2"],
        &payload("fail", json!({})),
    )
    .await;
    assert_eq!(result.unwrap(), ExitCode::FAILURE);
    assert!(out.contains("the warehouse is gone"), "{out}");
}

#[tokio::test]
async fn by_hand_bad_input_exits_2() {
    let cases = [
        (
            vec!["lp", "manual__1", "nope", "--try", "2"],
            "DAG \"lp\" has no task \"nope\"; its tasks are: source, double",
        ),
        (
            vec!["etl", "manual__1", "double", "--try", "2"],
            "no DAG with id \"etl\"",
        ),
        (
            vec!["lp", "manual__1", "double", "--try", "1"],
            "its try_number is \"2\", the arguments say \"1\"",
        ),
        (
            vec!["lp", "other", "double", "--try", "2"],
            "its run_id is \"manual__1\"",
        ),
    ];
    for (args, expected) in cases {
        let (result, _) = tasks_run(&args, &payload("double", json!({}))).await;
        let err = result.expect_err("bad input");
        assert!(err.to_string().contains(expected), "{args:?}: {err}");
        assert_eq!(err.exit_code(), ExitCode::from(2), "{args:?}");
    }
}

#[tokio::test]
async fn workers_never_see_the_database_url() {
    // The scheduler's own environment names its database; its workers must
    // not inherit it.
    std::env::set_var("GOFLOW_DATABASE_URL", "postgres://secret@db/goflow");
    std::env::set_var("DATABASE_URL", "postgres://secret@db/goflow");
    let report = run_task("env_probe").await;
    let out = report.result.as_ref().expect("success");
    assert_eq!(out.value, json!([]), "the worker saw {}", out.value);
}

// ---------------------------------------------------------------------------
// Stopping tries, adoption, and workers that outlive their scheduler
// (Linux: processes are identified through /proc).
// ---------------------------------------------------------------------------

#[cfg(target_os = "linux")]
mod stopping {
    use super::*;

    /// A process, identified: its pid and its start time.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Proc {
        pid: u32,
        start: u64,
    }

    /// `(state, start time)` of `pid`, from `/proc/<pid>/stat`.
    fn stat(pid: u32) -> Option<(char, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut fields = text[text.rfind(')')? + 1..].split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        // Field 22; this iterator starts at field 3.
        let start = fields.nth(18)?.parse().ok()?;
        Some((state, start))
    }

    impl Proc {
        fn of(pid: u32) -> Self {
            let (_, start) = stat(pid).unwrap_or_else(|| panic!("process {pid} is not running"));
            Proc { pid, start }
        }

        /// Whether it still runs: neither gone, nor a zombie, nor replaced by
        /// another process with its pid.
        fn runs(self) -> bool {
            stat(self.pid).is_some_and(|(state, start)| state != 'Z' && start == self.start)
        }

        /// The `<pid>:<start time>` handle the executor gives it.
        fn handle(self) -> String {
            format!("{}:{}", self.pid, self.start)
        }
    }

    /// Waits up to `limit` until none of `procs` runs.
    async fn all_gone(procs: &[Proc], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while procs.iter().any(|p| p.runs()) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Kills what a failed test leaves running.
    struct KillOnDrop(Vec<Proc>);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            for p in &self.0 {
                if p.runs() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p.pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }

    /// The worker and grandchild the `family` task wrote to `file`.
    fn family_of(file: &Path) -> Option<(Proc, Proc)> {
        let text = std::fs::read_to_string(file).ok()?;
        let (worker, grandchild) = text.split_once(' ')?;
        Some((
            Proc::of(worker.parse().ok()?),
            Proc::of(grandchild.parse().ok()?),
        ))
    }

    fn family_launch(pid_file: &Path) -> Launch {
        let mut launch = launch_of(dag(), "family", Inputs::new());
        launch.ctx = context(&dag(), "family")
            .conf(json!({ "pid_file": pid_file }))
            .build();
        launch
    }

    fn printed(line: &str) -> impl Fn(&ExecutorEvent) -> bool + '_ {
        move |e| matches!(e, ExecutorEvent::Log { line: l, .. } if l == line)
    }

    #[tokio::test]
    async fn cancel_stops_the_whole_process_group_and_ends_the_try_once() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let grace = Duration::from_millis(500);
        let exec = executor().stop_grace(grace);
        let family = Mutex::new(None);
        let report = run_with(
            &exec,
            family_launch(&pid_file),
            printed("sleeping"),
            |key| {
                *family.lock().unwrap() = family_of(&pid_file);
                exec.cancel(key);
            },
        )
        .await;
        let (worker, grandchild) = family
            .into_inner()
            .unwrap()
            .expect("the task wrote its pids");
        let _cleanup = KillOnDrop(vec![worker, grandchild]);

        // One Finished (`run_with` checks), saying the try was stopped.
        let err = report.error();
        assert_eq!(err.kind(), TaskErrorKind::Stopped, "{err:?}");
        assert!(err.message().contains("cancelled"), "{err}");
        assert_eq!(report.metrics.exit_code, None);
        assert_eq!(report.started, Some(Some(worker.handle())));
        assert!(
            report.log(LogStream::Stdout, "sleeping"),
            "{:?}",
            report.logs
        );
        // The grandchild ignored SIGTERM: SIGKILL after the grace ended it
        // before the try ended.
        assert!(!worker.runs(), "the worker outlived its try");
        assert!(
            !grandchild.runs(),
            "the task's own process outlived its try"
        );
        assert_eq!(exec.running(), 0);
    }

    #[tokio::test]
    async fn a_worker_that_ignores_sigterm_is_killed_after_the_grace() {
        let grace = Duration::from_millis(600);
        let exec = executor().stop_grace(grace);
        let cancelled_at = Mutex::new(None);
        let report = run_with(
            &exec,
            launch_of(dag(), "stubborn", Inputs::new()),
            printed("ignoring SIGTERM"),
            |key| {
                *cancelled_at.lock().unwrap() = Some(Instant::now());
                exec.cancel(key);
            },
        )
        .await;
        let took = cancelled_at
            .into_inner()
            .unwrap()
            .expect("cancelled")
            .elapsed();
        let err = report.error();
        assert_eq!(err.kind(), TaskErrorKind::Stopped, "{err:?}");
        assert_eq!(report.metrics.exit_code, None);
        // SIGTERM came first, and what the task printed then is in the log;
        // SIGKILL only after the grace.
        assert!(
            report.log(LogStream::Stdout, "got SIGTERM, ignoring it"),
            "{:?}",
            report.logs
        );
        assert!(took >= grace, "stopped after {took:?}, before the grace");
    }

    /// Launches `launch` and waits for its handle and its first line.
    async fn started(
        exec: &LocalProcessExecutor,
        launch: Launch,
    ) -> (Proc, goflow_runtime::executor::EventReceiver) {
        let (tx, mut rx) =
            goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
        exec.launch(launch, tx);
        let mut handle = None;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(ExecutorEvent::Started { handle: h, .. })) => handle = h,
                // The task's own first line: the worker runs it. (goflow's
                // line naming the command comes before the worker is up.)
                Ok(Some(ExecutorEvent::Log {
                    stream: LogStream::Stdout,
                    ..
                })) => break,
                Ok(Some(ExecutorEvent::Log { .. })) => {}
                other => panic!("the worker did not start: {other:?}"),
            }
        }
        let handle = handle.expect("a handle");
        let (pid, _) = handle.split_once(':').expect("<pid>:<start time>");
        let worker = Proc::of(pid.parse().unwrap());
        // The handle names the process, start time included.
        assert_eq!(handle, worker.handle());
        (worker, rx)
    }

    /// The `Finished` result of a try, once it comes.
    async fn finished(
        rx: &mut goflow_runtime::executor::EventReceiver,
    ) -> Result<TaskOutput, TaskError> {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(ExecutorEvent::Finished { result, .. })) => return result,
                Ok(Some(_)) => {}
                other => panic!("no Finished: {other:?}"),
            }
        }
    }

    fn adopt(exec: &LocalProcessExecutor, launch: &Launch, handle: &str) -> bool {
        let (tx, mut rx) =
            goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
        let mut adoption = Adoption::default();
        adoption.handle = handle.to_owned();
        let adopted = exec.adopt(launch.clone(), &adoption, tx);
        assert!(rx.try_recv().is_err(), "adopt reported events");
        adopted
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adoption_stops_a_live_earlier_worker_and_returns_false() {
        // The worker of a scheduler that is gone: its pipes are this test's,
        // but a new executor cannot follow it.
        let earlier = executor();
        let launch = launch_of(dag(), "sleep", Inputs::new());
        let (worker, mut events) = started(&earlier, launch.clone()).await;
        let _cleanup = KillOnDrop(vec![worker]);

        let later = executor().stop_grace(Duration::from_secs(5));
        assert!(
            !adopt(&later, &launch, &worker.handle()),
            "a local worker cannot be adopted"
        );
        // `adopt` returned once the worker was gone.
        assert!(!worker.runs(), "the earlier worker still runs");
        let result = finished(&mut events).await;
        let err = result.expect_err("stopped");
        assert!(
            err.message().contains("killed by signal 15 (SIGTERM)"),
            "{err}"
        );
        // Nothing left to stop: still not adopted, nothing killed.
        assert!(!adopt(&later, &launch, &worker.handle()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adoption_never_stops_a_process_it_cannot_identify() {
        let earlier = executor();
        let launch = launch_of(dag(), "sleep", Inputs::new());
        let (worker, mut events) = started(&earlier, launch.clone()).await;
        let mut stranger = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let stranger_proc = Proc::of(stranger.id());
        let _cleanup = KillOnDrop(vec![worker, stranger_proc]);

        let later = executor().stop_grace(Duration::from_millis(500));
        let mut other_try = launch.clone();
        other_try.key.try_number = 3;
        other_try.ctx = context(&dag(), "sleep").try_number(3).build();
        for (what, launch, handle) in [
            // The pid was reused: another start time.
            (
                "another start time",
                &launch,
                format!("{}:{}", worker.pid, worker.start + 1),
            ),
            // The process runs another try.
            ("another try", &other_try, worker.handle()),
            // An old row's bare pid, now another program's.
            ("a stranger's bare pid", &launch, stranger.id().to_string()),
            ("a stranger's handle", &launch, stranger_proc.handle()),
            ("garbage", &launch, "job-123".to_owned()),
            ("nothing", &launch, String::new()),
        ] {
            assert!(!adopt(&later, launch, &handle), "{what}");
            assert!(worker.runs(), "{what}: the worker was stopped");
            assert!(stranger_proc.runs(), "{what}: a stranger was stopped");
        }

        // An old row's bare pid of this very try's worker: stopped.
        assert!(!adopt(&later, &launch, &worker.pid.to_string()));
        assert!(!worker.runs(), "the earlier worker still runs");
        assert!(finished(&mut events).await.is_err());
        let _ = stranger.kill();
        let _ = stranger.wait();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scheduler_killed_with_sigkill_leaves_no_worker_behind() {
        let db = goflow_store::testing::sqlite(true).await;
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let registry = Registry::from_dags([orphans_dag()]).unwrap();
        let rows = goflow_runtime::db::sync_registry(&db.store, &registry, Utc::now())
            .await
            .unwrap();
        let new = goflow_runtime::db::new_run(
            registry.get("orphans").unwrap(),
            rows["orphans"].version,
            RunType::Manual,
            DataInterval::at(Utc::now()),
            json!({ "pid_file": pid_file }),
        );
        let run = db.store.create_run(&new, Utc::now()).await.unwrap();

        let log_path = dir.path().join("scheduler.log");
        let mut scheduler = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(support::entry_args("scheduler_entry"))
            .env(SCHEDULER_DB_ENV, &db.url)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the scheduler");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

        let deadline = Instant::now() + Duration::from_secs(60);
        let (worker, grandchild) = loop {
            if let Some(family) = family_of(&pid_file) {
                break family;
            }
            assert!(
                Instant::now() < deadline,
                "the task did not start; scheduler log:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _cleanup = KillOnDrop(vec![worker, grandchild]);
        // The store holds the handle that identifies the worker.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tis = db.store.task_instances(run.id).await.unwrap();
            if tis
                .iter()
                .any(|ti| ti.executor_handle.as_deref() == Some(&worker.handle()))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no stored handle {}: {:?}",
                worker.handle(),
                tis.iter().map(|t| &t.executor_handle).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(worker.runs() && grandchild.runs());

        scheduler.kill().await.unwrap(); // SIGKILL: the scheduler does nothing more
        scheduler.wait().await.unwrap();
        assert!(
            all_gone(&[worker, grandchild], Duration::from_secs(5)).await,
            "after the scheduler's end: worker running {}, grandchild running {}",
            worker.runs(),
            grandchild.runs()
        );
    }
}
