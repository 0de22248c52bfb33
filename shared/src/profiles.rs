//! Each instance's memory of user profiles for `GET /v1/users/me`, checked on every request
//! against a version kept in Redis, so the hot read path skips Postgres.
//!
//! How it stays correct:
//! - Redis holds `profile:<uid>` = a random 64-bit version. The revocation check that every
//!   authenticated request makes reads it in the same `MGET` (see [`crate::auth::revocation`]),
//!   so the version costs no extra round trip.
//! - An entry in memory is `(version, profile)`. It is served only while the version it was
//!   stored under is the one Redis has now, and for at most [`ENTRY_TTL`].
//! - Every write to a user's row calls [`Profiles::changed`] after the commit: it sets a
//!   fresh random version, so every instance's entry for that user stops matching at once.
//! - A reader takes the version *before* it reads Postgres. If a write commits after that
//!   read, the write's new version is set after it, so the stale entry is never served. A
//!   missing version (new user, expired key, Redis restarted) is created with
//!   `SET NX GET` before the read, for the same reason. Versions are random, not counters,
//!   so a version created anew after Redis lost its data cannot match an old entry.
//!
//! What it gives up: if Redis fails between a write's commit and its new version, other
//! instances may show the old profile for up to [`ENTRY_TTL`]. Nothing is authorized from
//! this cache (the role and the revocation state come from the token and the mirror), so the
//! worst case is a stale name or `updated_at` in a `GET /me` answer, never access.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::db::{Db, DbError};
use crate::domain::User;
use crate::expiring::ExpiringMap;
use crate::redis_store::{Cache, CacheError};
use crate::telemetry::ErrorChain;

/// Longest time an entry is served without being read from Postgres again.
pub const ENTRY_TTL: Duration = Duration::from_secs(30);

/// Most profiles one instance remembers; past it, stale entries go first, then all.
const CAPACITY: usize = 16_384;

/// How long a version lives in Redis without a write. Its loss only costs a Postgres read.
const VERSION_TTL_SECS: u64 = 24 * 60 * 60;

/// What the request's `MGET` learnt of the caller's profile version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileVersion {
    /// Redis holds this version.
    Known(u64),
    /// Redis answered and holds none: create one before reading Postgres.
    Unset,
    /// Redis did not answer (or was not asked): read Postgres and remember nothing.
    Unknown,
}

impl From<Option<u64>> for ProfileVersion {
    /// What Redis answered for the version key: a version, or none.
    fn from(read: Option<u64>) -> Self {
        read.map_or(Self::Unset, Self::Known)
    }
}

/// The Redis key holding `user_id`'s profile version.
pub fn version_key(cache: &Cache, user_id: Uuid) -> String {
    cache.key(format_args!("profile:{user_id}"))
}

/// The profile cache; cheap to clone (the entries are shared).
#[derive(Clone)]
pub struct Profiles {
    cache: Cache,
    db: Db,
    /// Profiles by user, each with the version it was read under.
    entries: Arc<ExpiringMap<Uuid, (u64, User), Instant>>,
}

impl Profiles {
    /// An empty cache over Redis (`cache`) and Postgres (`db`).
    pub fn new(cache: Cache, db: Db) -> Self {
        Self {
            cache,
            db,
            entries: Arc::new(ExpiringMap::new(CAPACITY)),
        }
    }

    /// The profile of `user_id` (`None` if the user is gone): from memory when `version`
    /// is the one the entry was stored under, else from Postgres.
    pub async fn get(
        &self,
        user_id: Uuid,
        version: ProfileVersion,
    ) -> Result<Option<User>, DbError> {
        let version = match version {
            ProfileVersion::Known(version) => {
                if let Some(user) = self.remembered(user_id, version) {
                    return Ok(Some(user));
                }
                Some(version)
            }
            ProfileVersion::Unset => self.create_version(user_id).await,
            ProfileVersion::Unknown => None,
        };
        let user = self.db.user_by_id(user_id).await?.map(|record| record.user);
        if let (Some(version), Some(user)) = (version, &user) {
            self.remember(version, user.clone());
        }
        Ok(user)
    }

    /// Call after committing any change to `user_id`'s row, before answering: every
    /// instance stops serving the profile it remembers. A Redis failure is logged, not
    /// returned, since the change is committed (see the module doc for what it costs).
    pub async fn changed(&self, user_id: Uuid) {
        self.forget(user_id);
        let key = version_key(&self.cache, user_id);
        let command = match new_version() {
            Some(version) => redis::cmd("SET")
                .arg(key)
                .arg(version)
                .arg("EX")
                .arg(VERSION_TTL_SECS)
                .to_owned(),
            // Without randomness, no version: readers make one (or, failing too, remember
            // nothing).
            None => redis::cmd("DEL").arg(key).to_owned(),
        };
        let result: Result<(), CacheError> = async {
            let mut connection = self.cache.connection().await?;
            self.cache
                .timed(command.query_async::<()>(&mut connection))
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %ErrorChain(&e), user_id = %user_id,
                "profile changed but its version could not be renewed; other instances may show the old profile for up to {ENTRY_TTL:?}");
        }
    }

    /// Sets a version for `user_id` unless one exists (`SET NX GET`, Redis 7) and returns
    /// the one that holds; `None` (remember nothing) if Redis or the randomness failed.
    async fn create_version(&self, user_id: Uuid) -> Option<u64> {
        let ours = new_version()?;
        let set = async {
            let mut connection = self.cache.connection().await?;
            self.cache
                .timed(
                    redis::cmd("SET")
                        .arg(version_key(&self.cache, user_id))
                        .arg(ours)
                        .arg("NX")
                        .arg("GET")
                        .arg("EX")
                        .arg(VERSION_TTL_SECS)
                        .query_async::<Option<u64>>(&mut connection),
                )
                .await
        };
        match set.await {
            Ok(theirs) => Some(theirs.unwrap_or(ours)),
            Err::<_, CacheError>(e) => {
                tracing::warn!(error = %ErrorChain(&e), "could not create a profile version");
                None
            }
        }
    }

    fn remembered(&self, user_id: Uuid, version: u64) -> Option<User> {
        self.entries
            .get_if(&user_id, Instant::now(), |(stored, _)| *stored == version)
            .map(|(_, user)| user)
    }

    fn remember(&self, version: u64, user: User) {
        let now = Instant::now();
        self.entries
            .insert(user.id, (version, user), now + ENTRY_TTL, now);
    }

    fn forget(&self, user_id: Uuid) {
        self.entries.remove(&user_id);
    }
}

/// A fresh random version, or `None` if the system has no randomness.
fn new_version() -> Option<u64> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes))
}
