//! Wiring, the composition root: builds the infrastructure from the configuration, the
//! services on top of it, and the HTTP state around them, once per process (or per Lambda
//! cold start); and the local server that serves every route.
//!
//! Nothing here starts work a request may never need: pools connect on first use, secrets
//! are read on first use, the argon2 threads start on the first hash, the SMTP or SES client
//! on the first email.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::audit::{AuditSink, AuditStore};
use crate::auth::Authenticator;
use crate::auth::authorizer::Authorizer;
use crate::auth::hashing::PasswordHasher;
use crate::auth::key_secret::{SecretsManagerKeys, SecretsManagerPublicKeys};
use crate::auth::keys::{KeyRing, KeySet, PemFile};
use crate::auth::mfa_keys::MfaKeys;
use crate::auth::revocation::Revocations;
use crate::auth::rules::RouteRules;
use crate::auth::tokens::AccessTokens;
use crate::config::Config;
use crate::db::prune::{PRUNE_EVERY, PrunePolicy, prune_periodically};
use crate::db::{self, AbortOnDrop, Connector, Db};
use crate::http::{self, AppState};
use crate::limits::Limits;
use crate::mail::Mailer;
use crate::profiles::Profiles;
use crate::redis_store::Cache;
use crate::secrets::{CachedSecret, SecretsManager};
use crate::services::accounts::{AccountParts, AccountSettings, Creator};
use crate::services::credentials::Credentials;
use crate::services::outbox::Outbox;
use crate::services::second_factor::SecondFactors;
use crate::services::sessions::{SessionParts, SessionSettings};
use crate::services::{AccountError, Accounts, Sessions};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[error("startup failed: {0:#}")]
pub struct StartupError(#[from] anyhow::Error);

/// What every deployment part stands on: storage, keys and the revocation mirror.
struct Foundation {
    db: Db,
    cache: Cache,
    tokens: AccessTokens,
    revocations: Revocations,
}

impl Foundation {
    /// Pools (connected lazily, so a cold start does not wait for the database) and the
    /// keys: from the key file now, or from Secrets Manager on first use: the private keys
    /// (`JWT_KEYS_SECRET_ARN`) where the function signs, else the public ones
    /// (`JWT_PUBLIC_KEYS_SECRET_ARN`).
    async fn new(config: &Config) -> Result<Self, StartupError> {
        let secrets = SecretsManager::from_config(config);
        let keys = match (
            &config.jwt_keys_secret_arn,
            &config.jwt_public_keys_secret_arn,
        ) {
            (Some(arn), _) => KeyRing::refreshing(
                SecretsManagerKeys::new(secrets.clone(), arn),
                config.secrets_refresh,
            ),
            (None, Some(arn)) => KeyRing::refreshing(
                SecretsManagerPublicKeys::new(secrets.clone(), arn),
                config.secrets_refresh,
            ),
            (None, None) => KeyRing::fixed(
                KeySet::load(&PemFile::new(
                    &config.jwt_private_key_file,
                    config.jwt_algorithm,
                ))
                .await
                .context("loading the JWT signing keys")?,
            ),
        };
        let db = Db::connect(
            Connector::runtime(config, &secrets)?,
            config.database_pool_size,
            config.dependency_timeout,
        )?;
        let cache = Cache::from_config(config, &secrets)?;
        let tokens = AccessTokens::new(
            Arc::new(keys),
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        );
        let revocations = Revocations::new(
            cache.clone(),
            db.clone(),
            config.access_token_ttl,
            config.session_max_lifetime,
        );
        Ok(Self {
            db,
            cache,
            tokens,
            revocations,
        })
    }
}

/// The state of the HTTP routes, from `config`. Nothing is read from Secrets Manager here:
/// a function reads only the secrets its requests need. Applies no migration.
pub async fn state(config: &Config) -> Result<AppState, StartupError> {
    build_state(config, Foundation::new(config).await?)
}

fn build_state(config: &Config, base: Foundation) -> Result<AppState, StartupError> {
    let Foundation {
        db,
        cache,
        tokens,
        revocations,
    } = base;
    let hasher = PasswordHasher::new(
        config.argon2,
        config.hashing_concurrency,
        config.hashing_queue_timeout,
    )
    .context("argon2 configuration")?;
    let limits = Limits::new(cache.clone(), config.limits);
    let audit = audit_sink(config, &db);
    let background = tokio_util::task::TaskTracker::new();
    let outbox = Outbox::new(
        Mailer::from_config(config).context("mail configuration")?,
        background.clone(),
    );
    let credentials = Credentials {
        db: db.clone(),
        hasher: hasher.clone(),
        limits: limits.clone(),
        audit: audit.clone(),
        outbox: outbox.clone(),
    };
    let mfa_keys = match &config.mfa.keys_secret_arn {
        Some(arn) => MfaKeys::secret(CachedSecret::new(
            SecretsManager::from_config(config),
            arn,
            config.secrets_refresh,
        )),
        None => MfaKeys::file(&config.mfa.key_file),
    };
    let second_factors = SecondFactors::new(db.clone(), mfa_keys);
    let accounts = Accounts::new(AccountParts {
        db: db.clone(),
        hasher: hasher.clone(),
        credentials: credentials.clone(),
        revocations: revocations.clone(),
        profiles: Profiles::new(cache.clone(), db.clone()),
        limits,
        outbox,
        audit: audit.clone(),
        background: background.clone(),
        second_factors: second_factors.clone(),
        settings: AccountSettings {
            public_base_url: config.public_base_url.clone(),
            password_reset_ttl: config.password_reset_ttl,
            email_verification_ttl: config.email_verification_ttl,
            mfa_issuer: config.mfa.issuer.clone(),
        },
    });
    let sessions = Sessions::new(SessionParts {
        db: db.clone(),
        hasher,
        credentials,
        tokens: tokens.clone(),
        revocations: revocations.clone(),
        second_factors,
        audit: audit.clone(),
        background: background.clone(),
        settings: SessionSettings {
            refresh_token_ttl: config.refresh_token_ttl,
            session_max_lifetime: config.session_max_lifetime,
            refresh_reuse_grace: config.refresh_reuse_grace,
            require_verified_email: config.require_verified_email,
        },
    });
    Ok(AppState {
        accounts,
        sessions,
        authenticator: Authenticator::new(tokens, revocations),
        readiness: http::state::Readiness { db, cache },
        audit,
        background,
        client_ip: http::state::ClientIpSource {
            trust_forwarded_for: config.trust_forwarded_for,
        },
        admin_policy: http::state::AdminPolicy {
            requires_second_factor: config.admin_requires_mfa,
        },
    })
}

/// The audit sink of a deployment: DynamoDB when `AUDIT_TABLE` is set, else Postgres
/// (through `db`'s pool). Lazy: nothing connects, and no writer starts, before an event.
fn audit_sink(config: &Config, db: &Db) -> AuditSink {
    let store = match &config.audit_table {
        Some(table) => AuditStore::dynamodb(table, config.dynamodb_endpoint_url.clone()),
        None => AuditStore::Postgres(db.clone()),
    };
    AuditSink::new(store, config.audit_retention)
}

/// The Lambda authorizer of a deployment: its keys, its revocation mirror, the route rules
/// (`AUTHORIZER_ROUTE_RULES`) and the audit sink of its refusals (used by denials of valid
/// tokens only), and nothing else.
pub async fn authorizer(config: &Config) -> Result<Authorizer, StartupError> {
    let rules = RouteRules::from_config(config).context("AUTHORIZER_ROUTE_RULES")?;
    let base = Foundation::new(config).await?;
    let audit = audit_sink(config, &base.db);
    Ok(Authorizer::new(base.tokens, base.revocations, rules, audit))
}

/// The cleanup of a deployment (see [`crate::db::prune`]): the database and what counts as
/// dead for long enough, and nothing else (no Redis, no keys). `functions/cleanup` runs it
/// on a schedule; the local server runs it itself.
#[derive(Clone)]
pub struct Cleanup {
    /// Postgres.
    pub db: Db,
    /// Batches and retention.
    pub policy: PrunePolicy,
}

impl Cleanup {
    /// One pass: the rows deleted per table.
    pub async fn run(&self) -> Result<db::prune::Pruned, db::DbError> {
        self.db.prune_expired(&self.policy).await
    }
}

/// The cleanup of the deployment `config` describes. Connects lazily; applies no migration.
pub fn cleanup(config: &Config) -> Result<Cleanup, StartupError> {
    let db = Db::connect(
        Connector::runtime(config, &SecretsManager::from_config(config))?,
        config.database_pool_size,
        config.dependency_timeout,
    )?;
    Ok(Cleanup {
        db,
        policy: cleanup_policy(config),
    })
}

fn cleanup_policy(config: &Config) -> PrunePolicy {
    PrunePolicy::new(config.access_token_ttl, config.refresh_token_ttl)
}

/// The local server: every route in one process.
pub struct App {
    state: AppState,
    cleanup: PrunePolicy,
    server: crate::config::HttpServerConfig,
}

impl App {
    /// Applies pending migrations, builds the state, makes sure the revocation mirror is
    /// complete and creates the bootstrap admin when one is configured. Fails if Postgres or
    /// Redis cannot be reached now.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        db::runtime_role::Migrator::from_config(&config, &SecretsManager::from_config(&config))?
            .run()
            .await
            .context("applying migrations")?;
        let state = state(&config).await?;
        state
            .authenticator
            .revocations()
            .ensure_mirror()
            .await
            .context("preparing the revocation mirror in Redis")?;
        if let Some(admin) = &config.bootstrap_admin {
            ensure_first_admin(&state.accounts, admin).await?;
        }
        Ok(Self {
            state,
            cleanup: cleanup_policy(&config),
            server: config.http_server,
        })
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

    /// Serves until `shutdown` completes, then finishes the requests in flight. Connections
    /// get the header-read and idle timeouts and the cap of `HTTP_*` (see [`http::server`]).
    /// Meanwhile runs the cleanup every [`PRUNE_EVERY`] (stopped with the server).
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let _cleanup = AbortOnDrop(tokio::spawn(prune_periodically(
            self.state.readiness.db.clone(),
            self.cleanup,
            PRUNE_EVERY,
        )));
        http::server::serve(listener, self.router(), self.server, shutdown).await
    }
}

