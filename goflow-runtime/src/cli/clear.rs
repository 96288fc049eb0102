//! `tasks clear`: puts finished task instances of a run back to pending so
//! that the scheduler runs them again.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use goflow_core::{Dag, RunState, TaskState};
use goflow_store::{StoreError, TaskInstanceRow};

use super::{db, ClearArgs, CliError};
use crate::Registry;

/// `tasks clear <dag> <run_id> [<task>...] [--downstream]`.
pub(super) async fn clear(
    registry: &Registry,
    url: &str,
    args: &ClearArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let dag = registry.get(&args.dag_id)?;
    let (store, _) = db::open(url, registry, now).await?;
    let dag_id = dag.id().to_string();
    let run = store
        .find_run(&dag_id, &args.run_id)
        .await?
        .ok_or_else(|| CliError::UnknownRun {
            dag: dag_id.clone(),
            run_id: args.run_id.clone(),
        })?;
    let instances = store.task_instances(run.id).await?;
    let selected = select(dag, &instances, &args.tasks, args.downstream).map_err(|task| {
        CliError::UnknownTask {
            dag: dag_id.clone(),
            run_id: run.run_id.clone(),
            task,
            known: instances
                .iter()
                .map(|t| t.task_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    })?;
    let active = |tasks: Vec<String>| CliError::TasksActive {
        dag: dag_id.clone(),
        run_id: run.run_id.clone(),
        tasks,
    };
    // Running tries are stopped first; the run's scheduler clears them
    // once they ended. The rest are cleared now.
    let (busy, idle): (Vec<String>, Vec<String>) = selected.iter().cloned().partition(|t| {
        instances
            .iter()
            .any(|ti| ti.task_id == *t && ti.state.is_active())
    });
    if !busy.is_empty() {
        let reason = format!(
            "cleared by {} while running: stopped to run again",
            super::stop::cli_actor()
        );
        store
            .request_stop(run.id, &busy, TaskState::Pending, &reason, now)
            .await?;
        writeln!(
            out,
            "stopping {} (running): the scheduler owning the run clears {} once stopped",
            busy.join(", "),
            if busy.len() == 1 { "it" } else { "them" }
        )?;
    }
    if !idle.is_empty() {
        store
            .clear_tasks(run.id, &idle, now)
            .await
            .map_err(|e| match e {
                // A scheduler queued one of them since they were read.
                StoreError::TasksActive { tasks, .. } => active(tasks),
                other => other.into(),
            })?;
    }
    writeln!(
        out,
        "cleared {} task instance{} of run {} of DAG {}: {}",
        selected.len(),
        if selected.len() == 1 { "" } else { "s" },
        run.run_id,
        dag_id,
        selected.join(", ")
    )?;
    let state = store.get_run(run.id).await?.map_or(run.state, |r| r.state);
    if state != run.state && state == RunState::Queued {
        writeln!(out, "run {} is queued again", run.run_id)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The task ids to clear, in the DAG's topological order (tasks the DAG no
/// longer has last): `named`, with their transitive downstreams when
/// `downstream`, or every task of the run when none is named. A named
/// task the run lacks is the error.
fn select(
    dag: &Dag,
    instances: &[TaskInstanceRow],
    named: &[String],
    downstream: bool,
) -> Result<Vec<String>, String> {
    let in_run: HashSet<&str> = instances.iter().map(|t| t.task_id.as_str()).collect();
    if let Some(missing) = named.iter().find(|t| !in_run.contains(t.as_str())) {
        return Err(missing.clone());
    }
    let mut wanted: HashSet<&str> = if named.is_empty() {
        in_run.clone()
    } else {
        named.iter().map(String::as_str).collect()
    };
    if downstream {
        let mut stack: Vec<usize> = wanted.iter().filter_map(|t| dag.index_of(t)).collect();
        let mut seen: HashSet<usize> = stack.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for &d in dag.downstream(i) {
                if seen.insert(d) {
                    stack.push(d);
                }
            }
        }
        // A downstream added after the run was created is not in the run.
        wanted.extend(
            seen.into_iter()
                .map(|i| dag.tasks()[i].id.as_str())
                .filter(|t| in_run.contains(t)),
        );
    }
    let mut ordered: Vec<String> = dag
        .topological_order()
        .iter()
        .map(|&i| dag.tasks()[i].id.as_str())
        .filter(|t| wanted.remove(t))
        .map(str::to_owned)
        .collect();
    ordered.extend(
        instances
            .iter()
            .filter(|t| wanted.contains(t.task_id.as_str()))
            .map(|t| t.task_id.clone()),
    );
    Ok(ordered)
}
