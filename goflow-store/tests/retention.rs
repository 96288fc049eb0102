//! Retention: `Store::clean` deletes the finished runs that ended before a
//! date with everything that belongs to them, in batches, and keeps the
//! rest; on SQLite always and on PostgreSQL when `GOFLOW_TEST_DATABASE_URL`
//! is set.

mod common;

use chrono::{DateTime, Utc};
use common::{dag_with_run, databases, t, task};
use goflow_core::{RunState, TaskState};
use goflow_store::testing::TestDb;
use goflow_store::{
    CleanCounts, CleanOptions, CleanReport, LogStream, NewLogLine, RunRow, Store, TaskUpdate,
};

fn days(n: i64) -> DateTime<Utc> {
    t(n * 86_400)
}

async fn walk(s: &Store, run: i64, task: &str, path: &[TaskState], at: DateTime<Utc>) {
    let mut from = TaskState::Pending;
    for &to in path {
        assert!(
            s.update_task(run, task, from, TaskUpdate::new(to), at)
                .await
                .unwrap(),
            "{task}: {from} -> {to}"
        );
        from = to;
    }
}

/// How a test run ends.
#[derive(Clone, Copy)]
enum End {
    /// Finished in this state at this time.
    Finished(RunState, DateTime<Utc>),
    /// Started at this time, still running.
    Running(DateTime<Utc>),
    /// Never started.
    Queued,
}

/// A run of `dag` for `day` with tasks `a` (succeeded, one try, an output,
/// three log lines) and `b` (pending, or running with `b_running`), an
/// alert about it, and the end `end`.
async fn run(db: &TestDb, dag: &str, day: i64, end: End, b_running: bool) -> RunRow {
    use TaskState::{Queued, Running, Scheduled, Success};
    let s = &db.store;
    let run = dag_with_run(s, dag, day, vec![task("a", 1, "p"), task("b", 1, "p")]).await;
    walk(
        s,
        run.id,
        "a",
        &[Scheduled, Queued, Running, Success],
        days(day),
    )
    .await;
    if b_running {
        walk(s, run.id, "b", &[Scheduled, Queued, Running], days(day)).await;
    }
    s.put_output(run.id, "a", &serde_json::json!(day))
        .await
        .unwrap();
    let line = |text: &str| NewLogLine {
        run: run.id,
        task_id: "a".into(),
        try_number: 1,
        timestamp: days(day),
        stream: LogStream::Stdout,
        line: text.into(),
    };
    s.append_logs(vec![line("one"), line("two"), line("three")])
        .await
        .unwrap();
    db.execute_raw(&format!(
        "INSERT INTO alerts (dedupe_key, channel, kind, dag_id, run_id, payload, status, \
         attempts, next_attempt_date, created_date, last_updated_date) \
         VALUES ('run_failed:{id}', 'webhook', 'run_failed', '{dag}', '{run_id}', '{{}}', \
         'sent', 1, 0, 0, 0)",
        id = run.id,
        run_id = run.run_id,
    ));
    match end {
        End::Queued => {}
        End::Running(at) => {
            assert!(s
                .set_run_state(run.id, RunState::Queued, RunState::Running, at)
                .await
                .unwrap());
        }
        End::Finished(state, at) => {
            assert!(s
                .set_run_state(run.id, RunState::Queued, RunState::Running, at)
                .await
                .unwrap());
            assert!(s
                .set_run_state(run.id, RunState::Running, state, at)
                .await
                .unwrap());
        }
    }
    s.get_run(run.id).await.unwrap().unwrap()
}

/// The runs of the tests, cleaned before day 20.
struct Runs {
    /// Finished before day 20: deleted.
    old: Vec<RunRow>,
    /// Of them, those of `audit`.
    old_audit: Vec<RunRow>,
    /// Kept: running, queued, finished after day 20, finished with a task
    /// still running.
    kept: Vec<RunRow>,
}

async fn runs(db: &TestDb) -> Runs {
    let old_success = run(
        db,
        "sales",
        0,
        End::Finished(RunState::Success, days(10)),
        false,
    )
    .await;
    let old_failed = run(
        db,
        "sales",
        1,
        End::Finished(RunState::Failed, days(11)),
        false,
    )
    .await;
    let running = run(db, "sales", 2, End::Running(days(2)), false).await;
    let queued = run(db, "sales", 3, End::Queued, false).await;
    let recent = run(
        db,
        "sales",
        4,
        End::Finished(RunState::Success, days(30)),
        false,
    )
    .await;
    let busy = run(
        db,
        "sales",
        5,
        End::Finished(RunState::Failed, days(12)),
        true,
    )
    .await;
    let audit = run(
        db,
        "audit",
        0,
        End::Finished(RunState::Success, days(13)),
        false,
    )
    .await;
    Runs {
        old: vec![old_success, old_failed, audit.clone()],
        old_audit: vec![audit],
        kept: vec![running, queued, recent, busy],
    }
}

