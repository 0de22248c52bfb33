//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the interactive
//! docs rendered from it ([`swagger_ui`]). `openapi.json` at the repository root is a
//! checked-in copy; a test fails when the two differ (`UPDATE_OPENAPI=1 cargo test -p
//! user-service openapi` rewrites it). `GET /openapi.json` serves that copy as it is,
//! embedded at compile time: a request builds no document.

mod swagger_ui;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, RefOr};
use utoipa::{Modify, OpenApi};

use crate::http::routes::{self, admin};

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-service",
        description = "Sign-up, sign-in, JWT access tokens with rotating refresh tokens, \
            revocation that takes effect at once, and admin user management. \
            Every error is an RFC 9457 problem (`application/problem+json`) with a stable `code`. \
            Every response under `/v1/`, success or problem, carries `Cache-Control: no-store`: \
            tokens, profiles and errors are for one caller at one moment, and no cache may keep \
            them. The JWKS may be cached (`max-age`).",
        license(name = "MIT"),
    ),
    paths(
        routes::register::register,
        routes::login::login,
        routes::login_mfa::login_mfa,
        routes::refresh::refresh,
        routes::logout::logout,
        routes::get_me::get_me,
        routes::update_me::update_me,
        routes::change_email::change_email,
        routes::resend_verification::resend_verification,
        routes::verify_email::verify_email,
        routes::change_password::change_password,
        routes::list_sessions::list_sessions,
        routes::delete_session::delete_session,
        routes::mfa_setup::mfa_setup,
        routes::mfa_confirm::mfa_confirm,
        routes::mfa_disable::mfa_disable,
        routes::forgot_password::forgot_password,
        routes::reset_password::reset_password,
        admin::list_users::list_users,
        admin::create_user::create_user,
        admin::get_user::get_user,
        admin::update_user::update_user,
        admin::delete_user::delete_user,
        admin::user_audit::user_audit,
        routes::jwks::jwks,
        routes::health::healthz,
        routes::health::readyz,
        openapi_json,
        swagger_ui::docs,
        swagger_ui::docs_asset,
    ),
    components(schemas(crate::http::error::Problem)),
    modifiers(&BearerAuth, &OptionalLogoutBody, &NoStoreHeader),
    tags(
        (name = "auth", description = "Registration, login, token refresh and logout"),
        (name = "users", description = "The caller's own account"),
        (name = "admin", description = "User management (admin role)"),
        (name = "keys", description = "Public keys for verifying access tokens"),
        (name = "health", description = "Liveness and readiness"),
        (name = "docs", description = "This document and its interactive docs"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme: a JWT access token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from login or refresh. Rejected at once after \
                         logout, reuse detection, a password change or a role change.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Logout's body is optional (the contract: `{all?: bool}`, body optional). utoipa marks
/// every typed request body required, and an `Option<LogoutRequest>` body would document
/// `null` as a valid body, which the service refuses (a body must be a JSON object): so the
/// body stays typed and only its `required` flag is cleared here.
struct OptionalLogoutBody;

impl Modify for OptionalLogoutBody {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let body = openapi
            .paths
            .paths
            .get_mut(routes::logout::PATH)
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.request_body.as_mut());
        if let Some(RefOr::T(body)) = body {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// The `Cache-Control: no-store` of every `/v1/` response (see [`crate::http::NO_STORE`]):
/// one `NoStore` header component, referenced from each response of each `/v1/` operation.
struct NoStoreHeader;

impl Modify for NoStoreHeader {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
        const NAME: &str = "NoStore";
        let header = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([crate::http::NO_STORE])),
            ))
            .description(Some(
                "Every response under `/v1/` is `no-store`: no cache may keep it.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .headers
            .insert(NAME.to_owned(), RefOr::T(header));
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response.headers.insert(
                            "Cache-Control".to_owned(),
                            RefOr::Ref(Ref::new(format!("#/components/headers/{NAME}"))),
                        );
                    }
                }
            }
        }
    }
}

/// A JSON Web Key Set (RFC 7517): public keys only.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the body is jsonwebtoken's `JwkSet`
pub struct Jwks {
    /// One entry per key that may have signed a live token; `kid` matches the token header.
    #[schema(value_type = Vec<Object>, example = json!([{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
        "kid": "3MfJ0GmFiOe3kBpXqJFaDGBCjrkmYz9WVq0oHbqQy2c",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }]))]
    keys: Vec<serde_json::Value>,
}

