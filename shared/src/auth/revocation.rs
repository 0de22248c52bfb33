//! Revocation of access tokens that takes effect at once, on every instance, and never
//! half-happens.
//!
//! Postgres holds the truth (`sessions.revoked_at`, `users.tokens_valid_after`). Redis holds
//! a mirror that every authenticated request reads in one round trip (`MGET`):
//! - `revoked:session:<sid>`: that session ended (logout, reuse, password change, reset,
//!   disable, delete, session deletion);
//! - `revoked:user:<uid>` = milliseconds: tokens of that user issued at or before it are
//!   dead (role change, disable, delete, password reset);
//! - `revoked:epoch`: present while the mirror is complete;
//! - `revoked:pending:<uid>`: a hash of the sessions of that user whose end is marked here
//!   but not yet known to be committed in Postgres (session id → reason): the journal that
//!   lets anyone finish a revocation that an outage cut short.
//!
//! The same `MGET` reads the user's profile version for [`crate::profiles`], so `GET /me`
//! can answer from memory without a second round trip.
//!
//! # The invariant
//!
//! **A session whose access tokens are refused never mints an accepted access token
//! again**, and a revocation that answered 2xx is in full effect in both stores. Ending
//! sessions writes in this order:
//!
//! 1. Redis, in one `MULTI`: each session's marker, with the *pending* lifetime (the
//!    longest a session can live, `SESSION_MAX_LIFETIME_SECONDS`), and its journal entry.
//!    From here on every access token of those sessions is refused, whatever happens next.
//!    If this fails, nothing changed anywhere: the request gets 503.
//! 2. Postgres: the sessions' `revoked_at` (their refresh tokens stop working). If this
//!    fails the request gets 503, and the markers stay until the sessions could not live
//!    anyway: no marker expires before its session is revoked in Postgres or dead.
//! 3. Redis: the journal entries are removed and the markers shortened to the access-token
//!    lifetime plus a margin (after which every token they could reject has expired). If
//!    this fails the request still succeeds: both stores agree; the marker lives longer
//!    and the journal entry is finished again, harmlessly, later.
//!
//! A revocation cut off between 1 and 2 is finished ([`Revocations::finish_pending`]) by
//! whoever meets it first: its repeat (a logout whose token the first attempt already cut
//! off is accepted as that repeat), a refresh of one of its sessions (which then answers
//! `invalid_refresh_token`: [`Revocations::session_ended`] is asked after every rotation),
//! or any later revocation of the same user. A cut-off of access tokens alone (a role
//! change) ends no session and needs no journal: a refresh after it rightly mints a token.
//!
//! Markers of finished revocations expire with the longest access-token lifetime. The epoch
//! key has no expiry, so if Redis loses its data (a restart, a flush) the epoch is gone too,
//! the check falls back to Postgres, and one instance rebuilds the mirror from Postgres.
//! Redis must therefore not evict keys on its own (`maxmemory-policy noeviction`). If Redis
//! cannot be reached at all, the check asks Postgres; if that fails too, the request gets
//! 503. A revoked token is never accepted. (A Redis that lost a journal entry lost its
//! markers with it: then neither store refuses that session, and it simply goes on, as if
//! the revocation had failed at step 1.)
//!
//! # Failover
//!
//! With a replica, Redis replicates asynchronously: when the primary fails, the promoted
//! replica may lack the markers written just before, while the epoch (written long ago)
//! survives. So the epoch's value is the *replication id* of the primary it was written on
//! (`INFO replication`, `master_replid`), read before the rebuild writes its markers. A
//! promoted replica takes a new id, and so does a primary restarted from its own snapshot or
//! that gains its first replica: whenever the id Redis reports is not the epoch's, the
//! mirror is not known complete, and the check falls back to Postgres and rebuilds, exactly
//! as when the epoch is gone (a needless rebuild is harmless).
//!
//! Reading the id costs Redis more than the `MGET` itself, so the check does not read it on
//! every request: it reads it together with the `MGET` (one `MULTI`, still one round trip)
//! and trusts what it saw while two things hold: no Redis command of this process has
//! failed since (a failover reaches a client as errors, then a new connection, perhaps to
//! another server: see [`Cache::failures`]), and it is less than [`CONFIRMATION_LIFETIME`]
//! old. In the steady state the check is the one `MGET`. What is left: a server that
//! changes history under a connection that stays open (an old primary made a replica of
//! the new one without dropping its clients) is noticed within that second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redis::AsyncCommands as _;
use uuid::Uuid;

