//! `dags test`'s engine ([`run_test`]: the scheduler, on a private
//! in-memory store), on DAGs built by hand: what each task is handed, how
//! tries end, and what the scheduler reports as it goes.
//!
//! The scheduler keeps time with the wall clock, so delays here are real
//! and short.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use clap::Parser;
use goflow_core::{
    Backoff, Dag, DagBuilder, DataInterval, Inputs, RunState, RunType, TaskContext, TaskError,
    TaskFn, TaskFuture, TaskOptions, TaskOutput, TaskSpec, TaskState, TriggerRule,
};
use goflow_runtime::cli::{run_test, Cli, TestReport, TestRun};
use goflow_runtime::scheduler::{SchedulerEvent, TaskChanged};
use goflow_runtime::Registry;
use goflow_store::{LogStream, NewLogLine};
use serde_json::json;

fn spec(id: &str, data: &[&str], run: TaskFn) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "test",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

fn with(mut spec: TaskSpec, options: TaskOptions) -> TaskSpec {
    spec.options = options;
    spec
}

fn output(value: serde_json::Value) -> Result<TaskOutput, TaskError> {
    Ok(TaskOutput {
        value,
        follow: None,
    })
}

fn interval() -> DataInterval {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    DataInterval::new(start, start + chrono::Duration::days(1))
}

fn test_run(dag: &Dag) -> TestRun {
    TestRun {
        conf: json!({"limit": 10}),
        ..TestRun::new(dag.id().as_str(), interval())
    }
}

/// What the scheduler reported of a run.
struct Seen {
    tasks: Vec<TaskChanged>,
    logs: Vec<NewLogLine>,
    /// Both, in the order they were reported.
    all: Vec<SchedulerEvent>,
}

impl Seen {
    /// The log of `task`'s try `try_number`.
    fn log(&self, task: &str, try_number: u32) -> Vec<(LogStream, &str)> {
        self.logs
            .iter()
            .filter(|l| l.task_id == task && l.try_number == try_number)
            .map(|l| (l.stream, l.line.as_str()))
            .collect()
    }
}

/// Runs `dag` and returns the report and what was reported along the
/// way, checking that each task's changes chain (every `from` is the
/// previous `to`) and that the run's end comes last.
async fn run(dag: Dag) -> (TestReport, Seen) {
    let registry = Registry::from_dags([dag.clone()]).unwrap();
    let mut seen = Seen {
        tasks: Vec::new(),
        logs: Vec::new(),
        all: Vec::new(),
    };
    let mut finished = None;
    let report = run_test(&registry, test_run(&dag), &mut |e| {
        assert!(finished.is_none(), "{e:?} after the run's end");
        seen.all.push(e.clone());
        match e {
            SchedulerEvent::Task(t) => seen.tasks.push(t.clone()),
            SchedulerEvent::Log(l) => seen.logs.push(l.clone()),
            SchedulerEvent::RunFinished(f) => finished = Some(f.state),
        }
    })
    .await
    .unwrap();
    assert_eq!(
        finished,
        Some(report.state),
        "the last event names the run's state"
    );
    let mut at: HashMap<String, TaskState> = HashMap::new();
    for e in &seen.tasks {
        let before = at
            .insert(e.task_id.clone(), e.to)
            .unwrap_or(TaskState::Pending);
        assert_eq!(
            before, e.from,
            "changes of {} do not chain: {:#?}",
            e.task_id, seen.tasks
        );
    }
    (report, seen)
}

fn state(report: &TestReport, id: &str) -> TaskState {
    report.task(id).unwrap().state
}

fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { output(json!(null)) })
}

fn fail(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::fatal("disk full")) })
}

