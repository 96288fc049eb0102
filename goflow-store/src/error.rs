//! The store's error type.

use chrono::{DateTime, Utc};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL is not one the store understands.
    #[error("invalid database URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL, password removed.
        url: String,
        /// What was expected.
        reason: String,
    },

    /// The URL names a backend this build was compiled without.
    #[error("database URL '{url}' needs the `{feature}` cargo feature of goflow-store, which this build lacks")]
    BackendNotCompiled {
        /// The URL, password removed.
        url: String,
        /// The missing cargo feature.
        feature: &'static str,
    },

    /// The database did not answer, or refused the connection.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// Why.
        #[source]
        source: diesel::ConnectionError,
    },

    /// Setting up a new connection (SQLite pragmas) failed.
    #[error("cannot set up a connection to {url}: {source}")]
    Setup {
        /// The URL, password removed.
        url: String,
        /// Why.
        #[source]
        source: diesel::result::Error,
    },

    /// No pooled connection could be had in time.
    #[error("no database connection available for {url}: {source}")]
    Pool {
        /// The URL, password removed.
        url: String,
        /// Why.
        #[source]
        source: diesel::r2d2::PoolError,
    },

    /// Running the embedded migrations failed.
    #[error("database migration failed: {source}")]
    Migration {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The database has migrations this build does not know: a newer
    /// goflow migrated it. Nothing is read or written, `migrate` included,
    /// since this build would misread (or damage) what it does not know.
    #[error(
        "database {url} was migrated by a newer goflow: it has migration{} {} that this \
         binary does not know (the latest it knows is {latest}); run a goflow binary built \
         with the newer version, or restore a backup taken before the upgrade",
        if versions.len() == 1 { "" } else { "s" },
        versions.join(", ")
    )]
    UnknownMigrations {
        /// The URL, password removed.
        url: String,
        /// The applied versions this build does not know, oldest first.
        versions: Vec<String>,
        /// The newest migration this build embeds.
        latest: String,
    },

    /// A store opened read-only lacks migrations this build needs.
    #[error(
        "database {url} lacks migration{} {}, so it cannot be read without being \
         migrated; run `db migrate` first",
        if pending.len() == 1 { "" } else { "s" },
        pending.join(", ")
    )]
    NotMigrated {
        /// The URL, password removed.
        url: String,
        /// The versions not applied yet, oldest first.
        pending: Vec<String>,
    },

    /// A query failed.
    #[error("database error in {op}: {source}")]
    Database {
        /// The store operation, such as `claim_tasks`.
        op: &'static str,
        /// The database's error.
        #[source]
        source: diesel::result::Error,
    },

    /// A run with the same run id or logical date already exists.
    #[error(
        "DAG '{dag_id}' already has a run with run id '{run_id}' or logical date {execution_date}"
    )]
    RunExists {
        /// The DAG.
        dag_id: String,
        /// The run id asked for.
        run_id: String,
        /// The logical date (data interval start) asked for.
        execution_date: DateTime<Utc>,
    },

    /// No such DAG.
    #[error("no DAG '{dag_id}' in the store")]
    DagNotFound {
        /// The DAG id asked for.
        dag_id: String,
    },

    /// No such run.
    #[error("no DAG run with id {run} in the store")]
    RunNotFound {
        /// The run's surrogate id asked for.
        run: i64,
    },

    /// No such task instance.
    #[error("no task instance '{task_id}' in DAG run {run}")]
    TaskNotFound {
        /// The run's surrogate id.
        run: i64,
        /// The task id asked for.
        task_id: String,
    },

    /// Task instances held by an executor cannot be cleared.
    #[error("cannot clear {tasks:?} of DAG run {run}: queued or running (cancel them first)")]
    TasksActive {
        /// The run's surrogate id.
        run: i64,
        /// The queued or running task ids.
        tasks: Vec<String>,
    },

    /// Only a queued or running try can be stopped.
    #[error("cannot stop {tasks:?} of DAG run {run}: not queued or running")]
    TasksNotActive {
        /// The run's surrogate id.
        run: i64,
        /// The task ids that are not active.
        tasks: Vec<String>,
    },

    /// Only a queued or running run can be stopped.
    #[error("cannot stop DAG run {run}: it is {state} already")]
    RunNotActive {
        /// The run's surrogate id.
        run: i64,
        /// Its state.
        state: goflow_core::RunState,
    },

    /// The state machine forbids the change asked for.
    #[error(transparent)]
    Model(#[from] goflow_core::Error),

    /// A value read from the database makes no sense (an unknown state, bad
    /// JSON, a timestamp out of range).
    #[error("invalid value '{value}' in {table}.{column}: {source}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value read.
        value: String,
        /// Why it is invalid.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An argument is out of the range the store can hold.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidInput {
        /// What the argument is.
        what: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },

    /// The async runtime shut down while the database call was pending.
    #[error("database call cancelled: the async runtime is shutting down")]
    Cancelled,
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<diesel::result::Error> for StoreError {
    fn from(source: diesel::result::Error) -> Self {
        StoreError::Database { op: "", source }
    }
}

impl StoreError {
    /// Names the operation a bare database error happened in.
    pub(crate) fn in_op(self, name: &'static str) -> Self {
        match self {
            StoreError::Database { op: "", source } => StoreError::Database { op: name, source },
            other => other,
        }
    }

    pub(crate) fn corrupt(
        table: &'static str,
        column: &'static str,
        value: impl ToString,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::CorruptRow {
            table,
            column,
            value: value.to_string(),
            source: source.into(),
        }
    }
}
