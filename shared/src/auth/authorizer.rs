//! The API Gateway Lambda authorizer: HTTP API, payload format 2.0, simple responses.
//!
//! [`authorize_request`] reads the bearer token of the request (the first identity source,
//! else the `Authorization` header), runs [`crate::auth::authorize`] on it (the same function
//! every protected route of the local server runs: signature, `kid`, algorithm, `iss`, `aud`,
//! `exp`, then revocation and the user's state), and checks the caller's role against the
//! [`RouteRules`] for the event's `routeKey`. An allow carries the caller in its context:
//!
//! ```json
//! {"isAuthorized": true,
//!  "context": {"sub": "<user id>", "role": "user", "sid": "<session id>",
//!              "jti": "<token id>", "iat_ms": 1767225600123, "amr": "pwd otp"}}
//! ```
//!
//! `jti` and `iat_ms` (the issue instant in milliseconds) let a function behind the
//! authorizer re-check revocation with one Redis read, without the token (see
//! [`crate::lambda`]). `amr` is the token's `amr` claim joined by spaces (`pwd`, or
//! `pwd otp` after a second factor: context values are strings); a route rule may demand
//! `otp` (see [`RouteRules`]). This module must never allow a request it could not fully check,
//! and never logs the token: one event per decision names the user, the route, the decision
//! and the reason.
//!
//! # A dependency outage is an error, not a deny
//!
//! If revocation cannot be checked (Redis and Postgres both unreachable), the handler fails
//! instead of answering. Allowing is out of the question (a revoked token would pass). With
//! simple responses API Gateway offers two answers, neither of them the contract's 503:
//! - a deny becomes `403 {"message":"Forbidden"}`, which tells the client its credentials
//!   are refused: it may log the user out or give up, for what is our outage. Worse, a deny
//!   is cached like any authorizer result, so the user stays locked out for the cache TTL
//!   after the outage ends;
//! - a failed invocation becomes `500 {"message":"Internal Server Error"}`: a server-side
//!   fault that clients treat as transient and retry, and API Gateway caches nothing.
//!
//! So [`authorize_request`] returns [`AuthorizerUnavailable`] and the Lambda handler fails.
//! (HTTP APIs cannot map an authorizer failure to 503; that needs a REST API's gateway
//! responses.)
//!
//! # What clients see behind the authorizer
//!
//! API Gateway, not this service, writes these answers, so they are not RFC 9457 problems:
//! no `Authorization` header at all: 401 (API Gateway checks the identity source before
//! calling the authorizer); a bad, expired or revoked token, or a role the route does not
//! allow: 403; an outage: 500. Routes that must answer exactly as the contract says
//! (401 `unauthorized` with a problem body) can be left without the authorizer: every
//! function of this service authenticates by itself when no authorizer context is present.
//!
//! # Authorizer cache TTL: revocation delay versus cost
//!
//! API Gateway can cache an authorizer result for `AuthorizerResultTtlInSeconds` (SAM:
//! `ReauthorizeEvery`; API Gateway's own default is 300 s, the maximum 3600 s), keyed by the
//! identity sources. Set it explicitly to 5 s:
//! - **Revocation delay.** While an allow is cached, API Gateway does not ask again: a token
//!   logged out, revoked by reuse detection, downgraded by a role change or belonging to a
//!   user just disabled keeps passing for up to the TTL on APIs that trust the context alone.
//!   5 s bounds that; 300 s would be five minutes of a revoked token working. 0 disables the
//!   cache (revocation at once everywhere).
//! - **Cost.** Without a cache every request to a protected route costs a second Lambda
//!   invocation (billed requests and duration, one Redis read, a few milliseconds of latency
//!   warm, a cold start now and then). With 5 s, a busy client costs at most one authorizer
//!   call per token and route every 5 s.
//! - **This service's own functions lose nothing to the cache**: they re-check revocation
//!   with the `sid`, `sub` and `iat_ms` of the context on every request (one `MGET`), so a
//!   revoked token is refused at once even from a cached allow. The cache only spares them
//!   the signature check and the role lookup.
//! - **The cache key must include the route.** A cached result is reused for every route
//!   sharing the authorizer and the same identity sources. With only the `Authorization`
//!   header as identity source, a user's allow on `GET /v1/users/me` would be replayed on
//!   `GET /v1/admin/users`. Configure the identity sources as
//!   `["$request.header.Authorization", "$context.routeKey"]` (token first: this module
//!   reads the first entry) whenever the cache is on.

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::revocation::Revocations;
use super::rules::{Permission, RouteRules};
use super::tokens::{AccessClaims, AccessTokens};
use super::{AuthError, Caller};
use crate::domain::Amr;
use crate::telemetry::ErrorChain;

