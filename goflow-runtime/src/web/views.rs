//! The page layout, shared bits of markup, formatting, and the embedded
//! assets.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use goflow_core::TaskState;
use maud::{html, Markup, PreEscaped, DOCTYPE};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// `GET /static/{file}`: the embedded stylesheet and script.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// What a page needs from the session to render its forms.
pub(crate) struct PageCtx<'a> {
    /// The session's CSRF token, for every form.
    pub csrf: &'a str,
    /// The user.
    pub user: &'a str,
}

/// The page around `body`.
pub(crate) fn layout(ctx: Option<&PageCtx<'_>>, title: &str, body: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · goflow" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/dags" { "goflow" }
                    @if let Some(ctx) = ctx {
                        nav {
                            a href="/dags" { "DAGs" }
                            a href="/health" { "Health" }
                            a href="/api/v1/openapi.json" { "API" }
                        }
                        form.logout method="post" action="/logout" {
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
pub(crate) fn error_page(status: StatusCode, message: &str) -> Html<String> {
    let login = status == StatusCode::UNAUTHORIZED;
    layout(
        None,
        status.canonical_reason().unwrap_or("Error"),
        html! {
            section.error-page {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                p.flash.error { (message) }
                p {
                    @if login { a href="/login" { "Log in" } " · " }
                    a href="/dags" { "Back to the DAGs" }
                }
            }
        },
    )
}

/// The login page.
pub(crate) fn login(user: &str, csrf: &str, next: &str, error: Option<&str>) -> Html<String> {
    layout(
        None,
        "Log in",
        html! {
            section.login {
                h1 { "Log in" }
                @if let Some(e) = error { p.flash.error { (e) } }
                form method="post" action="/login" {
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

/// Percent-encodes one path segment.
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The UI path of a DAG.
pub(crate) fn dag_href(dag: &str) -> String {
    format!("/dags/{}", seg(dag))
}

/// The UI path of a run.
pub(crate) fn run_href(dag: &str, run: &str) -> String {
    format!("/dags/{}/runs/{}", seg(dag), seg(run))
}

/// The UI path of a task instance's logs.
pub(crate) fn logs_href(dag: &str, run: &str, task: &str) -> String {
    format!("{}/tasks/{}/logs", run_href(dag, run), seg(task))
}

/// The UI path of a task's performance over runs.
pub(crate) fn perf_href(dag: &str, task: &str) -> String {
    format!("/dags/{}/tasks/{}", seg(dag), seg(task))
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
        assert_eq!(encode_query("/dags?q=a b"), "/dags%3Fq%3Da%20b");
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
