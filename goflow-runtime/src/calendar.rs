//! Which days a DAG ran and how those runs ended: the calendar behind
//! `dags runs --days N`, the DAG page and `/api/v1/dags/{dag}/calendar`.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use goflow_core::{Dag, RunState};
use goflow_store::{RunRow, Store, StoreError};
use serde::{Deserialize, Serialize};

/// One day of a DAG's calendar, by the logical dates of its runs in the
/// DAG's time zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Day {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Runs whose logical date falls on it.
    pub runs: u64,
    /// Of those, succeeded.
    pub success: u64,
    /// Failed.
    pub failed: u64,
    /// Running.
    pub running: u64,
    /// Queued.
    pub queued: u64,
}

/// The last `days` days (today included, in the DAG's time zone), oldest
/// first, with the DAG's runs counted by state.
pub async fn last_days(
    store: &Store,
    dag: &Dag,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Day>, StoreError> {
    let today = now.with_timezone(&dag.tz()).date_naive();
    let first = today
        .checked_sub_days(Days::new(u64::from(days.max(1)) - 1))
        .unwrap_or(NaiveDate::MIN);
    let mut runs = Vec::new();
    // Latest logical date first: stop at the first run before the window.
    const PAGE: i64 = 500;
    let mut offset = 0;
    'pages: loop {
        let page = store.list_runs(dag.id().as_str(), PAGE, offset).await?;
        let len = page.len() as i64;
        for run in page {
            if local_day(dag, &run) < first {
                break 'pages;
            }
            runs.push(run);
        }
        if len < PAGE {
            break;
        }
        offset += len;
    }
    Ok(per_day(dag, &runs, first, today))
}

/// The day of a run's logical date in the DAG's time zone.
fn local_day(dag: &Dag, run: &RunRow) -> NaiveDate {
    run.execution_date().with_timezone(&dag.tz()).date_naive()
}

/// Every day from `first` to `last` with its runs counted by state; runs
/// outside those days are left out.
fn per_day(dag: &Dag, runs: &[RunRow], first: NaiveDate, last: NaiveDate) -> Vec<Day> {
    let mut days: BTreeMap<NaiveDate, Day> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| {
            let day = Day {
                day: d.to_string(),
                ..Day::default()
            };
            (d, day)
        })
        .collect();
    for run in runs {
        let Some(day) = days.get_mut(&local_day(dag, run)) else {
            continue;
        };
        day.runs += 1;
        match run.state {
            RunState::Success => day.success += 1,
            RunState::Failed => day.failed += 1,
            RunState::Running => day.running += 1,
            RunState::Queued => day.queued += 1,
        }
    }
    days.into_values().collect()
}