use super::tokens::AccessClaims;
use crate::db::sessions::RevokeReason;
use crate::db::{Db, DbError};
use crate::profiles::ProfileVersion;
use crate::redis_store::{Cache, CacheError};
use crate::telemetry::ErrorChain;

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

/// How long the check trusts the replication id it last read, while no Redis command has
/// failed since (see "Failover" in the module docs).
const CONFIRMATION_LIFETIME: Duration = Duration::from_secs(1);

/// Whether the mirror can answer, judged from its epoch and the replication id Redis reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completeness {
    /// The epoch names the history Redis serves: every marker is there.
    Complete,
    /// No epoch: Redis lost its data (a restart without persistence, a flush).
    Lost,
    /// The epoch names another history: Redis failed over (or restarted from a snapshot),
    /// and markers written last on the old primary may be gone.
    OtherHistory,
}

impl Completeness {
    fn judge(epoch: Option<&str>, replication_id: &str) -> Self {
        match epoch {
            None => Self::Lost,
            Some(epoch) if epoch == replication_id => Self::Complete,
            Some(_) => Self::OtherHistory,
        }
    }
}

/// The replication id in an `INFO replication` answer: `master_replid`, which a replica
/// reports as its primary's; empty if the server names none (then only a lost epoch can be
/// noticed).
fn replication_id(info: &str) -> String {
    info.lines()
        .find_map(|line| line.strip_prefix("master_replid:"))
        .map_or_else(String::new, |id| id.trim().to_owned())
}

/// The replication id the check last read, and when.
#[derive(Debug)]
struct Confirmation {
    replication_id: Arc<str>,
    /// [`Cache::failures`] before it was read.
    failures: u64,
    /// Before it was read.
    at: Instant,
}

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
    /// How long a marker must live once its revocation is committed: the access-token
    /// lifetime plus a margin.
    marker_ttl: Duration,
    /// How long a marker and its journal entry live until then: the longest a session can.
    pending_ttl: Duration,
    rebuilding: Arc<AtomicBool>,
    /// What the check last read of Redis's replication id: see "Failover" above.
    confirmation: Arc<Mutex<Option<Confirmation>>>,
}

impl Revocations {
    /// Markers of committed revocations live as long as an access token can
    /// (`access_token_ttl`) plus a margin; pending ones as long as a session can
    /// (`session_max_lifetime`).
    pub fn new(
        cache: Cache,
        db: Db,
        access_token_ttl: Duration,
        session_max_lifetime: Duration,
    ) -> Self {
        let marker_ttl = access_token_ttl + Duration::from_secs(60);
        Self {
            cache,
            db,
            marker_ttl,
            pending_ttl: session_max_lifetime.max(marker_ttl),
            rebuilding: Arc::new(AtomicBool::new(false)),
            confirmation: Arc::new(Mutex::new(None)),
        }
    }

    fn session_key(&self, session_id: Uuid) -> String {
        self.cache.key(format_args!("revoked:session:{session_id}"))
    }

    fn user_key(&self, user_id: Uuid) -> String {
        self.cache.key(format_args!("revoked:user:{user_id}"))
    }