/// This service's routes that admit a revoked token (see [`authorize_request`]): logout and
/// session deletion, the revocations a caller may have to repeat with a token that the
/// attempt cut short already cut off.
const REPEATABLE_REVOCATION_ROUTES: &[&str] =
    &["POST /v1/auth/logout", "DELETE /v1/users/me/sessions/{id}"];

/// Revocation could not be checked: the invocation must fail (API Gateway answers 500),
/// never allow and never deny (see the module docs).
#[derive(Debug, thiserror::Error)]
#[error("authorization undecided: revocation check or signing keys unavailable")]
pub struct AuthorizerUnavailable(#[source] pub anyhow::Error);

/// What the authorizer needs, built once per cold start.
#[derive(Clone)]
pub struct Authorizer {
    tokens: AccessTokens,
    revocations: Revocations,
    rules: RouteRules,
}

impl Authorizer {
    /// The authorizer of a deployment: its keys and revocation mirror, and `rules`.
    pub fn new(tokens: AccessTokens, revocations: Revocations, rules: RouteRules) -> Self {
        Self {
            tokens,
            revocations,
            rules,
        }
    }

    /// Decides one request (see [`authorize_request`]).
    pub async fn handle(
        &self,
        event: &ApiGatewayV2CustomAuthorizerV2Request,
    ) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, AuthorizerUnavailable> {
        authorize_request(&self.tokens, &self.revocations, &self.rules, event).await
    }
}

/// Decides whether API Gateway may pass `event`'s request on: an allow with the caller in the
/// context, a deny, or [`AuthorizerUnavailable`] when revocation cannot be checked.
pub async fn authorize_request(
    tokens: &AccessTokens,
    revocations: &Revocations,
    rules: &RouteRules,
    event: &ApiGatewayV2CustomAuthorizerV2Request,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, AuthorizerUnavailable> {
    let route = event
        .route_key
        .as_deref()
        .or(event.request_context.route_key.as_deref())
        .unwrap_or_default();
    let request_id = event.request_context.request_id.as_deref().unwrap_or("-");
    let Some(token) = bearer_of_event(event) else {
        log_decision(None, route, request_id, Decision::Deny("no_token"));
        return Ok(deny());
    };
    let caller = match super::authorize(tokens, revocations, token).await {
        Ok(authorized) => authorized.caller,
        // The repeat of a logout (or session deletion) that an outage cut short: its token is
        // revoked by then, and the function finishes the revocation (or answers 401 if there
        // is none to finish).
        Err(AuthError::Revoked(caller))
            if REPEATABLE_REVOCATION_ROUTES.contains(&route) && rules.is_service_default() =>
        {
            caller
        }
        Err(AuthError::Revoked(_)) => {
            log_decision(None, route, request_id, Decision::Deny("revoked"));
            return Ok(deny());
        }
        Err(AuthError::Unauthorized(reason)) => {
            log_decision(None, route, request_id, Decision::Deny(reason));
            return Ok(deny());
        }
        Err(AuthError::Unavailable(e)) => {
            tracing::error!(
                target: "authorizer",
                route,
                request_id,
                decision = "error",
                reason = "unavailable",
                error = %ErrorChain(e.as_ref()),
                "authorization decision"
            );
            return Err(AuthorizerUnavailable(e));
        }
    };
    match rules.allows(route, caller.role, caller.amr) {
        Permission::Allowed => {}
        Permission::RoleRefused => {
            log_decision(Some(&caller), route, request_id, Decision::Deny("role"));
            return Ok(deny());
        }
        Permission::SecondFactorMissing => {
            log_decision(
                Some(&caller),
                route,
                request_id,
                Decision::Deny("second_factor"),
            );
            return Ok(deny());
        }
    }
    // `authorize` accepted exactly this token, so its claims are authentic; read `jti` and
    // the millisecond issue instant from them for the context.
    let Some(claims) = claims_of_verified(token) else {
        log_decision(Some(&caller), route, request_id, Decision::Deny("claims"));
        return Ok(deny());
    };
    log_decision(Some(&caller), route, request_id, Decision::Allow);
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = true;
    response.context = json!({
        "sub": caller.user_id.to_string(),
        "role": caller.role.as_str(),
        "sid": caller.session_id.to_string(),
        "jti": claims.jti.to_string(),
        "iat_ms": claims.issued_at_ms(),
        "amr": caller.amr.to_spaced(),
    });
    Ok(response)
}

fn deny() -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = false;
    response.context = json!({});
    response
}

enum Decision {
    Allow,
    Deny(&'static str),
}

/// One event per decision: who, which route, allow or deny, why. Never the token.
fn log_decision(caller: Option<&Caller>, route: &str, request_id: &str, decision: Decision) {
    let sub = caller.map(|c| c.user_id.to_string());
    let role = caller.map(|c| c.role.as_str());
    let (decision, reason) = match decision {
        Decision::Allow => ("allow", "ok"),
        Decision::Deny(reason) => ("deny", reason),
    };
    tracing::info!(
        target: "authorizer",
        sub,
        role,
        route,
        request_id,
        decision,
        reason,
        "authorization decision"
    );
}

/// The token of the first identity source (`Bearer <token>`), else of the `Authorization`
/// header.
fn bearer_of_event(event: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<&str> {
    event
        .identity_source
        .as_ref()
        .and_then(|sources| sources.first())
        .and_then(|source| bearer_of(source))
        .or_else(|| super::bearer_token(&event.headers))
}

/// `Bearer <token>` (scheme case-insensitive), as the `Authorization` header carries it.
fn bearer_of(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The claims of a token that [`super::authorize`] has just accepted. Reads the payload
/// without checking anything: never call it on a token that was not verified.
fn claims_of_verified(token: &str) -> Option<AccessClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<AccessClaims>(&bytes).ok()
}

/// A caller as the authorizer's context describes it, plus the token's issue instant: what a
/// function behind the authorizer needs to re-check revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizedContext {
    /// The caller.
    pub caller: Caller,
    /// When the token was issued, in milliseconds since the epoch.
    pub issued_at_ms: u64,
}

impl AuthorizedContext {
    /// Reads `sub`, `role`, `sid`, `iat_ms` and `amr` from an authorizer context (the
    /// `requestContext.authorizer.lambda` object); `None` if any is missing or malformed,
    /// except `amr`, which reads as a password alone when absent (never as more than the
    /// context says). Numbers are accepted as JSON numbers or numeric strings.
    pub fn from_fields<'a>(field: impl Fn(&str) -> Option<&'a Value>) -> Option<Self> {
        let text = |name: &str| field(name).and_then(Value::as_str);
        let caller = Caller {
            user_id: text("sub")?.parse().ok()?,
            role: text("role")?.parse().ok()?,
            session_id: text("sid")?.parse().ok()?,
            amr: match field("amr") {
                None => Amr::PASSWORD,
                Some(value) => Amr::from_methods(value.as_str()?.split_whitespace())?,
            },
        };
        let issued_at_ms = match field("iat_ms")? {
            Value::Number(n) => n.as_u64()?,
            Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        Some(Self {
            caller,
            issued_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use std::collections::HashMap;

    #[test]
    fn bearer_values_are_read_case_insensitively() {
        assert_eq!(bearer_of("Bearer abc"), Some("abc"));
        assert_eq!(bearer_of("bearer  abc "), Some("abc"));
        assert_eq!(bearer_of("Basic abc"), None);
        assert_eq!(bearer_of("Bearer "), None);
        assert_eq!(bearer_of("abc"), None);
    }

    #[test]
    fn the_token_comes_from_the_identity_source_else_the_header() {
        let mut event: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_value(json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeKey": "GET /v1/users/me",
            "identitySource": ["Bearer from-source", "GET /v1/users/me"],
            "headers": {"authorization": "Bearer from-header"},
            "requestContext": {"http": {"method": "GET", "path": "/v1/users/me"}}
        }))
        .expect("event");
        assert_eq!(bearer_of_event(&event), Some("from-source"));
        event.identity_source = None;
        assert_eq!(bearer_of_event(&event), Some("from-header"));
        event.headers.clear();
        assert_eq!(bearer_of_event(&event), None);
    }

    #[test]
    fn context_fields_round_trip() {
        let user_id = uuid::Uuid::now_v7();
        let session_id = uuid::Uuid::now_v7();
        for (iat, amr, expected) in [
            (
                json!(1_767_225_600_123_u64),
                Some("pwd otp"),
                Amr::PASSWORD_AND_OTP,
            ),
            (json!("1767225600123"), Some("pwd"), Amr::PASSWORD),
            (json!("1767225600123"), None, Amr::PASSWORD),
        ] {
            let mut fields: HashMap<String, Value> = [
                ("sub", json!(user_id.to_string())),
                ("role", json!("admin")),
                ("sid", json!(session_id.to_string())),
                ("iat_ms", iat),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            if let Some(amr) = amr {
                fields.insert("amr".into(), json!(amr));
            }
            let context = AuthorizedContext::from_fields(|k| fields.get(k)).expect("context");
            assert_eq!(
                context.caller,
                Caller {
                    user_id,
                    role: Role::Admin,
                    session_id,
                    amr: expected,
                }
            );
            assert_eq!(context.issued_at_ms, 1_767_225_600_123);
            fields.insert("amr".into(), json!("otp"));
            assert_eq!(
                AuthorizedContext::from_fields(|k| fields.get(k)),
                None,
                "no pwd"
            );
        }
        let partial: HashMap<String, Value> =
            [("sub".to_owned(), json!(user_id.to_string()))].into();
        assert_eq!(AuthorizedContext::from_fields(|k| partial.get(k)), None);
    }
}
