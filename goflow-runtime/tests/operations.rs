//! Operations an operator relies on: the executor of a try is a stored
//! fact (adoption after a crash goes to the executor that runs it), lost
//! tries do not use a task's retries, a scheduler whose writes fail keeps
//! its runs and says it is not ready, scheduler ids are not shared, runs
//! survive a DAG that gained tasks, and every try can be stopped. SQLite
//! always, PostgreSQL too when `GOFLOW_TEST_DATABASE_URL` is set.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use goflow_core::{
    DagBuilder, ExecutorKind, Inputs, RunState, TaskContext, TaskError, TaskFuture, TaskOptions,
    TaskOutput, TaskSpec, TaskState,
};
use goflow_runtime::executor::{
    Adoption, EventSender, Executor, ExecutorEvent, Launch, TryKey, TryMetrics,
};
use goflow_runtime::metrics::Metrics;
use goflow_runtime::scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use goflow_runtime::Registry;
use goflow_store::testing::{databases, TestDb};
use goflow_store::{Store, StoreOptions};
use running::{config, scheduler, trigger, Running};

mod running;

fn ok(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::json!(1),
            follow: None,
        })
    })
}

fn spec(id: &str, run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options: TaskOptions::default(),
        data_upstream: Vec::new(),
        run,
    }
}

