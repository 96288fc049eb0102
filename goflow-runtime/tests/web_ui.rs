//! The UI through `Router::oneshot`: login, pages, and forms with their
//! CSRF protection, on SQLite (and PostgreSQL when configured).

mod web_common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use goflow_core::{DagBuilder, RunState, TaskState};
use goflow_runtime::web::WebConfig;
use goflow_store::{LogStream, NewLogLine};
use web_common::*;

/// A logged-in UI user: the session cookie and its CSRF token.
struct User {
    cookie: String,
    csrf: String,
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn login_with(app: &App, user: &str, password: &str) -> Resp {
    let page = send(
        &app.app,
        Request::get("/login?next=/dags/etl")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let login_cookie = cookie_pair(&page.set_cookie("goflow_login").unwrap());
    let csrf = csrf_of(&page.text);
    assert_eq!(
        login_cookie,
        format!("goflow_login={csrf}"),
        "double-submit token"
    );
    let form = format!("username={user}&password={password}&csrf={csrf}&next=%2Fdags%2Fetl");
    send(
        &app.app,
        Request::post("/login")
            .header(header::COOKIE, &login_cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await
}

async fn login(app: &App) -> User {
    let r = login_with(app, "admin", &app.token.clone()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.location(), "/dags/etl", "back where the user was going");
    let cookie = cookie_pair(&r.set_cookie("goflow_session").unwrap());
    let page = page(
        app,
        &User {
            cookie: cookie.clone(),
            csrf: String::new(),
        },
        "/dags",
    )
    .await;
    User {
        csrf: csrf_of(&page.text),
        cookie,
    }
}

async fn page(app: &App, user: &User, uri: &str) -> Resp {
    send(
        &app.app,
        Request::get(uri)
            .header(header::COOKIE, &user.cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn form(app: &App, cookie: Option<&str>, uri: &str, body: &str) -> Resp {
    let mut req =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(&app.app, req.body(Body::from(body.to_owned())).unwrap()).await
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn pages_need_a_login_and_the_login_checks_everything() {
    for app in apps().await {
        let r = send(
            &app.app,
            Request::get("/dags?q=a").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), "/login?next=%2Fdags%3Fq%3Da");
        let r = form(&app, None, "/dags/etl/pause", "paused=true&csrf=x").await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "a form without a session"
        );
        assert!(!app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
        let r = send(
            &app.app,
            Request::get("/dags")
                .header(header::COOKIE, "goflow_session=forged")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "an unknown session is no session"
        );

        let wrong = login_with(&app, "admin", "not-the-password").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.text.contains("Wrong user name or password"));
        assert!(wrong.set_cookie("goflow_session").is_none());
        let wrong_user = login_with(&app, "root", &app.token.clone()).await;
        assert_eq!(wrong_user.status, StatusCode::UNAUTHORIZED);

        // The login form's own CSRF token must match its cookie.
        let forged = form(
            &app,
            Some("goflow_login=aaaa"),
            "/login",
            &format!("username=admin&password={}&csrf=bbbb", app.token),
        )
        .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(forged.set_cookie("goflow_session").is_none());

        let r = login_with(&app, "admin", &app.token.clone()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let c = r.set_cookie("goflow_session").unwrap();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
            assert!(c.contains(attr), "{attr} in {c}");
        }
        assert!(!c.contains("Secure"), "not over plain HTTP by default");
    }
}

#[tokio::test]
async fn the_ui_password_may_differ_from_the_token_and_open_redirects_are_refused() {
    let mut config = WebConfig::default();
    config.ui_password = Some("a-long-ui-password".into());
    config.secure_cookies = true;
    for app in apps_with(vec![etl()], config.clone()).await {
        assert_eq!(
            login_with(&app, "admin", &app.token.clone()).await.status,
            StatusCode::UNAUTHORIZED
        );
        let ok = login_with(&app, "admin", "a-long-ui-password").await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert!(ok
            .set_cookie("goflow_session")
            .unwrap()
            .contains("; Secure"));

        let page = send(
            &app.app,
            Request::get("/login?next=//evil.example/x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert!(
            page.text.contains("name=\"next\" value=\"/dags\""),
            "{}",
            page.text
        );
    }
}

#[tokio::test]
async fn the_dag_list_paginates_filters_and_toggles_pause() {
    let mut dags: Vec<_> = (0..55)
        .map(|i| {
            DagBuilder::new(format!("bulk-{i:02}"))
                .tags([if i % 2 == 0 { "even" } else { "odd" }])
                .task(spec("only", &[]))
                .build()
                .unwrap()
        })
        .collect();
    dags.push(etl());
    for app in apps_with(dags, WebConfig::default()).await {
        succeeded_run(app.store(), at(1)).await;
        failed_run(app.store(), at(2)).await;
        let user = login(&app).await;
        let p1 = page(&app, &user, "/dags").await;
        assert_eq!(p1.status, StatusCode::OK);
        assert!(p1.text.contains("Page 1 of 2"), "56 DAGs, 50 a page");
        assert_eq!(p1.text.matches("<tr data-dag=").count(), 50);
        let p2 = page(&app, &user, "/dags?page=2").await;
        assert_eq!(p2.text.matches("<tr data-dag=").count(), 6);
        assert!(p2.text.contains("data-dag=\"etl\""));
        // Recent runs as marks, oldest left.
        let marks: Vec<&str> = p2
            .text
            .split("class=\"mark st-")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert_eq!(marks, ["success", "failed"]);
        let odd = page(&app, &user, "/dags?tag=odd").await;
        assert_eq!(odd.text.matches("<tr data-dag=").count(), 27);
        let one = page(&app, &user, "/dags?q=bulk-07").await;
        assert_eq!(one.text.matches("<tr data-dag=").count(), 1);
        let junk = page(&app, &user, "/dags?page=abc").await;
        assert_eq!(junk.status, StatusCode::OK, "a bad page number is page 1");

        // The pause toggle, with and without the CSRF token.
        let refused = form(
            &app,
            Some(&user.cookie),
            "/dags/etl/pause",
            "paused=true&next=%2Fdags",
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let refused = form(
            &app,
            Some(&user.cookie),
            "/dags/etl/pause",
            "paused=true&csrf=nope",
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.text.contains("CSRF"));
        assert!(!app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
        let ok = form(
            &app,
            Some(&user.cookie),
            "/dags/etl/pause",
            &format!("paused=true&csrf={}&next=%2Fdags%3Fpage%3D2", user.csrf),
        )
        .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert_eq!(ok.location(), "/dags?page=2");
        assert!(app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
        let evil = form(
            &app,
            Some(&user.cookie),
            "/dags/etl/pause",
            &format!(
                "paused=false&csrf={}&next=https%3A%2F%2Fevil.example",
                user.csrf
            ),
        )
        .await;
        assert_eq!(evil.location(), "/dags/etl", "never off-site");
        let bad = form(
            &app,
            Some(&user.cookie),
            "/dags/etl/pause",
            &format!("paused=maybe&csrf={}", user.csrf),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let missing = form(
            &app,
            Some(&user.cookie),
            "/dags/nope/pause",
            &format!("paused=true&csrf={}", user.csrf),
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn the_dag_page_shows_grid_graph_details_and_triggers_runs() {
    for app in apps().await {
        let ok = succeeded_run(app.store(), at(1)).await;
        let bad = failed_run(app.store(), at(2)).await;
        let user = login(&app).await;
        let p = page(&app, &user, "/dags/etl").await;
        assert_eq!(p.status, StatusCode::OK);
        let h = &p.text;
        assert!(h.contains("<svg class=\"graph\""));
        assert_eq!(h.matches("<g class=\"node\"").count(), 5);
        assert!(h.contains("id=\"calendar\""), "the days-run calendar");
        assert_eq!(h.matches("data-day=\"").count(), 35, "five weeks of days");
        assert!(
            h.contains("data-task=\"left\" data-state=\"failed\""),
            "graph in the latest run's states"
        );
        assert_eq!(h.matches("class=\"runbar st-").count(), 2);
        assert!(h.contains(&format!(
            "data-run=\"{}\" data-task=\"merge\" data-state=\"upstream_failed\"",
            bad.run_id
        )));
        assert!(h.contains(&format!(
            "data-run=\"{}\" data-task=\"merge\" data-state=\"success\"",
            ok.run_id
        )));
        assert!(h.contains("examples/etl.rs:12"));
        assert!(h.contains("id=\"trigger-form\""));
        // The graph of another run, chosen in the grid.
        let older = page(&app, &user, &format!("/dags/etl?run={}", enc(&ok.run_id))).await;
        assert!(older
            .text
            .contains("data-task=\"left\" data-state=\"success\""));

        // Refused triggers: no CSRF, bad JSON (kept in the form), not an object, bad date.
        let refused = form(&app, Some(&user.cookie), "/dags/etl/trigger", "conf=%7B%7D").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let body = format!("csrf={}&conf={}&logical_date=", user.csrf, enc("{\"a\": "));
        let r = form(&app, Some(&user.cookie), "/dags/etl/trigger", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text.contains("not valid JSON"), "{}", r.text);
        assert!(
            r.text.contains("{&quot;a&quot;: </textarea>"),
            "the text is kept for fixing"
        );
        let body = format!("csrf={}&conf={}", user.csrf, enc("[1]"));
        let r = form(&app, Some(&user.cookie), "/dags/etl/trigger", &body).await;
        assert!(r.text.contains("expected a JSON object"), "{}", r.text);
        let body = format!("csrf={}&conf=&logical_date=someday", user.csrf);
        let r = form(&app, Some(&user.cookie), "/dags/etl/trigger", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.store().list_runs("etl", 10, 0).await.unwrap().len(), 2);

        let body = format!(
            "csrf={}&conf={}&logical_date=2026-05-01",
            user.csrf,
            enc("{\"region\": \"north\"}")
        );
        let r = form(&app, Some(&user.cookie), "/dags/etl/trigger", &body).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.location(), "/dags/etl/runs/manual__2026-05-01T00:00:00Z");
        let run = app
            .store()
            .find_run("etl", "manual__2026-05-01T00:00:00Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.conf, serde_json::json!({"region": "north"}));
        let dup = form(&app, Some(&user.cookie), "/dags/etl/trigger", &body).await;
        assert_eq!(dup.status, StatusCode::CONFLICT);
        assert!(dup.text.contains("already has a run"));

        assert_eq!(
            page(&app, &user, "/dags/nope").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            page(&app, &user, "/nothing").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn the_run_page_clears_and_marks_tasks() {
    for app in apps().await {
        let store = app.store();
        let run = failed_run(store, at(1)).await;
        let user = login(&app).await;
        let base = format!("/dags/etl/runs/{}", enc(&run.run_id));
        let p = page(&app, &user, &base).await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.text.contains("<svg class=\"gantt\""));
        assert_eq!(
            p.text.matches("class=\"bar\"").count(),
            3,
            "three tries ran"
        );
        assert!(p
            .text
            .contains("<tr data-task=\"left\" data-state=\"failed\""));
        assert!(p.text.contains("boom"));
        assert!(p.text.contains("64.0 MiB"));

        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{base}/tasks/left/mark"),
            "state=success",
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
        assert_eq!(task_state(store, &run, "left").await, TaskState::Failed);
        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{base}/tasks/left/mark"),
            &format!("state=success&downstream=true&csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(
            store.get_run(run.id).await.unwrap().unwrap().state,
            RunState::Success
        );
        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{base}/tasks/left/mark"),
            &format!("state=bogus&csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{base}/tasks/right/clear"),
            &format!("csrf={}&downstream=true", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(task_state(store, &run, "right").await, TaskState::Pending);
        assert_eq!(task_state(store, &run, "notify").await, TaskState::Pending);
        assert_eq!(task_state(store, &run, "left").await, TaskState::Success);
        assert_eq!(
            store.get_run(run.id).await.unwrap().unwrap().state,
            RunState::Queued
        );

        let r = form(&app, Some(&user.cookie), &format!("{base}/clear"), "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{base}/clear"),
            &format!("csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(task_state(store, &run, "extract").await, TaskState::Pending);

        // A queued run has no mark buttons, and refuses marks.
        let p = page(&app, &user, &base).await;
        assert!(!p.text.contains("mark-success"));
        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{base}/tasks/left/mark"),
            &format!("state=failed&csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.text.contains("scheduler owns"), "{}", r.text);
        assert_eq!(
            page(&app, &user, "/dags/etl/runs/nope").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn logs_performance_and_health_pages() {
    for app in apps().await {
        let store = app.store();
        succeeded_run(store, at(1)).await;
        let live = new_run(store, &etl(), at(2)).await;
        start_run(store, &live).await;
        run_task(store, &live, "extract").await;
        store
            .append_logs(vec![NewLogLine {
                run: live.id,
                task_id: "extract".into(),
                try_number: 1,
                timestamp: Utc::now(),
                stream: LogStream::Stderr,
                line: "<b>reading</b> sales.csv".into(),
            }])
            .await
            .unwrap();
        store
            .heartbeat(SCHEDULER_ID, "host-a", 1, Utc::now())
            .await
            .unwrap();
        let user = login(&app).await;
        let logs = page(
            &app,
            &user,
            &format!("/dags/etl/runs/{}/tasks/extract/logs", enc(&live.run_id)),
        )
        .await;
        assert_eq!(logs.status, StatusCode::OK);
        assert!(
            logs.text.contains("&lt;b&gt;reading&lt;/b&gt; sales.csv"),
            "escaped: {}",
            logs.text
        );
        assert!(logs.text.contains("data-live=\"true\""));
        assert!(logs.text.contains("/api/v1/dags/etl/runs/"));
        let not_run = page(
            &app,
            &user,
            &format!("/dags/etl/runs/{}/tasks/merge/logs", enc(&live.run_id)),
        )
        .await;
        assert!(not_run.text.contains("has not run yet"));

        let perf = page(&app, &user, "/dags/etl/tasks/left").await;
        assert_eq!(perf.status, StatusCode::OK);
        assert_eq!(perf.text.matches("<svg class=\"chart\"").count(), 3);
        assert!(perf.text.contains("Peak memory"));
        // What the pod reserved: in the table, and as reference lines
        // under CPU time and peak memory.
        assert!(perf.text.contains("500m CPU · 128.0 MiB"), "{}", perf.text);
        assert!(perf.text.contains(">256.0 MiB</td>"), "{}", perf.text);
        assert_eq!(perf.text.matches("class=\"reference\"").count(), 3);
        assert!(perf.text.contains(">requested × duration</text>"));

        let health = page(&app, &user, "/health").await;
        assert_eq!(health.status, StatusCode::OK);
        assert!(health.text.contains("badge st-healthy"));
        assert!(health.text.contains("(this process)"));
        assert!(health.text.contains("reachable"));
    }
}

#[tokio::test]
async fn the_log_page_selects_tries_offers_the_raw_log_and_marks_streams() {
    for app in apps().await {
        let store = app.store();
        let run = new_run(store, &etl(), at(1)).await;
        start_run(store, &run).await;
        let line = |try_number: u32, stream, line: &str| NewLogLine {
            run: run.id,
            task_id: "extract".into(),
            try_number,
            timestamp: Utc::now(),
            stream,
            line: line.into(),
        };
        // Try 1 fails and is retried; try 2 runs.
        run_task(store, &run, "extract").await;
        store
            .append_logs(vec![
                line(1, LogStream::System, "try 1 started"),
                line(1, LogStream::Stderr, "no such file"),
            ])
            .await
            .unwrap();
        end_task(store, &run, "extract", TaskState::UpForRetry).await;
        let now = Utc::now();
        assert!(store
            .update_task(
                run.id,
                "extract",
                TaskState::UpForRetry,
                goflow_store::TaskUpdate::new(TaskState::Scheduled),
                now
            )
            .await
            .unwrap());
        let claimed = store
            .claim_tasks_in("web-test", &[run.id], &Default::default(), 1, now)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(store
            .update_task(
                run.id,
                "extract",
                TaskState::Queued,
                goflow_store::TaskUpdate::new(TaskState::Running),
                now
            )
            .await
            .unwrap());
        store
            .append_logs(vec![line(2, LogStream::Stdout, "reading again")])
            .await
            .unwrap();

        let user = login(&app).await;
        // As the page writes them (a run id's `:` stays as it is).
        let base = format!("/dags/etl/runs/{}/tasks/extract/logs", run.run_id);
        let api = format!("/api/v1/dags/etl/runs/{}/tasks/extract/logs", run.run_id);
        // The current try is followed through the event stream.
        let current = page(&app, &user, &base).await;
        assert_eq!(current.status, StatusCode::OK);
        let html = &current.text;
        assert!(html.contains("reading again"), "{html}");
        assert!(!html.contains("no such file"));
        assert!(html.contains("data-live=\"true\""));
        assert!(
            html.contains(&format!("data-stream=\"{api}/stream?try=2\"")),
            "{html}"
        );
        assert!(html.contains("Following…"));
        assert!(
            html.contains(&format!("href=\"{base}?try=1\" data-try=\"1\"")),
            "a link to try 1: {html}"
        );
        assert!(html.contains("aria-current=\"page\" data-try=\"2\""));
        assert!(html.contains(&format!("id=\"log-download\" href=\"{api}/raw?try=2\"")));
        assert!(html.contains("id=\"hide-system\""));

        // An earlier try: its own lines, its outcome, nothing to follow.
        let first = page(&app, &user, &format!("{base}?try=1")).await;
        let html = &first.text;
        assert!(html.contains("no such file"), "{html}");
        assert!(!html.contains("reading again"));
        assert!(html.contains("<span class=\"line system\">"));
        assert!(html.contains("<span class=\"line stderr\">"));
        assert!(html.contains("data-live=\"false\""));
        assert!(html.contains("Finished: up_for_retry. 2 lines."), "{html}");
        assert!(html.contains(&format!("href=\"{api}/raw?try=1\"")));
        assert!(html.contains(&format!("href=\"{base}?try=2\" data-try=\"2\"")));
    }
}

#[tokio::test]
async fn logging_out_ends_the_session_and_pages_carry_security_headers() {
    for app in apps().await {
        let user = login(&app).await;
        let p = page(&app, &user, "/dags").await;
        let csp = p.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(p.headers[header::X_FRAME_OPTIONS], "DENY");
        let css = send(
            &app.app,
            Request::get("/static/app.css").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.text.contains(".st-success"));
        let js = send(
            &app.app,
            Request::get("/static/app.js").body(Body::empty()).unwrap(),
        )
        .await;
        assert!(js.text.contains("followLog"));

        let r = form(&app, Some(&user.cookie), "/logout", "").await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "logging out needs the CSRF token too"
        );
        let r = form(
            &app,
            Some(&user.cookie),
            "/logout",
            &format!("csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(r
            .set_cookie("goflow_session")
            .unwrap()
            .contains("Max-Age=0"));
        assert_eq!(
            page(&app, &user, "/dags").await.status,
            StatusCode::SEE_OTHER
        );
    }
}

/// Every URL of a page that is a path (`href`, `action`, `src`, and the
/// log viewer's `data-src` and `data-stream`), by attribute.
fn paths_in(html: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for attr in ["href", "action", "src", "data-src", "data-stream"] {
        let needle = format!(" {attr}=\"");
        let mut rest = html;
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            let value = &rest[..rest.find('"').unwrap()];
            if value.starts_with('/') {
                out.push((attr, value.replace("&amp;", "&")));
            }
        }
    }
    out
}

/// Asserts that every path of `html` is under [`BASE`], and returns them.
fn all_under_base(what: &str, html: &str) -> Vec<(&'static str, String)> {
    let paths = paths_in(html);
    assert!(!paths.is_empty(), "{what}: no links at all");
    for (attr, p) in &paths {
        assert!(
            p.starts_with(&format!("{BASE}/")),
            "{what}: {attr}=\"{p}\" is not under {BASE}"
        );
    }
    paths
}

#[tokio::test]
async fn under_a_base_path_every_url_the_ui_emits_carries_it() {
    for app in apps_under_base().await {
        let store = app.store();
        let done = failed_run(store, at(1)).await;
        let live = new_run(store, &etl(), at(2)).await;
        start_run(store, &live).await;
        run_task(store, &live, "extract").await;

        // Not served at the root: that is the host's.
        for outside in ["/dags", "/login", "/static/app.css", "/healthz"] {
            let r = send(&app.app, Request::get(outside).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{outside}");
        }

        // A page without a session goes to the login form, and back.
        let r = send(
            &app.app,
            Request::get("/goflow/dags?q=a")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), "/goflow/login?next=%2Fgoflow%2Fdags%3Fq%3Da");
        let r = send(
            &app.app,
            Request::get("/goflow/dags").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.location(), "/goflow/login?next=%2Fgoflow%2Fdags");
        let login_page = send(
            &app.app,
            Request::get(r.location()).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(login_page.status, StatusCode::OK);
        let html = &login_page.text;
        let paths = all_under_base("the login page", html);
        assert!(
            paths.contains(&("action", "/goflow/login".to_owned())),
            "{paths:?}"
        );
        assert!(paths.contains(&("href", "/goflow/static/app.css".to_owned())));
        assert!(paths.contains(&("src", "/goflow/static/app.js".to_owned())));
        assert!(
            html.contains("name=\"next\" value=\"/goflow/dags\""),
            "{html}"
        );
        let login_cookie = login_page.set_cookie("goflow_login").unwrap();
        assert!(login_cookie.contains("; Path=/goflow;"), "{login_cookie}");
        let login_cookie = cookie_pair(&login_cookie);
        let csrf = csrf_of(html);

        // The login form: back to the page asked for, a cookie for the base.
        let form_body = format!(
            "username=admin&password={}&csrf={csrf}&next=%2Fgoflow%2Fdags%2Fetl",
            app.token
        );
        let r = send(
            &app.app,
            Request::post("/goflow/login")
                .header(header::COOKIE, &login_cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form_body))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.location(), "/goflow/dags/etl");
        let session = r.set_cookie("goflow_session").unwrap();
        for attr in ["Path=/goflow;", "HttpOnly", "SameSite=Strict"] {
            assert!(session.contains(attr), "{attr} in {session}");
        }
        assert!(!session.contains("Path=/;"), "{session}");
        let user = User {
            cookie: cookie_pair(&session),
            csrf: String::new(),
        };

        // Every page links, posts and loads under the base only.
        let run_page = format!("/goflow/dags/etl/runs/{}", live.run_id);
        let logs_page = format!("{run_page}/tasks/extract/logs");
        for uri in [
            "/goflow/dags".to_owned(),
            "/goflow/dags/etl".to_owned(),
            format!("/goflow/dags/etl?run={}", enc(&done.run_id)),
            run_page.clone(),
            format!("/goflow/dags/etl/runs/{}", done.run_id),
            logs_page.clone(),
            "/goflow/dags/etl/tasks/left".to_owned(),
            "/goflow/health".to_owned(),
        ] {
            let p = page(&app, &user, &uri).await;
            assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.text);
            let paths = all_under_base(&uri, &p.text);
            assert!(
                paths.contains(&("action", "/goflow/logout".to_owned())),
                "{uri}: {paths:?}"
            );
        }
        let list = page(&app, &user, "/goflow/dags").await;
        let paths = paths_in(&list.text);
        for expected in [
            ("href", "/goflow/dags/etl".to_owned()),
            ("href", "/goflow/dags?tag=sales".to_owned()),
            ("action", "/goflow/dags".to_owned()),
            ("action", "/goflow/dags/etl/pause".to_owned()),
            ("href", "/goflow/api/v1/openapi.json".to_owned()),
        ] {
            assert!(paths.contains(&expected), "{expected:?} in {paths:?}");
        }
        let dag = page(&app, &user, "/goflow/dags/etl").await;
        assert!(dag.text.contains("<svg class=\"graph\""), "{}", dag.text);
        assert!(paths_in(&dag.text).contains(&("action", "/goflow/dags/etl/trigger".to_owned())));
        // The log viewer's script follows the API under the base.
        let logs = page(&app, &user, &logs_page).await;
        let api = format!(
            "/goflow/api/v1/dags/etl/runs/{}/tasks/extract/logs",
            live.run_id
        );
        assert!(
            logs.text
                .contains(&format!("data-stream=\"{api}/stream?try=1\"")),
            "{}",
            logs.text
        );
        assert!(logs.text.contains(&format!("data-src=\"{api}?try=1\"")));
        assert!(logs.text.contains("<body data-base=\"/goflow\">"));

        // The assets answer under the base.
        let css = send(
            &app.app,
            Request::get("/goflow/static/app.css")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.text.contains(".st-success"));
        let js = send(
            &app.app,
            Request::get("/goflow/static/app.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(js.status, StatusCode::OK);
        assert!(js.text.contains("followLog"));
        let missing = send(
            &app.app,
            Request::get("/goflow/static/nope.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        all_under_base("a missing asset's page", &missing.text);

        // The base itself leads to the DAGs; unknown paths under it get
        // the UI's 404 page, its links under the base.
        for home in ["/goflow", "/goflow/"] {
            let r = page(&app, &user, home).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{home}");
            assert_eq!(r.location(), "/goflow/dags", "{home}");
        }
        let nothing = page(&app, &user, "/goflow/nothing").await;
        assert_eq!(nothing.status, StatusCode::NOT_FOUND);
        assert!(nothing.text.contains("no such page"), "{}", nothing.text);
        all_under_base("the 404 page", &nothing.text);
        assert!(nothing
            .headers
            .contains_key(header::CONTENT_SECURITY_POLICY));
        let gone = page(&app, &user, "/goflow/dags/nope").await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        all_under_base("a missing DAG's page", &gone.text);

        // Redirects after forms stay under the base.
        let user = User {
            csrf: csrf_of(&list.text),
            ..user
        };
        for (next, to) in [
            ("%2Fgoflow%2Fdags%3Fpage%3D1", "/goflow/dags?page=1"),
            ("%2Fdags", "/goflow/dags/etl"),
            ("%2Fother-app", "/goflow/dags/etl"),
            ("%2Fgoflow%2F..%2Fadmin", "/goflow/dags/etl"),
            ("%2F%2Fevil.example", "/goflow/dags/etl"),
        ] {
            let r = form(
                &app,
                Some(&user.cookie),
                "/goflow/dags/etl/pause",
                &format!("csrf={}&paused=false&next={next}", user.csrf),
            )
            .await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{next}: {}", r.text);
            assert_eq!(r.location(), to, "{next}");
        }
        let r = send(
            &app.app,
            Request::get("/goflow/login?next=/elsewhere")
                .header(header::COOKIE, &user.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            r.location(),
            "/goflow/dags",
            "logged in: to the DAGs, not away"
        );
        let r = form(
            &app,
            Some(&user.cookie),
            &format!("{run_page}/stop"),
            &format!("csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.location(), run_page);

        // Logging out: to the login page, the cookie cleared for the base.
        let r = form(
            &app,
            Some(&user.cookie),
            "/goflow/logout",
            &format!("csrf={}", user.csrf),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), "/goflow/login");
        let cleared = r.set_cookie("goflow_session").unwrap();
        assert!(cleared.contains("Max-Age=0") && cleared.contains("Path=/goflow;"));
    }
}
