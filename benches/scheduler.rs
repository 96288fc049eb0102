//! End-to-end scheduler benchmarks with durable state: no-op tasks from
//! trigger to the run's success, on SQLite (and PostgreSQL when
//! `GOFLOW_BENCH_DATABASE_URL` or `GOFLOW_TEST_DATABASE_URL` is set), with
//! the in-process and the local-process executor.
//!
//! ```text
//! cargo bench --bench scheduler                 # every workload
//! cargo bench --bench scheduler -- fan_10000    # those whose name contains it
//! ```
//!
//! Each workload runs in a fresh child process so that its peak RSS is its
//! own. Reported: wall time, task instances per second, scheduling latency
//! (a task's start minus its last upstream's end, from the stored
//! timestamps) p50/p95/max, and peak RSS. Figures go in benches/README.md.

#![allow(missing_docs)]

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use goflow_core::{DataInterval, ExecutorKind, RunType};
use goflow_runtime::cli::Cli;
use goflow_runtime::executor::LocalProcessExecutor;
use goflow_runtime::scheduler::{Scheduler, SchedulerConfig};
use goflow_runtime::{db, Registry};

mod common;
use common::{chain, fan, single};

fn registry() -> Registry {
    Registry::from_dags([
        chain(50),
        fan("fan200", 200),
        fan("fan10000", 10_000),
        single(),
    ])
    .unwrap()
}

/// (name, DAG id, runs)
const WORKLOADS: [(&str, &str, usize); 4] = [
    ("chain_50", "chain", 1),
    ("fan_200", "fan200", 1),
    ("runs_100", "single", 100),
    ("fan_10000", "fan10000", 1),
];

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs one workload in this process and prints one result line.
async fn measure(name: &str, backend: &str, executor: ExecutorKind) {
    let (_, dag_id, runs) = WORKLOADS
        .iter()
        .find(|w| w.0 == name)
        .copied()
        .expect("workload");
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        _ => postgres_schema_url(),
    };
    let store = db::open(&url).await.unwrap();
    let registry = Arc::new(registry());
    let rows = db::sync_registry(&store, &registry, Utc::now())
        .await
        .unwrap();
    let dag = registry.get(dag_id).unwrap();
    let mut run_ids = Vec::new();
    let started = Instant::now();
    for i in 0..runs {
        let at = DataInterval::at(Utc::now() + chrono::Duration::microseconds(i as i64));
        let new = db::new_run(
            dag,
            rows[dag_id].version,
            RunType::Manual,
            at,
            serde_json::json!({}),
        );
        run_ids.push(store.create_run(&new, Utc::now()).await.unwrap().id);
    }
    let mut config = SchedulerConfig::default();
    config.id = "bench".into();
    config.default_executor = executor;
    config.max_owned_runs = 1000;
    let mut scheduler = Scheduler::new(store.clone(), Arc::clone(&registry), config);
    if executor == ExecutorKind::LocalProcess {
        let exe = std::env::current_exe().unwrap();
        scheduler = scheduler.with_executor(Arc::new(LocalProcessExecutor::with_program(
            exe,
            vec!["worker".into()],
        )));
    }
    let mut finished = scheduler.finished_runs();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    for _ in 0..runs {
        tokio::time::timeout(Duration::from_secs(600), finished.recv())
            .await
            .expect("the workload finishes")
            .expect("scheduler running");
    }
    let wall = started.elapsed();
    let _ = stop.send(());
    let _ = handle.await;

    let mut instances = 0usize;
    let mut latencies = Vec::new();
    for id in run_ids {
        let tis = store.task_instances(id).await.unwrap();
        instances += tis.len();
        let ends: std::collections::HashMap<String, chrono::DateTime<Utc>> = tis
            .iter()
            .filter_map(|t| Some((t.task_id.clone(), t.end_date?)))
            .collect();
        for ti in &tis {
            let node = dag.task(&ti.task_id).unwrap();
            let last_up = node
                .upstream
                .iter()
                .filter_map(|u| ends.get(dag.tasks()[u.task].id.as_str()))
                .max();
            if let (Some(up), Some(start)) = (last_up, ti.start_date) {
                latencies.push((start - *up).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let ms = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.2}")
        }
    };
    println!(
        "{name:<10} {backend:<8} {:<13} {:>9.1} ms {:>9.0} TI/s  latency p50 {:>7} ms p95 {:>7} ms max {:>7} ms  peak RSS {:>6.1} MB",
        executor.as_str(),
        wall.as_secs_f64() * 1000.0,
        instances as f64 / wall.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.95)),
        ms(latencies.last().copied().unwrap_or(f64::NAN)),
        peak_rss_mb(),
    );
}

