//! SQL for `email_tokens`: the links that prove a reader owns an address (verify the
//! account's email, or move the account to a new one), and the clean-ups that make outstanding
//! links die when the account changes.
//!
//! Only token hashes come in here ([`crate::auth::opaque`]); a token's text never reaches the
//! database or a log line.

use std::time::Duration;

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::users::{COLUMNS, UserRecord, from_row};
use super::{Db, DbError};
use crate::domain::{Email, User};

/// What an email link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailPurpose {
    /// Prove the account's current address.
    Verify,
    /// Move the account to the address the link went to.
    Change,
}

impl EmailPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Change => "change",
        }
    }
}

/// What presenting a link did.
#[derive(Debug)]
pub enum EmailTokenUse {
    /// The account's current address is now verified.
    Verified(User),
    /// The account moved to the link's address (now verified); `old_email` was its address.
    Changed {
        /// The account as it is now.
        user: User,
        /// The address it had before.
        old_email: Email,
    },
    /// An email-change link whose address another account took meanwhile; the link is spent.
    EmailTaken {
        /// The account that asked for the change.
        user_id: Uuid,
    },
    /// Unknown, spent, expired, superseded, or its account is gone, disabled or no longer
    /// has the address the link went to.
    Invalid,
}

/// Deletes the account's outstanding password-reset links and email-change links: what
/// a password change or reset, an email change, a disable or a delete must do (a link
/// requested before such a change must not work after it). Returns whether a pending email
/// change was cancelled.
pub(crate) async fn drop_outstanding_links(
    tx: &Transaction<'_>,
    user_id: Uuid,
) -> Result<bool, DbError> {
    tx.execute(
        "DELETE FROM password_reset_tokens WHERE user_id = $1 AND used_at IS NULL",
        &[&user_id],
    )
    .await?;
    let cancelled = tx
        .execute(
            "DELETE FROM email_tokens
             WHERE user_id = $1 AND purpose = 'change' AND used_at IS NULL",
            &[&user_id],
        )
        .await?;
    Ok(cancelled > 0)
}

impl Db {
    /// Stores `token_hash` as the account's newest `purpose` link to `email`, valid for
    /// `ttl`, deleting its older unused links of that purpose. Returns `false` (nothing
    /// stored) when the account is gone or disabled, or for [`EmailPurpose::Verify`] when
    /// its address is no longer `email` or is verified already.
    pub async fn store_email_token(
        &self,
        user_id: Uuid,
        purpose: EmailPurpose,
        email: &Email,
        token_hash: &[u8],
        ttl: Duration,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT email, email_verified FROM users
                     WHERE id = $1 AND deleted_at IS NULL AND NOT disabled
                     FOR UPDATE",
                    &[&user_id],
                )
                .await?
            else {
                return Ok(false);
            };
            if purpose == EmailPurpose::Verify {
                let current: String = row.try_get(0)?;
                let verified: bool = row.try_get(1)?;
                if verified || current != email.as_str() {
                    return Ok(false);
                }
            }
            tx.execute(
                "DELETE FROM email_tokens
                 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                &[&user_id, &purpose.as_str()],
            )
            .await?;
            tx.execute(
                "INSERT INTO email_tokens (token_hash, user_id, purpose, email, expires_at)
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
                &[
                    &token_hash,
                    &user_id,
                    &purpose.as_str(),
                    &email.as_str(),
                    &ttl.as_secs_f64(),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Spends the link whose token hashes to `token_hash` and does what it is for, in one
    /// transaction. The spend is a conditional `UPDATE ... WHERE used_at IS NULL`: of
    /// concurrent requests with one link exactly one gets past it.
    pub async fn use_email_token(&self, token_hash: &[u8]) -> Result<EmailTokenUse, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let mut tx = client.transaction().await?;
            let Some(spent) = tx
                .query_opt(
                    "UPDATE email_tokens SET used_at = now()
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
                     RETURNING user_id, purpose, email",
                    &[&token_hash],
                )
                .await?
            else {
                return Ok(EmailTokenUse::Invalid);
            };
            let user_id: Uuid = spent.try_get(0)?;
            let purpose: String = spent.try_get(1)?;
            let link_email: String = spent.try_get(2)?;
            let sql = format!(
                "SELECT {COLUMNS} FROM users
                 WHERE id = $1 AND deleted_at IS NULL AND NOT disabled FOR UPDATE"
            );
            let Some(row) = tx.query_opt(&sql, &[&user_id]).await? else {
                return Ok(EmailTokenUse::Invalid);
            };
            let current: UserRecord = from_row(&row)?;
            let used = if purpose == EmailPurpose::Verify.as_str() {
                if current.user.email.as_str() != link_email {
                    // The address changed since the link was sent: it proves nothing now.
                    tx.commit().await?;
                    return Ok(EmailTokenUse::Invalid);
                }
                let sql = format!(
                    "UPDATE users SET email_verified = true, updated_at = now()
                     WHERE id = $1 RETURNING {COLUMNS}"
                );
                let row = tx.query_one(&sql, &[&user_id]).await?;
                EmailTokenUse::Verified(from_row(&row)?.user)
            } else {
                let sql = format!(
                    "UPDATE users SET email = $2, email_verified = true, updated_at = now()
                     WHERE id = $1 RETURNING {COLUMNS}"
                );
                // In a savepoint: when another account took the address meanwhile, the link
                // is still spent.
                let moved = {
                    let savepoint = tx.savepoint("move_email").await?;
                    match savepoint.query_one(&sql, &[&user_id, &link_email]).await {
                        Ok(row) => {
                            savepoint.commit().await?;
                            Some(row)
                        }
                        Err(e) => match DbError::from(e) {
                            DbError::EmailTaken => None,
                            other => return Err(other),
                        },
                    }
                };
                match moved {
                    None => EmailTokenUse::EmailTaken { user_id },
                    Some(row) => {
                        drop_outstanding_links(&tx, user_id).await?;
                        // Links to verify the old address die with it.
                        tx.execute(
                            "DELETE FROM email_tokens WHERE user_id = $1 AND used_at IS NULL",
                            &[&user_id],
                        )
                        .await?;
                        EmailTokenUse::Changed {
                            user: from_row(&row)?.user,
                            old_email: current.user.email,
                        }
                    }
                }
            };
            tx.commit().await?;
            Ok(used)
        })
        .await
    }
}
