//! SQL for two-factor login: the encrypted TOTP secret and its replay guard, the recovery
//! code hashes, and the `mfa_token`s of two-step logins (see `migrations/V7__two_factor.sql`).
//!
//! Everything that must happen once happens in one conditional statement: a step is accepted
//! only if it is later than the last one (`last_step`), a recovery code only while unused, an
//! `mfa_token` only while unspent, so two concurrent requests with the same code or token
//! cannot both succeed.

use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::sessions::{SessionOrigin, pg_interval};
use super::{Db, DbError};
use crate::auth::mfa_keys::Sealed;

/// Wrong codes an `mfa_token` takes before it is spent.
pub const MFA_TOKEN_ATTEMPTS: i32 = 5;

/// A user's TOTP secret as stored.
#[derive(Debug, Clone)]
pub struct StoredTotp {
    /// The encrypted secret.
    pub sealed: Sealed,
    /// Whether the set-up was confirmed (two-factor login is on).
    pub confirmed: bool,
}

/// A live `mfa_token`: whose login it continues, and from where the first step came.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// The account.
    pub user_id: Uuid,
    /// The first step's client, for the session.
    pub origin: SessionOrigin,
}

/// How a second factor is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// A TOTP code of this time step.
    Step(i64),
    /// A recovery code with this hash.
    RecoveryCode([u8; 32]),
}

/// What spending an `mfa_token` with a code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStep {
    /// Token and code spent: open the session.
    Passed,
    /// The code was spent already (a replay, or a concurrent request with it): a wrong code.
    CodeSpent,
    /// The token was spent meanwhile (a concurrent request won).
    TokenGone,
}

