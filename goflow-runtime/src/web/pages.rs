//! The UI: server-rendered pages and the forms they post. Every change
//! goes through [`super::service`], as the API's do.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::Utc;
use goflow_core::{RunState, TaskState};
use goflow_store::{DagQuery, WebSession};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{safe_next, CsrfForm, UiForm};
use super::error::PageError;
use super::service::{self, ClearSpec};
use super::svg;
use super::views::{
    self, badge, bytes, csrf_field, duration_ms, layout, legend, opt_time, raw, seg, time, PageCtx,
    Urls,
};
use super::{WebError, WebState};

/// DAGs per page of the list.
const DAGS_PER_PAGE: i64 = 50;
/// Runs in a DAG's grid.
const GRID_RUNS: i64 = 25;
/// Run marks per DAG in the list.
const RECENT_MARKS: u32 = 10;
/// Log lines rendered with the page (the rest follows from the stream).
const LOG_PAGE: i64 = 5000;
/// Tries in a task's performance charts.
const HISTORY: i64 = 50;

/// The UI's routes, relative to the base path.
pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route(
            "/",
            get(|State(state): State<WebState>| async move { Redirect::to(&state.urls().dags()) }),
        )
        .route("/dags", get(dag_list))
        .route("/dags/{dag_id}", get(dag_page))
        .route("/dags/{dag_id}/trigger", post(trigger))
        .route("/dags/{dag_id}/pause", post(pause))
        .route("/dags/{dag_id}/runs/{run_id}", get(run_page))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(clear_run))
        .route("/dags/{dag_id}/runs/{run_id}/stop", post(stop_run))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(clear_task),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(mark_task),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
            get(logs_page),
        )
        .route("/dags/{dag_id}/tasks/{task_id}", get(performance_page))
        .route("/health", get(health_page))
        .route("/logout", post(super::auth::logout))
}

/// The fallback under a base path: a 404 page.
pub(crate) async fn not_found() -> Response {
    PageError(WebError::NotFound("no such page".to_owned())).into_response()
}

/// The 404 page of a server of its own (see [`super::standalone`]), its
/// links under `base`.
pub(crate) fn not_found_at(base: &str) -> Response {
    let e = WebError::NotFound("no such page".to_owned());
    let status = e.status();
    (
        status,
        views::error_page(Urls::new(base), status, &e.public_message()),
    )
        .into_response()
}

/// `Path` answering bad paths with the error page.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(PageError))]
struct PagePath<T>(T);

/// `Query` answering bad queries with the error page.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(PageError))]
struct PageQuery<T>(T);

fn ctx(s: &WebSession) -> PageCtx<'_> {
    PageCtx {
        csrf: &s.csrf_token,
        user: &s.username,
    }
}

fn number(v: Option<&str>) -> Option<i64> {
    v.and_then(|s| s.trim().parse().ok())
}

