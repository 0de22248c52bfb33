//! SQL for user management by admins: the paginated list, changes guarded so that at
//! least one active admin always remains, and deletion.
//!
//! Every change that can remove an active admin (demote, disable, delete) takes one
//! transaction-scoped advisory lock first, so two admins demoting each other at the same
//! moment are serialised and the second one sees that it would leave no admin.

use std::future::Future;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::email_tokens::drop_outstanding_links;
use super::users::{COLUMNS, UserRecord, from_row};
use super::{Db, DbError, PagePosition};
use crate::domain::{Email, Role, User, UserName};

/// Names the advisory lock that serialises admin-count checks ("lastadmn").
const LAST_ADMIN_LOCK: i64 = 0x6c61_7374_6164_6d6e;

/// What to list.
#[derive(Debug, Default)]
pub struct UserFilter<'a> {
    /// Case-insensitive substring of the email.
    pub email_contains: Option<&'a str>,
    /// Exact role.
    pub role: Option<Role>,
}

/// A change an admin makes to a user; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct AdminChange<'a> {
    /// New email.
    pub email: Option<&'a Email>,
    /// New name; `Some(None)` removes it.
    pub name: Option<Option<&'a UserName>>,
    /// New role.
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Mark the email verified or not. Absent with a new email: not verified.
    pub email_verified: Option<bool>,
    /// Turn the user's two-factor login off (a lost phone).
    pub remove_mfa: bool,
}

/// Why an admin change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminChangeError {
    /// No live user with that id.
    #[error("no such user")]
    NotFound,
    /// The change would leave no active admin.
    #[error("the last active admin cannot be demoted, disabled or deleted")]
    LastAdmin,
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for AdminChangeError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// What an admin change did to the user's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEffects {
    /// Access tokens issued before the change are rejected (role change, disable, delete).
    pub access_tokens_cut_off: bool,
    /// Every session ended (disable, delete).
    pub sessions_ended: bool,
    /// The sessions it ended.
    pub ended_sessions: Vec<Uuid>,
    /// The address before, when the change moved the account to another one.
    pub old_email: Option<Email>,
    /// Two-factor login was on and the change turned it off.
    pub mfa_removed: bool,
}

