//! Connections: one enum over both backends (`diesel::MultiConnection`),
//! an r2d2 manager that picks the backend from the URL, SQLite pragmas,
//! read-only sessions, the schema check of a new store, and write
//! transactions.

use std::sync::Mutex;
use std::time::Duration;

use diesel::backend::Backend as DieselBackend;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use diesel::{Connection, QueryResult, RunQueryDsl};

use crate::url::Target;
use crate::{Backend, Result, StoreError};

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
            Target::Sqlite {
                path, read_only, ..
            } => diesel::SqliteConnection::establish(&Target::sqlite_open_name(path, *read_only))
                .map(AnyConnection::Sqlite),
        }
    }
}

/// The r2d2 manager: connects to the backend the URL named, instead of
/// trying each backend in turn as `MultiConnection::establish` does.
pub(crate) struct Manager {
    pub target: Target,
    /// The connection that checked the schema when the store was opened
    /// ([`open_first`]), handed out as the pool's first instead of opening
    /// another: an in-memory database is the one it checked.
    pub first: Mutex<Option<AnyConnection>>,
}

impl Manager {
    pub(crate) fn new(target: Target, first: AnyConnection) -> Self {
        Manager {
            target,
            first: Mutex::new(Some(first)),
        }
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        match first {
            Some(conn) => Ok(conn),
            None => self
                .target
                .establish()
                .map_err(diesel::r2d2::Error::ConnectionError),
        }
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
///
/// A read-only store changes nothing about the database: on SQLite only
/// the busy timeout and `query_only`, on PostgreSQL read-only transactions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub busy_timeout: Duration,
    /// Whether the store only reads.
    pub read_only: bool,
}

impl Setup {
    pub(crate) fn apply(&self, conn: &mut AnyConnection) -> diesel::QueryResult<()> {
        match conn {
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) if self.read_only => {
                c.batch_execute("SET default_transaction_read_only = on")
            }
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(_) => Ok(()),
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) if self.read_only => c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA query_only = ON;",
                self.busy_timeout.as_millis()
            )),
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

/// A statement the connection keeps prepared, keyed by its SQL text, for
/// the statements of the scheduler's hot path that diesel would otherwise
/// prepare afresh on every call: it never caches an `UPDATE`, an upsert,
/// or an `INSERT` with optional columns, whatever their shape.
///
/// Keyed by text, a cached statement is always the one its SQL names, so
/// this is safe for any query; what limits its use is the cache's size
/// (one entry per distinct text, kept for the connection's life): only
/// statements with a bounded number of shapes are wrapped, never one
/// with an `IN` list as long as its input.
///
/// Run it with `load` or `get_result`, which hand the connection the
/// statement itself: `execute` hands it a reference, through which diesel
/// no longer sees this wrapper (and does not cache). A statement that
/// returns nothing returns a column (`RETURNING id`) instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached<Q>(pub Q);

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    // Not a static id: diesel then keys the cache by the SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> QueryFragment<DB> for Cached<Q>
where
    DB: DieselBackend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    // diesel asks this of a query before caching it by its text.
    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q, Conn> RunQueryDsl<Conn> for Cached<Q> {}

/// One row of `__diesel_schema_migrations`.
#[derive(diesel::QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Whether something exists.
#[derive(diesel::QueryableByName)]
struct Present {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    present: bool,
}

/// The versions recorded in diesel's `__diesel_schema_migrations`, oldest
/// first; none when the table does not exist. Unlike diesel's
/// `applied_migrations`, this never creates the table, so it works on a
/// read-only database.
pub(crate) fn applied_migrations(conn: &mut AnyConnection) -> diesel::QueryResult<Vec<String>> {
    use diesel::RunQueryDsl;
    // The table as the search path finds it (PostgreSQL: a test's own
    // schema), or in the main database (SQLite).
    let exists_sql = match conn.backend() {
        Backend::Postgres => {
            "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present"
        }
        Backend::Sqlite => {
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
             AND name = '__diesel_schema_migrations') AS present"
        }
    };
    let exists = per_backend!(conn, c => diesel::sql_query(exists_sql).get_result::<Present>(c))?;
    if !exists.present {
        return Ok(Vec::new());
    }
    let mut versions: Vec<String> = per_backend!(conn, c => diesel::sql_query(
        "SELECT version FROM __diesel_schema_migrations"
    )
    .load::<AppliedVersion>(c))?
    .into_iter()
    .map(|v| v.version)
    .collect();
    versions.sort();
    Ok(versions)
}

/// Refuses a database this build cannot use: one with a migration `known`
/// lacks (a newer goflow migrated it), or, for a read-only store, one that
/// lacks some of `known`.
pub(crate) fn check_schema(
    applied: &[String],
    known: &[String],
    url: &str,
    read_only: bool,
) -> Result<()> {
    let unknown: Vec<String> = applied
        .iter()
        .filter(|v| !known.contains(v))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::UnknownMigrations {
            url: url.to_owned(),
            versions: unknown,
            latest: known.iter().max().cloned().unwrap_or_default(),
        });
    }
    let pending: Vec<String> = known
        .iter()
        .filter(|v| !applied.contains(v))
        .cloned()
        .collect();
    if read_only && !pending.is_empty() {
        return Err(StoreError::NotMigrated {
            url: url.to_owned(),
            pending,
        });
    }
    Ok(())
}

/// Opens one connection to `target`, sets it up and reads its applied
/// migrations.
fn first_connection(
    target: &Target,
    setup: Setup,
    url: &str,
) -> Result<(AnyConnection, Vec<String>)> {
    let mut conn = target.establish().map_err(|source| StoreError::Connect {
        url: url.to_owned(),
        source,
    })?;
    setup.apply(&mut conn).map_err(|source| StoreError::Setup {
        url: url.to_owned(),
        source,
    })?;
    let applied = applied_migrations(&mut conn).map_err(|source| StoreError::Database {
        op: "check_schema",
        source,
    })?;
    Ok((conn, applied))
}

/// Opens the first connection of a new store (for a precise error instead
/// of a pool timeout) and checks the database against `known(backend)`,
/// this build's migrations, with [`check_schema`].
///
/// Returns the target the pool must use: a read-only store opens SQLite
/// files read-only, and immutable when SQLite cannot read a WAL database
/// otherwise (its directory is read-only, so no `-shm` file can be made).
/// A read-only store of a SQLite file that does not exist is
/// [`StoreError::NotMigrated`], not an empty file created for nothing.
pub(crate) fn open_first(
    target: Target,
    setup: Setup,
    url: &str,
    known: impl Fn(Backend) -> Result<Vec<String>>,
) -> Result<(Target, AnyConnection)> {
    if setup.read_only && target.sqlite_file().is_some_and(|f| !f.exists()) {
        return Err(StoreError::NotMigrated {
            url: url.to_owned(),
            pending: known(Backend::Sqlite)?,
        });
    }
    let target = if setup.read_only {
        target.read_only(false)
    } else {
        target
    };
    let (target, conn, applied) = match first_connection(&target, setup, url) {
        Ok((conn, applied)) => (target, conn, applied),
        Err(e) if setup.read_only && target.sqlite_file().is_some() => {
            let immutable = target.read_only(true);
            match first_connection(&immutable, setup, url) {
                Ok((conn, applied)) => {
                    tracing::debug!(%url, error = %e, "reading the SQLite file as immutable");
                    (immutable, conn, applied)
                }
                Err(_) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    check_schema(&applied, &known(conn.backend())?, url, setup.read_only)?;
    Ok((target, conn))
}
