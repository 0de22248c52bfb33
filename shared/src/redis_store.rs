//! The Redis connection: one multiplexed connection that reconnects by itself, a key prefix
//! so deployments and tests can share a server, and a deadline on every command. On AWS it
//! is TLS (`rediss://`, the certificate verified) with the AUTH token from Secrets Manager.
//!
//! Redis here is only a fast mirror (revocation markers, profile versions) and a counter
//! store (rate limits): nothing in it is the only copy of a fact, so losing it must never
//! let a revoked token in.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use redis::IntoConnectionInfo as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::secrets::{CachedSecret, SecretsManager};

/// The error type of the Redis layer: it is either there in time or it is not.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable")]
pub struct CacheError(#[source] anyhow::Error);

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError(e.into())
    }
}

/// A handle on Redis; cheap to clone (one shared connection).
#[derive(Clone)]
pub struct Cache {
    connection: Arc<OnceCell<ConnectionManager>>,
    opener: Arc<Opener>,
    prefix: String,
    timeout: Duration,
    /// How many commands have failed: see [`Cache::failures`].
    failures: Arc<AtomicU64>,
}

/// What opening the connection takes: the URL, the AUTH token's secret, the TLS roots.
struct Opener {
    url: SecretString,
    auth_token: Option<CachedSecret>,
    tls_roots: Option<Vec<u8>>,
    timeout: Duration,
}

/// The JSON of the Redis AUTH secret: `{"token"}` for ElastiCache's AUTH token (the
/// default user), plus `"username"` for a Redis ACL user.
#[derive(serde::Deserialize)]
struct AuthSecret {
    token: SecretString,
    #[serde(default)]
    username: Option<String>,
}

impl Cache {
    /// Prepares the connection the configuration describes: `REDIS_URL` (or `REDIS_HOST`,
    /// TLS), the AUTH token from `REDIS_AUTH_SECRET_ARN`, TLS roots from `REDIS_CA_FILE`.
    /// Nothing is opened or fetched until the first command.
    pub fn from_config(config: &Config, secrets: &SecretsManager) -> anyhow::Result<Self> {
        let tls_roots = match &config.redis_ca_file {
            Some(path) => {
                let pem = crate::tls::roots_pem(Some(path), "")?;
                crate::tls::certificates(&pem).context("REDIS_CA_FILE")?;
                Some(pem)
            }
            None => None,
        };
        let auth_token = config
            .redis_auth_secret_arn
            .as_ref()
            .map(|arn| CachedSecret::new(secrets.clone(), arn, config.secrets_refresh));
        Self::with_opener(
            Opener {
                url: config.redis_url.clone(),
                auth_token,
                tls_roots,
                timeout: config.dependency_timeout,
            },
            &config.redis_key_prefix,
        )
    }

    /// Prepares a connection to `url`; it is opened on first use, so this succeeds while
    /// Redis is down. For the unit tests: the service connects from its configuration.
    #[cfg(test)]
    pub fn connect(url: &SecretString, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        Self::with_opener(
            Opener {
                url: url.clone(),
                auth_token: None,
                tls_roots: None,
                timeout,
            },
            prefix,
        )
    }

    fn with_opener(opener: Opener, prefix: &str) -> anyhow::Result<Self> {
        // Refuse a malformed URL now rather than at the first request.
        opener
            .url
            .expose_secret()
            .into_connection_info()
            .context("REDIS_URL is not a valid URL")?;
        Ok(Self {
            connection: Arc::new(OnceCell::new()),
            timeout: opener.timeout,
            opener: Arc::new(opener),
            prefix: prefix.to_owned(),
            failures: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Where this connects, for an operator's eyes: `host:port`, the database number, TLS,
    /// the AUTH secret. Never a password.
    pub fn describe(&self) -> String {
        let Ok(info) = self.opener.url.expose_secret().into_connection_info() else {
            // Checked when this handle was made.
            return "(invalid URL)".to_owned();
        };
        let mut text = info.addr().to_string();
        let db = info.redis_settings().db();
        if db != 0 {
            text.push_str(&format!(" db {db}"));
        }
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            text.push_str(", TLS");
        }
        if let Some(secret) = &self.opener.auth_token {
            text.push_str(&format!(", AUTH from {}", secret.id()));
        }
        text
    }

    /// The full key for `name` under this deployment's prefix.
    pub fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A connection handle to run commands on. The first call prepares the connection
    /// (reading the AUTH token from Secrets Manager if there is one); the connection itself
    /// is opened by the first command and reopened by itself after a failure.
    pub async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        let opener = &self.opener;
        self.connection
            .get_or_try_init(|| async {
                let mut info = opener.url.expose_secret().into_connection_info()?;
                if let Some(secret) = &opener.auth_token {
                    let auth: AuthSecret = self
                        .within("reading the redis AUTH secret", secret.get_json())
                        .await?;
                    let mut settings = info
                        .redis_settings()
                        .clone()
                        .set_password(auth.token.expose_secret());
                    if let Some(username) = &auth.username {
                        settings = settings.set_username(username);
                    }
                    info = info.set_redis_settings(settings);
                }
                let client = match &opener.tls_roots {
                    Some(roots) => redis::Client::build_with_tls(
                        info,
                        redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(roots.clone()),
                        },
                    )?,
                    None => redis::Client::open(info)?,
                };
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(opener.timeout))
                    .set_response_timeout(Some(opener.timeout))
                    // Fail fast while Redis is down; the next command tries again.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                Ok(ConnectionManager::new_lazy_with_config(client, config)?)
            })
            .await
            .cloned()
    }

    /// Runs `command` under the dependency deadline.
    pub async fn timed<T>(
        &self,
        command: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, CacheError> {
        self.within("redis command", command).await
    }

    /// How many commands (and connection set-ups) have failed so far. The connection is
    /// reopened only after a failure, so while this stays the same every command went to
    /// the server the previous ones went to: the revocation mirror relies on it to notice
    /// a failover (`auth::revocation`).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// `step` under the dependency deadline; on time-out the error says what `step` was.
    async fn within<T, E: Into<anyhow::Error>>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, E>>,
    ) -> Result<T, CacheError> {
        let result = match tokio::time::timeout(self.timeout, step).await {
            Ok(result) => result.map_err(|e| CacheError(e.into())),
            Err(_) => Err(CacheError(anyhow::anyhow!(
                "{what} exceeded {:?}",
                self.timeout
            ))),
        };
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    /// `PING` within the deadline, for `/readyz`.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection().await?;
        self.timed(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .map(drop)
    }
}
