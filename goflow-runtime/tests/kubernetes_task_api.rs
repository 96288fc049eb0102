//! The task API: how a worker in a pod gets its payload and reports its
//! result through the scheduler, with a token scoped to its one try.
#![cfg(feature = "kubernetes")]

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use chrono::Utc;
use goflow_core::{
    Dag, DagBuilder, DataInterval, Inputs, RunId, RunType, TaskContext, TaskError, TaskErrorKind,
    TaskFuture, TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::executor::{ExecutorEvent, Launch, TryKey};
use goflow_runtime::task_api::{
    self, launch_payload, TaskApi, TaskApiClient, TaskApiError, TryRef,
};
use goflow_runtime::worker::{
    run_task_via_api, LaunchPayload, TaskRunRequest, WorkerError, WorkerOutcome, WorkerResult,
};
use goflow_runtime::Registry;
use goflow_store::LogStream;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const RUN: &str = "scheduled__2026-01-01T06:00:00+01:00";

fn double(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let n = inputs.read::<u64>("source");
    Box::pin(async move {
        Ok(TaskOutput {
            value: json!({"doubled": n? * 2, "try": ctx.try_number(), "conf": ctx.conf()}),
            follow: None,
        })
    })
}

fn source(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: json!(21),
            follow: None,
        })
    })
}

fn fail(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::msg("disk full")) })
}

/// The API the `vanish` task unregisters itself from, as a scheduler
/// that stopped following it would.
static API: OnceLock<(TaskApi, TryRef)> = OnceLock::new();

fn vanish(_: TaskContext, _: &Inputs) -> TaskFuture {
    if let Some((api, try_ref)) = API.get() {
        api.unregister(try_ref);
    }
    Box::pin(async {
        Ok(TaskOutput {
            value: json!("printed instead"),
            follow: None,
        })
    })
}

fn spec(id: &str, data: &[&str], run: goflow_core::TaskFn) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

fn dag() -> Dag {
    DagBuilder::new("api-test")
        .task(spec("source", &[], source))
        .task(spec("double", &["source"], double))
        .task(spec("fail", &[], fail))
        .task(spec("vanish", &[], vanish))
        .build()
        .unwrap()
}

fn launch(dag: &Arc<Dag>, task: &str, try_number: u32) -> Launch {
    let index = dag.index_of(task).unwrap();
    let mut inputs = Inputs::new();
    inputs.insert("source", json!(21));
    Launch {
        key: TryKey {
            run: 1,
            task: index,
            try_number,
        },
        ctx: TaskContext::builder(
            dag.id().clone(),
            RunId::new(RUN).unwrap(),
            dag.tasks()[index].id.clone(),
        )
        .try_number(try_number)
        .max_tries(2)
        .run_type(RunType::Scheduled)
        .data_interval(DataInterval::at(Utc::now()))
        .conf(json!({"region": "north"}))
        .build(),
        dag: Arc::clone(dag),
        inputs,
    }
}

fn register(
    api: &TaskApi,
    launch: &Launch,
) -> (TryRef, String, goflow_runtime::executor::EventReceiver) {
    let (tx, rx) =
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
    let try_ref = TryRef::of(launch);
    let token = api
        .register(
            try_ref.clone(),
            launch.key.clone(),
            &launch_payload(launch),
            tx,
        )
        .unwrap();
    (try_ref, token, rx)
}

