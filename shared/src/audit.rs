//! The audit trail: one structured event per security action (who, what, outcome, IP).
//!
//! Every event goes to the log under the `audit` target, as JSON like every other log line.
//! Events that concern a known user are also stored, through one [`AuditSink`] per process:
//! in DynamoDB when `AUDIT_TABLE` is set (as on AWS), else in Postgres (`audit_events`),
//! both kept for `AUDIT_RETENTION_DAYS` (default 90). Storing never slows the request: the
//! event goes into a bounded channel that a background task drains in batches; when the
//! channel is full the event is dropped (it is still in the log), counted and warned about.
//! Events carry ids, never a password, a token or a hash.

mod dynamo;
mod store;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use store::{AuditPage, AuditSink, AuditStore, AuditStoreError, PagePosition, StoredEvent};

/// Whether the action did what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did.
    Success,
    /// It was refused.
    Failure,
}

impl Outcome {
    /// As stored and returned: `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One security event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened: `login`, `token_issued`, `refresh`, `refresh_reuse_detected`, ...
    pub kind: &'static str,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// Who acted, when not the user itself (an admin).
    pub actor_id: Option<Uuid>,
    /// The user it concerns, when known.
    pub user_id: Option<Uuid>,
    /// The session it concerns, when there is one.
    pub session_id: Option<Uuid>,
    /// The client IP.
    pub ip: Option<IpAddr>,
    /// Why it failed, or a detail of what it did (`wrong_password`, `all_sessions`).
    pub reason: Option<&'static str>,
    /// Which fields an admin action changed (`role,disabled`); names, never values.
    pub changes: Option<String>,
    /// When it happened (microsecond precision, as Postgres keeps it).
    pub at: DateTime<Utc>,
}

impl AuditEvent {
    /// A successful `kind` event.
    pub fn success(kind: &'static str) -> Self {
        Self {
            kind,
            outcome: Outcome::Success,
            actor_id: None,
            user_id: None,
            session_id: None,
            ip: None,
            reason: None,
            changes: None,
            at: now_micros(),
        }
    }

    /// A failed `kind` event, with why.
    pub fn failure(kind: &'static str, reason: &'static str) -> Self {
        Self {
            outcome: Outcome::Failure,
            reason: Some(reason),
            ..Self::success(kind)
        }
    }

    /// Names the user.
    pub fn user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Names the admin who acted on the user.
    pub fn actor(mut self, actor_id: Uuid) -> Self {
        self.actor_id = Some(actor_id);
        self
    }

    /// Names the fields a change touched.
    pub fn changes(mut self, fields: String) -> Self {
        self.changes = Some(fields);
        self
    }

    /// Names the session.
    pub fn session(mut self, session_id: Uuid) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Names the client IP.
    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    /// Adds a detail.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Writes the event to the log and, when it names a user, hands it to `sink` to be
    /// stored in the background. Never waits.
    pub fn record(self, sink: &AuditSink) {
        self.log();
        sink.emit(self);
    }

    /// Writes the event to the log only: for events that name no user (a per-IP rate
    /// limit), which no user's trail could show.
    pub fn log(&self) {
        tracing::info!(
            target: "audit",
            event = self.kind,
            outcome = self.outcome.as_str(),
            actor_id = self.actor_id.map(tracing::field::display),
            user_id = self.user_id.map(tracing::field::display),
            session_id = self.session_id.map(tracing::field::display),
            ip = self.ip.map(tracing::field::display),
            reason = self.reason,
            changes = self.changes.as_deref(),
            "audit"
        );
    }
}

/// Now, truncated to whole microseconds, so that what is stored and what a cursor carries
/// compare equal.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
