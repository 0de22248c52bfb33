//! PLACEHOLDER (replaced by the rotation branch): JWT keys from a Secrets Manager secret.

use secrecy::{ExposeSecret as _, SecretString};

use super::keys::KeySource;
use crate::secrets::SecretsManager;

/// The keys in a Secrets Manager secret, `{"keys": [{"pem": ...}, ...]}`, signing key first.
pub struct SecretsManagerKeys {
    secrets: SecretsManager,
    secret_id: String,
}

impl SecretsManagerKeys {
    /// The keys in `secret_id`.
    pub fn new(secrets: SecretsManager, secret_id: impl Into<String>) -> Self {
        Self {
            secrets,
            secret_id: secret_id.into(),
        }
    }
}

#[derive(serde::Deserialize)]
struct Stored {
    keys: Vec<StoredKey>,
}

#[derive(serde::Deserialize)]
struct StoredKey {
    pem: SecretString,
}

impl KeySource for SecretsManagerKeys {
    async fn load(&self) -> anyhow::Result<SecretString> {
        let value = self.secrets.current_value(&self.secret_id).await?;
        let stored: Stored = serde_json::from_str(value.expose_secret())?;
        let mut text = String::new();
        for key in stored.keys {
            text.push_str(key.pem.expose_secret());
            text.push('\n');
        }
        Ok(text.into())
    }
}
