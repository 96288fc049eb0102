//! The durable scheduler: creates due runs, owns runs, launches their
//! tasks on executors, records every state change in the store, and
//! recovers what a crashed scheduler left behind.
//!
//! How it works, in the order a run lives:
//! 1. **Due runs** ([`goflow_core::due`]) are created in the store as
//!    `queued` (the unique `(dag_id, execution_date)` makes this
//!    idempotent across restarts and replicas).
//! 2. **Ownership**: a scheduler claims runs (`FOR UPDATE SKIP LOCKED` on
//!    PostgreSQL) that no live scheduler owns. Only the owner changes a
//!    run's task instances, so its in-memory [`goflow_core::RunProgress`] is
//!    the truth; every change is still written with compare-and-set, and a
//!    refused write makes it reload the run.
//! 3. **Launch**: runnable tasks are claimed in the store (`scheduled` →
//!    `queued`, pools honoured) before an executor sees them, so a task
//!    instance is launched once per try.
//! 4. **Events**: an executor's `Started`/`Finished` events are applied as
//!    they arrive (a batch per wake-up, one transaction per run), the
//!    downstreams of what finished are settled at once, and newly runnable
//!    tasks are launched in the same wake-up: no polling between tasks.
//! 5. **Recovery**: a run whose owner stopped heartbeating is claimed by
//!    another scheduler (or the same one restarted); its tries that were
//!    queued or running are lost and count as failed tries, retried by the
//!    task's policy. Delivery is therefore at-least-once.
//!
//! The store is polled every `poll_interval` only for what other processes
//! change: runs triggered from the CLI, cleared tasks, pauses.

mod active;
mod observe;
mod stop;
mod try_log;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use goflow_core::due::{due_intervals, next_due};
use goflow_core::{
    Dag, EdgeKind, ExecutorKind, Finish, Inputs, Outcome, RunId, RunState, RunType, TaskContext,
    TaskError, TaskState,
};
use goflow_store::{
    DagRow, LogStream, NewLogLine, RunChange, RunRow, StopRequest, Store, StoreError, TaskChange,
    TaskUpdate,
};
use tokio::sync::mpsc;

use crate::db;
use crate::executor::{
    event_channel, Adoption, EventReceiver, EventSender, Executor, ExecutorEvent,
    InProcessExecutor, Launch, TryKey, TryMetrics, EVENT_CAPACITY,
};
use crate::metrics::Metrics;
use crate::Registry;
use active::ActiveRun;
use observe::Details;
pub use observe::{SchedulerEvent, TaskChanged};

/// How a scheduler behaves.
///
/// Non-exhaustive: start from [`SchedulerConfig::default`] and set the
/// fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// This scheduler's id in the store; distinct per live scheduler. The
    /// default ([`default_id`]) is unique per process. A stable id (e.g.
    /// the pod or service name) lets a restarted scheduler take its runs
    /// back at once instead of after `stale_after`.
    pub id: String,
    /// How often it records that it is alive.
    pub heartbeat_interval: Duration,
    /// After how long without a heartbeat a scheduler counts as dead and
    /// its runs are taken over.
    pub stale_after: Duration,
    /// How often it looks for changes made by other processes.
    pub poll_interval: Duration,
    /// Most scheduled runs created per DAG per wake-up (bounds catchup
    /// bursts; the rest follow on the next wake-ups).
    pub max_runs_per_tick: usize,
    /// Most runs it owns at once.
    pub max_owned_runs: usize,
    /// The executor of tasks that do not name one.
    pub default_executor: ExecutorKind,
    /// When set, every task runs on this executor, whatever it names
    /// (`dags test` keeps a test run on the machine it runs on).
    pub executor_override: Option<ExecutorKind>,
    /// Whether it creates scheduled runs (a backfill's scheduler does not).
    pub create_scheduled_runs: bool,
    /// Only these DAGs, if set.
    pub only_dags: Option<HashSet<String>>,
    /// Largest output a try may hand on, in bytes of JSON: a try whose
    /// output is larger fails, naming the size and the limit.
    pub max_output_bytes: u64,
    /// Most log bytes stored per try; lines past it are dropped, with one
    /// line saying how much was.
    pub max_log_bytes_per_try: u64,
}

/// Default [`SchedulerConfig::max_output_bytes`]: 64 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// Default [`SchedulerConfig::max_log_bytes_per_try`]: 100 MiB.
pub const DEFAULT_MAX_LOG_BYTES_PER_TRY: u64 = 100 << 20;

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            id: default_id(),
            heartbeat_interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_runs_per_tick: 32,
            max_owned_runs: 256,
            default_executor: ExecutorKind::InProcess,
            executor_override: None,
            create_scheduled_runs: true,
            only_dags: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_log_bytes_per_try: DEFAULT_MAX_LOG_BYTES_PER_TRY,
        }
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A scheduler id unique to this process: the host name, the pid and a
/// random suffix (pids repeat across containers sharing a host name).
pub fn default_id() -> String {
    let mut random = [0u8; 3];
    let _ = getrandom::fill(&mut random);
    format!(
        "{}-{}-{:02x}{:02x}{:02x}",
        host_name(),
        std::process::id(),
        random[0],
        random[1],
        random[2]
    )
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The store failed at start-up (unreachable, migrations).
    #[error("the scheduler could not start: {0}")]
    Startup(#[source] StoreError),
    /// Tasks name pools that do not exist (they would run unlimited).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    MissingPools(Vec<db::MissingPool>),
    /// A live scheduler heartbeats under the id this one was given.
    #[error(
        "scheduler id {id:?} is in use by a live scheduler (pid {pid} on {hostname}, \
         heartbeat {age_secs}s ago); give this one another --id, or stop that one \
         (its id is free {stale_after_secs}s after its last heartbeat)"
    )]
    IdInUse {
        /// The id.
        id: String,
        /// The other scheduler's host.
        hostname: String,
        /// The other scheduler's pid.
        pid: u32,
        /// Seconds since its last heartbeat.
        age_secs: i64,
        /// After how long without a heartbeat a scheduler counts as dead.
        stale_after_secs: u64,
    },
}

/// A run this scheduler finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFinished {
    /// The run's row id.
    pub run: i64,
    /// The DAG.
    pub dag_id: String,
    /// The run id.
    pub run_id: String,
    /// `success` or `failed`.
    pub state: RunState,
}

