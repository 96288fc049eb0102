//! The store's queries for the web UI and API, on SQLite and (when
//! configured) PostgreSQL.

mod common;

use common::*;
use goflow_core::{RunState, TaskState};
use goflow_store::{DagQuery, MarkOutcome, StoreError, TaskUpdate, WebSession};

fn query(text: Option<&str>, tag: Option<&str>, limit: i64, offset: i64) -> DagQuery {
    DagQuery {
        text: text.map(str::to_owned),
        tag: tag.map(str::to_owned),
        paused: None,
        limit,
        offset,
    }
}

#[tokio::test]
async fn dag_pages_filter_by_text_tag_and_pause_and_count_every_match() {
    for db in databases().await {
        let s = &db.store;
        for i in 0..12 {
            let mut rec = dag_record(&format!("dag-{i:02}"), "f");
            rec.tags = vec![if i % 3 == 0 { "ml" } else { "etl" }.to_owned()];
            rec.description = Some(format!("Pipeline number {i}"));
            s.sync_dag(&rec, t(0)).await.unwrap();
        }
        let mut odd = dag_record("odd_one%", "f");
        odd.tags = vec!["a\"b".to_owned(), "mlx".to_owned()];
        odd.description = None;
        s.sync_dag(&odd, t(0)).await.unwrap();
        s.set_paused("dag-01", true).await.unwrap();

        let page = s.dag_page(&query(None, None, 5, 10)).await.unwrap();
        assert_eq!(page.total, 13);
        let ids: Vec<_> = page.dags.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["dag-10", "dag-11", "odd_one%"]);

        let ml = s.dag_page(&query(None, Some("ml"), 50, 0)).await.unwrap();
        assert_eq!(ml.total, 4, "a whole tag, not a prefix of `mlx`");
        let quoted = s.dag_page(&query(None, Some("a\"b"), 50, 0)).await.unwrap();
        assert_eq!(quoted.dags[0].id, "odd_one%");
        let text = s
            .dag_page(&query(Some("NUMBER 1"), None, 50, 0))
            .await
            .unwrap();
        assert_eq!(text.total, 3, "number 1, 10 and 11, any case");
        let literal = s
            .dag_page(&query(Some("_one%"), None, 50, 0))
            .await
            .unwrap();
        assert_eq!(literal.total, 1, "wildcards are literal");
        let none = s.dag_page(&query(Some("g_0"), None, 50, 0)).await.unwrap();
        assert_eq!(none.total, 0, "`_` is not a wildcard");
        let paused = s
            .dag_page(&DagQuery {
                paused: Some(true),
                ..query(None, None, 50, 0)
            })
            .await
            .unwrap();
        assert_eq!(paused.dags.len(), 1);
        assert_eq!(paused.dags[0].id, "dag-01");

        assert_eq!(
            s.dag_tags().await.unwrap(),
            ["a\"b", "etl", "ml", "mlx"].map(String::from)
        );
    }
}

#[tokio::test]
async fn latest_runs_of_many_dags_in_one_call() {
    for db in databases().await {
        let s = &db.store;
        for day in 0..5 {
            dag_with_run(s, "a", day, vec![task("x", 0, "default")]).await;
        }
        dag_with_run(s, "b", 3, vec![task("x", 0, "default")]).await;
        s.sync_dag(&dag_record("c", "f"), t(0)).await.unwrap();
        let ids: Vec<String> = ["a", "b", "c", "missing"].map(String::from).to_vec();
        let runs = s.latest_runs_of_dags(&ids, 3).await.unwrap();
        let days = |dag: &str| -> Vec<i64> {
            runs[dag]
                .iter()
                .map(|r| (r.execution_date() - t(0)).num_days())
                .collect()
        };
        assert_eq!(days("a"), [4, 3, 2], "the latest 3, latest first");
        assert_eq!(days("b"), [3]);
        assert!(!runs.contains_key("c") && !runs.contains_key("missing"));
        assert!(s.latest_runs_of_dags(&ids, 0).await.unwrap().is_empty());

        // More DAGs than one statement takes.
        let many: Vec<String> = (0..450)
            .map(|i| format!("none-{i}"))
            .chain(["a".into()])
            .collect();
        assert_eq!(s.latest_runs_of_dags(&many, 1).await.unwrap()["a"].len(), 1);

        let a = s.list_runs("a", 10, 0).await.unwrap();
        let tis = s.task_instances_of_runs(&[a[0].id, a[1].id]).await.unwrap();
        assert_eq!(tis.len(), 2);
        let by_id = s.runs_by_ids(&[a[1].id, a[0].id, 999_999]).await.unwrap();
        assert_eq!(by_id.len(), 2);
    }
}

#[tokio::test]
async fn counts_by_state_across_dags() {
    for db in databases().await {
        let s = &db.store;
        let r1 = dag_with_run(s, "a", 0, vec![task("x", 0, "p"), task("y", 0, "p")]).await;
        dag_with_run(s, "b", 0, vec![task("x", 0, "p")]).await;
        schedule(s, r1.id, &["x"]).await;
        s.set_run_state(r1.id, RunState::Queued, RunState::Running, t(3))
            .await
            .unwrap();
        let runs = s.count_all_runs_by_state().await.unwrap();
        assert_eq!(
            (runs.get(&RunState::Running), runs.get(&RunState::Queued)),
            (Some(&1), Some(&1))
        );
        let tasks = s.count_task_instances_by_state().await.unwrap();
        assert_eq!(tasks[&TaskState::Pending], 2);
        assert_eq!(tasks[&TaskState::Scheduled], 1);
        s.ping().await.unwrap();
    }
}

