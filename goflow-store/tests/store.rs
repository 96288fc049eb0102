//! The store's behaviour, on SQLite always and on PostgreSQL when
//! `GOFLOW_TEST_DATABASE_URL` is set.

mod common;

use std::collections::HashSet;

use common::{dag_record, dag_with_run, databases, new_run, schedule, t, task};
use goflow_core::{RunState, TaskState};
use goflow_store::{
    LogStream, NewLogLine, RunChange, Store, StoreError, TaskChange, TaskUpdate, TryMeasurements,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    for db in databases().await {
        let b = db.backend();
        assert!(
            db.store.migrate().await.unwrap().is_empty(),
            "{b}: nothing left to apply"
        );
        let second = Store::connect(&db.url).await.unwrap();
        assert!(
            second.migrate().await.unwrap().is_empty(),
            "{b}: a second process applies nothing"
        );
        second
            .sync_dag(&dag_record("sales", "f1"), t(0))
            .await
            .unwrap();
        assert_eq!(
            db.store.list_dags().await.unwrap().len(),
            1,
            "{b}: both see one database"
        );
    }
}

#[tokio::test]
async fn an_in_memory_database_keeps_its_data_between_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    // Every embedded migration applies once, then none.
    assert!(!store.migrate().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
    store
        .sync_dag(&dag_record("sales", "f1"), t(0))
        .await
        .unwrap();
    let clone = store.clone();
    let dags = tokio::spawn(async move { clone.list_dags().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dags.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_dag_bumps_the_version_only_when_the_fingerprint_changes() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let first = s.sync_dag(&dag_record("sales", "f1"), t(0)).await.unwrap();
        assert_eq!(
            (first.version, first.created_date, first.last_updated_date),
            (1, t(0), t(0)),
            "{b}"
        );
        assert_eq!(first.tags, ["sales", "daily"], "{b}");
        assert!(!first.is_paused, "{b}");

        s.set_paused("sales", true).await.unwrap();
        let mut same = dag_record("sales", "f1");
        same.description = Some("now described".into());
        let again = s.sync_dag(&same, t(10)).await.unwrap();
        assert_eq!(again.version, 1, "{b}: same fingerprint, same version");
        assert_eq!(again.last_updated_date, t(0), "{b}");
        assert_eq!(again.last_seen_date, t(10), "{b}");
        assert_eq!(again.description.as_deref(), Some("now described"), "{b}");
        assert!(again.is_paused, "{b}: sync never unpauses");

        let changed = s.sync_dag(&dag_record("sales", "f2"), t(20)).await.unwrap();
        assert_eq!(changed.version, 2, "{b}");
        assert_eq!(changed.created_date, t(0), "{b}: created_date kept");
        assert_eq!(changed.last_updated_date, t(20), "{b}");
        assert!(changed.is_paused, "{b}");
        assert_eq!(s.get_dag("sales").await.unwrap(), Some(changed), "{b}");

        let err = s.set_paused("nope", true).await.unwrap_err();
        assert!(matches!(err, StoreError::DagNotFound { .. }), "{b}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_syncing_one_dag_at_once_all_succeed() {
    for db in databases().await {
        let b = db.backend();
        let syncs: Vec<_> = (0..6)
            .map(|i| {
                let s = db.store.clone();
                tokio::spawn(async move { s.sync_dag(&dag_record("race", "f1"), t(i)).await })
            })
            .collect();
        for sync in syncs {
            let dag = sync.await.unwrap().unwrap();
            assert_eq!(dag.version, 1, "{b}: the same structure, one version");
        }
        let dags = db.store.list_dags().await.unwrap();
        assert_eq!((dags.len(), dags[0].version), (1, 1), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_run_writes_the_run_and_its_tasks_or_nothing() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(
            s,
            "sales",
            0,
            vec![task("a", 1, "p"), task("b", 1, "p"), task("c", 1, "p")],
        )
        .await;
        assert_eq!(run.state, RunState::Queued, "{b}");
        assert_eq!(run.execution_date(), t(0), "{b}");
        let tis = s.task_instances(run.id).await.unwrap();
        let ids: Vec<_> = tis.iter().map(|ti| ti.task_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"], "{b}");
        assert!(
            tis.iter()
                .all(|ti| ti.state == TaskState::Pending && ti.try_number == 0),
            "{b}"
        );

        // Same logical date, another run id and more tasks: refused, nothing written.
        let mut dup = new_run("sales", 0, vec![task("x", 1, "p"), task("y", 1, "p")]);
        dup.run_id = "manual__again".into();
        let err = s.create_run(&dup, t(5)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::RunExists { run_id, .. } if run_id == "manual__again"),
            "{b}: {err}"
        );
        // Same run id, another date.
        let mut dup = new_run("sales", 1, vec![task("x", 1, "p")]);
        dup.run_id = run.run_id.clone();
        let err = s.create_run(&dup, t(5)).await.unwrap_err();
        assert!(matches!(err, StoreError::RunExists { .. }), "{b}: {err}");
        assert_eq!(s.list_runs("sales", 10, 0).await.unwrap().len(), 1, "{b}");
        assert!(
            s.find_run("sales", "manual__again")
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );

        // A failure after the run row was inserted rolls it back too.
        let bad = new_run("sales", 2, vec![task("x", 1, "p"), task("x", 1, "p")]);
        let err = s.create_run(&bad, t(5)).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Database {
                    op: "create_run",
                    ..
                }
            ),
            "{b}: {err}"
        );
        assert!(
            s.find_run("sales", &bad.run_id).await.unwrap().is_none(),
            "{b}: no half-written run"
        );
        assert_eq!(s.list_runs("sales", 10, 0).await.unwrap().len(), 1, "{b}");

        let err = s
            .create_run(&new_run("ghost", 0, vec![]), t(5))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::DagNotFound { .. }), "{b}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_counted_and_found() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let r0 = dag_with_run(s, "sales", 0, vec![task("a", 1, "p")]).await;
        let r1 = dag_with_run(s, "sales", 1, vec![task("a", 1, "p")]).await;
        let mut manual = new_run("sales", 5, vec![]);
        manual.run_id = "manual__1".into();
        manual.run_type = goflow_core::RunType::Manual;
        let r5 = s.create_run(&manual, t(3)).await.unwrap();
        assert!(s
            .set_run_state(r0.id, RunState::Queued, RunState::Running, t(4))
            .await
            .unwrap());
        assert!(s
            .set_run_state(r0.id, RunState::Running, RunState::Success, t(5))
            .await
            .unwrap());

        let page: Vec<i64> = s
            .list_runs("sales", 2, 0)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(page, [r5.id, r1.id], "{b}: latest first");
        let page: Vec<i64> = s
            .list_runs("sales", 2, 2)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(page, [r0.id], "{b}");
        let active: Vec<i64> = s
            .active_runs(Some("sales"))
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(active, [r1.id, r5.id], "{b}");
        assert_eq!(s.active_runs(None).await.unwrap().len(), 2, "{b}");
        let counts = s.count_runs_by_state("sales").await.unwrap();
        assert_eq!(counts.get(&RunState::Queued), Some(&2), "{b}");
        assert_eq!(counts.get(&RunState::Success), Some(&1), "{b}");
        assert_eq!(counts.get(&RunState::Failed), None, "{b}");
        let latest = s.latest_run("sales", None).await.unwrap().unwrap();
        assert_eq!(latest.id, r5.id, "{b}");
        let latest = s
            .latest_run("sales", Some(goflow_core::RunType::Scheduled))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.id, r1.id, "{b}");
        let done = s.get_run(r0.id).await.unwrap().unwrap();
        assert_eq!(
            (done.start_date, done.end_date),
            (Some(t(4)), Some(t(5))),
            "{b}"
        );
        assert_eq!(
            s.find_run("sales", "manual__1").await.unwrap().unwrap().id,
            r5.id,
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_refuses_stale_transitions() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "sales", 0, vec![task("a", 1, "p"), task("b", 1, "p")]).await;

        assert!(s
            .set_run_state(run.id, RunState::Queued, RunState::Running, t(3))
            .await
            .unwrap());
        assert!(
            !s.set_run_state(run.id, RunState::Queued, RunState::Running, t(4))
                .await
                .unwrap(),
            "{b}"
        );
        let err = s
            .set_run_state(run.id, RunState::Queued, RunState::Success, t(4))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Model(_)), "{b}: {err}");
        assert_eq!(
            s.get_run(run.id).await.unwrap().unwrap().start_date,
            Some(t(3)),
            "{b}"
        );

        let to_scheduled = || TaskUpdate::new(TaskState::Scheduled);
        assert!(s
            .update_task(run.id, "a", TaskState::Pending, to_scheduled(), t(5))
            .await
            .unwrap());
        assert!(
            !s.update_task(run.id, "a", TaskState::Pending, to_scheduled(), t(6))
                .await
                .unwrap(),
            "{b}: the second mover loses"
        );
        let err = s
            .update_task(
                run.id,
                "b",
                TaskState::Pending,
                TaskUpdate::new(TaskState::Running),
                t(6),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Model(_)), "{b}: {err}");
        let err = s
            .update_task(run.id, "zz", TaskState::Pending, to_scheduled(), t(6))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TaskNotFound { .. }), "{b}: {err}");

        // All or nothing: `a` is no longer pending, so `b` does not move either.
        let batch = ["b", "a"]
            .map(|id| TaskChange::new(id, TaskState::Pending, to_scheduled()))
            .to_vec();
        assert!(!s.update_tasks(run.id, batch, t(7)).await.unwrap(), "{b}");
        let b_state = s.task_instance(run.id, "b").await.unwrap().unwrap().state;
        assert_eq!(b_state, TaskState::Pending, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_finished_try_is_recorded() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "sales", 0, vec![task("a", 1, "p")]).await;
        schedule(s, run.id, &["a"]).await;

        let claimed = s.claim_tasks("s1", 10, t(10)).await.unwrap();
        assert_eq!(claimed.len(), 1, "{b}");
        assert_eq!(claimed[0].run_id, run.run_id, "{b}");
        assert_eq!(
            (claimed[0].instance.try_number, claimed[0].instance.state),
            (1, TaskState::Queued),
            "{b}"
        );
        let running = TaskUpdate {
            start_date: Some(t(11)),
            executor_handle: Some("pid-42".into()),
            ..TaskUpdate::new(TaskState::Running)
        };
        assert!(s
            .update_task(run.id, "a", TaskState::Queued, running, t(11))
            .await
            .unwrap());
        let measured = TryMeasurements {
            exit_code: Some(1),
            peak_memory_bytes: Some(1 << 20),
            cpu_user_ms: Some(120),
            cpu_system_ms: Some(30),
            cpu_request_millis: Some(250),
            memory_request_bytes: Some(256 << 20),
            cpu_limit_millis: Some(1000),
            memory_limit_bytes: Some(1 << 30),
        };
        let failed = TaskUpdate {
            end_date: Some(t(14)),
            error: Some("boom".into()),
            measurements: Some(measured),
            next_retry_date: Some(t(74)),
            ..TaskUpdate::new(TaskState::UpForRetry)
        };
        assert!(s
            .update_task(run.id, "a", TaskState::Running, failed, t(14))
            .await
            .unwrap());
        let ti = s.task_instance(run.id, "a").await.unwrap().unwrap();
        assert_eq!(
            (ti.duration_ms, ti.next_retry_date),
            (Some(3000), Some(t(74))),
            "{b}"
        );
        assert_eq!(ti.measurements, measured, "{b}");

        let up = TaskUpdate::new(TaskState::Scheduled);
        assert!(s
            .update_task(run.id, "a", TaskState::UpForRetry, up, t(74))
            .await
            .unwrap());
        let ti = s.task_instance(run.id, "a").await.unwrap().unwrap();
        assert_eq!(
            ti.next_retry_date, None,
            "{b}: cleared outside up_for_retry"
        );
        assert_eq!(
            ti.measurements, measured,
            "{b}: an update without measurements keeps them"
        );
        let claimed = s.claim_tasks("s1", 10, t(75)).await.unwrap();
        assert_eq!(claimed[0].instance.try_number, 2, "{b}");
        let next = &claimed[0].instance;
        assert_eq!(
            (next.last_error.as_deref(), next.measurements),
            (None, TryMeasurements::default()),
            "{b}: per-try fields reset"
        );
        assert!(s
            .update_task(
                run.id,
                "a",
                TaskState::Queued,
                TaskUpdate::new(TaskState::Running),
                t(76)
            )
            .await
            .unwrap());
        let ok = TaskUpdate {
            follow: Some(vec!["b".into()]),
            ..TaskUpdate::new(TaskState::Success)
        };
        assert!(s
            .update_task(run.id, "a", TaskState::Running, ok, t(80))
            .await
            .unwrap());

        let tries = s.task_tries(run.id, Some("a")).await.unwrap();
        assert_eq!(tries.len(), 2, "{b}");
        assert_eq!(
            (tries[0].try_number, tries[0].state),
            (1, TaskState::UpForRetry),
            "{b}"
        );
        assert_eq!(
            (tries[0].start_date, tries[0].end_date),
            (Some(t(11)), Some(t(14))),
            "{b}"
        );
        assert_eq!(tries[0].error.as_deref(), Some("boom"), "{b}");
        assert_eq!(tries[0].executor_handle.as_deref(), Some("pid-42"), "{b}");
        assert_eq!(
            tries[0].measurements, measured,
            "{b}: what the try used and its pod reserved is kept with the try"
        );
        assert_eq!(tries[1].measurements, TryMeasurements::default(), "{b}");
        assert_eq!(
            (tries[1].try_number, tries[1].state),
            (2, TaskState::Success),
            "{b}"
        );
        assert_eq!(
            (tries[1].start_date, tries[1].end_date),
            (Some(t(76)), Some(t(80))),
            "{b}"
        );
        assert_eq!(tries[1].duration_ms, Some(4000), "{b}");
        let ti = s.task_instance(run.id, "a").await.unwrap().unwrap();
        assert_eq!(ti.follow, Some(vec!["b".to_owned()]), "{b}");
        assert_eq!(ti.status().tries, 2, "{b}");
        let history = s.task_try_history("sales", "a", 1).await.unwrap();
        assert_eq!(history.len(), 1, "{b}");
        assert_eq!(history[0].try_number, 2, "{b}: newest first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_share_a_task_instance() {
    const RUNS: i64 = 3;
    const TASKS: usize = 100;
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let names: Vec<String> = (0..TASKS).map(|i| format!("t{i:03}")).collect();
        let mut expected = HashSet::new();
        for day in 0..RUNS {
            let run = dag_with_run(
                s,
                "wide",
                day,
                names.iter().map(|n| task(n, 1, "p")).collect(),
            )
            .await;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            schedule(s, run.id, &refs).await;
            for ti in s.task_instances(run.id).await.unwrap() {
                expected.insert(ti.id);
            }
        }
        assert_eq!(expected.len(), RUNS as usize * TASKS);

        let claimer = |id: &'static str| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = s.claim_tasks(id, 7, t(100)).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|c| c.instance));
                }
            })
        };
        let (one, two) = (claimer("s1"), claimer("s2"));
        let (one, two) = (one.await.unwrap(), two.await.unwrap());

        let ids_one: HashSet<i64> = one.iter().map(|ti| ti.id).collect();
        let ids_two: HashSet<i64> = two.iter().map(|ti| ti.id).collect();
        assert_eq!(ids_one.len(), one.len(), "{b}: s1 got an instance twice");
        assert_eq!(ids_two.len(), two.len(), "{b}: s2 got an instance twice");
        let shared: Vec<_> = ids_one.intersection(&ids_two).collect();
        assert!(shared.is_empty(), "{b}: claimed by both: {shared:?}");
        let all: HashSet<i64> = ids_one.union(&ids_two).copied().collect();
        assert_eq!(all, expected, "{b}: together they claim everything");
        eprintln!("{b}: s1 claimed {}, s2 claimed {}", one.len(), two.len());

        for day in 0..RUNS {
            let run = s
                .find_run("wide", &new_run("wide", day, vec![]).run_id)
                .await
                .unwrap()
                .unwrap();
            for ti in s.task_instances(run.id).await.unwrap() {
                let owner = if ids_one.contains(&ti.id) { "s1" } else { "s2" };
                assert_eq!(ti.state, TaskState::Queued, "{b}");
                assert_eq!(
                    ti.try_number, 1,
                    "{b}: {} was queued more than once",
                    ti.task_id
                );
                assert_eq!(ti.claimed_by.as_deref(), Some(owner), "{b}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_priority_and_respect_pools() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let tasks = vec![
            task("low", 1, "big"),
            task("five_a", 5, "big"),
            task("mid", 3, "big"),
            task("five_b", 5, "big"),
            task("top", 10, "big"),
        ];
        let run = dag_with_run(s, "prio", 0, tasks).await;
        schedule(s, run.id, &["low", "five_a", "mid", "five_b", "top"]).await;
        let order = |claimed: Vec<goflow_store::ClaimedTask>| -> Vec<String> {
            claimed.into_iter().map(|c| c.instance.task_id).collect()
        };
        assert_eq!(
            order(s.claim_tasks("s1", 2, t(10)).await.unwrap()),
            ["top", "five_a"],
            "{b}"
        );
        assert_eq!(
            order(s.claim_tasks("s1", 2, t(10)).await.unwrap()),
            ["five_b", "mid"],
            "{b}"
        );
        assert_eq!(
            order(s.claim_tasks("s1", 2, t(10)).await.unwrap()),
            ["low"],
            "{b}"
        );

        // A pool of 2 slots, one already taken by a queued task.
        s.set_pool("small", 2, "two at a time").await.unwrap();
        let run = dag_with_run(
            s,
            "pooled",
            0,
            vec![
                task("first", 1, "small"),
                task("x", 9, "small"),
                task("y", 8, "small"),
                task("free", 1, "other"),
            ],
        )
        .await;
        schedule(s, run.id, &["first"]).await;
        assert_eq!(
            order(s.claim_tasks("s1", 10, t(20)).await.unwrap()),
            ["first"],
            "{b}"
        );
        schedule(s, run.id, &["x", "y", "free"]).await;
        assert_eq!(
            order(s.claim_tasks("s1", 10, t(21)).await.unwrap()),
            ["x", "free"],
            "{b}: one slot left in `small`"
        );
        assert!(
            s.claim_tasks("s1", 10, t(22)).await.unwrap().is_empty(),
            "{b}: `small` is full"
        );
        let done = TaskUpdate::new(TaskState::Success);
        assert!(s
            .update_task(run.id, "first", TaskState::Queued, done, t(23))
            .await
            .unwrap());
        assert_eq!(
            order(s.claim_tasks("s1", 10, t(24)).await.unwrap()),
            ["y"],
            "{b}: a slot freed"
        );
        assert_eq!(s.list_pools().await.unwrap()[0].slots, 2, "{b}");
        s.set_pool("small", 3, "resized").await.unwrap();
        let pools = s.list_pools().await.unwrap();
        assert_eq!(
            pools
                .iter()
                .map(|p| (p.name.as_str(), p.slots, p.description.as_str()))
                .collect::<Vec<_>>(),
            [("small", 3, "resized")],
            "{b}: set_pool resizes the pool it names"
        );
        assert!(s.delete_pool("small").await.unwrap(), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_logs_round_trip() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "sales", 0, vec![task("a", 1, "p"), task("b", 1, "p")]).await;

        assert_eq!(s.get_output(run.id, "a").await.unwrap(), None, "{b}");
        let value = serde_json::json!({"rows": [{"region": "eu", "amount": 12.5}], "note": "é ✓"});
        s.put_output(run.id, "a", &value).await.unwrap();
        assert_eq!(s.get_output(run.id, "a").await.unwrap(), Some(value), "{b}");
        s.put_output(run.id, "a", &serde_json::json!(42))
            .await
            .unwrap();
        assert_eq!(
            s.get_output(run.id, "a").await.unwrap(),
            Some(serde_json::json!(42)),
            "{b}"
        );
        let err = s
            .put_output(run.id + 1000, "a", &serde_json::json!(1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::RunNotFound { .. }), "{b}: {err}");

        let line = |task: &str, try_number, secs, stream, text: &str| NewLogLine {
            run: run.id,
            task_id: task.into(),
            try_number,
            timestamp: t(secs),
            stream,
            line: text.into(),
        };
        s.append_logs(vec![
            line("a", 1, 1, LogStream::System, "queued"),
            line("a", 1, 2, LogStream::Stdout, "reading 12 rows ✓"),
            line("b", 1, 2, LogStream::Stdout, "other task"),
        ])
        .await
        .unwrap();
        s.append_logs(vec![line(
            "a",
            1,
            3,
            LogStream::Stderr,
            "warning: late data",
        )])
        .await
        .unwrap();
        s.append_logs(vec![line("a", 2, 9, LogStream::Stdout, "second try")])
            .await
            .unwrap();
        s.append_logs(vec![]).await.unwrap();

        let first = s.read_logs(run.id, "a", Some(1), 0, 100).await.unwrap();
        let texts: Vec<_> = first.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(
            texts,
            [
                (LogStream::System, "queued"),
                (LogStream::Stdout, "reading 12 rows ✓"),
                (LogStream::Stderr, "warning: late data")
            ],
            "{b}"
        );
        assert_eq!(first[1].timestamp, t(2), "{b}");
        let next = s
            .read_logs(run.id, "a", Some(1), first[0].id, 1)
            .await
            .unwrap();
        assert_eq!(next.len(), 1, "{b}");
        assert_eq!(next[0].line, "reading 12 rows ✓", "{b}");
        let all = s.read_logs(run.id, "a", None, 0, 100).await.unwrap();
        assert_eq!(all.len(), 4, "{b}");
        assert_eq!(all[3].try_number, 2, "{b}");
        let tail = s
            .read_logs(run.id, "a", None, all[3].id, 100)
            .await
            .unwrap();
        assert!(tail.is_empty(), "{b}");
        // The task's own output, per try: goflow's `system` lines do not
        // count.
        assert_eq!(
            (
                s.count_output_lines(run.id, "a", 1).await.unwrap(),
                s.count_output_lines(run.id, "a", 2).await.unwrap(),
                s.count_output_lines(run.id, "a", 3).await.unwrap(),
            ),
            (2, 1, 0),
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_tasks_are_those_of_silent_schedulers() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(
            s,
            "sales",
            0,
            vec![task("a", 3, "p"), task("b", 2, "p"), task("c", 1, "p")],
        )
        .await;
        schedule(s, run.id, &["a", "b", "c"]).await;
        s.heartbeat("dead", "host-1", 100, t(0)).await.unwrap();
        s.heartbeat("alive", "host-2", 200, t(0)).await.unwrap();
        assert_eq!(
            s.claim_tasks("dead", 2, t(1)).await.unwrap().len(),
            2,
            "{b}"
        );
        assert_eq!(
            s.claim_tasks("alive", 2, t(1)).await.unwrap().len(),
            1,
            "{b}"
        );
        s.heartbeat("alive", "host-2", 200, t(60)).await.unwrap();
        let schedulers = s.list_schedulers().await.unwrap();
        assert_eq!(schedulers.len(), 2, "{b}");
        assert_eq!(
            (schedulers[0].id.as_str(), schedulers[0].started_date),
            ("alive", t(0)),
            "{b}"
        );
        assert_eq!(schedulers[0].heartbeat_date, t(60), "{b}");

        let orphans = |cutoff| async move {
            let mut ids: Vec<String> = s
                .orphaned_tasks(cutoff)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.task_id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(orphans(t(30)).await, ["a", "b"], "{b}");
        assert!(
            orphans(t(0)).await.is_empty(),
            "{b}: both heartbeat at the cutoff"
        );

        // A finished task is nobody's orphan.
        let start = TaskUpdate::new(TaskState::Running);
        assert!(s
            .update_task(run.id, "a", TaskState::Queued, start, t(2))
            .await
            .unwrap());
        let done = TaskUpdate::new(TaskState::Success);
        assert!(s
            .update_task(run.id, "a", TaskState::Running, done, t(3))
            .await
            .unwrap());
        assert_eq!(orphans(t(30)).await, ["b"], "{b}");

        assert!(
            s.adopt_task(run.id, "b", Some("dead"), "alive", t(61))
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !s.adopt_task(run.id, "b", Some("dead"), "alive", t(61))
                .await
                .unwrap(),
            "{b}: once only"
        );
        assert!(orphans(t(30)).await.is_empty(), "{b}");
        let owner = s
            .task_instance(run.id, "b")
            .await
            .unwrap()
            .unwrap()
            .claimed_by;
        assert_eq!(owner.as_deref(), Some("alive"), "{b}");

        assert!(s.remove_scheduler("alive").await.unwrap(), "{b}");
        assert_eq!(
            orphans(t(30)).await,
            ["b", "c"],
            "{b}: an unknown owner is no owner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_tasks_resets_them_and_reopens_the_run() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "sales", 0, vec![task("a", 1, "p"), task("b", 1, "p")]).await;
        assert!(s
            .set_run_state(run.id, RunState::Queued, RunState::Running, t(2))
            .await
            .unwrap());
        schedule(s, run.id, &["a", "b"]).await;
        s.claim_tasks("s1", 10, t(3)).await.unwrap();
        for id in ["a", "b"] {
            let start = TaskUpdate::new(TaskState::Running);
            assert!(s
                .update_task(run.id, id, TaskState::Queued, start, t(4))
                .await
                .unwrap());
            let done = TaskUpdate {
                measurements: Some(TryMeasurements {
                    exit_code: Some(0),
                    memory_request_bytes: Some(1 << 20),
                    ..TryMeasurements::default()
                }),
                ..TaskUpdate::new(TaskState::Success)
            };
            assert!(s
                .update_task(run.id, id, TaskState::Running, done, t(5))
                .await
                .unwrap());
            s.put_output(run.id, id, &serde_json::json!(id))
                .await
                .unwrap();
        }
        assert!(s
            .set_run_state(run.id, RunState::Running, RunState::Success, t(6))
            .await
            .unwrap());

        assert_eq!(
            s.clear_tasks(run.id, &["b".into()], t(7)).await.unwrap(),
            1,
            "{b}"
        );
        let cleared = s.task_instance(run.id, "b").await.unwrap().unwrap();
        assert_eq!(cleared.state, TaskState::Pending, "{b}");
        assert_eq!(
            (cleared.try_number, cleared.tries()),
            (1, 0),
            "{b}: a fresh round of tries"
        );
        assert_eq!((cleared.end_date, cleared.claimed_by), (None, None), "{b}");
        assert_eq!(
            cleared.measurements,
            TryMeasurements::default(),
            "{b}: the last try's figures go with it"
        );
        assert_eq!(s.get_output(run.id, "b").await.unwrap(), None, "{b}");
        assert_eq!(
            s.get_output(run.id, "a").await.unwrap(),
            Some(serde_json::json!("a")),
            "{b}"
        );
        let reopened = s.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(
            (reopened.state, reopened.end_date),
            (RunState::Queued, None),
            "{b}"
        );
        assert_eq!(
            s.task_tries(run.id, Some("b")).await.unwrap().len(),
            1,
            "{b}: history kept"
        );

        // The next try of b is try 2.
        schedule(s, run.id, &["b"]).await;
        assert_eq!(
            s.claim_tasks("s1", 10, t(8)).await.unwrap()[0]
                .instance
                .try_number,
            2,
            "{b}"
        );

        let err = s
            .clear_tasks(run.id, &["a".into(), "b".into()], t(9))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::TasksActive { tasks, .. } if tasks == &["b"]),
            "{b}: {err}"
        );
        let a = s.task_instance(run.id, "a").await.unwrap().unwrap();
        assert_eq!(a.state, TaskState::Success, "{b}: nothing cleared");
        let err = s
            .clear_tasks(run.id, &["nope".into()], t(9))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TaskNotFound { .. }), "{b}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_values_in_rows_are_errors_naming_them() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "sales", 0, vec![task("a", 1, "p")]).await;
        db.execute_raw("UPDATE task_instances SET state = 'exploded'");
        let err = s.task_instances(run.id).await.unwrap_err().to_string();
        assert!(
            err.contains("'exploded'") && err.contains("task_instances.state"),
            "{b}: {err}"
        );
        db.execute_raw("UPDATE dag_runs SET status = 'weird'");
        let err = s.get_run(run.id).await.unwrap_err().to_string();
        assert!(
            err.contains("'weird'") && err.contains("dag_runs.status"),
            "{b}: {err}"
        );
    }
}

