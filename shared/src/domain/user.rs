//! The user as the API shows it, its role and its display name. Never holds password material.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Email;

/// What a user may do: `user` for everyone, `admin` for user management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary account.
    User,
    /// May manage every user.
    Admin,
}

impl Role {
    /// The name stored in the database and carried in the `role` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is neither `user` nor `admin`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

/// Why a display name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserNameError {
    /// Longer than [`UserName::MAX_CHARS`].
    #[error("name must be at most {max} characters", max = UserName::MAX_CHARS)]
    TooLong,
    /// Empty after trimming.
    #[error("name must not be empty; send null to remove it")]
    Empty,
    /// Holds a control character (newline, NUL, ...).
    #[error("name must not contain control characters")]
    ControlCharacter,
}

impl UserName {
    /// Longest accepted name, in characters (the contract's limit).
    pub const MAX_CHARS: usize = 100;

    /// What [`UserName::parse`] accepts, as the JSON Schema `pattern` of the request fields
    /// (`http::routes::name_field` puts it in the OpenAPI document): optional surrounding
    /// whitespace (Rust's `char::is_whitespace`), then 1 to 100 characters without a
    /// control character (`char::is_control`: U+0000-U+001F, U+007F-U+009F) that neither
    /// start nor end with whitespace.
    pub const PATTERN: &str = r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F](?:[^\u0000-\u001F\u007F-\u009F]{0,98}[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F])?[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$";

    /// Validates a display name.
    pub fn parse(raw: &str) -> Result<Self, UserNameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(UserNameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(UserNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(UserNameError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A user as every endpoint returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// UUIDv7, so ids sort by creation time.
    pub id: Uuid,
    /// Trimmed and lowercased.
    #[schema(value_type = String, format = Email, example = "ada@example.com")]
    pub email: Email,
    /// Optional display name (`null` when absent).
    #[schema(value_type = Option<String>, max_length = 100, example = "Ada Lovelace")]
    pub name: Option<UserName>,
    /// What the user may do.
    pub role: Role,
    /// A disabled user cannot log in and all its tokens are rejected.
    pub disabled: bool,
    /// Whether the owner of `email` proved it (a verification or email-change link, or a
    /// password reset).
    pub email_verified: bool,
    /// Whether logging in takes a second factor.
    pub mfa_enabled: bool,
    /// When the account was created.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// RFC 3339 UTC with a `Z` suffix and microseconds, the contract's time format.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    /// Serialises a UTC time as RFC 3339 (`2026-11-29T15:36:16.123456Z`).
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            UserName::parse("  Ada Lovelace ").map(|n| n.as_str().to_owned()),
            Ok("Ada Lovelace".to_owned())
        );
        assert_eq!(UserName::parse(&"é".repeat(100)).map(|_| ()), Ok(()));
        assert_eq!(
            UserName::parse(&"é".repeat(101)),
            Err(UserNameError::TooLong)
        );
        assert_eq!(UserName::parse("   "), Err(UserNameError::Empty));
        assert_eq!(
            UserName::parse("a\nb"),
            Err(UserNameError::ControlCharacter)
        );
    }

    #[test]
    fn roles_round_trip_and_unknown_ones_fail() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn user_serialises_to_the_contract_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T15:36:16.5Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let user = User {
            id: Uuid::nil(),
            email: Email::parse("a@example.com").expect("valid email"),
            name: None,
            role: Role::Admin,
            disabled: false,
            email_verified: true,
            mfa_enabled: false,
            created_at: at,
            updated_at: at,
        };
        let json = serde_json::to_value(&user).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "email": "a@example.com",
                "name": null,
                "role": "admin",
                "disabled": false,
                "email_verified": true,
                "mfa_enabled": false,
                "created_at": "2026-11-29T15:36:16.500000Z",
                "updated_at": "2026-11-29T15:36:16.500000Z",
            })
        );
    }
}
