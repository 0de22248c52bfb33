//! Rotation of the JWT signing-key secret: the four steps Secrets Manager runs a rotation
//! function through (`createSecret`, `setSecret`, `testSecret`, `finishSecret`), for
//! `functions/rotate-keys`.
//!
//! A rotation puts a fresh key first and keeps the previous ones after it, the previous
//! signer marked retired now; a retired key is dropped only once its retention has passed:
//! the longest access-token lifetime, plus how long an instance may keep signing with keys
//! it cached before the rotation, plus a margin (see [`RotationSettings`]). So a token
//! verifies for its whole life, whichever key signed it.
//!
//! The functions that only verify tokens cannot read this secret: they read the public-key
//! secret (`JWT_PUBLIC_KEYS_SECRET_ARN`), which `setSecret` fills from the pending version
//! (see [`crate::auth::key_secret::public_json`]). `setSecret` runs before `finishSecret`
//! lets anyone sign with the new key, so a verifier that meets its `kid` finds it there.
//!
//! Every step first checks, as AWS's rotation templates do, that rotation is enabled on the
//! secret and that the request's token is a version of it staged `AWSPENDING` (a version
//! already `AWSCURRENT` means the rotation is done: nothing to do). Each step is idempotent:
//! Secrets Manager retries a failed step. The clock is injectable, for tests of the
//! retention.
//!
//! Never logs key material: only kids, versions and counts.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Header, Validation};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::key_secret::{KeyEntry, KeySecret, KeySecretError, public_json};
use crate::auth::keys::{KeyAlgorithm, KeySet};
use crate::config::Config;
use crate::telemetry::ErrorChain;

/// Staging label of the version in use.
const CURRENT: &str = "AWSCURRENT";
/// Staging label of the version being rotated in.
const PENDING: &str = "AWSPENDING";

/// Added to the retention on top of the token lifetime and the key-cache refresh: clock
/// skew between instances, a refresh that runs late.
pub const RETENTION_MARGIN: Duration = Duration::from_secs(5 * 60);

/// One step of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Write the new version, staged `AWSPENDING`.
    CreateSecret,
    /// Install the new version wherever it is used (nothing to do for signing keys).
    SetSecret,
    /// Check that the new version works.
    TestSecret,
    /// Make the new version `AWSCURRENT`.
    FinishSecret,
}

/// The event Secrets Manager invokes a rotation function with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    /// The step to run.
    #[serde(rename = "Step")]
    pub step: Step,
    /// The secret's ARN.
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The version being rotated in (its id).
    #[serde(rename = "ClientRequestToken")]
    pub client_request_token: String,
}

/// Why a step failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Rotation is not enabled on the secret.
    #[error("rotation is not enabled on secret {0}")]
    NotEnabled(String),
    /// The token is not a version of the secret.
    #[error("version {version} is not a version of secret {secret}")]
    UnknownVersion {
        /// The secret.
        secret: String,
        /// The request's token.
        version: String,
    },
    /// The token is a version of the secret, but not the one being rotated in.
    #[error("version {version} of secret {secret} is not staged AWSPENDING")]
    NotPending {
        /// The secret.
        secret: String,
        /// The request's token.
        version: String,
    },
    /// A Secrets Manager call failed.
    #[error("Secrets Manager {operation} failed")]
    SecretsManager {
        /// The API operation.
        operation: &'static str,
        /// The SDK's error.
        #[source]
        source: anyhow::Error,
    },
    /// A version's value is not a valid key secret.
    #[error("the {stage} version of the key secret is invalid")]
    InvalidSecret {
        /// `AWSCURRENT` or `AWSPENDING`.
        stage: &'static str,
        /// What is wrong.
        #[source]
        source: KeySecretError,
    },
    /// Generating, signing with or verifying with a key failed.
    #[error("{0}")]
    Key(String),
}

fn sdk_error<E>(operation: &'static str) -> impl FnOnce(E) -> RotationError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| RotationError::SecretsManager {
        operation,
        source: anyhow::Error::new(e),
    }
}