/// The durable scheduler. See the module docs.
pub struct Scheduler {
    store: Store,
    registry: Arc<Registry>,
    config: SchedulerConfig,
    executors: HashMap<ExecutorKind, Arc<dyn Executor>>,
    events_tx: EventSender,
    events_rx: EventReceiver,
    finished_tx: Option<mpsc::UnboundedSender<RunFinished>>,
    /// Where [`Scheduler::observe`] sends what this scheduler records.
    observer: Option<mpsc::UnboundedSender<SchedulerEvent>>,
    runs: BTreeMap<i64, ActiveRun>,
    launched: HashSet<TryKey>,
    dags: HashMap<String, DagRow>,
    last_scheduled: HashMap<String, Option<DateTime<Utc>>>,
    next_due_at: HashMap<String, Option<DateTime<Utc>>>,
    metrics: Option<Metrics>,
    /// Per DAG: the executor of each task (its own, else the default),
    /// given to the store when a try is claimed.
    executor_maps: HashMap<String, Arc<HashMap<String, ExecutorKind>>>,
    /// A write failed: the runs in memory may be ahead of the store, so
    /// they are reloaded from it before anything else happens.
    reload_needed: bool,
    /// Executor events whose write failed, applied again after the reload.
    replay: Vec<ExecutorEvent>,
    /// Tries stopped on request, with the request: they end as it asks.
    stopping: HashMap<TryKey, StopRequest>,
    /// Log bytes stored, and lines and bytes dropped, per running try.
    log_volume: HashMap<TryKey, LogVolume>,
    /// The span of each running try, closed when it ends.
    try_spans: HashMap<TryKey, tracing::Span>,
    /// Whether [`Scheduler::prepare`] has run.
    prepared: bool,
}

/// How much of a try's log was stored and dropped.
#[derive(Clone, Copy, Debug, Default)]
struct LogVolume {
    stored: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Scheduler {
    /// A scheduler over `store` for the DAGs of `registry`, with the
    /// in-process executor.
    pub fn new(store: Store, registry: Arc<Registry>, config: SchedulerConfig) -> Self {
        let (events_tx, events_rx) = event_channel(EVENT_CAPACITY);
        let mut executors: HashMap<ExecutorKind, Arc<dyn Executor>> = HashMap::new();
        executors.insert(ExecutorKind::InProcess, Arc::new(InProcessExecutor::new()));
        Self {
            store,
            registry,
            config,
            executors,
            events_tx,
            events_rx,
            finished_tx: None,
            observer: None,
            runs: BTreeMap::new(),
            launched: HashSet::new(),
            dags: HashMap::new(),
            last_scheduled: HashMap::new(),
            next_due_at: HashMap::new(),
            metrics: None,
            executor_maps: HashMap::new(),
            reload_needed: false,
            replay: Vec::new(),
            stopping: HashMap::new(),
            log_volume: HashMap::new(),
            try_spans: HashMap::new(),
            prepared: false,
        }
    }

    /// Records launches, failures, durations and latencies in `metrics`
    /// (served at `/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds (or replaces) the executor of its kind.
    pub fn with_executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executors.insert(executor.kind(), executor);
        self
    }