#[tokio::test]
async fn a_chain_passes_outputs_downstream() {
    fn extract(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { output(json!([1, 2, 3])) })
    }
    fn double(_: TaskContext, inputs: &Inputs) -> TaskFuture {
        let values = inputs.read::<Vec<i64>>("extract");
        Box::pin(async move { output(json!(values?.iter().map(|v| v * 2).collect::<Vec<_>>())) })
    }
    fn total(_: TaskContext, inputs: &Inputs) -> TaskFuture {
        let values = inputs.read::<Vec<i64>>("double");
        Box::pin(async move { output(json!(values?.iter().sum::<i64>())) })
    }
    let dag = DagBuilder::new("chain")
        .task(spec("total", &["double"], total))
        .task(spec("double", &["extract"], double))
        .task(spec("extract", &[], extract))
        .build()
        .unwrap();
    let (report, seen) = run(dag).await;
    assert_eq!(report.state, RunState::Success);
    assert_eq!(
        report.task("double").unwrap().output,
        Some(json!([2, 4, 6]))
    );
    assert_eq!(report.task("total").unwrap().output, Some(json!(12)));
    let successes: Vec<&str> = seen
        .tasks
        .iter()
        .filter(|e| e.to == TaskState::Success)
        .map(|e| e.task_id.as_str())
        .collect();
    assert_eq!(successes, ["extract", "double", "total"]);
}

#[tokio::test]
async fn tasks_see_their_context() {
    fn whoami(ctx: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async move { output(serde_json::to_value(&ctx)?) })
    }
    let options = TaskOptions {
        retries: Some(2),
        ..Default::default()
    };
    let dag = DagBuilder::new("ctx")
        .task(with(spec("whoami", &[], whoami), options))
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    let seen: TaskContext =
        serde_json::from_value(report.task("whoami").unwrap().output.clone().unwrap()).unwrap();
    assert_eq!(seen.dag_id().as_str(), "ctx");
    assert_eq!(seen.task_id().as_str(), "whoami");
    assert_eq!(seen.run_id().as_str(), "test__2026-01-01T00:00:00Z");
    assert_eq!(report.run_id, "test__2026-01-01T00:00:00Z");
    assert_eq!((seen.try_number(), seen.max_tries()), (1, 3));
    assert_eq!(seen.run_type(), RunType::Test);
    assert_eq!(seen.data_interval(), interval());
    assert_eq!(seen.param::<u32>("limit").unwrap(), Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_runs_in_parallel() {
    // Each side waits for the other: run one after the other, they never end.
    static BARRIER: LazyLock<tokio::sync::Barrier> = LazyLock::new(|| tokio::sync::Barrier::new(2));
    fn meet(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            BARRIER.wait().await;
            output(json!(null))
        })
    }
    let dag = DagBuilder::new("fan")
        .task(spec("root", &[], noop))
        .task(spec("left", &["root"], meet))
        .task(spec("right", &["root"], meet))
        .task(spec("join", &["left", "right"], noop))
        .build()
        .unwrap();
    let (report, _) = tokio::time::timeout(Duration::from_secs(10), run(dag))
        .await
        .expect("left and right should run at the same time");
    assert_eq!(report.state, RunState::Success);
}

#[tokio::test]
async fn max_active_tasks_bounds_concurrency_and_priority_orders_starts() {
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static STARTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn busy(ctx: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async move {
            STARTS.lock().unwrap().push(ctx.task_id().to_string());
            let now = ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
            output(json!(null))
        })
    }
    let weighted = |id: &str, weight: i32| {
        let options = TaskOptions {
            priority_weight: Some(weight),
            ..Default::default()
        };
        with(spec(id, &[], busy), options)
    };
    let dag = DagBuilder::new("narrow")
        .max_active_tasks(1)
        .task(weighted("a", 1))
        .task(weighted("b", 5))
        .task(weighted("c", 1))
        .task(weighted("d", 9))
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    assert_eq!(report.state, RunState::Success);
    assert_eq!(PEAK.load(Ordering::SeqCst), 1);
    assert_eq!(*STARTS.lock().unwrap(), ["d", "b", "a", "c"]);
}

