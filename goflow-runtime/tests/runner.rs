//! The in-process runner, on DAGs built by hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use goflow_core::{
    Backoff, Dag, DagBuilder, DataInterval, Inputs, RunId, RunState, RunType, TaskContext,
    TaskError, TaskErrorKind, TaskFn, TaskFuture, TaskOptions, TaskOutput, TaskSpec, TaskState,
    TriggerRule,
};
use goflow_runtime::runner::{run_dag, RunEvent, RunParams, RunReport, TaskEvent};
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

fn params() -> RunParams {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    RunParams {
        run_id: RunId::new("test__2026-01-01T00:00:00+00:00").unwrap(),
        run_type: RunType::Test,
        data_interval: DataInterval::new(start, start + chrono::Duration::days(1)),
        conf: json!({"limit": 10}),
    }
}

/// Runs `dag` and returns the report and the task events, checking that
/// each task's events chain (every `from` is the previous `to`).
async fn run(dag: Dag) -> (RunReport, Vec<TaskEvent>) {
    let mut events = Vec::new();
    let mut finished = None;
    let report = run_dag(Arc::new(dag), params(), &mut |e| match e {
        RunEvent::Task(t) => events.push(t.clone()),
        RunEvent::RunFinished { state, .. } => finished = Some(*state),
        RunEvent::RunStarted { .. } => {}
    })
    .await
    .unwrap();
    assert_eq!(
        finished,
        Some(report.state),
        "the last event names the run's state"
    );
    let mut at: HashMap<String, TaskState> = HashMap::new();
    for e in &events {
        let before = at
            .insert(e.task_id.to_string(), e.to)
            .unwrap_or(TaskState::Pending);
        assert_eq!(
            before, e.from,
            "events of {} do not chain: {events:#?}",
            e.task_id
        );
    }
    (report, events)
}

fn state(report: &RunReport, id: &str) -> TaskState {
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
    let (report, events) = run(dag).await;
    assert_eq!(report.state, RunState::Success);
    assert_eq!(report.task("total").unwrap().output, Some(json!(12)));
    let successes: Vec<&str> = events
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
    let p = params();
    assert_eq!(seen.dag_id().as_str(), "ctx");
    assert_eq!(seen.task_id().as_str(), "whoami");
    assert_eq!(seen.run_id(), &p.run_id);
    assert_eq!((seen.try_number(), seen.max_tries()), (1, 3));
    assert_eq!(seen.run_type(), RunType::Test);
    assert_eq!(seen.data_interval(), p.data_interval);
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

#[tokio::test(start_paused = true)]
async fn max_active_tasks_bounds_concurrency_and_priority_orders_starts() {
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static STARTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn busy(ctx: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async move {
            STARTS.lock().unwrap().push(ctx.task_id().to_string());
            let now = ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
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

#[tokio::test(start_paused = true)]
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
        retry_delay: Some(Duration::from_secs(10)),
        backoff: Some(Backoff::Exponential),
        ..Default::default()
    };
    let dag = DagBuilder::new("retry")
        .task(with(spec("flaky", &[], flaky), options))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let (report, events) = run(dag).await;
    let retries: Vec<(u32, u32, Duration, String)> = events
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
            (1, 5, Duration::from_secs(10), "flaky on try 1".to_owned()),
            (2, 5, Duration::from_secs(20), "flaky on try 2".to_owned()),
        ]
    );
    let flaky = report.task("flaky").unwrap();
    assert_eq!((flaky.state, flaky.tries), (TaskState::Success, 3));
    assert!(flaky.error.is_none(), "a later success clears the error");
    assert_eq!(report.state, RunState::Success);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_and_the_run_fails() {
    fn always(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { Err(TaskError::msg("down")) })
    }
    let options = TaskOptions {
        retries: Some(2),
        retry_delay: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let dag = DagBuilder::new("x")
        .task(with(spec("always", &[], always), options))
        .build()
        .unwrap();
    let (report, _) = run(dag).await;
    let task = report.task("always").unwrap();
    assert_eq!((task.state, task.tries), (TaskState::Failed, 3));
    assert_eq!(task.error.as_ref().unwrap().message(), "down");
    assert_eq!(report.state, RunState::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_try_past_its_timeout_fails_and_is_retried() {
    fn slow(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            output(json!(null))
        })
    }
    let options = TaskOptions {
        retries: Some(1),
        retry_delay: Some(Duration::from_secs(1)),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let dag = DagBuilder::new("x")
        .task(with(spec("slow", &[], slow), options))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let (report, events) = run(dag).await;
    let slow = report.task("slow").unwrap();
    assert_eq!((slow.state, slow.tries), (TaskState::Failed, 2));
    let error = slow.error.as_ref().unwrap();
    assert_eq!(error.kind(), TaskErrorKind::TimedOut);
    assert_eq!(error.message(), "timed out after 5.00s");
    let tries: Vec<Option<Duration>> = events
        .iter()
        .filter(|e| e.duration.is_some())
        .map(|e| e.duration)
        .collect();
    assert_eq!(tries, [Some(Duration::from_secs(5)); 2]);
    assert!(
        started.elapsed() < Duration::from_secs(12),
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
        let error = report.task(id).unwrap().error.as_ref().unwrap();
        assert_eq!(
            (error.kind(), error.message()),
            (TaskErrorKind::Panicked, message)
        );
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
    let (report, events) = run(dag).await;
    assert_eq!(state(&report, "sense"), TaskState::Skipped);
    assert_eq!(state(&report, "load"), TaskState::Skipped);
    assert_eq!(report.task("load").unwrap().tries, 0);
    let sense_skip = events.iter().find(|e| e.to == TaskState::Skipped).unwrap();
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
    assert_eq!(state(&report, "report"), TaskState::UpstreamFailed);
    assert_eq!(state(&report, "cleanup"), TaskState::Success);
    assert_eq!(report.state, RunState::Failed);
}

#[tokio::test]
async fn an_empty_dag_succeeds_at_once() {
    let (report, events) = run(DagBuilder::new("empty").build().unwrap()).await;
    assert_eq!(report.state, RunState::Success);
    assert!(events.is_empty());
}
