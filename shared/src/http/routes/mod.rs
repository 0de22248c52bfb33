//! One module per endpoint, each with its own `router()`, so that a Lambda function can
//! serve exactly one endpoint and the local server can merge them all.

pub mod admin;
pub mod change_email;
pub mod change_password;
pub mod delete_session;
pub mod forgot_password;
pub mod get_me;
pub mod health;
pub mod jwks;
pub mod list_sessions;
pub mod login;
pub mod login_mfa;
pub mod logout;
pub mod mfa_confirm;
pub mod mfa_disable;
pub mod mfa_setup;
pub mod refresh;
pub mod register;
pub mod resend_verification;
pub mod reset_password;
pub mod update_me;
pub mod verify_email;

use axum::Router;
use serde::Serialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use super::openapi;
use super::state::AppState;
use crate::domain::{User, UserName};
use crate::services::sessions::IssuedTokens;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Any authenticated user.
    User,
    /// Admins only.
    Admin,
}

/// One endpoint: the unit that is one Lambda function on AWS.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The function crate's name under `functions/` (and its binary's).
    pub function: &'static str,
    /// HTTP method(s), as API Gateway route keys spell them.
    pub methods: &'static [&'static str],
    /// The path, with `{param}` segments.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its router.
    pub router: fn() -> Router<AppState>,
}

#[rustfmt::skip] // one line per endpoint reads as a table
/// Every endpoint of the service: the one list the local server, the Lambda functions,
/// the SAM template check and the authorizer's default rules are derived from.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { function: "register", methods: &["POST"], path: register::PATH, access: Access::Public, router: register::router },
    Endpoint { function: "login", methods: &["POST"], path: login::PATH, access: Access::Public, router: login::router },
    Endpoint { function: "login-mfa", methods: &["POST"], path: login_mfa::PATH, access: Access::Public, router: login_mfa::router },
    Endpoint { function: "refresh", methods: &["POST"], path: refresh::PATH, access: Access::Public, router: refresh::router },
    Endpoint { function: "logout", methods: &["POST"], path: logout::PATH, access: Access::User, router: logout::router },
    Endpoint { function: "get-me", methods: &["GET"], path: get_me::PATH, access: Access::User, router: get_me::router },
    Endpoint { function: "update-me", methods: &["PATCH"], path: update_me::PATH, access: Access::User, router: update_me::router },
    Endpoint { function: "change-email", methods: &["POST"], path: change_email::PATH, access: Access::User, router: change_email::router },
    Endpoint { function: "resend-verification", methods: &["POST"], path: resend_verification::PATH, access: Access::User, router: resend_verification::router },
    Endpoint { function: "verify-email", methods: &["POST"], path: verify_email::PATH, access: Access::Public, router: verify_email::router },
    Endpoint { function: "change-password", methods: &["PUT"], path: change_password::PATH, access: Access::User, router: change_password::router },
    Endpoint { function: "list-sessions", methods: &["GET"], path: list_sessions::PATH, access: Access::User, router: list_sessions::router },
    Endpoint { function: "delete-session", methods: &["DELETE"], path: delete_session::PATH, access: Access::User, router: delete_session::router },
    Endpoint { function: "mfa-setup", methods: &["POST"], path: mfa_setup::PATH, access: Access::User, router: mfa_setup::router },
    Endpoint { function: "mfa-confirm", methods: &["POST"], path: mfa_confirm::PATH, access: Access::User, router: mfa_confirm::router },
    Endpoint { function: "mfa-disable", methods: &["POST"], path: mfa_disable::PATH, access: Access::User, router: mfa_disable::router },
    Endpoint { function: "forgot-password", methods: &["POST"], path: forgot_password::PATH, access: Access::Public, router: forgot_password::router },
    Endpoint { function: "reset-password", methods: &["POST"], path: reset_password::PATH, access: Access::Public, router: reset_password::router },
    Endpoint { function: "jwks", methods: &["GET"], path: jwks::PATH, access: Access::Public, router: jwks::router },
    Endpoint { function: "health", methods: &["GET"], path: health::HEALTHZ, access: Access::Public, router: health::router },
    Endpoint { function: "health", methods: &["GET"], path: health::READYZ, access: Access::Public, router: health::router },
    Endpoint { function: "openapi", methods: &["GET"], path: openapi::OPENAPI_JSON, access: Access::Public, router: openapi::router },
    Endpoint { function: "openapi", methods: &["GET"], path: openapi::DOCS, access: Access::Public, router: openapi::router },
    Endpoint { function: "openapi", methods: &["GET"], path: openapi::DOCS_ASSET, access: Access::Public, router: openapi::router },
    Endpoint { function: "admin-list-users", methods: &["GET"], path: admin::USERS, access: Access::Admin, router: admin::list_users::router },
    Endpoint { function: "admin-create-user", methods: &["POST"], path: admin::USERS, access: Access::Admin, router: admin::create_user::router },
    Endpoint { function: "admin-get-user", methods: &["GET"], path: admin::USER, access: Access::Admin, router: admin::get_user::router },
    Endpoint { function: "admin-update-user", methods: &["PATCH"], path: admin::USER, access: Access::Admin, router: admin::update_user::router },
    Endpoint { function: "admin-delete-user", methods: &["DELETE"], path: admin::USER, access: Access::Admin, router: admin::delete_user::router },
    Endpoint { function: "admin-user-audit", methods: &["GET"], path: admin::USER_AUDIT, access: Access::Admin, router: admin::user_audit::router },
];

