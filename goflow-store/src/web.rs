//! What the web UI and the REST API ask of the store beyond the
//! scheduler's calls: pages of DAGs with their latest runs (one query for a
//! whole page, never one per DAG), counts by state, marking task instances
//! success or failed by hand, the server's settings (its generated API
//! token) and UI login sessions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use goflow_core::{RunState, TaskState};

use crate::conn::{per_backend, transaction};
use crate::model::{convert, micros, parse, time, DbDag, DbRun, DbTaskInstance};
use crate::schema::{
    dag_runs, dags, task_instances as ti, task_outputs, web_sessions, web_settings,
};
use crate::store::find_run;
use crate::{DagRow, Result, RunRow, Store, StoreError, TaskInstanceRow};

/// Which DAGs a page of the DAG list shows, for [`Store::dag_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DagQuery {
    /// Only DAGs whose id or description contains this text (case
    /// insensitive).
    pub text: Option<String>,
    /// Only DAGs with this tag.
    pub tag: Option<String>,
    /// Only paused (`Some(true)`) or active (`Some(false)`) DAGs.
    pub paused: Option<bool>,
    /// Most DAGs on the page.
    pub limit: i64,
    /// DAGs skipped before the page (by id).
    pub offset: i64,
}

/// A page of DAGs, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagPage {
    /// The DAGs on this page.
    pub dags: Vec<DagRow>,
    /// How many DAGs match the query, on every page.
    pub total: u64,
}

/// What [`Store::mark_tasks`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkOutcome {
    /// The task instances have their new state; the run is in `run_state`
    /// (recomputed if it was finished).
    Marked {
        /// The run's state afterwards.
        run_state: RunState,
    },
    /// The run is queued or running: its scheduler owns its task states,
    /// so nothing was changed.
    RunActive {
        /// The run's state.
        state: RunState,
    },
}

/// A UI login session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    /// The secret the session cookie carries.
    pub id: String,
    /// The token every form of the session must carry (CSRF protection).
    pub csrf_token: String,
    /// Who logged in.
    pub username: String,
    /// When.
    pub created_date: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_date: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = web_sessions)]
struct DbSession {
    id: String,
    csrf_token: String,
    username: String,
    created_date: i64,
    expires_date: i64,
}

/// A run row read by raw SQL (the latest runs of several DAGs).
#[derive(QueryableByName)]
#[diesel(table_name = dag_runs)]
struct DbRunByName {
    id: i64,
    dag_id: String,
    run_id: String,
    status: String,
    run_type: String,
    execution_date: i64,
    data_interval_start: i64,
    data_interval_end: i64,
    conf: String,
    dag_version: i32,
    start_date: Option<i64>,
    end_date: Option<i64>,
    last_updated_date: i64,
    created_date: i64,
    claimed_by: Option<String>,
}

impl From<DbRunByName> for DbRun {
    fn from(r: DbRunByName) -> Self {
        DbRun {
            id: r.id,
            dag_id: r.dag_id,
            run_id: r.run_id,
            status: r.status,
            run_type: r.run_type,
            execution_date: r.execution_date,
            data_interval_start: r.data_interval_start,
            data_interval_end: r.data_interval_end,
            conf: r.conf,
            dag_version: r.dag_version,
            start_date: r.start_date,
            end_date: r.end_date,
            last_updated_date: r.last_updated_date,
            created_date: r.created_date,
            claimed_by: r.claimed_by,
        }
    }
}