async fn call(
    api: &TaskApi,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let request = request
        .header("content-type", "application/json")
        .body(match body {
            Some(v) => Body::from(serde_json::to_vec(&v).unwrap()),
            None => Body::empty(),
        })
        .unwrap();
    let response = task_api::router(api.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_token_opens_its_own_try_and_no_other() {
    let api = TaskApi::new();
    let dag = Arc::new(dag());
    let (one, token_one, _rx1) = register(&api, &launch(&dag, "double", 1));
    let (two, token_two, _rx2) = register(&api, &launch(&dag, "double", 2));
    let (other, token_other, _rx3) = register(&api, &launch(&dag, "fail", 1));
    let bearer = |t: &str| format!("Bearer {t}");
    let result = serde_json::to_value(WorkerResult {
        outcome: WorkerOutcome::Ok {
            value: json!(1),
            follow: None,
        },
        metrics: None,
    })
    .unwrap();
    let endpoints: [(&str, &str, Option<Value>); 4] = [
        ("GET", "payload", None),
        ("POST", "result", Some(result.clone())),
        ("POST", "logs", Some(json!({"lines": []}))),
        ("POST", "heartbeat", None),
    ];
    for (method, endpoint, body) in &endpoints {
        let path = one.path(endpoint);
        // No token, or not a bearer token: 401.
        for auth in [
            None,
            Some("Basic YWRtaW46eA=="),
            Some("Bearer "),
            Some(token_one.as_str()),
        ] {
            let (status, body) = call(&api, method, &path, auth, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {endpoint} with {auth:?}"
            );
            assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        }
        // Another try's token (same task, or another task), or garbage: 403.
        for token in [
            &token_two,
            &token_other,
            &"ab".repeat(32),
            &token_one[..10].to_owned(),
        ] {
            let (status, body) =
                call(&api, method, &path, Some(&bearer(token)), body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {endpoint}");
            assert!(
                body["error"].as_str().unwrap().contains("not valid for"),
                "{body}"
            );
        }
        // Its own token: accepted.
        let (status, _) = call(&api, method, &path, Some(&bearer(&token_one)), body.clone()).await;
        assert!(status.is_success(), "{method} {endpoint}: {status}");
    }
    // The other tries' tokens work for their own tries only.
    let (status, _) = call(
        &api,
        "GET",
        &two.path("payload"),
        Some(&bearer(&token_two)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &api,
        "GET",
        &other.path("payload"),
        Some(&bearer(&token_other)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Once the try is over, its token opens nothing.
    assert!(
        api.unregister(&one).is_some(),
        "the posted result is handed over"
    );
    for (method, endpoint, body) in endpoints {
        let (status, _) = call(
            &api,
            method,
            &one.path(endpoint),
            Some(&bearer(&token_one)),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::GONE, "{method} {endpoint}");
    }
    // Nor does a token forged with another secret.
    let forged = TaskApi::new().token_for(&two);
    let (status, _) = call(
        &api,
        "GET",
        &two.path("payload"),
        Some(&bearer(&forged)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn payload_result_logs_and_heartbeats_reach_the_executor() {
    let api = TaskApi::with_secret(b"k");
    let dag = Arc::new(dag());
    let l = launch(&dag, "double", 2);
    let (try_ref, token, mut events) = register(&api, &l);
    let auth = format!("Bearer {token}");

    let (status, payload) = call(&api, "GET", &try_ref.path("payload"), Some(&auth), None).await;
    assert_eq!(status, StatusCode::OK);
    let payload: LaunchPayload = serde_json::from_value(payload).unwrap();
    assert_eq!(payload, launch_payload(&l));
    assert_eq!(payload.inputs["source"], json!(21));
    assert!(api.last_heartbeat(&try_ref).is_some());

    let (status, _) = call(
        &api,
        "POST",
        &try_ref.path("logs"),
        Some(&auth),
        Some(json!({"lines": [{"stream": "stdout", "line": "hello"}, {"stream": "stderr", "line": "careful"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (stream, text) in [(LogStream::Stdout, "hello"), (LogStream::Stderr, "careful")] {
        match events.recv().await.unwrap() {
            ExecutorEvent::Log {
                key,
                stream: s,
                line,
            } => {
                assert_eq!((key, s, line.as_str()), (l.key.clone(), stream, text));
            }
            other => panic!("{other:?}"),
        }
    }

    // Bad bodies are refused with what was expected.
    let (status, body) = call(
        &api,
        "POST",
        &try_ref.path("result"),
        Some(&auth),
        Some(json!({"value": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("outcome"),
        "{body}"
    );
    let (status, _) = call(
        &api,
        "POST",
        &try_ref.path("logs"),
        Some(&auth),
        Some(json!([1])),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(api.result(&try_ref).is_none());
}

#[tokio::test]
async fn a_body_over_the_output_limit_is_refused_with_413_and_a_json_error() {
    // A 1,000-byte output limit; the result envelope gets 1 MiB beside it.
    let api = TaskApi::with_secret(b"k").with_max_body_bytes(1_000);
    let dag = Arc::new(dag());
    let l = launch(&dag, "double", 1);
    let (try_ref, token, _events) = register(&api, &l);
    let auth = format!("Bearer {token}");
    let result = |value: Value| json!({"outcome": {"status": "ok", "value": value}});
    let (status, body) = call(
        &api,
        "POST",
        &try_ref.path("result"),
        Some(&auth),
        Some(result(json!("x".repeat((1 << 20) + 2_000)))),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--max-output-bytes"),
        "{body}"
    );
    assert!(api.result(&try_ref).is_none());
    // Within the limit, it is taken.
    let (status, body) = call(
        &api,
        "POST",
        &try_ref.path("result"),
        Some(&auth),
        Some(result(json!("x".repeat(900)))),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(api.result(&try_ref).is_some());
}

/// Serves the task API on a local port, as the scheduler's web server
/// does; returns its base URL (with the mount path).
async fn serve(api: &TaskApi) -> String {
    let app = axum::Router::new().nest(task_api::MOUNT_PATH, task_api::router(api.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}{}", task_api::MOUNT_PATH)
}

fn request(task: &str, try_number: u32) -> TaskRunRequest {
    TaskRunRequest {
        dag_id: "api-test".into(),
        run_id: RUN.into(),
        task_id: task.into(),
        try_number,
        payload_file: None,
    }
}

#[tokio::test]
async fn the_worker_runs_a_task_through_the_api_end_to_end() {
    let api = TaskApi::new();
    let base = serve(&api).await;
    let dag = Arc::new(dag());
    let registry = Registry::from_dags([dag.as_ref().clone()]).unwrap();

    // Success: the upstream's output in, the value out.
    let (try_ref, token, _events) = register(&api, &launch(&dag, "double", 2));
    let client = TaskApiClient::new(&base, token, try_ref.clone()).unwrap();
    let mut out = Vec::new();
    let code = run_task_via_api(&registry, &request("double", 2), &client, &mut out)
        .await
        .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.is_empty(), "the result went to the API, not stdout");
    let report = api.result(&try_ref).expect("a posted result");
    assert_eq!(
        report.outcome,
        WorkerOutcome::Ok {
            value: json!({"doubled": 42, "try": 2, "conf": {"region": "north"}}),
            follow: None
        }
    );
    assert!(report.metrics.unwrap().peak_memory_bytes.unwrap() > 0);

    // Failure: reported, exit code 1.
    let (try_ref, token, _events) = register(&api, &launch(&dag, "fail", 1));
    let client = TaskApiClient::new(&base, token, try_ref.clone()).unwrap();
    let code = run_task_via_api(&registry, &request("fail", 1), &client, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(code, ExitCode::FAILURE);
    let report = api.result(&try_ref).unwrap();
    let err = report.outcome.into_result().unwrap_err();
    assert_eq!(
        (err.kind(), err.message()),
        (TaskErrorKind::Failed, "disk full")
    );

    // A task this binary does not have: the reason is posted as the result.
    let mut ghost = launch(&dag, "fail", 1);
    ghost.ctx = TaskContext::builder(
        ghost.ctx.dag_id().clone(),
        ghost.ctx.run_id().clone(),
        goflow_core::TaskId::new("ghost").unwrap(),
    )
    .build();
    let (try_ref, token, _events) = register(&api, &ghost);
    let client = TaskApiClient::new(&base, token, try_ref.clone()).unwrap();
    let err = run_task_via_api(&registry, &request("ghost", 1), &client, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, WorkerError::UnknownTask { .. }), "{err}");
    let err = api
        .result(&try_ref)
        .unwrap()
        .outcome
        .into_result()
        .unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Fatal);
    assert!(
        err.message().contains("has no task \"ghost\""),
        "{}",
        err.message()
    );

    // The API stops accepting the try while it runs: the result is printed
    // as the last line instead, for the executor to read from the log.
    let vanishing = launch(&dag, "vanish", 1);
    let (try_ref, token, _events) = register(&api, &vanishing);
    API.set((api.clone(), try_ref.clone())).ok().unwrap();
    // (410 is retried a while: a restarted scheduler registers tries again.)
    let client = TaskApiClient::new(&base, token, try_ref.clone())
        .unwrap()
        .retry_for(Duration::from_millis(800));
    let mut out = Vec::new();
    let code = run_task_via_api(&registry, &request("vanish", 1), &client, &mut out)
        .await
        .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let printed: WorkerResult =
        serde_json::from_str(String::from_utf8(out).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(
        printed.outcome,
        WorkerOutcome::Ok {
            value: json!("printed instead"),
            follow: None
        }
    );
}

#[tokio::test]
async fn a_worker_with_a_wrong_token_or_no_api_says_why() {
    let api = TaskApi::new();
    let base = serve(&api).await;
    let dag = Arc::new(dag());
    let registry = Registry::from_dags([dag.as_ref().clone()]).unwrap();
    let (try_ref, _token, _events) = register(&api, &launch(&dag, "double", 1));

    let client = TaskApiClient::new(&base, "0".repeat(64), try_ref.clone()).unwrap();
    let err = run_task_via_api(&registry, &request("double", 1), &client, &mut Vec::new())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            WorkerError::TaskApi(TaskApiError::Refused { status: 403, .. })
        ),
        "{message}"
    );
    assert!(
        message.contains("GET payload") && message.contains("not valid for"),
        "{message}"
    );
    assert!(api.result(&try_ref).is_none());

    // Nothing listening: retried for a while, then a clear error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = TaskApiClient::new(
        &format!("http://{closed}{}", task_api::MOUNT_PATH),
        "0".repeat(64),
        try_ref,
    )
    .unwrap()
    .retry_for(Duration::from_millis(600));
    let err = client.payload().await.unwrap_err();
    assert!(matches!(err, TaskApiError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot reach the task API"),
        "{err}"
    );

    for bad in ["ftp://x", "not a url"] {
        let err = TaskApiClient::new(bad, "t", request_ref()).unwrap_err();
        assert!(err.to_string().contains("invalid task API URL"), "{err}");
    }
}

fn request_ref() -> TryRef {
    TryRef {
        dag_id: "d".into(),
        run_id: "r".into(),
        task_id: "t".into(),
        try_number: 1,
    }
}

#[tokio::test]
async fn the_web_server_serves_the_task_api_beside_its_own_routes() {
    use goflow_runtime::metrics::Metrics;
    use goflow_runtime::web::{self, WebConfig, WebState};

    let db = goflow_store::testing::sqlite(true).await;
    let dag = Arc::new(dag());
    let registry = Arc::new(Registry::from_dags([dag.as_ref().clone()]).unwrap());
    let state = WebState::new(
        db.store.clone(),
        registry,
        Metrics::new(),
        WebConfig::default(),
    )
    .await
    .unwrap();
    let api = TaskApi::new();
    let app = web::router_with(
        state,
        axum::Router::new().nest(task_api::MOUNT_PATH, task_api::router(api.clone())),
    );
    let (try_ref, token, _events) = register(&api, &launch(&dag, "double", 1));
    let get = |auth: Option<String>| {
        let mut request = Request::get(format!(
            "{}{}",
            task_api::MOUNT_PATH,
            try_ref.path("payload")
        ));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    // The worker's token opens its payload; the web API's authentication
    // does not stand in the way, nor stand in for the try's token.
    let response = get(Some(format!("Bearer {token}"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let payload: LaunchPayload =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(payload.context.task_id().as_str(), "double");
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let other = api.token_for(&TryRef {
        try_number: 2,
        ..try_ref.clone()
    });
    assert_eq!(
        get(Some(format!("Bearer {other}"))).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // The web server's own routes are still there.
    let health = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}
