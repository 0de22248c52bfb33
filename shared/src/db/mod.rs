//! Postgres access: the connection pool, its deadlines, the error type of this layer and
//! the schema migrations. The SQL for each table lives in its own module.
//!
//! Every operation runs under one deadline (`DEPENDENCY_TIMEOUT_MS`) covering the pool wait,
//! the connect and the queries, so a database that is down or hung turns into
//! [`DbError::Unavailable`] (503) in bounded time, never a hang. The pool reconnects by
//! itself when the database comes back.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod email_tokens;
pub(crate) mod mfa;
mod migrations;
pub mod prune;
pub(crate) mod reset_tokens;
pub mod runtime_role;
pub(crate) mod sessions;
pub(crate) mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config as PgConfig, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{Config, TlsMode};
use crate::secrets::{CachedSecret, SecretsManager};
use crate::telemetry::ErrorChain;

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

/// How to open one Postgres connection: where (the URL), over what (TLS with verified
/// certificates, or plain TCP on a developer machine) and as whom: the owner who migrates
/// ([`Connector::owner`]) or the runtime role the service runs as ([`Connector::runtime`]),
/// each by a user name or by credentials from Secrets Manager, which may be rotated under a
/// running process.
#[derive(Clone)]
pub struct Connector {
    target: PgConfig,
    tls: Option<MakeRustlsConnect>,
    credentials: Option<Credentials>,
}

/// Database credentials from a Secrets Manager secret, as last read.
#[derive(Clone)]
struct Credentials {
    secret: CachedSecret,
    refresh: Duration,
    current: Arc<ArcSwapOption<DbLogin>>,
}

/// One user name and password, and when they were read.
struct DbLogin {
    username: String,
    password: SecretString,
    read_at: Instant,
}

/// The JSON of an RDS-managed (or rotation-template) database secret.
#[derive(serde::Deserialize)]
pub(crate) struct DbSecret {
    pub(crate) username: String,
    pub(crate) password: SecretString,
}

impl Connector {
    /// The owner's login, for migrations only: `DATABASE_URL`'s user, or the credentials of
    /// `DATABASE_SECRET_ARN` (the master secret on AWS).
    pub fn owner(config: &Config, secrets: &SecretsManager) -> anyhow::Result<Self> {
        Self::new(config, secrets, config.database_secret_arn.as_deref())
    }

    /// The service's login, the runtime role (see [`runtime_role`]): the credentials of
    /// `DATABASE_RUNTIME_SECRET_ARN` when set; else `DATABASE_RUNTIME_USER` with no
    /// password (trust authentication), or with the URL's password when it is the URL's
    /// own user. A URL password never goes with another user: that is an error here.
    pub fn runtime(config: &Config, secrets: &SecretsManager) -> anyhow::Result<Self> {
        let secret = config.database_runtime_secret_arn.as_deref();
        let mut connector = Self::new(config, secrets, secret)?;
        let user = config.database_runtime_user.as_str();
        if secret.is_none() && connector.target.get_user() != Some(user) {
            anyhow::ensure!(
                connector.target.get_password().is_none(),
                "DATABASE_URL carries a password for its user, but the service connects as \
                 {user} (DATABASE_RUNTIME_USER): give that role a password through \
                 DATABASE_RUNTIME_SECRET_ARN, or set DATABASE_RUNTIME_USER to the URL's user"
            );
            connector.target.user(user);
        }
        Ok(connector)
    }

    fn new(
        config: &Config,
        secrets: &SecretsManager,
        secret_arn: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut target: PgConfig = config
            .database_url
            .expose_secret()
            .parse()
            .context("DATABASE_URL is not a valid Postgres URL")?;
        target.connect_timeout(config.dependency_timeout);
        target.application_name("user-service");
        let tls = match config.database_tls {
            TlsMode::Off => None,
            TlsMode::VerifyFull => {
                // Never fall back to plain text: `prefer` would, silently.
                target.ssl_mode(tokio_postgres::config::SslMode::Require);
                let roots = crate::tls::roots_pem(
                    config.database_ca_file.as_deref(),
                    crate::tls::RDS_CA_BUNDLE,
                )?;
                let tls = crate::tls::client_config(&roots).context("DATABASE_CA_FILE")?;
                Some(MakeRustlsConnect::new(tls))
            }
        };
        let credentials = secret_arn.map(|arn| Credentials {
            secret: CachedSecret::new(secrets.clone(), arn, config.secrets_refresh),
            refresh: config.secrets_refresh,
            current: Arc::new(ArcSwapOption::empty()),
        });
        Ok(Self {
            target,
            tls,
            credentials,
        })
    }