    fn pending_key(&self, user_id: Uuid) -> String {
        self.cache.key(format_args!("revoked:pending:{user_id}"))
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
        // The fallback, boxed: only a Redis outage takes it, and inline its Postgres query
        // would make every token check's future several times larger.
        let in_db = |profile| {
            Box::pin(async move {
                let revoked = self
                    .is_revoked_in_db(user_id, session_id, issued_at_ms)
                    .await?;
                Ok(Standing { revoked, profile })
            })
        };
        match self.read_mirror(&keys).await {
            Ok((Completeness::Complete, (_, session, user_cutoff_ms, profile))) => Ok(Standing {
                revoked: session.is_some()
                    || user_cutoff_ms.is_some_and(|cutoff| issued_at_ms <= cutoff),
                profile: profile.into(),
            }),
            Ok((Completeness::Lost, (_, _, _, profile))) => {
                tracing::warn!("revocation mirror lost; checking Postgres and rebuilding");
                self.spawn_rebuild();
                in_db(profile.into()).await
            }
            Ok((Completeness::OtherHistory, _)) => {
                // Profile versions written on the old primary may be lost as well.
                tracing::warn!(
                    "redis serves another replication history than the revocation mirror was built in (a failover?); checking Postgres and rebuilding"
                );
                self.spawn_rebuild();
                in_db(ProfileVersion::Unknown).await
            }
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "redis unreachable; checking revocation in Postgres");
                in_db(ProfileVersion::Unknown).await
            }
        }
    }

    /// Reads the mirror's entries for `keys` (the epoch first) and judges them, in one round
    /// trip: the `MGET` alone while the last confirmation of the replication id holds,
    /// otherwise the `MGET` and `INFO replication` in one `MULTI`.
    async fn read_mirror(
        &self,
        keys: &[String],
    ) -> Result<(Completeness, MirrorEntries), CacheError> {
        let mut connection = self.cache.connection().await?;
        let failures = self.cache.failures();
        if let Some(replication_id) = self.confirmed_replication_id(failures) {
            let entries: MirrorEntries = self.cache.timed(connection.mget(keys)).await?;
            match Completeness::judge(entries.0.as_deref(), &replication_id) {
                // Another epoch than the one confirmed: read the id again.
                Completeness::OtherHistory => {}
                // Another command failed meanwhile: this one may have gone to a new
                // connection already.
                _ if self.cache.failures() != failures => {}
                judged => return Ok((judged, entries)),
            }
        }
        let at = Instant::now();
        let (info, entries): (String, MirrorEntries) = self
            .cache
            .timed(
                redis::pipe()
                    .atomic()
                    .cmd("INFO")
                    .arg("replication")
                    .mget(keys)
                    .query_async(&mut connection),
            )
            .await?;
        let replication_id: Arc<str> = replication_id(&info).into();
        let judged = Completeness::judge(entries.0.as_deref(), &replication_id);
        *self
            .confirmation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Confirmation {
            replication_id,
            failures,
            at,
        });
        Ok((judged, entries))
    }

    /// The replication id last read, if it is recent and no Redis command failed since.
    fn confirmed_replication_id(&self, failures: u64) -> Option<Arc<str>> {
        self.confirmation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|c| c.failures == failures && c.at.elapsed() < CONFIRMATION_LIFETIME)
            .map(|c| c.replication_id.clone())
    }

    /// The replication id Redis reports now.
    async fn read_replication_id(&self) -> Result<String, CacheError> {
        let mut connection = self.cache.connection().await?;
        let info: String = self
            .cache
            .timed(
                redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut connection),
            )
            .await?;
        Ok(replication_id(&info))
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

    /// Marks finished revocations' sessions in the mirror (the rebuild from Postgres).
    async fn mark_sessions(&self, session_ids: &[Uuid]) -> Result<(), CacheError> {
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

    /// Step 1 of ending sessions (see the module docs): their markers with the pending
    /// lifetime and their journal entries, atomically. Call before writing Postgres.
    pub async fn begin_ending(
        &self,
        user_id: Uuid,
        session_ids: &[Uuid],
        reason: RevokeReason,
    ) -> Result<(), CacheError> {
        if session_ids.is_empty() {
            return Ok(());
        }
        let pending = self.pending_key(user_id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for &sid in session_ids {
            pipe.set_ex(self.session_key(sid), 1, self.pending_ttl.as_secs())
                .ignore();
            pipe.hset(&pending, sid.to_string(), reason.as_str())
                .ignore();
        }
        pipe.expire(&pending, self.pending_ttl.as_secs() as i64)
            .ignore();
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(pipe.query_async::<()>(&mut connection))
            .await
    }

    /// Step 3 of ending sessions: they are revoked in Postgres, so their journal entries go
    /// and their markers shrink to the access-token lifetime. A failure is logged, not
    /// returned: both stores agree already.
    async fn end_committed(&self, user_id: Uuid, session_ids: &[Uuid]) {
        if session_ids.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for &sid in session_ids {
            pipe.expire(self.session_key(sid), self.marker_ttl.as_secs() as i64)
                .ignore();
            pipe.hdel(self.pending_key(user_id), sid.to_string())
                .ignore();
        }
        let result: Result<(), CacheError> = async {
            let mut connection = self.cache.connection().await?;
            self.cache
                .timed(pipe.query_async::<()>(&mut connection))
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%user_id, error = %ErrorChain(&e),
                "revocation committed; its journal entry stays until it is finished again");
        }
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

    /// Ends one session of `user_id` (logout, reuse, session deletion), in the order of the
    /// module docs. Finishes the user's pending revocations first.
    pub async fn end_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        reason: RevokeReason,
    ) -> Result<(), RevocationError> {
        self.finish_pending(user_id).await?;
        self.begin_ending(user_id, &[session_id], reason).await?;
        self.db
            .revoke_sessions(user_id, &[session_id], reason)
            .await?;
        self.end_committed(user_id, &[session_id]).await;
        Ok(())
    }

    /// Ends every live session of `user_id` except `keep` (logout-all, password change and
    /// reset), in the order of the module docs: the sessions live when Postgres is read are
    /// the ones ended. Returns how many.
    pub async fn end_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: RevokeReason,
    ) -> Result<usize, RevocationError> {
        self.finish_pending(user_id).await?;
        let live = self.db.live_session_ids(user_id, keep).await?;
        self.begin_ending(user_id, &live, reason).await?;
        self.db.revoke_sessions(user_id, &live, reason).await?;
        self.end_committed(user_id, &live).await;
        Ok(live.len())
    }

    /// After an admin's disable or delete committed (its step 2 ran in the admin's own
    /// transaction, after [`Self::begin_ending`]): step 3.
    pub async fn sessions_ended(&self, user_id: Uuid, session_ids: &[Uuid]) {
        self.end_committed(user_id, session_ids).await;
    }

    /// Finishes every revocation of `user_id` that was marked but perhaps not committed
    /// (see the module docs); returns the sessions it found pending. Idempotent.
    pub async fn finish_pending(&self, user_id: Uuid) -> Result<Vec<Uuid>, RevocationError> {
        let mut connection = self.cache.connection().await?;
        let pending: Vec<(String, String)> = self
            .cache
            .timed(connection.hgetall(self.pending_key(user_id)))
            .await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut finished = Vec::with_capacity(pending.len());
        for (sid, reason) in &pending {
            let Ok(sid) = sid.parse::<Uuid>() else {
                continue;
            };
            let reason = RevokeReason::parse(reason).unwrap_or(RevokeReason::Logout);
            self.db.revoke_sessions(user_id, &[sid], reason).await?;
            finished.push(sid);
        }
        self.end_committed(user_id, &finished).await;
        tracing::info!(%user_id, sessions = finished.len(), "finished pending revocations");
        Ok(finished)
    }

    /// Whether the mirror says `session_id` ended: asked after a refresh rotated a token,
    /// since only a revocation cut short has a marker for a session Postgres calls live.
    /// `None` when Redis cannot be asked (every check then falls back to Postgres, which
    /// agrees with the rotation).
    pub async fn session_ended(&self, session_id: Uuid) -> Option<bool> {
        let result: Result<bool, CacheError> = async {
            let mut connection = self.cache.connection().await?;
            self.cache
                .timed(connection.exists(self.session_key(session_id)))
                .await
        }
        .await;
        result
            .inspect_err(
                |e| tracing::warn!(error = %ErrorChain(e), "could not read the session marker"),
            )
            .ok()
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
    /// fresh database is complete by definition, and an old database, or a Redis that failed
    /// over, gets a rebuild.
    pub async fn ensure_mirror(&self) -> anyhow::Result<()> {
        let mut connection = self.cache.connection().await?;
        let (info, epoch): (String, Option<String>) = self
            .cache
            .timed(
                redis::pipe()
                    .atomic()
                    .cmd("INFO")
                    .arg("replication")
                    .get(self.epoch_key())
                    .query_async(&mut connection),
            )
            .await?;
        if Completeness::judge(epoch.as_deref(), &replication_id(&info)) != Completeness::Complete {
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
                tracing::warn!(error = %ErrorChain(e.as_ref()), "rebuilding the revocation mirror failed");
            }
            this.rebuilding.store(false, Ordering::Release);
        });
    }

    /// Copies every revocation that can still matter from Postgres into Redis, then sets
    /// the epoch to the replication id read first: should Redis change history on the way,
    /// the epoch names the old one and the next check rebuilds again. Revocations made
    /// meanwhile write their own markers, so none is lost.
    async fn rebuild(&self) -> anyhow::Result<()> {
        let replication_id = self.read_replication_id().await?;
        if replication_id.is_empty() {
            tracing::warn!(
                "redis reports no replication id; a failover that loses revocations cannot be noticed"
            );
        }
        let since = Utc::now()
            - chrono::Duration::from_std(self.marker_ttl).unwrap_or(chrono::Duration::days(1));
        let (sessions, users) = self.db.recent_revocations(since).await?;
        self.mark_sessions(&sessions).await?;
        for (user_id, at) in &users {
            self.mark_user(*user_id, *at).await?;
        }
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(connection.set::<_, _, ()>(self.epoch_key(), &replication_id))
            .await?;
        tracing::info!(
            sessions = sessions.len(),
            users = users.len(),
            %replication_id,
            "revocation mirror rebuilt from Postgres"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `INFO replication` answer of Redis 7.0, on a promoted replica.
    const PROMOTED: &str = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:ac8db10d8e61b87de3a73aec6462c9002aa94eb4\r\n\
        master_replid2:36aa725b3a8cfb7d58107ad61a5ab74df87cd45d\r\n\
        master_repl_offset:0\r\n";

    #[test]
    fn the_replication_id_is_the_current_one_not_the_previous() {
        assert_eq!(
            replication_id(PROMOTED),
            "ac8db10d8e61b87de3a73aec6462c9002aa94eb4"
        );
        assert_eq!(replication_id("# Replication\r\nrole:master\r\n"), "");
    }

    #[test]
    fn only_an_epoch_of_the_current_history_makes_the_mirror_complete() {
        let id = "ac8db10d8e61b87de3a73aec6462c9002aa94eb4";
        assert_eq!(Completeness::judge(Some(id), id), Completeness::Complete);
        assert_eq!(Completeness::judge(None, id), Completeness::Lost);
        // The epoch of the old primary, read on the promoted replica.
        let old = "36aa725b3a8cfb7d58107ad61a5ab74df87cd45d";
        assert_eq!(
            Completeness::judge(Some(old), id),
            Completeness::OtherHistory
        );
        // An epoch of an older release (a timestamp): rebuilt once.
        assert_eq!(
            Completeness::judge(Some("2026-12-03T19:00:00+00:00"), id),
            Completeness::OtherHistory
        );
    }
}
