//! The state the HTTP layer serves with. Handlers never take the whole of it: each takes the
//! one part it uses (`State<Accounts>`, `State<Sessions>`, ...) through axum's [`FromRef`],
//! so a handler's signature says what it touches.

use axum::extract::FromRef;
use tokio_util::task::TaskTracker;

use crate::audit::AuditSink;
use crate::auth::Authenticator;
use crate::db::Db;
use crate::redis_store::Cache;
use crate::services::{Accounts, Sessions};

/// Everything a route may need; cheap to clone (every field is a handle). Built once per
/// process or Lambda cold start by [`crate::app`].
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The account use cases.
    pub accounts: Accounts,
    /// The session use cases.
    pub sessions: Sessions,
    /// Bearer tokens to callers (the `Authorized` extractor), and the keys behind the JWKS
    /// and the pagination cursors.
    pub authenticator: Authenticator,
    /// What `GET /readyz` asks.
    pub readiness: Readiness,
    /// The audit trail (a Lambda function stores its events before it answers).
    pub audit: AuditSink,
    /// Work a handler leaves running after its response (the reset email, a re-hash). The
    /// local server lets it run; a Lambda function waits for it before the invocation ends,
    /// since a frozen sandbox runs nothing (see [`crate::lambda`]).
    pub background: TaskTracker,
    /// Where the client IP comes from.
    pub client_ip: ClientIpSource,
    /// What the admin routes ask of a caller besides the role.
    pub admin_policy: AdminPolicy,
}

/// What the admin routes ask of a caller besides the admin role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminPolicy {
    /// A session opened with a second factor (`ADMIN_REQUIRES_MFA`).
    pub requires_second_factor: bool,
}

/// The dependencies whose reachability makes the service ready.
#[derive(Clone)]
pub struct Readiness {
    /// Postgres.
    pub db: Db,
    /// Redis.
    pub cache: Cache,
}

/// Whether the client IP is taken from `X-Forwarded-For` (`TRUST_FORWARDED_FOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIpSource {
    /// Only behind a proxy that sets it, or clients could pick their own IP.
    pub trust_forwarded_for: bool,
}
