//! SQL for the `users` table. Only live (not deleted) users are ever returned.

use anyhow::anyhow;
use tokio_postgres::Row;
use uuid::Uuid;

use super::email_tokens::drop_outstanding_links;
use super::{Db, DbError};
use crate::domain::{Email, Role, User, UserName};

/// A user row with what only the service itself may see.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// The public part.
    pub user: User,
    /// The argon2id PHC string. Never logged, never returned.
    pub password_hash: String,
}

pub(crate) const COLUMNS: &str = "id, email, name, role, disabled, email_verified, mfa_enabled, created_at, updated_at, password_hash";

pub(crate) fn from_row(row: &Row) -> Result<UserRecord, DbError> {
    let bad = |what: &str| DbError::Query(anyhow!("users row holds an invalid {what}"));
    let email: String = row.try_get("email").map_err(DbError::from)?;
    let name: Option<String> = row.try_get("name").map_err(DbError::from)?;
    let role: String = row.try_get("role").map_err(DbError::from)?;
    Ok(UserRecord {
        user: User {
            id: row.try_get("id")?,
            email: Email::parse(&email).map_err(|_| bad("email"))?,
            name: name
                .map(|n| UserName::parse(&n))
                .transpose()
                .map_err(|_| bad("name"))?,
            role: role.parse().map_err(|_| bad("role"))?,
            disabled: row.try_get("disabled")?,
            email_verified: row.try_get("email_verified")?,
            mfa_enabled: row.try_get("mfa_enabled")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
        password_hash: row.try_get("password_hash")?,
    })
}

/// What a new user is made of.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Validated email.
    pub email: &'a Email,
    /// Optional display name.
    pub name: Option<&'a UserName>,
    /// The argon2id PHC string of the password.
    pub password_hash: &'a str,
    /// The role to give.
    pub role: Role,
    /// Whether the address counts as verified from the start.
    pub email_verified: bool,
}

/// Inserts `new` inside the transaction `tx`.
pub(crate) async fn insert_user(
    tx: &deadpool_postgres::Transaction<'_>,
    new: &NewUser<'_>,
) -> Result<User, DbError> {
    let sql = format!(
        "INSERT INTO users (id, email, name, password_hash, role, email_verified)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    let stmt = tx.prepare_cached(&sql).await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &Uuid::now_v7(),
                &new.email.as_str(),
                &new.name.map(UserName::as_str),
                &new.password_hash,
                &new.role.as_str(),
                &new.email_verified,
            ],
        )
        .await?;
    Ok(from_row(&row)?.user)
}

impl Db {
    /// Inserts a user; [`DbError::EmailTaken`] when a live user has the email.
    pub async fn insert_user(&self, new: NewUser<'_>) -> Result<User, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let user = insert_user(&tx, &new).await?;
            tx.commit().await?;
            Ok(user)
        })
        .await
    }

    /// The live user with this email, if any.
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM users WHERE lower(email) = $1 AND deleted_at IS NULL"
            );
            let stmt = client.prepare_cached(&sql).await?;
            client
                .query_opt(&stmt, &[&email.as_str()])
                .await?
                .as_ref()
                .map(from_row)
                .transpose()
        })
        .await
    }

    /// The live user with this id, if any.
    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
            let stmt = client.prepare_cached(&sql).await?;
            client
                .query_opt(&stmt, &[&id])
                .await?
                .as_ref()
                .map(from_row)
                .transpose()
        })
        .await
    }

    /// Sets (or with `None` removes) the user's display name; returns the updated user
    /// (`None`: no such live user).
    pub async fn set_name(
        &self,
        id: Uuid,
        name: Option<&UserName>,
    ) -> Result<Option<User>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "UPDATE users SET name = $2, updated_at = now()
                 WHERE id = $1 AND deleted_at IS NULL
                 RETURNING {COLUMNS}"
            );
            let row = client
                .query_opt(&sql, &[&id, &name.map(UserName::as_str)])
                .await?;
            Ok(row.as_ref().map(from_row).transpose()?.map(|r| r.user))
        })
        .await
    }

    /// Stores the hash of a new password the user chose, and in the same transaction
    /// deletes the account's outstanding password-reset and email-change links (see
    /// [`drop_outstanding_links`]). Returns whether a pending email change was cancelled, or
    /// `None` when the user is gone.
    pub async fn change_password_hash(
        &self,
        id: Uuid,
        new_hash: &str,
    ) -> Result<Option<bool>, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let updated = tx
                .execute(
                    "UPDATE users SET password_hash = $2, updated_at = now()
                     WHERE id = $1 AND deleted_at IS NULL",
                    &[&id, &new_hash],
                )
                .await?;
            if updated == 0 {
                return Ok(None);
            }
            let cancelled = drop_outstanding_links(&tx, id).await?;
            tx.commit().await?;
            Ok(Some(cancelled))
        })
        .await
    }

    /// Replaces a hash made with older parameters (after a successful login), unless the
    /// password changed meanwhile (`old_hash` is no longer stored).
    pub async fn rehash_password(
        &self,
        id: Uuid,
        new_hash: &str,
        old_hash: &str,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let updated = client
                .execute(
                    // A re-hash is not a change of the account: it keeps `updated_at`, so
                    // cached profiles stay right (see `crate::profiles`).
                    "UPDATE users SET password_hash = $2
                     WHERE id = $1 AND deleted_at IS NULL AND password_hash = $3",
                    &[&id, &new_hash, &old_hash],
                )
                .await?;
            Ok(updated == 1)
        })
        .await
    }
}
