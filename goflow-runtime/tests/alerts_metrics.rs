//! Job performance metrics: a task that allocates a known amount of
//! memory and one that burns a known amount of CPU, run by a real
//! scheduler through the local-process executor, are recorded per try in
//! the store (`task_try_history`, the performance chart's query) and seen
//! once by a [`TryObserver`].
//!
//! As in `local_process.rs`, this test binary is its own worker: the
//! executor re-runs it as `<this binary> --exact worker_entry --nocapture
//! -- tasks run ...` with `GOFLOW_TEST_WORKER=1`.

mod alerts_support;

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts_support::*;
use goflow_core::{
    Dag, DagBuilder, ExecutorKind, Inputs, RunState, TaskContext, TaskError, TaskFuture,
    TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::alerts::{AlertConfig, AlertService, TryObserver};
use goflow_runtime::executor::{
    EventSender, Executor, ExecutorEvent, InProcessExecutor, Launch, LocalProcessExecutor, TryKey,
    TryMetrics,
};
use goflow_runtime::metrics::Metrics;
use goflow_runtime::worker::WorkerMetrics;
use goflow_runtime::Registry;
use goflow_store::testing::{databases, TestDb};
use goflow_store::FinishedTry;
use serde_json::json;
use tokio::sync::oneshot;

use support::WORKER_ENV;
const MIB: i64 = 1 << 20;
/// CPU time the `burn` task uses, by its own measure.
const BURN_MS: u64 = 500;

fn output(value: serde_json::Value) -> Result<TaskOutput, TaskError> {
    Ok(TaskOutput {
        value,
        follow: None,
    })
}

/// Allocates and touches 64 MiB.
fn memory(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let sum: u64 = block.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        output(json!(sum))
    })
}

/// Burns `BURN_MS` of user CPU time, measured by the process itself (so
/// a busy machine makes it slower, not smaller).
fn burn(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        let used = || {
            WorkerMetrics::of_this_process()
                .and_then(|m| m.cpu_user_ms)
                .unwrap_or(u64::MAX)
        };
        let target = used().saturating_add(BURN_MS);
        let mut x = 1u64;
        while used() < target {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        output(json!(x % 2))
    })
}

/// In-process: sleeps 200 ms.
fn wall(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        output(json!(null))
    })
}

fn spec(id: &str, executor: ExecutorKind, run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "test",
        options: TaskOptions {
            executor: Some(executor),
            ..Default::default()
        },
        data_upstream: Vec::new(),
        run,
    }
}

fn dag() -> Dag {
    DagBuilder::new("perf")
        .task(spec("memory", ExecutorKind::LocalProcess, memory))
        .task(spec("burn", ExecutorKind::LocalProcess, burn))
        .task(spec("wall", ExecutorKind::InProcess, wall))
        .build()
        .unwrap()
}

/// Returns at once in a normal test run; in a child started by the
/// executor, runs `tasks run ...` like a goflow binary and exits.
#[test]
fn worker_entry() {
    support::act_as_goflow_binary(|| Registry::from_dags([dag()]).unwrap());
}

fn executor() -> LocalProcessExecutor {
    LocalProcessExecutor::with_program(
        std::env::current_exe().unwrap(),
        support::entry_args("worker_entry"),
    )
    .env(WORKER_ENV, "1")
}

#[derive(Default)]
struct Seen(Mutex<Vec<(String, u32)>>);

impl TryObserver for Seen {
    fn observe_try(&self, finished: &FinishedTry) {
        let t = &finished.task_try;
        self.0
            .lock()
            .unwrap()
            .push((t.task_id.clone(), t.try_number));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_try_records_wall_time_cpu_memory_and_exit_code() {
    for TestDb { store, .. } in databases().await {
        let dag = dag();
        trigger(&store, &dag, json!({})).await;
        let mut scheduler = RunningScheduler::start_with(&store, vec![dag.clone()], "s1", |s| {
            s.with_executor(Arc::new(executor()))
        });
        assert_eq!(scheduler.next_finished().await.state, RunState::Success);
        scheduler.stop().await;

        let one = |task: &'static str| {
            let store = store.clone();
            async move {
                let mut h = store.task_try_history("perf", task, 10).await.unwrap();
                assert_eq!(h.len(), 1, "{task}: {h:?}");
                h.remove(0)
            }
        };
        let m = one("memory").await;
        assert_eq!(m.measurements.exit_code, Some(0));
        let peak = m.measurements.peak_memory_bytes.expect("peak memory");
        assert!(peak >= 64 * MIB, "peak {} MiB", peak / MIB);
        assert!(m.duration_ms.is_some());

        let b = one("burn").await;
        assert_eq!(b.measurements.exit_code, Some(0));
        let user = b.measurements.cpu_user_ms.expect("user CPU time") as u64;
        assert!(
            (BURN_MS..BURN_MS * 10).contains(&user),
            "burned {BURN_MS} ms, recorded {user} ms"
        );
        assert!(b.measurements.cpu_system_ms.is_some());
        let wall_ms = b.duration_ms.expect("wall time") as u64;
        assert!(
            wall_ms >= BURN_MS,
            "{wall_ms} ms of wall time for {user} ms of CPU"
        );
        // The memory task touched 64 MiB; the CPU task did not.
        assert!(b.measurements.peak_memory_bytes.unwrap() < peak);

        // In process: wall time only (no process of its own to measure).
        let w = one("wall").await;
        assert!(w.duration_ms.unwrap() >= 200, "{w:?}");
        assert_eq!(w.measurements, goflow_store::TryMeasurements::default());

        // The observer hook sees each try once.
        let seen = Arc::new(Seen::default());
        let mut alert_config = AlertConfig::default();
        alert_config.poll_interval = Duration::from_millis(100);
        let service = AlertService::new(
            store.clone(),
            Arc::new(Registry::from_dags([dag.clone()]).unwrap()),
            alert_config,
        )
        .unwrap()
        .observe_tries(seen.clone());
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.run(async {
            let _ = rx.await;
        }));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.0.lock().unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "tries not observed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = stop.send(());
        task.await.unwrap();
        let mut got = seen.0.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            [
                ("burn".to_owned(), 1),
                ("memory".to_owned(), 1),
                ("wall".to_owned(), 1)
            ]
        );
    }
}

