//! The Kubernetes executor's own overhead, against an in-memory API server
//! (`executor::kubernetes::testing::FakeApiServer`; no cluster): how many
//! Jobs it creates per second when the rate limiter is out of the way, that
//! the limiter does bound the rate, and the memory each tracked Job costs.
//!
//! `cargo bench --bench kubernetes_executor --features kubernetes`;
//! figures in benches/README.md.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use goflow_core::{
    Dag, DagBuilder, DataInterval, ExecutorKind, Inputs, RunId, RunType, TaskContext, TaskFuture,
    TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::executor::kubernetes::testing::FakeApiServer;
use goflow_runtime::executor::kubernetes::{KubernetesConfig, KubernetesExecutor};
use goflow_runtime::executor::{Executor, Launch, TryKey};
use goflow_runtime::task_api::TaskApi;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::runtime::Runtime;

/// Counts heap bytes, for the memory figure.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated on the heap and not freed.
fn live_heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn noop(_: TaskContext, _: &goflow_core::Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

fn dag() -> Arc<Dag> {
    Arc::new(
        DagBuilder::new("bench")
            .task(TaskSpec {
                id: "work".into(),
                function: "noop",
                options: TaskOptions {
                    executor: Some(ExecutorKind::Kubernetes),
                    ..Default::default()
                },
                data_upstream: vec![],
                run: noop,
            })
            .build()
            .unwrap(),
    )
}

/// The first try of the one task in run `n`: each gets its own Job. (Not
/// try `n` of one run: a try's launch deletes the Jobs of the earlier
/// tries of its task instance that still run.)
fn launch(dag: &Arc<Dag>, n: u32) -> Launch {
    Launch {
        key: TryKey {
            run: i64::from(n),
            task: 0,
            try_number: 1,
        },
        ctx: TaskContext::builder(
            dag.id().clone(),
            RunId::new(format!("manual__2026-01-01T00:00:00+00:00-{n}")).unwrap(),
            dag.tasks()[0].id.clone(),
        )
        .try_number(1)
        .max_tries(u32::MAX)
        .run_type(RunType::Manual)
        .data_interval(DataInterval::at(chrono::Utc::now()))
        .conf(serde_json::json!({}))
        .build(),
        dag: Arc::clone(dag),
        inputs: Inputs::new(),
    }
}

fn config(per_second: u32, burst: u32) -> KubernetesConfig {
    let mut config = KubernetesConfig::default();
    config.image = Some("registry.example.com/dags:1".into());
    config.creates_per_second = per_second;
    config.create_burst = burst;
    config
}

/// Launches `count` tries and waits until the API server has their Jobs.
async fn create_jobs(
    executor: &KubernetesExecutor,
    server: &FakeApiServer,
    dag: &Arc<Dag>,
    count: u32,
    events: &goflow_runtime::executor::EventSender,
) -> Duration {
    let before = server.jobs_created();
    let start = Instant::now();
    for n in 1..=count {
        executor.launch(launch(dag, n), events.clone());
    }
    while server.jobs_created() < before + u64::from(count) {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    start.elapsed()
}

fn creation(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dag = dag();
    let mut group = c.benchmark_group("kubernetes_executor");
    group.sample_size(10);
    const N: u32 = 1_000;
    group.throughput(Throughput::Elements(u64::from(N)));
    group.bench_function("create_1000_jobs_unlimited", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (client, server) = FakeApiServer::start();
                    let executor = KubernetesExecutor::new(
                        client,
                        config(1_000_000, 1_000_000),
                        TaskApi::new(),
                    );
                    let (tx, _rx) = goflow_runtime::executor::event_channel(
                        goflow_runtime::executor::EVENT_CAPACITY,
                    );
                    total += create_jobs(&executor, &server, &dag, N, &tx).await;
                }
                total
            })
        })
    });
    group.finish();
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One-shot figures criterion does not measure: the rate under the
/// limiter, and memory per tracked Job (the slope of RSS between 10,000
/// and 30,000 tracked, which cancels fixed costs).
fn figures() {
    let rt = Runtime::new().unwrap();
    let dag = dag();
    rt.block_on(async {
        // The limiter: 50/s with a burst of 50, 200 Jobs: ~3 s expected.
        let (client, server) = FakeApiServer::start();
        let executor = KubernetesExecutor::new(client, config(50, 50), TaskApi::new());
        let (tx, _rx) = goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
        let took = create_jobs(&executor, &server, &dag, 200, &tx).await;
        println!(
            "kubernetes_executor/rate_limited_50qps_burst50: 200 Jobs in {:.2} s ({:.0} Jobs/s)",
            took.as_secs_f64(),
            200.0 / took.as_secs_f64()
        );

        // Memory per tracked Job. Launched in waves of 250, as a scheduler
        // claims work, so that transient request buffers do not inflate the
        // peak; the events are consumed, as the scheduler does.
        let (client, server) = FakeApiServer::start_lean();
        let executor =
            KubernetesExecutor::new(client, config(1_000_000, 1_000_000), TaskApi::new());
        let (tx, mut rx) = goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let mut points = Vec::new();
        let mut launched = 0;
        for target in [10_000u32, 30_000] {
            let start = Instant::now();
            while launched < target {
                let wave = (launched + 250).min(target);
                for n in launched + 1..=wave {
                    executor.launch(launch(&dag, n), tx.clone());
                }
                while server.jobs_created() < u64::from(wave) {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                launched = wave;
            }
            assert_eq!(executor.tracked(), target as usize);
            tokio::time::sleep(Duration::from_millis(200)).await;
            println!(
                "kubernetes_executor/tracked_{target}: created in {:.2} s, heap {:.1} MB, RSS {:.1} MB",
                start.elapsed().as_secs_f64(),
                live_heap() as f64 / 1e6,
                rss().unwrap_or(0) as f64 / 1e6
            );
            points.push((target, live_heap()));
        }
        // The fake API server's records of the Jobs are not the executor's.
        let before = live_heap();
        server.forget_jobs();
        let server_share = (before - live_heap()) as f64 / f64::from(launched);
        if let [(n1, h1), (n2, h2)] = points[..] {
            let slope = (h2 - h1) as f64 / f64::from(n2 - n1);
            println!(
                "kubernetes_executor/memory_per_tracked_job: {:.0} bytes of heap \
                 (slope between {n1} and {n2} tracked Jobs, less the fake API server's \
                 {server_share:.0} bytes per Job record)",
                slope - server_share
            );
        }
    });
}

criterion_group!(benches, creation);

fn main() {
    benches();
    figures();
    Criterion::default().configure_from_args().final_summary();
}
