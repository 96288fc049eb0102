//! Prometheus metrics of a goflow process, served at `/metrics` by the web
//! server (see [`crate::web`]).
//!
//! [`Metrics`] is cheap to clone (it shares one registry): the scheduler
//! and executors record what happens through its methods, and the web
//! server fills the gauges that the store knows (runs and task instances
//! by state, queue depth) at each scrape, so they are never stale.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `goflow_dag_runs` | gauge, at scrape | `state` |
//! | `goflow_task_instances` | gauge, at scrape | `state` |
//! | `goflow_queue_depth` | gauge, at scrape: task instances `scheduled` or `queued` | |
//! | `goflow_abandoned_blocking_threads` | gauge, at scrape: synchronous in-process task bodies still running after their try was stopped or timed out | |
//! | `goflow_scheduler_ready` | gauge: 1 while the scheduler of this process keeps up, 0 while its writes fail | |
//! | `goflow_task_duration_seconds` | histogram | `dag`, `task` |
//! | `goflow_task_cpu_seconds` | histogram: user + system CPU of tries that measured it | `dag`, `task` |
//! | `goflow_task_peak_memory_bytes` | histogram: peak RSS of tries that measured it | `dag`, `task` |
//! | `goflow_task_reserved_cpu_core_seconds_total` | counter: CPU cores a try's pod requested times its run time | `dag`, `task` |
//! | `goflow_task_reserved_memory_byte_seconds_total` | counter: memory a try's pod requested times its run time | `dag`, `task` |
//! | `goflow_scheduling_latency_seconds` | histogram | |
//! | `goflow_scheduler_loop_seconds` | histogram | |
//! | `goflow_executor_launches_total` | counter | `executor` |
//! | `goflow_executor_failures_total` | counter | `executor` |
//! | `goflow_db_query_seconds` | histogram | `op` |
//!
//! ```
//! use goflow_runtime::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! metrics.executor_launched("in_process");
//! metrics.observe_task_duration("daily-sales", "extract", 1.25);
//! let text = metrics.encode().unwrap();
//! assert!(text.contains("goflow_executor_launches_total{executor=\"in_process\"} 1"));
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use goflow_core::{RunState, TaskState};

use crate::executor::TryMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    dag: String,
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutorLabel {
    executor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Task durations: 0.1 s to about 2 days.
fn task_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 21))
}

/// CPU time of a try: 10 ms to about 6 days.
fn task_cpu_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 26))
}

/// Peak memory of a try: 1 MiB to 64 GiB.
fn task_memory_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0 * 1024.0, 2.0, 17))
}

/// Database calls: 0.5 ms to about 16 s.
fn db_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics of one process. Clones share them. See the module docs.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    runs: Family<StateLabel, Gauge>,
    task_instances: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    abandoned_blocking: Gauge,
    scheduler_ready: Gauge,
    task_duration: HistogramFamily<TaskLabels>,
    task_cpu: HistogramFamily<TaskLabels>,
    task_memory: HistogramFamily<TaskLabels>,
    reserved_cpu: Family<TaskLabels, Counter<f64, AtomicU64>>,
    reserved_memory: Family<TaskLabels, Counter<f64, AtomicU64>>,
    schedule_latency: Histogram,
    loop_latency: Histogram,
    last_loop_latency: AtomicU64,
    launches: Family<ExecutorLabel, Counter>,
    failures: Family<ExecutorLabel, Counter>,
    /// The executor kinds seen, for [`Metrics::executor_counts`].
    kinds: Mutex<BTreeSet<String>>,
    db: HistogramFamily<OpLabel>,
    /// Why the scheduler of this process is not keeping up, if it is not.
    scheduler_problem: Mutex<Option<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Bits of `f64::NAN`: "no loop latency recorded yet".
const NO_LATENCY: u64 = 0x7ff8_0000_0000_0000;