#[tokio::test]
async fn retries_back_off_exponentially() {
    fn flaky(ctx: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async move {
            if ctx.try_number() < 3 {
                return Err(TaskError::msg(format!("flaky on try {}", ctx.try_number())));
            }
            output(json!(ctx.try_number()))
        })
    }
    let options = TaskOptions {
        retries: Some(4),
        retry_delay: Some(Duration::from_millis(100)),
        backoff: Some(Backoff::Exponential),
        ..Default::default()
    };
    let dag = DagBuilder::new("retry")
        .task(with(spec("flaky", &[], flaky), options))
        .build()
        .unwrap();
    let started = Instant::now();
    let (report, seen) = run(dag).await;
    let retries: Vec<(u32, u32, Duration, String)> = seen
        .tasks
        .iter()
        .filter(|e| e.to == TaskState::UpForRetry)
        .map(|e| {
            (
                e.try_number,
                e.max_tries,
                e.retry_delay.unwrap(),
                e.error.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        retries,
        [
            (
                1,
                5,
                Duration::from_millis(100),
                "flaky on try 1".to_owned()
            ),
            (
                2,
                5,
                Duration::from_millis(200),
                "flaky on try 2".to_owned()
            ),
        ]
    );
    let flaky = report.task("flaky").unwrap();
    assert_eq!((flaky.state, flaky.tries), (TaskState::Success, 3));
    assert!(flaky.error.is_none(), "a later success clears the error");
    assert_eq!(flaky.output, Some(json!(3)));
    assert_eq!(report.state, RunState::Success);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // Each try's log says what happened and what comes next.
    let first = seen.log("flaky", 1);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(
        first[1].1.starts_with("WARN try 1 failed after ")
            && first[1].1.contains(": flaky on try 1; attempt 2 of 5 at ")
            && first[1].1.ends_with(" (in 100ms)"),
        "{first:?}"
    );
}

#[tokio::test]
async fn retries_run_out_and_the_run_fails() {
    fn always(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { Err(TaskError::msg("down")) })
    }
    let options = TaskOptions {
        retries: Some(2),
        retry_delay: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let dag = DagBuilder::new("x")
        .task(with(spec("always", &[], always), options))
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    let task = report.task("always").unwrap();
    assert_eq!((task.state, task.tries), (TaskState::Failed, 3));
    assert_eq!(task.error.as_deref(), Some("down"));
    assert_eq!(report.state, RunState::Failed);
}

#[tokio::test]
async fn a_try_past_its_timeout_fails_and_is_retried() {
    fn slow(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            output(json!(null))
        })
    }
    let timeout = Duration::from_millis(200);
    let options = TaskOptions {
        retries: Some(1),
        retry_delay: Some(Duration::from_millis(10)),
        timeout: Some(timeout),
        ..Default::default()
    };
    let dag = DagBuilder::new("x")
        .task(with(spec("slow", &[], slow), options))
        .build()
        .unwrap();
    let started = Instant::now();
    let (report, seen) = run(dag).await;
    let slow = report.task("slow").unwrap();
    assert_eq!((slow.state, slow.tries), (TaskState::Failed, 2));
    assert_eq!(slow.error.as_deref(), Some("timed out after 200ms"));
    let tries: Vec<Duration> = seen.tasks.iter().filter_map(|e| e.duration).collect();
    assert_eq!(tries.len(), 2, "{tries:?}");
    for ran in tries {
        // As the scheduler saw it: from its `started` to its end.
        assert!(ran > timeout / 2 && ran < Duration::from_secs(5), "{ran:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the task was not cut off"
    );
}

#[tokio::test]
async fn a_panicking_task_fails_and_the_run_goes_on() {
    fn panics_in_future(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { panic!("boom in the future") })
    }
    fn panics_in_body(_: TaskContext, _: &Inputs) -> TaskFuture {
        panic!("boom in the body")
    }
    let dag = DagBuilder::new("x")
        .task(spec("a", &[], panics_in_future))
        .task(spec("b", &[], panics_in_body))
        .task(spec("after_a", &["a"], noop))
        .task(spec("other", &[], noop))
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    for (id, message) in [
        ("a", "panicked: boom in the future"),
        ("b", "panicked: boom in the body"),
    ] {
        assert_eq!(report.task(id).unwrap().error.as_deref(), Some(message));
        assert_eq!(state(&report, id), TaskState::Failed);
    }
    assert_eq!(state(&report, "after_a"), TaskState::UpstreamFailed);
    assert_eq!(state(&report, "other"), TaskState::Success);
    assert_eq!(report.state, RunState::Failed);
}

#[tokio::test]
async fn a_skip_propagates_and_the_run_succeeds() {
    fn nothing_new(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { Err(TaskError::skip("no new files")) })
    }
    let dag = DagBuilder::new("x")
        .task(spec("sense", &[], nothing_new))
        .task(spec("load", &["sense"], noop))
        .build()
        .unwrap();
    let (report, seen) = run(dag).await;
    assert_eq!(state(&report, "sense"), TaskState::Skipped);
    assert_eq!(state(&report, "load"), TaskState::Skipped);
    assert_eq!(report.task("load").unwrap().tries, 0);
    let sense_skip = seen
        .tasks
        .iter()
        .find(|e| e.to == TaskState::Skipped)
        .unwrap();
    assert_eq!(sense_skip.task_id, "sense");
    assert_eq!(sense_skip.error.as_deref(), Some("no new files"));
    assert_eq!(report.state, RunState::Success);
}

