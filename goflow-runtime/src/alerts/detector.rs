//! The detector: reads what happened from the store and records the
//! alerts it calls for in the outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use goflow_core::alerts::{
    dag_url, intervals_ending_in, is_recovery, last_lines, missed_schedule, past_deadline, run_url,
    MissedRun,
};
use goflow_core::{Alert, AlertKind, AlertSettings, RunState, Schedule, TaskState};
use goflow_store::{FinishedTry, NewAlert, RunRow, Store, StoreError};
use tokio::sync::{watch, Notify};

use super::cursor::GapCursor;
use super::{AlertConfig, TryObserver};
use crate::Registry;

/// Cursor of the last task try read (row id).
const TRIES: &str = "alerts.task_tries";
/// Cursor of the latest run end read (micros).
const RUNS: &str = "alerts.runs";
/// Rows read per query.
const PAGE: i64 = 200;
/// Most intervals of one DAG checked per pass.
const MAX_INTERVALS: usize = 500;
/// A try that ended less than this ago is read on the next pass: its last
/// log lines may still be on their way to the store.
const SETTLE: chrono::Duration = chrono::Duration::milliseconds(500);

/// Cursor of the intervals of `dag` already checked for missed schedules
/// (the end of the last one, micros).
fn missed_cursor(dag: &str) -> String {
    format!("alerts.missed.{dag}")
}

fn chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub(super) struct Detector {
    store: Store,
    registry: Arc<Registry>,
    config: AlertConfig,
    channels: Vec<String>,
    observers: Vec<Arc<dyn TryObserver>>,
    tries: GapCursor,
    /// Dedupe keys this process recorded lately, not to insert them again
    /// at each re-read of recent runs.
    recent: HashMap<String, DateTime<Utc>>,
}

