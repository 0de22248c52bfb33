//! SQL for `password_reset_tokens`: store a user's newest reset token, look one up, and
//! spend it exactly once together with the new password hash.
//!
//! Only token hashes come in here ([`crate::auth::opaque`]); a token's text never reaches the
//! database or a log line.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::email_tokens::drop_outstanding_links;
use super::users::{UserRecord, from_row};
use super::{Db, DbError};

/// How long spent and expired rows are kept before a later request prunes them.
const KEEP_DEAD_ROWS_SECS: f64 = 24.0 * 3600.0;

impl Db {
    /// Stores `token_hash` as the reset token of `user_id`, valid for `ttl`, and deletes the
    /// user's older unused tokens: only the newest email works.
    ///
    /// `requested_at` is when the request arrived. Emails are stored and sent after the
    /// response, so two requests of one user may get here out of order; the older one then
    /// finds a newer token and stores nothing. Returns whether the token was stored: `false`
    /// also when the user is gone or disabled by now. The user's row is locked for the
    /// transaction, so concurrent requests of one user never leave two live tokens.
    pub async fn store_reset_token(
        &self,
        user_id: Uuid,
        token_hash: &[u8],
        requested_at: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let eligible = tx
                .query_opt(
                    "SELECT 1 FROM users
                     WHERE id = $1 AND deleted_at IS NULL AND NOT disabled
                     FOR UPDATE",
                    &[&user_id],
                )
                .await?
                .is_some();
            if !eligible {
                return Ok(false);
            }
            let superseded = tx
                .query_opt(
                    "SELECT 1 FROM password_reset_tokens
                     WHERE user_id = $1 AND created_at > $2 LIMIT 1",
                    &[&user_id, &requested_at],
                )
                .await?
                .is_some();
            if superseded {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM password_reset_tokens
                 WHERE (user_id = $1 AND used_at IS NULL)
                    OR expires_at < now() - make_interval(secs => $2)",
                &[&user_id, &KEEP_DEAD_ROWS_SECS],
            )
            .await?;
            tx.execute(
                "INSERT INTO password_reset_tokens (token_hash, user_id, created_at, expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                &[&token_hash, &user_id, &requested_at, &ttl.as_secs_f64()],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// The live, enabled user whose unused, unexpired reset token hashes to `token_hash`.
    /// Spends nothing: the reset validates the new password against this user first.
    pub async fn reset_token_user(&self, token_hash: &[u8]) -> Result<Option<UserRecord>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT u.id, u.email, u.name, u.role, u.disabled, u.email_verified, u.mfa_enabled, u.created_at,
                            u.updated_at, u.password_hash, u.tokens_valid_after
                     FROM password_reset_tokens t JOIN users u ON u.id = t.user_id
                     WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now()
                       AND u.deleted_at IS NULL AND NOT u.disabled",
                )
                .await?;
            client
                .query_opt(&stmt, &[&token_hash])
                .await?
                .as_ref()
                .map(from_row)
                .transpose()
        })
        .await
    }

    /// Spends the reset token and stores `new_password_hash` for its user, in one
    /// transaction, marks the address verified (the link proved it) and drops the account's
    /// other outstanding links; returns the user, or `None` when the token is unknown, spent, expired,
    /// or its user is gone or disabled.
    ///
    /// The spend is one conditional `UPDATE ... WHERE used_at IS NULL`: of several requests
    /// presenting the same token at once, Postgres lets exactly one match (the others wait
    /// for its row lock, then find `used_at` set).
    pub async fn spend_reset_token(
        &self,
        token_hash: &[u8],
        new_password_hash: &str,
    ) -> Result<Option<Uuid>, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let spent = tx
                .query_opt(
                    "UPDATE password_reset_tokens t SET used_at = now()
                     FROM users u
                     WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now()
                       AND u.id = t.user_id AND u.deleted_at IS NULL AND NOT u.disabled
                     RETURNING t.user_id",
                    &[&token_hash],
                )
                .await?;
            let Some(row) = spent else {
                return Ok(None);
            };
            let user_id: Uuid = row.try_get(0)?;
            // The reset link proved the address, so it is verified now.
            tx.execute(
                "UPDATE users SET password_hash = $2, email_verified = true, updated_at = now()
                 WHERE id = $1",
                &[&user_id, &new_password_hash],
            )
            .await?;
            // Any other unused reset link, and a pending email change, die with this reset.
            drop_outstanding_links(&tx, user_id).await?;
            tx.commit().await?;
            Ok(Some(user_id))
        })
        .await
    }
}