    /// A stream of the runs this scheduler finishes.
    pub fn finished_runs(&mut self) -> mpsc::UnboundedReceiver<RunFinished> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.finished_tx = Some(tx);
        rx
    }

    /// This scheduler's id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The largest output a try may hand on (see
    /// [`SchedulerConfig::max_output_bytes`]).
    pub fn max_output_bytes(&self) -> u64 {
        self.config.max_output_bytes
    }

    /// Starts up without scheduling yet: syncs the DAGs into the store,
    /// refuses tasks naming pools that do not exist and an id a live
    /// scheduler holds, records the first heartbeat and takes back the
    /// runs it owned. [`run`](Self::run) does it first when not done, so
    /// calling it is only needed to learn of these errors before spawning
    /// `run`.
    pub async fn prepare(&mut self) -> Result<(), SchedulerError> {
        if self.prepared {
            return Ok(());
        }
        let now = Utc::now();
        self.dags = db::sync_registry(&self.store, &self.registry, now)
            .await
            .map_err(SchedulerError::Startup)?;
        let missing = db::missing_pools(&self.store, &self.registry, None)
            .await
            .map_err(SchedulerError::Startup)?
            .into_iter()
            .filter(|m| self.wants(&m.dag_id))
            .collect::<Vec<_>>();
        if !missing.is_empty() {
            return Err(SchedulerError::MissingPools(missing));
        }
        self.check_id_free(now).await?;
        self.heartbeat(now).await.map_err(SchedulerError::Startup)?;
        self.adopt_own_runs()
            .await
            .map_err(SchedulerError::Startup)?;
        self.prepared = true;
        Ok(())
    }

    /// Runs until `shutdown` completes. Errors of the store after start-up
    /// are logged and retried: a database blip does not stop scheduling.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SchedulerError> {
        self.prepare().await?;
        let now = Utc::now();
        tracing::info!(scheduler = %self.config.id, dags = self.dags.len(), "scheduler started");

        tokio::pin!(shutdown);
        let mut next_heartbeat = now;
        let mut next_poll = now;
        let mut failures = 0u32;
        loop {
            let now = Utc::now();
            let step = async {
                self.recover().await?;
                if now >= next_heartbeat {
                    self.heartbeat(now).await?;
                    next_heartbeat = now + chrono_duration(self.config.heartbeat_interval);
                }
                let poll = now >= next_poll;
                if poll {
                    self.refresh_dags().await?;
                    self.stop_past_deadline(now).await?;
                    self.apply_stop_requests(now).await?;
                    next_poll = now + chrono_duration(self.config.poll_interval);
                }
                let created = self.create_due_runs(now).await?;
                if poll || created {
                    self.claim_runs(now).await?;
                }
                self.start_queued_runs(now).await?;
                self.retry_due(now).await?;
                self.launch(now).await?;
                Ok::<(), StoreError>(())
            };
            let began = std::time::Instant::now();
            let outcome = step.await;
            if let Some(m) = &self.metrics {
                m.loop_latency(began.elapsed().as_secs_f64());
            }
            match outcome {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    self.reload_needed = true;
                    tracing::error!(error = %e, "scheduling step failed; reloading the runs it owns and retrying");
                }
            }
            self.report_readiness(failures);
            let mut wake = next_heartbeat.min(next_poll);
            if let Some(t) = self.next_due_at.values().flatten().min() {
                wake = wake.min(*t);
            }
            if let Some(t) = self
                .runs
                .values()
                .filter_map(ActiveRun::next_retry_at)
                .min()
            {
                wake = wake.min(t);
            }
            let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
            let sleep = (wake - Utc::now())
                .to_std()
                .unwrap_or_default()
                .max(backoff);
            tokio::select! {
                event = self.events_rx.recv() => {
                    let Some(event) = event else { break };
                    let mut batch = vec![event];
                    while let Ok(more) = self.events_rx.try_recv() {
                        batch.push(more);
                    }
                    if let Err(e) = self.handle_events(&batch).await {
                        failures += 1;
                        tracing::error!(error = %e, "recording task events failed; reloading the runs it owns and retrying");
                        self.keep_for_replay(batch);
                        self.report_readiness(failures);
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = &mut shutdown => break,
            }
        }
        tracing::info!(scheduler = %self.config.id, "scheduler stopped");
        Ok(())
    }

    /// After a failed write: reloads the runs this scheduler owns from the
    /// store (the truth) and applies the executor events whose write
    /// failed. Until that succeeds nothing else is scheduled, so no run it
    /// owns is left out of memory. The tries it launched stay launched:
    /// their events are still to come.
    async fn recover(&mut self) -> Result<(), StoreError> {
        if !self.reload_needed {
            return Ok(());
        }
        self.runs.clear();
        self.adopt_own_runs().await?;
        if !self.replay.is_empty() {
            let batch = std::mem::take(&mut self.replay);
            if let Err(e) = self.handle_events(&batch).await {
                self.keep_for_replay(batch);
                return Err(e);
            }
        }
        self.reload_needed = false;
        tracing::info!(
            runs = self.runs.len(),
            "reloaded the runs this scheduler owns"
        );
        Ok(())
    }

    /// Keeps a batch of events whose write failed, to apply it again once
    /// the owned runs are reloaded: the tries it finished count as
    /// launched until then, so the reload does not take them for lost.
    fn keep_for_replay(&mut self, batch: Vec<ExecutorEvent>) {
        for event in &batch {
            if let ExecutorEvent::Finished { key, .. } = event {
                self.launched.insert(key.clone());
            }
        }
        let mut batch = batch;
        self.replay.append(&mut batch);
        self.reload_needed = true;
    }

    /// Tells `/readyz` and the health API whether this scheduler is
    /// keeping up: not while its writes fail or runs it owns are not
    /// loaded.
    fn report_readiness(&self, failures: u32) {
        if let Some(m) = &self.metrics {
            let problem = (self.reload_needed || failures > 0).then(|| {
                format!(
                    "scheduler {} cannot write to the store ({} failed attempt{} in a row); \
                     runs it owns are reloaded once writes succeed",
                    self.config.id,
                    failures.max(1),
                    if failures == 1 { "" } else { "s" }
                )
            });
            m.set_scheduler_problem(problem);
        }
    }

    /// The executor of each task of `dag`: its own, else the default.
    fn executors_of(&mut self, dag: &Dag) -> Arc<HashMap<String, ExecutorKind>> {
        let default = self.config.default_executor;
        let forced = self.config.executor_override;
        Arc::clone(
            self.executor_maps
                .entry(dag.id().to_string())
                .or_insert_with(|| {
                    Arc::new(
                        dag.tasks()
                            .iter()
                            .map(|t| {
                                let kind = forced.or(t.options.executor).unwrap_or(default);
                                (t.id.to_string(), kind)
                            })
                            .collect(),
                    )
                }),
        )
    }

    fn wants(&self, dag_id: &str) -> bool {
        self.config
            .only_dags
            .as_ref()
            .is_none_or(|only| only.contains(dag_id))
    }

    async fn heartbeat(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.store
            .heartbeat(&self.config.id, &host_name(), std::process::id(), now)
            .await
    }

    /// Refuses an id that a live scheduler heartbeats under: two
    /// schedulers sharing one id would each take the other's runs for
    /// their own. The heartbeat of a process of this host that is gone (a
    /// restart after a crash) does not count.
    async fn check_id_free(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let schedulers = self
            .store
            .list_schedulers()
            .await
            .map_err(SchedulerError::Startup)?;
        let Some(other) = schedulers.into_iter().find(|s| s.id == self.config.id) else {
            return Ok(());
        };
        let fresh = other.heartbeat_date >= self.stale_before(now);
        let this_host = other.hostname == host_name();
        let me = other.pid == std::process::id() && this_host;
        let gone = this_host && !process_alive(other.pid);
        if !fresh || me || gone {
            return Ok(());
        }
        Err(SchedulerError::IdInUse {
            id: other.id,
            hostname: other.hostname,
            pid: other.pid,
            age_secs: (now - other.heartbeat_date).num_seconds().max(0),
            stale_after_secs: self.config.stale_after.as_secs(),
        })
    }

    async fn refresh_dags(&mut self) -> Result<(), StoreError> {
        for row in self.store.list_dags().await? {
            self.dags.insert(row.id.clone(), row);
        }
        Ok(())
    }

    fn stale_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono_duration(self.config.stale_after)
    }

    /// Takes back the active runs this scheduler id owned before a
    /// restart; their tries in flight are lost.
    async fn adopt_own_runs(&mut self) -> Result<(), StoreError> {
        let mine: Vec<RunRow> = self
            .store
            .active_runs(None)
            .await?
            .into_iter()
            .filter(|r| r.claimed_by.as_deref() == Some(self.config.id.as_str()))
            .filter(|r| !self.runs.contains_key(&r.id))
            .collect();
        for row in mine {
            self.own(row, Utc::now()).await?;
        }
        Ok(())
    }

    /// Creates the scheduled runs that are due; returns whether any was.
    async fn create_due_runs(&mut self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        if !self.config.create_scheduled_runs {
            return Ok(false);
        }
        let mut created = false;
        let dags: Vec<Arc<Dag>> = self.registry.dags().cloned().collect();
        for dag in dags {
            let id = dag.id().to_string();
            if !self.wants(&id) || self.dags.get(&id).is_none_or(|d| d.is_paused) {
                continue;
            }
            if let Some(Some(at)) = self.next_due_at.get(&id) {
                if *at > now {
                    continue;
                }
            }
            let last = match self.last_scheduled.get(&id) {
                Some(last) => *last,
                None => self
                    .store
                    .latest_run(&id, Some(RunType::Scheduled))
                    .await?
                    .map(|r| r.execution_date()),
            };
            let mut last_created = last;
            let due = due_intervals(&dag, last, now, self.config.max_runs_per_tick);
            if !due.is_empty() {
                let counts = self.store.count_runs_by_state(&id).await?;
                let active = counts.get(&RunState::Queued).copied().unwrap_or(0)
                    + counts.get(&RunState::Running).copied().unwrap_or(0);
                let room = u64::from(dag.max_active_runs()).saturating_sub(active) as usize;
                let version = self.dags.get(&id).map_or(1, |d| d.version);
                for interval in due.into_iter().take(room) {
                    let new = db::new_run(
                        &dag,
                        version,
                        RunType::Scheduled,
                        interval,
                        serde_json::json!({}),
                    );
                    match self.store.create_run(&new, now).await {
                        Ok(run) => {
                            tracing::info!(dag = %id, run = %run.run_id, "created scheduled run");
                            created = true;
                        }
                        Err(StoreError::RunExists { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    last_created = Some(interval.start);
                }
            }
            self.last_scheduled.insert(id.clone(), last_created);
            self.next_due_at
                .insert(id, next_due(&dag, last_created, now));
        }
        Ok(created)
    }

    /// Claims runs no live scheduler owns.
    async fn claim_runs(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let room = self.config.max_owned_runs.saturating_sub(self.runs.len());
        if room == 0 {
            return Ok(());
        }
        let claimed = self
            .store
            .claim_runs(&self.config.id, room as u32, self.stale_before(now), now)
            .await?;
        for row in claimed {
            if self.wants(&row.dag_id) {
                self.own(row, now).await?;
            } else {
                self.store.release_run(row.id, &self.config.id).await?;
            }
        }
        Ok(())
    }

    /// Loads a run this scheduler now owns. Tries that were queued or
    /// running under its previous owner are lost: they count as failed
    /// tries and are retried by policy.
    async fn own(&mut self, row: RunRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Ok(dag) = self.registry.get(&row.dag_id).cloned() else {
            tracing::warn!(dag = %row.dag_id, run = %row.run_id, "run of a DAG this binary does not have; leaving it");
            self.store.release_run(row.id, &self.config.id).await?;
            return Ok(());
        };
        let mut instances = self.store.task_instances(row.id).await?;
        let missing = active::missing_tasks(&dag, &instances);
        if !missing.is_empty() {
            // The DAG gained tasks since the run was created: the run goes
            // on under the DAG as it is, the new tasks pending.
            let new = db::new_run(
                &dag,
                row.dag_version,
                row.run_type,
                row.data_interval,
                serde_json::json!({}),
            )
            .tasks
            .into_iter()
            .filter(|t| missing.contains(&t.task_id))
            .collect();
            let added = self.store.add_task_instances(row.id, new, now).await?;
            tracing::warn!(dag = %row.dag_id, run = %row.run_id, added = ?added, "the DAG gained tasks since this run was created; added them to the run as pending");
            instances = self.store.task_instances(row.id).await?;
        }
        let mut run = ActiveRun::load(row, dag, &instances);
        let mut changes = Vec::new();
        let mut lost = Vec::new();
        for task in 0..run.dag.tasks().len() {
            let key = TryKey {
                run: run.row.id,
                task,
                try_number: run.try_number(task),
            };
            if run.state(task).is_active() && !self.launched.contains(&key) {
                lost.push(task);
            }
        }
        // Before a try counts as lost, its executor may take it over: a
        // Kubernetes Job outlives the scheduler process that created it.
        let lost = self
            .offer_for_adoption(&mut run, &instances, lost, now)
            .await?;
        let mut lines = Vec::new();
        for task in &lost {
            let from = run.state(*task);
            let key = TryKey {
                run: run.row.id,
                task: *task,
                try_number: run.try_number(*task),
            };
            let error = "lost: the scheduler running this try stopped before it finished";
            let lost = Err(TaskError::lost(error));
            let update = self.finish_update(&mut run, *task, &lost, &TryMetrics::default(), now);
            if let Some((update, finish)) = update {
                let status = run.progress.status(*task);
                let options = &run.dag.tasks()[*task].options;
                lines.push(system_line(
                    &key,
                    run.task_id(*task),
                    now,
                    try_log::ended(
                        key.try_number,
                        &lost,
                        &finish,
                        None,
                        None,
                        update.next_retry_date,
                        (status.lost, options.max_lost_tries()),
                        (
                            status.tries.saturating_sub(status.lost),
                            options.retry_policy().max_tries(),
                        ),
                    ),
                ));
                changes.push(TaskChange::new(run.task_id(*task), from, update));
            }
        }
        if !lost.is_empty() {
            tracing::warn!(run = %run.row.run_id, lost = lost.len(), "recovered tries lost by a stopped scheduler");
        }
        if run.row.state == RunState::Running {
            for c in run.progress.settle(&run.dag) {
                changes.push(TaskChange::new(
                    run.task_id(c.task),
                    c.from,
                    TaskUpdate::new(c.to),
                ));
            }
        }
        let id = run.row.id;
        if !changes.is_empty() && !self.store.update_tasks(id, changes, now).await? {
            // Someone changed the run meanwhile; take it fresh next time.
            self.store.release_run(id, &self.config.id).await?;
            return Ok(());
        }
        self.store.append_logs(lines).await?;
        self.runs.insert(id, run);
        self.finish_run_if_done(id, now).await
    }

    /// Offers each of `tries` (queued or
    /// running under a previous owner) to its executor's
    /// [`Executor::adopt`](crate::executor::Executor::adopt) with the stored
    /// executor handle; returns those no executor took over (lost).
    async fn offer_for_adoption(
        &mut self,
        run: &mut ActiveRun,
        instances: &[goflow_store::TaskInstanceRow],
        tries: Vec<usize>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut lost = Vec::new();
        for task in tries {
            let Some(ti) = instances.iter().find(|ti| ti.task_id == run.task_id(task)) else {
                lost.push(task);
                continue;
            };
            let Some(executor) = self.executors.get(&ti.executor).cloned() else {
                lost.push(task);
                continue;
            };
            let Some(launch) = self.launch_of(run, task).await? else {
                lost.push(task);
                continue;
            };
            let adopted = self
                .store
                .adopt_task(
                    run.row.id,
                    &ti.task_id,
                    ti.claimed_by.as_deref(),
                    &self.config.id,
                    now,
                )
                .await?;
            let key = launch.key.clone();
            if !adopted {
                lost.push(task);
                continue;
            }
            let previous = Adoption {
                handle: ti.executor_handle.clone().unwrap_or_default(),
                logged_lines: self
                    .store
                    .count_output_lines(run.row.id, &ti.task_id, key.try_number)
                    .await?,
            };
            let span = run.try_span(task, key.try_number);
            let adopted =
                span.in_scope(|| executor.adopt(launch, &previous, self.events_tx.clone()));
            if adopted {
                self.try_spans.insert(key.clone(), span);
                self.store
                    .append_logs(vec![system_line(
                        &key,
                        &ti.task_id,
                        now,
                        try_log::adopted(
                            key.try_number,
                            ti.executor,
                            &previous.handle,
                            &self.config.id,
                        ),
                    )])
                    .await?;
                tracing::info!(run = %run.row.run_id, task = %ti.task_id, try_number = key.try_number, handle = %previous.handle, "adopted a try of a stopped scheduler");
                self.launched.insert(key);
            } else {
                lost.push(task);
            }
        }
        Ok(lost)
    }

    /// The launch of the current try of `task`: its context, and the
    /// outputs of its data upstreams (read from the store when not cached);
    /// `None` if the run's id is not a valid run id.
    async fn launch_of(
        &self,
        run: &mut ActiveRun,
        task: usize,
    ) -> Result<Option<Launch>, StoreError> {
        let Ok(run_id) = RunId::new(run.row.run_id.clone()) else {
            return Ok(None);
        };
        let mut inputs = Inputs::new();
        let data_upstream: Vec<usize> = run.dag.tasks()[task]
            .upstream
            .iter()
            .filter(|u| u.kind == EdgeKind::Data)
            .map(|u| u.task)
            .collect();
        for up in data_upstream {
            if !run.outputs.contains_key(&up) {
                if let Some(value) = self.store.get_output(run.row.id, run.task_id(up)).await? {
                    run.outputs.insert(up, value);
                }
            }
            if let Some(value) = run.outputs.get(&up) {
                inputs.insert(run.task_id(up), value.clone());
            }
        }
        let node = &run.dag.tasks()[task];
        let try_number = run.try_number(task);
        let ctx = TaskContext::builder(run.dag.id().clone(), run_id, node.id.clone())
            .try_number(try_number)
            .max_tries(run.tries_before_clear[task] + node.options.retry_policy().max_tries())
            .run_type(run.row.run_type)
            .data_interval(run.row.data_interval)
            .conf(run.row.conf.clone())
            .tz(run.dag.tz())
            .build();
        Ok(Some(Launch {
            key: TryKey {
                run: run.row.id,
                task,
                try_number,
            },
            dag: Arc::clone(&run.dag),
            ctx,
            inputs,
        }))
    }

    /// Moves queued runs to running while their DAG has room.
    async fn start_queued_runs(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let queued: Vec<i64> = self
            .runs
            .values()
            .filter(|r| r.row.state == RunState::Queued)
            .map(|r| r.row.id)
            .collect();
        let mut running: HashMap<String, u64> = HashMap::new();
        let mut started = Vec::new();
        let mut observed = self.observed();
        for id in queued {
            let Some(run) = self.runs.get(&id) else {
                continue;
            };
            let dag_id = run.row.dag_id.clone();
            if self.dags.get(&dag_id).is_some_and(|d| d.is_paused) {
                continue;
            }
            let count = match running.get(&dag_id) {
                Some(n) => *n,
                None => self
                    .store
                    .count_runs_by_state(&dag_id)
                    .await?
                    .get(&RunState::Running)
                    .copied()
                    .unwrap_or(0),
            };
            if count >= u64::from(run.dag.max_active_runs()) {
                running.insert(dag_id, count);
                continue;
            }
            running.insert(dag_id, count + 1);
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            // Started and its first tasks scheduled in one change; if the
            // store refuses it, the run is reloaded as it is there.
            run.row.state = RunState::Running;
            let settled = run.progress.settle(&run.dag);
            for c in &settled {
                observed.task(run, c.task, (c.from, c.to), now, Details::default);
            }
            let changes: Vec<TaskChange> = settled
                .into_iter()
                .map(|c| TaskChange::new(run.task_id(c.task), c.from, TaskUpdate::new(c.to)))
                .collect();
            tracing::info!(dag = %run.row.dag_id, run = %run.row.run_id, "run started");
            started.push(RunChange {
                state: Some((RunState::Queued, RunState::Running)),
                ..RunChange::tasks(id, changes)
            });
        }
        let ids: Vec<i64> = started.iter().map(|c| c.run).collect();
        self.write(started, now).await?;
        self.send_observed(observed);
        // A run with nothing to do (no tasks) is over as soon as it starts.
        for id in ids {
            self.finish_run_if_done(id, now).await?;
        }
        Ok(())
    }

    /// Schedules tasks whose retry delay has passed.
    async fn retry_due(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut due = Vec::new();
        let mut observed = self.observed();
        for (&id, run) in &mut self.runs {
            let mut changes = Vec::new();
            for task in run.retries_due(now) {
                if let Ok(c) = run.progress.retry_due(&run.dag, task) {
                    run.next_retry[task] = None;
                    observed.task(run, task, (c.from, c.to), now, Details::default);
                    changes.push(TaskChange::new(
                        run.task_id(task),
                        c.from,
                        TaskUpdate::new(c.to),
                    ));
                }
            }
            if !changes.is_empty() {
                due.push(RunChange::tasks(id, changes));
            }
        }
        self.write(due, now).await?;
        self.send_observed(observed);
        Ok(())
    }

    /// Claims runnable tasks in the store and hands them to executors,
    /// within each DAG's `max_active_tasks`.
    async fn launch(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut by_dag: BTreeMap<String, (Vec<i64>, usize, u32)> = BTreeMap::new();
        for run in self.runs.values() {
            let entry = by_dag.entry(run.row.dag_id.clone()).or_insert((
                Vec::new(),
                0,
                run.dag.max_active_tasks(),
            ));
            entry.1 += run.progress.active();
            if run.row.state == RunState::Running && !run.progress.runnable(&run.dag).is_empty() {
                entry.0.push(run.row.id);
            }
        }
        for (runs, active, max) in by_dag.into_values() {
            let free = (max as usize).saturating_sub(active);
            if runs.is_empty() || free == 0 {
                continue;
            }
            let Some(dag) = self.runs.get(&runs[0]).map(|r| Arc::clone(&r.dag)) else {
                continue;
            };
            let executors = self.executors_of(&dag);
            let began = std::time::Instant::now();
            let claimed = self
                .store
                .claim_tasks_in(&self.config.id, &runs, &executors, free as u32, now)
                .await?;
            if let Some(m) = &self.metrics {
                m.observe_db("claim_tasks", began.elapsed().as_secs_f64());
            }
            for c in claimed {
                let i = &c.instance;
                self.start_try(i.run, &i.task_id, i.try_number, i.executor)
                    .await?;
            }
        }
        Ok(())
    }

    /// Hands the claimed try of `task_id` to `kind`, the executor stored
    /// with it.
    async fn start_try(
        &mut self,
        run_id: i64,
        task_id: &str,
        try_number: u32,
        kind: ExecutorKind,
    ) -> Result<(), StoreError> {
        let Some(mut run) = self.runs.remove(&run_id) else {
            return Ok(());
        };
        let Some(task) = run.dag.index_of(task_id) else {
            self.runs.insert(run_id, run);
            return Ok(());
        };
        if run.progress.queue(&run.dag, task).is_err() || run.try_number(task) != try_number {
            // The store and this cache disagree: reload the run.
            return self.drop_run(run_id).await;
        }
        let mut observed = self.observed();
        let queued = (TaskState::Scheduled, TaskState::Queued);
        observed.task(&run, task, queued, Utc::now(), Details::default);
        self.send_observed(observed);
        let launch = self.launch_of(&mut run, task).await;
        run.executor[task] = kind;
        self.runs.insert(run_id, run);
        let Some(launch) = launch? else {
            tracing::error!(run = run_id, "run with an invalid run id; leaving it");
            return self.drop_run(run_id).await;
        };
        let key = launch.key.clone();
        self.launched.insert(key.clone());
        if let Some(m) = &self.metrics {
            m.executor_launched(kind.as_str());
        }
        let span = self
            .runs
            .get(&run_id)
            .map_or_else(tracing::Span::none, |r| r.try_span(task, key.try_number));
        self.try_spans.insert(key.clone(), span.clone());
        // The executor runs the try in this span: its own lines (and an
        // in-process task's) carry the dag, run, task and try.
        let _entered = span.enter();
        match self.executors.get(&kind) {
            Some(executor) => executor.launch(launch, self.events_tx.clone()),
            None => {
                self.events_tx.send_now(ExecutorEvent::Finished {
                    key,
                    result: Err(TaskError::fatal(format!(
                        "the {kind} executor is not enabled in this scheduler"
                    ))),
                    metrics: Default::default(),
                });
            }
        }
        Ok(())
    }

    /// The store update for the end of the current try of `task`, with
    /// what it `measured`, applied to the run's progress; `None` if the
    /// task was not active.
    fn finish_update(
        &self,
        run: &mut ActiveRun,
        task: usize,
        result: &Result<goflow_core::TaskOutput, TaskError>,
        measured: &TryMetrics,
        now: DateTime<Utc>,
    ) -> Option<(TaskUpdate, Finish)> {
        let (change, finish) = run
            .progress
            .finish(&run.dag, task, Outcome::of(result))
            .ok()?;
        let mut update = TaskUpdate::new(change.to);
        update.end_date = Some(now);
        if matches!(result, Err(e) if e.is_lost()) {
            update.lost_tries = Some(run.progress.status(task).lost);
        }
        match result {
            Ok(out) => update.follow = out.follow.clone(),
            Err(e) => update.error = Some(e.to_string()),
        }
        record_metrics(&mut update, measured);
        run.ended_at[task] = Some(now);
        if let Some(m) = &self.metrics {
            let node = &run.dag.tasks()[task];
            let secs = run.started_at[task]
                .take()
                .map(|started| (now - started).num_microseconds().unwrap_or(0) as f64 / 1e6);
            if let Some(secs) = secs {
                m.observe_task_duration(run.dag.id().as_str(), node.id.as_str(), secs.max(0.0));
            }
            m.observe_task_resources(run.dag.id().as_str(), node.id.as_str(), measured, secs);
            if matches!(result, Err(e) if !e.is_skip()) {
                m.executor_failed(run.executor[task].as_str());
            }
        }
        if let Finish::Retry { delay } = finish {
            let at = now + chrono_duration(delay);
            update.next_retry_date = Some(at);
            run.next_retry[task] = Some(at);
        }
        Some((update, finish))
    }

    /// Applies a batch of executor events: one transaction per run, then
    /// settles what the finished tasks unblock.
    async fn handle_events(&mut self, batch: &[ExecutorEvent]) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut per_run: BTreeMap<i64, (Vec<TaskChange>, Vec<usize>)> = BTreeMap::new();
        let mut logs = Vec::new();
        let mut observed = self.observed();
        // Tries stopped on a request to clear them: cleared once their end
        // is written, to run again.
        let mut clear_after = Vec::new();
        for event in batch {
            match event {
                ExecutorEvent::Log { key, stream, line } => {
                    let volume = self.log_volume.entry(key.clone()).or_default();
                    let size = line.len() as u64 + 1;
                    if volume.stored + size > self.config.max_log_bytes_per_try {
                        volume.dropped_lines += 1;
                        volume.dropped_bytes += size;
                        continue;
                    }
                    volume.stored += size;
                    if let Some(run) = self.runs.get(&key.run) {
                        logs.push(NewLogLine {
                            run: key.run,
                            task_id: run.task_id(key.task).to_owned(),
                            try_number: key.try_number,
                            timestamp: now,
                            stream: *stream,
                            line: line.clone(),
                        });
                        observed.log(logs.last());
                    }
                }
                ExecutorEvent::Started { key, handle } => {
                    let Some(run) = self.runs.get_mut(&key.run) else {
                        continue;
                    };
                    if run.state(key.task) != TaskState::Queued
                        || run.try_number(key.task) != key.try_number
                    {
                        continue;
                    }
                    if run.progress.start(&run.dag, key.task).is_ok() {
                        run.started_at[key.task] = Some(now);
                        if let (Some(m), Some(secs)) =
                            (&self.metrics, run.schedule_latency(key.task, now))
                        {
                            m.observe_schedule_latency(secs.max(0.0));
                        }
                        let update = TaskUpdate {
                            start_date: Some(now),
                            executor_handle: handle.clone(),
                            ..TaskUpdate::new(TaskState::Running)
                        };
                        let change =
                            TaskChange::new(run.task_id(key.task), TaskState::Queued, update);
                        per_run.entry(key.run).or_default().0.push(change);
                        let status = run.progress.status(key.task);
                        let policy = run.dag.tasks()[key.task].options.retry_policy();
                        logs.push(system_line(
                            key,
                            run.task_id(key.task),
                            now,
                            try_log::started(
                                key.try_number,
                                status.tries.saturating_sub(status.lost),
                                policy.max_tries(),
                                run.executor[key.task],
                                handle.as_deref(),
                                &self.config.id,
                            ),
                        ));
                        let running = (TaskState::Queued, TaskState::Running);
                        observed.task(run, key.task, running, now, Details::default);
                        observed.log(logs.last());
                    }
                }
                ExecutorEvent::Finished {
                    key,
                    result,
                    metrics,
                } => {
                    self.launched.remove(key);
                    let span = self
                        .try_spans
                        .remove(key)
                        .unwrap_or_else(tracing::Span::none);
                    let _entered = span.enter();
                    let volume = self.log_volume.remove(key).unwrap_or_default();
                    let Some(mut run) = self.runs.remove(&key.run) else {
                        continue;
                    };
                    if volume.dropped_lines > 0 {
                        logs.push(NewLogLine {
                            run: key.run,
                            task_id: run.task_id(key.task).to_owned(),
                            try_number: key.try_number,
                            timestamp: now,
                            stream: LogStream::System,
                            line: format!(
                                "log limit reached: {} line{} ({} bytes) past the first {} bytes \
                                 of this try's log were dropped (max_log_bytes_per_try)",
                                volume.dropped_lines,
                                if volume.dropped_lines == 1 { "" } else { "s" },
                                volume.dropped_bytes,
                                self.config.max_log_bytes_per_try
                            ),
                        });
                        observed.log(logs.last());
                    }
                    let too_big = self.output_over_limit(result);
                    let bad_branch = run.dag.branch_failure(key.task, result).map(Err);
                    let stopped = self.stopping.remove(key).map(|request| {
                        if request.to == TaskState::Pending {
                            clear_after.push((key.run, run.task_id(key.task).to_owned()));
                        }
                        Self::stopped_result(&request, result)
                    });
                    let result = stopped
                        .as_ref()
                        .or(too_big.as_ref())
                        .or(bad_branch.as_ref())
                        .unwrap_or(result);
                    let from = run.state(key.task);
                    let started = run.started_at[key.task];
                    if from.is_active() && run.try_number(key.task) == key.try_number {
                        if let Some((update, finish)) =
                            self.finish_update(&mut run, key.task, result, metrics, now)
                        {
                            let status = run.progress.status(key.task);
                            let node = &run.dag.tasks()[key.task].options;
                            logs.push(system_line(
                                key,
                                run.task_id(key.task),
                                now,
                                try_log::ended(
                                    key.try_number,
                                    result,
                                    &finish,
                                    started.and_then(|s| (now - s).to_std().ok()),
                                    metrics.exit_code,
                                    update.next_retry_date,
                                    (status.lost, node.max_lost_tries()),
                                    (
                                        status.tries.saturating_sub(status.lost),
                                        node.retry_policy().max_tries(),
                                    ),
                                ),
                            ));
                            observed.log(logs.last());
                            let ended = (from, update.state);
                            observed.task(&run, key.task, ended, now, || Details {
                                error: update.error.clone(),
                                retry_delay: match finish {
                                    Finish::Retry { delay } => Some(delay),
                                    _ => None,
                                },
                                duration: started.and_then(|s| (now - s).to_std().ok()),
                                output: result.as_ref().ok().map(|o| o.value.clone()),
                            });
                            let mut change = TaskChange::new(run.task_id(key.task), from, update);
                            if let Ok(out) = result {
                                change.output = Some(out.value.clone());
                                run.outputs.insert(key.task, out.value.clone());
                            }
                            if let Err(e) = result {
                                tracing::info!(dag = %run.row.dag_id, run = %run.row.run_id, task = run.task_id(key.task), error = %e, "try did not succeed");
                            }
                            let entry = per_run.entry(key.run).or_default();
                            // A try that started and ended within this batch
                            // is written once, from queued to its outcome.
                            if let Some(i) = entry.0.iter().rposition(|c| {
                                c.task_id == change.task_id
                                    && c.expected == TaskState::Queued
                                    && c.update.state == TaskState::Running
                            }) {
                                let started = entry.0.remove(i);
                                change.expected = TaskState::Queued;
                                change.update.start_date = started.update.start_date;
                                change.update.executor_handle = started.update.executor_handle;
                            }
                            entry.0.push(change);
                            entry.1.push(key.task);
                        }
                    }
                    self.runs.insert(key.run, run);
                }
            }
        }
        let mut writes = Vec::with_capacity(per_run.len());
        for (&id, (changes, finished)) in &mut per_run {
            if let Some(run) = self.runs.get_mut(&id) {
                for c in run.progress.settle_after(&run.dag, finished) {
                    observed.task(run, c.task, (c.from, c.to), now, Details::default);
                    changes.push(TaskChange::new(
                        run.task_id(c.task),
                        c.from,
                        TaskUpdate::new(c.to),
                    ));
                }
            }
            writes.push(RunChange::tasks(id, std::mem::take(changes)));
        }
        // The changes and the lines logged, in one commit: a run is
        // reported finished only once its tries' logs are stored.
        self.write_with_logs(writes, logs, now).await?;
        for (run, task_id) in clear_after {
            // Cleared by the store (tries counted afresh), then reloaded.
            self.store.clear_tasks(run, &[task_id], now).await?;
            self.drop_run(run).await?;
        }
        self.send_observed(observed);
        for id in per_run.into_keys() {
            self.finish_run_if_done(id, now).await?;
        }
        Ok(())
    }

    /// Writes runs' changes, all in one transaction; a run whose changes
    /// the store refuses (something else changed it) is forgotten, to be
    /// loaded afresh.
    async fn write(
        &mut self,
        changes: Vec<RunChange>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_with_logs(changes, Vec::new(), now).await
    }

    /// [`write`](Self::write), appending `logs` in the same transaction.
    async fn write_with_logs(
        &mut self,
        changes: Vec<RunChange>,
        logs: Vec<NewLogLine>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let changes: Vec<RunChange> = changes.into_iter().filter(|c| !c.is_empty()).collect();
        if changes.is_empty() && logs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = changes.iter().map(|c| c.run).collect();
        let began = std::time::Instant::now();
        let applied = self.store.update_runs_with_logs(changes, logs, now).await?;
        if let Some(m) = &self.metrics {
            m.observe_db("update_runs", began.elapsed().as_secs_f64());
        }
        for (id, applied) in ids.into_iter().zip(applied) {
            if !applied {
                tracing::warn!(
                    run = id,
                    "the run changed outside this scheduler; reloading it"
                );
                self.drop_run(id).await?;
            }
        }
        Ok(())
    }

    async fn drop_run(&mut self, id: i64) -> Result<(), StoreError> {
        self.runs.remove(&id);
        self.store.release_run(id, &self.config.id).await?;
        Ok(())
    }

    /// The failure of a try whose output is over
    /// [`SchedulerConfig::max_output_bytes`], if it is.
    fn output_over_limit(
        &self,
        result: &Result<goflow_core::TaskOutput, TaskError>,
    ) -> Option<Result<goflow_core::TaskOutput, TaskError>> {
        let out = result.as_ref().ok()?;
        // Counted, not kept: the store writes the JSON once, later.
        let mut size = JsonSize(0);
        let _ = serde_json::to_writer(&mut size, &out.value);
        let size = size.0;
        (size > self.config.max_output_bytes).then(|| {
            Err(TaskError::fatal(format!(
                "the task's output is {size} bytes of JSON, over the limit of {} bytes \
                 (max_output_bytes, `scheduler --max-output-bytes`): hand large data on \
                 through storage and pass a reference",
                self.config.max_output_bytes
            )))
        })
    }

    /// Marks a run whose tasks are all finished, and lets it go.
    async fn finish_run_if_done(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(run) = self.runs.get(&id) else {
            return Ok(());
        };
        let mut state = run.progress.run_state();
        if !state.is_terminal() || run.row.state != RunState::Running {
            return Ok(());
        }
        if run.stopped {
            state = RunState::Failed;
        }
        let (dag_id, run_id) = (run.row.dag_id.clone(), run.row.run_id.clone());
        // Before calling the run over, check the store agrees: a task
        // cleared from the CLI or UI meanwhile means there is more to do.
        let stored = self.store.task_instances(id).await?;
        let agrees = stored.iter().all(|ti| {
            run.dag
                .index_of(&ti.task_id)
                .is_none_or(|t| run.progress.status(t).state == ti.state)
        });
        if !agrees {
            tracing::info!(dag = %dag_id, run = %run_id, "the run changed outside this scheduler; reloading it");
            return self.drop_run(id).await;
        }
        // Its end and letting go of it in one change, before telling anyone
        // it finished.
        self.runs.remove(&id);
        let end = RunChange {
            state: Some((RunState::Running, state)),
            release_by: Some(self.config.id.clone()),
            ..RunChange::tasks(id, Vec::new())
        };
        let moved = self.store.update_runs(vec![end], now).await?.first() == Some(&true);
        if !moved {
            self.store.release_run(id, &self.config.id).await?;
        }
        if moved {
            tracing::info!(dag = %dag_id, run = %run_id, %state, "run finished");
            let finished = RunFinished {
                run: id,
                dag_id,
                run_id,
                state,
            };
            if let Some(tx) = &self.observer {
                let _ = tx.send(SchedulerEvent::RunFinished(finished.clone()));
            }
            if let Some(tx) = &self.finished_tx {
                let _ = tx.send(finished);
            }
        }
        Ok(())
    }
}

/// Counts the bytes written to it, keeping none.
struct JsonSize(u64);

impl std::io::Write for JsonSize {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A line of goflow's own in try `key`'s log.
fn system_line(key: &TryKey, task_id: &str, now: DateTime<Utc>, line: String) -> NewLogLine {
    NewLogLine {
        run: key.run,
        task_id: task_id.to_owned(),
        try_number: key.try_number,
        timestamp: now,
        stream: LogStream::System,
        line,
    }
}

/// Puts what a try measured and reserved into the change that ends it.
fn record_metrics(update: &mut TaskUpdate, m: &TryMetrics) {
    // Figures past i64::MAX are not real measurements; they are dropped.
    let int = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
    update.measurements = Some(goflow_store::TryMeasurements {
        exit_code: m.exit_code,
        peak_memory_bytes: int(m.peak_memory_bytes),
        cpu_user_ms: int(m.cpu_user_ms),
        cpu_system_ms: int(m.cpu_system_ms),
        cpu_request_millis: int(m.cpu_request_millis),
        memory_request_bytes: int(m.memory_request_bytes),
        cpu_limit_millis: int(m.cpu_limit_millis),
        memory_limit_bytes: int(m.memory_limit_bytes),
    });
}

/// Whether a process with this pid exists on this host.
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        let Ok(pid) = i32::try_from(pid) else {
            return false;
        };
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) | Err(Errno::EPERM) => pid > 0,
            Err(_) => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
