//! Alerts and background readers: the alerts outbox (written before an
//! alert is sent, deduplicated by a unique key, claimed with a lease), the
//! named cursors of readers that follow the store (the alert detector, log
//! shipping), and the queries they read with.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use goflow_core::Alert;
use serde::{Deserialize, Serialize};

use crate::conn::{per_backend, transaction, transaction_if, AnyConnection};
use crate::model::{convert, int, micros, parse, time, DbLogLine, DbRun, DbTaskTry};
use crate::schema::{alerts, cursors, dag_runs, task_logs, task_tries};
use crate::{LogLine, Result, RunRow, Store, StoreError, TaskTryRow};

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// Where an alert stands in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Waiting to be sent (first time, or again after a failed attempt).
    Pending,
    /// Claimed by a sender, whose lease runs until `lease_until`.
    Sending,
    /// Delivered.
    Sent,
    /// Given up on: permanent error, or out of attempts.
    Failed,
}

impl AlertStatus {
    /// The name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Sending => "sending",
            AlertStatus::Sent => "sent",
            AlertStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An alert status name that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert status '{0}', expected pending, sending, sent or failed")]
pub struct UnknownAlertStatus(pub String);

impl FromStr for AlertStatus {
    type Err = UnknownAlertStatus;
    fn from_str(s: &str) -> Result<Self, UnknownAlertStatus> {
        match s {
            "pending" => Ok(AlertStatus::Pending),
            "sending" => Ok(AlertStatus::Sending),
            "sent" => Ok(AlertStatus::Sent),
            "failed" => Ok(AlertStatus::Failed),
            _ => Err(UnknownAlertStatus(s.to_owned())),
        }
    }
}

/// An alert to record for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlert {
    /// The channel it goes to (`webhook`, `slack`, `email`).
    pub channel: String,
    /// The alert; its [`Alert::dedupe_key`] makes it unique per channel.
    pub alert: Alert,
}

/// An alert in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    /// Surrogate id.
    pub id: i64,
    /// What makes the event unique (with the channel).
    pub dedupe_key: String,
    /// The channel.
    pub channel: String,
    /// The alert.
    pub alert: Alert,
    /// Where it stands.
    pub status: AlertStatus,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When it may be attempted (again).
    pub next_attempt_date: DateTime<Utc>,
    /// The sender holding it, while `sending`.
    pub lease_owner: Option<String>,
    /// Until when the sender holds it; after that another may take it.
    pub lease_until: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was recorded.
    pub created_date: DateTime<Utc>,
    /// When it was delivered.
    pub sent_date: Option<DateTime<Utc>>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
}

/// The outcome of one delivery attempt, for
/// [`Store::record_alert_delivery`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertDelivery {
    /// Delivered.
    Sent,
    /// Failed; try again at `at`.
    Retry {
        /// When to try again.
        at: DateTime<Utc>,
        /// Why it failed.
        error: String,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
}

/// A finished task try with what identifies its run, as read by
/// [`Store::finished_tries_after`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedTry {
    /// The try's row id: increasing, a reader's cursor.
    pub id: i64,
    /// The run's run id.
    pub run_id: String,
    /// The run's logical date.
    pub execution_date: DateTime<Utc>,
    /// The try.
    pub task_try: TaskTryRow,
}

/// A log line with its DAG and run ids, as read by [`Store::logs_after`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedLogLine {
    /// The DAG.
    pub dag_id: String,
    /// The run's run id.
    pub run_id: String,
    /// The line.
    pub line: LogLine,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = alerts)]
struct DbAlert {
    id: i64,
    dedupe_key: String,
    channel: String,
    payload: String,
    status: String,
    attempts: i32,
    next_attempt_date: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    last_error: Option<String>,
    created_date: i64,
    sent_date: Option<i64>,
    last_updated_date: i64,
}

#[derive(Insertable)]
#[diesel(table_name = alerts)]
struct DbNewAlert<'a> {
    dedupe_key: String,
    channel: &'a str,
    kind: &'static str,
    dag_id: &'a str,
    run_id: Option<&'a str>,
    task_id: Option<&'a str>,
    try_number: Option<i32>,
    payload: String,
    status: &'static str,
    attempts: i32,
    next_attempt_date: i64,
    created_date: i64,
    last_updated_date: i64,
}

