//! The page layout, shared bits of markup, formatting, and the embedded
//! assets.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use goflow_core::TaskState;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::error::PageError;
use super::WebError;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// `GET <base>/static/{file}`: the embedded stylesheet and script.
pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, PageError> {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => {
            return Err(WebError::NotFound(format!(
                "no such asset '{file}': there are app.css and app.js"
            ))
            .into())
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response())
}

/// What a query value keeps as is: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a path segment keeps as is: the unreserved characters and `:`
/// (run ids read better with it).
const SEGMENT: &AsciiSet = &QUERY_VALUE.remove(b':');

/// The UI's URLs, under the base path. Every URL a page, a redirect or a
/// cookie carries is made here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Urls<'a> {
    base: &'a str,
}

impl<'a> Urls<'a> {
    /// The URLs under `base` (`""` for the root, else `/goflow`).
    pub(crate) fn new(base: &'a str) -> Self {
        Urls { base }
    }

    /// The base path (`""` for the root).
    pub(crate) fn base(self) -> &'a str {
        self.base
    }

    /// `path` (from the UI's root: `/dags`) under the base path.
    pub(crate) fn to(self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The path of cookies: the base path, or `/`.
    pub(crate) fn cookie_path(self) -> &'a str {
        if self.base.is_empty() {
            "/"
        } else {
            self.base
        }
    }

    /// The DAG list.
    pub(crate) fn dags(self) -> String {
        self.to("/dags")
    }

    /// The DAG list filtered by `tag`.
    pub(crate) fn tag(self, tag: &str) -> String {
        format!("{}?tag={}", self.dags(), encode_query(tag))
    }

    /// The login page.
    pub(crate) fn login(self) -> String {
        self.to("/login")
    }

    /// The login page, to come back to `next` (a path under the base).
    pub(crate) fn login_then(self, next: &str) -> String {
        format!("{}?next={}", self.login(), encode_query(next))
    }

    /// A DAG's page.
    pub(crate) fn dag(self, dag: &str) -> String {
        format!("{}/{}", self.dags(), seg(dag))
    }

    /// A run's page.
    pub(crate) fn run(self, dag: &str, run: &str) -> String {
        format!("{}/runs/{}", self.dag(dag), seg(run))
    }

    /// A task instance's log page.
    pub(crate) fn logs(self, dag: &str, run: &str, task: &str) -> String {
        format!("{}/tasks/{}/logs", self.run(dag, run), seg(task))
    }

    /// A task's performance over runs.
    pub(crate) fn perf(self, dag: &str, task: &str) -> String {
        format!("{}/tasks/{}", self.dag(dag), seg(task))
    }

    /// `path` of the API (`/dags`) under `<base>/api/v1`.
    pub(crate) fn api(self, path: &str) -> String {
        self.to(&format!("/api/v1{path}"))
    }

    /// A task instance's logs in the API.
    pub(crate) fn api_logs(self, dag: &str, run: &str, task: &str) -> String {
        self.api(&format!(
            "/dags/{}/runs/{}/tasks/{}/logs",
            seg(dag),
            seg(run),
            seg(task)
        ))
    }
}

/// What a page needs from the session to render its forms.
pub(crate) struct PageCtx<'a> {
    /// The session's CSRF token, for every form.
    pub csrf: &'a str,
    /// The user.
    pub user: &'a str,
}