/// Runs tries in process but reports them as a Kubernetes pod that
/// reserved what [`reserved`] says, as the Kubernetes executor does (its
/// reading of the pod is tested in `kubernetes_executor.rs`).
struct Reserving(InProcessExecutor);

/// What [`Reserving`] reports: the pod's requests and limits, no CPU limit.
fn reserved() -> TryMetrics {
    let mut m = TryMetrics::default();
    m.exit_code = Some(0);
    m.peak_memory_bytes = Some(100 * MIB as u64);
    m.cpu_user_ms = Some(30);
    m.cpu_system_ms = Some(10);
    m.cpu_request_millis = Some(250);
    m.memory_request_bytes = Some(256 * MIB as u64);
    m.memory_limit_bytes = Some(512 * MIB as u64);
    m
}

impl Executor for Reserving {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Kubernetes
    }

    fn launch(&self, launch: Launch, events: EventSender) {
        let (tx, mut rx) =
            goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
        self.0.launch(launch, tx);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let event = match event {
                    ExecutorEvent::Finished { key, result, .. } => ExecutorEvent::Finished {
                        key,
                        result,
                        metrics: reserved(),
                    },
                    other => other,
                };
                let _ = events.send(event).await;
            }
        });
    }

    fn cancel(&self, key: &TryKey) {
        self.0.cancel(key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_pod_reserved_is_kept_with_its_try_and_counted() {
    for db in databases().await {
        let (store, backend) = (&db.store, db.backend());
        let dag = DagBuilder::new("reserved")
            .task(spec("pod", ExecutorKind::Kubernetes, wall))
            .build()
            .unwrap();
        trigger(store, &dag, json!({})).await;
        let metrics = Metrics::new();
        let mut scheduler = RunningScheduler::start_with(store, vec![dag.clone()], "s1", |s| {
            s.with_executor(Arc::new(Reserving(InProcessExecutor::new())))
                .with_metrics(metrics.clone())
        });
        assert_eq!(scheduler.next_finished().await.state, RunState::Success);
        scheduler.stop().await;

        let tries = store.task_try_history("reserved", "pod", 10).await.unwrap();
        assert_eq!(tries.len(), 1, "{backend:?}");
        let t = &tries[0];
        assert_eq!(
            (
                t.measurements.cpu_request_millis,
                t.measurements.memory_request_bytes,
                t.measurements.cpu_limit_millis,
                t.measurements.memory_limit_bytes
            ),
            (Some(250), Some(256 * MIB), None, Some(512 * MIB)),
            "{backend:?}"
        );
        assert_eq!(
            t.measurements.peak_memory_bytes,
            Some(100 * MIB),
            "{backend:?}"
        );

        // The cost side in Prometheus: requested cores times the try's run
        // time (the `wall` task runs at least 200 ms).
        let text = metrics.encode().unwrap();
        let counter = |name: &str| -> f64 {
            let prefix = format!("{name}{{dag=\"reserved\",task=\"pod\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        };
        let cpu = counter("goflow_task_reserved_cpu_core_seconds_total");
        assert!((0.25 * 0.2..0.25 * 60.0).contains(&cpu), "{cpu}");
        let memory = counter("goflow_task_reserved_memory_byte_seconds_total");
        assert!(
            ((256 * MIB) as f64 * 0.2..(256 * MIB) as f64 * 60.0).contains(&memory),
            "{memory}"
        );
    }
}
