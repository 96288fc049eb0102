//! Nothing is lost when the scheduler process is killed with SIGKILL at
//! arbitrary moments and restarted: every run completes, no task instance
//! stays queued or running, no run is created twice for a logical date.
//!
//! The scheduler is a real child process: this test binary re-executes
//! itself as `<test binary> --exact scheduler_entry --nocapture --
//! --database-url ... scheduler --id crash-test` with
//! `GOFLOW_TEST_WORKER=1`, and [`scheduler_entry`] then behaves like a
//! goflow binary's `main` (see `support`).

mod support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use goflow_core::{
    Dag, DagBuilder, DataInterval, Inputs, RunState, RunType, Schedule, TaskContext, TaskError,
    TaskFuture, TaskOptions, TaskOutput, TaskSpec, TaskState, Tz,
};
use goflow_runtime::{db, Registry};
use goflow_store::testing::databases;
use goflow_store::Store;

fn work(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let upstream: u64 = inputs
        .raw("a")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Box::pin(async move {
        // Long enough that kills land mid-task.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ctx.conf().get("fail").is_some() {
            return Err(TaskError::msg("asked to fail"));
        }
        Ok(TaskOutput {
            value: serde_json::json!(upstream + 1),
            follow: None,
        })
    })
}

fn spec(id: &str, data: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "work",
        options: TaskOptions {
            // Lost tries count as failed tries: leave room for them.
            retries: Some(20),
            retry_delay: Some(Duration::from_millis(10)),
            ..Default::default()
        },
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run: work,
    }
}

fn dags() -> Vec<Dag> {
    let manual = DagBuilder::new("crashy")
        .max_active_runs(8)
        .task(spec("a", &[]))
        .task(spec("b1", &["a"]))
        .task(spec("b2", &["a"]))
        .task(spec("b3", &["a"]))
        .task(spec("c", &[]))
        .order("b1", "c")
        .order("b2", "c")
        .order("b3", "c")
        .build()
        .unwrap();
    // Scheduled runs with catchup: twelve one-minute intervals are due.
    let start = Utc::now() - chrono::Duration::minutes(12);
    let start = start - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&start)));
    let cron = DagBuilder::new("minutely")
        .schedule(Schedule::parse("@every 1m", "UTC").unwrap(), Tz::UTC)
        .start_date(start)
        .catchup(true)
        .max_active_runs(4)
        .task(spec("a", &[]))
        .task(spec("b1", &["a"]))
        .build()
        .unwrap();
    vec![manual, cron]
}

/// The child scheduler's `main`.
#[test]
fn scheduler_entry() {
    support::act_as_goflow_binary(|| Registry::from_dags(dags()).unwrap());
}

fn spawn_scheduler(url: &str) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(support::entry_args("scheduler_entry"))
        .args(["--database-url", url, "scheduler", "--id", "crash-test"])
        .env(support::WORKER_ENV, "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the scheduler")
}

async fn all_done(store: &Store) -> bool {
    let active = store.active_runs(None).await.unwrap();
    active.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_loses_nothing() {
    for db in databases().await {
        killed_and_restarted(&db.url, &db.store).await;
    }
}

async fn killed_and_restarted(url: &str, store: &Store) {
    let store = store.clone();
    let registry = Registry::from_dags(dags()).unwrap();
    let rows = db::sync_registry(&store, &registry, Utc::now())
        .await
        .unwrap();
    let manual = registry.get("crashy").unwrap();
    let mut triggered = Vec::new();
    for i in 0..30 {
        let at = DataInterval::at(Utc::now() + chrono::Duration::milliseconds(i));
        let new = db::new_run(
            manual,
            rows["crashy"].version,
            RunType::Manual,
            at,
            serde_json::json!({}),
        );
        triggered.push(store.create_run(&new, Utc::now()).await.unwrap().id);
    }

    // Kill the scheduler a few times, at moments spread over the work.
    let mut kills = 0;
    for pause_ms in [120u64, 50, 180, 70, 250, 40] {
        let mut child = spawn_scheduler(url);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        if all_done(&store).await {
            child.kill().await.unwrap();
            break;
        }
        child.kill().await.unwrap(); // SIGKILL: no clean-up at all
        child.wait().await.unwrap();
        kills += 1;
    }
    assert!(
        kills >= 3,
        "the scheduler was killed mid-work {kills} times"
    );

    // A last start finishes everything.
    let mut child = spawn_scheduler(url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !all_done(&store).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs did not complete after restarts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();

    for id in &triggered {
        let run = store.get_run(*id).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Success, "run {}", run.run_id);
        for ti in store.task_instances(*id).await.unwrap() {
            assert_eq!(
                ti.state,
                TaskState::Success,
                "{} of {}",
                ti.task_id,
                run.run_id
            );
        }
        // Data flowed: c's upstreams read a's output after any restarts.
        assert_eq!(
            store.get_output(*id, "b1").await.unwrap(),
            Some(serde_json::json!(2))
        );
    }
    // Kills landed mid-try, and those tries were recovered.
    let mut lost = 0;
    for id in &triggered {
        lost += store
            .task_tries(*id, None)
            .await
            .unwrap()
            .iter()
            .filter(|t| t.error.as_deref().is_some_and(|e| e.contains("lost")))
            .count();
    }
    assert!(
        lost > 0,
        "no kill interrupted a try; the test proves nothing"
    );

    let scheduled = store.list_runs("minutely", 1000, 0).await.unwrap();
    let dates: HashSet<_> = scheduled.iter().map(|r| r.execution_date()).collect();
    assert_eq!(dates.len(), scheduled.len(), "a logical date got two runs");
    assert!(
        scheduled.len() >= 12,
        "every missed interval has a run: {}",
        scheduled.len()
    );
    for run in &scheduled {
        assert_eq!(run.state, RunState::Success, "run {}", run.run_id);
        for ti in store.task_instances(run.id).await.unwrap() {
            assert!(!ti.state.is_active(), "{} stuck {}", ti.task_id, ti.state);
        }
    }
}