/// Every endpoint's router, merged: the local server's routes.
pub fn all() -> Router<AppState> {
    let mut merged: Vec<&str> = Vec::new();
    let mut router = Router::new();
    for endpoint in ENDPOINTS {
        // A function serving several routes (health) is merged once.
        if !merged.contains(&endpoint.function) {
            merged.push(endpoint.function);
            router = router.merge((endpoint.router)());
        }
    }
    router
}

/// The schema of a request's optional `name`: a string or `null`, matching what
/// [`UserName::parse`] accepts ([`UserName::PATTERN`], stated once here for every request).
pub(crate) fn name_field() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(UserName::PATTERN))
        .examples(["Ada Lovelace"])
        .build()
}

/// [`name_field`] of a partial update, where `null` and absence differ.
pub(crate) fn name_change_field() -> Object {
    let mut schema = name_field();
    schema.description = Some("Absent: unchanged; `null`: removed; a string: set.".into());
    schema
}

/// The token pair login and refresh return.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A JWT (ES256 by default) to send as `Authorization: Bearer <token>`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    /// Seconds the access token lives: its `exp - iat`.
    #[schema(example = 900)]
    expires_in: u64,
    /// Opaque, single use: spend it at `/v1/auth/refresh` for the next pair.
    refresh_token: String,
    /// Seconds until the refresh token expires (the earlier of idle and absolute expiry).
    #[schema(example = 2592000)]
    refresh_expires_in: u64,
    /// The account.
    user: User,
}

impl From<IssuedTokens> for TokenPair {
    fn from(issued: IssuedTokens) -> Self {
        let refresh_expires_in = (issued.refresh_expires_at - chrono::Utc::now())
            .num_seconds()
            .max(0) as u64;
        Self {
            expires_in: issued.access.expires_in(),
            access_token: issued.access.token,
            token_type: "Bearer",
            refresh_token: issued.refresh.expose().to_owned(),
            refresh_expires_in,
            user: issued.user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Function crates that are not HTTP endpoints.
    const NON_HTTP_FUNCTIONS: &[&str] = &["authorizer", "cleanup", "migrate", "rotate-keys"];

    #[test]
    fn every_endpoint_has_a_function_crate_and_every_crate_an_endpoint() {
        let functions = crate::workspace_root().join("functions");
        let crates: BTreeSet<String> = std::fs::read_dir(&functions)
            .expect("functions/ exists")
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("Cargo.toml").exists())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !NON_HTTP_FUNCTIONS.contains(&name.as_str()))
            .collect();
        let endpoints: BTreeSet<String> = ENDPOINTS.iter().map(|e| e.function.to_owned()).collect();
        assert_eq!(crates, endpoints);
        for endpoint in ENDPOINTS {
            let main = functions.join(endpoint.function).join("src/main.rs");
            let source = std::fs::read_to_string(&main).expect("main.rs");
            assert!(
                source.contains("user_service::lambda::run(")
                    || source.contains("user_service::lambda::run_with_init("),
                "{} must only call lambda::run (or run_with_init)",
                main.display()
            );
        }
    }

    #[test]
    fn routes_are_unique() {
        let mut seen = BTreeSet::new();
        for endpoint in ENDPOINTS {
            for method in endpoint.methods {
                assert!(
                    seen.insert((*method, endpoint.path)),
                    "{method} {} is listed twice",
                    endpoint.path
                );
            }
        }
    }
}
