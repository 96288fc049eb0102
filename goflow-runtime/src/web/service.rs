//! What the UI and the API both do, once: read pages of DAGs, grids and
//! health; trigger, pause, clear and mark. Handlers only translate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use goflow_core::schedule::parse_datetime;
use goflow_core::{Dag, DataInterval, RunState, RunType, TaskState};
use goflow_store::{
    DagQuery, DagRecord, DagRow, MarkOutcome, RunRow, SchedulerRow, StoreError, TaskInstanceRow,
    TaskTryRow,
};

use super::{WebError, WebState};

/// Most items on one page of any list.
pub(crate) const MAX_PAGE: i64 = 500;

/// A DAG with what the list shows about it.
pub(crate) struct DagSummary {
    /// As stored.
    pub row: DagRow,
    /// As this binary declares it, if it does.
    pub dag: Option<Arc<Dag>>,
    /// When its next scheduled run is due.
    pub next_run: Option<DateTime<Utc>>,
    /// Its latest runs, latest first.
    pub recent: Vec<RunRow>,
}

/// The DAG `id` as this binary declares it, if it does.
pub(crate) fn declared(state: &WebState, id: &str) -> Option<Arc<Dag>> {
    state
        .registry()
        .dags()
        .find(|d| d.id().as_str() == id)
        .cloned()
}

/// When the next scheduled run of `dag` is due after `now` (none when
/// paused or unscheduled).
pub(crate) fn next_run(dag: &Dag, paused: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if paused {
        return None;
    }
    dag.schedule()
        .next_due_after(dag.start_date(), dag.end_date(), now)
}

/// The next `n` instants scheduled runs of `dag` are due, after `now`.
pub(crate) fn next_runs(dag: &Dag, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = now;
    while out.len() < n {
        match dag
            .schedule()
            .next_due_after(dag.start_date(), dag.end_date(), t)
        {
            Some(next) if next > t => {
                out.push(next);
                t = next;
            }
            _ => break,
        }
    }
    out
}

/// A page of DAGs with their latest `recent` runs: two queries, whatever
/// the page size.
pub(crate) async fn dag_list(
    state: &WebState,
    query: DagQuery,
    recent: u32,
) -> Result<(Vec<DagSummary>, u64), WebError> {
    let page = state.store().dag_page(&query).await?;
    let ids: Vec<String> = page.dags.iter().map(|d| d.id.clone()).collect();
    let mut runs = state.store().latest_runs_of_dags(&ids, recent).await?;
    let now = Utc::now();
    let dags = page
        .dags
        .into_iter()
        .map(|row| {
            let dag = declared(state, &row.id);
            DagSummary {
                next_run: dag.as_ref().and_then(|d| next_run(d, row.is_paused, now)),
                recent: runs.remove(&row.id).unwrap_or_default(),
                dag,
                row,
            }
        })
        .collect();
    Ok((dags, page.total))
}

/// The stored DAG `id`, or `404`.
pub(crate) async fn dag_row(state: &WebState, id: &str) -> Result<DagRow, WebError> {
    state
        .store()
        .get_dag(id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no DAG '{id}'")))
}

/// The run `run_id` of DAG `dag_id`, or `404`.
pub(crate) async fn find_run(
    state: &WebState,
    dag_id: &str,
    run_id: &str,
) -> Result<RunRow, WebError> {
    state
        .store()
        .find_run(dag_id, run_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("DAG '{dag_id}' has no run '{run_id}'")))
}

