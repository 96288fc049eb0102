//! Connections: one enum over both backends (`diesel::MultiConnection`),
//! an r2d2 manager that picks the backend from the URL, SQLite pragmas, and
//! write transactions.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use diesel::Connection;

use crate::url::Target;
use crate::{Backend, Result};

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("goflow-store needs at least one of the `sqlite` and `postgres` features");

/// A connection to either backend. Queries are written once against it.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    /// PostgreSQL through libpq.
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    /// SQLite, bundled.
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
}

impl AnyConnection {
    /// The backend of this connection.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

impl Target {
    /// Opens one connection, without the pool's customizations.
    pub(crate) fn establish(&self) -> diesel::ConnectionResult<AnyConnection> {
        match self {
            #[cfg(feature = "postgres")]
            Target::Postgres { url } => {
                diesel::PgConnection::establish(url).map(AnyConnection::Postgres)
            }
            #[cfg(feature = "sqlite")]
            Target::Sqlite { path, .. } => {
                diesel::SqliteConnection::establish(path).map(AnyConnection::Sqlite)
            }
        }
    }
}

/// The r2d2 manager: connects to the backend the URL named, instead of
/// trying each backend in turn as `MultiConnection::establish` does.
#[derive(Debug)]
pub(crate) struct Manager {
    pub target: Target,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        self.target
            .establish()
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection dropped mid-transaction (a panic) is thrown away.
        std::thread::panicking() || conn.is_broken()
    }
}

/// Sets up every new connection: on SQLite, WAL journaling (readers never
/// wait for the writer), a busy timeout (writers wait for each other instead
/// of failing) and foreign keys. Nothing on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub busy_timeout: Duration,
}

impl Setup {
    pub(crate) fn apply(&self, conn: &mut AnyConnection) -> diesel::QueryResult<()> {
        match conn {
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(_) => Ok(()),
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                self.busy_timeout.as_millis()
            )),
        }
    }
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Runs `f` in a write transaction, committing when it returns
/// `Ok((value, true))` and rolling back otherwise.
///
/// On SQLite the transaction is `BEGIN IMMEDIATE`: it takes the write lock
/// up front, so two writers queue on the busy timeout instead of one failing
/// when it upgrades a read lock; this is also what makes a claim exclusive.
fn run_tx<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<(T, bool)>,
) -> Result<T> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
    }
    let outcome = f(conn);
    end_tx(conn, outcome)
}

/// Ends the transaction (or savepoint) `conn` is in after its work gave
/// `outcome`: commits on `Ok((_, true))`, rolls back otherwise.
fn end_tx<T>(conn: &mut AnyConnection, outcome: Result<(T, bool)>) -> Result<T> {
    match outcome {
        Ok((value, true)) => {
            AnyConnection::commit_transaction(conn)?;
            Ok(value)
        }
        Ok((value, false)) => {
            AnyConnection::rollback_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = AnyConnection::rollback_transaction(conn) {
                tracing::warn!(error = %rollback, "rollback failed after: {e}");
            }
            Err(e)
        }
    }
}

/// Runs `f` in one write transaction; an error rolls everything back.
pub(crate) fn transaction<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    run_tx(conn, |c| f(c).map(|v| (v, true)))
}

/// Runs `f` in one write transaction that commits only if `f` returns
/// `Some`: a compare-and-set of several rows is all or nothing.
pub(crate) fn transaction_if<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<Option<T>>,
) -> Result<Option<T>> {
    run_tx(conn, |c| {
        let out = f(c)?;
        let commit = out.is_some();
        Ok((out, commit))
    })
}

/// Runs `f` in a savepoint of the open transaction, kept only if `f`
/// returns `Some`: one part of a transaction that may be undone alone.
pub(crate) fn savepoint_if<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<Option<T>>,
) -> Result<Option<T>> {
    // Inside a transaction, diesel's `begin_transaction` is a SAVEPOINT,
    // and commit and rollback release it or roll back to it.
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    let outcome = f(conn).map(|out| {
        let keep = out.is_some();
        (out, keep)
    });
    end_tx(conn, outcome)
}

/// Runs `$body` with `$c` bound to the inner connection of whichever
/// backend `$conn` is: for the few statements `MultiConnection` cannot
/// express (row locks, multi-row inserts, `RETURNING`). The body is written
/// once and type-checked for each backend.
macro_rules! per_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::conn::AnyConnection::Postgres($c) => $body,
            #[cfg(feature = "sqlite")]
            $crate::conn::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use per_backend;
