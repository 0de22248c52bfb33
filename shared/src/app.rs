//! Wiring: the shared state every handler gets, built once per process (or per Lambda cold
//! start), and the local server that serves every route.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::audit::{AuditSink, AuditStore};
use crate::auth::hashing::PasswordHasher;
use crate::auth::keys::{KeyRing, KeySet, PemFile};
use crate::auth::revocation::Revocations;
use crate::auth::tokens::AccessTokens;
use crate::config::Config;
use crate::db::{self, Connector, Db};
use crate::http;
use crate::limits::Limits;
use crate::mail::Mailer;
use crate::profiles::Profiles;
use crate::redis_store::Cache;
use crate::secrets::SecretsManager;

/// What every handler may use. Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    /// The configuration read at start.
    pub config: Arc<Config>,
    /// Postgres.
    pub db: Db,
    /// Redis.
    pub cache: Cache,
    /// argon2id with its bounded queue.
    pub hasher: PasswordHasher,
    /// Access-token signing and verification.
    pub tokens: AccessTokens,
    /// The revocation mirror.
    pub revocations: Revocations,
    /// Each instance's memory of user profiles, for `GET /me`.
    pub profiles: Profiles,
    /// The abuse limits (rate limits and account lockout), counted in Redis.
    pub limits: Limits,
    /// Outgoing email (SMTP, SES or the log), delivered in the background.
    pub mailer: Mailer,
    /// The audit trail's store (DynamoDB with `AUDIT_TABLE`, else Postgres), written in
    /// the background.
    pub audit: AuditSink,
    /// Work a handler leaves running after its response (the forgot-password email, a
    /// re-hash). The local server lets it run; a Lambda function waits for it before the
    /// invocation ends, since a frozen sandbox runs nothing (see [`crate::lambda`]).
    pub background: tokio_util::task::TaskTracker,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[error("startup failed: {0:#}")]
pub struct StartupError(#[from] anyhow::Error);

impl AppState {
    /// Builds the state from `config`: pools (connected lazily, so a cold start does not
    /// wait for the database), the hasher, and the signing keys: from the key file now, or
    /// from Secrets Manager (`JWT_KEYS_SECRET_ARN`) on first use. Nothing is read from
    /// Secrets Manager here: a function reads only the secrets its requests need.
    /// Applies no migration.
    pub async fn new(config: Config) -> Result<Self, StartupError> {
        let secrets = SecretsManager::from_config(&config);
        let keys = match &config.jwt_keys_secret_arn {
            Some(arn) => KeyRing::refreshing(
                crate::auth::key_secret::SecretsManagerKeys::new(secrets.clone(), arn),
                config.secrets_refresh,
            ),
            None => KeyRing::fixed(
                KeySet::load(&PemFile::new(
                    &config.jwt_private_key_file,
                    config.jwt_algorithm,
                ))
                .await
                .context("loading the JWT signing keys")?,
            ),
        };
        Self::build(config, keys, &secrets)
    }

    /// Builds the state around keys loaded elsewhere (tests).
    pub fn with_keys(config: Config, keys: KeySet) -> Result<Self, StartupError> {
        let secrets = SecretsManager::from_config(&config);
        Self::build(config, KeyRing::fixed(keys), &secrets)
    }

    fn build(
        config: Config,
        keys: KeyRing,
        secrets: &SecretsManager,
    ) -> Result<Self, StartupError> {
        let db = Db::connect(
            Connector::from_config(&config, secrets)?,
            config.database_pool_size,
            config.dependency_timeout,
        )?;
        let cache = Cache::from_config(&config, secrets)?;
        let hasher = PasswordHasher::new(
            config.argon2,
            config.hashing_concurrency,
            config.hashing_queue_timeout,
        )
        .context("argon2 configuration")?;
        let tokens = AccessTokens::new(
            Arc::new(keys),
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        );
        let revocations = Revocations::new(cache.clone(), db.clone(), config.access_token_ttl);
        let profiles = Profiles::new(cache.clone(), db.clone());
        let limits = Limits::new(cache.clone(), config.limits);
        let mailer = Mailer::from_config(&config).context("mail configuration")?;
        let audit_store = match &config.audit_table {
            Some(table) => AuditStore::dynamodb(table, config.dynamodb_endpoint_url.clone()),
            None => AuditStore::Postgres(db.clone()),
        };
        let audit = AuditSink::new(audit_store, config.audit_retention);
        Ok(Self {
            config: Arc::new(config),
            db,
            cache,
            hasher,
            tokens,
            revocations,
            profiles,
            limits,
            mailer,
            audit,
            background: tokio_util::task::TaskTracker::new(),
        })
    }
}

/// The local server: every route in one process.
pub struct App {
    state: AppState,
}

impl App {
    /// Applies pending migrations, builds the state and makes sure the revocation mirror is
    /// complete. Fails if Postgres or Redis cannot be reached now.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        db::migrate(&Connector::from_config(
            &config,
            &SecretsManager::from_config(&config),
        )?)
        .await
        .context("applying migrations")?;
        let state = AppState::new(config).await?;
        state
            .revocations
            .ensure_mirror()
            .await
            .context("preparing the revocation mirror in Redis")?;
        if let Some(admin) = &state.config.bootstrap_admin {
            crate::bootstrap::ensure_first_admin(&state, admin).await?;
        }
        Ok(Self { state })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every route with the common layers.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves until the process ends (or the task running this is dropped).
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router();
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}