/// The page around `body`, its links under the base path of `urls`.
pub(crate) fn layout(
    urls: Urls<'_>,
    ctx: Option<&PageCtx<'_>>,
    title: &str,
    body: Markup,
) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · goflow" }
                link rel="stylesheet" href=(urls.to("/static/app.css"));
                script src=(urls.to("/static/app.js")) defer {}
            }
            body data-base=(urls.base()) {
                header.top {
                    a.brand href=(urls.dags()) { "goflow" }
                    @if let Some(ctx) = ctx {
                        nav {
                            a href=(urls.dags()) { "DAGs" }
                            a href=(urls.to("/health")) { "Health" }
                            a href=(urls.api("/openapi.json")) { "API" }
                        }
                        form.logout method="post" action=(urls.to("/logout")) {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            span.user { (ctx.user) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(page.into_string())
}

/// A page for an error.
pub(crate) fn error_page(urls: Urls<'_>, status: StatusCode, message: &str) -> Html<String> {
    let login = status == StatusCode::UNAUTHORIZED;
    layout(
        urls,
        None,
        status.canonical_reason().unwrap_or("Error"),
        html! {
            section.error-page {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                p.flash.error { (message) }
                p {
                    @if login { a href=(urls.login()) { "Log in" } " · " }
                    a href=(urls.dags()) { "Back to the DAGs" }
                }
            }
        },
    )
}

/// The login page.
pub(crate) fn login(
    urls: Urls<'_>,
    user: &str,
    csrf: &str,
    next: &str,
    error: Option<&str>,
) -> Html<String> {
    layout(
        urls,
        None,
        "Log in",
        html! {
            section.login {
                h1 { "Log in" }
                @if let Some(e) = error { p.flash.error { (e) } }
                form method="post" action=(urls.login()) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label { "User" input #username type="text" name="username" value=(user) autocomplete="username" required; }
                    label { "Password" input #password type="password" name="password" autocomplete="current-password" required autofocus; }
                    button #login type="submit" { "Log in" }
                }
                p.hint { "The password is GOFLOW_UI_PASSWORD when set, else the API token the scheduler printed on its first start." }
            }
        },
    )
}

/// An instant, UTC, to the second.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional instant, `-` when absent.
pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// A duration in milliseconds, as `1.2s`, `3m 4s`, `2h 5m`.
pub(crate) fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s < 60 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    if s < 3600 {
        return format!("{}m {}s", s / 60, s % 60);
    }
    format!("{}h {}m", s / 3600, (s % 3600) / 60)
}

/// Seconds for a chart axis: precise enough to tell small values apart
/// (`0.35ms`, `12ms`, `1.5s`, `2m 5s`).
pub(crate) fn seconds(v: f64) -> String {
    let ms = v * 1000.0;
    if ms <= 0.0 {
        "0".to_owned()
    } else if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if v < 60.0 {
        format!("{v:.1}s")
    } else {
        duration_ms(ms as i64)
    }
}

/// A byte count, as `12.3 MiB`.
pub(crate) fn bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The colour of a task state, in SVG and CSS alike.
pub(crate) fn task_color(s: Option<TaskState>) -> &'static str {
    match s {
        None => "#eceff1",
        Some(TaskState::Pending) => "#cfd8dc",
        Some(TaskState::Scheduled) => "#b39ddb",
        Some(TaskState::Queued) => "#90a4ae",
        Some(TaskState::Running) => "#1e88e5",
        Some(TaskState::UpForRetry) => "#f9a825",
        Some(TaskState::Success) => "#2e7d32",
        Some(TaskState::Failed) => "#c62828",
        Some(TaskState::UpstreamFailed) => "#ef6c00",
        Some(TaskState::Skipped) => "#ec407a",
    }
}

/// A state badge.
pub(crate) fn badge(state: &str) -> Markup {
    html! { span class={ "badge st-" (state) } { (state) } }
}

/// The colour legend of task states.
pub(crate) fn legend() -> Markup {
    html! {
        div.legend {
            @for s in TaskState::ALL {
                span.item { span class={ "dot st-" (s.as_str()) } {} (s.as_str()) }
            }
        }
    }
}

/// Percent-encodes one path segment (a lone `.` or `..` too, which a
/// browser would otherwise resolve).
pub(crate) fn seg(s: &str) -> String {
    match s {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => utf8_percent_encode(s, SEGMENT).to_string(),
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode_query(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// A hidden CSRF field.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// Raw, trusted markup (generated SVG).
pub(crate) fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            seg("manual__2026-01-01T06:00:00Z"),
            "manual__2026-01-01T06:00:00Z"
        );
        assert_eq!(seg("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(seg(".."), "%2E%2E");
        assert_eq!(seg("é"), "%C3%A9");
        assert_eq!(encode_query("/dags?q=a b&c"), "%2Fdags%3Fq%3Da%20b%26c");
        assert_eq!(encode_query("x:1"), "x%3A1");
    }

    #[test]
    fn urls_are_under_the_base_path() {
        let root = Urls::new("");
        assert_eq!(root.dag("etl"), "/dags/etl");
        assert_eq!(root.cookie_path(), "/");
        let u = Urls::new("/goflow");
        assert_eq!(u.run("etl", "r 1"), "/goflow/dags/etl/runs/r%201");
        assert_eq!(
            u.logs("etl", "r", "t"),
            "/goflow/dags/etl/runs/r/tasks/t/logs"
        );
        assert_eq!(u.perf("etl", "t"), "/goflow/dags/etl/tasks/t");
        assert_eq!(u.tag("a&b"), "/goflow/dags?tag=a%26b");
        assert_eq!(
            u.login_then("/goflow/dags"),
            "/goflow/login?next=%2Fgoflow%2Fdags"
        );
        assert_eq!(
            u.api_logs("etl", "r", "t"),
            "/goflow/api/v1/dags/etl/runs/r/tasks/t/logs"
        );
        assert_eq!(u.cookie_path(), "/goflow");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(duration_ms(999), "999ms");
        assert_eq!(duration_ms(1500), "1.5s");
        assert_eq!(duration_ms(125_000), "2m 5s");
        assert_eq!(duration_ms(7_500_000), "2h 5m");
        assert_eq!(seconds(0.00035), "0.35ms");
        assert_eq!(seconds(0.012), "12ms");
        assert_eq!(seconds(1.54), "1.5s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
