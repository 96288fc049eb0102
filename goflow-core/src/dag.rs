//! The DAG: its settings, its tasks and the edges between them.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::alerts::AlertSettings;
use crate::id::check_dns1123_label;
use crate::{DagId, Error, Schedule, TaskError, TaskFn, TaskId, TaskOptions, TaskOutput};

/// How a task depends on an upstream task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// The upstream's output is one of the task's arguments.
    Data,
    /// Ordering only (`a >> b`): no data flows.
    Order,
}

/// An edge from an upstream task, by index into [`Dag::tasks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Index of the upstream task.
    pub task: usize,
    /// Data or ordering.
    pub kind: EdgeKind,
}

/// One task of a DAG.
#[derive(Clone, Debug)]
pub struct TaskNode {
    /// Its id, unique in the DAG.
    pub id: TaskId,
    /// The task function's name.
    pub function: &'static str,
    /// Its options, with the DAG's defaults applied.
    pub options: TaskOptions,
    /// Its direct upstreams.
    pub upstream: Vec<Upstream>,
    /// Its entry point.
    pub run: TaskFn,
}

/// A task as given to [`DagBuilder::task`], with edges by task id.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// Its id.
    pub id: String,
    /// The task function's name.
    pub function: &'static str,
    /// Its own options (the DAG's defaults are applied on build).
    pub options: TaskOptions,
    /// Upstream task ids whose outputs are its arguments, in order.
    pub data_upstream: Vec<String>,
    /// Its entry point.
    pub run: TaskFn,
}

