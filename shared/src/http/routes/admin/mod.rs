//! The admin endpoints: user management for callers with the `admin` role.
//! Every admin action writes an audit event naming the admin, the user and what changed.

pub mod create_user;
pub mod delete_user;
pub mod get_user;
pub mod list_users;
pub mod update_user;
pub mod user_audit;

use uuid::Uuid;

use crate::http::ApiError;

/// The collection route.
pub const USERS: &str = "/v1/admin/users";
/// The item route.
pub const USER: &str = "/v1/admin/users/{id}";
/// A user's audit trail.
pub const USER_AUDIT: &str = "/v1/admin/users/{id}/audit";

/// A path id: anything that is not a UUID names no user, so it is 404 like an unknown one.
fn user_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}
