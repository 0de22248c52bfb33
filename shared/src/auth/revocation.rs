//! Revocation of access tokens that takes effect at once, on every instance.
//!
//! Postgres holds the truth (`sessions.revoked_at`, `users.tokens_valid_after`). Redis holds
//! a mirror that every authenticated request reads in one round trip (`MGET`):
//! - `revoked:session:<sid>`: that session ended (logout, reuse, password change);
//! - `revoked:user:<uid>` = milliseconds: tokens of that user issued at or before it are
//!   dead (logout-all, role change, disable, delete, password reset);
//! - `revoked:epoch`: present while the mirror is complete.
//!
//! The same `MGET` reads the user's profile version for [`crate::profiles`], so `GET /me`
//! can answer from memory without a second round trip.
//!
//! Markers expire with the longest access-token lifetime: after that every token they
//! could reject has expired anyway. The epoch key has no expiry, so if Redis loses its data
//! (a restart, a flush) the epoch is gone too, the check falls back to Postgres, and one
//! instance rebuilds the mirror from Postgres. Redis must therefore not evict keys on its
//! own (`maxmemory-policy noeviction`). If Redis cannot be reached at all, the check asks
//! Postgres; if that fails too, the request gets 503. A revoked token is never accepted.
//!
//! Writers set the Redis marker *before* committing to Postgres: if Redis is down the
//! revocation fails with 503 and changes nothing, so the mirror can never miss a fact that
//! Postgres has (the epoch covers the case of Redis losing what it had).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands as _;
use uuid::Uuid;

use super::tokens::AccessClaims;
use crate::db::sessions::RevokeReason;
use crate::db::{Db, DbError};
use crate::profiles::ProfileVersion;
use crate::redis_store::{Cache, CacheError};

/// Why a revocation could not be made; nothing was revoked in Postgres when Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// Redis could not record the marker.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Postgres could not record the revocation.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What one `MGET` reads: the epoch, the session marker, the user's cut-off (ms), the
/// user's profile version.
type MirrorEntries = (Option<String>, Option<String>, Option<u64>, Option<u64>);

/// What the check found: whether the token is revoked, and (read in the same round trip)
/// its user's profile version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The token's session ended or its user's tokens were cut off.
    pub revoked: bool,
    /// The profile version for [`crate::profiles::Profiles::get`].
    pub profile: ProfileVersion,
}

/// The revocation mirror and its fallback.
#[derive(Clone)]
pub struct Revocations {
    cache: Cache,
    db: Db,
    /// How long a marker must live: the access-token lifetime plus a margin.
    marker_ttl: Duration,
    rebuilding: Arc<AtomicBool>,
}

impl Revocations {
    /// Markers live as long as an access token can (`access_token_ttl`) plus a margin.
    pub fn new(cache: Cache, db: Db, access_token_ttl: Duration) -> Self {
        Self {
            cache,
            db,
            marker_ttl: access_token_ttl + Duration::from_secs(60),
            rebuilding: Arc::new(AtomicBool::new(false)),
        }
    }

    fn session_key(&self, session_id: Uuid) -> String {
        self.cache.key(format_args!("revoked:session:{session_id}"))
    }

    fn user_key(&self, user_id: Uuid) -> String {
        self.cache.key(format_args!("revoked:user:{user_id}"))
    }

    fn epoch_key(&self) -> String {
        self.cache.key("revoked:epoch")
    }

    /// Is this (correctly signed, unexpired) token revoked? One Redis round trip when the
    /// mirror is healthy; Postgres otherwise.
    pub async fn check(&self, claims: &AccessClaims) -> Result<Standing, DbError> {
        self.check_parts(claims.sub, claims.sid, claims.issued_at_ms())
            .await
    }

