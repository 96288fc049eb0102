//! The store refuses what it does not know (a database migrated by a newer
//! goflow), and reads without writing when opened read-only; on SQLite
//! always and on PostgreSQL when `GOFLOW_TEST_DATABASE_URL` is set.

mod common;

use common::{dag_record, dag_with_run, databases, t, task};
use goflow_store::testing::empty_databases;
use goflow_store::{Store, StoreError};

/// A version no build of goflow has: as if a newer goflow had migrated.
const NEWER: &str = "20991231000000";

fn record_newer_migration(db: &goflow_store::testing::TestDb, version: &str) {
    db.execute_raw(&format!(
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('{version}')"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_goflow_is_refused() {
    for db in databases().await {
        let b = db.backend();
        record_newer_migration(&db, NEWER);
        record_newer_migration(&db, "20991231000001");

        let err = Store::connect(&db.url).await.unwrap_err();
        match &err {
            StoreError::UnknownMigrations {
                versions, latest, ..
            } => {
                assert_eq!(versions, &[NEWER, "20991231000001"], "{b}");
                assert!(latest.as_str() < NEWER, "{b}: {latest}");
            }
            other => panic!("{b}: expected UnknownMigrations, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("newer goflow")
                && text.contains("20991231000000, 20991231000001")
                && text.contains(&redacted(&db.url)),
            "{b}: {text}"
        );

        // Read-only too, and a store connected before the upgrade does not
        // migrate over it.
        let err = Store::connect_read_only(&db.url).await.unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownMigrations { .. }),
            "{b}: {err}"
        );
        let err = db.store.migrate().await.unwrap_err();
        assert!(err.to_string().contains(NEWER), "{b}: {err}");
    }
}

/// What the store shows of a test URL (no password in them).
fn redacted(url: &str) -> String {
    url.trim_start_matches("sqlite://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_only_known_migrations_is_accepted() {
    for db in databases().await {
        let b = db.backend();
        // Every known migration applied: accepted, read-write and read-only.
        Store::connect(&db.url).await.unwrap();
        let ro = Store::connect_read_only(&db.url).await.unwrap();
        assert!(ro.list_dags().await.unwrap().is_empty(), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_reads_and_never_writes() {
    for db in databases().await {
        let b = db.backend();
        let run = dag_with_run(&db.store, "sales", 0, vec![task("a", 1, "p")]).await;
        let ro = Store::connect_read_only(&db.url).await.unwrap();
        let runs = ro.list_runs("sales", 10, 0).await.unwrap();
        assert_eq!(runs.len(), 1, "{b}");
        assert_eq!(runs[0].id, run.id, "{b}");
        assert!(
            ro.sync_dag(&dag_record("other", "f1"), t(5)).await.is_err(),
            "{b}: a write through a read-only store fails"
        );
        assert!(ro.get_dag("other").await.unwrap().is_none(), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_needs_a_migrated_database() {
    for db in empty_databases().await {
        let b = db.backend();
        let err = Store::connect_read_only(&db.url).await.unwrap_err();
        match &err {
            StoreError::NotMigrated { pending, .. } => {
                assert!(!pending.is_empty(), "{b}")
            }
            other => panic!("{b}: expected NotMigrated, got {other}"),
        }
        assert!(err.to_string().contains("run `db migrate`"), "{b}: {err}");
    }
    // A SQLite file that does not exist is not created.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = Store::connect_read_only(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotMigrated { .. }), "{err}");
    assert!(!path.exists(), "nothing created");
}

/// A migrated SQLite database in WAL mode, closed (no `-wal` or `-shm`
/// file left), with one run.
#[cfg(unix)]
async fn closed_sqlite_database(dir: &std::path::Path) -> (String, i64) {
    let path = dir.join("goflow.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let run = dag_with_run(&store, "sales", 0, vec![task("a", 1, "p")]).await;
    drop(store);
    // The last connection to close removes the WAL files.
    for _ in 0..100 {
        if !dir.join("goflow.db-wal").exists() && !dir.join("goflow.db-shm").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (url, run.id)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_in_a_read_only_directory_is_read_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (url, run) = closed_sqlite_database(dir.path()).await;
    let file = dir.path().join("goflow.db");
    let before = std::fs::read(&file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();

    let result = async {
        let ro = Store::connect_read_only(&url).await?;
        let runs = ro.list_runs("sales", 10, 0).await?;
        let dags = ro.list_dags().await?;
        Ok::<_, StoreError>((runs, dags))
    }
    .await;

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (runs, dags) = result.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [run]);
    assert_eq!(dags.len(), 1);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the database file is unchanged"
    );
}
