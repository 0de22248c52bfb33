//! The first admin: created at start from `BOOTSTRAP_ADMIN_EMAIL`/`BOOTSTRAP_ADMIN_PASSWORD`
//! when no active admin exists. Idempotent across restarts, and across instances starting
//! at once (the creation runs under the same lock as every admin-count check).

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret as _;

use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::config::BootstrapAdmin;
use crate::db::DbError;
use crate::db::users::NewUser;
use crate::domain::{Email, NewPassword, Role};

/// Creates the configured admin unless an active admin exists.
pub async fn ensure_first_admin(state: &AppState, admin: &BootstrapAdmin) -> anyhow::Result<()> {
    let email = Email::parse(&admin.email).context("BOOTSTRAP_ADMIN_EMAIL is not valid")?;
    // Cheap check first, so a restart does not pay for an argon2 hash.
    if state.db.active_admin_exists().await? {
        return Ok(());
    }
    let password = NewPassword::parse(admin.password.expose_secret(), &email, &[])
        .context("BOOTSTRAP_ADMIN_PASSWORD breaks the password policy")?;
    let password_hash = state.hasher.hash(&password).await?;
    let created = state
        .db
        .create_first_admin(NewUser {
            email: &email,
            name: None,
            password_hash: &password_hash,
            role: Role::Admin,
        })
        .await;
    match created {
        Ok(Some(user)) => {
            tracing::info!(user_id = %user.id, "bootstrap admin created");
            AuditEvent::success("admin_bootstrapped")
                .user(user.id)
                .record(&state.audit);
            Ok(())
        }
        Ok(None) => Ok(()),
        // Never promote an existing account: whoever registered that email first would
        // become admin.
        Err(DbError::EmailTaken) => bail!(
            "BOOTSTRAP_ADMIN_EMAIL belongs to an existing user and no admin exists; \
             use another email, or `user-service admin create`"
        ),
        Err(e) => Err(e.into()),
    }
}
