//! Carrying out stop requests (see `goflow_store::Store::request_stop`) for
//! the runs this scheduler owns: an active try is stopped through its
//! executor and ends in the requested state when the executor reports its
//! end; a task not running ends in it at once.

use chrono::{DateTime, Utc};
use goflow_core::alerts::past_deadline;
use goflow_core::{TaskError, TaskOutput, TaskState};
use goflow_store::{RunChange, StopRequest, StoreError, TaskChange, TaskUpdate};

use super::Scheduler;
use crate::executor::TryKey;

impl Scheduler {
    /// Asks for the runs this scheduler owns that passed their DAG's
    /// deadline to be stopped, when the DAG says so
    /// (`alerts(deadline = .., stop_at_deadline = true)`); the next
    /// [`Scheduler::apply_stop_requests`] carries it out.
    pub(super) async fn stop_past_deadline(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let due: Vec<(i64, String)> = self
            .runs
            .values()
            .filter(|r| r.row.state == goflow_core::RunState::Running && !r.stopped)
            .filter_map(|r| {
                let settings = r.dag.alerts();
                let deadline = settings.deadline.filter(|_| settings.stop_at_deadline)?;
                past_deadline(&r.row.data_interval, deadline, None, now).map(|_| {
                    (
                        r.row.id,
                        format!(
                            "run stopped: it passed its deadline of {} after its data interval's end",
                            goflow_core::duration::format(deadline)
                        ),
                    )
                })
            })
            .collect();
        for (run, reason) in due {
            tracing::warn!(run, %reason, "stopping a run past its deadline");
            self.store.request_run_stop(run, &reason, now).await?;
            if let Some(r) = self.runs.get_mut(&run) {
                r.stopped = true;
            }
        }
        Ok(())
    }

    /// Reads the stop requests of the runs this scheduler owns and carries
    /// them out.
    pub(super) async fn apply_stop_requests(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.runs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = self.runs.keys().copied().collect();
        let requests = self.store.stop_requests(&ids).await?;
        let mut writes: Vec<RunChange> = Vec::new();
        for stop in requests {
            let Some(run) = self.runs.get_mut(&stop.run) else {
                continue;
            };
            let Some(task) = run.dag.index_of(&stop.task_id) else {
                continue;
            };
            if stop.request.run {
                run.stopped = true;
            }
            let state = run.state(task);
            if state.is_active() {
                let key = TryKey {
                    run: stop.run,
                    task,
                    try_number: run.try_number(task),
                };
                if self.stopping.contains_key(&key) {
                    continue;
                }
                tracing::info!(dag = %run.row.dag_id, run = %run.row.run_id, task = %stop.task_id, try_number = key.try_number, reason = ?stop.request.reason, "stopping a try on request");
                if let Some(executor) = self.executors.get(&run.executor[task]).cloned() {
                    executor.cancel(&key);
                }
                self.stopping.insert(key, stop.request);
                continue;
            }
            // Not running (any more): it ends in the requested state now,
            // if the state machine allows it from where it is.
            let to = match (stop.request.to, state) {
                (_, s) if s.is_terminal() => None,
                (TaskState::Pending, _) => None,
                (TaskState::Failed, TaskState::Pending | TaskState::Scheduled) => {
                    Some(TaskState::Skipped)
                }
                (TaskState::Skipped, TaskState::UpForRetry) => Some(TaskState::Failed),
                (to, _) => Some(to),
            };
            let mut changes = Vec::new();
            if let Some(to) = to {
                if let Ok(c) = run.progress.end(&run.dag, task, to) {
                    let update = TaskUpdate {
                        error: Some(stop.request.reason.clone()),
                        ..TaskUpdate::new(c.to)
                    };
                    changes.push(TaskChange::new(stop.task_id.clone(), c.from, update));
                    for c in run.progress.settle_after(&run.dag, &[task]) {
                        changes.push(TaskChange::new(
                            run.task_id(c.task),
                            c.from,
                            TaskUpdate::new(c.to),
                        ));
                    }
                }
            }
            if changes.is_empty() {
                // Nothing to do: the request is dropped with an unchanged
                // write of the state.
                changes.push(TaskChange::new(
                    stop.task_id.clone(),
                    state,
                    TaskUpdate::new(state),
                ));
            }
            writes.push(RunChange::tasks(stop.run, changes));
        }
        let touched: Vec<i64> = writes.iter().map(|w| w.run).collect();
        self.write(writes, now).await?;
        for id in touched {
            self.finish_run_if_done(id, now).await?;
        }
        Ok(())
    }

    /// The result a try that was stopped on `request` ends with, given what
    /// its executor reported.
    pub(super) fn stopped_result(
        request: &StopRequest,
        reported: &Result<TaskOutput, TaskError>,
    ) -> Result<TaskOutput, TaskError> {
        match request.to {
            TaskState::Success => match reported {
                Ok(out) => Ok(out.clone()),
                Err(_) => Ok(TaskOutput {
                    value: serde_json::Value::Null,
                    follow: None,
                }),
            },
            TaskState::Skipped => Err(TaskError::skip(&request.reason)),
            _ => Err(TaskError::stopped(&request.reason)),
        }
    }
}
