//! Scheduling overhead: how fast `RunProgress` (the pure scheduling rules,
//! no I/O) and `dags test`'s engine (the scheduler on a private in-memory
//! SQLite store, in-process executor) drive no-op tasks through a chain
//! of 50 and a 1 -> N -> 1 fan-out.
//!
//! `cargo bench --bench run_progress`; figures in benches/README.md.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use goflow_core::{Dag, DataInterval, Outcome, RunProgress, RunState};
use goflow_runtime::cli::{run_test, TestRun};
use goflow_runtime::Registry;

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
    // What `dags test` runs, minus printing: a private store, a scheduler
    // of its own, the run to its end. Milliseconds per iteration: fewer
    // samples than criterion's 100.
    let mut group = c.benchmark_group("in_process_runner");
    group.sample_size(20);
    for (name, dag) in [("chain_50", chain(50)), ("fan_200", fan("fan", 200))] {
        let id = dag.id().to_string();
        group.throughput(Throughput::Elements(dag.tasks().len() as u64));
        let registry = Registry::from_dags([dag]).unwrap();
        group.bench_with_input(
            BenchmarkId::from_parameter(name),
            &registry,
            |b, registry| {
                b.iter(|| {
                    let run = TestRun::new(&id, DataInterval::at(chrono::Utc::now()));
                    let report = rt.block_on(run_test(registry, run, &mut |_| {})).unwrap();
                    assert_eq!(report.state, RunState::Success);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(all, benches);
criterion_main!(all);
