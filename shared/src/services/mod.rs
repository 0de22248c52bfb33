//! The use cases: every account and session operation, each one method that does the whole
//! rule (validation, the write, the revocation order, the profile version, the audit event,
//! the mail), so that no caller can forget a part of it.
//!
//! The HTTP handlers, the command line and the bootstrap admin call these methods; none of
//! them repeats a rule. A service knows nothing of HTTP: it takes plain values (an email
//! string, the caller, the client IP) and returns its own error enum, which `http::error`
//! maps to problem responses in one place.
//!
//! Dependencies point one way: `domain` ← infrastructure (`db`, `redis_store`, `auth`,
//! `limits`, `mail`, `audit`, `profiles`) ← `services` ← `http` ← `app`, `lambda`, `main`.

pub mod accounts;
pub(crate) mod credentials;
pub(crate) mod outbox;
pub(crate) mod second_factor;
pub(crate) mod sessions;

use crate::audit::AuditStoreError;
use crate::auth::hashing::HashError;
use crate::auth::keys::KeysUnavailable;
use crate::auth::revocation::RevocationError;
use crate::auth::tokens::IssueError;
use crate::db::DbError;
use crate::db::admin::AdminChangeError;
use crate::redis_store::CacheError;

pub(crate) use accounts::{AccountError, Accounts};
pub(crate) use sessions::{SessionError, Sessions};

/// A dependency failed: it is down or too slow (the client may retry: 503), or it answered
/// something no correct program expects (a bug: 500). Every service error carries one.
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    /// Postgres, Redis, DynamoDB, Secrets Manager or the hashing queue could not serve in
    /// time.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// An unexpected answer or state.
    #[error("unexpected failure")]
    Internal(#[source] anyhow::Error),
}

impl DependencyError {
    /// An unexpected state described by `what`.
    pub fn internal(what: &'static str) -> Self {
        Self::Internal(anyhow::anyhow!(what))
    }
}

impl From<DbError> for DependencyError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => Self::Unavailable(e.into()),
            // A caller that can get `EmailTaken` handles it before it gets here.
            DbError::EmailTaken | DbError::Query(_) => Self::Internal(e.into()),
        }
    }
}

impl From<CacheError> for DependencyError {
    fn from(e: CacheError) -> Self {
        Self::Unavailable(e.into())
    }
}

impl From<KeysUnavailable> for DependencyError {
    fn from(e: KeysUnavailable) -> Self {
        Self::Unavailable(e.into())
    }
}

impl From<IssueError> for DependencyError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Unavailable(e) => e.into(),
            IssueError::Signing(_) | IssueError::CannotSign => Self::Internal(e.into()),
        }
    }
}

impl From<HashError> for DependencyError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Unavailable(e.into()),
            HashError::Internal(_) => Self::Internal(e.into()),
        }
    }
}

impl From<RevocationError> for DependencyError {
    fn from(e: RevocationError) -> Self {
        match e {
            RevocationError::Cache(e) => e.into(),
            RevocationError::Db(e) => e.into(),
        }
    }
}

impl From<AuditStoreError> for DependencyError {
    fn from(e: AuditStoreError) -> Self {
        match e {
            AuditStoreError::Db(e) => e.into(),
            AuditStoreError::DynamoDb(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<AdminChangeError> for DependencyError {
    fn from(e: AdminChangeError) -> Self {
        match e {
            AdminChangeError::Db(e) => e.into(),
            // A caller that can get these handles them before it gets here.
            AdminChangeError::NotFound | AdminChangeError::LastAdmin => Self::Internal(e.into()),
        }
    }
}

/// `From` every infrastructure error for a service error with a `Dependency` variant, so
/// that `?` works on any dependency call inside a service method.
macro_rules! dependency_errors {
    ($error:ty) => {
        $crate::services::dependency_errors!(@each $error:
            $crate::db::DbError,
            $crate::redis_store::CacheError,
            $crate::auth::keys::KeysUnavailable,
            $crate::auth::tokens::IssueError,
            $crate::auth::hashing::HashError,
            $crate::auth::revocation::RevocationError,
            $crate::audit::AuditStoreError
        );
    };
    (@each $error:ty: $($source:ty),*) => {
        $(impl From<$source> for $error {
            fn from(e: $source) -> Self {
                Self::Dependency(e.into())
            }
        })*
    };
}
pub(crate) use dependency_errors;

/// A fresh random opaque token (refresh or reset), or an internal error if the system has
/// no randomness.
fn new_opaque_token() -> Result<crate::auth::opaque::OpaqueToken, DependencyError> {
    crate::auth::opaque::OpaqueToken::generate()
        .map_err(|_| DependencyError::internal("CSPRNG failed"))
}
