//! SQL for sessions and their refresh tokens: create, rotate exactly once, detect reuse,
//! list a user's live sessions, revoke. Postgres is the truth about revocation; Redis only
//! mirrors it for speed.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use deadpool_postgres::Transaction;

use super::users::UserRecord;
use super::{Db, DbError};
use crate::domain::Amr;

/// Why a session ended; stored for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The user logged out of this session.
    Logout,
    /// The user logged out of every session.
    LogoutAll,
    /// A spent refresh token was presented again.
    RefreshReuse,
    /// The password changed (the other sessions end).
    PasswordChange,
    /// The password was reset by email (every session ends).
    PasswordReset,
    /// An admin disabled the user.
    Disabled,
    /// An admin deleted the user.
    Deleted,
    /// The user deleted this session (`DELETE /v1/users/me/sessions/{id}`).
    SessionDeleted,
}

impl RevokeReason {
    const ALL: [Self; 8] = [
        Self::Logout,
        Self::LogoutAll,
        Self::RefreshReuse,
        Self::PasswordChange,
        Self::PasswordReset,
        Self::Disabled,
        Self::Deleted,
        Self::SessionDeleted,
    ];

    /// As stored (`sessions.revoked_reason`, the revocation journal).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::RefreshReuse => "refresh_reuse",
            Self::PasswordChange => "password_change",
            Self::PasswordReset => "password_reset",
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
            Self::SessionDeleted => "session_deleted",
        }
    }

    /// The reason stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Where a session was opened from, as its owner sees it in the list of sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    /// The login's client IP.
    pub ip: Option<IpAddr>,
    /// The login's `User-Agent`, at most [`SessionOrigin::USER_AGENT_MAX_CHARS`] characters.
    pub user_agent: Option<String>,
}

impl SessionOrigin {
    /// The longest `User-Agent` kept (the contract's cut; the column's check says the same).
    pub const USER_AGENT_MAX_CHARS: usize = 256;

    /// The origin of a login from `ip` with the `User-Agent` header `user_agent`: cut to
    /// [`Self::USER_AGENT_MAX_CHARS`] characters; blank counts as unknown.
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(str::trim)
            .filter(|ua| !ua.is_empty())
            .map(|ua| ua.chars().take(Self::USER_AGENT_MAX_CHARS).collect());
        Self { ip, user_agent }
    }
}

/// A live session as its owner sees it (`GET /v1/users/me/sessions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session id (the `sid` of its access tokens).
    pub id: Uuid,
    /// The login.
    pub created_at: DateTime<Utc>,
    /// The login, or the latest refresh.
    pub last_used_at: DateTime<Utc>,
    /// When it stops being refreshable: its live refresh token's expiry, which is already
    /// the earlier of the idle expiry and the session's absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// Where it was opened from.
    pub origin: SessionOrigin,
}

/// What makes a session live, for the list and for its deletion (one definition for both):
/// not revoked, not past its absolute expiry, and holding an unspent, unexpired refresh
/// token (else nothing can ever refresh it again). `s` is the session, `live.expires_at`
/// its live refresh token's expiry.
const LIVE_SESSIONS: &str = "FROM sessions s
     CROSS JOIN LATERAL (
         SELECT max(rt.expires_at) AS expires_at FROM refresh_tokens rt
         WHERE rt.session_id = s.id AND rt.spent_at IS NULL AND rt.expires_at > now()
     ) live
     WHERE s.revoked_at IS NULL AND s.absolute_expires_at > now()
       AND live.expires_at IS NOT NULL";

/// A session just created or refreshed, with the expiry of its newest refresh token.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The session id (`sid`).
    pub session_id: Uuid,
    /// When the refresh token just stored expires: the earlier of idle and absolute expiry.
    pub refresh_expires_at: DateTime<Utc>,
    /// The `jti` for the access token to issue with it, taken while the user's row was
    /// locked (see [`reserve_token_id`]).
    pub access_token_id: Uuid,
    /// How the session's user authenticated (its tokens' `amr`).
    pub amr: Amr,
}

/// Locks the user's row against admin changes until the transaction ends (`FOR SHARE`),
/// re-reads it, and takes the access token's id (a UUIDv7, so: its issue instant) under that
/// lock. An admin change takes `FOR UPDATE` on the row and picks its cut-off instant after
/// getting it, so either this transaction saw the change (and the token carries the new
/// role, or no token is issued to a disabled user) or the token's instant is before the
/// cut-off and the token is rejected. Without this, a refresh racing a role change could
/// mint a token with the old role after the cut-off.
async fn lock_active_user(
    tx: &Transaction<'_>,
    user_id: Uuid,
) -> Result<Option<(UserRecord, Uuid)>, DbError> {
    let sql = format!(
        "SELECT {} FROM users WHERE id = $1 AND deleted_at IS NULL AND NOT disabled FOR SHARE",
        super::users::COLUMNS
    );
    let stmt = tx.prepare_cached(&sql).await?;
    let Some(row) = tx.query_opt(&stmt, &[&user_id]).await? else {
        return Ok(None);
    };
    let user = super::users::from_row(&row)?;
    Ok(Some((user, reserve_token_id())))
}