/// A fresh schema on the PostgreSQL bench database.
fn postgres_schema_url() -> String {
    let base = postgres_base().expect("a PostgreSQL URL");
    let schema = format!("goflow_bench_{}", std::process::id());
    let status = Command::new("psql")
        .args([
            &base,
            "-q",
            "-c",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        ])
        .status()
        .expect("psql");
    assert!(status.success(), "could not create schema {schema}");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

fn postgres_base() -> Option<String> {
    std::env::var("GOFLOW_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("GOFLOW_TEST_DATABASE_URL"))
        .ok()
}

/// Idle scheduler memory: one scheduled DAG, nothing due, after a while.
async fn idle() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("idle.db").display());
    let store = db::open(&url).await.unwrap();
    let mut config = SchedulerConfig::default();
    config.id = "idle".into();
    let scheduler = Scheduler::new(store, Arc::new(registry()), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "idle       sqlite   scheduler with 4 DAGs (10,253 tasks) loaded: RSS {:.1} MB",
        rss_mb()
    );
    let _ = stop.send(());
    let _ = handle.await;
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        // The local-process executor's worker: this binary as `tasks run`.
        Some("worker") => {
            let cli = Cli::parse_from(
                std::iter::once("goflow".to_string()).chain(args[2..].iter().cloned()),
            );
            let mut out = std::io::stdout();
            return match rt.block_on(goflow_runtime::cli::run(
                cli,
                &registry(),
                &mut out,
                Utc::now(),
            )) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{e}");
                    e.exit_code()
                }
            };
        }
        Some("one") => {
            let executor = args[4].parse::<ExecutorKind>().unwrap();
            rt.block_on(measure(&args[2], &args[3], executor));
            return ExitCode::SUCCESS;
        }
        Some("idle") => {
            rt.block_on(idle());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // `cargo bench` passes `--bench`; anything else filters workloads.
    let filter = args.iter().skip(1).find(|a| !a.starts_with("--")).cloned();
    let mut backends = vec!["sqlite"];
    if postgres_base().is_some() {
        if cfg!(feature = "postgres") {
            backends.push("postgres");
        } else {
            eprintln!("PostgreSQL skipped: run with `--features postgres` to include it");
        }
    }
    let exe = std::env::current_exe().unwrap();
    for backend in backends {
        for executor in [ExecutorKind::InProcess, ExecutorKind::LocalProcess] {
            for (name, _, _) in WORKLOADS {
                if filter.as_deref().is_some_and(|f| !name.contains(f)) {
                    continue;
                }
                // 10,000 processes are out of scope for the local-process executor.
                if executor == ExecutorKind::LocalProcess && name == "fan_10000" {
                    continue;
                }
                let status = Command::new(&exe)
                    .args(["one", name, backend, executor.as_str()])
                    .status()
                    .unwrap();
                if !status.success() {
                    eprintln!("{name} on {backend} with {executor} failed: {status}");
                }
            }
        }
    }
    if filter.is_none() {
        let _ = Command::new(&exe).arg("idle").status();
    }
    ExitCode::SUCCESS
}