/// What a rotation needs to know beyond the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSettings {
    /// Algorithm of the new key (`JWT_ALGORITHM`).
    pub algorithm: KeyAlgorithm,
    /// How long a retired key stays in the secret.
    pub retention: Duration,
    /// Where `setSecret` writes the public keys (`JWT_PUBLIC_KEYS_SECRET_ARN`); `None`:
    /// nowhere (every reader of the keys reads the private secret).
    pub public_keys_secret: Option<String>,
}

impl RotationSettings {
    /// From the configuration: retention = `ACCESS_TOKEN_TTL_SECONDS` (the longest a token
    /// signed by the old key lives) + `SECRETS_REFRESH_SECONDS` (the longest an instance
    /// may keep signing with the old key it cached) + [`RETENTION_MARGIN`].
    pub fn from_config(config: &Config) -> Self {
        Self {
            algorithm: config.jwt_algorithm,
            retention: config.access_token_ttl + config.secrets_refresh + RETENTION_MARGIN,
            public_keys_secret: config.jwt_public_keys_secret_arn.clone(),
        }
    }
}

/// The current time, injectable for tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Runs rotation steps against Secrets Manager.
#[derive(Clone)]
pub struct Rotator {
    client: Client,
    settings: RotationSettings,
    clock: Clock,
}

impl fmt::Debug for Rotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The secret's versions and their stages, as DescribeSecret gives them.
struct Versions(HashMap<String, Vec<String>>);

impl Versions {
    fn has(&self, version: &str, stage: &str) -> bool {
        self.0
            .get(version)
            .is_some_and(|stages| stages.iter().any(|s| s == stage))
    }

    fn staged(&self, stage: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(version, _)| version.as_str())
    }
}

impl Rotator {
    /// A rotator using `client`, with the system clock.
    pub fn new(client: Client, settings: RotationSettings) -> Self {
        Self {
            client,
            settings,
            clock: Arc::new(Utc::now),
        }
    }

    /// A rotator for the function: the client from the AWS SDK's usual sources.
    pub async fn from_config(config: &Config) -> Self {
        Self::new(
            crate::secrets::client(config.secretsmanager_endpoint_url.as_deref()).await,
            RotationSettings::from_config(config),
        )
    }

    /// The same rotator with another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs one step (the rotation function's handler).
    #[tracing::instrument(skip_all, fields(step = ?event.step, secret = %event.secret_id, version = %event.client_request_token))]
    pub async fn handle(&self, event: &RotationEvent) -> Result<(), RotationError> {
        let secret = event.secret_id.as_str();
        let token = event.client_request_token.as_str();
        let versions = self.versions(secret).await?;
        if versions.has(token, CURRENT) {
            tracing::info!("version is already AWSCURRENT: nothing to do");
            return Ok(());
        }
        if !versions.0.contains_key(token) {
            return Err(RotationError::UnknownVersion {
                secret: secret.to_owned(),
                version: token.to_owned(),
            });
        }
        if !versions.has(token, PENDING) {
            return Err(RotationError::NotPending {
                secret: secret.to_owned(),
                version: token.to_owned(),
            });
        }
        let result = match event.step {
            Step::CreateSecret => self.create(secret, token).await,
            Step::SetSecret => self.publish(secret, token).await,
            Step::TestSecret => self.test(secret, token).await,
            Step::FinishSecret => self.finish(secret, token, &versions).await,
        };
        if let Err(e) = &result {
            tracing::error!(error = %ErrorChain(e), "rotation step failed");
        }
        result
    }

