//! What a try's log holds: the task's own `tracing` events (in-process
//! tasks too, whose stdout is the scheduler's) with their level, and
//! goflow's `system` lines saying what it did with the try: started where,
//! how it ended, when the retry is due, that it was stopped or lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use goflow_core::{
    DagBuilder, Inputs, RunState, TaskContext, TaskError, TaskFuture, TaskOptions, TaskOutput,
    TaskSpec, TaskState,
};
use goflow_store::testing::{databases, TestDb};
use goflow_store::{LogLevel, LogLine, LogStream, Store};
use running::{config, scheduler, trigger, Running};

mod running;

fn spec(id: &str, options: TaskOptions, run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options,
        data_upstream: Vec::new(),
        run,
    }
}

async fn log(store: &Store, run: i64, task: &str, try_number: u32) -> Vec<LogLine> {
    store
        .read_logs(run, task, Some(try_number), 0, 1000)
        .await
        .unwrap()
}

fn chatty(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        tracing::debug!("not kept: below INFO");
        tracing::info!(rows = 3, "read the file");
        tokio::task::yield_now().await;
        tracing::warn!("one row had no region");
        tracing::error!("the report is incomplete");
        Ok(TaskOutput {
            value: serde_json::json!(3),
            follow: None,
        })
    })
}

fn sync_chatty(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        goflow_runtime::run_blocking(|| tracing::info!("from a plain fn"))
            .await
            .map(|()| TaskOutput {
                value: serde_json::Value::Null,
                follow: None,
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_tasks_tracing_events_and_goflows_lines_make_its_log() {
    for TestDb { store, .. } in databases().await {
        let dag = DagBuilder::new("logged")
            .task(spec("chatty", TaskOptions::default(), chatty))
            .task(spec("sync", TaskOptions::default(), sync_chatty))
            .build()
            .unwrap();
        let run = trigger(&store, &dag).await;
        let mut s = Running::start(scheduler(&store, &dag, config("logs-1")));
        assert_eq!(s.next_finished().await.state, RunState::Success);
        let lines = log(&store, run, "chatty", 1).await;
        let shown: Vec<(LogStream, Option<LogLevel>, String)> = lines
            .iter()
            .map(|l| (l.stream, l.level, l.line.clone()))
            .collect();
        let target = "task_logs";
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert_eq!(shown[0].0, LogStream::System);
        assert!(
            shown[0]
                .2
                .starts_with("INFO try 1 started on in_process, attempt 1 of 1"),
            "{shown:#?}"
        );
        assert_eq!(
            shown[1..4],
            [
                (
                    LogStream::Stdout,
                    Some(LogLevel::Info),
                    format!("INFO {target}: read the file rows=3")
                ),
                (
                    LogStream::Stdout,
                    Some(LogLevel::Warn),
                    format!("WARN {target}: one row had no region")
                ),
                (
                    LogStream::Stdout,
                    Some(LogLevel::Error),
                    format!("ERROR {target}: the report is incomplete")
                ),
            ]
        );
        assert_eq!(shown[4].0, LogStream::System);
        assert!(
            shown[4].2.starts_with("INFO try 1 succeeded after "),
            "{shown:#?}"
        );

        let sync: Vec<String> = log(&store, run, "sync", 1)
            .await
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(
            sync.contains(&format!("INFO {target}: from a plain fn")),
            "{sync:#?}"
        );
        s.stop().await;
    }
}

static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

fn fails_once(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.try_number() == 1 && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
            return Err(TaskError::msg("the warehouse did not answer"));
        }
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

fn hangs(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        std::future::pending::<()>().await;
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_or_stopped_try_says_so_in_its_log() {
    let TestDb { store, .. } = databases().await.into_iter().next().unwrap();
    let dag = DagBuilder::new("retried")
        .task(spec(
            "flaky",
            TaskOptions {
                retries: Some(1),
                retry_delay: Some(Duration::from_millis(200)),
                ..TaskOptions::default()
            },
            fails_once,
        ))
        .task(spec("stuck", TaskOptions::default(), hangs))
        .build()
        .unwrap();
    let run = trigger(&store, &dag).await;
    let mut s = Running::start(scheduler(&store, &dag, config("logs-2")));
    for _ in 0..200 {
        let stuck = store.task_instance(run, "stuck").await.unwrap().unwrap();
        if stuck.state == TaskState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    store
        .request_stop(
            run,
            &["stuck".into()],
            TaskState::Failed,
            "killed by the test",
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(s.next_finished().await.state, RunState::Failed);

    let first: Vec<String> = log(&store, run, "flaky", 1)
        .await
        .into_iter()
        .map(|l| l.line)
        .collect();
    let retry = first.last().unwrap();
    let retry_at = store.task_tries(run, Some("flaky")).await.unwrap()[0]
        .end_date
        .unwrap();
    assert!(
        retry.starts_with("WARN try 1 failed after ")
            && retry.contains(": the warehouse did not answer; attempt 2 of 2 at ")
            && retry.ends_with("(in 200ms)")
            && retry.contains(&retry_at.format("%Y-%m-%dT%H:%M").to_string()),
        "{first:#?}"
    );
    let second: Vec<String> = log(&store, run, "flaky", 2)
        .await
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert!(
        second[0].starts_with("INFO try 2 started on in_process, attempt 2 of 2"),
        "{second:#?}"
    );
    assert!(
        second.last().unwrap().starts_with("INFO try 2 succeeded"),
        "{second:#?}"
    );

    let stuck = log(&store, run, "stuck", 1).await;
    let end = stuck.last().unwrap();
    assert_eq!(
        (end.stream, end.level),
        (LogStream::System, Some(LogLevel::Error))
    );
    assert!(
        end.line.starts_with("ERROR try 1 stopped after ")
            && end.line.contains("killed by the test; not retried"),
        "{}",
        end.line
    );
    s.stop().await;
}
