//! SQL for the `users` table. Only live (not deleted) users are ever returned.

use anyhow::anyhow;
use tokio_postgres::Row;
use uuid::Uuid;

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

pub(crate) const COLUMNS: &str =
    "id, email, name, role, disabled, created_at, updated_at, password_hash";

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
}

/// Inserts `new` inside the transaction `tx`.
pub(crate) async fn insert_user(
    tx: &deadpool_postgres::Transaction<'_>,
    new: &NewUser<'_>,
) -> Result<User, DbError> {
    let sql = format!(
        "INSERT INTO users (id, email, name, password_hash, role)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
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
            ],
        )
        .await?;
    Ok(from_row(&row)?.user)
}

/// A change to a user's profile; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct ProfileChange<'a> {
    /// New email.
    pub email: Option<&'a Email>,
    /// New name; `Some(None)` removes it.
    pub name: Option<Option<&'a UserName>>,
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

    /// Applies a profile change and returns the updated user (`None`: no such live user).
    pub async fn update_profile(
        &self,
        id: Uuid,
        change: ProfileChange<'_>,
    ) -> Result<Option<User>, DbError> {
        let (set_name, name) = match change.name {
            Some(name) => (true, name.map(UserName::as_str)),
            None => (false, None),
        };
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "UPDATE users SET
                    email = COALESCE($2, email),
                    name = CASE WHEN $3 THEN $4 ELSE name END,
                    updated_at = now()
                 WHERE id = $1 AND deleted_at IS NULL
                 RETURNING {COLUMNS}"
            );
            let row = client
                .query_opt(
                    &sql,
                    &[&id, &change.email.map(Email::as_str), &set_name, &name],
                )
                .await?;
            Ok(row.as_ref().map(from_row).transpose()?.map(|r| r.user))
        })
        .await
    }

    /// Replaces the stored password hash (a password change, or a re-hash with new
    /// parameters). `only_if_current` guards a re-hash against a concurrent change.
    pub async fn set_password_hash(
        &self,
        id: Uuid,
        new_hash: &str,
        only_if_current: Option<&str>,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let updated = client
                .execute(
                    // A re-hash (`only_if_current`) is not a change of the account: it keeps
                    // `updated_at`, so cached profiles stay right (see `crate::profiles`).
                    "UPDATE users SET password_hash = $2,
                     updated_at = CASE WHEN $3::text IS NULL THEN now() ELSE updated_at END
                     WHERE id = $1 AND deleted_at IS NULL
                       AND ($3::text IS NULL OR password_hash = $3)",
                    &[&id, &new_hash, &only_if_current],
                )
                .await?;
            Ok(updated == 1)
        })
        .await
    }
}
