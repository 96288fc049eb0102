//! Alerts end to end: a real scheduler runs DAGs against a real store
//! (SQLite always, PostgreSQL too when `GOFLOW_TEST_DATABASE_URL` is set),
//! the alert service detects what happened and delivers it to a local HTTP
//! server standing in for a webhook, Slack, or an SMTP sink.

mod alerts_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alerts_support::*;
use chrono::Utc;
use goflow_core::{
    Alert, AlertKind, AlertSettings, DagBuilder, Inputs, RunState, Schedule, TaskContext,
    TaskError, TaskFuture, TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::alerts::{AlertConfig, SmtpConfig, SmtpTls};
use goflow_store::testing::{databases, TestDb};
use goflow_store::{AlertDelivery, AlertStatus, NewAlert, Store};
use serde_json::json;

fn spec(id: &str, run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options: TaskOptions::default(),
        data_upstream: Vec::new(),
        run,
    }
}

fn ok() -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

/// Fails when the run's conf says `{"fail": true}`, with a multi-line error.
fn load(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    let fail = ctx.conf()["fail"].as_bool().unwrap_or(false);
    Box::pin(async move {
        if fail {
            Err(TaskError::msg(format!(
                "reading the warehouse\nconnection refused (try {})",
                ctx.try_number()
            )))
        } else {
            ok().await
        }
    })
}

fn report(_: TaskContext, _: &Inputs) -> TaskFuture {
    ok()
}

fn sleepy(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        ok().await
    })
}

/// `load` (one retry) then `report`; alerts on retries too.
fn etl() -> goflow_core::Dag {
    let mut load = spec("load", load);
    load.options.retries = Some(1);
    load.options.retry_delay = Some(Duration::ZERO);
    let mut report = spec("report", report);
    report.data_upstream = vec!["load".into()];
    DagBuilder::new("etl")
        .alerts(AlertSettings {
            task_retry: true,
            ..AlertSettings::default()
        })
        .task(load)
        .task(report)
        .build()
        .unwrap()
}

