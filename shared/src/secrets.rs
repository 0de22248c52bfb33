//! AWS Secrets Manager: secrets read on first use, kept in memory and read again after a
//! refresh interval, so a rotated secret is picked up without a redeploy.
//!
//! Every function of the stack sees every `*_SECRET_ARN` variable, but its role may read only
//! the secrets it uses; so nothing here is fetched at cold start, only when first needed.
//! A secret's value never reaches a log line or a `Debug` output: it stays a
//! [`SecretString`] until the one place that uses it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::{Mutex, OnceCell};

/// The Secrets Manager client of this process, built on first use from the standard AWS
/// environment (region, credentials, `AWS_ENDPOINT_URL[_SECRETS_MANAGER]` for moto).
#[derive(Clone, Default)]
pub struct SecretsManager {
    client: Arc<OnceCell<aws_sdk_secretsmanager::Client>>,
    endpoint_url: Option<Arc<str>>,
}

impl SecretsManager {
    /// A handle on the default endpoint, or `endpoint_url` (`Config::secretsmanager_endpoint_url`);
    /// no AWS call is made until a secret is read.
    pub fn new(endpoint_url: Option<&str>) -> Self {
        Self {
            client: Arc::default(),
            endpoint_url: endpoint_url.map(Into::into),
        }
    }

    /// The endpoint the configuration names.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(config.secretsmanager_endpoint_url.as_deref())
    }

    /// The SDK client.
    pub async fn client(&self) -> &aws_sdk_secretsmanager::Client {
        self.client
            .get_or_init(|| client(self.endpoint_url.as_deref()))
            .await
    }

    /// The current (`AWSCURRENT`) string value of `secret_id`.
    pub async fn current_value(&self, secret_id: &str) -> anyhow::Result<SecretString> {
        let output = self
            .client()
            .await
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(e)))
            .with_context(|| format!("reading secret {secret_id}"))?;
        output
            .secret_string
            .map(SecretString::from)
            .ok_or_else(|| anyhow!("secret {secret_id} has no string value"))
    }
}

/// A Secrets Manager client built from the AWS SDK's usual sources (region, credentials,
/// `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`), `endpoint_url` overriding them.
pub async fn client(endpoint_url: Option<&str>) -> aws_sdk_secretsmanager::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_secretsmanager::Client::new(&loader.load().await)
}

/// One secret, read on first use and again once `refresh` has passed (or after
/// [`invalidate`](Self::invalidate), when the value turned out to be stale).
#[derive(Clone)]
pub struct CachedSecret {
    manager: SecretsManager,
    secret_id: String,
    refresh: Duration,
    cached: Arc<Mutex<Option<(Instant, SecretString)>>>,
}

impl std::fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSecret")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl CachedSecret {
    /// `secret_id` (a name or ARN) through `manager`, read again after `refresh`.
    pub fn new(manager: SecretsManager, secret_id: impl Into<String>, refresh: Duration) -> Self {
        Self {
            manager,
            secret_id: secret_id.into(),
            refresh,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The secret's name or ARN (for messages; not secret).
    pub fn id(&self) -> &str {
        &self.secret_id
    }

    /// The value, from memory while it is fresh. Concurrent callers wait for one read.
    pub async fn get(&self) -> anyhow::Result<SecretString> {
        let mut cached = self.cached.lock().await;
        if let Some((read_at, value)) = cached.as_ref()
            && read_at.elapsed() < self.refresh
        {
            return Ok(value.clone());
        }
        // Boxed: the SDK's request future (and the client's first load) is kilobytes, and
        // an unboxed await would put it inline in every future that may read a secret: a
        // database query, a Redis command, a token check. They would all carry it on every
        // request (moved and allocated with them) for a read that happens once in a while.
        let value = Box::pin(self.manager.current_value(&self.secret_id)).await?;
        *cached = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    /// The value parsed as JSON into `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        let value = self.get().await?;
        // serde_json's error names the position, never the content.
        serde_json::from_str(value.expose_secret())
            .with_context(|| format!("secret {} is not the expected JSON", self.secret_id))
    }

    /// Forgets the value: the next [`get`](Self::get) reads it again (a password that
    /// stopped working has probably been rotated).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
