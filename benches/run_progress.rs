//! Scheduling overhead without I/O: how fast `RunProgress` (the pure
//! scheduling rules) and the in-process runner drive no-op tasks through
//! a chain of 50 and a 1 -> N -> 1 fan-out.
//!
//! `cargo bench --bench run_progress`; figures in benches/README.md.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use goflow::model::{Dag, DataInterval, Outcome, RunId, RunProgress, RunType};
use goflow::runtime::runner::{run_dag, RunParams};

mod common;
use common::{chain, fan};

/// Drives a run to its end with every try succeeding at once.
fn drive(dag: &Dag) {
    let mut p = RunProgress::new(dag);
    p.settle(dag);
    loop {
        let ready = p.runnable(dag);
        if ready.is_empty() {
            break;
        }
        for i in ready {
            p.queue(dag, i).unwrap();
            p.start(dag, i).unwrap();
            p.finish(dag, i, Outcome::Success { follow: None }).unwrap();
        }
        p.settle(dag);
    }
    assert!(p.run_state().is_terminal());
}

fn params() -> RunParams {
    RunParams {
        run_id: RunId::new("bench").unwrap(),
        run_type: RunType::Test,
        data_interval: DataInterval::at(chrono::Utc::now()),
        conf: serde_json::json!({}),
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("run_progress");
    for (name, dag) in [
        ("chain_50", chain(50)),
        ("fan_200", fan("fan", 200)),
        ("fan_10000", fan("fan", 10_000)),
    ] {
        group.throughput(Throughput::Elements(dag.tasks().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &dag, |b, dag| {
            b.iter(|| drive(dag))
        });
    }
    group.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("in_process_runner");
    for (name, dag) in [("chain_50", chain(50)), ("fan_200", fan("fan", 200))] {
        let dag = Arc::new(dag);
        group.throughput(Throughput::Elements(dag.tasks().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &dag, |b, dag| {
            b.iter(|| {
                rt.block_on(run_dag(Arc::clone(dag), params(), &mut |_| {}))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(all, benches);
criterion_main!(all);