/// The session a refresh token was spent in.
struct SpentFor {
    session_id: Uuid,
    user_id: Uuid,
    absolute_expires_at: DateTime<Utc>,
    second_factor: bool,
}

/// The rest of a rotation once the presented token is spent for `replacement`: the user
/// re-read under a share lock (an admin change may have committed since the spend looked at
/// the row), the replacement stored, the session's `last_refreshed_at` moved, the commit.
async fn finish_rotation(
    tx: Transaction<'_>,
    session: SpentFor,
    replacement: &[u8],
    refresh_ttl: Duration,
    retried: bool,
) -> Result<Rotation, DbError> {
    let Some((user, access_token_id)) = lock_active_user(&tx, session.user_id).await? else {
        return Ok(Rotation::Invalid);
    };
    let refresh_expires_at = store_refresh_token(
        &tx,
        replacement,
        session.session_id,
        refresh_ttl,
        session.absolute_expires_at,
    )
    .await?;
    let touch = tx
        .prepare_cached("UPDATE sessions SET last_refreshed_at = now() WHERE id = $1")
        .await?;
    tx.execute(&touch, &[&session.session_id]).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated {
        session: IssuedSession {
            session_id: session.session_id,
            refresh_expires_at,
            access_token_id,
            amr: Amr::with_second_factor(session.second_factor),
        },
        user: Box::new(user),
        retried,
    })
}

/// A fresh access-token id; its UUIDv7 timestamp is the token's issue instant.
fn reserve_token_id() -> Uuid {
    Uuid::now_v7()
}

/// The result of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live and is now spent; a new one is stored.
    Rotated {
        /// The session and its new refresh token's expiry.
        session: IssuedSession,
        /// The session's user, as it is now (its role may have changed).
        user: Box<UserRecord>,
        /// A spent token presented again within the grace window (its earlier successor
        /// is gone).
        retried: bool,
    },
    /// The token was spent already: reuse. The caller must revoke the session.
    Reused {
        /// The session to revoke.
        session_id: Uuid,
        /// Its user.
        user_id: Uuid,
    },
    /// Unknown, expired, or of a revoked session or an inactive user.
    Invalid,
}

/// What Postgres says about the session and user an access token names.
#[derive(Debug, Clone, Copy)]
pub struct TokenSubjectState {
    /// The session was revoked.
    pub session_revoked: bool,
    /// Access tokens issued at or before this instant are rejected.
    pub tokens_valid_after: Option<DateTime<Utc>>,
    /// The user is disabled or deleted (or gone).
    pub user_inactive: bool,
}

/// A duration as the seconds `make_interval(secs => ...)` takes.
pub(super) fn pg_interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Stores a refresh token's hash for `session_id`; it expires after `ttl` idle, and never
/// after the session's absolute expiry. Returns its expiry.
async fn store_refresh_token(
    tx: &Transaction<'_>,
    token_hash: &[u8],
    session_id: Uuid,
    ttl: Duration,
    absolute_expiry: DateTime<Utc>,
) -> Result<DateTime<Utc>, DbError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
             VALUES ($1, $2, least(now() + make_interval(secs => $3), $4))
             RETURNING expires_at",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &token_hash,
                &session_id,
                &pg_interval(ttl),
                &absolute_expiry,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