#[tokio::test]
async fn a_branch_skips_the_path_not_chosen() {
    fn choose(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            Ok(TaskOutput {
                value: json!(["small"]),
                follow: Some(vec!["small".into()]),
            })
        })
    }
    let dag = DagBuilder::new("x")
        .task(spec("choose", &[], choose))
        .task(spec("big", &[], noop))
        .task(spec("small", &[], noop))
        .task(spec("after_big", &[], noop))
        .order("choose", "big")
        .order("choose", "small")
        .order("big", "after_big")
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    assert_eq!(state(&report, "small"), TaskState::Success);
    assert_eq!(state(&report, "big"), TaskState::Skipped);
    assert_eq!(state(&report, "after_big"), TaskState::Skipped);
    assert_eq!(report.task("big").unwrap().tries, 0);
    assert_eq!(report.state, RunState::Success);
}

#[tokio::test]
async fn all_done_runs_after_a_failure_and_the_run_fails() {
    let cleanup = with(
        spec("cleanup", &[], noop),
        TaskOptions {
            trigger_rule: Some(TriggerRule::AllDone),
            ..Default::default()
        },
    );
    let dag = DagBuilder::new("x")
        .task(spec("load", &[], fail))
        .task(spec("report", &["load"], noop))
        .task(cleanup)
        .order("load", "cleanup")
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    assert_eq!(state(&report, "load"), TaskState::Failed);
    assert_eq!(
        report.task("load").unwrap().error.as_deref(),
        Some("disk full")
    );
    assert_eq!(state(&report, "report"), TaskState::UpstreamFailed);
    assert_eq!(state(&report, "cleanup"), TaskState::Success);
    assert_eq!(report.state, RunState::Failed);
}

#[tokio::test]
async fn an_empty_dag_succeeds_at_once() {
    let (report, seen) = run(DagBuilder::new("empty").build().unwrap()).await;
    assert_eq!(report.state, RunState::Success);
    assert!(seen.tasks.is_empty() && seen.logs.is_empty());
}

#[tokio::test]
async fn a_pool_the_private_store_lacks_is_made_for_the_test_run() {
    let mut pooled = spec("load", &[], noop);
    pooled.options.pool = Some("warehouse".into());
    let dag = DagBuilder::new("pooled").task(pooled).build().unwrap();
    let (report, _) = run(dag).await;
    assert_eq!(state(&report, "load"), TaskState::Success);
}

#[tokio::test]
async fn a_task_naming_another_executor_runs_in_this_process() {
    // As Airflow's `dags test`: a test run stays on this machine, even for
    // a task that runs as a Kubernetes Job under the scheduler.
    let mut remote = spec("remote", &[], noop);
    remote.options.executor = Some(goflow_core::ExecutorKind::Kubernetes);
    let dag = DagBuilder::new("remote").task(remote).build().unwrap();
    let (report, seen) = run(dag).await;
    assert_eq!(state(&report, "remote"), TaskState::Success);
    let log = seen.log("remote", 1);
    assert!(
        log[0].1.starts_with("INFO try 1 started on in_process"),
        "{log:?}"
    );
}

