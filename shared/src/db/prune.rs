//! The cleanup: deletes the rows that can never be used again (dead sessions, refresh tokens
//! past expiry, spent or expired password-reset, email and two-factor login tokens, two-factor
//! set-ups never confirmed, expired audit events: through `prune_audit_events()`, as the
//! service may not delete audit rows itself), in bounded
//! batches, so that the tables do not grow without end and no pass holds locks for long.
//!
//! One place for every such table: [`PRUNE_TARGETS`], one line each. The local server runs a
//! pass every [`PRUNE_EVERY`] ([`prune_periodically`]); on AWS the scheduled function
//! `functions/cleanup` runs the same [`Db::prune_expired`] every hour.
//!
//! # What is dead, and for how long it is kept
//!
//! A session is dead when it is revoked, past its absolute expiry, or idle past its last
//! refresh token's expiry. Dead rows are kept for [`PrunePolicy::keep_dead`] (a day, and
//! never less than an access token's lifetime plus an hour) before they go: for a
//! post-mortem, and because the revocation mirror is rebuilt from the sessions revoked within
//! the last access-token lifetime (see [`crate::auth::revocation`]), so a revoked session's
//! row must outlive every access token it could have issued. (A session that is gone counts
//! as revoked when a token of it is checked against Postgres.)
//!
//! A refresh token goes once it has been expired for `keep_dead`, or once its session has
//! been revoked for that long. A spent token presented again after that is simply unknown
//! (401) instead of reuse that revokes its session: it had expired a day before, so it is
//! worth nothing to whoever holds it. A session goes only when none of its refresh tokens
//! is left, so deleting it never cascades into an unbounded number of rows.
//!
//! Each statement deletes at most [`PrunePolicy::batch`] rows in its own short transaction,
//! and a pass runs each at most [`PrunePolicy::max_batches`] times: a backlog is worked off
//! over several passes, never in one long lock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::types::Type;

use super::{Db, DbError};
use crate::telemetry::ErrorChain;

/// How often the local server runs a pass.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per statement, at most.
pub const PRUNE_BATCH: i64 = 1000;
/// Statements of one target per pass, at most.
pub const PRUNE_MAX_BATCHES: u32 = 10;
/// How long dead rows are kept, unless the access-token lifetime asks for longer.
const KEEP_DEAD: Duration = Duration::from_secs(24 * 3600);

/// One table's dead rows: a statement deleting at most `$1` (int8) rows, given `$2`
/// (float8), the seconds dead rows are kept, and `$3` (float8), the refresh-token lifetime
/// in seconds; a statement may leave `$2` or `$3` unused. It either is a `DELETE` (its row
/// count is what it deleted) or returns that count as one int8 ([`PruneTarget::returns_count`]).
#[derive(Debug, Clone, Copy)]
pub struct PruneTarget {
    /// The table's name, as the counts report it (a table may have several targets).
    pub table: &'static str,
    /// The statement.
    pub sql: &'static str,
    /// Whether the statement returns the count (a function call) instead of being a
    /// `DELETE` whose row count is the count.
    pub returns_count: bool,
}

/// Every kind of dead row, in the order a pass deletes them: refresh tokens before the
/// sessions they belong to.
pub const PRUNE_TARGETS: &[PruneTarget] = &[
    PruneTarget {
        table: "refresh_tokens",
        sql: "DELETE FROM refresh_tokens WHERE token_hash IN (
                  SELECT token_hash FROM refresh_tokens
                  WHERE expires_at < now() - make_interval(secs => $2)
                  LIMIT $1)",
        returns_count: false,
    },
    PruneTarget {
        table: "refresh_tokens",
        sql: "DELETE FROM refresh_tokens WHERE token_hash IN (
                  SELECT rt.token_hash FROM sessions s
                  JOIN refresh_tokens rt ON rt.session_id = s.id
                  WHERE s.revoked_at < now() - make_interval(secs => $2)
                  LIMIT $1)",
        returns_count: false,
    },
    PruneTarget {
        table: "sessions",
        sql: "DELETE FROM sessions WHERE id IN (
                  SELECT s.id FROM sessions s
                  WHERE (s.revoked_at < now() - make_interval(secs => $2)
                         OR s.absolute_expires_at < now() - make_interval(secs => $2)
                         OR coalesce(s.last_refreshed_at, s.created_at)
                            < now() - make_interval(secs => $2 + $3))
                    AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.session_id = s.id)
                  LIMIT $1)",
        returns_count: false,
    },
    PruneTarget {
        table: "password_reset_tokens",
        sql: "DELETE FROM password_reset_tokens WHERE token_hash IN (
                  SELECT token_hash FROM password_reset_tokens
                  WHERE expires_at < now() - make_interval(secs => $2)
                     OR used_at < now() - make_interval(secs => $2)
                  LIMIT $1)",
        returns_count: false,
    },
    PruneTarget {
        table: "email_tokens",
        sql: "DELETE FROM email_tokens WHERE token_hash IN (
                  SELECT token_hash FROM email_tokens
                  WHERE expires_at < now() - make_interval(secs => $2)
                     OR used_at < now() - make_interval(secs => $2)
                  LIMIT $1)",
        returns_count: false,
    },
    // Second steps of two-factor logins: past their five minutes, or spent.
    PruneTarget {
        table: "mfa_tokens",
        sql: "DELETE FROM mfa_tokens WHERE token_hash IN (
                  SELECT token_hash FROM mfa_tokens
                  WHERE expires_at < now() - make_interval(secs => $2)
                     OR spent_at < now() - make_interval(secs => $2)
                  LIMIT $1)",
        returns_count: false,
    },
    // Two-factor set-ups never confirmed.
    PruneTarget {
        table: "mfa_totp",
        sql: "DELETE FROM mfa_totp WHERE user_id IN (
                  SELECT user_id FROM mfa_totp
                  WHERE confirmed_at IS NULL AND created_at < now() - make_interval(secs => $2)
                  LIMIT $1)",
        returns_count: false,
    },
    // Audit events carry their own expiry (AUDIT_RETENTION_DAYS after the event). The
    // service's role may not delete audit rows: prune_audit_events (owned by the master user,
    // migrations/V8__runtime_role.sql) deletes at most $1 of those whose expiry has passed,
    // and nothing else.
    PruneTarget {
        table: "audit_events",
        sql: "SELECT prune_audit_events($1)",
        returns_count: true,
    },
];

