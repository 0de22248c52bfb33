//! Postgres access: the connection pool, its deadlines, the error type of this layer and
//! the schema migrations. The SQL for each table lives in its own module.
//!
//! Every operation runs under one deadline (`DEPENDENCY_TIMEOUT_MS`) covering the pool wait,
//! the connect and the queries, so a database that is down or hung turns into
//! [`DbError::Unavailable`] (503) in bounded time, never a hang. The pool reconnects by
//! itself when the database comes back.

pub mod admin;
pub mod audit;
pub mod reset_tokens;
pub mod sessions;
pub mod users;

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config as PgConfig, NoTls};

/// Where a keyset page ends: the sort key of its last item, newest first by `(at, id)`.
/// The next page is everything strictly before it, so rows added meanwhile (newer) never
/// shift a later page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePosition {
    /// The last item's time (`created_at` of a user, `at` of an audit event).
    pub at: chrono::DateTime<chrono::Utc>,
    /// Its id, which breaks ties between equal times.
    pub id: uuid::Uuid,
}

/// The error type of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached in time (down, hung, pool exhausted): a 503.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A live user holds this email already (the unique index said so).
    #[error("email already registered")]
    EmailTaken,
    /// Any other failure of a query: a bug or a schema mismatch.
    #[error("database query failed")]
    Query(#[source] anyhow::Error),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The one place a constraint violation becomes a domain error.
        if let Some(db) = e.as_db_error()
            && *db.code() == SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("users_email_live_key")
        {
            return DbError::EmailTaken;
        }
        // No SQLSTATE: the connection failed (closed, refused, reset), not the query.
        // Admin shutdown and "cannot connect now" are outages too.
        let outage = match e.code() {
            None => true,
            Some(code) => {
                *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS
                    || *code == SqlState::QUERY_CANCELED
            }
        };
        if outage {
            DbError::Unavailable(e.into())
        } else {
            DbError::Query(e.into())
        }
    }
}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        DbError::Unavailable(e.into())
    }
}

/// The Postgres pool plus the deadline every operation runs under.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    timeout: Duration,
}

impl Db {
    /// Builds a pool; connections are opened lazily, so this succeeds while Postgres is down.
    pub fn connect(url: &SecretString, max_size: usize, timeout: Duration) -> anyhow::Result<Self> {
        let mut pg: PgConfig = url
            .expose_secret()
            .parse()
            .context("DATABASE_URL is not a valid Postgres URL")?;
        pg.connect_timeout(timeout);
        pg.application_name("user-service");
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .context("building the Postgres pool")?;
        Ok(Self { pool, timeout })
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `operation` under the dependency deadline; running out of time is
    /// [`DbError::Unavailable`], in whatever error type the operation has.
    pub async fn timed<T, E: From<DbError>>(
        &self,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(DbError::Unavailable(anyhow::anyhow!(
                "database operation exceeded {:?}",
                self.timeout
            ))
            .into()),
        }
    }

    /// `SELECT 1` within the deadline, for `/readyz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.timed(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }
}

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary constant naming the advisory lock that serialises migrations, so several
/// instances starting at once apply each migration exactly once.
const MIGRATION_LOCK: i64 = 0x7573_6572_7376_6331; // "usersvc1"

/// Applies every pending migration from `migrations/`.
pub async fn migrate(url: &SecretString) -> anyhow::Result<usize> {
    let (mut client, connection) = tokio_postgres::connect(url.expose_secret(), NoTls)
        .await
        .context("connecting to Postgres to migrate")?;
    // Aborted on drop too: a migration cancelled by a deadline (the migrate function's)
    // must not leave its session running, lock and all.
    let driver = AbortOnDrop(tokio::spawn(connection));
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .context("applying migrations");
    // The lock dies with the session anyway; unlocking is a courtesy for long-lived ones.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    drop(driver);
    let report = report?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "migration applied"
        );
    }
    Ok(report.applied_migrations().len())
}

/// A task aborted when this handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Creates the database named in `url` if it does not exist (a convenience for a fresh
/// developer machine: `user-service serve` works with no setup). Connects to the `postgres`
/// maintenance database of the same server to do it.
pub async fn ensure_database(url: &SecretString) -> anyhow::Result<()> {
    let target: PgConfig = url.expose_secret().parse().context("DATABASE_URL")?;
    let Some(name) = target.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    match tokio_postgres::connect(url.expose_secret(), NoTls).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => return Err(e).context("connecting to Postgres"),
    }
    let mut maintenance = target.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance
        .connect(NoTls)
        .await
        .context("connecting to the postgres maintenance database")?;
    let driver = tokio::spawn(connection);
    // Identifiers cannot be bound as parameters; quote it as Postgres would.
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => tracing::info!(database = %name, "database created"),
        // Another instance created it first.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
        Err(e) => return Err(e).context("creating the database"),
    }
    drop(client);
    driver.abort();
    Ok(())
}
