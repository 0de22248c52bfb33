//! The two database logins: the owner who migrates (the master user on AWS) and the runtime
//! role [`RUNTIME_ROLE`] the service runs as, which `migrations/V8__runtime_role.sql`
//! creates with only the privileges the code uses (no DDL, no `DELETE`, `UPDATE` or
//! `TRUNCATE` on the audit trail, no superuser). [`Migrator`] migrates as the owner and then
//! gives the runtime role the password of its own Secrets Manager secret, so that the role
//! and the secret agree after the first deploy and after every re-run.

use anyhow::Context as _;
use secrecy::ExposeSecret;

use super::{AbortOnDrop, Connector, DbSecret};
use crate::config::Config;
use crate::secrets::SecretsManager;

pub use crate::config::RUNTIME_ROLE;

/// Applies the migrations as the owner and keeps the runtime role's password in step with
/// its secret (`DATABASE_RUNTIME_SECRET_ARN`, when set).
pub struct Migrator {
    owner: Connector,
    secrets: SecretsManager,
    runtime_secret_arn: Option<String>,
}

impl Migrator {
    /// The migrator of the deployment `config` describes.
    pub fn from_config(config: &Config, secrets: &SecretsManager) -> anyhow::Result<Self> {
        Ok(Self {
            owner: Connector::owner(config, secrets)?,
            secrets: secrets.clone(),
            runtime_secret_arn: config.database_runtime_secret_arn.clone(),
        })
    }

    /// The owner's connector (creating the database on a developer machine).
    pub fn owner(&self) -> &Connector {
        &self.owner
    }

    /// Applies every pending migration, then sets the runtime role's password from its
    /// secret; returns how many migrations were applied.
    pub async fn run(&self) -> anyhow::Result<usize> {
        let applied = super::migrate(&self.owner).await?;
        if let Some(arn) = &self.runtime_secret_arn {
            let value = self
                .secrets
                .current_value(arn)
                .await
                .context("reading the runtime role's secret")?;
            // serde_json's error names the position, never the content.
            let secret: DbSecret = serde_json::from_str(value.expose_secret())
                .with_context(|| format!("secret {arn} is not the expected JSON"))?;
            set_password(&self.owner, &secret).await?;
            tracing::info!(role = RUNTIME_ROLE, secret = %arn, "runtime role's password set from its secret");
        }
        Ok(applied)
    }
}

/// Sets [`RUNTIME_ROLE`]'s password to the secret's, connected as the owner. Only that
/// role: a secret naming any other user (the master, say) is refused, so a wrong ARN
/// cannot change another login's password. The server receives a SCRAM-SHA-256 verifier,
/// never the password itself (nor does a statement log).
async fn set_password(owner: &Connector, secret: &DbSecret) -> anyhow::Result<()> {
    anyhow::ensure!(
        secret.username == RUNTIME_ROLE,
        "the runtime role's secret names user {:?}, not {RUNTIME_ROLE} (the role the migrations create)",
        secret.username
    );
    let verifier =
        postgres_protocol::password::scram_sha_256(secret.password.expose_secret().as_bytes());
    let (client, driver) = owner
        .connect(None)
        .await
        .context("connecting to Postgres to set the runtime role's password")?;
    let _driver = AbortOnDrop(driver);
    // ALTER ROLE takes no parameters: the server quotes both values itself (format's %I
    // and %L), so nothing is spliced into SQL on this side.
    let statement: String = client
        .query_one(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
            &[&RUNTIME_ROLE, &verifier],
        )
        .await
        .context("quoting the runtime role's password")?
        .get(0);
    client
        .batch_execute(&statement)
        .await
        .context("setting the runtime role's password")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connectors(vars: &[(&str, &str)]) -> (anyhow::Result<Connector>, Connector) {
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("configuration");
        let secrets = SecretsManager::from_config(&config);
        (
            Connector::runtime(&config, &secrets),
            Connector::owner(&config, &secrets).expect("owner"),
        )
    }

    #[test]
    fn the_service_runs_as_the_runtime_role_and_migrations_as_the_url_user() {
        let (runtime, owner) = connectors(&[("DATABASE_URL", "postgres://postgres@db/app")]);
        assert_eq!(
            runtime.expect("runtime").target.get_user(),
            Some(RUNTIME_ROLE)
        );
        assert_eq!(owner.target.get_user(), Some("postgres"));
    }

    #[test]
    fn a_url_password_never_goes_with_another_user() {
        let url = "postgres://owner:hunter2secret@db/app";
        let (runtime, owner) = connectors(&[("DATABASE_URL", url)]);
        let refused = runtime
            .err()
            .expect("the owner's password is not the role's");
        assert!(
            format!("{refused:#}").contains("DATABASE_RUNTIME_USER"),
            "{refused:#}"
        );
        assert!(!format!("{refused:#}").contains("hunter2secret"));
        assert_eq!(owner.target.get_password(), Some(&b"hunter2secret"[..]));
        // Running as the URL's own user keeps its password (the opt-out).
        let (runtime, _) = connectors(&[("DATABASE_URL", url), ("DATABASE_RUNTIME_USER", "owner")]);
        let runtime = runtime.expect("the URL's user");
        assert_eq!(runtime.target.get_user(), Some("owner"));
        assert_eq!(runtime.target.get_password(), Some(&b"hunter2secret"[..]));
    }
}