macro_rules! csrf_form {
    ($($t:ty),*) => {$(
        impl CsrfForm for $t {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}

// ---------------------------------------------------------------------------
// The DAG list
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    tag: Option<String>,
    page: Option<String>,
}

async fn dag_list(
    State(state): State<WebState>,
    Extension(session): Extension<WebSession>,
    PageQuery(q): PageQuery<ListQuery>,
) -> Result<Html<String>, PageError> {
    let page = number(q.page.as_deref()).unwrap_or(1).max(1);
    let text = q.q.clone().filter(|s| !s.trim().is_empty());
    let tag = q.tag.clone().filter(|s| !s.trim().is_empty());
    let query = DagQuery {
        text: text.clone(),
        tag: tag.clone(),
        paused: None,
        limit: DAGS_PER_PAGE,
        offset: (page - 1).saturating_mul(DAGS_PER_PAGE),
    };
    let u = state.urls();
    let (dags, total) = service::dag_list(&state, query, RECENT_MARKS).await?;
    let tags = state.store().dag_tags().await?;
    let pages = (total as i64 + DAGS_PER_PAGE - 1) / DAGS_PER_PAGE;
    let link = |p: i64| {
        let mut parts = vec![format!("page={p}")];
        if let Some(t) = &text {
            parts.push(format!("q={}", views::encode_query(t)));
        }
        if let Some(t) = &tag {
            parts.push(format!("tag={}", views::encode_query(t)));
        }
        format!("{}?{}", u.dags(), parts.join("&"))
    };
    let here = link(page);
    let body = html! {
        h1 { "DAGs " span.count { (total) } }
        form.filters method="get" action=(u.dags()) {
            input type="search" name="q" placeholder="Filter by id or description" value=(text.as_deref().unwrap_or(""));
            select name="tag" {
                option value="" { "All tags" }
                @for t in &tags {
                    option value=(t) selected[tag.as_deref() == Some(t.as_str())] { (t) }
                }
            }
            button type="submit" { "Filter" }
            @if text.is_some() || tag.is_some() { a href=(u.dags()) { "Clear" } }
        }
        @if dags.is_empty() {
            p.empty { "No DAG matches." }
        } @else {
            table.dags {
                thead { tr { th.toggle-col { "" } th { "DAG" } th { "Schedule" } th { "Next run" } th { "Recent runs" } th { "Tags" } } }
                tbody {
                    @for d in &dags {
                        tr data-dag=(d.row.id) {
                            td {
                                form.toggle method="post" action={ (u.dag(&d.row.id)) "/pause" } {
                                    (csrf_field(&session.csrf_token))
                                    input type="hidden" name="paused" value=(if d.row.is_paused { "false" } else { "true" });
                                    input type="hidden" name="next" value=(here);
                                    @if d.row.is_paused {
                                        button.switch.off type="submit" title="Paused: click to unpause" { "paused" }
                                    } @else {
                                        button.switch.on type="submit" title="Active: click to pause" { "active" }
                                    }
                                }
                            }
                            td {
                                a.dag-link href=(u.dag(&d.row.id)) { (d.row.id) }
                                @if let Some(desc) = &d.row.description { div.desc { (desc) } }
                                @if d.dag.is_none() { div.desc.warn { "not declared by this binary" } }
                            }
                            td { code { (d.row.schedule) } }
                            td { (opt_time(d.next_run)) }
                            td.marks {
                                @for r in d.recent.iter().rev() {
                                    a class={ "mark st-" (r.state.as_str()) } href=(u.run(&r.dag_id, &r.run_id)) title={ (r.run_id) ": " (r.state) } {}
                                }
                            }
                            td { @for t in &d.row.tags { a.tag href=(u.tag(t)) { (t) } " " } }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if page > 1 { a href=(link(page - 1)) { "« Previous" } }
            span { "Page " (page) " of " (pages.max(1)) }
            @if page < pages { a href=(link(page + 1)) { "Next »" } }
        }
    };
    Ok(layout(u, Some(&ctx(&session)), "DAGs", body))
}

// ---------------------------------------------------------------------------
// A DAG
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct DagQueryParams {
    offset: Option<String>,
    run: Option<String>,
}

/// What the trigger form shows after a refused trigger.
struct TriggerState<'a> {
    conf: &'a str,
    logical_date: &'a str,
    error: Option<String>,
}

async fn dag_page(
    State(state): State<WebState>,
    Extension(session): Extension<WebSession>,
    PagePath(dag_id): PagePath<String>,
    PageQuery(q): PageQuery<DagQueryParams>,
) -> Result<Html<String>, PageError> {
    let offset = number(q.offset.as_deref()).unwrap_or(0).max(0);
    let trigger = TriggerState {
        conf: "{}",
        logical_date: "",
        error: None,
    };
    render_dag_page(
        &state,
        &session,
        &dag_id,
        offset,
        q.run.as_deref(),
        &trigger,
    )
    .await
}

/// Days shown in a DAG page's calendar (five weeks).
const CALENDAR_DAYS: u32 = 35;

/// A calendar day's colour: any failure shows, then work in flight, then
/// success; a day without runs is blank.
fn day_state(d: &crate::calendar::Day) -> &'static str {
    if d.failed > 0 {
        "failed"
    } else if d.running > 0 {
        "running"
    } else if d.queued > 0 {
        "queued"
    } else if d.success > 0 {
        "success"
    } else {
        "none"
    }
}

async fn render_dag_page(
    state: &WebState,
    session: &WebSession,
    dag_id: &str,
    offset: i64,
    selected_run: Option<&str>,
    trigger: &TriggerState<'_>,
) -> Result<Html<String>, PageError> {
    let u = state.urls();
    let row = service::dag_row(state, dag_id).await?;
    let dag = service::declared(state, dag_id);
    let grid = service::grid(state, dag_id, GRID_RUNS, offset).await?;
    let now = Utc::now();
    let graph_run = match selected_run {
        Some(r) => grid.runs.iter().find(|(run, _)| run.run_id == r),
        None => grid.runs.last(),
    };
    let graph_states: HashMap<String, TaskState> = graph_run
        .map(|(_, tis)| tis.iter().map(|(k, v)| (k.clone(), v.state)).collect())
        .unwrap_or_default();
    let graph = dag.as_ref().map(|d| {
        let run = graph_run.map(|(r, _)| r.run_id.clone());
        svg::graph(d, &graph_states, &|task| {
            Some(match &run {
                Some(r) => u.logs(dag_id, r, task),
                None => u.perf(dag_id, task),
            })
        })
    });
    let active = grid.runs.iter().any(|(r, _)| !r.state.is_terminal());
    let calendar = match &dag {
        Some(d) => crate::calendar::last_days(state.store(), d, CALENDAR_DAYS, now)
            .await
            .map_err(WebError::from)?,
        None => Vec::new(),
    };
    let source = dag.as_ref().and_then(|d| read_source(d.source_file()));
    // In the DAG's time zone, as its schedule is written.
    let next_runs: Vec<String> = dag
        .as_ref()
        .filter(|_| !row.is_paused)
        .map(|d| {
            service::next_runs(d, now, 5)
                .into_iter()
                .map(|t| {
                    t.with_timezone(&d.tz())
                        .format("%Y-%m-%d %H:%M %Z")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let body = html! {
        @if active { div #autorefresh data-seconds="3" {} }
        div.title-row {
            h1 { (row.id) }
            @if row.is_paused { (badge("paused")) } @else { (badge("active")) }
            form.inline method="post" action={ (u.dag(dag_id)) "/pause" } {
                (csrf_field(&session.csrf_token))
                input type="hidden" name="paused" value=(if row.is_paused { "false" } else { "true" });
                input type="hidden" name="next" value=(u.dag(dag_id));
                button #pause-toggle type="submit" { (if row.is_paused { "Unpause" } else { "Pause" }) }
            }
        }
        @if let Some(d) = &row.description { p.desc { (d) } }
        @if dag.is_none() { p.flash.warn { "This DAG is in the database but not declared by this binary: it can be looked at, not triggered." } }
        div.two-col {
            div.main-col {
                section {
                    h2 { "Runs × tasks" }
                    (legend())
                    (grid_table(u, dag_id, &grid))
                    nav.pager {
                        @if grid.runs.len() as i64 == GRID_RUNS { a href={ (u.dag(dag_id)) "?offset=" (offset + GRID_RUNS) } { "« Older runs" } }
                        @if offset > 0 { a href={ (u.dag(dag_id)) "?offset=" ((offset - GRID_RUNS).max(0)) } { "Newer runs »" } }
                    }
                }
                @if !calendar.is_empty() {
                    section #calendar {
                        h2 { "Days run" span.muted { " · last " (CALENDAR_DAYS) " days, by logical date" } }
                        div.calendar {
                            @for d in &calendar {
                                span class={ "cell st-" (day_state(d)) } data-day=(d.day) title={
                                    (d.day) ": " (d.runs) " run" @if d.runs != 1 { "s" }
                                    @if d.success > 0 { ", " (d.success) " success" }
                                    @if d.failed > 0 { ", " (d.failed) " failed" }
                                    @if d.running > 0 { ", " (d.running) " running" }
                                    @if d.queued > 0 { ", " (d.queued) " queued" }
                                } {}
                            }
                        }
                    }
                }
                @if let Some(g) = graph {
                    section {
                        h2 { "Graph" @if let Some((r, _)) = graph_run { span.muted { " · states of run " (r.run_id) } } }
                        div.graph-box { (raw(g)) }
                        p.muted { "Solid edges carry data, dashed ones order only; an edge has its upstream's colour. Pick a run with ◆ in the grid." }
                    }
                }
            }
            aside.side-col {
                @if dag.is_some() {
                    section.trigger {
                        h2 { "Trigger a run" }
                        @if let Some(e) = &trigger.error { p.flash.error #trigger-error { (e) } }
                        form #trigger-form method="post" action={ (u.dag(dag_id)) "/trigger" } {
                            (csrf_field(&session.csrf_token))
                            label for="conf" { "Configuration: a JSON object tasks read with " code { "ctx.param(..)" } }
                            textarea #conf name="conf" rows="3" spellcheck="false" data-json="object" { (trigger.conf) }
                            p.json-status #conf-status {}
                            label for="logical-date" { "Logical date (" (row.timezone) "; default now)" }
                            input #logical-date type="text" name="logical_date" placeholder="2026-01-01T06:00" value=(trigger.logical_date);
                            div { button #trigger type="submit" { "Trigger" } }
                        }
                    }
                }
                section.details {
                    dl {
                        dt { "Schedule" } dd { code { (row.schedule) } }
                        dt { "Next runs" } dd {
                            @if row.is_paused { "none while paused" }
                            @else if next_runs.is_empty() { "none scheduled" }
                            @else { @for t in &next_runs { div.next { (t) } } }
                        }
                        dt { "Source" } dd {
                            code { (row.file_path) @if let Some(d) = &dag { ":" (d.source_line()) } }
                            " (" (row.file_format) ")"
                        }
                        dt { "Version" } dd { (row.version) span.muted { " since " (time(row.last_updated_date)) } }
                        dt { "Fingerprint" } dd.muted { code { (row.fingerprint) } }
                        dt { "Limits" } dd { (row.max_active_runs) " runs, " (row.max_active_tasks) " tasks at once" }
                        @if let Some(d) = &dag { dt { "Catchup" } dd { (if d.catchup() { "yes" } else { "no" }) } }
                        @if let Some(ns) = &row.namespace { dt { "Namespace" } dd { (ns) } }
                        dt { "Tags" } dd { @for t in &row.tags { a.tag href=(u.tag(t)) { (t) } " " } }
                    }
                }
            }
        }
        @if let Some(src) = source {
            section {
                details.source {
                    summary { "Source: " (row.file_path) }
                    pre { code { (src) } }
                }
            }
        }
    };
    Ok(layout(u, Some(&ctx(session)), dag_id, body))
}

fn grid_table(u: Urls<'_>, dag_id: &str, grid: &service::Grid) -> Markup {
    html! {
        @if grid.runs.is_empty() {
            p.empty { "No runs yet." }
        } @else {
            div.grid-box {
                table.grid {
                    thead {
                        tr {
                            th.task-col { "Task" }
                            @for (r, _) in &grid.runs {
                                th {
                                    a class={ "runbar st-" (r.state.as_str()) } href=(u.run(dag_id, &r.run_id)) data-run=(r.run_id) data-state=(r.state.as_str()) title={ (r.run_id) ": " (r.state) } {}
                                    a.pick href={ (u.dag(dag_id)) "?run=" (views::encode_query(&r.run_id)) } title="show in the graph" { "◆" }
                                }
                            }
                        }
                    }
                    tbody {
                        @for task in &grid.tasks {
                            tr {
                                th.task-col { a href=(u.perf(dag_id, task)) title="performance over runs" { (task) } }
                                @for (r, tis) in &grid.runs {
                                    @let st = tis.get(task).map(|t| t.state);
                                    td {
                                        @if let Some(s) = st {
                                            a class={ "cell st-" (s.as_str()) } href=(u.logs(dag_id, &r.run_id, task)) data-run=(r.run_id) data-task=(task) data-state=(s.as_str()) title={ (task) " in " (r.run_id) ": " (s) } {}
                                        } @else {
                                            span.cell.st-none {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The DAG's source file, if this process can read it (run from the
/// project's directory) and it is not huge.
fn read_source(path: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 512 * 1024 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[derive(Deserialize)]
struct TriggerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    conf: String,
    #[serde(default)]
    logical_date: String,
}

#[derive(Deserialize)]
struct PauseForm {
    #[serde(default)]
    csrf: String,
    paused: String,
    next: Option<String>,
}

#[derive(Deserialize)]
struct ClearRunForm {
    #[serde(default)]
    csrf: String,
    only_failed: Option<String>,
}

#[derive(Deserialize)]
struct ClearTaskForm {
    #[serde(default)]
    csrf: String,
    downstream: Option<String>,
}

#[derive(Deserialize)]
struct MarkForm {
    #[serde(default)]
    csrf: String,
    state: String,
    downstream: Option<String>,
}

/// A form with nothing but its CSRF token (a button).
#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

csrf_form!(
    TriggerForm,
    PauseForm,
    ClearRunForm,
    ClearTaskForm,
    MarkForm,
    CsrfOnly
);

fn checked(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| matches!(v, "on" | "true" | "1" | "yes"))
}

async fn trigger(
    State(state): State<WebState>,
    PagePath(dag_id): PagePath<String>,
    UiForm(form, session): UiForm<TriggerForm>,
) -> Result<Response, PageError> {
    let conf = match service::parse_conf(&form.conf) {
        Ok(c) => c,
        Err(e) => return refuse_trigger(&state, &session, &dag_id, &form, e).await,
    };
    let u = state.urls();
    let date = Some(form.logical_date.as_str()).filter(|d| !d.trim().is_empty());
    match service::trigger(&state, &dag_id, conf, date, &session.username).await {
        Ok(run) => Ok(Redirect::to(&u.run(&dag_id, &run.run_id)).into_response()),
        Err(e @ (WebError::BadRequest(_) | WebError::Conflict(_))) => {
            refuse_trigger(&state, &session, &dag_id, &form, e).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The DAG page again, with the trigger form as it was posted and why it
/// was refused, under the error's status.
async fn refuse_trigger(
    state: &WebState,
    session: &WebSession,
    dag_id: &str,
    form: &TriggerForm,
    e: WebError,
) -> Result<Response, PageError> {
    let trigger = TriggerState {
        conf: &form.conf,
        logical_date: &form.logical_date,
        error: Some(e.public_message()),
    };
    let page = render_dag_page(state, session, dag_id, 0, None, &trigger).await?;
    Ok((e.status(), page).into_response())
}

async fn pause(
    State(state): State<WebState>,
    PagePath(dag_id): PagePath<String>,
    UiForm(form, session): UiForm<PauseForm>,
) -> Result<Response, PageError> {
    let paused = match form.paused.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(WebError::BadRequest(format!(
                "invalid paused '{other}': expected true or false"
            ))
            .into())
        }
    };
    service::set_paused(&state, &dag_id, paused, &session.username).await?;
    let u = state.urls();
    let next = safe_next(form.next.as_deref(), u.base(), &u.dag(&dag_id));
    Ok(Redirect::to(&next).into_response())
}

// ---------------------------------------------------------------------------
// A run
// ---------------------------------------------------------------------------

async fn run_page(
    State(state): State<WebState>,
    Extension(session): Extension<WebSession>,
    PagePath((dag_id, run_id)): PagePath<(String, String)>,
) -> Result<Html<String>, PageError> {
    let u = state.urls();
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let (instances, tries) = tokio::try_join!(
        state.store().task_instances(run.id),
        state.store().task_tries(run.id, None)
    )?;
    let dag = service::declared(&state, &dag_id);
    let order = service::task_order(dag.as_deref(), &instances);
    let now = Utc::now();
    let mut bars: Vec<svg::Bar> = tries
        .iter()
        .filter_map(|t| {
            Some(svg::Bar {
                task: t.task_id.clone(),
                try_number: t.try_number,
                state: t.state,
                queued: t.queued_date,
                start: t.start_date?,
                end: t.end_date.unwrap_or(now),
            })
        })
        .collect();
    for ti in instances.iter().filter(|t| t.state.is_active()) {
        if let Some(start) = ti.start_date.or(ti.queued_date) {
            bars.push(svg::Bar {
                task: ti.task_id.clone(),
                try_number: ti.try_number,
                state: ti.state,
                queued: ti.queued_date,
                start,
                end: now,
            });
        }
    }
    let gantt = svg::gantt(&order, &bars, &|task| u.logs(&dag_id, &run.run_id, task));
    let by_task: HashMap<&str, &goflow_store::TaskInstanceRow> =
        instances.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let run_done = run.state.is_terminal();
    let run_href = u.run(&dag_id, &run.run_id);
    let duration = run
        .start_date
        .map(|s| (run.end_date.unwrap_or(now) - s).num_milliseconds());
    let body = html! {
        @if !run_done { div #autorefresh data-seconds="2" {} }
        div.title-row {
            h1 { "Run " (run.run_id) }
            span #run-state { (badge(run.state.as_str())) }
            div.actions {
                @if !run_done {
                    form.inline method="post" action={ (run_href) "/stop" } {
                        (csrf_field(&session.csrf_token))
                        button #stop-run type="submit" title="Stop its running tasks (they end failed), skip the rest; the run ends failed" { "Stop run" }
                    }
                }
                form.inline method="post" action={ (run_href) "/clear" } {
                    (csrf_field(&session.csrf_token))
                    button #clear-run type="submit" title="Run every task again" { "Clear run" }
                }
                form.inline method="post" action={ (run_href) "/clear" } {
                    (csrf_field(&session.csrf_token))
                    input type="hidden" name="only_failed" value="true";
                    button #clear-failed type="submit" title="Run the failed and upstream_failed tasks again" { "Clear failed tasks" }
                }
            }
        }
        p { "of DAG " a href=(u.dag(&dag_id)) { (dag_id) } " · " (run.run_type) " run, logical date " (time(run.execution_date())) }
        section {
            h2 { "Gantt" }
            div.gantt-box { (raw(gantt)) }
        }
        section {
            h2 { "Tasks" }
            table.tasks {
                thead { tr { th { "Task" } th { "State" } th { "Try" } th { "Duration" } th { "Exit code" } th { "Peak memory" } th { "CPU" } th { "Error" } th { "Actions" } } }
                tbody {
                    @for task in &order {
                        @if let Some(ti) = by_task.get(task.as_str()) {
                            tr data-task=(task) data-state=(ti.state.as_str()) {
                                td { a href=(u.perf(&dag_id, task)) { (task) } }
                                td.state { (badge(ti.state.as_str())) }
                                td { (ti.try_number) @if ti.tries() != ti.try_number { span.muted { " (" (ti.tries()) " since cleared)" } } " / " (ti.tries_before_clear + ti.max_tries) }
                                td { (ti.duration_ms.map_or_else(|| "-".to_owned(), duration_ms)) }
                                td { (ti.measurements.exit_code.map_or_else(|| "-".to_owned(), |c| c.to_string())) }
                                td { (ti.measurements.peak_memory_bytes.map_or_else(|| "-".to_owned(), bytes)) }
                                td { (cpu(ti.measurements.cpu_user_ms, ti.measurements.cpu_system_ms)) }
                                td.error { @if let Some(e) = &ti.last_error { (e) } }
                                td.row-actions {
                                    a.logs href=(u.logs(&dag_id, &run.run_id, task)) { "Logs" }
                                    @if ti.stop_requested.is_some() {
                                        span.muted.stopping { " stopping…" }
                                    } @else if ti.state.is_active() {
                                        // A running try is stopped: killed by its executor.
                                        form.inline method="post" action={ (run_href) "/tasks/" (seg(task)) "/clear" } {
                                            (csrf_field(&session.csrf_token))
                                            button.clear-task type="submit" title="Stop this try and run the task again" { "Restart" }
                                        }
                                        form.inline method="post" action={ (run_href) "/tasks/" (seg(task)) "/mark" } {
                                            (csrf_field(&session.csrf_token))
                                            input type="hidden" name="state" value="success";
                                            button.mark-success type="submit" title="Stop this try; the task ends success" { "Mark success" }
                                        }
                                        form.inline method="post" action={ (run_href) "/tasks/" (seg(task)) "/mark" } {
                                            (csrf_field(&session.csrf_token))
                                            input type="hidden" name="state" value="failed";
                                            button.mark-failed type="submit" title="Stop this try; the task ends failed" { "Mark failed" }
                                        }
                                    }
                                    @if !ti.state.is_active() {
                                        form.inline method="post" action={ (run_href) "/tasks/" (seg(task)) "/clear" } {
                                            (csrf_field(&session.csrf_token))
                                            label.small { input type="checkbox" name="downstream" value="true"; "+downstream" }
                                            button.clear-task type="submit" { "Clear" }
                                        }
                                        @if run_done {
                                            form.inline method="post" action={ (run_href) "/tasks/" (seg(task)) "/mark" } {
                                                (csrf_field(&session.csrf_token))
                                                input type="hidden" name="state" value="success";
                                                button.mark-success type="submit" { "Mark success" }
                                            }
                                            form.inline method="post" action={ (run_href) "/tasks/" (seg(task)) "/mark" } {
                                                (csrf_field(&session.csrf_token))
                                                input type="hidden" name="state" value="failed";
                                                button.mark-failed type="submit" { "Mark failed" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.details {
            dl {
                dt { "Type" } dd { (run.run_type) }
                dt { "Logical date" } dd { (time(run.execution_date())) }
                dt { "Data interval" } dd {
                    @if run.data_interval.start == run.data_interval.end { "the instant " (time(run.data_interval.start)) }
                    @else { (time(run.data_interval.start)) " → " (time(run.data_interval.end)) }
                }
                dt { "Started" } dd { (opt_time(run.start_date)) }
                dt { "Ended" } dd { (opt_time(run.end_date)) }
                dt { "Duration" } dd { (duration.map_or_else(|| "-".to_owned(), duration_ms)) }
                dt { "DAG version" } dd { (run.dag_version) }
                dt { "Configuration" } dd { code { (run.conf) } }
            }
        }
    };
    Ok(layout(u, Some(&ctx(&session)), &run.run_id, body))
}

/// A pod's CPU and memory reservation as Kubernetes writes it (`250m`,
/// `2`) and in binary units: `250m CPU · 256.0 MiB`.
fn resources(cpu_millis: Option<i64>, memory_bytes: Option<i64>) -> String {
    let cpu = cpu_millis.map(|m| {
        if m % 1000 == 0 {
            format!("{} CPU", m / 1000)
        } else {
            format!("{m}m CPU")
        }
    });
    let parts: Vec<String> = cpu.into_iter().chain(memory_bytes.map(bytes)).collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" · ")
    }
}

fn cpu(user: Option<i64>, system: Option<i64>) -> String {
    match (user, system) {
        (None, None) => "-".to_owned(),
        (u, s) => duration_ms(u.unwrap_or(0) + s.unwrap_or(0)),
    }
}

async fn clear_run(
    State(state): State<WebState>,
    PagePath((dag_id, run_id)): PagePath<(String, String)>,
    UiForm(form, session): UiForm<ClearRunForm>,
) -> Result<Response, PageError> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let spec = ClearSpec {
        only_failed: checked(&form.only_failed),
        ..ClearSpec::default()
    };
    service::clear(&state, &run, &spec, &session.username).await?;
    Ok(Redirect::to(&state.urls().run(&dag_id, &run_id)).into_response())
}

async fn stop_run(
    State(state): State<WebState>,
    PagePath((dag_id, run_id)): PagePath<(String, String)>,
    UiForm(_form, session): UiForm<CsrfOnly>,
) -> Result<Response, PageError> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    service::stop_run(&state, &run, &session.username).await?;
    Ok(Redirect::to(&state.urls().run(&dag_id, &run_id)).into_response())
}

async fn clear_task(
    State(state): State<WebState>,
    PagePath((dag_id, run_id, task_id)): PagePath<(String, String, String)>,
    UiForm(form, session): UiForm<ClearTaskForm>,
) -> Result<Response, PageError> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let spec = ClearSpec {
        tasks: vec![task_id],
        downstream: checked(&form.downstream),
        only_failed: false,
    };
    service::clear(&state, &run, &spec, &session.username).await?;
    Ok(Redirect::to(&state.urls().run(&dag_id, &run_id)).into_response())
}

async fn mark_task(
    State(state): State<WebState>,
    PagePath((dag_id, run_id, task_id)): PagePath<(String, String, String)>,
    UiForm(form, session): UiForm<MarkForm>,
) -> Result<Response, PageError> {
    let to: TaskState = form.state.parse().map_err(|_| {
        WebError::BadRequest(format!(
            "invalid state '{}': expected success or failed",
            form.state
        ))
    })?;
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    service::mark(
        &state,
        &run,
        &task_id,
        to,
        checked(&form.downstream),
        &session.username,
    )
    .await?;
    Ok(Redirect::to(&state.urls().run(&dag_id, &run_id)).into_response())
}

// ---------------------------------------------------------------------------
// Logs and performance
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct LogsQuery {
    #[serde(rename = "try")]
    try_number: Option<String>,
}

async fn logs_page(
    State(state): State<WebState>,
    Extension(session): Extension<WebSession>,
    PagePath((dag_id, run_id, task_id)): PagePath<(String, String, String)>,
    PageQuery(q): PageQuery<LogsQuery>,
) -> Result<Html<String>, PageError> {
    let run = service::find_run(&state, &dag_id, &run_id).await?;
    let ti = state
        .store()
        .task_instance(run.id, &task_id)
        .await?
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "run '{run_id}' of DAG '{dag_id}' has no task '{task_id}'"
            ))
        })?;
    let latest = ti.try_number.max(1);
    let try_number = number(q.try_number.as_deref())
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| (1..=latest).contains(t))
        .unwrap_or(latest);
    let lines = state
        .store()
        .read_logs(run.id, &task_id, Some(try_number), 0, LOG_PAGE)
        .await?;
    let tries = state.store().task_tries(run.id, Some(&task_id)).await?;
    let this_try = tries.iter().find(|t| t.try_number == try_number);
    let current = try_number == ti.try_number;
    // A try not started yet is followed too: its lines come once it runs.
    let live = (current || ti.try_number == 0) && !ti.state.is_terminal();
    let (state_shown, error) = match (current, this_try) {
        (true, _) => (ti.state, ti.last_error.clone()),
        (false, Some(t)) => (t.state, t.error.clone()),
        (false, None) => (ti.state, None),
    };
    let last_id = lines.last().map_or(0, |l| l.id);
    // A live try, or a long log whose first page only was rendered: the
    // page follows the rest.
    let more = lines.len() as i64 == LOG_PAGE;
    let follow = live || more;
    let u = state.urls();
    let api = u.api_logs(&dag_id, &run_id, &task_id);
    let page_href = u.logs(&dag_id, &run_id, &task_id);
    let raw_name = format!("{dag_id}_{run_id}_{task_id}_try{try_number}.log");
    let body = html! {
        div.title-row {
            h1 { "Logs of " (task_id) }
            span #log-state { (badge(state_shown.as_str())) }
        }
        p { "Run " a href=(u.run(&dag_id, &run_id)) { (run_id) } " of DAG " a href=(u.dag(&dag_id)) { (dag_id) } " · " a href=(u.perf(&dag_id, &task_id)) { "performance over runs" } }
        div.log-tools {
            @if ti.try_number >= 1 {
                nav.tries #log-tries aria-label="Tries" {
                    "Try: "
                    @for t in 1..=ti.try_number {
                        @let ended = tries.iter().find(|x| x.try_number == t).map(|x| x.state);
                        @let shown = ended.unwrap_or(ti.state);
                        @if t == try_number {
                            strong.try aria-current="page" data-try=(t) title=(shown.as_str()) { (t) }
                        } @else {
                            a.try href={ (page_href) "?try=" (t) } data-try=(t) title=(shown.as_str()) { (t) }
                        }
                        " "
                    }
                }
            }
            label.small.hide-system {
                input #hide-system type="checkbox";
                " Hide goflow's own lines"
            }
            a #log-download href={ (api) "/raw?try=" (try_number) } download=(raw_name) { "Download raw" }
        }
        @if let Some(e) = &error { p.flash.error { (e) } }
        @if ti.try_number == 0 {
            p.empty { "This task has not run yet in this run." }
        }
        pre #log data-src={ (api) "?try=" (try_number) } data-stream={ (api) "/stream?try=" (try_number) }
            data-after=(last_id) data-live=(if follow { "true" } else { "false" }) data-follow="none" {
            @for l in &lines {
                span class={ "line " (l.stream.as_str()) } {
                    span.ts { (l.timestamp.format("%H:%M:%S%.3f")) } " " (l.line) "\n"
                }
            }
        }
        p.muted #log-status {
            @if live { "Following…" }
            @else if follow { "Loading the rest of the log…" }
            @else if lines.is_empty() { "Finished: " (state_shown.as_str()) ". No log lines." }
            @else { "Finished: " (state_shown.as_str()) ". " (lines.len()) " lines." }
        }
    };
    Ok(layout(
        u,
        Some(&ctx(&session)),
        &format!("{task_id} logs"),
        body,
    ))
}

async fn performance_page(
    State(state): State<WebState>,
    Extension(session): Extension<WebSession>,
    PagePath((dag_id, task_id)): PagePath<(String, String)>,
) -> Result<Html<String>, PageError> {
    let u = state.urls();
    service::dag_row(&state, &dag_id).await?;
    let entries = service::history(&state, &dag_id, &task_id, HISTORY).await?;
    let point = |e: &service::HistoryEntry, v: Option<f64>| svg::Point {
        label: format!(
            "{} try {}",
            e.run_id.as_deref().unwrap_or("?"),
            e.try_row.try_number
        ),
        value: v,
        state: e.try_row.state,
    };
    let durations: Vec<svg::Point> = entries
        .iter()
        .map(|e| point(e, e.try_row.duration_ms.map(|v| v as f64 / 1000.0)))
        .collect();
    let cpu_points: Vec<svg::Point> = entries
        .iter()
        .map(|e| {
            let c = match (
                e.try_row.measurements.cpu_user_ms,
                e.try_row.measurements.cpu_system_ms,
            ) {
                (None, None) => None,
                (u, s) => Some((u.unwrap_or(0) + s.unwrap_or(0)) as f64 / 1000.0),
            };
            point(e, c)
        })
        .collect();
    let memory: Vec<svg::Point> = entries
        .iter()
        .map(|e| {
            point(
                e,
                e.try_row.measurements.peak_memory_bytes.map(|v| v as f64),
            )
        })
        .collect();
    let reference =
        |label, color, value: &dyn Fn(&goflow_store::TaskTryRow) -> Option<f64>| svg::Reference {
            label,
            color,
            values: entries.iter().map(|e| value(&e.try_row)).collect(),
        };
    // CPU time compares with what was set aside over the try: the
    // requested cores times its duration.
    let cpu_reserved = [reference("requested × duration", "#8a94a6", &|t| {
        let cores = t.measurements.cpu_request_millis? as f64 / 1000.0;
        Some(cores * t.duration_ms? as f64 / 1000.0)
    })];
    let memory_reserved = [
        reference("requested", "#8a94a6", &|t| {
            t.measurements.memory_request_bytes.map(|v| v as f64)
        }),
        reference("limit", "#c0504d", &|t| {
            t.measurements.memory_limit_bytes.map(|v| v as f64)
        }),
    ];
    let secs = |v: f64| views::seconds(v);
    let body = html! {
        h1 { "Performance of " (task_id) }
        p { "DAG " a href=(u.dag(&dag_id)) { (dag_id) } " · the last " (entries.len()) " finished tries, oldest left" }
        @if entries.is_empty() {
            p.empty { "No finished try yet." }
        } @else {
            div.charts {
                (raw(svg::line_chart("Duration", &durations, &[], &secs)))
                (raw(svg::line_chart("CPU time (user + system)", &cpu_points, &cpu_reserved, &secs)))
                (raw(svg::line_chart("Peak memory", &memory, &memory_reserved, &|v| bytes(v as i64))))
            }
            table.tasks {
                thead { tr { th { "Run" } th { "Try" } th { "State" } th { "Started" } th { "Duration" } th { "CPU" } th { "Peak memory" } th { "Requested" } th { "Limit" } th { "Exit code" } } }
                tbody {
                    @for e in entries.iter().rev() {
                        @let t = &e.try_row;
                        tr {
                            td { @if let Some(r) = &e.run_id { a href=(u.logs(&dag_id, r, &task_id)) { (r) } } @else { "-" } }
                            td { (t.try_number) }
                            td { (badge(t.state.as_str())) }
                            td { (opt_time(t.start_date)) }
                            td { (t.duration_ms.map_or_else(|| "-".to_owned(), duration_ms)) }
                            td { (cpu(t.measurements.cpu_user_ms, t.measurements.cpu_system_ms)) }
                            td { (t.measurements.peak_memory_bytes.map_or_else(|| "-".to_owned(), bytes)) }
                            td.requested { (resources(t.measurements.cpu_request_millis, t.measurements.memory_request_bytes)) }
                            td.limit { (resources(t.measurements.cpu_limit_millis, t.measurements.memory_limit_bytes)) }
                            td { (t.measurements.exit_code.map_or_else(|| "-".to_owned(), |c| c.to_string())) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(
        u,
        Some(&ctx(&session)),
        &format!("{task_id} performance"),
        body,
    ))
}

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

async fn health_page(
    State(state): State<WebState>,
    Extension(session): Extension<WebSession>,
) -> Html<String> {
    let h = service::health(&state).await;
    let count_t = |s: TaskState| h.tasks.get(&s).copied().unwrap_or(0);
    let count_r = |s: RunState| h.runs.get(&s).copied().unwrap_or(0);
    let body = html! {
        div #autorefresh data-seconds="5" {}
        div.title-row {
            h1 { "Scheduler health" }
            span #overall { @if h.healthy() { (badge("healthy")) } @else { (badge("unhealthy")) } }
        }
        section.cards {
            div.card {
                h3 { "Database" }
                @match &h.database {
                    Ok(d) => { p.big.ok { "reachable" } p.muted { "answered in " (format!("{:.1}", d.as_secs_f64() * 1000.0)) " ms" } }
                    Err(e) => { p.big.bad { "unreachable" } p.muted { (e) } }
                }
            }
            div.card {
                h3 { "Task instances" }
                p.big { (count_t(TaskState::Running)) " running" }
                p.muted { (count_t(TaskState::Queued)) " queued, " (count_t(TaskState::Scheduled)) " scheduled, " (count_t(TaskState::UpForRetry)) " up for retry" }
            }
            div.card {
                h3 { "Runs" }
                p.big { (count_r(RunState::Running)) " running" }
                p.muted { (count_r(RunState::Queued)) " queued, " (count_r(RunState::Failed)) " failed, " (count_r(RunState::Success)) " succeeded" }
            }
            div.card {
                h3 { "Scheduling loop" }
                @if let Some(l) = h.loop_latency {
                    p.big { (format!("{:.1}", l * 1000.0)) " ms" }
                    p.muted { "the latest step of this process's scheduler" }
                } @else {
                    p.big { "-" }
                    p.muted { "no scheduler step recorded by this process" }
                }
            }
        }
        section {
            h2 { "Schedulers" }
            @if h.schedulers.is_empty() {
                p.empty { "No scheduler has registered a heartbeat." }
            } @else {
                table.tasks #schedulers {
                    thead { tr { th { "Id" } th { "Host" } th { "Pid" } th { "Started" } th { "Last heartbeat" } th { "Age" } th { "State" } } }
                    tbody {
                        @for s in &h.schedulers {
                            tr {
                                td { (s.row.id) @if s.this_process { " " span.muted { "(this process)" } } }
                                td { (s.row.hostname) }
                                td { (s.row.pid) }
                                td { (time(s.row.started_date)) }
                                td { (time(s.row.heartbeat_date)) }
                                td { (format!("{:.1} s", s.heartbeat_age)) }
                                td { @if s.alive { (badge("alive")) } @else { (badge("stale")) } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Executors" }
            @if h.executors.is_empty() {
                p.empty { "No launch recorded by this process." }
            } @else {
                table.tasks {
                    thead { tr { th { "Executor" } th { "Launched" } th { "Failed to launch or lost" } } }
                    tbody { @for (k, l, f) in &h.executors { tr { td { (k) } td { (l) } td { (f) } } } }
                }
            }
        }
    };
    layout(state.urls(), Some(&ctx(&session)), "Health", body)
}