diesel::define_sql_function! {
    /// SQL `lower`, for case-insensitive matching on both backends.
    fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// `text` as a `LIKE` pattern matching it anywhere, wildcards escaped
/// with `\`.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Most DAGs per statement of [`Store::latest_runs_of_dags`] (SQLite
/// allows 500 terms in a compound `SELECT`).
const DAGS_PER_STATEMENT: usize = 200;

const RUN_COLUMNS: &str = "id, dag_id, run_id, status, run_type, execution_date, \
     data_interval_start, data_interval_end, conf, dag_version, start_date, end_date, \
     last_updated_date, created_date, claimed_by";

impl Store {
    /// A page of DAGs matching `query`, by id, and how many match in all.
    pub async fn dag_page(&self, query: &DagQuery) -> Result<DagPage> {
        let query = query.clone();
        self.run("dag_page", move |conn| {
            let filtered = || {
                let mut q = dags::table.into_boxed();
                if let Some(text) = query.text.as_deref().filter(|t| !t.is_empty()) {
                    let pattern = contains_pattern(&text.to_lowercase());
                    q = q.filter(
                        dags::id
                            .like(pattern.clone())
                            .escape('\\')
                            .or(lower(dags::description).like(pattern).escape('\\')),
                    );
                }
                if let Some(tag) = query.tag.as_deref().filter(|t| !t.is_empty()) {
                    // `tags` holds a JSON array of strings: match one element.
                    let quoted = serde_json::Value::from(tag).to_string();
                    q = q.filter(dags::tags.like(contains_pattern(&quoted)).escape('\\'));
                }
                if let Some(paused) = query.paused {
                    q = q.filter(dags::is_paused.eq(paused));
                }
                q
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let rows = filtered()
                .order(dags::id)
                .limit(query.limit.max(0))
                .offset(query.offset.max(0))
                .select(DbDag::as_select())
                .load(conn)?;
            Ok(DagPage {
                dags: convert(rows)?,
                total: total.unsigned_abs(),
            })
        })
        .await
    }

    /// Every tag any DAG has, sorted.
    pub async fn dag_tags(&self) -> Result<Vec<String>> {
        self.run("dag_tags", |conn| {
            let all: Vec<String> = dags::table.select(dags::tags).distinct().load(conn)?;
            let mut tags = Vec::new();
            for json in all {
                let list: Vec<String> = serde_json::from_str(&json)
                    .map_err(|e| StoreError::corrupt("dags", "tags", &json, e))?;
                tags.extend(list);
            }
            tags.sort();
            tags.dedup();
            Ok(tags)
        })
        .await
    }

    /// The latest `per_dag` runs (by logical date) of each DAG of
    /// `dag_ids`, latest first, in one statement per 200 DAGs: each DAG's
    /// runs are read from the `(dag_id, execution_date)` index, so the cost
    /// does not grow with a DAG's history. DAGs without runs are absent.
    pub async fn latest_runs_of_dags(
        &self,
        dag_ids: &[String],
        per_dag: u32,
    ) -> Result<HashMap<String, Vec<RunRow>>> {
        let dag_ids = dag_ids.to_vec();
        self.run("latest_runs_of_dags", move |conn| {
            let mut out: HashMap<String, Vec<RunRow>> = HashMap::new();
            if per_dag == 0 {
                return Ok(out);
            }
            for chunk in dag_ids.chunks(DAGS_PER_STATEMENT) {
                let rows: Vec<DbRunByName> = per_backend!(&mut *conn, c => {
                    let sql = latest_runs_sql(chunk.len(), per_dag, placeholder_style(&*c));
                    let mut q = diesel::sql_query(sql).into_boxed();
                    for id in chunk {
                        q = q.bind::<diesel::sql_types::Text, _>(id.clone());
                    }
                    q.load(c)
                })?;
                for r in rows {
                    let run = RunRow::try_from(DbRun::from(r))?;
                    out.entry(run.dag_id.clone()).or_default().push(run);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The runs with these surrogate ids (unknown ids are skipped), by id.
    pub async fn runs_by_ids(&self, runs: &[i64]) -> Result<Vec<RunRow>> {
        let runs = runs.to_vec();
        self.run("runs_by_ids", move |conn| {
            let mut out = Vec::new();
            for chunk in runs.chunks(1000) {
                out.extend(convert::<_, RunRow>(
                    dag_runs::table
                        .filter(dag_runs::id.eq_any(chunk))
                        .order(dag_runs::id)
                        .select(DbRun::as_select())
                        .load(conn)?,
                )?);
            }
            Ok(out)
        })
        .await
    }

    /// The task instances of several runs (in the order they were
    /// created), in one query.
    pub async fn task_instances_of_runs(&self, runs: &[i64]) -> Result<Vec<TaskInstanceRow>> {
        let runs = runs.to_vec();
        self.run("task_instances_of_runs", move |conn| {
            let mut out = Vec::new();
            for chunk in runs.chunks(1000) {
                out.extend(convert::<_, TaskInstanceRow>(
                    ti::table
                        .filter(ti::dag_run_id.eq_any(chunk))
                        .order(ti::id)
                        .select(DbTaskInstance::as_select())
                        .load(conn)?,
                )?);
            }
            Ok(out)
        })
        .await
    }

    /// How many runs, of every DAG, are in each state (states with none
    /// are absent).
    pub async fn count_all_runs_by_state(&self) -> Result<HashMap<RunState, u64>> {
        self.run("count_all_runs_by_state", |conn| {
            let rows: Vec<(String, i64)> = dag_runs::table
                .group_by(dag_runs::status)
                .select((dag_runs::status, count_star()))
                .load(conn)?;
            rows.into_iter()
                .map(|(s, n)| Ok((parse("dag_runs", "status", &s)?, n.unsigned_abs())))
                .collect()
        })
        .await
    }

    /// How many task instances, of every run, are in each state (states
    /// with none are absent).
    pub async fn count_task_instances_by_state(&self) -> Result<HashMap<TaskState, u64>> {
        self.run("count_task_instances_by_state", |conn| {
            let rows: Vec<(String, i64)> = ti::table
                .group_by(ti::state)
                .select((ti::state, count_star()))
                .load(conn)?;
            rows.into_iter()
                .map(|(s, n)| Ok((parse("task_instances", "state", &s)?, n.unsigned_abs())))
                .collect()
        })
        .await
    }

    /// Checks that the database answers (a pooled connection runs
    /// `SELECT 1`).
    pub async fn ping(&self) -> Result<()> {
        self.run("ping", |conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }

    /// Sets task instances of a finished run to `state` (`success` or
    /// `failed`) by hand, whatever their state was, in one transaction;
    /// then, the run's state follows its tasks: `failed` if any task failed
    /// or is `upstream_failed`, else `success`, or `queued` again if a task
    /// is not finished (so that a scheduler takes it up).
    ///
    /// Marking `failed` drops the task's output; marking `success` keeps
    /// the output it has, if any (downstream tasks that take its output
    /// fail without one). No try is recorded.
    ///
    /// Refused, with nothing changed: a queued or running run
    /// ([`MarkOutcome::RunActive`]: its scheduler owns its task states);
    /// queued or running task instances ([`StoreError::TasksActive`]);
    /// unknown ones ([`StoreError::TaskNotFound`]); another `state`
    /// ([`StoreError::InvalidInput`]).
    pub async fn mark_tasks(
        &self,
        run: i64,
        task_ids: &[String],
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<MarkOutcome> {
        if !matches!(state, TaskState::Success | TaskState::Failed) {
            return Err(StoreError::InvalidInput {
                what: "state",
                value: state.to_string(),
                reason: "a task instance can be marked success or failed",
            });
        }
        let task_ids = task_ids.to_vec();
        self.run("mark_tasks", move |conn| {
            transaction(conn, |c| mark_tx(c, run, &task_ids, state, micros(now)))
        })
        .await
    }

    /// The server setting `key`, if set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.run("setting", move |conn| {
            Ok(web_settings::table
                .find(&key)
                .select(web_settings::value)
                .first(conn)
                .optional()?)
        })
        .await
    }

    /// Sets `key` to `value` unless it is set already; returns the value
    /// stored and whether it is the one given. Of several processes doing
    /// this at once, one value wins and all of them return it.
    pub async fn init_setting(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, bool)> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run("init_setting", move |conn| {
            let inserted = per_backend!(&mut *conn, c => diesel::insert_into(web_settings::table)
                .values((
                    web_settings::key.eq(&key),
                    web_settings::value.eq(&value),
                    web_settings::created_date.eq(micros(now)),
                ))
                .on_conflict(web_settings::key)
                .do_nothing()
                .execute(c))?;
            if inserted == 1 {
                return Ok((value, true));
            }
            let stored = web_settings::table
                .find(&key)
                .select(web_settings::value)
                .first(conn)
                .optional()?;
            stored
                .map(|v| (v, false))
                .ok_or_else(|| StoreError::InvalidInput {
                    what: "setting",
                    value: key.clone(),
                    reason: "was inserted concurrently and then deleted",
                })
        })
        .await
    }

    /// Records a new login session.
    pub async fn create_session(&self, session: &WebSession) -> Result<()> {
        let row = DbSession {
            id: session.id.clone(),
            csrf_token: session.csrf_token.clone(),
            username: session.username.clone(),
            created_date: micros(session.created_date),
            expires_date: micros(session.expires_date),
        };
        self.run("create_session", move |conn| {
            diesel::insert_into(web_sessions::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    /// The session `id`, if it exists and has not expired at `now`.
    pub async fn session(&self, id: &str, now: DateTime<Utc>) -> Result<Option<WebSession>> {
        let id = id.to_owned();
        self.run("session", move |conn| {
            let row: Option<DbSession> = web_sessions::table
                .find(&id)
                .filter(web_sessions::expires_date.gt(micros(now)))
                .select(DbSession::as_select())
                .first(conn)
                .optional()?;
            row.map(|r| {
                Ok(WebSession {
                    created_date: time("web_sessions", "created_date", r.created_date)?,
                    expires_date: time("web_sessions", "expires_date", r.expires_date)?,
                    id: r.id,
                    csrf_token: r.csrf_token,
                    username: r.username,
                })
            })
            .transpose()
        })
        .await
    }

    /// Ends the session `id` (log out); returns whether it existed.
    pub async fn delete_session(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run("delete_session", move |conn| {
            Ok(diesel::delete(web_sessions::table.find(&id)).execute(conn)? == 1)
        })
        .await
    }

    /// Deletes the sessions expired at `now`; returns how many.
    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<usize> {
        self.run("delete_expired_sessions", move |conn| {
            Ok(diesel::delete(
                web_sessions::table.filter(web_sessions::expires_date.le(micros(now))),
            )
            .execute(conn)?)
        })
        .await
    }
}

/// How a backend writes bind parameters in raw SQL.
#[derive(Clone, Copy)]
enum Placeholders {
    /// `?`
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Question,
    /// `$1`, `$2`...
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Dollar,
}

trait PlaceholderStyle {
    fn style(&self) -> Placeholders;
}

#[cfg(feature = "sqlite")]
impl PlaceholderStyle for diesel::SqliteConnection {
    fn style(&self) -> Placeholders {
        Placeholders::Question
    }
}

#[cfg(feature = "postgres")]
impl PlaceholderStyle for diesel::PgConnection {
    fn style(&self) -> Placeholders {
        Placeholders::Dollar
    }
}

fn placeholder_style(c: &impl PlaceholderStyle) -> Placeholders {
    c.style()
}

/// One `UNION ALL` member per DAG, each reading its latest runs from the
/// `(dag_id, execution_date)` index with its own `LIMIT`.
fn latest_runs_sql(dags: usize, per_dag: u32, style: Placeholders) -> String {
    (0..dags)
        .map(|i| {
            let p = match style {
                Placeholders::Question => "?".to_owned(),
                Placeholders::Dollar => format!("${}", i + 1),
            };
            format!(
                "SELECT * FROM (SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = {p} \
                 ORDER BY execution_date DESC LIMIT {per_dag}) AS r{i}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn mark_tx(
    conn: &mut crate::conn::AnyConnection,
    run: i64,
    task_ids: &[String],
    state: TaskState,
    now: i64,
) -> Result<MarkOutcome> {
    let run_row = find_run(conn, run)?;
    let run_state: RunState = parse("dag_runs", "status", &run_row.status)?;
    if !run_state.is_terminal() {
        return Ok(MarkOutcome::RunActive { state: run_state });
    }
    crate::store::check_idle(conn, run, task_ids)?;
    diesel::update(
        ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq_any(task_ids)),
    )
    .set((
        ti::state.eq(state.as_str()),
        ti::next_retry_date.eq(None::<i64>),
        ti::claimed_by.eq(None::<String>),
        ti::last_updated_date.eq(now),
    ))
    .execute(conn)?;
    diesel::update(
        ti::table
            .filter(ti::dag_run_id.eq(run))
            .filter(ti::task_id.eq_any(task_ids))
            .filter(ti::end_date.is_null()),
    )
    .set(ti::end_date.eq(now))
    .execute(conn)?;
    if state == TaskState::Failed {
        diesel::delete(
            task_outputs::table
                .filter(task_outputs::dag_run_id.eq(run))
                .filter(task_outputs::task_id.eq_any(task_ids)),
        )
        .execute(conn)?;
    }
    let states: Vec<String> = ti::table
        .filter(ti::dag_run_id.eq(run))
        .select(ti::state)
        .load(conn)?;
    let mut unfinished = false;
    let mut failed = false;
    for s in &states {
        let s: TaskState = parse("task_instances", "state", s)?;
        unfinished |= !s.is_terminal();
        failed |= matches!(s, TaskState::Failed | TaskState::UpstreamFailed);
    }
    let new_state = if unfinished {
        RunState::Queued
    } else if failed {
        RunState::Failed
    } else {
        RunState::Success
    };
    if new_state != run_state {
        let end = if new_state.is_terminal() {
            run_row.end_date.or(Some(now))
        } else {
            None
        };
        diesel::update(dag_runs::table.find(run))
            .set((
                dag_runs::status.eq(new_state.as_str()),
                dag_runs::end_date.eq(end),
                dag_runs::claimed_by.eq(None::<String>),
                dag_runs::last_updated_date.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(MarkOutcome::Marked {
        run_state: new_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }

    #[test]
    fn one_member_per_dag_with_backend_placeholders() {
        let pg = latest_runs_sql(2, 5, Placeholders::Dollar);
        assert!(
            pg.contains("dag_id = $1") && pg.contains("dag_id = $2"),
            "{pg}"
        );
        assert_eq!(pg.matches(" UNION ALL ").count(), 1);
        assert!(pg.contains("LIMIT 5) AS r1"), "{pg}");
        let lite = latest_runs_sql(1, 3, Placeholders::Question);
        assert!(lite.contains("dag_id = ? ORDER BY"), "{lite}");
    }
}
