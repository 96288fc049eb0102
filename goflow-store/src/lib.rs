//! The goflow store: DAGs, DAG runs, task instances and their tries,
//! outputs, logs, scheduler heartbeats and pools, kept durably with diesel
//! in SQLite (embedded, the default) or PostgreSQL (production, several
//! scheduler replicas), through one code path.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn demo() -> goflow_store::Result<()> {
//! use goflow_store::Store;
//!
//! let store = Store::connect("sqlite://goflow.db").await?; // or postgres://...
//! store.migrate().await?;
//! for dag in store.list_dags().await? {
//!     println!("{} v{} paused={}", dag.id, dag.version, dag.is_paused);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! - The API is `async`; each call runs diesel on a blocking thread with a
//!   pooled (r2d2) connection, so the async runtime is never blocked.
//! - Every change is one transaction, so a crash at any instant leaves a
//!   state the next start can continue from. State changes are
//!   compare-and-set on the current state: of two schedulers, one wins.
//! - Timestamps are stored as `BIGINT` microseconds since the Unix epoch,
//!   UTC: ordering, arithmetic and precision are identical on both
//!   backends, with no time zone setting or text format involved.
//! - Runs, task instances, tries and log lines have 64-bit surrogate ids;
//!   methods take a run by its id ([`RunRow::id`]).
//! - States are stored as the names of [`goflow_core::TaskState`],
//!   [`goflow_core::RunState`] and [`goflow_core::RunType`]; an unknown name
//!   read back is [`StoreError::CorruptRow`], never a panic.
//!
//! # Cargo features
//!
//! - `sqlite` (default): bundled SQLite, no system library needed.
//! - `postgres`: PostgreSQL through the system libpq.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod alerts;
mod conn;
mod error;
mod model;
mod retention;
mod schema;
mod stop;
mod store;
mod url;
mod web;

#[cfg(feature = "testing")]
pub mod testing;

pub use alerts::{
    AlertDelivery, AlertRow, AlertStatus, FinishedTry, NewAlert, ShippedLogLine, UnknownAlertStatus,
};
pub use error::{Result, StoreError};
pub use model::{
    ClaimedTask, DagRecord, DagRow, LogLevel, LogLine, LogStream, NewLogLine, NewRun,
    NewTaskInstance, PoolRow, RunRow, SchedulerRow, StopRequest, TaskInstanceRow, TaskTryRow,
    TaskUpdate, TryMeasurements, UnknownLogLevel, UnknownLogStream,
};
pub use retention::{CleanCounts, CleanOptions, CleanReport, DEFAULT_CLEAN_BATCH};
pub use stop::PendingStop;
pub use store::{RunChange, Store, StoreOptions, TaskChange};
pub use url::Backend;
pub use web::{DagPage, DagQuery, MarkOutcome, WebSession};