fn webhook_config(owner: &str, server: &Server) -> AlertConfig {
    let mut config = fast_config(owner);
    config.webhook_url = Some(server.url("/hook"));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_alerts_once_per_event_with_a_link_and_recovers() {
    for TestDb { store, .. } in databases().await {
        let hook = Server::start([]).await;
        let dag = etl();
        let (_, run_id) = trigger(&store, &dag, json!({"fail": true})).await;
        let mut scheduler = RunningScheduler::start(&store, vec![dag.clone()], "s1");
        let alerts = start_alerts(&store, vec![dag.clone()], webhook_config("a1", &hook));
        assert_eq!(scheduler.next_finished().await.state, RunState::Failed);
        hook.wait_for("the retry, the failure and the run failure", |r| {
            r.len() >= 3
        })
        .await;

        let bodies = hook.delivered();
        let retry = of_kind(&bodies, "task_retry");
        assert_eq!(retry.len(), 1, "{bodies:#?}");
        assert_eq!(retry[0]["try_number"], 1);
        assert_eq!(retry[0]["state"], "up_for_retry");

        let failed = of_kind(&bodies, "task_failed");
        assert_eq!(failed.len(), 1, "{bodies:#?}");
        let f = failed[0];
        assert_eq!(f["dag_id"], "etl");
        assert_eq!(f["run_id"], run_id.as_str());
        assert_eq!(f["task_id"], "load");
        assert_eq!(f["try_number"], 2);
        assert_eq!(f["state"], "failed");
        assert!(f["execution_date"].is_string());
        assert_eq!(
            f["error"],
            "reading the warehouse\nconnection refused (try 2)"
        );
        let expected_url = goflow_core::alerts::run_url("http://goflow.test", "etl", &run_id);
        assert_eq!(f["url"], expected_url.as_str());
        assert!(
            expected_url.starts_with("http://goflow.test/dags/etl/runs/manual__"),
            "{expected_url}"
        );
        assert_eq!(
            f["title"],
            format!("Task load failed (try 2) in etl, run {run_id}").as_str()
        );

        let run_failed = of_kind(&bodies, "run_failed");
        assert_eq!(run_failed.len(), 1, "{bodies:#?}");
        let err = run_failed[0]["error"].as_str().unwrap();
        assert!(
            err.contains("load: failed: connection refused (try 2)"),
            "{err}"
        );
        assert!(err.contains("report: upstream_failed"), "{err}");

        // Nothing more comes for these events, however long we wait.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(hook.received().len(), 3, "{:#?}", hook.received());
        for row in store.list_alerts(Some("etl"), 10).await.unwrap() {
            assert_eq!(row.status, AlertStatus::Sent, "{row:?}");
            assert_eq!(row.attempts, 1);
            assert!(row.sent_date.is_some());
        }

        // The next run succeeds: a recovery.
        let (_, ok_run) = trigger(&store, &dag, json!({"fail": false})).await;
        assert_eq!(scheduler.next_finished().await.state, RunState::Success);
        hook.wait_for("the recovery", |r| r.len() >= 4).await;
        let bodies = hook.delivered();
        let recovery = of_kind(&bodies, "recovery");
        assert_eq!(recovery.len(), 1, "{bodies:#?}");
        assert_eq!(recovery[0]["run_id"], ok_run.as_str());
        assert_eq!(recovery[0]["state"], "success");
        alerts.stop().await;
        scheduler.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_suppressed_across_restarts_and_lost_cursors() {
    for db in databases().await {
        let store = &db.store;
        let hook = Server::start([]).await;
        let dag = etl();
        trigger(store, &dag, json!({"fail": true})).await;
        let mut scheduler = RunningScheduler::start(store, vec![dag.clone()], "s1");
        assert_eq!(scheduler.next_finished().await.state, RunState::Failed);
        scheduler.stop().await;

        let first = start_alerts(store, vec![dag.clone()], webhook_config("a1", &hook));
        hook.wait_for("three alerts", |r| r.len() >= 3).await;
        first.stop().await;

        // A restart (another process, same store) sends nothing again.
        let second = start_alerts(store, vec![dag.clone()], webhook_config("a2", &hook));
        tokio::time::sleep(Duration::from_millis(800)).await;
        second.stop().await;
        assert_eq!(hook.received().len(), 3, "{:#?}", hook.received());

        // Even a detector that lost its cursors (a crash between reading
        // and recording) records each event once: the dedupe key is unique.
        db.execute_raw("DELETE FROM cursors");
        let third = start_alerts(store, vec![dag.clone()], webhook_config("a3", &hook));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        third.stop().await;
        assert_eq!(hook.received().len(), 3, "{:#?}", hook.received());
        assert_eq!(store.list_alerts(None, 100).await.unwrap().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_schedule_is_reported_when_the_scheduler_comes_back() {
    for TestDb { store, .. } in databases().await {
        let hook = Server::start([]).await;
        let start = Utc::now();
        let dag = DagBuilder::new("ticker")
            .schedule(
                Schedule::parse("@every 2s", "UTC").unwrap(),
                goflow_core::Tz::UTC,
            )
            .start_date(start)
            .alerts(AlertSettings {
                missed_grace: Duration::from_millis(500),
                ..AlertSettings::default()
            })
            .task(spec("tick", report))
            .build()
            .unwrap();
        // The scheduler deploys the DAG, then is down across two ticks.
        let scheduler = RunningScheduler::start(&store, vec![dag.clone()], "s1");
        tokio::time::sleep(Duration::from_millis(300)).await;
        scheduler.stop().await;
        tokio::time::sleep(Duration::from_millis(4700)).await;

        let scheduler = RunningScheduler::start(&store, vec![dag.clone()], "s1");
        let alerts = start_alerts(&store, vec![dag.clone()], webhook_config("a1", &hook));
        hook.wait_for("a missed schedule", |r| {
            r.iter().any(|x| x.json()["kind"] == "missed_schedule")
        })
        .await;
        let bodies = hook.delivered();
        let missed = of_kind(&bodies, "missed_schedule");
        let m = missed[0];
        assert_eq!(m["dag_id"], "ticker");
        assert_eq!(m["url"], "http://goflow.test/dags/ticker");
        let first = &m["missed"][0];
        assert_eq!(first["reason"], "no_run", "{m:#}");
        let first_start: chrono::DateTime<Utc> =
            serde_json::from_value(first["interval"]["start"].clone()).unwrap();
        assert_eq!(
            first_start, start,
            "the first interval, which ended while down"
        );
        assert!(m["title"]
            .as_str()
            .unwrap()
            .starts_with("ticker missed its schedule"));
        alerts.stop().await;
        scheduler.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_alerts_once() {
    for TestDb { store, .. } in databases().await {
        let hook = Server::start([]).await;
        let dag = DagBuilder::new("slow")
            .alerts(AlertSettings {
                deadline: Some(Duration::from_millis(500)),
                ..AlertSettings::default()
            })
            .task(spec("sleepy", sleepy))
            .build()
            .unwrap();
        let (run, run_id) = trigger(&store, &dag, json!({})).await;
        let created = store.get_run(run).await.unwrap().unwrap();
        let mut scheduler = RunningScheduler::start(&store, vec![dag.clone()], "s1");
        let alerts = start_alerts(&store, vec![dag.clone()], webhook_config("a1", &hook));
        hook.wait_for("a deadline alert", |r| !r.is_empty()).await;
        let bodies = hook.delivered();
        let d = &bodies[0];
        assert_eq!(d["kind"], "deadline_missed");
        assert_eq!(d["run_id"], run_id.as_str());
        assert_eq!(
            d["state"], "running",
            "alerted while the run is still going"
        );
        let due: chrono::DateTime<Utc> = serde_json::from_value(d["deadline"].clone()).unwrap();
        assert_eq!(
            due,
            created.data_interval.end + chrono::Duration::milliseconds(500)
        );
        // The run then finishes late: still one alert.
        assert_eq!(scheduler.next_finished().await.state, RunState::Success);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(hook.received().len(), 1, "{:#?}", hook.received());
        alerts.stop().await;
        scheduler.stop().await;
    }
}

fn sample_alert(dag: &str) -> Alert {
    let mut a = Alert::new(AlertKind::TaskFailed, dag, Utc::now());
    a.run_id = Some("manual__1".into());
    a.task_id = Some("load".into());
    a.try_number = Some(1);
    a.state = Some("failed".into());
    a.error = Some("boom".into());
    a.url = Some("http://goflow.test/dags/d/runs/manual__1".into());
    a
}

async fn enqueue(store: &Store, channel: &str, alert: Alert) {
    let n = store
        .enqueue_alerts(
            vec![NewAlert {
                channel: channel.into(),
                alert,
            }],
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_answering_500_then_200_gets_the_alert_once() {
    for TestDb { store, .. } in databases().await {
        let hook = Server::start([Reply::Status(500), Reply::Status(200)]).await;
        let alert = sample_alert("d");
        let key = alert.dedupe_key();
        enqueue(&store, "webhook", alert.clone()).await;
        // Recording the same event again is a no-op.
        assert_eq!(
            store
                .enqueue_alerts(
                    vec![NewAlert {
                        channel: "webhook".into(),
                        alert
                    }],
                    Utc::now()
                )
                .await
                .unwrap(),
            0
        );
        let service = start_alerts(&store, vec![], webhook_config("a1", &hook));
        hook.wait_for("two attempts", |r| r.len() >= 2).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        service.stop().await;
        let got = hook.received();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].status, Some(500));
        assert_eq!(got[1].status, Some(200));
        for r in &got {
            assert_eq!(r.headers["idempotency-key"], key.as_str());
        }
        let rows = store.list_alerts(None, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, AlertStatus::Sent);
        assert_eq!(rows[0].attempts, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_http_error_is_not_retried() {
    for TestDb { store, .. } in databases().await {
        let hook = Server::start([Reply::Status(404)]).await;
        enqueue(&store, "webhook", sample_alert("d")).await;
        let service = start_alerts(&store, vec![], webhook_config("a1", &hook));
        hook.wait_for("one attempt", |r| !r.is_empty()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        service.stop().await;
        assert_eq!(hook.received().len(), 1);
        let row = &store.list_alerts(None, 10).await.unwrap()[0];
        assert_eq!(row.status, AlertStatus::Failed);
        assert!(
            row.last_error.as_deref().unwrap().starts_with("HTTP 404"),
            "{row:?}"
        );
    }
}

static QUICK_RUNS: AtomicUsize = AtomicUsize::new(0);
fn quick(_: TaskContext, _: &Inputs) -> TaskFuture {
    QUICK_RUNS.fetch_add(1, Ordering::SeqCst);
    ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_never_answers_fails_after_retries_and_the_scheduler_goes_on() {
    for TestDb { store, .. } in databases().await {
        let hook = Server::start([]).await;
        hook.always(Reply::Hang);
        let failing = etl();
        let quick_dag = DagBuilder::new("quick")
            .task(spec("quick", quick))
            .build()
            .unwrap();
        let dags = vec![failing.clone(), quick_dag.clone()];
        let mut config = webhook_config("a1", &hook);
        config.request_timeout = Duration::from_secs(3);
        config.max_attempts = 2;
        let alerts = start_alerts(&store, dags.clone(), config);
        let mut scheduler = RunningScheduler::start(&store, dags, "s1");
        trigger(&store, &failing, json!({"fail": true})).await;
        assert_eq!(scheduler.next_finished().await.state, RunState::Failed);
        hook.wait_for("the first attempts", |r| !r.is_empty()).await;

        // While every alert hangs, runs keep going at full speed.
        let began = std::time::Instant::now();
        for _ in 0..3 {
            trigger(&store, &quick_dag, json!({})).await;
            assert_eq!(scheduler.next_finished().await.state, RunState::Success);
        }
        let took = began.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "3 runs took {took:?} while alerts hung"
        );
        // ...and meanwhile no alert has given up yet: they were hanging.
        let rows = store.list_alerts(Some("etl"), 10).await.unwrap();
        assert!(
            rows.iter()
                .all(|r| r.status != AlertStatus::Sent && r.status != AlertStatus::Failed),
            "{rows:#?}"
        );

        // Each alert: two attempts, each given up after the timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let rows = loop {
            let rows = store.list_alerts(Some("etl"), 10).await.unwrap();
            if rows.len() == 3 && rows.iter().all(|r| r.status == AlertStatus::Failed) {
                break rows;
            }
            assert!(std::time::Instant::now() < deadline, "{rows:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for row in rows {
            assert_eq!(row.attempts, 2, "{row:?}");
            let err = row.last_error.unwrap();
            assert!(err.contains("timed out"), "{err}");
            assert!(err.contains("gave up after 2 attempts"), "{err}");
        }
        assert_eq!(hook.received().len(), 6);
        alerts.stop().await;
        scheduler.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_block_kit_message() {
    for TestDb { store, .. } in databases().await {
        let slack = Server::start([]).await;
        enqueue(&store, "slack", sample_alert("d")).await;
        let mut config = fast_config("a1");
        config.slack_url = Some(slack.url("/services/T000/B000/XXX"));
        let service = start_alerts(&store, vec![], config);
        slack.wait_for("the slack message", |r| !r.is_empty()).await;
        service.stop().await;
        let got = &slack.received()[0];
        assert_eq!(got.path, "/services/T000/B000/XXX");
        assert_eq!(got.headers["content-type"], "application/json");
        let body = got.json();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("Task load failed (try 1) in d, run manual__1"),
            "{text}"
        );
        assert!(
            text.contains("<http://goflow.test/dags/d/runs/manual__1|Open in goflow>"),
            "{text}"
        );
        let blocks = body["blocks"].as_array().unwrap();
        assert!(blocks.iter().all(|b| b["type"].is_string()));
        assert!(body["blocks"][2]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("```boom```"));
    }
}

/// A minimal SMTP server: accepts one session, records the message.
async fn smtp_sink() -> (u16, tokio::task::JoinHandle<(Vec<String>, String)>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
        let mut commands = Vec::new();
        let mut data = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let upper = line.to_ascii_uppercase();
            commands.push(line.clone());
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-sink\r\n250 8BITMIME\r\n"
            } else if upper.starts_with("DATA") {
                write.write_all(b"354 go ahead\r\n").await.unwrap();
                while let Some(l) = lines.next_line().await.unwrap() {
                    if l == "." {
                        break;
                    }
                    data.push_str(&l);
                    data.push('\n');
                }
                b"250 queued\r\n"
            } else if upper.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await.unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            write.write_all(reply).await.unwrap();
        }
        (commands, data)
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_smtp() {
    let db = goflow_store::testing::sqlite(true).await;
    let (port, sink) = smtp_sink().await;
    enqueue(&db.store, "email", sample_alert("d")).await;
    let mut config = fast_config("a1");
    config.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "goflow <goflow@example.com>".into(),
        to: vec!["ops@example.com".into(), "oncall@example.com".into()],
    });
    let service = start_alerts(&db.store, vec![], config);
    let (commands, data) = tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .expect("an SMTP session")
        .unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c == "MAIL FROM:<goflow@example.com>"),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c == "RCPT TO:<oncall@example.com>"),
        "{commands:?}"
    );
    assert!(
        data.contains("Subject: [goflow] Task load failed (try 1) in d"),
        "{data}"
    );
    assert!(data.contains("Error:\nboom"), "{data}");
    // The outcome is recorded once the session is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db.store.list_alerts(None, 1).await.unwrap()[0].status != AlertStatus::Sent {
        assert!(std::time::Instant::now() < deadline, "never marked sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.stop().await;
}

#[tokio::test]
async fn a_crashed_senders_lease_runs_out_and_another_takes_over() {
    for TestDb { store, .. } in databases().await {
        enqueue(&store, "webhook", sample_alert("d")).await;
        let now = Utc::now();
        let lease = Duration::from_secs(60);
        let a = store.claim_alerts("a", 10, lease, now).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].status, AlertStatus::Sending);
        assert_eq!(a[0].lease_owner.as_deref(), Some("a"));
        // Held: nobody else gets it.
        assert!(store
            .claim_alerts("b", 10, lease, now)
            .await
            .unwrap()
            .is_empty());
        // `a` dies; after its lease, `b` takes the alert over.
        let later = now + chrono::Duration::seconds(61);
        let b = store.claim_alerts("b", 10, lease, later).await.unwrap();
        assert_eq!(b.len(), 1);
        // `a` coming back cannot record over `b`.
        assert!(!store
            .record_alert_delivery(a[0].id, "a", AlertDelivery::Sent, later)
            .await
            .unwrap());
        let retry_at = later + chrono::Duration::seconds(5);
        assert!(store
            .record_alert_delivery(
                b[0].id,
                "b",
                AlertDelivery::Retry {
                    at: retry_at,
                    error: "HTTP 503".into()
                },
                later
            )
            .await
            .unwrap());
        // Not due before its retry time.
        assert!(store
            .claim_alerts("b", 10, lease, later)
            .await
            .unwrap()
            .is_empty());
        let again = store.claim_alerts("c", 10, lease, retry_at).await.unwrap();
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
    }
}

#[tokio::test]
async fn cursors_move_only_from_where_they_were() {
    for TestDb { store, .. } in databases().await {
        let now = Utc::now();
        assert_eq!(store.cursor("x").await.unwrap(), None);
        assert!(store.set_cursor("x", None, 5, now).await.unwrap());
        assert!(!store.set_cursor("x", None, 7, now).await.unwrap());
        assert!(!store.set_cursor("x", Some(4), 7, now).await.unwrap());
        assert!(store.set_cursor("x", Some(5), 7, now).await.unwrap());
        assert_eq!(store.cursor("x").await.unwrap(), Some(7));
        // Alerts and the cursor move together, or not at all.
        let moved = store
            .enqueue_alerts_at_cursor(
                vec![NewAlert {
                    channel: "webhook".into(),
                    alert: sample_alert("d"),
                }],
                "x",
                Some(6),
                9,
                now,
            )
            .await
            .unwrap();
        assert_eq!(moved, None);
        assert!(store.list_alerts(None, 10).await.unwrap().is_empty());
    }
}