impl Metrics {
    /// A fresh set of metrics, registered under the `goflow_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("goflow");
        let runs = Family::<StateLabel, Gauge>::default();
        registry.register("dag_runs", "DAG runs by state", runs.clone());
        let task_instances = Family::<StateLabel, Gauge>::default();
        registry.register(
            "task_instances",
            "Task instances by state",
            task_instances.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Task instances waiting for an executor (scheduled or queued)",
            queue_depth.clone(),
        );
        let abandoned_blocking = Gauge::default();
        registry.register(
            "abandoned_blocking_threads",
            "Synchronous in-process task bodies still running after their try was stopped or timed out",
            abandoned_blocking.clone(),
        );
        let scheduler_ready = Gauge::default();
        scheduler_ready.set(1);
        registry.register(
            "scheduler_ready",
            "1 while the scheduler of this process keeps up, 0 while its store writes fail",
            scheduler_ready.clone(),
        );
        let task_duration: HistogramFamily<TaskLabels> =
            Family::new_with_constructor(task_duration_histogram);
        registry.register_with_unit(
            "task_duration",
            "Duration of finished task tries",
            Unit::Seconds,
            task_duration.clone(),
        );
        let task_cpu: HistogramFamily<TaskLabels> =
            Family::new_with_constructor(task_cpu_histogram);
        registry.register_with_unit(
            "task_cpu",
            "CPU time (user + system) of finished task tries that measured it",
            Unit::Seconds,
            task_cpu.clone(),
        );
        let task_memory: HistogramFamily<TaskLabels> =
            Family::new_with_constructor(task_memory_histogram);
        registry.register_with_unit(
            "task_peak_memory",
            "Peak resident memory of finished task tries that measured it",
            Unit::Bytes,
            task_memory.clone(),
        );
        // What the cluster set aside for tries, whether they used it or
        // not: the cost side of the CPU and memory histograms above.
        let reserved_cpu = Family::<TaskLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "task_reserved_cpu_core_seconds",
            "CPU cores requested by the pods of finished task tries, times their run time",
            reserved_cpu.clone(),
        );
        let reserved_memory = Family::<TaskLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "task_reserved_memory_byte_seconds",
            "Memory requested by the pods of finished task tries, times their run time",
            reserved_memory.clone(),
        );
        let schedule_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "scheduling_latency",
            "Delay between a task instance becoming runnable and its launch",
            Unit::Seconds,
            schedule_latency.clone(),
        );
        let loop_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register_with_unit(
            "scheduler_loop",
            "Duration of one scheduling step",
            Unit::Seconds,
            loop_latency.clone(),
        );
        let launches = Family::<ExecutorLabel, Counter>::default();
        registry.register(
            "executor_launches",
            "Task tries handed to an executor",
            launches.clone(),
        );
        let failures = Family::<ExecutorLabel, Counter>::default();
        registry.register(
            "executor_failures",
            "Task tries that failed: task errors, timeouts, launch failures, lost tries",
            failures.clone(),
        );
        let db: HistogramFamily<OpLabel> = Family::new_with_constructor(db_histogram);
        registry.register_with_unit(
            "db_query",
            "Duration of store calls",
            Unit::Seconds,
            db.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                runs,
                task_instances,
                queue_depth,
                abandoned_blocking,
                scheduler_ready,
                task_duration,
                task_cpu,
                task_memory,
                reserved_cpu,
                reserved_memory,
                schedule_latency,
                loop_latency,
                last_loop_latency: AtomicU64::new(NO_LATENCY),
                launches,
                failures,
                kinds: Mutex::default(),
                db,
                scheduler_problem: Mutex::default(),
            }),
        }
    }

    /// Records what a finished try of `task` of `dag` measured about itself
    /// (the local-process and Kubernetes workers do; in-process tries
    /// measure nothing) and what its pod reserved over `wall_secs`, its run
    /// time (Kubernetes tries).
    pub fn observe_task_resources(
        &self,
        dag: &str,
        task: &str,
        measured: &TryMetrics,
        wall_secs: Option<f64>,
    ) {
        let labels = TaskLabels {
            dag: dag.to_owned(),
            task: task.to_owned(),
        };
        let cpu_ms = measured
            .cpu_user_ms
            .map(|u| u.saturating_add(measured.cpu_system_ms.unwrap_or(0)));
        if let Some(ms) = cpu_ms {
            self.inner
                .task_cpu
                .get_or_create(&labels)
                .observe(ms as f64 / 1000.0);
        }
        if let Some(bytes) = measured.peak_memory_bytes {
            self.inner
                .task_memory
                .get_or_create(&labels)
                .observe(bytes as f64);
        }
        let Some(secs) = wall_secs.filter(|s| *s > 0.0) else {
            return;
        };
        if let Some(millis) = measured.cpu_request_millis {
            self.inner
                .reserved_cpu
                .get_or_create(&labels)
                .inc_by(millis as f64 / 1000.0 * secs);
        }
        if let Some(bytes) = measured.memory_request_bytes {
            self.inner
                .reserved_memory
                .get_or_create(&labels)
                .inc_by(bytes as f64 * secs);
        }
    }

    /// Records a finished try of `task` of `dag` that ran `secs` seconds.
    pub fn observe_task_duration(&self, dag: &str, task: &str, secs: f64) {
        self.inner
            .task_duration
            .get_or_create(&TaskLabels {
                dag: dag.to_owned(),
                task: task.to_owned(),
            })
            .observe(secs);
    }

    /// Records that an executor of `kind` (`in_process`, `local_process`,
    /// `kubernetes`) was handed a try.
    pub fn executor_launched(&self, kind: &str) {
        self.saw_kind(kind);
        self.inner
            .launches
            .get_or_create(&ExecutorLabel {
                executor: kind.to_owned(),
            })
            .inc();
    }

    /// Records that an executor of `kind` could not launch a try, or lost
    /// one (not a task that failed by itself).
    pub fn executor_failed(&self, kind: &str) {
        self.saw_kind(kind);
        self.inner
            .failures
            .get_or_create(&ExecutorLabel {
                executor: kind.to_owned(),
            })
            .inc();
    }

    /// Records the delay, in seconds, between a task instance becoming
    /// runnable and its launch.
    pub fn observe_schedule_latency(&self, secs: f64) {
        self.inner.schedule_latency.observe(secs);
    }

    /// Records a store call `op` (such as `claim_tasks`) that took `secs`
    /// seconds.
    pub fn observe_db(&self, op: &str, secs: f64) {
        self.inner
            .db
            .get_or_create(&OpLabel { op: op.to_owned() })
            .observe(secs);
    }

    /// Records one scheduling step that took `secs` seconds; the latest is
    /// also shown on the scheduler health page.
    pub fn loop_latency(&self, secs: f64) {
        self.inner.loop_latency.observe(secs);
        self.inner
            .last_loop_latency
            .store(secs.to_bits(), Ordering::Relaxed);
    }

    /// The latest scheduling step's duration in seconds, if the scheduler
    /// of this process recorded one.
    pub fn last_loop_latency(&self) -> Option<f64> {
        let v = f64::from_bits(self.inner.last_loop_latency.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }

    /// Records why the scheduler of this process is not ready (it cannot
    /// write to the store, runs it owns are not loaded), or that it is
    /// again (`None`). `/readyz` and the health API report it.
    pub fn set_scheduler_problem(&self, problem: Option<String>) {
        self.inner.scheduler_ready.set(i64::from(problem.is_none()));
        if let Ok(mut p) = self.inner.scheduler_problem.lock() {
            *p = problem;
        }
    }

    /// Why the scheduler of this process is not ready, if it is not.
    pub fn scheduler_problem(&self) -> Option<String> {
        self.inner
            .scheduler_problem
            .lock()
            .ok()
            .and_then(|p| p.clone())
    }

    /// How many tries executors of each kind were handed, and how many
    /// they failed to launch or lost: `(kind, launched, failed)`, by kind.
    pub fn executor_counts(&self) -> Vec<(String, u64, u64)> {
        let kinds: Vec<String> = match self.inner.kinds.lock() {
            Ok(k) => k.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        };
        kinds
            .into_iter()
            .map(|kind| {
                let label = ExecutorLabel {
                    executor: kind.clone(),
                };
                let launched = self.inner.launches.get(&label).map_or(0, |c| c.get());
                let failed = self.inner.failures.get(&label).map_or(0, |c| c.get());
                (kind, launched, failed)
            })
            .collect()
    }

    fn saw_kind(&self, kind: &str) {
        let mut kinds = match self.inner.kinds.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !kinds.contains(kind) {
            kinds.insert(kind.to_owned());
        }
    }

    /// Sets the gauges that the store knows: runs and task instances by
    /// state (every state present, zero included) and the queue depth.
    pub fn set_store_counts(&self, runs: &HashMap<RunState, u64>, tasks: &HashMap<TaskState, u64>) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for state in RunState::ALL {
            self.inner
                .runs
                .get_or_create(&StateLabel {
                    state: state.as_str().to_owned(),
                })
                .set(gauge(runs.get(&state).copied().unwrap_or(0)));
        }
        for state in TaskState::ALL {
            self.inner
                .task_instances
                .get_or_create(&StateLabel {
                    state: state.as_str().to_owned(),
                })
                .set(gauge(tasks.get(&state).copied().unwrap_or(0)));
        }
        let waiting = [TaskState::Scheduled, TaskState::Queued]
            .iter()
            .map(|s| tasks.get(s).copied().unwrap_or(0))
            .sum();
        self.inner.queue_depth.set(gauge(waiting));
    }

    /// The metrics in the Prometheus text exposition format (OpenMetrics).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.inner
            .abandoned_blocking
            .set(crate::abandoned_blocking_threads());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_its_labels() {
        let m = Metrics::new();
        m.observe_task_duration("etl", "extract", 2.0);
        let measured = TryMetrics {
            cpu_user_ms: Some(400),
            cpu_system_ms: Some(100),
            peak_memory_bytes: Some(64 << 20),
            cpu_request_millis: Some(250),
            memory_request_bytes: Some(1 << 30),
            ..TryMetrics::default()
        };
        m.observe_task_resources("etl", "extract", &measured, Some(4.0));
        m.observe_task_resources("etl", "load", &TryMetrics::default(), Some(1.0));
        m.executor_launched("kubernetes");
        m.executor_failed("kubernetes");
        m.observe_schedule_latency(0.01);
        m.observe_db("claim_tasks", 0.002);
        m.loop_latency(0.003);
        let runs = HashMap::from([(RunState::Running, 2)]);
        let tasks = HashMap::from([(TaskState::Queued, 3), (TaskState::Scheduled, 1)]);
        m.set_store_counts(&runs, &tasks);
        let text = m.encode().unwrap();
        for needle in [
            "goflow_dag_runs{state=\"running\"} 2",
            "goflow_dag_runs{state=\"failed\"} 0",
            "goflow_task_instances{state=\"queued\"} 3",
            "goflow_queue_depth 4",
            "goflow_task_duration_seconds_count{dag=\"etl\",task=\"extract\"} 1",
            "goflow_scheduling_latency_seconds_count 1",
            "goflow_scheduler_loop_seconds_count 1",
            "goflow_executor_launches_total{executor=\"kubernetes\"} 1",
            "goflow_executor_failures_total{executor=\"kubernetes\"} 1",
            "goflow_db_query_seconds_count{op=\"claim_tasks\"} 1",
            "goflow_task_cpu_seconds_count{dag=\"etl\",task=\"extract\"} 1",
            "goflow_task_cpu_seconds_sum{dag=\"etl\",task=\"extract\"} 0.5",
            "goflow_task_peak_memory_bytes_count{dag=\"etl\",task=\"extract\"} 1",
            // 0.25 cores and 1 GiB for 4 s.
            "goflow_task_reserved_cpu_core_seconds_total{dag=\"etl\",task=\"extract\"} 1.0",
            "goflow_task_reserved_memory_byte_seconds_total{dag=\"etl\",task=\"extract\"} 4294967296.0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(
            !text.contains("task=\"load\""),
            "nothing measured, nothing recorded"
        );
        assert_eq!(m.last_loop_latency(), Some(0.003));
        assert_eq!(m.executor_counts(), vec![("kubernetes".to_owned(), 1, 1)]);
    }

    #[test]
    fn clones_share_the_metrics() {
        let a = Metrics::new();
        assert_eq!(a.last_loop_latency(), None);
        a.clone().loop_latency(1.5);
        assert_eq!(a.last_loop_latency(), Some(1.5));
    }
}
