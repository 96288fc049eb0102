//! The REST API, `/metrics` and the probes through `Router::oneshot`, on
//! SQLite (and PostgreSQL when `GOFLOW_TEST_DATABASE_URL` is set): each
//! endpoint's success and its errors, and that requests without or with a
//! wrong token get `401` and change nothing.

mod web_common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::get as get_route;
use axum::Router;
use chrono::Utc;
use goflow_core::{RunState, TaskState};
use goflow_runtime::web::{self, Probes, TokenOrigin, WebConfig, WebState};
use goflow_store::{LogStream, NewLogLine};
use serde_json::json;
use web_common::*;

#[tokio::test]
async fn probes_answer_without_credentials() {
    for app in apps().await {
        let healthz = send(
            &app.app,
            Request::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            (healthz.status, healthz.text.as_str()),
            (StatusCode::OK, "ok")
        );
        let readyz = send(
            &app.app,
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            (readyz.status, readyz.text.as_str()),
            (StatusCode::OK, "ok")
        );
    }
}

#[tokio::test]
async fn without_or_with_a_wrong_token_requests_get_401_and_change_nothing() {
    for app in apps().await {
        let store = app.store();
        let failed = failed_run(store, at(1)).await;
        let path = run_path(&failed);
        let calls: Vec<(Method, String, Option<serde_json::Value>)> = vec![
            (Method::GET, "/api/v1/dags".into(), None),
            (Method::GET, "/api/v1/dags/etl".into(), None),
            (
                Method::PATCH,
                "/api/v1/dags/etl".into(),
                Some(json!({"is_paused": true})),
            ),
            (Method::GET, "/api/v1/dags/etl/grid".into(), None),
            (Method::GET, "/api/v1/dags/etl/runs".into(), None),
            (
                Method::POST,
                "/api/v1/dags/etl/runs".into(),
                Some(json!({"conf": {"a": 1}})),
            ),
            (Method::GET, path.clone(), None),
            (Method::POST, format!("{path}/clear"), Some(json!({}))),
            (Method::GET, format!("{path}/tasks/left"), None),
            (
                Method::POST,
                format!("{path}/tasks/left/clear"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("{path}/tasks/left/state"),
                Some(json!({"state": "success"})),
            ),
            (Method::GET, format!("{path}/tasks/left/logs"), None),
            (Method::GET, format!("{path}/tasks/left/logs/stream"), None),
            (
                Method::GET,
                format!("{path}/tasks/left/logs/raw?try=1"),
                None,
            ),
            (
                Method::GET,
                "/api/v1/dags/etl/tasks/left/history".into(),
                None,
            ),
            (Method::GET, "/api/v1/health".into(), None),
            (Method::GET, "/api/v1/openapi.json".into(), None),
            (Method::GET, "/metrics".into(), None),
        ];
        for (method, uri, body) in calls {
            for token in [None, Some("wrong-token-0123456789abcdef")] {
                let r = api(&app, method.clone(), &uri, token, body.clone()).await;
                assert_eq!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} {token:?}: {}",
                    r.text
                );
                assert!(!r.error().is_empty());
                assert_eq!(
                    r.headers
                        .get(header::WWW_AUTHENTICATE)
                        .map(|v| v.to_str().unwrap()),
                    Some("Bearer")
                );
            }
        }
        // A malformed Authorization header is refused too.
        let req = Request::get("/api/v1/dags")
            .header(header::AUTHORIZATION, format!("Basic {}", app.token))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app.app, req).await.status, StatusCode::UNAUTHORIZED);
        // Nothing changed.
        assert!(!store.get_dag("etl").await.unwrap().unwrap().is_paused);
        assert_eq!(store.list_runs("etl", 10, 0).await.unwrap().len(), 1);
        assert_eq!(task_state(store, &failed, "left").await, TaskState::Failed);
        assert_eq!(
            store.get_run(failed.id).await.unwrap().unwrap().state,
            RunState::Failed
        );
    }
}

#[tokio::test]
async fn the_dag_list_filters_paginates_and_shows_recent_runs() {
    for app in apps().await {
        succeeded_run(app.store(), at(1)).await;
        failed_run(app.store(), at(2)).await;
        let r = get(&app, "/api/v1/dags").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let body = r.json();
        assert_eq!(body["total"], 2);
        let etl = &body["dags"][0];
        assert_eq!(etl["dag_id"], "etl");
        assert_eq!(etl["schedule"], "0 0 * * *");
        assert_eq!(etl["declared"], true);
        assert!(etl["next_run"].is_string());
        assert_eq!(etl["tags"], json!(["sales", "daily"]));
        let recent: Vec<&str> = etl["recent_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap())
            .collect();
        assert_eq!(recent, ["failed", "success"], "latest first");
        assert_eq!(body["dags"][1]["dag_id"], "reports");
        assert_eq!(body["dags"][1]["next_run"], json!(null), "manual");

        let by_tag = get(&app, "/api/v1/dags?tag=finance").await.json();
        assert_eq!(by_tag["total"], 1);
        assert_eq!(by_tag["dags"][0]["dag_id"], "reports");
        let by_text = get(&app, "/api/v1/dags?q=SALES").await.json();
        assert_eq!(by_text["total"], 1, "matches the description, any case");
        assert_eq!(by_text["dags"][0]["dag_id"], "etl");
        let page2 = get(&app, "/api/v1/dags?limit=1&offset=1").await.json();
        assert_eq!(
            (
                page2["total"].as_u64(),
                page2["dags"].as_array().unwrap().len()
            ),
            (Some(2), 1)
        );
        assert_eq!(page2["dags"][0]["dag_id"], "reports");
        let none = get(&app, "/api/v1/dags?q=%25").await.json();
        assert_eq!(none["total"], 0, "LIKE wildcards are literal");

        for bad in [
            "limit=0",
            "limit=100000",
            "offset=-1",
            "limit=abc",
            "recent_runs=1000",
        ] {
            let r = get(&app, &format!("/api/v1/dags?{bad}")).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
            assert!(!r.error().is_empty());
        }
    }
}

#[tokio::test]
async fn a_dag_shows_its_tasks_edges_and_schedule() {
    for app in apps().await {
        let r = get(&app, "/api/v1/dags/etl").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let d = r.json();
        assert_eq!(d["dag_id"], "etl");
        assert_eq!(d["file_path"], "examples/etl.rs");
        assert_eq!(d["source_line"], 12);
        assert_eq!(d["version"], 1);
        assert_eq!(d["next_runs"].as_array().unwrap().len(), 5);
        let tasks = d["tasks"].as_array().unwrap();
        let ids: Vec<&str> = tasks
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids[0], "extract");
        let merge = tasks.iter().find(|t| t["task_id"] == "merge").unwrap();
        assert_eq!(merge["layer"], 2);
        assert_eq!(merge["upstream"].as_array().unwrap().len(), 2);
        let notify = tasks.iter().find(|t| t["task_id"] == "notify").unwrap();
        assert_eq!(
            notify["upstream"],
            json!([{"task_id": "merge", "kind": "order"}])
        );

        let missing = get(&app, "/api/v1/dags/nope").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.error().contains("nope"), "{}", missing.text);
        let bad_path = get(&app, "/api/v1/dags/%FF").await;
        assert_eq!(
            bad_path.status,
            StatusCode::BAD_REQUEST,
            "{}",
            bad_path.text
        );
        let unknown = get(&app, "/api/v1/nothing/here").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(unknown.error().contains("openapi"));
    }
}