#[tokio::test]
async fn each_try_reports_its_log_as_stored() {
    fn chatty(ctx: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async move {
            tracing::info!(rows = 3, "read the file");
            tracing::debug!("too fine to keep");
            if ctx.try_number() == 1 {
                return Err(TaskError::msg("connection reset"));
            }
            output(json!(null))
        })
    }
    let options = TaskOptions {
        retries: Some(1),
        retry_delay: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let dag = DagBuilder::new("chatty")
        .task(with(spec("chatty", &[], chatty), options))
        .build()
        .unwrap();
    let (report, seen) = run(dag).await;
    assert_eq!(report.state, RunState::Success);
    let target = module_path!();
    let second = seen.log("chatty", 2);
    assert_eq!(second.len(), 3, "{second:?}");
    assert_eq!(second[0].0, LogStream::System);
    assert_eq!(
        second[0].1,
        "INFO try 2 started on in_process, attempt 2 of 2 (scheduler dags-test)"
    );
    assert_eq!(
        second[1],
        (
            LogStream::Stdout,
            format!("INFO {target}: read the file rows=3").as_str()
        )
    );
    assert!(
        second[2].1.starts_with("INFO try 2 succeeded after "),
        "{second:?}"
    );
    // Reported in the order things happened: a try's log after its start
    // and before its end, and what its end unblocks last.
    let order: Vec<String> = seen
        .all
        .iter()
        .filter_map(|e| match e {
            SchedulerEvent::Task(t) => Some(format!("{} {}", t.to, t.try_number)),
            SchedulerEvent::Log(l) => Some(
                l.line
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            SchedulerEvent::RunFinished(_) => None,
        })
        .collect();
    let second_try = &order[order.iter().position(|e| e == "running 2").unwrap()..];
    let task_line = format!("INFO {target}: read the");
    assert_eq!(
        second_try[..second_try.len().min(5)],
        [
            "running 2",
            "INFO try 2 started",
            task_line.as_str(),
            "INFO try 2 succeeded",
            "success 2",
        ][..],
        "{order:#?}"
    );
}

#[tokio::test]
async fn dags_test_prints_each_change_and_each_log_line_under_its_task() {
    fn greet(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            tracing::warn!("low on coffee");
            output(json!("hi"))
        })
    }
    let dag = DagBuilder::new("hello")
        .task(spec("greet", &[], greet))
        .task(spec("after", &["greet"], fail))
        .build()
        .unwrap();
    let registry = Registry::from_dags([dag]).unwrap();
    let cli =
        Cli::try_parse_from(["goflow", "dags", "test", "hello", "--date", "2026-01-01"]).unwrap();
    let mut out = Vec::new();
    let code = goflow_runtime::cli::run(cli, &registry, &mut out, Utc::now())
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| {
                l.trim_start().starts_with(prefix)
                    || l.get(14..).is_some_and(|l| l.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{out}"))
    };
    let running = at("greet  running          try 1/1");
    let started = at("greet  | INFO try 1 started on in_process, attempt 1 of 1");
    let warned = at(&format!("greet  | WARN {}: low on coffee", module_path!()));
    let ended = at("greet  | INFO try 1 succeeded after ");
    let success = at("greet  success");
    assert!(
        running < started && started < warned && warned < ended,
        "{out}"
    );
    assert!(running < success, "{out}");
    let failed = at("after  failed           try 1/1");
    assert!(lines[failed].ends_with(": disk full"), "{out}");
    at("after  | ERROR try 1 failed after ");
    // Log lines are indented: nothing but state changes starts with a time.
    for l in &lines {
        if l.contains(" | ") {
            assert!(l.starts_with("              "), "{l:?}");
        }
    }
    assert!(out.contains("\nTASK "), "the summary follows: {out}");
    assert!(lines.last().unwrap().contains(" failed in "), "{out}");
}

#[tokio::test]
async fn a_test_run_in_a_named_database_is_kept_there() {
    // What `dags test` does when built without SQLite: the run goes to the
    // database of `--database-url`, and a second one for the same logical
    // date is refused there.
    for db in goflow_store::testing::databases().await {
        let dag = DagBuilder::new("kept")
            .task(spec("extract", &[], noop))
            .task(spec("load", &["extract"], fail))
            .build()
            .unwrap();
        let registry = Registry::from_dags([dag.clone()]).unwrap();
        let run = TestRun {
            database_url: Some(db.url.clone()),
            ..test_run(&dag)
        };
        let mut lines = 0;
        let report = run_test(&registry, run.clone(), &mut |e| {
            lines += usize::from(matches!(e, SchedulerEvent::Log(_)));
        })
        .await
        .unwrap();
        assert_eq!(report.state, RunState::Failed, "{:?}", db.backend());
        assert_eq!(state(&report, "load"), TaskState::Failed);
        assert!(lines >= 4, "{lines} log lines");
        let stored = db
            .store
            .find_run("kept", &report.run_id)
            .await
            .unwrap()
            .expect("the run is kept");
        assert_eq!(stored.state, RunState::Failed);
        assert_eq!(stored.run_type, RunType::Test);
        let again = run_test(&registry, run, &mut |_| {}).await.unwrap_err();
        assert!(again.to_string().contains("already has a run"), "{again}");
    }
}