/// A finished run of `a` with `x` success, `y` failed, `z` upstream_failed.
async fn failed_run(s: &goflow_store::Store) -> goflow_store::RunRow {
    let run = dag_with_run(
        s,
        "a",
        0,
        vec![task("x", 2, "p"), task("y", 1, "p"), task("z", 0, "p")],
    )
    .await;
    s.set_run_state(run.id, RunState::Queued, RunState::Running, t(3))
        .await
        .unwrap();
    schedule(s, run.id, &["x", "y"]).await;
    s.claim_tasks_in("me", &[run.id], &Default::default(), 2, t(4))
        .await
        .unwrap();
    for (task, end) in [("x", TaskState::Success), ("y", TaskState::Failed)] {
        assert!(s
            .update_task(run.id, task, TaskState::Queued, TaskUpdate::new(end), t(5))
            .await
            .unwrap());
    }
    s.put_output(run.id, "y", &serde_json::json!(1))
        .await
        .unwrap();
    assert!(s
        .update_task(
            run.id,
            "z",
            TaskState::Pending,
            TaskUpdate::new(TaskState::UpstreamFailed),
            t(5)
        )
        .await
        .unwrap());
    s.set_run_state(run.id, RunState::Running, RunState::Failed, t(6))
        .await
        .unwrap();
    run
}

#[tokio::test]
async fn marking_tasks_recomputes_the_run_and_refuses_what_a_scheduler_owns() {
    for db in databases().await {
        let s = &db.store;
        let run = failed_run(s).await;
        let state = |task: &'static str| async move {
            s.task_instance(run.id, task).await.unwrap().unwrap().state
        };
        let marked = s
            .mark_tasks(run.id, &["y".into()], TaskState::Success, t(7))
            .await
            .unwrap();
        assert_eq!(
            marked,
            MarkOutcome::Marked {
                run_state: RunState::Failed
            },
            "z is still upstream_failed"
        );
        assert_eq!(state("y").await, TaskState::Success);
        let marked = s
            .mark_tasks(run.id, &["z".into()], TaskState::Success, t(8))
            .await
            .unwrap();
        assert_eq!(
            marked,
            MarkOutcome::Marked {
                run_state: RunState::Success
            }
        );
        let row = s.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(row.state, RunState::Success);
        assert_eq!(row.end_date, Some(t(6)), "the run's end stays");
        assert_eq!(
            s.task_instance(run.id, "z")
                .await
                .unwrap()
                .unwrap()
                .end_date,
            Some(t(5)),
            "an end date already set stays"
        );

        // Marking failed drops the output.
        s.mark_tasks(run.id, &["y".into()], TaskState::Failed, t(9))
            .await
            .unwrap();
        assert_eq!(s.get_output(run.id, "y").await.unwrap(), None);
        assert_eq!(
            s.get_run(run.id).await.unwrap().unwrap().state,
            RunState::Failed
        );

        // Refusals change nothing.
        let err = s
            .mark_tasks(run.id, &["nope".into()], TaskState::Success, t(10))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TaskNotFound { .. }), "{err}");
        let err = s
            .mark_tasks(run.id, &["y".into()], TaskState::Running, t(10))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
        let err = s
            .mark_tasks(424_242, &["y".into()], TaskState::Success, t(10))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::RunNotFound { .. }), "{err}");
        s.clear_tasks(run.id, &["x".into()], t(11)).await.unwrap();
        assert_eq!(
            s.mark_tasks(run.id, &["y".into()], TaskState::Success, t(12))
                .await
                .unwrap(),
            MarkOutcome::RunActive {
                state: RunState::Queued
            }
        );
        assert_eq!(state("y").await, TaskState::Failed);
    }
}

#[tokio::test]
async fn settings_are_set_once_and_sessions_expire() {
    for db in databases().await {
        let s = &db.store;
        assert_eq!(s.setting("api_token").await.unwrap(), None);
        assert_eq!(
            s.init_setting("api_token", "first", t(0)).await.unwrap(),
            ("first".to_owned(), true)
        );
        assert_eq!(
            s.init_setting("api_token", "second", t(1)).await.unwrap(),
            ("first".to_owned(), false)
        );
        assert_eq!(
            s.setting("api_token").await.unwrap().as_deref(),
            Some("first")
        );

        let session = WebSession {
            id: "sid".into(),
            csrf_token: "csrf".into(),
            username: "admin".into(),
            created_date: t(0),
            expires_date: t(100),
        };
        s.create_session(&session).await.unwrap();
        assert_eq!(
            s.session("sid", t(50)).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(s.session("sid", t(100)).await.unwrap(), None, "expired");
        assert_eq!(s.session("other", t(50)).await.unwrap(), None);
        let mut later = session.clone();
        later.id = "sid2".into();
        later.expires_date = t(1000);
        s.create_session(&later).await.unwrap();
        assert_eq!(s.delete_expired_sessions(t(100)).await.unwrap(), 1);
        assert!(s.session("sid2", t(100)).await.unwrap().is_some());
        assert!(s.delete_session("sid2").await.unwrap());
        assert!(!s.delete_session("sid2").await.unwrap());
    }
}