/// What one old run counts: itself, 2 task instances, `tries` tries, an
/// output, 3 log lines and an alert.
fn per_run(n: u64, tries: u64) -> CleanCounts {
    CleanCounts {
        runs: n,
        task_instances: 2 * n,
        task_tries: tries * n,
        task_outputs: n,
        task_logs: 3 * n,
        alerts: n,
    }
}

/// Whether the run and each thing that belongs to it is still stored.
async fn present(s: &Store, run: &RunRow) -> [bool; 6] {
    [
        s.get_run(run.id).await.unwrap().is_some(),
        !s.task_instances(run.id).await.unwrap().is_empty(),
        !s.task_tries(run.id, None).await.unwrap().is_empty(),
        s.get_output(run.id, "a").await.unwrap().is_some(),
        !s.read_logs(run.id, "a", None, 0, 100)
            .await
            .unwrap()
            .is_empty(),
        s.alert_recorded("run_failed", &run.dag_id, &run.run_id)
            .await
            .unwrap(),
    ]
}

fn options(before: DateTime<Utc>) -> CleanOptions {
    CleanOptions::new(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_what_a_clean_deletes_and_deletes_nothing() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let runs = runs(&db).await;
        let tries = s.task_tries(runs.old[0].id, None).await.unwrap().len() as u64;
        assert!(tries >= 1, "{b}: the finished task's try is recorded");

        let mut seen = Vec::new();
        let dry = s
            .clean(
                &CleanOptions {
                    dry_run: true,
                    ..options(days(20))
                },
                |r: &CleanReport| seen.push(r.total().runs),
            )
            .await
            .unwrap();
        assert!(dry.dry_run, "{b}");
        assert_eq!(
            dry.dags
                .iter()
                .map(|(d, c)| (d.as_str(), *c))
                .collect::<Vec<_>>(),
            [("audit", per_run(1, tries)), ("sales", per_run(2, tries))],
            "{b}"
        );
        assert_eq!(seen.last(), Some(&3), "{b}");
        for run in runs.old.iter().chain(&runs.kept) {
            assert_eq!(present(s, run).await, [true; 6], "{b}: {}", run.run_id);
        }

        // The real clean deletes exactly what the dry run counted.
        let done = s.clean(&options(days(20)), |_| {}).await.unwrap();
        assert!(!done.dry_run, "{b}");
        assert_eq!(done.dags, dry.dags, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_deletes_old_finished_runs_in_batches_and_keeps_the_rest() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let runs = runs(&db).await;
        let tries = s.task_tries(runs.old[0].id, None).await.unwrap().len() as u64;

        let mut progress = Vec::new();
        let report = s
            .clean(
                &CleanOptions {
                    batch_size: 1,
                    ..options(days(20))
                },
                |r| progress.push((r.batches, r.total().runs)),
            )
            .await
            .unwrap();
        assert_eq!(report.total(), per_run(3, tries), "{b}");
        assert_eq!(report.batches, 3, "{b}: one run per batch");
        assert_eq!(progress, [(1, 1), (2, 2), (3, 3)], "{b}");
        for run in &runs.old {
            assert_eq!(present(s, run).await, [false; 6], "{b}: {}", run.run_id);
        }
        for run in &runs.kept {
            assert_eq!(present(s, run).await, [true; 6], "{b}: {}", run.run_id);
        }

        // Nothing left to clean; a later date takes the recent run (the
        // one with a running task is still kept).
        let again = s.clean(&options(days(20)), |_| {}).await.unwrap();
        assert_eq!(again, CleanReport::default(), "{b}");
        let later = s.clean(&options(days(40)), |_| {}).await.unwrap();
        assert_eq!(later.total().runs, 1, "{b}");
        assert!(s.get_run(runs.kept[2].id).await.unwrap().is_none(), "{b}");
        for run in [&runs.kept[0], &runs.kept[1], &runs.kept[3]] {
            assert!(s.get_run(run.id).await.unwrap().is_some(), "{b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_of_one_dag_leaves_the_others() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let runs = runs(&db).await;
        let report = s
            .clean(
                &CleanOptions {
                    dag_id: Some("audit".into()),
                    ..options(days(20))
                },
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(report.dags.keys().collect::<Vec<_>>(), ["audit"], "{b}");
        assert_eq!(report.total().runs, 1, "{b}");
        assert_eq!(present(s, &runs.old_audit[0]).await, [false; 6], "{b}");
        for run in runs.old.iter().filter(|r| r.dag_id == "sales") {
            assert_eq!(present(s, run).await, [true; 6], "{b}: {}", run.run_id);
        }
    }
}