impl Db {
    /// Starts a session for `user_id`, opened from `origin`, with its first refresh token
    /// (stored as `token_hash`). Returns the user as it is now, or `None` if it was disabled
    /// or deleted meanwhile.
    pub async fn create_session(
        &self,
        user_id: Uuid,
        token_hash: &[u8],
        origin: &SessionOrigin,
        amr: Amr,
        refresh_ttl: Duration,
        max_lifetime: Duration,
    ) -> Result<Option<(IssuedSession, UserRecord)>, DbError> {
        let session_id = Uuid::now_v7();
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let Some((user, access_token_id)) = lock_active_user(&tx, user_id).await? else {
                return Ok(None);
            };
            let insert = tx
                .prepare_cached(
                    "INSERT INTO sessions (id, user_id, absolute_expires_at, ip, user_agent, second_factor)
                     VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5, $6)
                     RETURNING absolute_expires_at",
                )
                .await?;
            let row = tx
                .query_one(
                    &insert,
                    &[
                        &session_id,
                        &user_id,
                        &pg_interval(max_lifetime),
                        &origin.ip,
                        &origin.user_agent,
                        &amr.has_second_factor(),
                    ],
                )
                .await?;
            let absolute: DateTime<Utc> = row.try_get(0)?;
            let refresh_expires_at =
                store_refresh_token(&tx, token_hash, session_id, refresh_ttl, absolute).await?;
            tx.commit().await?;
            Ok(Some((
                IssuedSession {
                    session_id,
                    refresh_expires_at,
                    access_token_id,
                    amr,
                },
                user,
            )))
        })
        .await
    }

    /// Spends the refresh token `presented` and stores `replacement` in its place.
    ///
    /// The spend is one conditional `UPDATE ... WHERE spent_at IS NULL`: when several
    /// requests present the same token at once, Postgres lets exactly one of them match;
    /// the others then find it spent. A spent token is reuse (the caller revokes the
    /// session), unless it was spent less than `grace` ago and the successor it produced is
    /// still unused: then that successor is deleted and `replacement` takes its place (a
    /// client retrying after a lost answer). Either way the session has one live refresh
    /// token: retries of one token serialise on that token's row lock.
    pub async fn rotate_refresh_token(
        &self,
        presented: &[u8],
        replacement: &[u8],
        refresh_ttl: Duration,
        grace: Duration,
    ) -> Result<Rotation, DbError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let spend = tx
                .prepare_cached(
                    "UPDATE refresh_tokens rt SET spent_at = now(), replaced_by = $2
                     FROM sessions s, users u
                     WHERE rt.token_hash = $1 AND rt.spent_at IS NULL AND rt.expires_at > now()
                       AND s.id = rt.session_id AND s.revoked_at IS NULL
                       AND s.absolute_expires_at > now()
                       AND u.id = s.user_id AND u.deleted_at IS NULL AND NOT u.disabled
                     RETURNING s.id AS session_id, s.absolute_expires_at, s.user_id, s.second_factor",
                )
                .await?;
            let spent = tx.query_opt(&spend, &[&presented, &replacement]).await?;
            if let Some(row) = spent {
                let session = SpentFor {
                    session_id: row.try_get("session_id")?,
                    absolute_expires_at: row.try_get("absolute_expires_at")?,
                    user_id: row.try_get("user_id")?,
                    second_factor: row.try_get("second_factor")?,
                };
                return finish_rotation(tx, session, replacement, refresh_ttl, false).await;
            }
            // Spent already (or unknown): lock it, so that retries of one token take turns.
            let reused = tx
                .query_opt(
                    "SELECT s.id, s.user_id, s.absolute_expires_at, rt.replaced_by,
                            s.second_factor,
                            rt.spent_at > clock_timestamp() - make_interval(secs => $2) AS in_grace,
                            s.revoked_at IS NULL AND s.absolute_expires_at > now() AS live
                     FROM refresh_tokens rt
                     JOIN sessions s ON s.id = rt.session_id
                     WHERE rt.token_hash = $1 AND rt.spent_at IS NOT NULL
                     FOR UPDATE OF rt",
                    &[&presented, &pg_interval(grace)],
                )
                .await?;
            let Some(row) = reused else {
                return Ok(Rotation::Invalid);
            };
            let session = SpentFor {
                session_id: row.try_get(0)?,
                user_id: row.try_get(1)?,
                absolute_expires_at: row.try_get(2)?,
                second_factor: row.try_get(4)?,
            };
            let successor: Option<Vec<u8>> = row.try_get(3)?;
            let in_grace: bool = row.try_get(5)?;
            let live: bool = row.try_get(6)?;
            // Off (zero) means off: `now()` is each transaction's start, so a concurrent
            // spend can look "in the future" to a racer; only a configured window counts.
            if !grace.is_zero() && in_grace && live {
                // Deleted only while nobody has used it (locked: a concurrent spend of the
                // successor waits, then finds it gone).
                let unused = tx
                    .execute(
                        "DELETE FROM refresh_tokens
                         WHERE token_hash = $1 AND spent_at IS NULL AND expires_at > now()",
                        &[&successor],
                    )
                    .await?;
                if unused == 1 {
                    tx.execute(
                        "UPDATE refresh_tokens SET replaced_by = $2 WHERE token_hash = $1",
                        &[&presented, &replacement],
                    )
                    .await?;
                    return finish_rotation(tx, session, replacement, refresh_ttl, true).await;
                }
            }
            // The caller marks the session in Redis first, then revokes it, so the mirror
            // never misses a revocation that Postgres has.
            Ok(Rotation::Reused {
                session_id: session.session_id,
                user_id: session.user_id,
            })
        })
        .await
    }

    /// Revokes the sessions `session_ids` of `user_id` (those not revoked already and not
    /// another user's); returns how many it revoked now. Idempotent.
    pub async fn revoke_sessions(
        &self,
        user_id: Uuid,
        session_ids: &[Uuid],
        reason: RevokeReason,
    ) -> Result<u64, DbError> {
        if session_ids.is_empty() {
            return Ok(0);
        }
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
                     WHERE id = ANY($1) AND user_id = $2 AND revoked_at IS NULL",
                )
                .await?;
            Ok(client
                .execute(&stmt, &[&session_ids, &user_id, &reason.as_str()])
                .await?)
        })
        .await
    }

    /// The live sessions of `user_id`, except `keep`.
    pub async fn live_session_ids(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
    ) -> Result<Vec<Uuid>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT id FROM sessions
                     WHERE user_id = $1 AND revoked_at IS NULL
                       AND ($2::uuid IS NULL OR id <> $2)",
                    &[&user_id, &keep],
                )
                .await?;
            rows.iter()
                .map(|r| r.try_get(0).map_err(DbError::from))
                .collect()
        })
        .await
    }

    /// Up to `limit` live sessions of `user_id` (see [`LIVE_SESSIONS`]), newest first.
    pub async fn live_sessions(
        &self,
        user_id: Uuid,
        limit: i64,
    ) -> Result<Vec<SessionSummary>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT s.id, s.created_at, coalesce(s.last_refreshed_at, s.created_at),
                            least(live.expires_at, s.absolute_expires_at), s.ip, s.user_agent
                     {LIVE_SESSIONS} AND s.user_id = $1
                     ORDER BY s.created_at DESC, s.id DESC
                     LIMIT $2"
                ))
                .await?;
            let rows = client.query(&stmt, &[&user_id, &limit]).await?;
            let summary = |row: &tokio_postgres::Row| -> Result<SessionSummary, DbError> {
                Ok(SessionSummary {
                    id: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    last_used_at: row.try_get(2)?,
                    expires_at: row.try_get(3)?,
                    origin: SessionOrigin {
                        ip: row.try_get(4)?,
                        user_agent: row.try_get(5)?,
                    },
                })
            };
            rows.iter().map(summary).collect()
        })
        .await
    }

    /// Whether `session_id` is a live session (see [`LIVE_SESSIONS`]) of `user_id`.
    pub async fn is_live_session_of(
        &self,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT 1 {LIVE_SESSIONS} AND s.id = $1 AND s.user_id = $2"
                ))
                .await?;
            Ok(client
                .query_opt(&stmt, &[&session_id, &user_id])
                .await?
                .is_some())
        })
        .await
    }

    /// Rejects every access token of `user_id` issued at or before `at` (`tokens_valid_after`).
    pub async fn set_tokens_valid_after(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.timed(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE users SET tokens_valid_after = greatest(tokens_valid_after, $2)
                     WHERE id = $1",
                    &[&user_id, &at],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// The revocation state behind an access token, read from the truth.
    pub async fn token_subject_state(
        &self,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<TokenSubjectState, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT u.tokens_valid_after, (u.disabled OR u.deleted_at IS NOT NULL),
                            (SELECT s.revoked_at IS NOT NULL FROM sessions s
                             WHERE s.id = $2 AND s.user_id = u.id)
                     FROM users u WHERE u.id = $1",
                )
                .await?;
            let Some(row) = client.query_opt(&stmt, &[&user_id, &session_id]).await? else {
                return Ok(TokenSubjectState {
                    session_revoked: true,
                    tokens_valid_after: None,
                    user_inactive: true,
                });
            };
            let session_revoked: Option<bool> = row.try_get(2)?;
            Ok(TokenSubjectState {
                tokens_valid_after: row.try_get(0)?,
                user_inactive: row.try_get(1)?,
                // An unknown session counts as revoked.
                session_revoked: session_revoked.unwrap_or(true),
            })
        })
        .await
    }

    /// Revocations still relevant to live access tokens (those since `since`), to rebuild
    /// Redis's mirror after it lost its data: revoked sessions, and per-user cut-offs.
    pub async fn recent_revocations(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<(Uuid, DateTime<Utc>)>), DbError> {
        self.timed(async {
            let client = self.client().await?;
            let sessions = client
                .query("SELECT id FROM sessions WHERE revoked_at > $1", &[&since])
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<Uuid>, _>>()?;
            let users = client
                .query(
                    "SELECT id, tokens_valid_after FROM users WHERE tokens_valid_after > $1",
                    &[&since],
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            Ok((sessions, users))
        })
        .await
    }
}