/// A run's configuration from its JSON text: an object, `{}` when blank.
pub(crate) fn parse_conf(text: &str) -> Result<serde_json::Value, WebError> {
    if text.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(other) => Err(WebError::BadRequest(format!(
            "invalid conf: expected a JSON object such as {{\"key\": \"value\"}}, got {}",
            json_kind(&other)
        ))),
        Err(e) => Err(WebError::BadRequest(format!(
            "invalid conf: not valid JSON: {e}"
        ))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Creates a queued manual run of `dag_id` with `conf` (a JSON object) at
/// `logical_date` (in the DAG's time zone; default now).
pub(crate) async fn trigger(
    state: &WebState,
    dag_id: &str,
    conf: serde_json::Value,
    logical_date: Option<&str>,
    who: &str,
) -> Result<RunRow, WebError> {
    let dag = declared(state, dag_id).ok_or_else(|| {
        WebError::NotFound(format!(
            "DAG '{dag_id}' is not declared by this binary, so it cannot be triggered here"
        ))
    })?;
    if !conf.is_object() {
        return Err(WebError::BadRequest(format!(
            "invalid conf: expected a JSON object, got {}",
            json_kind(&conf)
        )));
    }
    let now = Utc::now();
    let logical = match logical_date.map(str::trim).filter(|d| !d.is_empty()) {
        Some(text) => parse_datetime(text, dag.tz())
            .map_err(|e| WebError::BadRequest(format!("invalid logical_date: {e}")))?,
        // The store keeps microseconds: so does the run id.
        None => now.trunc_subsecs(6),
    };
    let row = match state.store().get_dag(dag_id).await? {
        Some(row) => row,
        None => {
            state
                .store()
                .sync_dag(&DagRecord::from_dag(&dag), now)
                .await?
        }
    };
    let new = crate::db::new_run(
        &dag,
        row.version,
        RunType::Manual,
        DataInterval::at(logical),
        conf,
    );
    let run = state
        .store()
        .create_run(&new, now)
        .await
        .map_err(|e| match e {
            StoreError::RunExists { .. } => WebError::Conflict(format!(
                "DAG '{dag_id}' already has a run at logical date {}",
                logical.to_rfc3339()
            )),
            other => other.into(),
        })?;
    tracing::info!(dag = %dag_id, run = %run.run_id, user = who, "run triggered");
    Ok(run)
}

/// Pauses or unpauses a DAG.
pub(crate) async fn set_paused(
    state: &WebState,
    dag_id: &str,
    paused: bool,
    who: &str,
) -> Result<DagRow, WebError> {
    state.store().set_paused(dag_id, paused).await?;
    tracing::info!(dag = %dag_id, paused, user = who, "DAG paused state set");
    dag_row(state, dag_id).await
}

/// Task ids of `instances` in the order of the DAG (topological), those
/// the DAG no longer has last.
pub(crate) fn task_order(dag: Option<&Dag>, instances: &[TaskInstanceRow]) -> Vec<String> {
    let mut order: Vec<String> = dag
        .map(|d| {
            d.topological_order()
                .iter()
                .map(|&i| d.tasks()[i].id.to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut seen: HashSet<String> = order.iter().cloned().collect();
    for ti in instances {
        if seen.insert(ti.task_id.clone()) {
            order.push(ti.task_id.clone());
        }
    }
    order
}

/// `tasks` and, with `downstream`, every task downstream of them in the
/// DAG, as present in the run.
fn with_downstream(
    dag: Option<&Dag>,
    tasks: &[String],
    downstream: bool,
    in_run: &HashSet<&str>,
) -> Vec<String> {
    let mut wanted: Vec<String> = tasks.to_vec();
    if let (true, Some(dag)) = (downstream, dag) {
        let mut stack: Vec<usize> = tasks.iter().filter_map(|t| dag.index_of(t)).collect();
        let mut seen: HashSet<usize> = stack.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for &d in dag.downstream(i) {
                if seen.insert(d) {
                    stack.push(d);
                    let id = dag.tasks()[d].id.as_str();
                    if in_run.contains(id) {
                        wanted.push(id.to_owned());
                    }
                }
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    wanted
}

/// What to clear in a run.
#[derive(Debug, Default)]
pub(crate) struct ClearSpec {
    /// These tasks (every task of the run when empty).
    pub tasks: Vec<String>,
    /// And everything downstream of them.
    pub downstream: bool,
    /// Only those that failed or are `upstream_failed`.
    pub only_failed: bool,
}

/// Clears task instances of `run` so that they run again; returns the
/// task ids cleared, in the DAG's order.
pub(crate) async fn clear(
    state: &WebState,
    run: &RunRow,
    spec: &ClearSpec,
    who: &str,
) -> Result<Vec<String>, WebError> {
    let instances = state.store().task_instances(run.id).await?;
    let in_run: HashSet<&str> = instances.iter().map(|t| t.task_id.as_str()).collect();
    if let Some(missing) = spec.tasks.iter().find(|t| !in_run.contains(t.as_str())) {
        return Err(WebError::NotFound(format!(
            "run '{}' of DAG '{}' has no task '{missing}'",
            run.run_id, run.dag_id
        )));
    }
    let dag = declared(state, &run.dag_id);
    let named: Vec<String> = if spec.tasks.is_empty() {
        instances.iter().map(|t| t.task_id.clone()).collect()
    } else {
        spec.tasks.clone()
    };
    let mut selected = with_downstream(dag.as_deref(), &named, spec.downstream, &in_run);
    if spec.only_failed {
        let failed: HashSet<&str> = instances
            .iter()
            .filter(|t| matches!(t.state, TaskState::Failed | TaskState::UpstreamFailed))
            .map(|t| t.task_id.as_str())
            .collect();
        selected.retain(|t| failed.contains(t.as_str()));
    }
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    // Running tries are stopped first and cleared by the run's scheduler
    // once they ended; the rest are cleared now.
    let (busy, idle): (Vec<String>, Vec<String>) = selected.iter().cloned().partition(|t| {
        instances
            .iter()
            .any(|ti| ti.task_id == *t && ti.state.is_active())
    });
    if !busy.is_empty() {
        let reason = format!("cleared by {who} while running: stopped to run again");
        state
            .store()
            .request_stop(run.id, &busy, TaskState::Pending, &reason, Utc::now())
            .await
            .map_err(|e| store_conflict(run, e))?;
        tracing::info!(dag = %run.dag_id, run = %run.run_id, tasks = ?busy, user = ?who, "running tasks stopped to be cleared");
    }
    if !idle.is_empty() {
        state
            .store()
            .clear_tasks(run.id, &idle, Utc::now())
            .await
            .map_err(|e| store_conflict(run, e))?;
    }
    let order = task_order(dag.as_deref(), &instances);
    selected.sort_by_key(|t| order.iter().position(|o| o == t));
    tracing::info!(dag = %run.dag_id, run = %run.run_id, tasks = ?selected, user = who, "tasks cleared");
    Ok(selected)
}

/// A store error, with tasks found active as a conflict naming them.
fn store_conflict(run: &RunRow, e: StoreError) -> WebError {
    match e {
        StoreError::TasksActive { tasks, .. } => {
            active_conflict(run, &tasks.iter().map(String::as_str).collect::<Vec<_>>())
        }
        other => other.into(),
    }
}

fn active_conflict(run: &RunRow, tasks: &[&str]) -> WebError {
    WebError::Conflict(format!(
        "cannot change {} of run '{}': queued or running; wait for {} to finish",
        tasks.join(", "),
        run.run_id,
        if tasks.len() == 1 { "it" } else { "them" }
    ))
}

/// Marks `task` (and with `downstream` what is downstream of it) of a
/// finished run `success` or `failed`; returns the run's state after.
pub(crate) async fn mark(
    state: &WebState,
    run: &RunRow,
    task: &str,
    to: TaskState,
    downstream: bool,
    who: &str,
) -> Result<RunState, WebError> {
    if !matches!(to, TaskState::Success | TaskState::Failed) {
        return Err(WebError::BadRequest(format!(
            "invalid state '{to}': a task can be marked success or failed"
        )));
    }
    let instances = state.store().task_instances(run.id).await?;
    let in_run: HashSet<&str> = instances.iter().map(|t| t.task_id.as_str()).collect();
    if !in_run.contains(task) {
        return Err(WebError::NotFound(format!(
            "run '{}' of DAG '{}' has no task '{task}'",
            run.run_id, run.dag_id
        )));
    }
    if instances
        .iter()
        .any(|t| t.task_id == task && t.state.is_active())
    {
        // A running try is stopped; its scheduler then ends it in `to`
        // and settles its downstreams.
        let reason = format!("marked {to} by {who} while running: stopped");
        state
            .store()
            .request_stop(run.id, &[task.to_owned()], to, &reason, Utc::now())
            .await
            .map_err(|e| store_conflict(run, e))?;
        tracing::info!(dag = %run.dag_id, run = %run.run_id, task, state = %to, user = ?who, "running task stopped");
        return Ok(run.state);
    }
    let dag = declared(state, &run.dag_id);
    let selected = with_downstream(dag.as_deref(), &[task.to_owned()], downstream, &in_run);
    let outcome = state
        .store()
        .mark_tasks(run.id, &selected, to, Utc::now())
        .await
        .map_err(|e| store_conflict(run, e))?;
    match outcome {
        MarkOutcome::Marked { run_state } => {
            tracing::info!(dag = %run.dag_id, run = %run.run_id, tasks = ?selected, state = %to, user = who, "tasks marked");
            Ok(run_state)
        }
        MarkOutcome::RunActive { state } => Err(WebError::Conflict(format!(
            "run '{}' is {state}: its scheduler owns its task states; mark tasks once it has \
             finished, or clear them",
            run.run_id
        ))),
    }
}

/// Stops a queued or running run: its running tries are stopped and end
/// `failed`, tasks not yet run end `skipped`, the run ends `failed`.
/// Returns how many task instances that covers.
pub(crate) async fn stop_run(state: &WebState, run: &RunRow, who: &str) -> Result<usize, WebError> {
    let reason = format!("run stopped by {who}");
    let n = state
        .store()
        .request_run_stop(run.id, &reason, Utc::now())
        .await
        .map_err(|e| match e {
            StoreError::RunNotActive { state, .. } => WebError::Conflict(format!(
                "run '{}' is {state} already: only a queued or running run can be stopped",
                run.run_id
            )),
            other => other.into(),
        })?;
    tracing::info!(dag = %run.dag_id, run = %run.run_id, user = ?who, "run stop requested");
    Ok(n)
}

/// Recent runs of a DAG by the tasks of the DAG.
pub(crate) struct Grid {
    /// Task ids, in the DAG's order.
    pub tasks: Vec<String>,
    /// Runs, oldest first, each with its task instances by task id.
    pub runs: Vec<(RunRow, HashMap<String, TaskInstanceRow>)>,
}

/// The grid of the `limit` runs of `dag_id` after skipping the `offset`
/// latest: two queries.
pub(crate) async fn grid(
    state: &WebState,
    dag_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Grid, WebError> {
    let runs = state
        .store()
        .list_runs(dag_id, limit.clamp(1, MAX_PAGE), offset.max(0))
        .await?;
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let instances = state.store().task_instances_of_runs(&ids).await?;
    let dag = declared(state, dag_id);
    let tasks = task_order(dag.as_deref(), &instances);
    let mut by_run: HashMap<i64, HashMap<String, TaskInstanceRow>> = HashMap::new();
    for ti in instances {
        by_run
            .entry(ti.run)
            .or_default()
            .insert(ti.task_id.clone(), ti);
    }
    let mut rows: Vec<_> = runs
        .into_iter()
        .map(|r| {
            let tis = by_run.remove(&r.id).unwrap_or_default();
            (r, tis)
        })
        .collect();
    rows.reverse();
    Ok(Grid { tasks, runs: rows })
}

/// A finished try with the run id it belongs to.
pub(crate) struct HistoryEntry {
    /// The try.
    pub try_row: TaskTryRow,
    /// Its run's run id (if the run still exists).
    pub run_id: Option<String>,
}

/// The latest `limit` finished tries of a task, oldest first.
pub(crate) async fn history(
    state: &WebState,
    dag_id: &str,
    task_id: &str,
    limit: i64,
) -> Result<Vec<HistoryEntry>, WebError> {
    let mut tries = state
        .store()
        .task_try_history(dag_id, task_id, limit.clamp(1, MAX_PAGE))
        .await?;
    tries.reverse();
    let mut ids: Vec<i64> = tries.iter().map(|t| t.run).collect();
    ids.sort_unstable();
    ids.dedup();
    let run_ids: HashMap<i64, String> = state
        .store()
        .runs_by_ids(&ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r.run_id))
        .collect();
    Ok(tries
        .into_iter()
        .map(|t| HistoryEntry {
            run_id: run_ids.get(&t.run).cloned(),
            try_row: t,
        })
        .collect())
}

/// One scheduler replica, as the health page shows it.
pub(crate) struct SchedulerHealth {
    /// Its row.
    pub row: SchedulerRow,
    /// Seconds since its last heartbeat.
    pub heartbeat_age: f64,
    /// Whether its heartbeat is recent enough.
    pub alive: bool,
    /// Whether it is the scheduler of this process.
    pub this_process: bool,
}

/// What the health page and `/api/v1/health` report.
pub(crate) struct Health {
    /// Whether the database answered, and how fast (or why not).
    pub database: Result<Duration, String>,
    /// Every registered scheduler.
    pub schedulers: Vec<SchedulerHealth>,
    /// The configured scheduler of this process, if any.
    pub scheduler_id: Option<String>,
    /// Runs by state.
    pub runs: HashMap<RunState, u64>,
    /// Task instances by state.
    pub tasks: HashMap<TaskState, u64>,
    /// The latest scheduling step's duration, in seconds.
    pub loop_latency: Option<f64>,
    /// `(executor kind, launched, failed)`.
    pub executors: Vec<(String, u64, u64)>,
    /// Why the scheduler of this process is not keeping up, if it is not
    /// (its writes fail, runs it owns are not loaded).
    pub scheduler_problem: Option<String>,
}

impl Health {
    /// The database answers and the scheduler of this process (or, with
    /// none configured, some scheduler) is alive.
    pub fn healthy(&self) -> bool {
        self.database.is_ok()
            && self.scheduler_problem.is_none()
            && match &self.scheduler_id {
                Some(_) => self.schedulers.iter().any(|s| s.this_process && s.alive),
                None => self.schedulers.iter().any(|s| s.alive),
            }
    }
}

/// Gathers the health report; a database that does not answer is part of
/// the report, not an error.
pub(crate) async fn health(state: &WebState) -> Health {
    let store = state.store();
    let started = std::time::Instant::now();
    let database = store
        .ping()
        .await
        .map(|()| started.elapsed())
        .map_err(|e| e.to_string());
    let (schedulers, runs, tasks) = if database.is_ok() {
        (
            store.list_schedulers().await.unwrap_or_default(),
            store.count_all_runs_by_state().await.unwrap_or_default(),
            store
                .count_task_instances_by_state()
                .await
                .unwrap_or_default(),
        )
    } else {
        Default::default()
    };
    let now = Utc::now();
    let stale = state.config().scheduler_stale_after.as_secs_f64();
    let scheduler_id = state.config().scheduler_id.clone();
    let mut schedulers: Vec<SchedulerHealth> = schedulers
        .into_iter()
        .map(|row| {
            let age = (now - row.heartbeat_date).num_milliseconds().max(0) as f64 / 1000.0;
            SchedulerHealth {
                heartbeat_age: age,
                alive: age <= stale,
                this_process: scheduler_id.as_deref() == Some(row.id.as_str()),
                row,
            }
        })
        .collect();
    schedulers.sort_by(|a, b| {
        b.this_process
            .cmp(&a.this_process)
            .then(a.row.id.cmp(&b.row.id))
    });
    Health {
        database,
        schedulers,
        scheduler_id,
        runs,
        tasks,
        loop_latency: state.metrics().last_loop_latency(),
        executors: state.metrics().executor_counts(),
        scheduler_problem: state.metrics().scheduler_problem(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_must_be_a_json_object() {
        assert_eq!(parse_conf("  ").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_conf(r#"{"a": 1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
        let e = parse_conf("[1]").unwrap_err().to_string();
        assert!(e.contains("got an array"), "{e}");
        let e = parse_conf("{oops").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }
}