#[tokio::test]
async fn pausing_and_unpausing_a_dag() {
    for app in apps().await {
        let token = app.token.clone();
        let r = api(
            &app,
            Method::PATCH,
            "/api/v1/dags/etl",
            Some(&token),
            Some(json!({"is_paused": true})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["is_paused"], true);
        assert_eq!(
            r.json()["next_run"],
            json!(null),
            "no next run while paused"
        );
        assert!(app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
        let r = api(
            &app,
            Method::PATCH,
            "/api/v1/dags/etl",
            Some(&token),
            Some(json!({"is_paused": false})),
        )
        .await;
        assert_eq!(r.json()["is_paused"], false);
        assert!(!app.store().get_dag("etl").await.unwrap().unwrap().is_paused);

        for bad in [
            json!({"is_paused": "yes"}),
            json!({}),
            json!({"is_paused": true, "x": 1}),
        ] {
            let r = api(
                &app,
                Method::PATCH,
                "/api/v1/dags/etl",
                Some(&token),
                Some(bad.clone()),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
            assert!(r.error().starts_with("invalid JSON body"), "{}", r.text);
        }
        let not_json = Request::patch("/api/v1/dags/etl")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{oops"))
            .unwrap();
        assert_eq!(
            send(&app.app, not_json).await.status,
            StatusCode::BAD_REQUEST
        );
        let missing = api(
            &app,
            Method::PATCH,
            "/api/v1/dags/nope",
            Some(&token),
            Some(json!({"is_paused": true})),
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
        assert!(!app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
    }
}

#[tokio::test]
async fn triggering_runs_and_its_refusals() {
    for app in apps().await {
        let r = post(
            &app,
            "/api/v1/dags/etl/runs",
            json!({"conf": {"region": "north"}, "logical_date": "2026-03-01T06:00"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let run = r.json();
        assert_eq!(run["state"], "queued");
        assert_eq!(run["run_type"], "manual");
        assert_eq!(run["conf"], json!({"region": "north"}));
        assert_eq!(run["logical_date"], "2026-03-01T06:00:00Z");
        assert_eq!(run["run_id"], "manual__2026-03-01T06:00:00Z");
        let stored = app
            .store()
            .find_run("etl", "manual__2026-03-01T06:00:00Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.conf, json!({"region": "north"}));
        assert_eq!(
            app.store().task_instances(stored.id).await.unwrap().len(),
            5
        );

        // Without a body field: conf {} and now.
        let now_run = post(&app, "/api/v1/dags/etl/runs", json!({})).await;
        assert_eq!(now_run.status, StatusCode::CREATED, "{}", now_run.text);
        assert_eq!(now_run.json()["conf"], json!({}));

        let dup = post(
            &app,
            "/api/v1/dags/etl/runs",
            json!({"logical_date": "2026-03-01T06:00:00Z"}),
        )
        .await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);
        assert!(dup.error().contains("already has a run"), "{}", dup.text);
        for (body, needle) in [
            (json!({"conf": [1, 2]}), "expected a JSON object"),
            (json!({"conf": "x"}), "expected a JSON object"),
            (
                json!({"logical_date": "yesterday-ish"}),
                "invalid logical_date",
            ),
            (json!({"config": {}}), "unknown field"),
        ] {
            let r = post(&app, "/api/v1/dags/etl/runs", body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
            assert!(r.error().contains(needle), "{body}: {}", r.text);
        }
        let missing = post(&app, "/api/v1/dags/nope/runs", json!({})).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            app.store().list_runs("etl", 10, 0).await.unwrap().len(),
            2,
            "refusals created nothing"
        );

        let runs = get(&app, "/api/v1/dags/etl/runs?limit=1").await.json();
        assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
        let missing = get(&app, "/api/v1/dags/nope/runs").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_run_with_its_tasks_and_the_grid() {
    for app in apps().await {
        let ok = succeeded_run(app.store(), at(1)).await;
        let bad = failed_run(app.store(), at(2)).await;
        let r = get(&app, &run_path(&bad)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let d = r.json();
        assert_eq!(d["state"], "failed");
        let tasks = d["tasks"].as_array().unwrap();
        let ids: Vec<&str> = tasks
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["extract", "left", "right", "merge", "notify"]);
        let left = &tasks[1];
        assert_eq!(
            (left["state"].as_str(), left["exit_code"].as_i64()),
            (Some("failed"), Some(1))
        );
        assert_eq!(left["error"], "boom");
        assert_eq!(left["peak_memory_bytes"], 64 * 1024 * 1024);

        let ti = get(&app, &format!("{}/tasks/left", run_path(&bad)))
            .await
            .json();
        assert_eq!(ti["tries"].as_array().unwrap().len(), 1);
        assert_eq!(ti["tries"][0]["state"], "failed");

        let grid = get(&app, "/api/v1/dags/etl/grid").await.json();
        assert_eq!(grid["tasks"].as_array().unwrap().len(), 5);
        let runs = grid["runs"].as_array().unwrap();
        assert_eq!(runs[0]["run_id"], ok.run_id.as_str(), "oldest first");
        assert_eq!(runs[1]["states"]["merge"], "upstream_failed");

        let missing = get(&app, "/api/v1/dags/etl/runs/nope").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let missing = get(&app, &format!("{}/tasks/nope", run_path(&bad))).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            get(&app, "/api/v1/dags/nope/grid").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn clearing_runs_and_tasks() {
    for app in apps().await {
        let store = app.store();
        let run = failed_run(store, at(1)).await;
        // Only the failed ones: left, merge, notify.
        let r = post(
            &app,
            &format!("{}/clear", run_path(&run)),
            json!({"only_failed": true}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["cleared"], json!(["left", "merge", "notify"]));
        assert_eq!(r.json()["run_state"], "queued");
        assert_eq!(task_state(store, &run, "left").await, TaskState::Pending);
        assert_eq!(task_state(store, &run, "extract").await, TaskState::Success);

        // A task with its downstreams, in a finished run.
        let ok = succeeded_run(store, at(2)).await;
        let r = post(
            &app,
            &format!("{}/tasks/right/clear", run_path(&ok)),
            json!({"downstream": true}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["cleared"], json!(["right", "merge", "notify"]));
        assert_eq!(task_state(store, &ok, "left").await, TaskState::Success);

        // A running task is stopped to be cleared: the run's scheduler
        // stops its try and clears it once stopped.
        let live = new_run(store, &etl(), at(3)).await;
        start_run(store, &live).await;
        run_task(store, &live, "extract").await;
        let r = post(
            &app,
            &format!("{}/tasks/extract/clear", run_path(&live)),
            json!({}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["cleared"], json!(["extract"]));
        let ti = store
            .task_instance(live.id, "extract")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ti.state, TaskState::Running, "stopped by its scheduler");
        let stop = ti.stop_requested.expect("a stop is requested");
        assert_eq!(stop.to, TaskState::Pending);
        assert!(stop.reason.contains("cleared by"), "{}", stop.reason);

        let r = post(
            &app,
            &format!("{}/clear", run_path(&ok)),
            json!({"tasks": ["nope"]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let r = post(
            &app,
            &format!("{}/tasks/nope/clear", run_path(&ok)),
            json!({}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let r = post(
            &app,
            &format!("{}/clear", run_path(&ok)),
            json!({"tasks": "left"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let r = post(&app, "/api/v1/dags/etl/runs/nope/clear", json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
}

#[tokio::test]
async fn marking_tasks_success_or_failed() {
    for app in apps().await {
        let store = app.store();
        let run = failed_run(store, at(1)).await;
        let path = format!("{}/tasks/left/state", run_path(&run));
        // Marking `left` alone leaves merge/notify upstream_failed: still failed.
        let r = post(&app, &path, json!({"state": "success"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["run_state"], "failed");
        assert_eq!(task_state(store, &run, "left").await, TaskState::Success);
        // With its downstreams, the run succeeds.
        let r = post(&app, &path, json!({"state": "success", "downstream": true})).await;
        assert_eq!(r.json()["run_state"], "success", "{}", r.text);
        assert_eq!(task_state(store, &run, "notify").await, TaskState::Success);
        assert_eq!(
            store.get_run(run.id).await.unwrap().unwrap().state,
            RunState::Success
        );
        // And back: one failed task fails the run.
        let r = post(
            &app,
            &format!("{}/tasks/extract/state", run_path(&run)),
            json!({"state": "failed"}),
        )
        .await;
        assert_eq!(r.json()["run_state"], "failed", "{}", r.text);

        for bad in [json!({"state": "running"}), json!({"state": 3}), json!({})] {
            let r = post(&app, &path, bad.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        }
        let r = post(
            &app,
            &format!("{}/tasks/nope/state", run_path(&run)),
            json!({"state": "failed"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

        // A running task is stopped and ends in the state asked for; its
        // scheduler does it (`stopping` says so).
        let live = new_run(store, &etl(), at(3)).await;
        start_run(store, &live).await;
        run_task(store, &live, "extract").await;
        let r = post(
            &app,
            &format!("{}/tasks/extract/state", run_path(&live)),
            json!({"state": "failed"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["stopping"], true, "{}", r.text);
        let ti = store
            .task_instance(live.id, "extract")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ti.stop_requested.map(|s| s.to), Some(TaskState::Failed));

        // A task of a run in flight that is not running belongs to its
        // scheduler: 409, nothing changes.
        end_task(store, &live, "extract", TaskState::Failed).await;
        let r = post(
            &app,
            &format!("{}/tasks/extract/state", run_path(&live)),
            json!({"state": "success"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(task_state(store, &live, "extract").await, TaskState::Failed);
    }
}

#[tokio::test]
async fn stopping_a_run() {
    for app in apps().await {
        let store = app.store();
        let live = new_run(store, &etl(), at(3)).await;
        start_run(store, &live).await;
        run_task(store, &live, "extract").await;
        let stop = format!("{}/stop", run_path(&live));
        let r = post(&app, &stop, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let requested: Vec<(String, Option<TaskState>)> = store
            .task_instances(live.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.stop_requested.map(|s| s.to)))
            .collect();
        assert!(
            requested.contains(&("extract".to_owned(), Some(TaskState::Failed))),
            "{requested:?}"
        );
        assert!(
            requested
                .iter()
                .filter(|(t, _)| t != "extract")
                .all(|(_, s)| *s == Some(TaskState::Skipped)),
            "{requested:?}"
        );
        assert_eq!(r.json()["tasks"], requested.len(), "{}", r.text);

        // A finished run cannot be stopped.
        let done = failed_run(store, at(1)).await;
        let r = post(&app, &format!("{}/stop", run_path(&done)), json!({})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert!(r.error().contains("failed already"), "{}", r.text);
        // An unknown run is 404.
        let r = post(&app, "/api/v1/dags/etl/runs/nope/stop", json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
}

#[tokio::test]
async fn logs_are_read_after_an_id_while_the_try_runs() {
    for app in apps().await {
        let store = app.store();
        let run = new_run(store, &etl(), at(1)).await;
        start_run(store, &run).await;
        run_task(store, &run, "extract").await;
        let line = |n: u32, stream| NewLogLine {
            run: run.id,
            task_id: "extract".into(),
            try_number: 1,
            timestamp: Utc::now(),
            stream,
            line: format!("line {n}"),
        };
        store
            .append_logs(vec![line(1, LogStream::Stdout), line(2, LogStream::Stderr)])
            .await
            .unwrap();
        let logs = format!("{}/tasks/extract/logs", run_path(&run));
        let r = get(&app, &logs).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let body = r.json();
        assert_eq!(body["live"], true);
        assert_eq!(body["state"], "running");
        assert_eq!(body["lines"][1]["stream"], "stderr");
        let after = body["next_after_id"].as_i64().unwrap();

        store
            .append_logs(vec![line(3, LogStream::Stdout)])
            .await
            .unwrap();
        end_task(store, &run, "extract", TaskState::Success).await;
        let next = get(&app, &format!("{logs}?after_id={after}")).await.json();
        let lines: Vec<&str> = next["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["line 3"]);
        assert_eq!(next["live"], false);
        assert_eq!(next["state"], "success");
        let limited = get(&app, &format!("{logs}?limit=1")).await.json();
        assert_eq!(
            (
                limited["lines"].as_array().unwrap().len(),
                limited["more"].as_bool()
            ),
            (1, Some(true))
        );

        for bad in ["try=9", "try=0", "limit=0", "after_id=x"] {
            let r = get(&app, &format!("{logs}?{bad}")).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        }
        let r = get(&app, &format!("{}/tasks/nope/logs", run_path(&run))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

/// A log stream read as it comes, with a deadline for each wait.
struct EventStream {
    body: Body,
    text: String,
    closed: bool,
}

/// One Server-Sent Event: its id, its name (`None` for a message) and data.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl EventStream {
    /// Opens `uri` with the bearer token, or a session cookie, and a
    /// `Last-Event-ID`; answers the status and headers, and the stream when
    /// it is one.
    async fn open(
        app: &App,
        uri: &str,
        cookie: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<(axum::http::HeaderMap, EventStream), Resp> {
        let mut req = Request::get(uri).header(header::ACCEPT, "text/event-stream");
        match cookie {
            Some(c) => req = req.header(header::COOKIE, c),
            None => req = req.header(header::AUTHORIZATION, format!("Bearer {}", app.token)),
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        Self::send(app, req.body(Body::empty()).unwrap()).await
    }

    /// Sends `req`; answers the status and headers, and the stream when it
    /// is one.
    async fn send(
        app: &App,
        req: Request<Body>,
    ) -> Result<(axum::http::HeaderMap, EventStream), Resp> {
        let res = tower::ServiceExt::oneshot(app.app.clone(), req)
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        if status != StatusCode::OK {
            use http_body_util::BodyExt;
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            return Err(Resp {
                status,
                headers,
                text: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok((
            headers,
            EventStream {
                body: res.into_body(),
                text: String::new(),
                closed: false,
            },
        ))
    }

    /// Reads one more frame within the deadline; false once closed.
    async fn read_frame(&mut self, what: &str, deadline: tokio::time::Instant) -> bool {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout_at(deadline, self.body.frame())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {}", self.text));
        match frame {
            None => self.closed = true,
            Some(f) => {
                if let Ok(data) = f.unwrap().into_data() {
                    self.text.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
        }
        !self.closed
    }

    /// Reads until `done` holds of the events so far, within ten seconds.
    async fn read_until(
        &mut self,
        what: &str,
        done: impl Fn(&[SseEvent]) -> bool,
    ) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done(&self.events()) {
            assert!(
                self.read_frame(what, deadline).await,
                "the stream closed before {what}: {}",
                self.text
            );
        }
        self.events()
    }

    /// Reads to the end of the stream, within ten seconds.
    async fn read_to_end(&mut self) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.read_frame("the end of the stream", deadline).await {}
        self.events()
    }

    /// The complete events read so far (comments and keep-alives left out).
    fn events(&self) -> Vec<SseEvent> {
        let complete = match self.text.rfind("\n\n") {
            Some(i) => &self.text[..i],
            None => return Vec::new(),
        };
        complete
            .split("\n\n")
            .filter_map(|block| {
                let mut e = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        e.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                any.then_some(e)
            })
            .collect()
    }
}

fn lines_of(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.is_none())
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            v["line"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn log_line(run: &goflow_store::RunRow, n: u32, stream: LogStream) -> NewLogLine {
    NewLogLine {
        run: run.id,
        task_id: "extract".into(),
        try_number: 1,
        timestamp: Utc::now(),
        stream,
        line: format!("line {n}"),
    }
}

#[tokio::test]
async fn the_log_stream_of_a_finished_try_sends_every_line_then_end_and_closes() {
    for app in apps().await {
        let store = app.store();
        let run = new_run(store, &etl(), at(1)).await;
        start_run(store, &run).await;
        run_task(store, &run, "extract").await;
        store
            .append_logs(vec![
                log_line(&run, 1, LogStream::System),
                log_line(&run, 2, LogStream::Stdout),
                log_line(&run, 3, LogStream::Stderr),
            ])
            .await
            .unwrap();
        end_task(store, &run, "extract", TaskState::Success).await;
        let logs = format!("{}/tasks/extract/logs", run_path(&run));

        let (headers, mut sse) =
            EventStream::open(&app, &format!("{logs}/stream?try=1"), None, None)
                .await
                .unwrap_or_else(|r| panic!("{}: {}", r.status, r.text));
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        let events = sse.read_to_end().await;
        assert_eq!(lines_of(&events), ["line 1", "line 2", "line 3"]);
        let first: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(first["stream"], "system");
        assert!(first["timestamp"].is_string());
        assert_eq!(
            events[0].id.as_deref(),
            Some(first["id"].to_string().as_str())
        );
        let end = events.last().unwrap();
        assert_eq!(end.event.as_deref(), Some("end"), "{events:?}");
        let end: serde_json::Value = serde_json::from_str(&end.data).unwrap();
        assert_eq!(
            (end["state"].as_str(), end["try_number"].as_u64()),
            (Some("success"), Some(1))
        );
        assert_eq!(events.len(), 4, "{events:?}");

        // A reconnecting EventSource resumes after its Last-Event-ID, which
        // wins over the URL's after_id; after_id alone resumes too.
        let first_id = events[0].id.clone().unwrap();
        let (_, mut resumed) = EventStream::open(
            &app,
            &format!("{logs}/stream?try=1&after_id=0"),
            None,
            Some(&first_id),
        )
        .await
        .unwrap_or_else(|r| panic!("{}: {}", r.status, r.text));
        assert_eq!(lines_of(&resumed.read_to_end().await), ["line 2", "line 3"]);
        let second_id = events[1].id.clone().unwrap();
        let (_, mut resumed) = EventStream::open(
            &app,
            &format!("{logs}/stream?after_id={second_id}"),
            None,
            None,
        )
        .await
        .unwrap_or_else(|r| panic!("{}: {}", r.status, r.text));
        let rest = resumed.read_to_end().await;
        assert_eq!(lines_of(&rest), ["line 3"]);
        assert_eq!(rest.last().unwrap().event.as_deref(), Some("end"));

        // A UI session may follow the stream too.
        let (cookie, _) = web_common_login(&app).await;
        let (_, mut by_session) =
            EventStream::open(&app, &format!("{logs}/stream?try=1"), Some(&cookie), None)
                .await
                .unwrap_or_else(|r| panic!("{}: {}", r.status, r.text));
        assert_eq!(lines_of(&by_session.read_to_end().await).len(), 3);

        // The raw download: every line in order, stderr and system marked.
        let raw = get(&app, &format!("{logs}/raw?try=1")).await;
        assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
        assert_eq!(raw.text, "[system] line 1\nline 2\n[stderr] line 3\n");
        assert_eq!(
            raw.headers[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let disposition = raw.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
        let file = format!(
            "attachment; filename=\"etl_{}_extract_try1.log\"",
            run.run_id.replace([':', '+'], "_")
        );
        assert_eq!(disposition, file);

        // Refusals: JSON errors before any stream starts.
        for (uri, status) in [
            (format!("{logs}/stream?try=9"), StatusCode::BAD_REQUEST),
            (format!("{logs}/stream?after_id=x"), StatusCode::BAD_REQUEST),
            (format!("{logs}/raw?try=0"), StatusCode::BAD_REQUEST),
            (
                format!("{}/tasks/nope/logs/stream", run_path(&run)),
                StatusCode::NOT_FOUND,
            ),
            (
                format!("{}/tasks/nope/logs/raw", run_path(&run)),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/v1/dags/etl/runs/no-such-run/tasks/extract/logs/stream".to_owned(),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/v1/dags/etl/runs/no-such-run/tasks/extract/logs/raw".to_owned(),
                StatusCode::NOT_FOUND,
            ),
        ] {
            let r = get(&app, &uri).await;
            assert_eq!(r.status, status, "{uri}: {}", r.text);
            assert!(!r.error().is_empty());
        }
        let bad_id = EventStream::open(&app, &format!("{logs}/stream"), None, Some("later"))
            .await
            .err()
            .expect("a bad Last-Event-ID is refused");
        assert_eq!(bad_id.status, StatusCode::BAD_REQUEST, "{}", bad_id.text);
    }
}

#[tokio::test]
async fn the_log_stream_follows_a_running_try_until_it_ends() {
    for app in apps().await {
        let store = app.store();
        let run = new_run(store, &etl(), at(1)).await;
        start_run(store, &run).await;
        run_task(store, &run, "extract").await;
        store
            .append_logs(vec![log_line(&run, 1, LogStream::Stdout)])
            .await
            .unwrap();
        let uri = format!("{}/tasks/extract/logs/stream", run_path(&run));
        let (_, mut sse) = EventStream::open(&app, &uri, None, None)
            .await
            .unwrap_or_else(|r| panic!("{}: {}", r.status, r.text));
        sse.read_until("the first line", |e| lines_of(e).len() == 1)
            .await;

        // A line written after the request started arrives on it.
        store
            .append_logs(vec![log_line(&run, 2, LogStream::Stderr)])
            .await
            .unwrap();
        let events = sse
            .read_until("the second line", |e| lines_of(e).len() == 2)
            .await;
        assert_eq!(lines_of(&events), ["line 1", "line 2"]);
        assert!(
            events.iter().all(|e| e.event.is_none()),
            "no end yet: {events:?}"
        );

        // The last line, then the try ends: the line, `end`, and the close.
        store
            .append_logs(vec![log_line(&run, 3, LogStream::Stdout)])
            .await
            .unwrap();
        end_task(store, &run, "extract", TaskState::Failed).await;
        let events = sse.read_to_end().await;
        assert_eq!(lines_of(&events), ["line 1", "line 2", "line 3"]);
        let end = events.last().unwrap();
        assert_eq!(end.event.as_deref(), Some("end"), "{events:?}");
        let end: serde_json::Value = serde_json::from_str(&end.data).unwrap();
        assert_eq!(end["state"], "failed");
    }
}

#[tokio::test]
async fn task_history_across_runs() {
    for app in apps().await {
        let a = succeeded_run(app.store(), at(1)).await;
        failed_run(app.store(), at(2)).await;
        let r = get(&app, "/api/v1/dags/etl/tasks/left/history").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let tries = r.json()["tries"].as_array().unwrap().clone();
        assert_eq!(tries.len(), 2);
        assert_eq!(tries[0]["run_id"], a.run_id.as_str(), "oldest first");
        assert_eq!(tries[1]["state"], "failed");
        assert_eq!(tries[0]["cpu_user_ms"], 900);
        assert_eq!(
            (
                tries[0]["cpu_request_millis"].as_i64(),
                tries[0]["memory_request_bytes"].as_i64(),
                tries[0]["memory_limit_bytes"].as_i64(),
            ),
            (Some(500), Some(128 << 20), Some(256 << 20))
        );
        assert!(
            tries[0]["cpu_limit_millis"].is_null(),
            "not set, not made up"
        );
        assert!(tries[0]["duration_ms"].as_i64().unwrap() >= 1000);
        let one = get(&app, "/api/v1/dags/etl/tasks/left/history?limit=1")
            .await
            .json();
        assert_eq!(one["tries"].as_array().unwrap().len(), 1);
        assert_eq!(
            get(&app, "/api/v1/dags/etl/tasks/left/history?limit=-1")
                .await
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            get(&app, "/api/v1/dags/nope/tasks/left/history")
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn health_reports_heartbeats_queue_and_database() {
    for app in apps().await {
        let h = get(&app, "/api/v1/health").await.json();
        assert_eq!(h["healthy"], false, "no scheduler yet");
        assert_eq!(h["database"]["reachable"], true);

        let now = Utc::now();
        app.store()
            .heartbeat(SCHEDULER_ID, "host-a", 42, now)
            .await
            .unwrap();
        app.store()
            .heartbeat("old-one", "host-b", 7, now - chrono::Duration::minutes(10))
            .await
            .unwrap();
        let live = new_run(app.store(), &etl(), at(1)).await;
        start_run(app.store(), &live).await;
        run_task(app.store(), &live, "extract").await;
        app.state.metrics().loop_latency(0.004);
        app.state.metrics().executor_launched("in_process");

        let h = get(&app, "/api/v1/health").await.json();
        assert_eq!(h["healthy"], true, "{h}");
        assert_eq!(h["schedulers"][0]["id"], SCHEDULER_ID, "this process first");
        assert_eq!(h["schedulers"][0]["this_process"], true);
        assert_eq!(h["schedulers"][0]["alive"], true);
        assert_eq!(h["schedulers"][1]["alive"], false);
        assert!(
            h["schedulers"][1]["heartbeat_age_seconds"]
                .as_f64()
                .unwrap()
                >= 600.0
        );
        assert_eq!(h["task_instances"]["running"], 1);
        assert_eq!(h["task_instances"]["pending"], 4);
        assert_eq!(h["runs"]["running"], 1);
        assert_eq!(h["loop_latency_seconds"], 0.004);
        assert_eq!(
            h["executors"],
            json!([{"kind": "in_process", "launched": 1, "failed": 0}])
        );
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_paths() {
    for app in apps().await {
        let r = get(&app, "/api/v1/openapi.json").await;
        assert_eq!(r.status, StatusCode::OK);
        let doc = r.json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for (p, method) in [
            ("/api/v1/dags", "get"),
            ("/api/v1/dags/{dag_id}", "patch"),
            ("/api/v1/dags/{dag_id}/runs", "post"),
            ("/api/v1/dags/{dag_id}/runs/{run_id}/clear", "post"),
            (
                "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/state",
                "post",
            ),
            (
                "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
                "get",
            ),
            ("/api/v1/dags/{dag_id}/tasks/{task_id}/history", "get"),
            ("/api/v1/dags/{dag_id}/calendar", "get"),
            ("/api/v1/health", "get"),
            ("/api/v1/dags/{dag_id}/runs/{run_id}/stop", "post"),
            (
                "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream",
                "get",
            ),
            (
                "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/raw",
                "get",
            ),
        ] {
            assert!(paths[p][method].is_object(), "{method} {p} missing");
        }
        assert_eq!(paths.len(), 16);
        let stream = &paths["/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream"];
        assert!(
            stream["get"]["responses"]["200"]["content"]["text/event-stream"].is_object(),
            "{stream}"
        );
        let raw = &paths["/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/raw"];
        assert!(
            raw["get"]["responses"]["200"]["content"]["text/plain"].is_object(),
            "{raw}"
        );
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}

#[tokio::test]
async fn metrics_expose_store_counts_and_what_the_scheduler_records() {
    for app in apps().await {
        let live = new_run(app.store(), &etl(), at(1)).await;
        start_run(app.store(), &live).await;
        run_task(app.store(), &live, "extract").await;
        let m = app.state.metrics();
        m.observe_task_duration("etl", "extract", 1.5);
        m.executor_launched("in_process");
        m.executor_failed("kubernetes");
        m.observe_schedule_latency(0.02);
        m.observe_db("claim_tasks", 0.001);
        m.loop_latency(0.003);
        let r = get(&app, "/metrics").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("openmetrics"));
        for needle in [
            "goflow_dag_runs{state=\"running\"} 1",
            "goflow_task_instances{state=\"running\"} 1",
            "goflow_task_instances{state=\"pending\"} 4",
            "goflow_queue_depth 0",
            "goflow_task_duration_seconds_bucket{",
            "goflow_scheduling_latency_seconds_count 1",
            "goflow_scheduler_loop_seconds_sum",
            "goflow_executor_launches_total{executor=\"in_process\"} 1",
            "goflow_executor_failures_total{executor=\"kubernetes\"} 1",
            "goflow_db_query_seconds_count{op=\"claim_tasks\"} 1",
            "# EOF",
        ] {
            assert!(r.text.contains(needle), "missing {needle} in\n{}", r.text);
        }
    }
}

#[tokio::test]
async fn extra_routes_are_outside_the_ui_and_api_authentication() {
    for app in apps().await {
        // As the task API mounts itself: nested under its own prefix.
        let extra = Router::new().nest(
            goflow_runtime::task_api::MOUNT_PATH,
            Router::new().route(
                "/dags/{dag}/runs/{run}/tasks/{task}/tries/{try}/payload",
                get_route(|| async { "payload" }),
            ),
        );
        let router = web::router_with(app.state.clone(), extra);
        let uri = format!(
            "{}/dags/etl/runs/r1/tasks/extract/tries/1/payload",
            goflow_runtime::task_api::MOUNT_PATH
        );
        let r = send(
            &router,
            Request::get(uri.as_str()).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "payload"));
        let r = send(
            &router,
            Request::get(uri.as_str())
                .header(
                    header::AUTHORIZATION,
                    "Bearer a-try-token-not-the-api-token",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "its own tokens are its business");
        let r = send(
            &router,
            Request::get("/api/v1/dags").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "the API still needs its token"
        );
    }
}

#[tokio::test]
async fn the_token_is_generated_once_then_stored_or_taken_from_the_configuration() {
    for app in apps().await {
        assert_eq!(app.state.api_token().origin, TokenOrigin::Generated);
        assert_eq!(app.token.len(), 64);
        let registry = std::sync::Arc::new(goflow_runtime::Registry::from_dags([etl()]).unwrap());
        let metrics = goflow_runtime::metrics::Metrics::new();
        let again = WebState::new(
            app.store().clone(),
            registry.clone(),
            metrics.clone(),
            WebConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.api_token().origin, TokenOrigin::Stored);
        assert_eq!(
            again.api_token().token,
            app.token,
            "every start and replica agrees"
        );

        let mut configured = WebConfig::default();
        configured.api_token = Some("configured-token-0123456789".into());
        let own = WebState::new(
            app.store().clone(),
            registry.clone(),
            metrics.clone(),
            configured,
        )
        .await
        .unwrap();
        assert_eq!(own.api_token().origin, TokenOrigin::Configured);
        let router = web::router(own);
        let with = |t: &str| {
            Request::get("/api/v1/dags")
                .header(header::AUTHORIZATION, format!("Bearer {t}"))
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            send(&router, with("configured-token-0123456789"))
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            send(&router, with(&app.token)).await.status,
            StatusCode::UNAUTHORIZED
        );

        let mut short = WebConfig::default();
        short.api_token = Some("short".into());
        let err = WebState::new(app.store().clone(), registry, metrics, short)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
    }
}

#[tokio::test]
async fn a_ui_session_may_read_the_api_and_change_with_its_csrf_header() {
    for app in apps().await {
        let (cookie, csrf) = web_common_login(&app).await;
        let read = Request::get("/api/v1/dags")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app.app, read).await.status, StatusCode::OK);
        let change = |csrf: Option<&str>| {
            let mut r = Request::patch("/api/v1/dags/etl")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(c) = csrf {
                r = r.header("x-csrf-token", c);
            }
            r.body(Body::from(r#"{"is_paused": true}"#)).unwrap()
        };
        let refused = send(&app.app, change(None)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(refused.error().contains("CSRF"));
        assert_eq!(
            send(&app.app, change(Some("wrong"))).await.status,
            StatusCode::FORBIDDEN
        );
        assert!(!app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
        assert_eq!(
            send(&app.app, change(Some(&csrf))).await.status,
            StatusCode::OK
        );
        assert!(app.store().get_dag("etl").await.unwrap().unwrap().is_paused);
    }
}

/// Logs in through the form; returns the session cookie and its CSRF
/// token (read from a page's form).
async fn web_common_login(app: &App) -> (String, String) {
    let page = send(
        &app.app,
        Request::get("/login").body(Body::empty()).unwrap(),
    )
    .await;
    let login_cookie = page.set_cookie("goflow_login").unwrap();
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let login_csrf = login_cookie.split('=').nth(1).unwrap().to_owned();
    let form = format!(
        "username=admin&password={}&csrf={login_csrf}&next=%2Fdags",
        app.token
    );
    let r = send(
        &app.app,
        Request::post("/login")
            .header(header::COOKIE, &login_cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = r.set_cookie("goflow_session").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let id = cookie.split('=').nth(1).unwrap();
    let session = app.store().session(id, Utc::now()).await.unwrap().unwrap();
    (cookie, session.csrf_token)
}

/// The calendar: each of the last days with its runs counted by state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendar_counts_runs_per_day() {
    for app in apps().await {
        let dag = etl();
        let today = Utc::now();
        let yesterday = today - chrono::Duration::days(1);
        let ok = new_run(app.store(), &dag, yesterday).await;
        start_run(app.store(), &ok).await;
        end_run(app.store(), &ok, RunState::Success).await;
        let bad = new_run(app.store(), &dag, yesterday + chrono::Duration::seconds(1)).await;
        start_run(app.store(), &bad).await;
        end_run(app.store(), &bad, RunState::Failed).await;
        new_run(app.store(), &dag, today).await;
        // Long ago: outside the window.
        new_run(app.store(), &dag, today - chrono::Duration::days(40)).await;

        let r = get(&app, "/api/v1/dags/etl/calendar?days=3").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let days = r.json()["days"].as_array().unwrap().clone();
        assert_eq!(days.len(), 3);
        assert_eq!(days[2]["day"], today.date_naive().to_string());
        assert_eq!(
            (&days[1]["runs"], &days[1]["success"], &days[1]["failed"]),
            (&json!(2), &json!(1), &json!(1))
        );
        assert_eq!(
            (&days[2]["runs"], &days[2]["queued"]),
            (&json!(1), &json!(1))
        );
        assert_eq!(days[0]["runs"], 0);

        assert_eq!(
            get(&app, "/api/v1/dags/etl/calendar?days=0").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            get(&app, "/api/v1/dags/nope/calendar").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/api/v1/dags/etl/calendar?days=many")
                .await
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn under_a_base_path_the_api_metrics_and_probes_answer_there() {
    for app in apps_under_base().await {
        let failed = failed_run(app.store(), at(1)).await;
        let r = get(&app, "/goflow/api/v1/dags").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["total"], 2);
        let run = get(&app, &format!("/goflow{}", run_path(&failed))).await;
        assert_eq!(run.status, StatusCode::OK, "{}", run.text);
        assert_eq!(run.json()["state"], "failed");
        assert_eq!(
            api(&app, Method::GET, "/goflow/api/v1/dags", None, None)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        // Not at the root.
        assert_eq!(
            get(&app, "/api/v1/dags").await.status,
            StatusCode::NOT_FOUND
        );
        let missing = get(&app, "/goflow/api/v1/nope").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(
            missing.error().contains("/goflow/api/v1/openapi.json"),
            "{}",
            missing.text
        );
        let doc = get(&app, "/goflow/api/v1/openapi.json").await;
        assert_eq!(doc.json()["servers"][0]["url"], "/goflow");
        assert!(doc.json()["paths"]["/api/v1/dags"].is_object());
        let metrics = get(&app, "/goflow/metrics").await;
        assert_eq!(metrics.status, StatusCode::OK);
        assert!(metrics.text.contains("# EOF"));
        for probe in ["/goflow/healthz", "/goflow/readyz"] {
            let r = send(&app.app, Request::get(probe).body(Body::empty()).unwrap()).await;
            assert_eq!(
                (r.status, r.text.as_str()),
                (StatusCode::OK, "ok"),
                "{probe}"
            );
        }
    }
}

#[tokio::test]
async fn probes_may_be_renamed_or_left_out() {
    let renamed = WebConfig::default().with_probes(Probes::new("/livez", "ready").unwrap());
    for app in apps_with(vec![etl()], renamed).await {
        for (path, status) in [
            ("/livez", StatusCode::OK),
            ("/ready", StatusCode::OK),
            ("/healthz", StatusCode::NOT_FOUND),
            ("/readyz", StatusCode::NOT_FOUND),
        ] {
            let r = send(&app.app, Request::get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, status, "{path}");
        }
    }
    let none = WebConfig::default()
        .with_base_path("/goflow")
        .unwrap()
        .with_probes(None);
    for app in apps_with(vec![etl()], none).await {
        for path in ["/goflow/healthz", "/goflow/readyz", "/healthz"] {
            let r = send(&app.app, Request::get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(
            get(&app, "/goflow/api/v1/dags").await.status,
            StatusCode::OK
        );
    }
    // A probe on a path of the UI is refused when the state is made.
    let app = apps().await.remove(0);
    // Set by hand: `Probes::new` would refuse it at once.
    let mut probes = Probes::default();
    probes.liveness = "/dags".into();
    let clash = WebConfig::default().with_probes(probes);
    let err = WebState::new(
        app.store().clone(),
        std::sync::Arc::new(goflow_runtime::Registry::from_dags([etl()]).unwrap()),
        goflow_runtime::metrics::Metrics::new(),
        clash,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("\"/dags\""), "{err}");
}

/// A host application's own routes: a home page, its own `/healthz`, and
/// its own fallback.
fn host() -> Router {
    Router::new()
        .route("/", get_route(|| async { "host home" }))
        .route("/healthz", get_route(|| async { "host ok" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "host 404") })
}

#[tokio::test]
async fn goflow_merges_into_a_host_with_its_own_healthz_and_fallback() {
    for app in apps_under_base().await {
        let extra = Router::new().nest(
            goflow_runtime::task_api::MOUNT_PATH,
            Router::new().route("/ping", get_route(|| async { "task api" })),
        );
        let goflow = web::router_with(app.state.clone(), extra);
        // Either way round: the host's fallback set before or after.
        let merged = [
            host().merge(goflow.clone()),
            goflow
                .clone()
                .merge(host().route("/x", get_route(|| async { "x" }))),
            Router::new()
                .route("/healthz", get_route(|| async { "host ok" }))
                .merge(goflow)
                .fallback(|| async { (StatusCode::NOT_FOUND, "host 404") }),
        ];
        for host in merged {
            let get = |uri: &str| {
                send(
                    &host,
                    Request::get(uri)
                        .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
                        .body(Body::empty())
                        .unwrap(),
                )
            };
            let r = get("/healthz").await;
            assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "host ok"));
            let r = get("/goflow/healthz").await;
            assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "ok"));
            let r = get("/elsewhere").await;
            assert_eq!(
                (r.status, r.text.as_str()),
                (StatusCode::NOT_FOUND, "host 404")
            );
            let r = get("/goflow/api/v1/dags").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let r = get("/goflow/api/v1/nope").await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
            assert!(r.error().contains("openapi.json"), "{}", r.text);
            let r = get("/goflow/nothing").await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
            assert!(r.text.contains("no such page"), "the UI's page: {}", r.text);
            let r = get("/goflow/dags").await;
            assert_eq!(r.status, StatusCode::SEE_OTHER);
            assert_eq!(r.location(), "/goflow/login?next=%2Fgoflow%2Fdags");
            let r = get("/goflow/api/v1/task-api/ping").await;
            assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "task api"));
        }
    }
    // At the root too, once goflow leaves the probes (and `/`) to the host.
    let config = WebConfig::default().with_probes(None);
    for app in apps_with(vec![etl()], config).await {
        let host = Router::new()
            .route("/healthz", get_route(|| async { "host ok" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "host 404") })
            .merge(web::router(app.state.clone()));
        let r = send(&host, Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!(r.text, "host ok");
        let r = send(&host, Request::get("/nothing").body(Body::empty()).unwrap()).await;
        assert_eq!(
            (r.status, r.text.as_str()),
            (StatusCode::NOT_FOUND, "host 404")
        );
        let r = send(&host, Request::get("/dags").body(Body::empty()).unwrap()).await;
        assert_eq!(r.location(), "/login?next=%2Fdags");
    }
}

#[tokio::test]
async fn the_standalone_server_answers_other_paths_with_the_ui_404_page() {
    for app in apps().await {
        let standalone = web::standalone(web::router(app.state.clone()), "");
        let r = send(
            &standalone,
            Request::get("/nothing").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.text.contains("no such page") && r.text.contains("href=\"/dags\""));
        assert!(r.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    }
    for app in apps_under_base().await {
        let standalone = web::standalone(web::router(app.state.clone()), BASE);
        let r = send(&standalone, Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::SEE_OTHER, "/goflow/dags")
        );
        let r = send(
            &standalone,
            Request::get("/nothing").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.text.contains("href=\"/goflow/dags\""), "{}", r.text);
    }
}

#[tokio::test]
async fn responses_are_compressed_but_the_log_stream_is_not_and_outlives_the_timeout() {
    let config = WebConfig::default()
        .with_base_path(BASE)
        .unwrap()
        .with_request_timeout(std::time::Duration::from_millis(200));
    for app in apps_with(vec![etl()], config).await {
        let gzip = |uri: &str| {
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap()
        };
        for uri in ["/goflow/static/app.js", "/goflow/api/v1/openapi.json"] {
            let r = send(&app.app, gzip(uri)).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}");
            assert_eq!(r.headers[header::CONTENT_ENCODING], "gzip", "{uri}");
        }

        let store = app.store();
        let run = new_run(store, &etl(), at(1)).await;
        start_run(store, &run).await;
        run_task(store, &run, "extract").await;
        store
            .append_logs(vec![log_line(&run, 1, LogStream::Stdout)])
            .await
            .unwrap();
        let uri = format!("/goflow{}/tasks/extract/logs/stream", run_path(&run));
        let (headers, mut sse) = EventStream::send(&app, gzip(&uri))
            .await
            .unwrap_or_else(|r| panic!("{}: {}", r.status, r.text));
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        assert!(
            !headers.contains_key(header::CONTENT_ENCODING),
            "events are sent as they come, not compressed: {headers:?}"
        );
        sse.read_until("the first line", |e| lines_of(e).len() == 1)
            .await;
        // Well past the request timeout, the stream still follows.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        store
            .append_logs(vec![log_line(&run, 2, LogStream::Stdout)])
            .await
            .unwrap();
        sse.read_until("a line after the timeout", |e| lines_of(e).len() == 2)
            .await;
        end_task(store, &run, "extract", TaskState::Success).await;
        let events = sse.read_to_end().await;
        assert_eq!(lines_of(&events), ["line 1", "line 2"]);
        assert_eq!(events.last().unwrap().event.as_deref(), Some("end"));
    }
}
