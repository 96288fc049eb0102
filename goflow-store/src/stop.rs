//! Requests to stop work: a person (UI, API, CLI) asks for a task
//! instance's active try, or a whole run, to be stopped. The request is
//! stored on the task instances; the scheduler owning the run reads it,
//! has the executor stop the try, and ends the task instance in the
//! requested state. Nothing but the owner changes an owned run's task
//! instances, so a stop is never lost to a race with the owner's writes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use goflow_core::{RunState, TaskState};

use crate::conn::{transaction, AnyConnection};
use crate::model::{micros, parse, StopRequest};
use crate::schema::{dag_runs, task_instances as ti};
use crate::store::{find_run, task_states, QUEUED, RUNNING};
use crate::{Result, Store, StoreError};

/// A stop request found by [`Store::stop_requests`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingStop {
    /// The run's surrogate id.
    pub run: i64,
    /// The task.
    pub task_id: String,
    /// What was asked.
    pub request: StopRequest,
}

impl Store {
    /// Asks for the active (queued or running) tries of `task_ids` in run
    /// `run` to be stopped, each to end in `to` (`failed`, `success`, or
    /// `pending` to run it again). Refuses, changing nothing, unknown
    /// tasks ([`StoreError::TaskNotFound`]) and tasks that are not active
    /// ([`StoreError::TasksNotActive`]).
    pub async fn request_stop(
        &self,
        run: i64,
        task_ids: &[String],
        to: TaskState,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let task_ids = task_ids.to_vec();
        let request = StopRequest {
            to,
            reason: reason.to_owned(),
            run: false,
        };
        self.run("request_stop", move |conn| {
            transaction(conn, |c| {
                find_run(c, run)?;
                let idle: Vec<String> = task_states(c, run, &task_ids)?
                    .into_iter()
                    .filter(|(_, state)| !state.is_active())
                    .map(|(task, _)| task)
                    .collect();
                if !idle.is_empty() {
                    return Err(StoreError::TasksNotActive { run, tasks: idle });
                }
                set_request(c, run, &task_ids, &[QUEUED, RUNNING], &request, micros(now))?;
                Ok(())
            })
        })
        .await
    }

    /// Asks for run `run` to be stopped: its active tries end `failed`, its
    /// tasks not yet run end `skipped` (a waiting retry `failed`), and the
    /// run ends `failed`. A run that has not started is failed at once.
    /// Returns how many task instances the request covers.
    pub async fn request_run_stop(
        &self,
        run: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let reason = reason.to_owned();
        self.run("request_run_stop", move |conn| {
            transaction(conn, |c| {
                let row = find_run(c, run)?;
                let state: RunState = parse("dag_runs", "status", &row.status)?;
                let now = micros(now);
                let active: i64 = ti::table
                    .filter(ti::dag_run_id.eq(run))
                    .filter(ti::state.eq_any([QUEUED, RUNNING]))
                    .count()
                    .get_result(c)?;
                match state {
                    RunState::Success | RunState::Failed => {
                        Err(StoreError::RunNotActive { run, state })
                    }
                    RunState::Queued if active == 0 => {
                        // Nothing ran: the run ends here, its tasks skipped.
                        diesel::update(dag_runs::table.find(run))
                            .set((
                                dag_runs::status.eq(RunState::Failed.as_str()),
                                dag_runs::end_date.eq(now),
                                dag_runs::last_updated_date.eq(now),
                            ))
                            .execute(c)?;
                        Ok(diesel::update(ti::table.filter(ti::dag_run_id.eq(run)))
                            .set((
                                ti::state.eq(TaskState::Skipped.as_str()),
                                ti::last_updated_date.eq(now),
                            ))
                            .execute(c)?)
                    }
                    RunState::Queued | RunState::Running => {
                        let all: Vec<String> = ti::table
                            .filter(ti::dag_run_id.eq(run))
                            .select(ti::task_id)
                            .load(c)?;
                        let stop = |to| StopRequest {
                            to,
                            reason: reason.clone(),
                            run: true,
                        };
                        let active = set_request(
                            c,
                            run,
                            &all,
                            &[QUEUED, RUNNING],
                            &stop(TaskState::Failed),
                            now,
                        )?;
                        let waiting = set_request(
                            c,
                            run,
                            &all,
                            &[
                                TaskState::Pending.as_str(),
                                TaskState::Scheduled.as_str(),
                                TaskState::UpForRetry.as_str(),
                            ],
                            &stop(TaskState::Skipped),
                            now,
                        )?;
                        Ok(active + waiting)
                    }
                }
            })
        })
        .await
    }

    /// The stop requests not yet carried out in `runs`.
    pub async fn stop_requests(&self, runs: &[i64]) -> Result<Vec<PendingStop>> {
        let runs = runs.to_vec();
        self.run("stop_requests", move |conn| {
            let rows: Vec<(i64, String, Option<String>)> = ti::table
                .filter(ti::dag_run_id.eq_any(&runs))
                .filter(ti::stop_requested.is_not_null())
                .select((ti::dag_run_id, ti::task_id, ti::stop_requested))
                .load(conn)?;
            rows.into_iter()
                .filter_map(|(run, task_id, json)| json.map(|j| (run, task_id, j)))
                .map(|(run, task_id, json)| {
                    let request = serde_json::from_str(&json).map_err(|e| {
                        StoreError::corrupt("task_instances", "stop_requested", &json, e)
                    })?;
                    Ok(PendingStop {
                        run,
                        task_id,
                        request,
                    })
                })
                .collect()
        })
        .await
    }
}

/// Stores `request` on the task instances of `task_ids` in `states`.
fn set_request(
    conn: &mut AnyConnection,
    run: i64,
    task_ids: &[String],
    states: &[&str],
    request: &StopRequest,
    now: i64,
) -> Result<usize> {
    let json = serde_json::to_string(request).map_err(|_| StoreError::InvalidInput {
        what: "stop request",
        value: request.reason.clone(),
        reason: "it cannot be encoded as JSON",
    })?;
    Ok(diesel::update(
        ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq_any(task_ids))
            .filter(ti::state.eq_any(states)),
    )
    .set((ti::stop_requested.eq(json), ti::last_updated_date.eq(now)))
    .execute(conn)?)
}
