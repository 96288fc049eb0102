//! Log shipping to Elasticsearch against a local HTTP server that checks
//! the bulk requests: index names, NDJSON lines and fields; Elasticsearch
//! down then up; bounded batches; documents rejected for good or for load.

#![cfg(feature = "elasticsearch")]

mod alerts_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alerts_support::*;
use chrono::{DateTime, Utc};
use goflow_core::{DagBuilder, Inputs, TaskContext, TaskFuture, TaskOptions, TaskSpec};
use goflow_runtime::logship::{LogShipConfig, LogShipper, CURSOR};
use goflow_store::testing::{databases, TestDb};
use goflow_store::{LogStream, NewLogLine, Store};
use serde_json::{json, Value};
use tokio::sync::oneshot;

fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(goflow_core::TaskOutput {
            value: Value::Null,
            follow: None,
        })
    })
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A run of DAG `logs` to write lines for; returns its row id and run id.
async fn a_run(store: &Store) -> (i64, String) {
    let dag = DagBuilder::new("logs")
        .task(TaskSpec {
            id: "extract".into(),
            function: "f",
            options: TaskOptions::default(),
            data_upstream: Vec::new(),
            run: noop,
        })
        .build()
        .unwrap();
    trigger(store, &dag, json!({})).await
}

async fn write_lines(store: &Store, run: i64, lines: &[(&str, LogStream, &str)]) {
    store
        .append_logs(
            lines
                .iter()
                .map(|(t, stream, line)| NewLogLine {
                    run,
                    task_id: "extract".into(),
                    try_number: 1,
                    timestamp: utc(t),
                    stream: *stream,
                    line: (*line).to_owned(),
                })
                .collect(),
        )
        .await
        .unwrap();
}

/// A bulk response: every document with `status(n)` (n counts documents
/// across requests).
fn bulk_answer(status: impl Fn(usize) -> u16 + Send + 'static) -> impl Fn(&str) -> String {
    let seen = AtomicUsize::new(0);
    move |body: &str| {
        let items: Vec<Value> = body
            .lines()
            .step_by(2)
            .map(|action| {
                let action: Value = serde_json::from_str(action).unwrap();
                let s = status(seen.fetch_add(1, Ordering::SeqCst));
                let mut item = json!({"_index": action["index"]["_index"], "_id": action["index"]["_id"], "status": s});
                if s >= 300 {
                    item["error"] = json!({"type": "some_exception", "reason": "no"});
                }
                json!({ "index": item })
            })
            .collect();
        let errors = items
            .iter()
            .any(|i| i["index"]["status"].as_u64() != Some(201));
        json!({"took": 1, "errors": errors, "items": items}).to_string()
    }
}

fn config(server: &Server) -> LogShipConfig {
    let mut c = LogShipConfig::new(&server.url("")).unwrap();
    c.poll_interval = Duration::from_millis(50);
    c.retry_base = Duration::from_millis(50);
    c.retry_max = Duration::from_millis(200);
    c.request_timeout = Duration::from_millis(500);
    c
}