    /// [`Self::check`] from the parts of a token that matter: its user, its session and
    /// its issue instant in milliseconds. For callers that hold a token already verified
    /// elsewhere (a Lambda behind the authorizer, which passes these in its context).
    pub async fn check_parts(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        issued_at_ms: u64,
    ) -> Result<Standing, DbError> {
        let keys = [
            self.epoch_key(),
            self.session_key(session_id),
            self.user_key(user_id),
            crate::profiles::version_key(&self.cache, user_id),
        ];
        let mirror: Result<MirrorEntries, CacheError> = match self.cache.connection().await {
            Ok(mut connection) => self.cache.timed(connection.mget(&keys)).await,
            Err(e) => Err(e),
        };
        let in_db = |profile| async move {
            let revoked = self
                .is_revoked_in_db(user_id, session_id, issued_at_ms)
                .await?;
            Ok(Standing { revoked, profile })
        };
        match mirror {
            Ok((Some(_epoch), session, user_cutoff_ms, profile)) => Ok(Standing {
                revoked: session.is_some()
                    || user_cutoff_ms.is_some_and(|cutoff| issued_at_ms <= cutoff),
                profile: profile.into(),
            }),
            Ok((None, _, _, profile)) => {
                tracing::warn!("revocation mirror incomplete; checking Postgres and rebuilding");
                self.spawn_rebuild();
                in_db(profile.into()).await
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::ErrorChain(&e), "redis unreachable; checking revocation in Postgres");
                in_db(ProfileVersion::Unknown).await
            }
        }
    }

    async fn is_revoked_in_db(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        issued_at_ms: u64,
    ) -> Result<bool, DbError> {
        let state = self.db.token_subject_state(user_id, session_id).await?;
        let cut_off = state
            .tokens_valid_after
            .is_some_and(|after| issued_at_ms <= after.timestamp_millis().max(0) as u64);
        Ok(state.session_revoked || state.user_inactive || cut_off)
    }

    /// Marks sessions as ended in the mirror. Call before committing the revocation to
    /// Postgres.
    pub async fn mark_sessions(&self, session_ids: &[Uuid]) -> Result<(), CacheError> {
        if session_ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for &sid in session_ids {
            pipe.set_ex(self.session_key(sid), 1, self.marker_ttl.as_secs())
                .ignore();
        }
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(pipe.query_async::<()>(&mut connection))
            .await
    }

    /// Marks every token of `user_id` issued at or before `at` as dead in the mirror.
    pub async fn mark_user(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), CacheError> {
        let ms = at.timestamp_millis().max(0);
        // Keep the later cut-off if two writers race: a tiny Lua script makes it atomic.
        let script = redis::Script::new(
            r"local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
              if tonumber(ARGV[1]) > cur then
                redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
              end
              return 1",
        );
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(
                script
                    .key(self.user_key(user_id))
                    .arg(ms)
                    .arg(self.marker_ttl.as_secs())
                    .invoke_async::<i64>(&mut connection),
            )
            .await
            .map(drop)
    }

    /// Ends one session of `user_id`: marker first, then Postgres.
    pub async fn end_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        reason: RevokeReason,
    ) -> Result<(), RevocationError> {
        self.mark_sessions(&[session_id]).await?;
        self.db.revoke_session(user_id, session_id, reason).await?;
        Ok(())
    }

    /// Ends every session of `user_id` except `keep` (logout-all, password change and reset,
    /// disable): markers first, then Postgres. Returns how many sessions ended.
    pub async fn end_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: RevokeReason,
    ) -> Result<usize, RevocationError> {
        let live = self.db.live_session_ids(user_id, keep).await?;
        self.mark_sessions(&live).await?;
        let revoked = self.db.revoke_user_sessions(user_id, keep, reason).await?;
        // A session started between the two queries: mark it too (rare; it is revoked in
        // Postgres already, so its refresh token is dead whatever happens here).
        let late: Vec<Uuid> = revoked
            .iter()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        if let Err(e) = self.mark_sessions(&late).await {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&e), sessions = late.len(), "could not mark late sessions");
        }
        Ok(revoked.len())
    }

    /// Rejects every access token of `user_id` issued until now, leaving sessions alive
    /// (a role change: the refresh token then mints tokens with the new role).
    pub async fn cut_off_access_tokens(&self, user_id: Uuid) -> Result<(), RevocationError> {
        let at = Utc::now();
        self.mark_user(user_id, at).await?;
        self.db.set_tokens_valid_after(user_id, at).await?;
        Ok(())
    }

    /// Makes sure the mirror is marked complete. Called at start: a fresh Redis next to a
    /// fresh database is complete by definition, and an old database gets a rebuild.
    pub async fn ensure_mirror(&self) -> anyhow::Result<()> {
        let mut connection = self.cache.connection().await?;
        let epoch: Option<String> = self.cache.timed(connection.get(self.epoch_key())).await?;
        if epoch.is_none() {
            self.rebuild().await?;
        }
        Ok(())
    }

    fn spawn_rebuild(&self) {
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.rebuild().await {
                tracing::warn!(error = %crate::telemetry::ErrorChain(e.as_ref()), "rebuilding the revocation mirror failed");
            }
            this.rebuilding.store(false, Ordering::Release);
        });
    }

    /// Copies every revocation that can still matter from Postgres into Redis, then sets
    /// the epoch. Revocations made meanwhile write their own markers, so none is lost.
    async fn rebuild(&self) -> anyhow::Result<()> {
        let since = Utc::now()
            - chrono::Duration::from_std(self.marker_ttl).unwrap_or(chrono::Duration::days(1));
        let (sessions, users) = self.db.recent_revocations(since).await?;
        self.mark_sessions(&sessions).await?;
        for (user_id, at) in &users {
            self.mark_user(*user_id, *at).await?;
        }
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(connection.set::<_, _, ()>(self.epoch_key(), Utc::now().to_rfc3339()))
            .await?;
        tracing::info!(
            sessions = sessions.len(),
            users = users.len(),
            "revocation mirror rebuilt from Postgres"
        );
        Ok(())
    }
}