/// The first admin: created at start from `BOOTSTRAP_ADMIN_EMAIL`/`BOOTSTRAP_ADMIN_PASSWORD`
/// when no active admin exists, by the same [`Accounts::create`] as every other account.
/// Idempotent across restarts, and across instances starting at once (the creation runs
/// under the same lock as every admin-count check).
async fn ensure_first_admin(
    accounts: &Accounts,
    admin: &crate::config::BootstrapAdmin,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret as _;
    let created = accounts
        .create(
            &admin.email,
            admin.password.expose_secret(),
            None,
            crate::domain::Role::Admin,
            Creator::Bootstrap,
        )
        .await;
    match created {
        Ok(_) | Err(AccountError::AdminExists) => Ok(()),
        Err(AccountError::InvalidEmail(e)) => {
            Err(anyhow::Error::new(e).context("BOOTSTRAP_ADMIN_EMAIL is not valid"))
        }
        Err(AccountError::WeakPassword(e)) => {
            Err(anyhow::Error::new(e)
                .context("BOOTSTRAP_ADMIN_PASSWORD breaks the password policy"))
        }
        // Never promote an existing account: whoever registered that email first would
        // become admin.
        Err(AccountError::EmailTaken) => anyhow::bail!(
            "BOOTSTRAP_ADMIN_EMAIL belongs to an existing user and no admin exists; \
             use another email, or `user-service admin create`"
        ),
        Err(e) => Err(e.into()),
    }
}