/// Route of the JSON document.
pub const OPENAPI_JSON: &str = "/openapi.json";
/// Route of the interactive docs page.
pub const DOCS: &str = "/docs";
/// Route of the page's files (scripts and stylesheet).
pub const DOCS_ASSET: &str = "/docs/{asset}";

/// The checked-in document, as `GET /openapi.json` serves it.
// A copy in OUT_DIR (shared/build.rs): a file outside the crate's folder would make every
// clone sharing the build cache compile the library again.
const CHECKED_IN: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// This endpoint's router (the document, the page and its files).
pub fn router() -> axum::Router<crate::http::state::AppState> {
    axum::Router::new()
        .route(OPENAPI_JSON, axum::routing::get(openapi_json))
        .route(DOCS, axum::routing::get(swagger_ui::docs))
        .route(DOCS_ASSET, axum::routing::get(swagger_ui::docs_asset))
}

/// The document, generated (for the tests and the checked-in copy; never per request).
pub fn document() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// The document as pretty JSON (the checked-in form).
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_default()
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = OPENAPI_JSON,
    tag = "docs",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", body = Object))
)]
pub(crate) async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        CHECKED_IN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes::ENDPOINTS;

    use utoipa::openapi::path::{Operation, PathItem};

    /// The operations of `item` with their methods.
    fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
        [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ]
        .into_iter()
        .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
    }

    #[test]
    fn the_checked_in_document_is_current() {
        let path = crate::workspace_root().join("openapi.json");
        let generated = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, format!("{generated}\n")).expect("write openapi.json");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in.trim_end() == generated,
            "openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p user-service openapi`"
        );
    }

    #[test]
    fn every_endpoint_is_documented_with_its_access() {
        let doc = document();
        for endpoint in ENDPOINTS {
            let item = doc
                .paths
                .paths
                .get(endpoint.path)
                .unwrap_or_else(|| panic!("{} is not documented", endpoint.path));
            for method in endpoint.methods {
                let operation = match *method {
                    "GET" => &item.get,
                    "POST" => &item.post,
                    "PUT" => &item.put,
                    "PATCH" => &item.patch,
                    "DELETE" => &item.delete,
                    other => panic!("unexpected method {other}"),
                }
                .as_ref()
                .unwrap_or_else(|| panic!("{method} {} is not documented", endpoint.path));
                let protected = endpoint.access != crate::http::routes::Access::Public;
                assert_eq!(
                    operation.security.is_some(),
                    protected,
                    "{method} {}: security must match its access",
                    endpoint.path
                );
            }
        }
    }

    #[test]
    fn every_request_name_field_carries_the_name_pattern() {
        let doc: serde_json::Value =
            serde_json::from_str(&document_json()).expect("the document is JSON");
        let mut checked = 0;
        for schema in [
            "RegisterRequest",
            "CreateUserRequest",
            "UpdateMeRequest",
            "UpdateUserRequest",
        ] {
            let name = &doc["components"]["schemas"][schema]["properties"]["name"];
            assert_eq!(
                name["pattern"].as_str(),
                Some(crate::domain::UserName::PATTERN),
                "{schema}.name"
            );
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    /// A full hashing queue is a 503 only where a password is hashed or verified; no other
    /// operation documents it.
    #[test]
    fn only_the_operations_that_hash_name_the_hashing_queue() {
        let hashing = [
            ("POST", routes::register::PATH),
            ("POST", routes::login::PATH),
            ("PUT", routes::change_password::PATH),
            ("POST", routes::change_email::PATH),
            ("POST", routes::reset_password::PATH),
            ("POST", routes::mfa_setup::PATH),
            ("POST", routes::mfa_disable::PATH),
            ("POST", admin::USERS),
        ];
        let doc = document();
        let mut named = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, operation) in operations(item) {
                let Some(RefOr::T(unavailable)) = operation.responses.responses.get("503") else {
                    continue;
                };
                if unavailable.description.contains("hashing queue") {
                    named.push((method, path.as_str()));
                }
            }
        }
        named.sort();
        let mut expected = hashing.to_vec();
        expected.sort();
        assert_eq!(named, expected);
    }
}