/// The (action, document) pairs of an NDJSON bulk body.
fn pairs(body: &str) -> Vec<(Value, Value)> {
    assert!(body.ends_with('\n'), "NDJSON ends with a newline");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len() % 2, 0);
    lines
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_become_documents_in_daily_indices() {
    for TestDb { store, .. } in databases().await {
        let es = Server::start([]).await;
        es.answer_with(bulk_answer(|_| 201));
        let (run, run_id) = a_run(&store).await;
        write_lines(
            &store,
            run,
            &[
                (
                    "2026-11-27T23:59:59.250Z",
                    LogStream::Stdout,
                    "loading rows",
                ),
                (
                    "2026-11-28T00:00:01Z",
                    LogStream::Stderr,
                    "warning: \"slow\"",
                ),
                (
                    "2026-11-28T00:00:02Z",
                    LogStream::System,
                    "INFO try 1 succeeded after 1.00s",
                ),
            ],
        )
        .await;
        let mut c = config(&es);
        c.url = format!("http://elastic:changeme@{}/", es.addr)
            .parse()
            .unwrap();
        c.index_prefix = "team-logs".into();
        let mut shipper = LogShipper::new(store.clone(), c).unwrap();
        assert_eq!(shipper.ship_once().await.unwrap(), 3);

        let got = es.received();
        assert_eq!(got.len(), 1);
        let req = &got[0];
        assert_eq!(req.path, "/_bulk");
        assert_eq!(req.headers["content-type"], "application/x-ndjson");
        // user:password in the URL is basic authentication: elastic:changeme
        assert_eq!(
            req.headers["authorization"],
            "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
        );
        let docs = pairs(&req.body);
        let indices: Vec<&str> = docs
            .iter()
            .map(|(a, _)| a["index"]["_index"].as_str().unwrap())
            .collect();
        assert_eq!(
            indices,
            [
                "team-logs-2026.11.27",
                "team-logs-2026.11.28",
                "team-logs-2026.11.28"
            ]
        );
        let lines = store.read_logs(run, "extract", None, 0, 10).await.unwrap();
        let (action, doc) = &docs[0];
        assert_eq!(
            action["index"]["_id"],
            format!("goflow-{}", lines[0].id).as_str()
        );
        assert_eq!(doc["@timestamp"], "2026-11-27T23:59:59.250000Z");
        assert_eq!(doc["dag_id"], "logs");
        assert_eq!(doc["run_id"], run_id.as_str());
        assert_eq!(doc["task_id"], "extract");
        assert_eq!(doc["try_number"], 1);
        assert_eq!(doc["stream"], "stdout");
        assert_eq!(doc["message"], "loading rows");
        assert_eq!(docs[1].1["message"], "warning: \"slow\"");
        assert_eq!(docs[1].1["stream"], "stderr");
        assert_eq!(docs[2].1["stream"], "system");
        // Levels and goflow's own lines are marked for searches.
        assert_eq!(doc["level"], serde_json::Value::Null);
        assert_eq!(doc["system"], false);
        assert_eq!(docs[2].1["level"], "INFO");
        assert_eq!(docs[2].1["system"], true);

        // The cursor follows; nothing is sent twice.
        assert_eq!(store.cursor(CURSOR).await.unwrap(), Some(lines[2].id));
        assert_eq!(shipper.ship_once().await.unwrap(), 0);
        assert_eq!(es.received().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_elasticsearch_is_down() {
    for TestDb { store, .. } in databases().await {
        let es = Server::start([
            Reply::Status(503),
            Reply::Hang,
            Reply::Status(503),
            Reply::Status(500),
        ])
        .await;
        es.answer_with(bulk_answer(|_| 201));
        let (run, _) = a_run(&store).await;
        write_lines(
            &store,
            run,
            &[
                ("2026-11-27T10:00:00Z", LogStream::Stdout, "one"),
                ("2026-11-27T10:00:01Z", LogStream::Stdout, "two"),
            ],
        )
        .await;
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            LogShipper::new(store.clone(), config(&es))
                .unwrap()
                .run(async {
                    let _ = rx.await;
                }),
        );
        es.wait_for("two failed attempts", |r| r.len() >= 2).await;
        // Down: the cursor has not moved; more lines arrive meanwhile.
        assert_eq!(store.cursor(CURSOR).await.unwrap(), None);
        write_lines(
            &store,
            run,
            &[("2026-11-27T10:00:02Z", LogStream::Stdout, "three")],
        )
        .await;
        es.wait_for("a successful request", |r| {
            r.iter().any(|x| x.status == Some(200))
        })
        .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let last = store.read_logs(run, "extract", None, 0, 10).await.unwrap()[2].id;
        while store.cursor(CURSOR).await.unwrap() != Some(last) {
            assert!(
                std::time::Instant::now() < deadline,
                "the cursor never caught up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        task.await.unwrap();

        let received = es.received();
        let failed = received.iter().filter(|r| r.status != Some(200)).count();
        assert_eq!(failed, 4, "503, a hang, 503, 500");
        let mut delivered: Vec<String> = received
            .iter()
            .filter(|r| r.status == Some(200))
            .flat_map(|r| pairs(&r.body))
            .map(|(_, doc)| doc["message"].as_str().unwrap().to_owned())
            .collect();
        delivered.dedup();
        assert_eq!(delivered, ["one", "two", "three"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded() {
    for TestDb { store, .. } in databases().await {
        let es = Server::start([]).await;
        es.answer_with(bulk_answer(|_| 201));
        let (run, _) = a_run(&store).await;
        let texts: Vec<String> = (0..25).map(|i| format!("line {i}")).collect();
        let lines: Vec<(&str, LogStream, &str)> = texts
            .iter()
            .map(|t| ("2026-11-27T10:00:00Z", LogStream::Stdout, t.as_str()))
            .collect();
        write_lines(&store, run, &lines).await;
        let mut c = config(&es);
        c.batch_size = 10;
        let mut shipper = LogShipper::new(store.clone(), c).unwrap();
        let mut shipped = Vec::new();
        loop {
            let n = shipper.ship_once().await.unwrap();
            if n == 0 {
                break;
            }
            shipped.push(n);
        }
        assert_eq!(shipped, [10, 10, 5]);
        let sizes: Vec<usize> = es.received().iter().map(|r| pairs(&r.body).len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let all: Vec<String> = es
            .received()
            .iter()
            .flat_map(|r| pairs(&r.body))
            .map(|(_, d)| d["message"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(all, texts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_documents_are_retried_and_rejected_ones_skipped() {
    for TestDb { store, .. } in databases().await {
        let es = Server::start([]).await;
        // Document 1 of the first request: 429 (retry the batch). In the
        // second: document 1 (index 3) is rejected for good with 400.
        es.answer_with(bulk_answer(|n| match n {
            1 => 429,
            3 => 400,
            _ => 201,
        }));
        let (run, _) = a_run(&store).await;
        write_lines(
            &store,
            run,
            &[
                ("2026-11-27T10:00:00Z", LogStream::Stdout, "fine"),
                ("2026-11-27T10:00:01Z", LogStream::Stdout, "bad"),
            ],
        )
        .await;
        let mut shipper = LogShipper::new(store.clone(), config(&es)).unwrap();
        let err = shipper.ship_once().await.unwrap_err();
        assert!(err.to_string().contains("429"), "{err}");
        assert_eq!(store.cursor(CURSOR).await.unwrap(), None);
        assert_eq!(shipper.ship_once().await.unwrap(), 2);
        assert!(store.cursor(CURSOR).await.unwrap().is_some());
        assert_eq!(es.received().len(), 2);
    }
}