#[tokio::test]
async fn bad_urls_give_errors_naming_the_url_and_the_cause() {
    let err = Store::connect("postgres://goflow:s3cret@127.0.0.1:1/goflow")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{msg}");
    assert!(
        msg.contains("postgres://goflow:***@127.0.0.1:1/goflow"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret"), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "the cause: {msg}");

    let err = Store::connect("mysql://root@localhost/goflow")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/missing/dir/goflow.db", dir.path().display());
    let err = Store::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains("missing/dir/goflow.db"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_owned_by_one_live_scheduler_at_a_time() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let mut runs = Vec::new();
        for day in 0..6 {
            runs.push(
                dag_with_run(s, "owned", day, vec![task("a", 1, "p")])
                    .await
                    .id,
            );
        }
        s.heartbeat("s1", "host", 1, t(100)).await.unwrap();
        s.heartbeat("s2", "host", 2, t(100)).await.unwrap();

        // Two claimers at once split the runs without sharing one.
        let (one, two) = tokio::join!(
            s.claim_runs("s1", 4, t(90), t(100)),
            s.claim_runs("s2", 4, t(90), t(100))
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        let ids_one: HashSet<i64> = one.iter().map(|r| r.id).collect();
        let ids_two: HashSet<i64> = two.iter().map(|r| r.id).collect();
        assert!(ids_one.is_disjoint(&ids_two), "{b}: a run claimed by both");
        assert_eq!(ids_one.len() + ids_two.len(), 6, "{b}: all runs claimed");
        assert!(
            one.iter().all(|r| r.claimed_by.as_deref() == Some("s1")),
            "{b}"
        );

        // Nothing is left for either while both are alive.
        assert!(
            s.claim_runs("s1", 10, t(90), t(101))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert!(
            s.claim_runs("s2", 10, t(90), t(101))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );

        // s2 stops heartbeating: after the cutoff, s1 takes its runs over.
        s.heartbeat("s1", "host", 1, t(200)).await.unwrap();
        let taken = s.claim_runs("s1", 10, t(150), t(200)).await.unwrap();
        let taken: HashSet<i64> = taken.iter().map(|r| r.id).collect();
        assert_eq!(taken, ids_two, "{b}: the dead scheduler's runs move");

        // A finished run is never claimed; a released one is.
        let first = runs[0];
        assert!(
            s.release_run(first, "s1").await.unwrap() || s.release_run(first, "s2").await.unwrap()
        );
        let again = s.claim_runs("s1", 10, t(150), t(201)).await.unwrap();
        assert_eq!(
            again.iter().map(|r| r.id).collect::<Vec<_>>(),
            [first],
            "{b}"
        );
        s.set_run_state(first, RunState::Queued, RunState::Running, t(202))
            .await
            .unwrap();
        s.set_run_state(first, RunState::Running, RunState::Success, t(203))
            .await
            .unwrap();
        s.release_run(first, "s1").await.unwrap();
        assert!(
            s.claim_runs("s1", 10, t(150), t(204))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_claims_can_be_limited_to_some_runs() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let r1 = dag_with_run(s, "two", 0, vec![task("a", 1, "p"), task("b", 1, "p")]).await;
        let r2 = dag_with_run(s, "two", 1, vec![task("a", 1, "p")]).await;
        schedule(s, r1.id, &["a", "b"]).await;
        schedule(s, r2.id, &["a"]).await;
        let got = s
            .claim_tasks_in("s1", &[r2.id], &Default::default(), 10, t(10))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "{b}");
        assert_eq!(got[0].instance.run, r2.id, "{b}");
        let got = s
            .claim_tasks_in("s1", &[r1.id], &Default::default(), 1, t(10))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "{b}: the limit holds");
        assert!(
            s.claim_tasks_in("s1", &[], &Default::default(), 10, t(10))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert_eq!(
            s.claim_tasks("s1", 10, t(10)).await.unwrap().len(),
            1,
            "{b}: one left in r1"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_is_written_with_its_success_or_not_at_all() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "out", 0, vec![task("a", 1, "p"), task("b", 1, "p")]).await;
        schedule(s, run.id, &["a", "b"]).await;
        s.claim_tasks("s1", 10, t(3)).await.unwrap();
        let success = |id: &str, v: serde_json::Value| TaskChange {
            output: Some(v),
            ..TaskChange::new(id, TaskState::Queued, TaskUpdate::new(TaskState::Success))
        };
        // `b` is not running, so the batch fails and `a`'s output is not kept.
        let stale = vec![
            success("a", serde_json::json!(1)),
            TaskChange::new("b", TaskState::Running, TaskUpdate::new(TaskState::Success)),
        ];
        assert!(!s.update_tasks(run.id, stale, t(4)).await.unwrap(), "{b}");
        assert_eq!(s.get_output(run.id, "a").await.unwrap(), None, "{b}");
        assert!(s
            .update_tasks(run.id, vec![success("a", serde_json::json!([1, 2]))], t(5))
            .await
            .unwrap());
        assert_eq!(
            s.get_output(run.id, "a").await.unwrap(),
            Some(serde_json::json!([1, 2])),
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_runs_applies_each_run_all_or_nothing_in_one_call() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let one = dag_with_run(s, "sales", 0, vec![task("a", 1, "p"), task("b", 1, "p")]).await;
        let two = dag_with_run(s, "sales", 1, vec![task("a", 1, "p"), task("b", 1, "p")]).await;
        assert_eq!(s.claim_runs("s1", 10, t(0), t(2)).await.unwrap().len(), 2);
        let to_scheduled =
            |id: &str, from| TaskChange::new(id, from, TaskUpdate::new(TaskState::Scheduled));
        let applied = s
            .update_runs(
                vec![
                    // Starts run one and schedules its tasks.
                    RunChange {
                        state: Some((RunState::Queued, RunState::Running)),
                        ..RunChange::tasks(
                            one.id,
                            vec![
                                to_scheduled("a", TaskState::Pending),
                                to_scheduled("b", TaskState::Pending),
                            ],
                        )
                    },
                    // Run two's second change expects a state `b` is not in:
                    // its first change is undone with it.
                    RunChange::tasks(
                        two.id,
                        vec![
                            to_scheduled("a", TaskState::Pending),
                            TaskChange::new(
                                "b",
                                TaskState::Scheduled,
                                TaskUpdate::new(TaskState::Queued),
                            ),
                        ],
                    ),
                ],
                t(3),
            )
            .await
            .unwrap();
        assert_eq!(applied, [true, false], "{b}");
        let states = |run: i64| async move {
            s.task_instances(run)
                .await
                .unwrap()
                .into_iter()
                .map(|ti| ti.state)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states(one.id).await,
            [TaskState::Scheduled, TaskState::Scheduled],
            "{b}"
        );
        assert_eq!(
            states(two.id).await,
            [TaskState::Pending, TaskState::Pending],
            "{b}: all or nothing per run"
        );
        let run = s.get_run(one.id).await.unwrap().unwrap();
        assert_eq!(
            (run.state, run.start_date),
            (RunState::Running, Some(t(3))),
            "{b}"
        );

        // A run's end and letting go of it, together; a refused move of the
        // run's state undoes the run's task changes too.
        let applied = s
            .update_runs(
                vec![
                    RunChange {
                        state: Some((RunState::Running, RunState::Failed)),
                        release_by: Some("s1".into()),
                        ..RunChange::tasks(one.id, vec![])
                    },
                    RunChange {
                        state: Some((RunState::Running, RunState::Success)),
                        ..RunChange::tasks(two.id, vec![to_scheduled("a", TaskState::Pending)])
                    },
                ],
                t(4),
            )
            .await
            .unwrap();
        assert_eq!(applied, [true, false], "{b}");
        let run = s.get_run(one.id).await.unwrap().unwrap();
        assert_eq!(
            (run.state, run.end_date, run.claimed_by),
            (RunState::Failed, Some(t(4)), None),
            "{b}"
        );
        assert_eq!(states(two.id).await[0], TaskState::Pending, "{b}");
        assert_eq!(
            s.get_run(two.id)
                .await
                .unwrap()
                .unwrap()
                .claimed_by
                .as_deref(),
            Some("s1"),
            "{b}: still held"
        );

        // Moves no state machine allows are refused before anything runs.
        let err = s
            .update_runs(
                vec![RunChange {
                    state: Some((RunState::Success, RunState::Running)),
                    ..RunChange::tasks(two.id, vec![])
                }],
                t(5),
            )
            .await;
        assert!(err.is_err(), "{b}");
        assert_eq!(
            s.update_runs(vec![], t(5)).await.unwrap(),
            Vec::<bool>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_records_the_executor_named_for_each_task() {
    use goflow_core::ExecutorKind;
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        // Created for the in-process executor (`common::task`).
        let run = dag_with_run(s, "exec", 0, vec![task("a", 2, "p"), task("b", 1, "p")]).await;
        schedule(s, run.id, &["a", "b"]).await;
        let executors = [("a".to_owned(), ExecutorKind::LocalProcess)].into();
        let got = s
            .claim_tasks_in("s1", &[run.id], &executors, 10, t(10))
            .await
            .unwrap();
        let claimed: Vec<_> = got
            .iter()
            .map(|c| {
                let i = &c.instance;
                (i.task_id.as_str(), i.executor, i.state, i.try_number)
            })
            .collect();
        assert_eq!(
            claimed,
            [
                ("a", ExecutorKind::LocalProcess, TaskState::Queued, 1),
                ("b", ExecutorKind::InProcess, TaskState::Queued, 1),
            ],
            "{b}: highest priority first; `b` keeps the stored executor"
        );
        assert!(got.iter().all(|c| c.run_id == run.run_id), "{b}");
        let stored: Vec<_> = s
            .task_instances(run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.task_id, i.executor, i.claimed_by))
            .collect();
        assert_eq!(
            stored,
            [
                ("a".into(), ExecutorKind::LocalProcess, Some("s1".into())),
                ("b".into(), ExecutorKind::InProcess, Some("s1".into())),
            ],
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_written_with_run_changes_are_kept_whatever_the_changes_give() {
    for db in databases().await {
        let (s, b) = (&db.store, db.backend());
        let run = dag_with_run(s, "logged", 0, vec![task("a", 1, "p")]).await;
        let line = |text: &str| NewLogLine {
            run: run.id,
            task_id: "a".into(),
            try_number: 1,
            timestamp: t(3),
            stream: LogStream::System,
            line: text.into(),
        };
        // `a` is pending, not scheduled: the change is refused, the lines
        // are written.
        let refused = RunChange::tasks(
            run.id,
            vec![TaskChange::new(
                "a",
                TaskState::Scheduled,
                TaskUpdate::new(TaskState::Queued),
            )],
        );
        let applied = s
            .update_runs_with_logs(vec![refused], vec![line("one"), line("two")], t(3))
            .await
            .unwrap();
        assert_eq!(applied, [false], "{b}");
        // Lines alone.
        let applied = s
            .update_runs_with_logs(vec![], vec![line("three")], t(4))
            .await
            .unwrap();
        assert!(applied.is_empty(), "{b}");
        let lines: Vec<String> = s
            .read_logs(run.id, "a", Some(1), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(lines, ["one", "two", "three"], "{b}");
        assert_eq!(
            s.task_instance(run.id, "a").await.unwrap().unwrap().state,
            TaskState::Pending,
            "{b}"
        );
    }
}
