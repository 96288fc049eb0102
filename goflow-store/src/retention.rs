//! Retention: deleting the finished runs that ended before a date, with
//! everything that belongs to them (task instances, tries, outputs, logs
//! and the alerts sent about them), in bounded batches.
//!
//! ```no_run
//! # async fn demo(store: goflow_store::Store) -> goflow_store::Result<()> {
//! use goflow_store::CleanOptions;
//!
//! let before = chrono::Utc::now() - chrono::Duration::days(90);
//! let report = store
//!     .clean(&CleanOptions::new(before), |so_far| {
//!         println!("{} runs so far", so_far.total().runs)
//!     })
//!     .await?;
//! for (dag, counts) in &report.dags {
//!     println!("{dag}: {} runs, {} log lines", counts.runs, counts.task_logs);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::AddAssign;

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel::IntoSql;

use crate::conn::{transaction, AnyConnection};
use crate::model::micros;
use crate::schema::{alerts, dag_runs, task_instances as ti, task_logs, task_outputs, task_tries};
use crate::{Result, Store};

/// Runs per batch unless told otherwise: one transaction each, so that a
/// clean of years of history never holds the database for long.
pub const DEFAULT_CLEAN_BATCH: u32 = 500;

/// What [`Store::clean`] deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanOptions {
    /// Runs that ended before this instant are deleted (a finished run
    /// without an end date counts from its last update).
    pub before: DateTime<Utc>,
    /// Only the runs of this DAG; every DAG when `None`.
    pub dag_id: Option<String>,
    /// Count what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Runs per batch (one transaction each); at least 1.
    pub batch_size: u32,
}

impl CleanOptions {
    /// The finished runs of every DAG that ended before `before`, deleted
    /// [`DEFAULT_CLEAN_BATCH`] at a time.
    pub fn new(before: DateTime<Utc>) -> Self {
        CleanOptions {
            before,
            dag_id: None,
            dry_run: false,
            batch_size: DEFAULT_CLEAN_BATCH,
        }
    }
}

/// How many rows of each kind a clean deleted (or, dry, would delete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanCounts {
    /// DAG runs.
    pub runs: u64,
    /// Task instances.
    pub task_instances: u64,
    /// Task tries (the history of every try).
    pub task_tries: u64,
    /// Task outputs.
    pub task_outputs: u64,
    /// Task log lines.
    pub task_logs: u64,
    /// Alert records about the runs.
    pub alerts: u64,
}

impl AddAssign for CleanCounts {
    fn add_assign(&mut self, other: Self) {
        self.runs += other.runs;
        self.task_instances += other.task_instances;
        self.task_tries += other.task_tries;
        self.task_outputs += other.task_outputs;
        self.task_logs += other.task_logs;
        self.alerts += other.alerts;
    }
}

/// What a clean deleted (or, dry, would delete), by DAG.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// The counts of each DAG with at least one run deleted.
    pub dags: BTreeMap<String, CleanCounts>,
    /// The batches (transactions) done so far.
    pub batches: u32,
    /// Whether nothing was deleted: the counts are what would be.
    pub dry_run: bool,
}

impl CleanReport {
    /// The counts of every DAG added up.
    pub fn total(&self) -> CleanCounts {
        let mut total = CleanCounts::default();
        for counts in self.dags.values() {
            total += *counts;
        }
        total
    }
}

/// The finished states ([`goflow_core::RunState::Success`] and `Failed`): the
/// only ones a clean deletes.
const FINISHED: [&str; 2] = ["success", "failed"];
/// Task states an executor holds.
const ACTIVE: [&str; 2] = ["queued", "running"];

impl Store {
    /// Deletes the finished (success or failed) runs that ended before
    /// `options.before` (of `options.dag_id` only, if given) with their
    /// task instances, tries, outputs, log lines and alert records, in
    /// batches of `options.batch_size` runs, one transaction each; calls
    /// `progress` with the report so far after each batch.
    ///
    /// Queued and running runs are never deleted, nor a finished run that
    /// still has a queued or running task instance. With
    /// `options.dry_run` the same batches are counted and nothing is
    /// deleted.
    pub async fn clean(
        &self,
        options: &CleanOptions,
        mut progress: impl FnMut(&CleanReport),
    ) -> Result<CleanReport> {
        let mut report = CleanReport {
            dry_run: options.dry_run,
            ..CleanReport::default()
        };
        let mut after = 0;
        loop {
            let opts = options.clone();
            let batch = self
                .run("clean", move |conn| {
                    if opts.dry_run {
                        clean_batch(conn, &opts, after, false)
                    } else {
                        transaction(conn, |c| clean_batch(c, &opts, after, true))
                    }
                })
                .await?;
            let Some((last, counts)) = batch else {
                break;
            };
            after = last;
            if counts.is_empty() {
                // Every run of the batch was skipped (still active).
                continue;
            }
            report.batches += 1;
            for (dag, c) in counts {
                *report.dags.entry(dag).or_default() += c;
            }
            progress(&report);
        }
        if !options.dry_run && report.batches > 0 {
            let total = report.total();
            tracing::info!(
                runs = total.runs,
                task_instances = total.task_instances,
                log_lines = total.task_logs,
                before = %options.before,
                "cleaned old runs"
            );
        }
        Ok(report)
    }
}