    /// DescribeSecret: rotation enabled, and the versions with their stages.
    async fn versions(&self, secret: &str) -> Result<Versions, RotationError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSecret")(e.into_service_error()))?;
        if described.rotation_enabled() != Some(true) {
            return Err(RotationError::NotEnabled(secret.to_owned()));
        }
        Ok(Versions(
            described
                .version_ids_to_stages()
                .cloned()
                .unwrap_or_default(),
        ))
    }

    /// The value of a version by stage (and id, if given); `None` if it has no value.
    async fn value(
        &self,
        secret: &str,
        version: Option<&str>,
        stage: &'static str,
    ) -> Result<Option<KeySecret>, RotationError> {
        let output = match self
            .client
            .get_secret_value()
            .secret_id(secret)
            .set_version_id(version.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                let e = e.into_service_error();
                if e.is_resource_not_found_exception() {
                    return Ok(None);
                }
                return Err(sdk_error("GetSecretValue")(e));
            }
        };
        let Some(text) = output.secret_string() else {
            return Ok(None);
        };
        KeySecret::parse(&SecretString::from(text))
            .map(Some)
            .map_err(|source| RotationError::InvalidSecret { stage, source })
    }

    /// createSecret: the current keys plus a new signing key, as the pending version.
    async fn create(&self, secret: &str, token: &str) -> Result<(), RotationError> {
        if self.value(secret, Some(token), PENDING).await?.is_some() {
            tracing::info!("createSecret: the pending version exists already");
            return Ok(());
        }
        let current = self.value(secret, None, CURRENT).await?.unwrap_or_default();
        let now = (self.clock)();
        let pem = self
            .settings
            .algorithm
            .generate_pem()
            .map_err(|e| RotationError::Key(format!("generating the new key: {e}")))?;
        let new = KeyEntry::new(pem, now).map_err(|source| RotationError::InvalidSecret {
            stage: PENDING,
            source,
        })?;
        let new_kid = new.kid().to_owned();
        let before = current.keys().len();
        let pending = current.rotated(new, now, self.settings.retention);
        let dropped = (before + 1).saturating_sub(pending.keys().len());
        let json = pending.to_json();
        self.client
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(secrecy::ExposeSecret::expose_secret(&json))
            .version_stages(PENDING)
            .send()
            .await
            .map_err(|e| sdk_error("PutSecretValue")(e.into_service_error()))?;
        tracing::info!(
            kid = %new_kid,
            keys = pending.keys().len(),
            dropped,
            "createSecret: new signing key staged AWSPENDING"
        );
        Ok(())
    }

    /// The pending version's keys.
    async fn pending_set(&self, secret: &str, token: &str) -> Result<KeySet, RotationError> {
        let pending = self
            .value(secret, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::Key("the pending version has no value".into()))?;
        let invalid = |source| RotationError::InvalidSecret {
            stage: PENDING,
            source,
        };
        KeySet::from_pem(&pending.pem_chain().map_err(invalid)?)
            .map_err(|e| RotationError::Key(format!("reading the pending keys: {e}")))
    }

    /// setSecret: the pending keys' public halves and cursor key, as the new version of the
    /// public-key secret (repeating it writes the same value again).
    async fn publish(&self, secret: &str, token: &str) -> Result<(), RotationError> {
        let Some(public_secret) = &self.settings.public_keys_secret else {
            tracing::info!("setSecret: no public-key secret to write");
            return Ok(());
        };
        let set = self.pending_set(secret, token).await?;
        let json = public_json(&set);
        self.client
            .put_secret_value()
            .secret_id(public_secret)
            .secret_string(secrecy::ExposeSecret::expose_secret(&json))
            .send()
            .await
            .map_err(|e| sdk_error("PutSecretValue")(e.into_service_error()))?;
        tracing::info!(
            kid = %set.signing_key().kid(),
            keys = set.jwks().keys.len(),
            "setSecret: the pending public keys are published"
        );
        Ok(())
    }

    /// testSecret: the pending version is a key set whose signing key signs a token that
    /// it then verifies, and that still verifies the current signing key's tokens.
    async fn test(&self, secret: &str, token: &str) -> Result<(), RotationError> {
        let set = self.pending_set(secret, token).await?;
        sign_and_verify(&set, (self.clock)())?;
        if let Some(current) = self.value(secret, None, CURRENT).await?
            && let Some(signer) = current.keys().first()
            && set.verification_key(signer.kid()).is_none()
        {
            return Err(RotationError::Key(format!(
                "the pending keys lack the current signing key {}",
                signer.kid()
            )));
        }
        tracing::info!(kid = %set.signing_key().kid(), "testSecret: the pending keys sign and verify");
        Ok(())
    }

    /// finishSecret: AWSCURRENT moves to the pending version (AWSPREVIOUS follows the old
    /// one), and AWSPENDING is taken off it: a finished rotation leaves AWSPENDING on no
    /// version, one of the two end states Secrets Manager accepts.
    async fn finish(
        &self,
        secret: &str,
        token: &str,
        versions: &Versions,
    ) -> Result<(), RotationError> {
        let old = versions.staged(CURRENT).map(str::to_owned);
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(CURRENT)
            .move_to_version_id(token)
            .set_remove_from_version_id(old.clone())
            .send()
            .await
            .map_err(|e| sdk_error("UpdateSecretVersionStage")(e.into_service_error()))?;
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(PENDING)
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateSecretVersionStage")(e.into_service_error()))?;
        tracing::info!(previous = ?old, "finishSecret: the new version is AWSCURRENT");
        Ok(())
    }
}