/// How much one pass deletes, and what counts as dead for long enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Rows per statement, at most.
    pub batch: i64,
    /// Statements per target and pass, at most.
    pub max_batches: u32,
    /// How long dead rows are kept (see the module docs).
    pub keep_dead: Duration,
    /// The refresh-token lifetime (`REFRESH_TOKEN_TTL_SECONDS`): a session idle for longer
    /// has no live refresh token.
    pub refresh_token_ttl: Duration,
}

impl PrunePolicy {
    /// The defaults for a deployment whose access tokens live `access_token_ttl` and
    /// refresh tokens `refresh_token_ttl`.
    pub fn new(access_token_ttl: Duration, refresh_token_ttl: Duration) -> Self {
        Self {
            batch: PRUNE_BATCH,
            max_batches: PRUNE_MAX_BATCHES,
            keep_dead: KEEP_DEAD.max(access_token_ttl + Duration::from_secs(3600)),
            refresh_token_ttl,
        }
    }
}

/// What one pass deleted: rows per table (every table of [`PRUNE_TARGETS`], zeros too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Table name to rows deleted.
    pub deleted: BTreeMap<&'static str, u64>,
}

impl Pruned {
    /// Rows deleted from `table`.
    pub fn of(&self, table: &str) -> u64 {
        self.deleted.get(table).copied().unwrap_or(0)
    }

    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.deleted.values().sum()
    }
}

impl Db {
    /// One cleanup pass (see the module docs): each target's statement, each run under the
    /// dependency deadline, again while it deletes a full batch, at most `max_batches` times.
    pub async fn prune_expired(&self, policy: &PrunePolicy) -> Result<Pruned, DbError> {
        let mut pruned = Pruned::default();
        let keep_dead = policy.keep_dead.as_secs_f64();
        let refresh_ttl = policy.refresh_token_ttl.as_secs_f64();
        for target in PRUNE_TARGETS {
            pruned.deleted.entry(target.table).or_insert(0);
            for _ in 0..policy.max_batches {
                let rows = self
                    .timed(async {
                        let client = self.client().await?;
                        let stmt = client
                            .prepare_typed_cached(
                                target.sql,
                                &[Type::INT8, Type::FLOAT8, Type::FLOAT8],
                            )
                            .await?;
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                            [&policy.batch, &keep_dead, &refresh_ttl];
                        Ok::<_, DbError>(if target.returns_count {
                            let deleted: i64 = client.query_one(&stmt, &params).await?.get(0);
                            u64::try_from(deleted).unwrap_or(0)
                        } else {
                            client.execute(&stmt, &params).await?
                        })
                    })
                    .await?;
                *pruned.deleted.entry(target.table).or_insert(0) += rows;
                if rows < policy.batch.max(0) as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }
}

/// Runs a cleanup pass every `every`, the first `every` after the start (a starting
/// instance has other work, and several instances starting together would all prune at
/// once), until the task is dropped; a failed pass is logged and the next one tries again.
pub async fn prune_periodically(db: Db, policy: PrunePolicy, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match db.prune_expired(&policy).await {
            Ok(pruned) if pruned.total() == 0 => {}
            Ok(pruned) => tracing::info!(deleted = ?pruned.deleted, "dead rows deleted"),
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "cleanup pass failed; retrying at the next")
            }
        }
    }
}