impl Detector {
    pub(super) fn new(
        store: Store,
        registry: Arc<Registry>,
        config: AlertConfig,
        channels: Vec<String>,
        observers: Vec<Arc<dyn TryObserver>>,
    ) -> Self {
        // SQLite gives ids in commit order: no gap to wait for.
        let gap = match store.backend() {
            goflow_store::Backend::Sqlite => std::time::Duration::ZERO,
            _ => config.gap_timeout,
        };
        Detector {
            store,
            registry,
            config,
            channels,
            observers,
            tries: GapCursor::new(gap),
            recent: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            match self.pass(Utc::now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(alerts = n, "recorded alerts");
                    wake.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "alert detection failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// One pass over everything; returns how many outbox rows it wrote.
    pub(super) async fn pass(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let horizon = now - chrono(self.config.run_lookback) * 2;
        self.recent.retain(|_, at| *at > horizon);
        let mut n = self.tries(now).await?;
        n += self.runs(now).await?;
        n += self.deadlines(now).await?;
        n += self.missed(now).await?;
        Ok(n)
    }

    fn settings(&self, dag_id: &str) -> AlertSettings {
        self.registry
            .get(dag_id)
            .map(|d| d.alerts().clone())
            .unwrap_or_default()
    }

    fn too_old(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        at < now - chrono(self.config.max_age)
    }

    /// The outbox rows of `alert`: one per channel the DAG uses.
    fn records(&self, alert: Alert, settings: &AlertSettings) -> Vec<NewAlert> {
        self.channels
            .iter()
            .filter(|c| settings.uses_channel(c))
            .map(|c| NewAlert {
                channel: c.clone(),
                alert: alert.clone(),
            })
            .collect()
    }

    /// Records alerts whose events may be seen again (re-read windows):
    /// those recorded lately by this process are left out before the
    /// store's own deduplication.
    async fn record_again(
        &mut self,
        alerts: Vec<(Alert, AlertSettings)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut rows = Vec::new();
        let mut keys = Vec::new();
        for (alert, settings) in alerts {
            let key = alert.dedupe_key();
            if self.recent.contains_key(&key) {
                continue;
            }
            keys.push(key);
            rows.extend(self.records(alert, &settings));
        }
        let n = self.store.enqueue_alerts(rows, now).await?;
        for k in keys {
            self.recent.insert(k, now);
        }
        Ok(n)
    }

    // -----------------------------------------------------------------------
    // Task tries: failures after the last try, tries to be retried.
    // -----------------------------------------------------------------------

    async fn tries(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let pos = self.store.cursor(TRIES).await?;
            let rows = self
                .store
                .finished_tries_after(pos.unwrap_or(0), PAGE)
                .await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let settled = rows
                .iter()
                .position(|r| r.task_try.end_date.is_some_and(|e| e > now - SETTLE))
                .unwrap_or(rows.len());
            let n = self
                .tries
                .consumable(pos.unwrap_or(0), &ids[..settled], Instant::now());
            if n == 0 {
                return Ok(total);
            }
            let rows = &rows[..n];
            let mut new = Vec::new();
            for r in rows {
                if let Some((alert, settings)) = self.try_alert(r, now).await? {
                    new.extend(self.records(alert, &settings));
                }
            }
            let next = rows[n - 1].id;
            match self
                .store
                .enqueue_alerts_at_cursor(new, TRIES, pos, next, now)
                .await?
            {
                // Another replica read these first and recorded them.
                None => return Ok(total),
                Some(k) => total += k,
            }
            for r in rows {
                for o in &self.observers {
                    o.observe_try(r);
                }
            }
            if rows.len() < PAGE as usize {
                return Ok(total);
            }
        }
    }

    async fn try_alert(
        &self,
        r: &FinishedTry,
        now: DateTime<Utc>,
    ) -> Result<Option<(Alert, AlertSettings)>, StoreError> {
        let t = &r.task_try;
        let kind = match t.state {
            TaskState::Failed => AlertKind::TaskFailed,
            TaskState::UpForRetry => AlertKind::TaskRetry,
            _ => return Ok(None),
        };
        let settings = self.settings(&t.dag_id);
        let at = t.end_date.unwrap_or(now);
        if !settings.wants(kind) || self.too_old(at, now) {
            return Ok(None);
        }
        let mut a = Alert::new(kind, &t.dag_id, at);
        a.run_id = Some(r.run_id.clone());
        a.execution_date = Some(r.execution_date);
        a.task_id = Some(t.task_id.clone());
        a.try_number = Some(t.try_number);
        a.state = Some(t.state.to_string());
        a.error = t
            .error
            .as_deref()
            .map(|e| last_lines(e, self.config.error_lines));
        a.log_tail = self
            .store
            .tail_logs(
                t.run,
                &t.task_id,
                t.try_number,
                self.config.log_tail_lines as i64,
            )
            .await?
            .into_iter()
            .map(|l| l.line)
            .collect();
        a.url = Some(run_url(&self.config.base_url, &t.dag_id, &r.run_id));
        Ok(Some((a, settings)))
    }

    // -----------------------------------------------------------------------
    // Finished runs: failures, recoveries, late finishes.
    // -----------------------------------------------------------------------

    async fn runs(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let pos = self.store.cursor(RUNS).await?;
        let from = match pos {
            Some(p) => from_micros(p) - chrono(self.config.run_lookback),
            None => now - chrono(self.config.max_age),
        };
        let (mut after, mut after_id) = (from, 0);
        let mut newest = pos;
        let mut total = 0;
        loop {
            let page = self.store.runs_ended_after(after, after_id, PAGE).await?;
            let mut alerts = Vec::new();
            for run in &page {
                let Some(end) = run.end_date else { continue };
                newest = newest.max(Some(end.timestamp_micros()));
                if !self.too_old(end, now) {
                    alerts.extend(self.run_alerts(run, end, now).await?);
                }
            }
            total += self.record_again(alerts, now).await?;
            match page.last() {
                Some(last) if page.len() == PAGE as usize => {
                    after = last.end_date.unwrap_or(after);
                    after_id = last.id;
                }
                _ => break,
            }
        }
        if let Some(newest) = newest.filter(|n| Some(*n) != pos) {
            // Only a bound on re-reading: losing the race changes nothing.
            self.store.set_cursor(RUNS, pos, newest, now).await?;
        }
        Ok(total)
    }

    fn run_alert(&self, kind: AlertKind, run: &RunRow, at: DateTime<Utc>) -> Alert {
        let mut a = Alert::new(kind, &run.dag_id, at);
        a.run_id = Some(run.run_id.clone());
        a.execution_date = Some(run.execution_date());
        a.state = Some(run.state.to_string());
        a.url = Some(run_url(&self.config.base_url, &run.dag_id, &run.run_id));
        a
    }

    async fn run_alerts(
        &self,
        run: &RunRow,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Alert, AlertSettings)>, StoreError> {
        let settings = self.settings(&run.dag_id);
        let mut out = Vec::new();
        if run.state == RunState::Failed && settings.wants(AlertKind::RunFailed) {
            let mut a = self.run_alert(AlertKind::RunFailed, run, end);
            a.error = self.failed_tasks(run.id).await?;
            out.push((a, settings.clone()));
        }
        if run.state == RunState::Success && settings.wants(AlertKind::Recovery) {
            let previous = self
                .store
                .previous_finished_run(&run.dag_id, run.execution_date())
                .await?
                .map(|r| r.state);
            let failed_before = previous != Some(RunState::Failed)
                && self
                    .store
                    .alert_recorded(AlertKind::RunFailed.as_str(), &run.dag_id, &run.run_id)
                    .await?;
            if is_recovery(run.state, previous, failed_before) {
                out.push((
                    self.run_alert(AlertKind::Recovery, run, end),
                    settings.clone(),
                ));
            }
        }
        if let Some(d) = settings.deadline.filter(|_| settings.enabled) {
            if let Some(due) = past_deadline(&run.data_interval, d, Some(end), now) {
                let mut a = self.run_alert(AlertKind::DeadlineMissed, run, due);
                a.deadline = Some(due);
                out.push((a, settings));
            }
        }
        Ok(out)
    }

    /// `task: error` lines of a run's failed tasks, for a run failure.
    async fn failed_tasks(&self, run: i64) -> Result<Option<String>, StoreError> {
        let lines: Vec<String> = self
            .store
            .task_instances(run)
            .await?
            .into_iter()
            .filter(|t| matches!(t.state, TaskState::Failed | TaskState::UpstreamFailed))
            .map(|t| match t.last_error {
                Some(e) => format!("{}: {}: {}", t.task_id, t.state, last_lines(&e, 1)),
                None => format!("{}: {}", t.task_id, t.state),
            })
            .collect();
        Ok((!lines.is_empty()).then(|| last_lines(&lines.join("\n"), self.config.error_lines)))
    }

    // -----------------------------------------------------------------------
    // Active runs past their deadline.
    // -----------------------------------------------------------------------

    async fn deadlines(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut alerts = Vec::new();
        for run in self.store.active_runs(None).await? {
            let settings = self.settings(&run.dag_id);
            let Some(d) = settings.deadline.filter(|_| settings.enabled) else {
                continue;
            };
            if let Some(due) = past_deadline(&run.data_interval, d, None, now) {
                let mut a = self.run_alert(AlertKind::DeadlineMissed, &run, due);
                a.deadline = Some(due);
                alerts.push((a, settings));
            }
        }
        self.record_again(alerts, now).await
    }

    // -----------------------------------------------------------------------
    // Missed schedules.
    // -----------------------------------------------------------------------

    async fn missed(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let rows: HashMap<String, goflow_store::DagRow> = self
            .store
            .list_dags()
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut total = 0;
        let dags: Vec<_> = self.registry.dags().cloned().collect();
        for dag in dags {
            let settings = dag.alerts();
            if !settings.wants(AlertKind::MissedSchedule)
                || matches!(dag.schedule(), Schedule::Manual)
            {
                continue;
            }
            let id = dag.id().as_str();
            // Not synced yet: the scheduler has not seen it.
            let Some(row) = rows.get(id) else { continue };
            let name = missed_cursor(id);
            let pos = self.store.cursor(&name).await?;
            let grace = settings.missed_grace;
            let horizon = now - chrono(grace);
            let after = match pos {
                Some(p) => from_micros(p),
                // From when the DAG was deployed: what came before was
                // never scheduled by goflow.
                None => row.created_date.max(now - chrono(self.config.max_age)),
            };
            if horizon <= after {
                continue;
            }
            let intervals = intervals_ending_in(&dag, after, horizon, MAX_INTERVALS);
            let (Some(first), Some(last)) = (intervals.first(), intervals.last()) else {
                // Nothing ended since: nothing to write either.
                continue;
            };
            let until = if intervals.len() == MAX_INTERVALS {
                last.end
            } else {
                horizon
            };
            if row.is_paused {
                // A paused DAG misses nothing.
                self.store
                    .set_cursor(&name, pos, until.timestamp_micros(), now)
                    .await?;
                continue;
            }
            let starts: HashMap<DateTime<Utc>, Option<DateTime<Utc>>> = self
                .store
                .runs_between(id, first.start, last.start)
                .await?
                .into_iter()
                .map(|r| (r.execution_date(), r.start_date))
                .collect();
            let mut missed = Vec::new();
            for i in &intervals {
                if let Some(reason) = missed_schedule(i, starts.get(&i.start).copied(), grace) {
                    missed.push(MissedRun {
                        interval: *i,
                        reason,
                    });
                }
            }
            let new = match missed.first() {
                None => Vec::new(),
                Some(first) => {
                    let at = first.interval.end + chrono(grace);
                    let mut a = Alert::new(AlertKind::MissedSchedule, id, at);
                    a.url = Some(dag_url(&self.config.base_url, id));
                    a.missed = missed;
                    self.records(a, settings)
                }
            };
            if let Some(k) = self
                .store
                .enqueue_alerts_at_cursor(new, &name, pos, until.timestamp_micros(), now)
                .await?
            {
                total += k;
            }
        }
        Ok(total)
    }
}