/// Signs a short-lived token with the set's signing key and verifies it with the set.
fn sign_and_verify(set: &KeySet, now: DateTime<Utc>) -> Result<(), RotationError> {
    #[derive(Serialize, Deserialize)]
    struct Probe {
        sub: String,
        exp: i64,
    }
    let signer = set.signing_key();
    let algorithm = signer.algorithm().jwt_algorithm();
    let mut header = Header::new(algorithm);
    header.kid = Some(signer.kid().to_owned());
    let claims = Probe {
        sub: "rotation-test".into(),
        exp: now.timestamp() + 300,
    };
    let encoding = signer
        .encoding_key()
        .ok_or_else(|| RotationError::Key("the new key has no private half".into()))?;
    let token = jsonwebtoken::encode(&header, &claims, encoding)
        .map_err(|e| RotationError::Key(format!("signing with the new key: {e}")))?;
    let verifier = set
        .verification_key(signer.kid())
        .ok_or_else(|| RotationError::Key("the new key is not in its own set".into()))?;
    let mut validation = Validation::new(algorithm);
    // The probe's exp is relative to the (injectable) clock, not the system's.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let decoded = jsonwebtoken::decode::<Probe>(&token, verifier.decoding_key(), &validation)
        .map_err(|e| RotationError::Key(format!("verifying with the new key: {e}")))?;
    if decoded.claims.sub != claims.sub {
        return Err(RotationError::Key(
            "the probe token came back altered".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_as_secrets_manager_sends_them() {
        let event: RotationEvent = serde_json::from_value(serde_json::json!({
            "Step": "createSecret",
            "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:jwt-AbCdEf",
            "ClientRequestToken": "3f6f0c4e-7c1f-4a57-9b8e-0d0c6f8f1a2b",
        }))
        .expect("event");
        assert_eq!(event.step, Step::CreateSecret);
        for (name, step) in [
            ("setSecret", Step::SetSecret),
            ("testSecret", Step::TestSecret),
            ("finishSecret", Step::FinishSecret),
        ] {
            let parsed: Step = serde_json::from_value(name.into()).expect("step");
            assert_eq!(parsed, step);
        }
    }

    #[test]
    fn retention_covers_token_lifetime_and_key_cache() {
        let config = Config::from_lookup(|name| match name {
            "ACCESS_TOKEN_TTL_SECONDS" => Some("600".into()),
            "SECRETS_REFRESH_SECONDS" => Some("120".into()),
            _ => None,
        })
        .expect("config");
        let settings = RotationSettings::from_config(&config);
        assert_eq!(
            settings.retention,
            Duration::from_secs(600 + 120) + RETENTION_MARGIN
        );
        assert_eq!(settings.algorithm, KeyAlgorithm::Es256);
    }

    #[test]
    fn a_fresh_key_set_passes_the_probe() {
        let pem = KeyAlgorithm::EdDsa.generate_pem().expect("key");
        let set = KeySet::from_pem(&pem).expect("set");
        sign_and_verify(&set, Utc::now()).expect("signs and verifies");
    }
}