    /// Makes sure the credentials are at hand and fresh (a no-op without a secret, and
    /// one atomic load while they are fresh). Connections are opened inside the pool,
    /// which cannot wait for Secrets Manager, so this runs before asking the pool.
    async fn ready(&self) -> Result<(), DbError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        if let Some(login) = credentials.current.load().as_ref()
            && login.read_at.elapsed() < credentials.refresh
        {
            return Ok(());
        }
        let secret: DbSecret = credentials
            .secret
            .get_json()
            .await
            .map_err(DbError::Unavailable)?;
        credentials.current.store(Some(Arc::new(DbLogin {
            username: secret.username,
            password: secret.password,
            read_at: Instant::now(),
        })));
        Ok(())
    }

    /// The target with the current credentials filled in.
    fn target(&self) -> PgConfig {
        let mut target = self.target.clone();
        if let Some(credentials) = &self.credentials
            && let Some(login) = credentials.current.load().as_ref()
        {
            target.user(&login.username);
            target.password(login.password.expose_secret());
        }
        target
    }

    /// Opens one connection (outside any pool: migrations, maintenance) to `dbname`, or
    /// the configured database. The returned task drives the connection.
    pub async fn connect(&self, dbname: Option<&str>) -> Result<(Client, JoinHandle<()>), DbError> {
        self.ready().await?;
        let mut target = self.target();
        if let Some(dbname) = dbname {
            target.dbname(dbname);
        }
        Ok(self.open(&target).await?)
    }

    /// The database this connector connects to.
    pub fn dbname(&self) -> Option<&str> {
        self.target.get_dbname()
    }

    /// Where this connects, for an operator's eyes: `user@host:port/database`, and how
    /// (TLS, credentials from a secret). Never a password.
    pub fn describe(&self) -> String {
        let ports = self.target.get_ports();
        let hosts: Vec<String> = self
            .target
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(dir) => format!("{}:{port}", dir.display()),
                }
            })
            .collect();
        let mut text = format!(
            "{}@{}/{}",
            self.target.get_user().unwrap_or("(no user)"),
            hosts.join(","),
            self.dbname().unwrap_or("(no database)")
        );
        if self.tls.is_some() {
            text.push_str(", TLS verify-full");
        }
        if let Some(credentials) = &self.credentials {
            text.push_str(&format!(", credentials from {}", credentials.secret.id()));
        }
        text
    }

    async fn open(
        &self,
        target: &PgConfig,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        let opened = match &self.tls {
            None => target
                .connect(NoTls)
                .await
                .map(|(client, connection)| (client, tokio::spawn(drive(connection)))),
            Some(tls) => target
                .connect(tls.clone())
                .await
                .map(|(client, connection)| (client, tokio::spawn(drive(connection)))),
        };
        if let Err(e) = &opened
            && e.code() == Some(&SqlState::INVALID_PASSWORD)
            && let Some(credentials) = &self.credentials
        {
            // Rotated under us: read the secret again on the next attempt.
            tracing::warn!(secret = %credentials.secret.id(), "database refused the password; re-reading the secret");
            credentials.current.store(None);
            credentials.secret.invalidate().await;
        }
        opened
    }
}

/// Runs a connection until it closes; its error, if any, reaches the client's next query.
async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %ErrorChain(&e), "postgres connection closed");
    }
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        _pool_target: &PgConfig,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        Box::pin(async move { self.open(&self.target()).await })
    }
}

/// The Postgres pool plus the deadline every operation runs under.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    connector: Arc<Connector>,
    timeout: Duration,
}