/// Counts (and, if `delete`, deletes) the next batch of runs to clean
/// after the run id `after`: returns the last run id looked at and the
/// counts by DAG, or `None` when no run is left.
fn clean_batch(
    conn: &mut AnyConnection,
    options: &CleanOptions,
    after: i64,
    delete: bool,
) -> Result<Option<(i64, BTreeMap<String, CleanCounts>)>> {
    let runs = candidates(conn, options, after, delete)?;
    let Some(last) = runs.iter().map(|(id, _, _)| *id).max() else {
        return Ok(None);
    };
    let ids: Vec<i64> = runs.iter().map(|(id, _, _)| *id).collect();
    // A finished run whose task an executor still holds is left alone.
    let busy: HashSet<i64> = ti::table
        .filter(ti::dag_run_id.eq_any(&ids))
        .filter(ti::state.eq_any(ACTIVE))
        .select(ti::dag_run_id)
        .distinct()
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    let runs: Vec<(i64, String, String)> = runs
        .into_iter()
        .filter(|(id, _, _)| !busy.contains(id))
        .collect();
    let ids: Vec<i64> = runs.iter().map(|(id, _, _)| *id).collect();
    let dag_of: HashMap<i64, &str> = runs
        .iter()
        .map(|(id, dag, _)| (*id, dag.as_str()))
        .collect();
    let mut counts: BTreeMap<String, CleanCounts> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(Some((last, counts)));
    }
    for (_, dag, _) in &runs {
        counts.entry(dag.clone()).or_default().runs += 1;
    }

    // Rows per run, added to their DAG's counts.
    let mut add = |rows: Vec<(i64, i64)>, field: fn(&mut CleanCounts) -> &mut u64| {
        for (run, n) in rows {
            if let Some(dag) = dag_of.get(&run) {
                *field(counts.entry((*dag).to_owned()).or_default()) += n.unsigned_abs();
            }
        }
    };
    add(
        ti::table
            .filter(ti::dag_run_id.eq_any(&ids))
            .group_by(ti::dag_run_id)
            .select((ti::dag_run_id, count_star()))
            .load(conn)?,
        |c| &mut c.task_instances,
    );
    add(
        task_tries::table
            .filter(task_tries::dag_run_id.eq_any(&ids))
            .group_by(task_tries::dag_run_id)
            .select((task_tries::dag_run_id, count_star()))
            .load(conn)?,
        |c| &mut c.task_tries,
    );
    add(
        task_outputs::table
            .filter(task_outputs::dag_run_id.eq_any(&ids))
            .group_by(task_outputs::dag_run_id)
            .select((task_outputs::dag_run_id, count_star()))
            .load(conn)?,
        |c| &mut c.task_outputs,
    );
    add(
        task_logs::table
            .filter(task_logs::dag_run_id.eq_any(&ids))
            .group_by(task_logs::dag_run_id)
            .select((task_logs::dag_run_id, count_star()))
            .load(conn)?,
        |c| &mut c.task_logs,
    );

    // Alerts name their run by DAG and run id (no foreign key).
    let mut run_ids_by_dag: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, dag, run_id) in &runs {
        run_ids_by_dag.entry(dag).or_default().push(run_id);
    }
    for (dag, run_ids) in &run_ids_by_dag {
        let of_runs = || {
            alerts::table
                .filter(alerts::dag_id.eq(*dag))
                .filter(alerts::run_id.eq_any(run_ids))
        };
        let n: i64 = of_runs().count().get_result(conn)?;
        counts.entry((*dag).to_owned()).or_default().alerts += n.unsigned_abs();
        if delete && n > 0 {
            diesel::delete(of_runs()).execute(conn)?;
        }
    }

    if delete {
        // Children first: the foreign keys cascade too, but SQLite only
        // when the connection enabled them.
        diesel::delete(task_logs::table.filter(task_logs::dag_run_id.eq_any(&ids)))
            .execute(conn)?;
        diesel::delete(task_outputs::table.filter(task_outputs::dag_run_id.eq_any(&ids)))
            .execute(conn)?;
        diesel::delete(task_tries::table.filter(task_tries::dag_run_id.eq_any(&ids)))
            .execute(conn)?;
        diesel::delete(ti::table.filter(ti::dag_run_id.eq_any(&ids))).execute(conn)?;
        diesel::delete(
            dag_runs::table
                .filter(dag_runs::id.eq_any(&ids))
                .filter(dag_runs::status.eq_any(FINISHED)),
        )
        .execute(conn)?;
    }
    Ok(Some((last, counts)))
}

/// `(id, dag_id, run_id)` of the next finished runs to clean after the run
/// id `after`, by id. With `lock`, on PostgreSQL, the rows are locked (and
/// rows another transaction holds, such as a scheduler's, are skipped).
fn candidates(
    conn: &mut AnyConnection,
    options: &CleanOptions,
    after: i64,
    lock: bool,
) -> QueryResult<Vec<(i64, String, String)>> {
    let before = micros(options.before);
    let every_dag = options.dag_id.is_none();
    let dag = options.dag_id.clone().unwrap_or_default();
    let query = dag_runs::table
        .filter(dag_runs::id.gt(after))
        .filter(dag_runs::status.eq_any(FINISHED))
        .filter(
            dag_runs::end_date.lt(before).or(dag_runs::end_date
                .is_null()
                .and(dag_runs::last_updated_date.lt(before))),
        )
        .filter(dag_runs::dag_id.eq(dag).or(every_dag.into_sql::<Bool>()))
        .order(dag_runs::id)
        .limit(i64::from(options.batch_size.max(1)))
        .select((dag_runs::id, dag_runs::dag_id, dag_runs::run_id));
    #[cfg(feature = "postgres")]
    if lock {
        if let AnyConnection::Postgres(c) = conn {
            return query.for_update().skip_locked().load(c);
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = lock;
    query.load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_are_the_models() {
        assert_eq!(
            FINISHED,
            [
                goflow_core::RunState::Success.as_str(),
                goflow_core::RunState::Failed.as_str()
            ]
        );
        assert_eq!(
            ACTIVE,
            [
                goflow_core::TaskState::Queued.as_str(),
                goflow_core::TaskState::Running.as_str()
            ]
        );
    }
}
