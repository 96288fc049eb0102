//! The local-process executor against a real child process.
//!
//! There is no goflow binary for tests to run, so this test binary is its
//! own worker: the executor re-runs it as `<this test binary> --exact
//! worker_entry --nocapture -- tasks run ...` with `GOFLOW_TEST_WORKER=1`,
//! and [`worker_entry`] then behaves like a goflow binary's `main`.

mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use goflow_core::{
    Dag, DagBuilder, DataInterval, Inputs, RunId, RunType, TaskContext, TaskError, TaskErrorKind,
    TaskFn, TaskFuture, TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::cli::{run, Cli, CliError};
use goflow_runtime::executor::{
    Executor, ExecutorEvent, Launch, LocalProcessExecutor, TryKey, TryMetrics,
};
use goflow_runtime::worker::{LaunchPayload, WorkerOutcome, WorkerResult};
use goflow_runtime::Registry;
use goflow_store::LogStream;
use serde_json::json;
use tokio::sync::mpsc;

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
        Ok(TaskOutput {
            value: json!({"doubled": n * 2, "run": ctx.run_id.as_str(), "try": ctx.try_number, "leaked": leaked}),
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
    ]
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
    support::act_as_goflow_binary(|| Registry::from_dags([dag()]).unwrap());
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

fn context(dag: &Dag, task: &str) -> TaskContext {
    TaskContext {
        dag_id: dag.id().clone(),
        run_id: RunId::new("manual__1").unwrap(),
        task_id: dag.task(task).unwrap().id.clone(),
        try_number: 2,
        max_tries: 3,
        run_type: RunType::Manual,
        data_interval: DataInterval::at(Utc::now()),
        conf: json!({}),
    }
}

fn launch_of(dag: Dag, task: &str, inputs: Inputs) -> Launch {
    Launch {
        key: TryKey {
            run: 1,
            task: dag.index_of(task).unwrap(),
            try_number: 2,
        },
        ctx: context(&dag, task),
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
    let (tx, mut rx) = mpsc::unbounded_channel();
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

    let pid = report.started.clone().flatten().expect("a pid");
    assert!(pid.parse::<u32>().is_ok(), "{pid}");
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
        context: context(&dag(), task),
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
