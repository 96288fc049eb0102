//! The durable scheduler against a real store: SQLite always, PostgreSQL
//! too when `GOFLOW_TEST_DATABASE_URL` is set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use goflow_core::{
    DagBuilder, Inputs, RunState, RunType, Schedule, TaskContext, TaskError, TaskFuture,
    TaskOptions, TaskOutput, TaskSpec, TaskState, TriggerRule,
};
use goflow_runtime::db;
use goflow_runtime::scheduler::Scheduler;
use goflow_runtime::Registry;
use goflow_store::testing::{databases, TestDb};
use goflow_store::Store;
use tokio::sync::oneshot;

use running::{config, trigger};

mod running;

fn out(value: serde_json::Value) -> TaskFuture {
    Box::pin(async move {
        Ok(TaskOutput {
            value,
            follow: None,
        })
    })
}

fn spec(id: &str, data: &[&str], run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

async fn states(store: &Store, run: i64) -> HashMap<String, TaskState> {
    store
        .task_instances(run)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.state))
        .collect()
}

fn numbers(_: TaskContext, _: &Inputs) -> TaskFuture {
    out(serde_json::json!([1, 2, 3]))
}
fn sum(_: TaskContext, inputs: &Inputs) -> TaskFuture {
    let v: Result<Vec<u32>, _> = inputs.read("numbers");
    Box::pin(async move {
        let v = v?;
        Ok(TaskOutput {
            value: serde_json::json!(v.iter().sum::<u32>()),
            follow: None,
        })
    })
}
fn double(_: TaskContext, inputs: &Inputs) -> TaskFuture {
    let v: Result<u32, _> = inputs.read("sum");
    Box::pin(async move {
        Ok(TaskOutput {
            value: serde_json::json!(v? * 2),
            follow: None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggered_run_passes_data_and_succeeds() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("chain")
            .task(spec("numbers", &[], numbers))
            .task(spec("sum", &["numbers"], sum))
            .task(spec("double", &["sum"], double))
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s1"));
        let done = s.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Success));
        assert_eq!(
            store.get_output(run, "double").await.unwrap(),
            Some(serde_json::json!(12))
        );
        let row = store.get_run(run).await.unwrap().unwrap();
        assert_eq!(row.state, RunState::Success);
        assert!(row.start_date.is_some() && row.end_date.is_some());
        for ti in store.task_instances(run).await.unwrap() {
            assert_eq!(ti.state, TaskState::Success, "{}", ti.task_id);
            assert_eq!(ti.try_number, 1);
            assert!(ti.start_date.is_some() && ti.end_date.is_some() && ti.duration_ms.is_some());
        }
        assert_eq!(
            store.task_tries(run, None).await.unwrap().len(),
            3,
            "one try each"
        );
        s.stop().await;
    }
}

static FLAKY_TRIES: AtomicU32 = AtomicU32::new(0);
fn flaky(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    FLAKY_TRIES.fetch_add(1, Ordering::SeqCst);
    Box::pin(async move {
        if ctx.try_number() < 3 {
            Err(TaskError::msg(format!("try {} fails", ctx.try_number())))
        } else {
            Ok(TaskOutput {
                value: serde_json::json!("ok"),
                follow: None,
            })
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tries_are_retried_after_their_delay() {
    for TestDb { store, .. } in databases().await {
        FLAKY_TRIES.store(0, Ordering::SeqCst);
        let mut t = spec("flaky", &[], flaky);
        t.options.retries = Some(2);
        t.options.retry_delay = Some(Duration::from_millis(300));
        let dag = DagBuilder::new("retry").task(t).build().unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s1"));
        assert_eq!(s.next_finished().await.state, RunState::Success);
        assert_eq!(FLAKY_TRIES.load(Ordering::SeqCst), 3);
        let tries = store.task_tries(run, Some("flaky")).await.unwrap();
        let states: Vec<TaskState> = tries.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            [
                TaskState::UpForRetry,
                TaskState::UpForRetry,
                TaskState::Success
            ]
        );
        assert_eq!(tries[0].error.as_deref(), Some("try 1 fails"));
        // The second try started no sooner than the retry delay after the first ended.
        let gap = tries[1].start_date.unwrap() - tries[0].end_date.unwrap();
        assert!(
            gap >= chrono::Duration::milliseconds(290),
            "retried after {gap}"
        );
        s.stop().await;
    }
}

fn fail(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::msg("broken")) })
}
fn ok(_: TaskContext, _: &Inputs) -> TaskFuture {
    out(serde_json::Value::Null)
}
fn skip(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::skip("nothing to do")) })
}
fn choose_b(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::json!(["b"]),
            follow: Some(vec!["b".into()]),
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_rules_skips_and_branches_are_applied_and_persisted() {
    for TestDb { store, .. } in databases().await {
        let mut cleanup = spec("cleanup", &[], ok);
        cleanup.options.trigger_rule = Some(TriggerRule::AllDone);
        let mut join = spec("join", &[], ok);
        join.options.trigger_rule = Some(TriggerRule::NoneFailed);
        let dag = DagBuilder::new("rules")
            .task(spec("broken", &[], fail))
            .task(spec("after_broken", &["broken"], ok))
            .task(cleanup)
            .task(spec("skipper", &[], skip))
            .task(spec("after_skip", &[], ok))
            .task(spec("choose", &[], choose_b))
            .task(spec("a", &[], ok))
            .task(spec("b", &[], ok))
            .task(join)
            .order("after_broken", "cleanup")
            .order("skipper", "after_skip")
            .order("choose", "a")
            .order("choose", "b")
            .order("a", "join")
            .order("b", "join")
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s1"));
        assert_eq!(s.next_finished().await.state, RunState::Failed);
        let st = states(&store, run).await;
        let want = [
            ("broken", TaskState::Failed),
            ("after_broken", TaskState::UpstreamFailed),
            ("cleanup", TaskState::Success),
            ("skipper", TaskState::Skipped),
            ("after_skip", TaskState::Skipped),
            ("choose", TaskState::Success),
            ("a", TaskState::Skipped),
            ("b", TaskState::Success),
            ("join", TaskState::Success),
        ];
        for (task, state) in want {
            assert_eq!(st[task], state, "{task}");
        }
        s.stop().await;
    }
}

fn choose_typo(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: Some(vec!["big_reprot".into()]),
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflows_other_trigger_rules_and_a_mistyped_branch() {
    for TestDb { store, .. } in databases().await {
        let rule = |id: &str, rule: TriggerRule| {
            let mut s = spec(id, &[], ok);
            s.options.trigger_rule = Some(rule);
            s
        };
        // After a branch, the join runs if one branch ran and none failed.
        let dag = DagBuilder::new("joins")
            .task(spec("choose", &[], choose_b))
            .task(spec("a", &[], ok))
            .task(spec("b", &[], ok))
            .task(rule("join", TriggerRule::NoneFailedMinOneSuccess))
            .task(rule("only_skips", TriggerRule::AllSkipped))
            .task(spec("skipper", &[], skip))
            .task(rule("after_skips", TriggerRule::AllSkipped))
            .task(rule(
                "all_skipped_join",
                TriggerRule::NoneFailedMinOneSuccess,
            ))
            .task(spec("broken", &[], fail))
            .task(rule("one_done", TriggerRule::OneDone))
            .order("choose", "a")
            .order("choose", "b")
            .order("a", "join")
            .order("b", "join")
            .order("a", "only_skips")
            .order("b", "only_skips")
            .order("skipper", "after_skips")
            .order("skipper", "all_skipped_join")
            .order("broken", "one_done")
            .order("skipper", "one_done")
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s1"));
        assert_eq!(s.next_finished().await.state, RunState::Failed);
        let st = states(&store, run).await;
        let want = [
            ("a", TaskState::Skipped),
            ("b", TaskState::Success),
            ("join", TaskState::Success),
            ("only_skips", TaskState::Skipped),
            ("after_skips", TaskState::Success),
            ("all_skipped_join", TaskState::Skipped),
            ("one_done", TaskState::Success),
        ];
        for (task, state) in want {
            assert_eq!(st[task], state, "{task}");
        }
        s.stop().await;

        // A branch that names a task that is not its downstream fails,
        // rather than skipping everything and letting the run succeed.
        let dag = DagBuilder::new("typo")
            .task(spec("route", &[], choose_typo))
            .task(spec("big_report", &[], ok))
            .task(spec("small_report", &[], ok))
            .order("route", "big_report")
            .order("route", "small_report")
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s2"));
        assert_eq!(s.next_finished().await.state, RunState::Failed);
        let st = states(&store, run).await;
        assert_eq!(st["route"], TaskState::Failed);
        assert_eq!(st["big_report"], TaskState::UpstreamFailed);
        let route = store.task_instance(run, "route").await.unwrap().unwrap();
        assert_eq!(
            route.last_error.as_deref(),
            Some(
                "branch task `route` chose `big_reprot`, which is not a direct downstream; \
                 its direct downstreams are `big_report`, `small_report`"
            )
        );
        s.stop().await;
    }
}

static RUNNING_NOW: AtomicUsize = AtomicUsize::new(0);
static MOST_AT_ONCE: AtomicUsize = AtomicUsize::new(0);
fn counted(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        let now = RUNNING_NOW.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        RUNNING_NOW.fetch_sub(1, Ordering::SeqCst);
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_tasks_bounds_concurrency() {
    for TestDb { store, .. } in databases().await {
        MOST_AT_ONCE.store(0, Ordering::SeqCst);
        let mut b = DagBuilder::new("bounded").max_active_tasks(3);
        for i in 0..12 {
            b = b.task(spec(&format!("t{i}"), &[], counted));
        }
        let dag = b.build().unwrap();
        trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s1"));
        assert_eq!(s.next_finished().await.state, RunState::Success);
        let most = MOST_AT_ONCE.load(Ordering::SeqCst);
        assert!(most <= 3, "{most} tasks ran at once");
        assert!(most >= 2, "tasks ran one by one ({most})");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_creates_every_missed_run_once_and_max_active_runs_holds() {
    for TestDb { store, .. } in databases().await {
        let start = Utc::now() - chrono::Duration::minutes(50);
        let dag = DagBuilder::new("hourly")
            .schedule(
                Schedule::parse("@every 10m", "UTC").unwrap(),
                goflow_core::Tz::UTC,
            )
            .start_date(start)
            .catchup(true)
            .max_active_runs(1)
            .task(spec("t", &[], ok))
            .build()
            .unwrap();
        let mut s = running::start(&store, vec![dag.clone()], config("s1"));
        let mut done = Vec::new();
        while done.len() < 4 {
            done.push(s.next_finished().await);
        }
        s.stop().await;
        // A second scheduler over the same store creates nothing twice.
        let s2 = running::start(&store, vec![dag.clone()], config("s2"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        s2.stop().await;
        let runs = store.list_runs("hourly", 100, 0).await.unwrap();
        let scheduled: Vec<_> = runs
            .iter()
            .filter(|r| r.run_type == RunType::Scheduled)
            .collect();
        assert!(
            (4..=5).contains(&scheduled.len()),
            "one run per elapsed 10-minute interval: {}",
            scheduled.len()
        );
        let mut starts: Vec<_> = scheduled.iter().map(|r| r.execution_date()).collect();
        starts.dedup();
        assert_eq!(starts.len(), scheduled.len(), "no logical date twice");
        for r in &scheduled {
            assert_eq!(
                r.data_interval.end - r.data_interval.start,
                chrono::Duration::minutes(10)
            );
        }
        // max_active_runs = 1: finished runs never overlap.
        let mut spans: Vec<_> = scheduled
            .iter()
            .filter(|r| r.state == RunState::Success)
            .map(|r| (r.start_date.unwrap(), r.end_date.unwrap()))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "runs overlapped: {w:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_catchup_only_the_latest_interval_runs_and_paused_dags_wait() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("latest")
            .schedule(
                Schedule::parse("@every 10m", "UTC").unwrap(),
                goflow_core::Tz::UTC,
            )
            .start_date(Utc::now() - chrono::Duration::minutes(55))
            .task(spec("t", &[], ok))
            .build()
            .unwrap();
        let paused = DagBuilder::new("paused")
            .schedule(
                Schedule::parse("@every 10m", "UTC").unwrap(),
                goflow_core::Tz::UTC,
            )
            .start_date(Utc::now() - chrono::Duration::minutes(55))
            .task(spec("t", &[], ok))
            .build()
            .unwrap();
        db::sync_registry(
            &store,
            &Registry::from_dags([paused.clone()]).unwrap(),
            Utc::now(),
        )
        .await
        .unwrap();
        store.set_paused("paused", true).await.unwrap();
        let mut s = running::start(&store, vec![dag, paused], config("s1"));
        let done = s.next_finished().await;
        assert_eq!(done.dag_id, "latest");
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.stop().await;
        assert_eq!(store.list_runs("latest", 100, 0).await.unwrap().len(), 1);
        assert!(store.list_runs("paused", 100, 0).await.unwrap().is_empty());
    }
}

static EXECUTIONS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
fn record(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    EXECUTIONS
        .lock()
        .unwrap()
        .push((ctx.run_id().to_string(), ctx.task_id().to_string()));
    Box::pin(async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

/// Two schedulers on one database: every task instance runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_launch_each_task_instance_once() {
    const RUNS: usize = 20;
    const TASKS: usize = 15;
    for TestDb { store, .. } in databases().await {
        EXECUTIONS.lock().unwrap().clear();
        let mut b = DagBuilder::new("shared").max_active_runs(RUNS as u32);
        for i in 0..TASKS {
            let up: Vec<String> = if i == 0 {
                vec![]
            } else {
                vec![format!("t{}", (i - 1) / 2)]
            };
            let refs: Vec<&str> = up.iter().map(String::as_str).collect();
            let mut t = spec(&format!("t{i}"), &[], record);
            t.data_upstream.clear();
            b = b.task(t);
            for r in refs {
                b = b.order(r, format!("t{i}"));
            }
        }
        let dag = b.build().unwrap();
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.push(trigger(&store, &dag).await);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Each owns a few runs at a time, so both get work.
        let small = |id: &str| {
            let mut config = config(id);
            config.max_owned_runs = 3;
            config
        };
        let mut one = running::start(&store, vec![dag.clone()], small("one"));
        let mut two = running::start(&store, vec![dag.clone()], small("two"));
        let (mut by_one, mut by_two) = (0, 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while by_one + by_two < RUNS {
            tokio::select! {
                Some(f) = one.finished.recv() => { assert_eq!(f.state, RunState::Success); by_one += 1; }
                Some(f) = two.finished.recv() => { assert_eq!(f.state, RunState::Success); by_two += 1; }
                _ = tokio::time::sleep_until(deadline) => panic!("runs did not finish: {by_one} + {by_two}"),
            }
        }
        one.stop().await;
        two.stop().await;
        let executions = EXECUTIONS.lock().unwrap().clone();
        assert_eq!(
            executions.len(),
            RUNS * TASKS,
            "each task instance ran once"
        );
        let mut unique = executions.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), executions.len(), "no task instance ran twice");
        for run in runs {
            for ti in store.task_instances(run).await.unwrap() {
                assert_eq!((ti.state, ti.try_number), (TaskState::Success, 1));
            }
        }
        assert!(
            by_one > 0 && by_two > 0,
            "both schedulers worked: {by_one} + {by_two}"
        );
    }
}

static HANG_FIRST: AtomicU32 = AtomicU32::new(0);
fn hangs_on_first_try(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    HANG_FIRST.fetch_add(1, Ordering::SeqCst);
    Box::pin(async move {
        if ctx.try_number() == 1 {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(TaskOutput {
            value: serde_json::json!(ctx.try_number()),
            follow: None,
        })
    })
}

/// A scheduler dies with a try in flight; another takes the run over once
/// its heartbeat is stale and retries the lost try by policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_schedulers_run_is_taken_over_and_its_lost_try_retried() {
    for TestDb { store, .. } in databases().await {
        HANG_FIRST.store(0, Ordering::SeqCst);
        let mut t = spec("slow", &[], hangs_on_first_try);
        t.options.retries = Some(1);
        t.options.retry_delay = Some(Duration::from_millis(10));
        let dag = DagBuilder::new("takeover").task(t).build().unwrap();
        let run = trigger(&store, &dag).await;
        let first = running::start(&store, vec![dag.clone()], config("first"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while states(&store, run).await["slow"] != TaskState::Running {
            assert!(tokio::time::Instant::now() < deadline, "never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        first.kill();
        let mut second = running::start(&store, vec![dag], config("second"));
        let done = second.next_finished().await;
        assert_eq!(done.state, RunState::Success);
        let tries = store.task_tries(run, Some("slow")).await.unwrap();
        assert_eq!(tries.len(), 2);
        assert!(
            tries[0].error.as_deref().unwrap_or("").contains("lost"),
            "{:?}",
            tries[0].error
        );
        assert_eq!(
            store.get_output(run, "slow").await.unwrap(),
            Some(serde_json::json!(2))
        );
        assert_eq!(store.get_run(run).await.unwrap().unwrap().claimed_by, None);
        second.stop().await;
    }
}

static FIRST_TRY_FAILS: AtomicU32 = AtomicU32::new(0);
fn fails_until_cleared(_: TaskContext, _: &Inputs) -> TaskFuture {
    let n = FIRST_TRY_FAILS.fetch_add(1, Ordering::SeqCst);
    Box::pin(async move {
        if n == 0 {
            Err(TaskError::msg("first time fails"))
        } else {
            Ok(TaskOutput {
                value: serde_json::json!(n),
                follow: None,
            })
        }
    })
}

/// Clearing a failed task from outside (CLI, UI) makes a running
/// scheduler run it and its downstreams again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_task_is_run_again_by_a_running_scheduler() {
    for TestDb { store, .. } in databases().await {
        FIRST_TRY_FAILS.store(0, Ordering::SeqCst);
        let dag = DagBuilder::new("cleared")
            .task(spec("t", &[], fails_until_cleared))
            .task(spec("after", &["t"], ok))
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = running::start(&store, vec![dag], config("s1"));
        assert_eq!(s.next_finished().await.state, RunState::Failed);
        assert_eq!(
            states(&store, run).await["after"],
            TaskState::UpstreamFailed
        );
        store
            .clear_tasks(run, &["t".to_string(), "after".to_string()], Utc::now())
            .await
            .unwrap();
        let again = s.next_finished().await;
        assert_eq!((again.run, again.state), (run, RunState::Success));
        let st = states(&store, run).await;
        assert_eq!(
            (st["t"], st["after"]),
            (TaskState::Success, TaskState::Success)
        );
        let ti = store.task_instance(run, "t").await.unwrap().unwrap();
        assert_eq!(ti.try_number, 2, "try numbers continue after a clear");
        s.stop().await;
    }
}

/// The scheduler records what `/metrics` serves: launches, failures, task
/// durations, scheduling latency and its loop's latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_records_metrics() {
    let TestDb { store, .. } = databases().await.remove(0);
    let dag = DagBuilder::new("measured")
        .task(spec("numbers", &[], numbers))
        .task(spec("sum", &["numbers"], sum))
        .task(spec("broken", &[], fail))
        .build()
        .unwrap();
    trigger(&store, &dag).await;
    let metrics = goflow_runtime::metrics::Metrics::new();
    let registry = Arc::new(Registry::from_dags([dag]).unwrap());
    let mut scheduler =
        Scheduler::new(store.clone(), registry, config("m")).with_metrics(metrics.clone());
    let mut finished = scheduler.finished_runs();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async {
        let _ = rx.await;
    }));
    let done = tokio::time::timeout(Duration::from_secs(30), finished.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, RunState::Failed);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(
        metrics.executor_counts(),
        [("in_process".to_string(), 3, 1)]
    );
    assert!(metrics.last_loop_latency().is_some());
    let text = metrics.encode().unwrap();
    // Summed over label sets (one per task).
    let count = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("goflow_task_duration_seconds_count"), 3.0, "{text}");
    assert!(count("goflow_db_query_seconds_count") > 0.0, "{text}");
    assert_eq!(
        count("goflow_scheduling_latency_seconds_count"),
        1.0,
        "only `sum` has an upstream"
    );
}