/// Waits until `check` holds of the run's task instances.
async fn wait_for(
    store: &Store,
    run: i64,
    what: &str,
    check: impl Fn(&[goflow_store::TaskInstanceRow]) -> bool,
) -> Vec<goflow_store::TaskInstanceRow> {
    for _ in 0..300 {
        let tis = store.task_instances(run).await.unwrap();
        if check(&tis) {
            return tis;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        store
            .task_instances(run)
            .await
            .unwrap()
            .iter()
            .map(|t| (&t.task_id, t.state, t.try_number))
            .collect::<Vec<_>>()
    );
}

/// What the fake "cluster" knows: the tries alive, and what executors
/// were asked to do. Shared by executor instances across scheduler
/// restarts, as a real cluster outlives the scheduler process.
#[derive(Default)]
struct Cluster {
    alive: Mutex<HashMap<TryKey, EventSender>>,
    launched: Mutex<Vec<TryKey>>,
    adopted: Mutex<Vec<(TryKey, String)>>,
    cancelled: Mutex<Vec<TryKey>>,
}

impl Cluster {
    /// Ends a live try successfully, as its pod would.
    fn succeed(&self, key: &TryKey) {
        let tx = self
            .alive
            .lock()
            .unwrap()
            .remove(key)
            .expect("the try is alive");
        tx.send_now(ExecutorEvent::Finished {
            key: key.clone(),
            result: Ok(TaskOutput {
                value: serde_json::json!("done"),
                follow: None,
            }),
            metrics: TryMetrics::default(),
        });
    }
}

/// An executor whose tries outlive the scheduler and that can adopt them
/// (`adopts`), or not, under a given kind.
struct FakeExecutor {
    kind: ExecutorKind,
    adopts: bool,
    cluster: Arc<Cluster>,
}

impl Executor for FakeExecutor {
    fn kind(&self) -> ExecutorKind {
        self.kind
    }

    fn launch(&self, launch: Launch, events: EventSender) {
        let key = launch.key;
        self.cluster.launched.lock().unwrap().push(key.clone());
        events.send_now(ExecutorEvent::Started {
            key: key.clone(),
            handle: Some(format!("job-{}-{}", key.task, key.try_number)),
        });
        self.cluster.alive.lock().unwrap().insert(key, events);
    }

    fn cancel(&self, key: &TryKey) {
        self.cluster.cancelled.lock().unwrap().push(key.clone());
        if let Some(tx) = self.cluster.alive.lock().unwrap().remove(key) {
            tx.send_now(ExecutorEvent::Finished {
                key: key.clone(),
                result: Err(TaskError::stopped("the job was deleted")),
                metrics: TryMetrics::default(),
            });
        }
    }

    fn adopt(&self, launch: Launch, previous: &Adoption, events: EventSender) -> bool {
        if !self.adopts {
            return false;
        }
        let key = launch.key;
        let mut alive = self.cluster.alive.lock().unwrap();
        if !alive.contains_key(&key) {
            return false;
        }
        self.cluster
            .adopted
            .lock()
            .unwrap()
            .push((key.clone(), previous.handle.clone()));
        alive.insert(key, events);
        true
    }
}

fn fake(kind: ExecutorKind, adopts: bool, cluster: &Arc<Cluster>) -> Arc<dyn Executor> {
    Arc::new(FakeExecutor {
        kind,
        adopts,
        cluster: Arc::clone(cluster),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_name_no_executor_are_adopted_by_the_default_executor_after_a_crash() {
    for TestDb { store, .. } in databases().await {
        // As `scheduler --executor kubernetes` with the quickstart's tasks,
        // which name no executor.
        let dag = DagBuilder::new("k8s-default")
            .task(spec("work", ok))
            .build()
            .unwrap();
        let cluster = Arc::new(Cluster::default());
        let cfg = || {
            let mut config = config("k8s-1");
            config.default_executor = ExecutorKind::Kubernetes;
            config
        };
        let run = trigger(&store, &dag).await;
        let first = Running::start(scheduler(&store, &dag, cfg()).with_executor(fake(
            ExecutorKind::Kubernetes,
            true,
            &cluster,
        )));
        let tis = wait_for(&store, run, "the try to run", |t| {
            t[0].state == TaskState::Running
        })
        .await;
        assert_eq!(
            tis[0].executor,
            ExecutorKind::Kubernetes,
            "stored when claimed"
        );
        first.kill();

        let mut second = Running::start(scheduler(&store, &dag, cfg()).with_executor(fake(
            ExecutorKind::Kubernetes,
            true,
            &cluster,
        )));
        for _ in 0..200 {
            if !cluster.adopted.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let key = TryKey {
            run,
            task: 0,
            try_number: 1,
        };
        assert_eq!(
            *cluster.adopted.lock().unwrap(),
            [(key.clone(), "job-0-1".to_owned())],
            "the running job is adopted, with its stored handle"
        );
        cluster.succeed(&key);
        assert_eq!(second.next_finished().await.state, RunState::Success);
        assert_eq!(
            cluster.launched.lock().unwrap().len(),
            1,
            "no second try was started beside the first"
        );
        let tries = store.task_tries(run, None).await.unwrap();
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0].try_number, 1);
        assert_eq!(tries[0].executor, Some(ExecutorKind::Kubernetes));
        second.stop().await;
    }
}

/// Runs `dag`'s run `run` under scheduler `id` on an executor that cannot
/// adopt, crashing the scheduler while each of the first two tries runs;
/// returns the third scheduler.
async fn after_crashes(
    store: &Store,
    dag: &goflow_core::Dag,
    run: i64,
    id: &str,
    cluster: &Arc<Cluster>,
) -> Running {
    let start = || {
        Running::start(scheduler(store, dag, config(id)).with_executor(fake(
            ExecutorKind::InProcess,
            false,
            cluster,
        )))
    };
    for crash in 1..=2u32 {
        let s = start();
        wait_for(store, run, "the try to run", |t| {
            t[0].state == TaskState::Running && t[0].try_number == crash
        })
        .await;
        s.kill();
    }
    start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_tries_do_not_use_retries_and_have_their_own_cap() {
    for TestDb { store, .. } in databases().await {
        let cluster = Arc::new(Cluster::default());
        let mut healthy = spec("healthy", ok);
        healthy.options.retries = Some(0);
        let dag = DagBuilder::new("lost").task(healthy).build().unwrap();
        let run = trigger(&store, &dag).await;
        // Two crashes while the try runs, on an executor that cannot adopt:
        // each try is lost, and tried again at once.
        let mut last = after_crashes(&store, &dag, run, "lost-1", &cluster).await;
        wait_for(&store, run, "the third try to run", |t| {
            t[0].state == TaskState::Running && t[0].try_number == 3
        })
        .await;
        cluster.succeed(&TryKey {
            run,
            task: 0,
            try_number: 3,
        });
        assert_eq!(
            last.next_finished().await.state,
            RunState::Success,
            "crashes of the scheduler do not fail a task with retries = 0"
        );
        let ti = store.task_instance(run, "healthy").await.unwrap().unwrap();
        assert_eq!(ti.lost_tries, 2);
        let tries = store.task_tries(run, None).await.unwrap();
        let lost: Vec<_> = tries
            .iter()
            .filter(|t| t.error.as_deref().is_some_and(|e| e.contains("lost")))
            .collect();
        assert_eq!(lost.len(), 2, "{tries:?}");
        // Each lost try's log says so, and that it did not use a retry.
        let first_log: Vec<String> = store
            .read_logs(run, "healthy", Some(1), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(
            first_log.iter().any(|l| l
                .starts_with("WARN try 1 lost: the scheduler running this try stopped")
                && l.contains(
                    "tried again at once (lost 1 of at most 3; lost tries do not use retries)"
                )),
            "{first_log:#?}"
        );
        last.stop().await;

        // A task that is lost every time still ends, after its cap.
        let mut doomed = spec("doomed", ok);
        doomed.options.max_lost_tries = Some(1);
        let dag = DagBuilder::new("doomed").task(doomed).build().unwrap();
        let run = trigger(&store, &dag).await;
        let mut last = after_crashes(&store, &dag, run, "lost-2", &cluster).await;
        assert_eq!(last.next_finished().await.state, RunState::Failed);
        let ti = store.task_instance(run, "doomed").await.unwrap().unwrap();
        assert_eq!(ti.state, TaskState::Failed);
        assert!(
            ti.last_error.as_deref().is_some_and(|e| e.contains("lost")),
            "{:?}",
            ti.last_error
        );
        last.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_dag_gained_tasks_goes_on_with_them() {
    for TestDb { store, .. } in databases().await {
        let before = DagBuilder::new("growing")
            .task(spec("a", ok))
            .build()
            .unwrap();
        let run = trigger(&store, &before).await;
        let after = DagBuilder::new("growing")
            .task(spec("a", ok))
            .task(spec("b", ok))
            .order("a", "b")
            .build()
            .unwrap();
        let mut s = Running::start(scheduler(&store, &after, config("grow")));
        let done = s.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Success));
        let states: HashMap<String, TaskState> = store
            .task_instances(run)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.state))
            .collect();
        assert_eq!(states.get("b"), Some(&TaskState::Success), "{states:?}");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_refuses_an_id_a_live_scheduler_uses() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("ids").task(spec("a", ok)).build().unwrap();
        // Another live process heartbeats under the id.
        store
            .heartbeat("shared-id", "another-host", 4242, Utc::now())
            .await
            .unwrap();
        let refused = scheduler(&store, &dag, config("shared-id"))
            .run(std::future::ready(()))
            .await;
        match refused {
            Err(e @ SchedulerError::IdInUse { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("shared-id")
                        && msg.contains("4242")
                        && msg.contains("another-host"),
                    "{msg}"
                );
            }
            other => panic!("expected IdInUse, got {other:?}"),
        }
        // A heartbeat of a process of this host that is gone (a crash) does
        // not hold the id: a restart takes its runs back at once.
        let host = goflow_runtime::scheduler::host_name();
        store
            .heartbeat("restarted-id", &host, 2_000_000_000, Utc::now())
            .await
            .unwrap();
        scheduler(&store, &dag, config("restarted-id"))
            .run(std::future::ready(()))
            .await
            .expect("a dead process's id is free");
        // Default ids are unique per process start.
        let (a, b) = (SchedulerConfig::default().id, SchedulerConfig::default().id);
        assert_ne!(a, b);
        assert!(a.starts_with(&host), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_refuses_tasks_in_pools_that_do_not_exist() {
    for TestDb { store, .. } in databases().await {
        let mut pooled = spec("load", ok);
        pooled.options.pool = Some("warehouse".into());
        let dag = DagBuilder::new("pooled").task(pooled).build().unwrap();
        let refused = scheduler(&store, &dag, config("pools-1"))
            .run(std::future::ready(()))
            .await;
        match refused {
            Err(e @ SchedulerError::MissingPools(_)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("warehouse") && msg.contains("pools set warehouse"),
                    "{msg}"
                );
            }
            other => panic!("expected MissingPools, got {other:?}"),
        }
        store.set_pool("warehouse", 2, "").await.unwrap();
        scheduler(&store, &dag, config("pools-1"))
            .run(std::future::ready(()))
            .await
            .expect("starts once the pool exists");
    }
}

static RESTARTS: AtomicU32 = AtomicU32::new(0);

fn sleepy(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.try_number() == 1 {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        RESTARTS.fetch_add(1, Ordering::SeqCst);
        Ok(TaskOutput {
            value: serde_json::json!(ctx.try_number()),
            follow: None,
        })
    })
}

fn forever(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

fn blocking(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        goflow_runtime::run_blocking(|| std::thread::sleep(Duration::from_secs(3)))
            .await
            .map(|()| TaskOutput {
                value: serde_json::Value::Null,
                follow: None,
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_tries_can_be_killed_restarted_and_runs_stopped() {
    for TestDb { store, .. } in databases().await {
        // Killed: the try is aborted and the task ends failed, no retry.
        let mut victim = spec("victim", forever);
        victim.options.retries = Some(3);
        let dag = DagBuilder::new("kill")
            .task(victim)
            .task(spec("after", ok))
            .order("victim", "after")
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = Running::start(scheduler(&store, &dag, config("stop-1")));
        wait_for(&store, run, "the try to run", |t| {
            t.iter()
                .any(|t| t.task_id == "victim" && t.state == TaskState::Running)
        })
        .await;
        store
            .request_stop(
                run,
                &["victim".into()],
                TaskState::Failed,
                "killed by test",
                Utc::now(),
            )
            .await
            .unwrap();
        let done = s.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Failed));
        let ti = store.task_instance(run, "victim").await.unwrap().unwrap();
        assert_eq!((ti.state, ti.try_number), (TaskState::Failed, 1));
        assert_eq!(ti.last_error.as_deref(), Some("killed by test"));
        assert_eq!(ti.stop_requested, None, "carried out");
        let after = store.task_instance(run, "after").await.unwrap().unwrap();
        assert_eq!(after.state, TaskState::UpstreamFailed);
        // Stopping what is not running is refused, naming it.
        let e = store
            .request_stop(run, &["after".into()], TaskState::Failed, "x", Utc::now())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("after"), "{e}");

        // Cleared while running: stopped, then run again.
        let dag = DagBuilder::new("restart")
            .task(spec("sleepy", sleepy))
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        s.stop().await;
        let mut s = Running::start(scheduler(&store, &dag, config("stop-2")));
        wait_for(&store, run, "the try to run", |t| {
            t[0].state == TaskState::Running
        })
        .await;
        store
            .request_stop(
                run,
                &["sleepy".into()],
                TaskState::Pending,
                "cleared by test",
                Utc::now(),
            )
            .await
            .unwrap();
        let done = s.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Success));
        let ti = store.task_instance(run, "sleepy").await.unwrap().unwrap();
        assert_eq!(ti.try_number, 2, "stopped once, then run again");
        assert_eq!(
            store.get_output(run, "sleepy").await.unwrap(),
            Some(serde_json::json!(2))
        );
        s.stop().await;

        // A run stopped: running tries killed, the rest skipped, run failed.
        let dag = DagBuilder::new("stop-run")
            .task(spec("long", forever))
            .task(spec("blocked", forever))
            .task(spec("next", ok))
            .order("long", "next")
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = Running::start(scheduler(&store, &dag, config("stop-3")));
        wait_for(&store, run, "both to run", |t| {
            t.iter().filter(|t| t.state == TaskState::Running).count() == 2
        })
        .await;
        store
            .request_run_stop(run, "stopped by test", Utc::now())
            .await
            .unwrap();
        let done = s.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Failed));
        let states: HashMap<String, TaskState> = store
            .task_instances(run)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.state))
            .collect();
        assert_eq!(states["long"], TaskState::Failed);
        assert_eq!(states["blocked"], TaskState::Failed);
        assert!(
            matches!(
                states["next"],
                TaskState::Skipped | TaskState::UpstreamFailed
            ),
            "{states:?}"
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_synchronous_task_ends_at_once_and_its_thread_is_counted() {
    let TestDb { store, .. } = databases().await.into_iter().next().unwrap();
    let dag = DagBuilder::new("blocking")
        .task(spec("sync", blocking))
        .build()
        .unwrap();
    let run = trigger(&store, &dag).await;
    let metrics = Metrics::new();
    let mut s =
        Running::start(scheduler(&store, &dag, config("sync-1")).with_metrics(metrics.clone()));
    wait_for(&store, run, "the try to run", |t| {
        t[0].state == TaskState::Running
    })
    .await;
    let asked = std::time::Instant::now();
    store
        .request_stop(
            run,
            &["sync".into()],
            TaskState::Failed,
            "killed by test",
            Utc::now(),
        )
        .await
        .unwrap();
    let done = s.next_finished().await;
    assert_eq!(done.state, RunState::Failed);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the try ended before its thread did"
    );
    assert_eq!(goflow_runtime::abandoned_blocking_threads(), 1);
    assert!(metrics
        .encode()
        .unwrap()
        .contains("goflow_abandoned_blocking_threads 1"));
    // The thread returns in the end, and is no longer counted.
    for _ in 0..100 {
        if goflow_runtime::abandoned_blocking_threads() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(goflow_runtime::abandoned_blocking_threads(), 0);
    s.stop().await;
}

/// Holds SQLite's write lock on `path` for `secs` seconds from another
/// process (Python's sqlite3), as a stuck writer or a full disk would make
/// every write fail.
fn lock_sqlite(path: &std::path::Path, secs: f64) -> std::process::Child {
    let script = format!(
        "import sqlite3, time\n\
         c = sqlite3.connect({path:?}, isolation_level=None, timeout=30)\n\
         c.execute('BEGIN EXCLUSIVE')\n\
         print('locked', flush=True)\n\
         time.sleep({secs})\n\
         c.execute('ROLLBACK')\n",
        path = path.display().to_string()
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    child
}

static GATE: AtomicU32 = AtomicU32::new(0);

fn gated(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        while GATE.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(TaskOutput {
            value: serde_json::json!("through"),
            follow: None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_whose_writes_fail_keeps_its_runs_and_is_not_ready_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect_with(
        &url,
        StoreOptions {
            busy_timeout: Duration::from_millis(100),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let dag = DagBuilder::new("wedge")
        .task(spec("gated", gated))
        .task(spec("then", ok))
        .order("gated", "then")
        .build()
        .unwrap();
    let runs: HashSet<i64> = [trigger(&store, &dag).await].into();
    let metrics = Metrics::new();
    let registry = Arc::new(Registry::from_dags([dag.clone()]).unwrap());
    let web = goflow_runtime::web::WebState::new(
        store.clone(),
        Arc::clone(&registry),
        metrics.clone(),
        goflow_runtime::web::WebConfig::default(),
    )
    .await
    .unwrap();
    let app = goflow_runtime::web::router(web);
    let readyz = || async {
        use tower::ServiceExt;
        let res = app.clone().oneshot(http_request("/readyz")).await.unwrap();
        res.status().as_u16()
    };
    let mut s = Running::start(
        Scheduler::new(store.clone(), registry, config("wedge-1")).with_metrics(metrics.clone()),
    );
    let run = *runs.iter().next().unwrap();
    wait_for(&store, run, "the gated try to run", |t| {
        t.iter()
            .any(|t| t.task_id == "gated" && t.state == TaskState::Running)
    })
    .await;
    assert_eq!(readyz().await, 200);

    // Every write fails while another process holds the lock; the try
    // ends meanwhile, so its end cannot be recorded.
    let mut lock = lock_sqlite(&path, 3.0);
    GATE.store(1, Ordering::SeqCst);
    let mut saw_not_ready = false;
    for _ in 0..100 {
        if metrics.scheduler_problem().is_some() {
            saw_not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_not_ready, "the scheduler says it is not ready");
    assert_eq!(readyz().await, 503);
    lock.wait().unwrap();

    // Writes come back: the run is reloaded and finishes, nothing lost.
    let done = s.next_finished().await;
    assert_eq!((done.run, done.state), (run, RunState::Success));
    assert_eq!(
        store.get_output(run, "gated").await.unwrap(),
        Some(serde_json::json!("through")),
        "the result that could not be written at first is kept"
    );
    assert_eq!(metrics.scheduler_problem(), None);
    assert_eq!(readyz().await, 200);
    s.stop().await;
}

fn http_request(path: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::builder()
        .uri(path)
        .body(axum::body::Body::empty())
        .unwrap()
}

fn big(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::json!("x".repeat(300)),
            follow: None,
        })
    })
}

/// An executor whose tries print `lines` lines of 10 bytes and succeed.
struct Chatty {
    lines: usize,
}

impl Executor for Chatty {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::LocalProcess
    }

    fn launch(&self, launch: Launch, events: EventSender) {
        let key = launch.key;
        events.send_now(ExecutorEvent::Started {
            key: key.clone(),
            handle: None,
        });
        for i in 0..self.lines {
            events.send_now(ExecutorEvent::Log {
                key: key.clone(),
                stream: goflow_store::LogStream::Stdout,
                line: format!("line {i:04}"),
            });
        }
        events.send_now(ExecutorEvent::Finished {
            key,
            result: Ok(TaskOutput {
                value: serde_json::Value::Null,
                follow: None,
            }),
            metrics: TryMetrics::default(),
        });
    }

    fn cancel(&self, _: &TryKey) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_logs_over_their_limits_are_refused_with_a_message() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("big")
            .task(spec("big", big))
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut small_outputs = config("limits-1");
        small_outputs.max_output_bytes = 100;
        let mut s = Running::start(scheduler(&store, &dag, small_outputs));
        assert_eq!(s.next_finished().await.state, RunState::Failed);
        let ti = store.task_instance(run, "big").await.unwrap().unwrap();
        let error = ti.last_error.unwrap_or_default();
        assert!(
            error.contains("302 bytes") && error.contains("limit of 100 bytes"),
            "{error}"
        );
        assert_eq!(ti.try_number, 1, "not retried: it would be as large again");
        assert_eq!(store.get_output(run, "big").await.unwrap(), None);
        s.stop().await;

        let mut chatty = spec("chatty", ok);
        chatty.options.executor = Some(ExecutorKind::LocalProcess);
        let dag = DagBuilder::new("chatty").task(chatty).build().unwrap();
        let run = trigger(&store, &dag).await;
        let mut small_logs = config("limits-2");
        small_logs.max_log_bytes_per_try = 55;
        let mut s = Running::start(
            scheduler(&store, &dag, small_logs).with_executor(Arc::new(Chatty { lines: 20 })),
        );
        assert_eq!(s.next_finished().await.state, RunState::Success);
        let all = store
            .read_logs(run, "chatty", Some(1), 0, 1000)
            .await
            .unwrap();
        let printed: Vec<&str> = all
            .iter()
            .filter(|l| l.stream == goflow_store::LogStream::Stdout)
            .map(|l| l.line.as_str())
            .collect();
        // Five lines of 10 bytes and a newline fit in 55 bytes.
        assert_eq!(
            printed,
            [
                "line 0000",
                "line 0001",
                "line 0002",
                "line 0003",
                "line 0004"
            ]
        );
        let dropped = all
            .iter()
            .find(|l| l.line.contains("log limit reached"))
            .expect("a line says what was dropped");
        assert_eq!(dropped.stream, goflow_store::LogStream::System);
        assert!(
            dropped.line.contains("15 lines (150 bytes)") && dropped.line.contains("55 bytes"),
            "{}",
            dropped.line
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_a_stopping_deadline_is_stopped() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("late")
            .task(spec("forever", forever))
            .alerts(goflow_core::AlertSettings {
                deadline: Some(Duration::from_secs(1)),
                stop_at_deadline: true,
                ..Default::default()
            })
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = Running::start(scheduler(&store, &dag, config("late-1")));
        let done = s.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Failed));
        let ti = store.task_instance(run, "forever").await.unwrap().unwrap();
        assert_eq!(ti.state, TaskState::Failed);
        assert!(
            ti.last_error
                .as_deref()
                .is_some_and(|e| e.contains("passed its deadline of 1.00s")),
            "{:?}",
            ti.last_error
        );
        s.stop().await;
    }
}

static SECOND_GATE: AtomicU32 = AtomicU32::new(0);

fn waits_for_its_second_try(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.try_number() == 1 {
            std::future::pending::<()>().await;
        }
        SECOND_GATE.fetch_add(1, Ordering::SeqCst);
        Ok(TaskOutput {
            value: serde_json::json!(ctx.try_number()),
            follow: None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_without_ids_differ_and_one_takes_over_the_others_runs() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("takeover")
            .task(spec("work", waits_for_its_second_try))
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let unnamed = || {
            let mut config = config("unused");
            config.id = SchedulerConfig::default().id;
            config
        };
        let (a, b) = (unnamed(), unnamed());
        assert_ne!(a.id, b.id, "each process gets its own id");
        let first = Running::start(scheduler(&store, &dag, a.clone()));
        let ti = wait_for(&store, run, "the first try to run", |t| {
            t[0].state == TaskState::Running
        })
        .await;
        assert_eq!(ti[0].claimed_by.as_deref(), Some(a.id.as_str()));
        let mut second = Running::start(scheduler(&store, &dag, b.clone()));
        first.kill();
        // Once the first one's heartbeat is stale, the second takes its run.
        let done = second.next_finished().await;
        assert_eq!((done.run, done.state), (run, RunState::Success));
        let ti = store.task_instance(run, "work").await.unwrap().unwrap();
        assert_eq!(ti.try_number, 2);
        assert_eq!(ti.claimed_by.as_deref(), Some(b.id.as_str()));
        assert_eq!(ti.lost_tries, 1);
        second.stop().await;
    }
}
