//! The `audit_events` table: the audit trail's store when `AUDIT_TABLE` is not set.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Db, DbError};
use crate::audit::{PagePosition, StoredEvent};

const COLUMNS: &str = "id, user_id, at, type, outcome, ip, actor_id, session_id, reason, changes, old_email, new_email";

impl Db {
    /// Inserts `events`, each expiring `retention` after it happened; an event already
    /// stored (a retried batch) is left as it is.
    pub async fn insert_audit_events(
        &self,
        events: &[StoredEvent],
        retention: Duration,
    ) -> Result<(), DbError> {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let users: Vec<Uuid> = events.iter().map(|e| e.user_id).collect();
        let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
        let ips: Vec<Option<IpAddr>> = events.iter().map(|e| e.ip).collect();
        let actors: Vec<Option<Uuid>> = events.iter().map(|e| e.actor_id).collect();
        let sessions: Vec<Option<Uuid>> = events.iter().map(|e| e.session_id).collect();
        let reasons: Vec<Option<&str>> = events.iter().map(|e| e.reason.as_deref()).collect();
        let changes: Vec<Option<&str>> = events.iter().map(|e| e.changes.as_deref()).collect();
        let old_emails: Vec<Option<&str>> = events.iter().map(|e| e.old_email.as_deref()).collect();
        let new_emails: Vec<Option<&str>> = events.iter().map(|e| e.new_email.as_deref()).collect();
        let expiries: Vec<DateTime<Utc>> = events
            .iter()
            .map(|e| {
                e.at.checked_add_signed(retention)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            })
            .collect();
        self.timed(async {
            let client = self.client().await?;
            let insert = client
                .prepare_cached(
                    "INSERT INTO audit_events
                         (id, user_id, at, type, outcome, ip, actor_id, session_id, reason,
                          changes, expires_at, old_email, new_email)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[],
                         $4::text[], $5::text[], $6::inet[], $7::uuid[], $8::uuid[],
                         $9::text[], $10::text[], $11::timestamptz[], $12::text[], $13::text[])
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            client
                .execute(
                    &insert,
                    &[
                        &ids,
                        &users,
                        &ats,
                        &kinds,
                        &outcomes,
                        &ips,
                        &actors,
                        &sessions,
                        &reasons,
                        &changes,
                        &expiries,
                        &old_emails,
                        &new_emails,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Up to `limit` of `user_id`'s unexpired events after `after`, newest first.
    pub async fn audit_events(
        &self,
        user_id: Uuid,
        after: Option<PagePosition>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, DbError> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_events
                 WHERE user_id = $1
                   AND expires_at > now()
                   AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
                 ORDER BY at DESC, id DESC
                 LIMIT $4"
            );
            let rows = client
                .query(
                    &sql,
                    &[&user_id, &after.map(|p| p.at), &after.map(|p| p.id), &limit],
                )
                .await?;
            rows.iter().map(from_row).collect()
        })
        .await
    }
}

fn from_row(row: &Row) -> Result<StoredEvent, DbError> {
    let get = || -> Result<StoredEvent, tokio_postgres::Error> {
        Ok(StoredEvent {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            at: row.try_get("at")?,
            kind: row.try_get("type")?,
            outcome: row.try_get("outcome")?,
            ip: row.try_get("ip")?,
            actor_id: row.try_get("actor_id")?,
            session_id: row.try_get("session_id")?,
            reason: row.try_get("reason")?,
            changes: row.try_get("changes")?,
            old_email: row.try_get("old_email")?,
            new_email: row.try_get("new_email")?,
        })
    };
    get().map_err(|e| DbError::Query(e.into()))
}