impl Db {
    /// Builds a pool; connections are opened lazily, so this succeeds while Postgres is down.
    pub fn connect(
        connector: Connector,
        max_size: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let manager = Manager::from_connect(
            connector.target.clone(),
            connector.clone(),
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
        Ok(Self {
            pool,
            connector: Arc::new(connector),
            timeout,
        })
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<Object, DbError> {
        self.connector.ready().await?;
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

/// Arbitrary constant naming the advisory lock that serialises migrations, so several
/// instances starting at once apply each migration exactly once.
const MIGRATION_LOCK: i64 = 0x7573_6572_7376_6331; // "usersvc1"

/// Applies every pending migration from `migrations/`.
pub async fn migrate(connector: &Connector) -> anyhow::Result<usize> {
    let (mut client, driver) = connector
        .connect(None)
        .await
        .context("connecting to Postgres to migrate")?;
    // Aborted on drop too: a migration cancelled by a deadline (the migrate function's)
    // must not leave its session running, lock and all.
    let driver = AbortOnDrop(driver);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    let report = migrations::runner()?
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

/// How far a database's schema is against this build's `migrations/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Migrations recorded as applied.
    pub applied: usize,
    /// This build's migrations not applied yet (`V<version>__<name>`): `serve` and `migrate`
    /// apply them.
    pub pending: Vec<String>,
    /// Applied migrations this build does not have: a newer version migrated this database.
    pub unknown: Vec<String>,
    /// Applied migrations whose file has changed since: applying would refuse to start.
    pub changed: Vec<String>,
}

/// The migration state of the database `client` is connected to, read only: a database
/// never migrated has no history table, and then every migration is pending.
pub async fn migration_status(client: &mut Client) -> anyhow::Result<MigrationStatus> {
    let runner = migrations::runner()?;
    // refinery's default history table; reading it when absent would be an error.
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .context("looking for the migration history")?
        .get(0);
    let applied = if exists {
        runner
            .get_applied_migrations_async(client)
            .await
            .context("reading the migration history")?
    } else {
        Vec::new()
    };
    let label = |m: &refinery::Migration| format!("V{}__{}", m.version(), m.name());
    let mut status = MigrationStatus {
        applied: applied.len(),
        ..MigrationStatus::default()
    };
    for migration in runner.get_migrations() {
        match applied.iter().find(|a| a.version() == migration.version()) {
            None => status.pending.push(label(migration)),
            Some(done) if done.checksum() != migration.checksum() => {
                status.changed.push(label(migration));
            }
            Some(_) => {}
        }
    }
    for done in &applied {
        if !runner
            .get_migrations()
            .iter()
            .any(|m| m.version() == done.version())
        {
            status.unknown.push(label(done));
        }
    }
    Ok(status)
}

/// Whether `error` is Postgres saying the database does not exist (yet).
pub fn is_missing_database(error: &DbError) -> bool {
    sql_state(error) == Some(&SqlState::INVALID_CATALOG_NAME)
}

/// Whether `error` is Postgres refusing a login whose role does not exist (yet).
pub fn is_unknown_role(error: &DbError) -> bool {
    sql_state(error) == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
}

/// The SQLSTATE Postgres answered `error` with, if it did.
fn sql_state(error: &DbError) -> Option<&SqlState> {
    match error {
        DbError::Query(e) => e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code),
        _ => None,
    }
}

/// A task aborted when this handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Creates the database named in `url` if it does not exist (a convenience for a fresh
/// developer machine: `user-service serve` works with no setup). Connects to the `postgres`
/// maintenance database of the same server to do it.
pub async fn ensure_database(connector: &Connector) -> anyhow::Result<()> {
    let Some(name) = connector.dbname().map(str::to_owned) else {
        return Ok(());
    };
    match connector.connect(None).await {
        Ok((_, driver)) => {
            driver.abort();
            return Ok(());
        }
        Err(e) if is_missing_database(&e) => {}
        Err(e) => return Err(e).context("connecting to Postgres"),
    }
    let (client, driver) = connector
        .connect(Some("postgres"))
        .await
        .context("connecting to the postgres maintenance database")?;
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