const T: &str = "alerts";

fn opt_time(column: &'static str, v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(|v| time(T, column, v)).transpose()
}

impl TryFrom<DbAlert> for AlertRow {
    type Error = StoreError;
    fn try_from(a: DbAlert) -> Result<Self> {
        Ok(AlertRow {
            alert: serde_json::from_str(&a.payload)
                .map_err(|e| StoreError::corrupt(T, "payload", &a.payload, e))?,
            status: parse(T, "status", &a.status)?,
            attempts: u32::try_from(a.attempts)
                .map_err(|e| StoreError::corrupt(T, "attempts", a.attempts, e))?,
            next_attempt_date: time(T, "next_attempt_date", a.next_attempt_date)?,
            lease_until: opt_time("lease_until", a.lease_until)?,
            created_date: time(T, "created_date", a.created_date)?,
            sent_date: opt_time("sent_date", a.sent_date)?,
            last_updated_date: time(T, "last_updated_date", a.last_updated_date)?,
            id: a.id,
            dedupe_key: a.dedupe_key,
            channel: a.channel,
            lease_owner: a.lease_owner,
            last_error: a.last_error,
        })
    }
}

fn insert_alerts(conn: &mut AnyConnection, new: &[NewAlert], now: i64) -> Result<usize> {
    let mut inserted = 0;
    for n in new {
        let a = &n.alert;
        let row = DbNewAlert {
            dedupe_key: a.dedupe_key(),
            channel: &n.channel,
            kind: a.kind.as_str(),
            dag_id: &a.dag_id,
            run_id: a.run_id.as_deref(),
            task_id: a.task_id.as_deref(),
            try_number: a.try_number.map(|t| int("try number", t)).transpose()?,
            payload: serde_json::to_string(a).map_err(|e| StoreError::InvalidInput {
                what: "alert",
                value: e.to_string(),
                reason: "cannot be serialized",
            })?,
            status: AlertStatus::Pending.as_str(),
            attempts: 0,
            next_attempt_date: now,
            created_date: now,
            last_updated_date: now,
        };
        // One row at a time: `ON CONFLICT DO NOTHING` reports exactly which
        // were new, on both backends.
        inserted += per_backend!(&mut *conn, c => diesel::insert_into(alerts::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    Ok(inserted)
}

fn read_cursor(conn: &mut AnyConnection, name: &str) -> Result<Option<i64>> {
    Ok(cursors::table
        .find(name)
        .select(cursors::value)
        .first(conn)
        .optional()?)
}

/// Moves cursor `name` from `expected` (`None`: it must not exist) to
/// `value`; `false` if it was elsewhere.
fn cas_cursor(
    conn: &mut AnyConnection,
    name: &str,
    expected: Option<i64>,
    value: i64,
    now: i64,
) -> Result<bool> {
    match expected {
        Some(old) => {
            let n = diesel::update(cursors::table.find(name).filter(cursors::value.eq(old)))
                .set((cursors::value.eq(value), cursors::last_updated_date.eq(now)))
                .execute(conn)?;
            Ok(n == 1)
        }
        None => {
            let n = per_backend!(&mut *conn, c => diesel::insert_into(cursors::table)
                .values((
                    cursors::name.eq(name),
                    cursors::value.eq(value),
                    cursors::last_updated_date.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(c))?;
            Ok(n == 1)
        }
    }
}

/// `(run_id, logical date)` of the runs `ids`, and their DAG.
fn run_names(
    conn: &mut AnyConnection,
    ids: Vec<i64>,
) -> Result<HashMap<i64, (String, String, i64)>> {
    let rows: Vec<(i64, String, String, i64)> = dag_runs::table
        .filter(dag_runs::id.eq_any(ids))
        .select((
            dag_runs::id,
            dag_runs::dag_id,
            dag_runs::run_id,
            dag_runs::data_interval_start,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, dag, run, start)| (id, (dag, run, start)))
        .collect())
}

// ---------------------------------------------------------------------------
// Store methods
// ---------------------------------------------------------------------------

impl Store {
    /// Records alerts as `pending` in the outbox, in one transaction. An
    /// alert whose dedupe key is already recorded for its channel is left
    /// out: the same event is never recorded (nor sent) twice. Returns how
    /// many were new.
    pub async fn enqueue_alerts(&self, new: Vec<NewAlert>, now: DateTime<Utc>) -> Result<usize> {
        if new.is_empty() {
            return Ok(0);
        }
        self.run("enqueue_alerts", move |conn| {
            transaction(conn, |c| insert_alerts(c, &new, micros(now)))
        })
        .await
    }

    /// Like [`Store::enqueue_alerts`], and moves cursor `name` from
    /// `expected` (`None`: it must not exist yet) to `value` in the same
    /// transaction. If the cursor was elsewhere (another process read the
    /// same rows first), nothing is written and the result is `None`.
    pub async fn enqueue_alerts_at_cursor(
        &self,
        new: Vec<NewAlert>,
        name: &str,
        expected: Option<i64>,
        value: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>> {
        let name = name.to_owned();
        self.run("enqueue_alerts", move |conn| {
            transaction_if(conn, |c| {
                let now = micros(now);
                if !cas_cursor(c, &name, expected, value, now)? {
                    return Ok(None);
                }
                insert_alerts(c, &new, now).map(Some)
            })
        })
        .await
    }

    /// Claims up to `limit` alerts to send, oldest first, for `owner`
    /// until `now + lease`: pending ones that are due, and ones whose
    /// previous sender's lease ran out (it died mid-send). Two senders
    /// never hold the same alert: PostgreSQL locks the rows with `FOR
    /// UPDATE SKIP LOCKED`, SQLite takes the write lock up front.
    pub async fn claim_alerts(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertRow>> {
        let owner = owner.to_owned();
        self.run("claim_alerts", move |conn| {
            transaction(conn, |c| {
                let now_us = micros(now);
                let until = micros(
                    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
                );
                let q = alerts::table
                    .filter(
                        alerts::status
                            .eq(AlertStatus::Pending.as_str())
                            .and(alerts::next_attempt_date.le(now_us))
                            .or(alerts::status
                                .eq(AlertStatus::Sending.as_str())
                                .and(alerts::lease_until.lt(now_us))),
                    )
                    .order(alerts::id)
                    .limit(i64::from(limit))
                    .select(alerts::id);
                let ids: Vec<i64> = match &mut *c {
                    #[cfg(feature = "postgres")]
                    AnyConnection::Postgres(pc) => q.for_update().skip_locked().load(pc)?,
                    #[cfg(feature = "sqlite")]
                    AnyConnection::Sqlite(sc) => q.load(sc)?,
                };
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                diesel::update(alerts::table.filter(alerts::id.eq_any(&ids)))
                    .set((
                        alerts::status.eq(AlertStatus::Sending.as_str()),
                        alerts::lease_owner.eq(&owner),
                        alerts::lease_until.eq(until),
                        alerts::last_updated_date.eq(now_us),
                    ))
                    .execute(c)?;
                convert(
                    alerts::table
                        .filter(alerts::id.eq_any(&ids))
                        .order(alerts::id)
                        .select(DbAlert::as_select())
                        .load(c)?,
                )
            })
        })
        .await
    }

    /// Records the outcome of an attempt to deliver alert `id`, if `owner`
    /// still holds it; returns whether it did. Every outcome counts one
    /// attempt.
    pub async fn record_alert_delivery(
        &self,
        id: i64,
        owner: &str,
        delivery: AlertDelivery,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let owner = owner.to_owned();
        self.run("record_alert_delivery", move |conn| {
            let now = micros(now);
            let target = alerts::table
                .find(id)
                .filter(alerts::status.eq(AlertStatus::Sending.as_str()))
                .filter(alerts::lease_owner.eq(&owner));
            let (status, next, error, sent) = match delivery {
                AlertDelivery::Sent => (AlertStatus::Sent, None, None, Some(now)),
                AlertDelivery::Retry { at, error } => {
                    (AlertStatus::Pending, Some(micros(at)), Some(error), None)
                }
                AlertDelivery::Failed { error } => (AlertStatus::Failed, None, Some(error), None),
            };
            let n = diesel::update(target)
                .set((
                    alerts::status.eq(status.as_str()),
                    alerts::attempts.eq(alerts::attempts + 1),
                    alerts::lease_owner.eq(None::<String>),
                    alerts::lease_until.eq(None::<i64>),
                    alerts::last_error.eq(error),
                    alerts::sent_date.eq(sent),
                    alerts::last_updated_date.eq(now),
                ))
                .execute(conn)?;
            if n == 1 {
                if let Some(next) = next {
                    diesel::update(alerts::table.find(id))
                        .set(alerts::next_attempt_date.eq(next))
                        .execute(conn)?;
                }
            }
            Ok(n == 1)
        })
        .await
    }

    /// The latest `limit` alerts, of one DAG or of all, newest first: what
    /// was sent, what is pending, and what failed and why.
    pub async fn list_alerts(&self, dag_id: Option<&str>, limit: i64) -> Result<Vec<AlertRow>> {
        let dag_id = dag_id.map(str::to_owned);
        self.run("list_alerts", move |conn| {
            let mut q = alerts::table
                .order(alerts::id.desc())
                .limit(limit)
                .select(DbAlert::as_select())
                .into_boxed();
            if let Some(d) = dag_id {
                q = q.filter(alerts::dag_id.eq(d));
            }
            convert(q.load(conn)?)
        })
        .await
    }

    /// Whether an alert of `kind` (e.g. `run_failed`) was recorded for run
    /// `run_id` of `dag_id`, on any channel.
    pub async fn alert_recorded(&self, kind: &str, dag_id: &str, run_id: &str) -> Result<bool> {
        let (kind, dag_id, run_id) = (kind.to_owned(), dag_id.to_owned(), run_id.to_owned());
        self.run("alert_recorded", move |conn| {
            let n: i64 = alerts::table
                .filter(alerts::kind.eq(&kind))
                .filter(alerts::dag_id.eq(&dag_id))
                .filter(alerts::run_id.eq(&run_id))
                .count()
                .get_result(conn)?;
            Ok(n > 0)
        })
        .await
    }

    /// The value of cursor `name`, if set.
    pub async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        let name = name.to_owned();
        self.run("cursor", move |conn| read_cursor(conn, &name))
            .await
    }

    /// Moves cursor `name` from `expected` (`None`: it must not exist yet)
    /// to `value`; returns `false`, changing nothing, if it was elsewhere.
    pub async fn set_cursor(
        &self,
        name: &str,
        expected: Option<i64>,
        value: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let name = name.to_owned();
        self.run("set_cursor", move |conn| {
            transaction(conn, |c| cas_cursor(c, &name, expected, value, micros(now)))
        })
        .await
    }

    /// Up to `limit` finished task tries with a row id above `after_id`,
    /// in id order, with their runs' ids and logical dates.
    pub async fn finished_tries_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<FinishedTry>> {
        self.run("finished_tries_after", move |conn| {
            let rows: Vec<(i64, DbTaskTry)> = task_tries::table
                .filter(task_tries::id.gt(after_id))
                .order(task_tries::id)
                .limit(limit)
                .select((task_tries::id, DbTaskTry::as_select()))
                .load(conn)?;
            let runs: HashSet<i64> = rows.iter().map(|(_, t)| t.dag_run_id).collect();
            let names = run_names(conn, runs.into_iter().collect())?;
            rows.into_iter()
                .map(|(id, t)| {
                    // A run deleted meanwhile still gets its try reported.
                    let (run_id, start) = names
                        .get(&t.dag_run_id)
                        .map(|(_, r, s)| (r.clone(), *s))
                        .unwrap_or_else(|| (t.dag_run_id.to_string(), 0));
                    Ok(FinishedTry {
                        id,
                        run_id,
                        execution_date: time("dag_runs", "data_interval_start", start)?,
                        task_try: t.try_into()?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Up to `limit` finished runs that ended after `(end_date, id)` in
    /// `(end_date, id)` order: a reader pages through them with the last
    /// one's `(end_date, id)`.
    pub async fn runs_ended_after(
        &self,
        end_date: DateTime<Utc>,
        id: i64,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        self.run("runs_ended_after", move |conn| {
            let end = micros(end_date);
            convert(
                dag_runs::table
                    .filter(
                        dag_runs::end_date
                            .gt(end)
                            .or(dag_runs::end_date.eq(end).and(dag_runs::id.gt(id))),
                    )
                    .order((dag_runs::end_date.asc(), dag_runs::id.asc()))
                    .limit(limit)
                    .select(DbRun::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    /// The finished run of `dag_id` with the latest logical date before
    /// `before`: the one a recovery is judged against.
    pub async fn previous_finished_run(
        &self,
        dag_id: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<RunRow>> {
        let dag_id = dag_id.to_owned();
        self.run("previous_finished_run", move |conn| {
            dag_runs::table
                .filter(dag_runs::dag_id.eq(&dag_id))
                .filter(dag_runs::execution_date.lt(micros(before)))
                .filter(dag_runs::end_date.is_not_null())
                .order((dag_runs::execution_date.desc(), dag_runs::id.desc()))
                .select(DbRun::as_select())
                .first(conn)
                .optional()?
                .map(RunRow::try_from)
                .transpose()
        })
        .await
    }

    /// The runs of `dag_id` whose logical date is in `[from, to]`, oldest
    /// first.
    pub async fn runs_between(
        &self,
        dag_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RunRow>> {
        let dag_id = dag_id.to_owned();
        self.run("runs_between", move |conn| {
            convert(
                dag_runs::table
                    .filter(dag_runs::dag_id.eq(&dag_id))
                    .filter(dag_runs::execution_date.ge(micros(from)))
                    .filter(dag_runs::execution_date.le(micros(to)))
                    .order((dag_runs::execution_date.asc(), dag_runs::id.asc()))
                    .select(DbRun::as_select())
                    .load(conn)?,
            )
        })
        .await
    }

    /// The last `n` log lines of one try of a task instance, in order.
    pub async fn tail_logs(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        n: i64,
    ) -> Result<Vec<LogLine>> {
        let task_id = task_id.to_owned();
        let try_number = int("try number", try_number)?;
        self.run("tail_logs", move |conn| {
            let mut lines: Vec<LogLine> = convert(
                task_logs::table
                    .filter(task_logs::dag_run_id.eq(run))
                    .filter(task_logs::task_id.eq(&task_id))
                    .filter(task_logs::try_number.eq(try_number))
                    .order(task_logs::id.desc())
                    .limit(n)
                    .select(DbLogLine::as_select())
                    .load(conn)?,
            )?;
            lines.reverse();
            Ok(lines)
        })
        .await
    }

    /// Up to `limit` log lines of any task with an id above `after_id`, in
    /// id order, with their DAG and run ids: what a log shipper reads.
    pub async fn logs_after(&self, after_id: i64, limit: i64) -> Result<Vec<ShippedLogLine>> {
        self.run("logs_after", move |conn| {
            let lines: Vec<LogLine> = convert(
                task_logs::table
                    .filter(task_logs::id.gt(after_id))
                    .order(task_logs::id)
                    .limit(limit)
                    .select(DbLogLine::as_select())
                    .load(conn)?,
            )?;
            let runs: HashSet<i64> = lines.iter().map(|l| l.run).collect();
            let names = run_names(conn, runs.into_iter().collect())?;
            Ok(lines
                .into_iter()
                .map(|line| {
                    let (dag_id, run_id) = names
                        .get(&line.run)
                        .map(|(d, r, _)| (d.clone(), r.clone()))
                        .unwrap_or_else(|| (String::new(), line.run.to_string()));
                    ShippedLogLine {
                        dag_id,
                        run_id,
                        line,
                    }
                })
                .collect())
        })
        .await
    }
}