impl Db {
    /// The user's TOTP secret, pending or confirmed.
    pub async fn totp(&self, user_id: Uuid) -> Result<Option<StoredTotp>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT key_id, secret, confirmed_at IS NOT NULL FROM mfa_totp WHERE user_id = $1",
                )
                .await?;
            let Some(row) = client.query_opt(&stmt, &[&user_id]).await? else {
                return Ok(None);
            };
            Ok(Some(StoredTotp {
                sealed: Sealed {
                    key_id: row.try_get(0)?,
                    bytes: row.try_get(1)?,
                },
                confirmed: row.try_get(2)?,
            }))
        })
        .await
    }

    /// Stores `sealed` as the user's pending set-up, replacing a pending one; `false` (and
    /// nothing changes) when two-factor login is on already.
    pub async fn store_pending_totp(
        &self,
        user_id: Uuid,
        sealed: &Sealed,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO mfa_totp (user_id, key_id, secret) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE
                        SET key_id = EXCLUDED.key_id, secret = EXCLUDED.secret,
                            last_step = NULL, created_at = now()
                        WHERE mfa_totp.confirmed_at IS NULL",
                )
                .await?;
            let stored = client
                .execute(&stmt, &[&user_id, &sealed.key_id, &sealed.bytes])
                .await?;
            Ok(stored == 1)
        })
        .await
    }

    /// Confirms the pending set-up `sealed` (still the pending one) with the code of `step`,
    /// turns two-factor login on and stores the recovery code hashes, in one transaction.
    /// `false` when the set-up is gone, replaced, confirmed already, or `step` is spent.
    pub async fn confirm_totp(
        &self,
        user_id: Uuid,
        sealed: &Sealed,
        step: i64,
        recovery_hashes: &[[u8; 32]],
    ) -> Result<bool, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let confirmed = tx
                .execute(
                    "UPDATE mfa_totp SET confirmed_at = now(), last_step = $3
                     WHERE user_id = $1 AND secret = $2 AND confirmed_at IS NULL
                       AND (last_step IS NULL OR last_step < $3)",
                    &[&user_id, &sealed.bytes, &step],
                )
                .await?;
            let enabled = tx
                .execute(
                    "UPDATE users SET mfa_enabled = true, updated_at = now()
                     WHERE id = $1 AND deleted_at IS NULL",
                    &[&user_id],
                )
                .await?;
            if confirmed != 1 || enabled != 1 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                )
                .await?;
            for hash in recovery_hashes {
                tx.execute(&insert, &[&user_id, &hash.as_slice()]).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Spends a second factor of a signed-in user (turning two-factor login off): the code
    /// of `step` or an unused recovery code. `false` when it is spent already.
    pub async fn spend_second_factor(
        &self,
        user_id: Uuid,
        factor: SecondFactor,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let spent = spend(&tx, user_id, factor).await?;
            tx.commit().await?;
            Ok(spent)
        })
        .await
    }

    /// Turns two-factor login off: the secret, the recovery codes and the pending second
    /// steps go. `false` when it was not on.
    pub async fn disable_mfa(&self, user_id: Uuid) -> Result<bool, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let was_on = tx
                .execute(
                    "UPDATE users SET mfa_enabled = false, updated_at = now()
                     WHERE id = $1 AND mfa_enabled",
                    &[&user_id],
                )
                .await?;
            remove_second_factor(&tx, user_id).await?;
            tx.commit().await?;
            Ok(was_on == 1)
        })
        .await
    }

    /// Stores a new `mfa_token` (its hash) for the second step of `user_id`'s login.
    pub async fn store_mfa_token(
        &self,
        token_hash: &[u8; 32],
        user_id: Uuid,
        origin: &SessionOrigin,
        ttl: Duration,
    ) -> Result<(), DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO mfa_tokens (token_hash, user_id, expires_at, ip, user_agent)
                     VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)",
                )
                .await?;
            client
                .execute(
                    &stmt,
                    &[
                        &token_hash.as_slice(),
                        &user_id,
                        &pg_interval(ttl),
                        &origin.ip,
                        &origin.user_agent,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// The login an unspent, unexpired `mfa_token` continues.
    pub async fn pending_login(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<PendingLogin>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT user_id, ip, user_agent FROM mfa_tokens
                     WHERE token_hash = $1 AND spent_at IS NULL AND expires_at > now()",
                )
                .await?;
            let Some(row) = client.query_opt(&stmt, &[&token_hash.as_slice()]).await? else {
                return Ok(None);
            };
            let ip: Option<IpAddr> = row.try_get(1)?;
            let user_agent: Option<String> = row.try_get(2)?;
            Ok(Some(PendingLogin {
                user_id: row.try_get(0)?,
                origin: SessionOrigin::new(ip, user_agent.as_deref()),
            }))
        })
        .await
    }

    /// Spends the `mfa_token` and the second factor together, or neither.
    pub async fn pass_second_step(
        &self,
        token_hash: &[u8; 32],
        user_id: Uuid,
        factor: SecondFactor,
    ) -> Result<SecondStep, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let token = tx
                .execute(
                    "UPDATE mfa_tokens SET spent_at = now()
                     WHERE token_hash = $1 AND user_id = $2 AND spent_at IS NULL
                       AND expires_at > now()",
                    &[&token_hash.as_slice(), &user_id],
                )
                .await?;
            if token != 1 {
                return Ok(SecondStep::TokenGone);
            }
            if !spend(&tx, user_id, factor).await? {
                return Ok(SecondStep::CodeSpent);
            }
            tx.commit().await?;
            Ok(SecondStep::Passed)
        })
        .await
    }

    /// Counts a wrong code against the `mfa_token`; the fifth spends it. Returns whether it
    /// is spent now.
    pub async fn mfa_token_failed(&self, token_hash: &[u8; 32]) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE mfa_tokens SET attempts = attempts + 1,
                        spent_at = CASE WHEN attempts + 1 >= $2 THEN now() ELSE spent_at END
                     WHERE token_hash = $1 AND spent_at IS NULL
                     RETURNING spent_at IS NOT NULL",
                )
                .await?;
            let row = client
                .query_opt(&stmt, &[&token_hash.as_slice(), &MFA_TOKEN_ATTEMPTS])
                .await?;
            Ok(match row {
                Some(row) => row.try_get(0)?,
                None => true,
            })
        })
        .await
    }

    /// Every stored secret not under `key_id`, a batch at a time (for re-encryption).
    pub async fn totp_not_under(
        &self,
        key_id: &str,
        limit: i64,
    ) -> Result<Vec<(Uuid, Sealed)>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT user_id, key_id, secret FROM mfa_totp WHERE key_id <> $1
                     ORDER BY user_id LIMIT $2",
                    &[&key_id, &limit],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get(0)?,
                        Sealed {
                            key_id: row.try_get(1)?,
                            bytes: row.try_get(2)?,
                        },
                    ))
                })
                .collect()
        })
        .await
    }

    /// Replaces the secret `old` of `user_id` with `new` (the same secret under another
    /// key); `false` if it changed meanwhile (a new set-up).
    pub async fn reseal_totp(
        &self,
        user_id: Uuid,
        old: &Sealed,
        new: &Sealed,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let updated = client
                .execute(
                    "UPDATE mfa_totp SET key_id = $3, secret = $4
                     WHERE user_id = $1 AND secret = $2",
                    &[&user_id, &old.bytes, &new.key_id, &new.bytes],
                )
                .await?;
            Ok(updated == 1)
        })
        .await
    }
}

/// Spends `factor` for `user_id` inside `client`'s transaction.
async fn spend(
    client: &Transaction<'_>,
    user_id: Uuid,
    factor: SecondFactor,
) -> Result<bool, DbError> {
    let spent = match factor {
        SecondFactor::Step(step) => {
            client
                .execute(
                    "UPDATE mfa_totp SET last_step = $2
                     WHERE user_id = $1 AND confirmed_at IS NOT NULL
                       AND (last_step IS NULL OR last_step < $2)",
                    &[&user_id, &step],
                )
                .await?
        }
        SecondFactor::RecoveryCode(hash) => {
            client
                .execute(
                    "UPDATE mfa_recovery_codes SET used_at = now()
                     WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                    &[&user_id, &hash.as_slice()],
                )
                .await?
        }
    };
    Ok(spent == 1)
}

/// Deletes the user's TOTP secret, recovery codes and pending second steps (inside the
/// transaction of a change that turns two-factor login off: the user's own, an admin's, a
/// delete).
pub(crate) async fn remove_second_factor(
    tx: &Transaction<'_>,
    user_id: Uuid,
) -> Result<(), DbError> {
    for sql in [
        "DELETE FROM mfa_totp WHERE user_id = $1",
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        "DELETE FROM mfa_tokens WHERE user_id = $1",
    ] {
        tx.execute(sql, &[&user_id]).await?;
    }
    Ok(())
}