impl Db {
    /// Up to `limit` live users matching `filter`, newest first, after `after`.
    pub async fn list_users(
        &self,
        filter: &UserFilter<'_>,
        after: Option<PagePosition>,
        limit: i64,
    ) -> Result<Vec<User>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM users
                 WHERE deleted_at IS NULL
                   AND ($1::text IS NULL OR strpos(lower(email), lower($1)) > 0)
                   AND ($2::text IS NULL OR role = $2)
                   AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                 ORDER BY created_at DESC, id DESC
                 LIMIT $5"
            );
            let rows = client
                .query(
                    &sql,
                    &[
                        &filter.email_contains,
                        &filter.role.map(Role::as_str),
                        &after.map(|p| p.at),
                        &after.map(|p| p.id),
                        &limit,
                    ],
                )
                .await?;
            rows.iter().map(|r| from_row(r).map(|u| u.user)).collect()
        })
        .await
    }

    /// Applies an admin's change to user `id`. When it cuts off the user's tokens, `mark`
    /// (which writes the Redis markers for the cut-off instant and the sessions it is given)
    /// runs before the commit: if it fails, nothing changes. The cut-off instant is taken
    /// only once the user's row is locked (see `sessions::lock_active_user` for why).
    pub async fn change_user<M, F>(
        &self,
        id: Uuid,
        change: AdminChange<'_>,
        mark: M,
    ) -> Result<(User, ChangeEffects), AdminChangeError>
    where
        M: FnOnce(DateTime<Utc>, Vec<Uuid>) -> F,
        F: Future<Output = anyhow::Result<()>>,
    {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let current = lock_user(&tx, id).await?;
            let at = Utc::now();
            let demoted = change.role == Some(Role::User) && current.user.role == Role::Admin;
            let disabled = change.disabled == Some(true) && !current.user.disabled;
            if (demoted || disabled) && current.is_active_admin() {
                ensure_another_active_admin(&tx, id).await?;
            }
            let effects = ChangeEffects {
                access_tokens_cut_off: change.role.is_some_and(|r| r != current.user.role)
                    || disabled,
                sessions_ended: disabled,
                ended_sessions: Vec::new(),
                old_email: None,
                mfa_removed: change.remove_mfa && current.user.mfa_enabled,
            };
            let (set_name, name) = match change.name {
                Some(name) => (true, name.map(UserName::as_str)),
                None => (false, None),
            };
            let sql = format!(
                "UPDATE users SET
                    email = COALESCE($2, email),
                    name = CASE WHEN $3 THEN $4 ELSE name END,
                    role = COALESCE($5, role),
                    disabled = COALESCE($6, disabled),
                    email_verified = CASE WHEN $9::boolean IS NOT NULL THEN $9
                                          WHEN $2::text IS NOT NULL AND $2 <> email THEN false
                                          ELSE email_verified END,
                    mfa_enabled = mfa_enabled AND NOT $10,
                    tokens_valid_after = CASE WHEN $7 THEN greatest(tokens_valid_after, $8)
                                              ELSE tokens_valid_after END,
                    updated_at = now()
                 WHERE id = $1
                 RETURNING {COLUMNS}"
            );
            let row = tx
                .query_one(
                    &sql,
                    &[
                        &id,
                        &change.email.map(Email::as_str),
                        &set_name,
                        &name,
                        &change.role.map(Role::as_str),
                        &change.disabled,
                        &effects.access_tokens_cut_off,
                        &at,
                        &change.email_verified,
                        &change.remove_mfa,
                    ],
                )
                .await
                .map_err(DbError::from)?;
            let updated = from_row(&row)?;
            // A link sent before the address changed or the account was disabled must not
            // work after it.
            let mut effects = effects;
            if updated.user.email != current.user.email {
                effects.old_email = Some(current.user.email.clone());
            }
            if effects.old_email.is_some() || disabled {
                drop_outstanding_links(&tx, id).await?;
            }
            if change.remove_mfa {
                super::mfa::remove_second_factor(&tx, id).await?;
            }
            if effects.sessions_ended {
                effects.ended_sessions = end_all_sessions(&tx, id, "disabled").await?;
            }
            if effects.access_tokens_cut_off {
                mark(at, effects.ended_sessions.clone())
                    .await
                    .map_err(|e| AdminChangeError::Db(DbError::Unavailable(e)))?;
            }
            tx.commit().await?;
            Ok((updated.user, effects))
        })
        .await
    }

    /// Deletes user `id` (soft: the row stays for the audit trail, the email is free again),
    /// ends its sessions and cuts off its tokens; `mark` runs before the commit. Returns the
    /// sessions it ended.
    pub async fn delete_user<M, F>(&self, id: Uuid, mark: M) -> Result<Vec<Uuid>, AdminChangeError>
    where
        M: FnOnce(DateTime<Utc>, Vec<Uuid>) -> F,
        F: Future<Output = anyhow::Result<()>>,
    {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let current = lock_user(&tx, id).await?;
            let at = Utc::now();
            if current.is_active_admin() {
                ensure_another_active_admin(&tx, id).await?;
            }
            tx.execute(
                "UPDATE users SET deleted_at = now(), updated_at = now(),
                    tokens_valid_after = greatest(tokens_valid_after, $2)
                 WHERE id = $1",
                &[&id, &at],
            )
            .await?;
            drop_outstanding_links(&tx, id).await?;
            super::mfa::remove_second_factor(&tx, id).await?;
            let ended = end_all_sessions(&tx, id, "deleted").await?;
            mark(at, ended.clone())
                .await
                .map_err(|e| AdminChangeError::Db(DbError::Unavailable(e)))?;
            tx.commit().await?;
            Ok(ended)
        })
        .await
    }

    /// Whether any active (enabled, live) admin exists.
    pub async fn active_admin_exists(&self) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin'
                       AND NOT disabled AND deleted_at IS NULL)",
                    &[],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }
}

impl UserRecord {
    fn is_active_admin(&self) -> bool {
        self.user.role == Role::Admin && !self.user.disabled
    }
}

/// Takes the admin-count lock, then the user's row.
async fn lock_user(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<UserRecord, AdminChangeError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LAST_ADMIN_LOCK])
        .await?;
    let sql =
        format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE");
    let row = tx.query_opt(&sql, &[&id]).await?;
    let row = row.ok_or(AdminChangeError::NotFound)?;
    Ok(from_row(&row)?)
}

async fn ensure_another_active_admin(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<(), AdminChangeError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled
               AND deleted_at IS NULL AND id <> $1)",
            &[&id],
        )
        .await?;
    let another: bool = row.try_get(0)?;
    if another {
        Ok(())
    } else {
        Err(AdminChangeError::LastAdmin)
    }
}

async fn end_all_sessions(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    reason: &str,
) -> Result<Vec<Uuid>, AdminChangeError> {
    let rows = tx
        .query(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $2
             WHERE user_id = $1 AND revoked_at IS NULL
             RETURNING id",
            &[&id, &reason],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?)
}

impl Db {
    /// Creates `new` as an admin unless an active admin exists already. Serialised by the
    /// admin lock, so instances starting at once create it exactly once. Returns the new
    /// admin, or `None` when one existed.
    pub async fn create_first_admin(
        &self,
        new: super::users::NewUser<'_>,
    ) -> Result<Option<User>, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LAST_ADMIN_LOCK])
                .await?;
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin'
                       AND NOT disabled AND deleted_at IS NULL)",
                    &[],
                )
                .await?
                .try_get(0)?;
            if exists {
                return Ok(None);
            }
            let user = super::users::insert_user(&tx, &new).await?;
            tx.commit().await?;
            Ok(Some(user))
        })
        .await
    }
}