/// A DAG: a schedule and a graph of tasks. Built by `#[dag]`, or by hand
/// with [`DagBuilder`].
#[derive(Clone, Debug)]
pub struct Dag {
    id: DagId,
    description: Option<String>,
    schedule: Schedule,
    tz: Tz,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    catchup: bool,
    max_active_runs: u32,
    max_active_tasks: u32,
    namespace: Option<String>,
    tags: Vec<String>,
    defaults: TaskOptions,
    alerts: AlertSettings,
    source_file: &'static str,
    source_line: u32,
    tasks: Vec<TaskNode>,
    index: HashMap<TaskId, usize>,
    downstream: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

/// Defaults for runs in flight at once, as in Airflow.
pub const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;
/// Default for task instances of one DAG running at once.
pub const DEFAULT_MAX_ACTIVE_TASKS: u32 = 16;

impl Dag {
    /// Its id.
    pub fn id(&self) -> &DagId {
        &self.id
    }
    /// Its description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Its schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    /// The time zone of its schedule and dates.
    pub fn tz(&self) -> Tz {
        self.tz
    }
    /// The first instant it may have runs for.
    pub fn start_date(&self) -> DateTime<Utc> {
        self.start
    }
    /// The last instant it may have runs for.
    pub fn end_date(&self) -> Option<DateTime<Utc>> {
        self.end
    }
    /// Whether missed intervals are all run (`true`) or only the latest.
    pub fn catchup(&self) -> bool {
        self.catchup
    }
    /// Runs in flight at once.
    pub fn max_active_runs(&self) -> u32 {
        self.max_active_runs
    }
    /// Task instances of this DAG running at once.
    pub fn max_active_tasks(&self) -> u32 {
        self.max_active_tasks
    }
    /// The Kubernetes namespace its Jobs run in.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    /// Its tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// The options every task inherits.
    pub fn default_options(&self) -> &TaskOptions {
        &self.defaults
    }
    /// Which alerts it raises.
    pub fn alerts(&self) -> &AlertSettings {
        &self.alerts
    }
    /// The source file that declares it.
    pub fn source_file(&self) -> &'static str {
        self.source_file
    }
    /// The line of its declaration.
    pub fn source_line(&self) -> u32 {
        self.source_line
    }
    /// Its tasks, in declaration order.
    pub fn tasks(&self) -> &[TaskNode] {
        &self.tasks
    }
    /// The index of task `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
    /// The task `id`.
    pub fn task(&self, id: &str) -> Result<&TaskNode, Error> {
        self.index_of(id)
            .map(|i| &self.tasks[i])
            .ok_or_else(|| Error::UnknownTask {
                dag: self.id.to_string(),
                task: id.to_owned(),
            })
    }
    /// The direct downstreams of task `i`.
    pub fn downstream(&self, i: usize) -> &[usize] {
        &self.downstream[i]
    }
    /// Checks a branch task's choice: every id in `follow` must name a
    /// direct downstream of task `i`. A typo would otherwise skip every
    /// downstream and let the run succeed, so it fails the branch task,
    /// naming the unknown ids and the valid ones.
    pub fn check_branch(&self, i: usize, follow: &[String]) -> Result<(), TaskError> {
        let downstream: Vec<&str> = self.downstream[i]
            .iter()
            .map(|&d| self.tasks[d].id.as_str())
            .collect();
        let unknown: Vec<&str> = follow
            .iter()
            .map(String::as_str)
            .filter(|t| !downstream.contains(t))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let quoted = |ids: &[&str]| {
            ids.iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let valid = if downstream.is_empty() {
            "it has no downstream tasks".to_owned()
        } else {
            format!("its direct downstreams are {}", quoted(&downstream))
        };
        Err(TaskError::fatal(format!(
            "branch task `{}` chose {}, which {}; {valid}",
            self.tasks[i].id,
            quoted(&unknown),
            if unknown.len() == 1 {
                "is not a direct downstream"
            } else {
                "are not direct downstreams"
            },
        )))
    }

    /// The failure that replaces task `i`'s success when it is a branch
    /// that chose tasks that are not its direct downstreams (see
    /// [`Dag::check_branch`]); `None` for any other result.
    pub fn branch_failure(
        &self,
        i: usize,
        result: &Result<TaskOutput, TaskError>,
    ) -> Option<TaskError> {
        let follow = result.as_ref().ok()?.follow.as_deref()?;
        self.check_branch(i, follow).err()
    }

    /// Task indices in a topological order (upstreams first), ties in
    /// declaration order.
    pub fn topological_order(&self) -> &[usize] {
        &self.topo
    }

    /// A stable fingerprint of the DAG's structure (tasks, edges, options,
    /// schedule). It changes exactly when the structure does, and names
    /// the DAG's version.
    pub fn fingerprint(&self) -> String {
        let mut canon = String::new();
        let _ = write!(
            canon,
            "{}|{}|{}|{:?}|{}|{}|{}|{:?}|",
            self.id,
            self.schedule,
            self.start,
            self.end,
            self.catchup,
            self.max_active_runs,
            self.max_active_tasks,
            self.namespace
        );
        for t in &self.tasks {
            let _ = write!(canon, "{}:{}:{:?}:", t.id, t.function, t.options);
            for u in &t.upstream {
                let _ = write!(canon, "{}{:?},", self.tasks[u.task].id, u.kind);
            }
            canon.push(';');
        }
        format!("{:016x}", fnv1a(canon.as_bytes()))
    }
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Builds a [`Dag`], validating ids, edges and acyclicity.
#[derive(Clone, Debug)]
pub struct DagBuilder {
    id: String,
    description: Option<String>,
    schedule: Schedule,
    tz: Tz,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    catchup: bool,
    max_active_runs: u32,
    max_active_tasks: u32,
    namespace: Option<String>,
    tags: Vec<String>,
    defaults: TaskOptions,
    alerts: AlertSettings,
    source_file: &'static str,
    source_line: u32,
    tasks: Vec<TaskSpec>,
    order_edges: Vec<(String, String)>,
}

impl DagBuilder {
    /// A manual DAG with id `id` and no tasks, starting at the Unix epoch.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            description: None,
            schedule: Schedule::Manual,
            tz: Tz::UTC,
            start: DateTime::<Utc>::UNIX_EPOCH,
            end: None,
            catchup: false,
            max_active_runs: DEFAULT_MAX_ACTIVE_RUNS,
            max_active_tasks: DEFAULT_MAX_ACTIVE_TASKS,
            namespace: None,
            tags: Vec::new(),
            defaults: TaskOptions::default(),
            alerts: AlertSettings::default(),
            source_file: "",
            source_line: 0,
            tasks: Vec::new(),
            order_edges: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }
    /// Sets the schedule and its time zone.
    pub fn schedule(mut self, schedule: Schedule, tz: Tz) -> Self {
        self.schedule = schedule;
        self.tz = tz;
        self
    }
    /// Sets the start date.
    pub fn start_date(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }
    /// Sets the end date.
    pub fn end_date(mut self, end: Option<DateTime<Utc>>) -> Self {
        self.end = end;
        self
    }
    /// Sets catchup.
    pub fn catchup(mut self, catchup: bool) -> Self {
        self.catchup = catchup;
        self
    }
    /// Sets the runs in flight at once.
    pub fn max_active_runs(mut self, n: u32) -> Self {
        self.max_active_runs = n.max(1);
        self
    }
    /// Sets the task instances running at once.
    pub fn max_active_tasks(mut self, n: u32) -> Self {
        self.max_active_tasks = n.max(1);
        self
    }
    /// Sets the Kubernetes namespace.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }
    /// Sets the tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the options every task inherits.
    pub fn default_options(mut self, defaults: TaskOptions) -> Self {
        self.defaults = defaults;
        self
    }
    /// Sets which alerts it raises.
    pub fn alerts(mut self, alerts: AlertSettings) -> Self {
        self.alerts = alerts;
        self
    }
    /// Records where the DAG is declared.
    pub fn source(mut self, file: &'static str, line: u32) -> Self {
        self.source_file = file;
        self.source_line = line;
        self
    }
    /// Adds a task.
    pub fn task(mut self, spec: TaskSpec) -> Self {
        self.tasks.push(spec);
        self
    }
    /// Adds an ordering edge: `downstream` runs after `upstream`.
    pub fn order(mut self, upstream: impl Into<String>, downstream: impl Into<String>) -> Self {
        self.order_edges.push((upstream.into(), downstream.into()));
        self
    }

    /// Validates and builds the DAG.
    pub fn build(self) -> Result<Dag, Error> {
        let id = DagId::new(self.id)?;
        if let Some(ns) = &self.namespace {
            check_dns1123_label(ns).map_err(|reason| Error::InvalidId {
                what: "namespace",
                id: ns.clone(),
                reason,
            })?;
        }
        let mut index = HashMap::new();
        let mut tasks = Vec::with_capacity(self.tasks.len());
        for spec in &self.tasks {
            let tid = TaskId::new(spec.id.clone())?;
            if index.insert(tid.clone(), tasks.len()).is_some() {
                return Err(Error::DuplicateTask {
                    dag: id.to_string(),
                    task: spec.id.clone(),
                });
            }
            tasks.push(TaskNode {
                id: tid,
                function: spec.function,
                options: spec.options.clone().or(&self.defaults),
                upstream: Vec::new(),
                run: spec.run,
            });
        }
        let lookup = |task: &str, up: &str| -> Result<usize, Error> {
            index
                .get(up)
                .copied()
                .ok_or_else(|| Error::UnknownUpstream {
                    dag: id.to_string(),
                    task: task.to_owned(),
                    upstream: up.to_owned(),
                })
        };
        for (i, spec) in self.tasks.iter().enumerate() {
            for up in &spec.data_upstream {
                let u = lookup(&spec.id, up)?;
                let edge = Upstream {
                    task: u,
                    kind: EdgeKind::Data,
                };
                if !tasks[i].upstream.iter().any(|e| e.task == u) {
                    tasks[i].upstream.push(edge);
                }
            }
        }
        for (up, down) in &self.order_edges {
            let d = lookup(down, down)?;
            let u = lookup(down, up)?;
            if !tasks[d].upstream.iter().any(|e| e.task == u) {
                tasks[d].upstream.push(Upstream {
                    task: u,
                    kind: EdgeKind::Order,
                });
            }
        }
        let mut downstream = vec![Vec::new(); tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            for u in &t.upstream {
                downstream[u.task].push(i);
            }
        }
        let topo = topological_order(&tasks).map_err(|cycle| Error::Cycle {
            dag: id.to_string(),
            cycle: cycle.iter().map(|i| tasks[*i].id.to_string()).collect(),
        })?;
        Ok(Dag {
            id,
            description: self.description,
            schedule: self.schedule,
            tz: self.tz,
            start: self.start,
            end: self.end,
            catchup: self.catchup,
            max_active_runs: self.max_active_runs,
            max_active_tasks: self.max_active_tasks,
            namespace: self.namespace,
            tags: self.tags,
            defaults: self.defaults,
            alerts: self.alerts,
            source_file: self.source_file,
            source_line: self.source_line,
            tasks,
            index,
            downstream,
            topo,
        })
    }
}

/// Kahn's algorithm, ties broken by declaration order; on a cycle, the
/// tasks of one cycle with the first repeated at the end. The one
/// algorithm the `#[dag]` macro also checks with.
fn topological_order(tasks: &[TaskNode]) -> Result<Vec<usize>, Vec<usize>> {
    let upstream: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| t.upstream.iter().map(|u| u.task).collect())
        .collect();
    goflow_syntax::graph::topological_order(&upstream)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Inputs, TaskContext, TaskFuture};

    pub(crate) fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            Ok(TaskOutput {
                value: serde_json::Value::Null,
                follow: None,
            })
        })
    }

    pub(crate) fn spec(id: &str, data: &[&str]) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            function: "noop",
            options: TaskOptions::default(),
            data_upstream: data.iter().map(|s| s.to_string()).collect(),
            run: noop,
        }
    }

    #[test]
    fn builds_a_diamond_in_topological_order() {
        let dag = DagBuilder::new("diamond")
            .task(spec("d", &["b", "c"]))
            .task(spec("b", &["a"]))
            .task(spec("c", &["a"]))
            .task(spec("a", &[]))
            .build()
            .unwrap();
        let order: Vec<&str> = dag
            .topological_order()
            .iter()
            .map(|i| dag.tasks()[*i].id.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        let a = dag.index_of("a").unwrap();
        assert_eq!(dag.downstream(a).len(), 2);
    }

    #[test]
    fn a_branch_may_only_choose_its_direct_downstreams() {
        let dag = DagBuilder::new("branchy")
            .task(spec("route", &[]))
            .task(spec("big_report", &["route"]))
            .task(spec("small_report", &["route"]))
            .task(spec("publish", &["big_report"]))
            .build()
            .unwrap();
        let route = dag.index_of("route").unwrap();
        let follow = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(dag.check_branch(route, &follow(&["big_report"])).is_ok());
        assert!(dag.check_branch(route, &follow(&[])).is_ok());
        let err = dag
            .check_branch(route, &follow(&["big_reprot"]))
            .unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "branch task `route` chose `big_reprot`, which is not a direct downstream; \
             its direct downstreams are `big_report`, `small_report`"
        );
        // Only direct downstreams count.
        let err = dag
            .check_branch(route, &follow(&["publish", "small_report", "x"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "branch task `route` chose `publish`, `x`, which are not direct downstreams; \
             its direct downstreams are `big_report`, `small_report`"
        );
        let leaf = dag.index_of("publish").unwrap();
        assert!(dag
            .check_branch(leaf, &follow(&["route"]))
            .unwrap_err()
            .to_string()
            .ends_with("it has no downstream tasks"));
    }

    #[test]
    fn rejects_duplicates_unknown_edges_and_cycles() {
        let err = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(spec("a", &[]))
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "DAG x: duplicate task id \"a\"");

        let err = DagBuilder::new("x")
            .task(spec("a", &["zz"]))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("unknown task \"zz\""), "{err}");

        let err = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(spec("b", &["a"]))
            .task(spec("c", &["b"]))
            .order("c", "a")
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DAG x: the dependencies form a cycle: a -> b -> c -> a"
        );

        assert!(DagBuilder::new("Bad_Id").build().is_err());
        assert!(DagBuilder::new("ok").namespace("Not OK").build().is_err());
    }

    #[test]
    fn defaults_apply_to_tasks() {
        let dag = DagBuilder::new("x")
            .default_options(TaskOptions {
                retries: Some(3),
                ..Default::default()
            })
            .task(spec("a", &[]))
            .build()
            .unwrap();
        assert_eq!(dag.tasks()[0].options.retries, Some(3));
    }

    #[test]
    fn fingerprint_follows_structure() {
        let base = || {
            DagBuilder::new("x")
                .task(spec("a", &[]))
                .task(spec("b", &["a"]))
        };
        let one = base().build().unwrap().fingerprint();
        assert_eq!(one, base().build().unwrap().fingerprint());
        let more = base()
            .task(spec("c", &["b"]))
            .build()
            .unwrap()
            .fingerprint();
        assert_ne!(one, more);
        let reordered = base().order("a", "b").build().unwrap().fingerprint();
        assert_eq!(one, reordered, "a duplicate edge changes nothing");
    }
}
