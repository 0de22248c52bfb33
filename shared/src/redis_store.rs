//! The Redis connection: one multiplexed connection that reconnects by itself, a key prefix
//! so deployments and tests can share a server, and a deadline on every command.
//!
//! Redis here is only a fast mirror (revocation markers) and a counter store (rate limits):
//! nothing in it is the only copy of a fact, so losing it must never let a revoked token in.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

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
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl Cache {
    /// Prepares the connection; it is opened on first use, so this succeeds while Redis is down.
    pub fn connect(url: &SecretString, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url.expose_secret()).context("REDIS_URL is not a valid URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Fail fast while Redis is down; the next command tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .context("preparing the Redis connection")?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    /// The full key for `name` under this deployment's prefix.
    pub fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A connection handle to run commands on.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs `command` under the dependency deadline.
    pub async fn timed<T>(
        &self,
        command: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CacheError(anyhow::anyhow!(
                "redis command exceeded {:?}",
                self.timeout
            ))),
        }
    }

    /// `PING` within the deadline, for `/readyz`.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection();
        self.timed(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .map(drop)
    }
}
