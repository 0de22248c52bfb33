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
//! The context is for other APIs behind the authorizer (`jti` and `iat_ms`, the issue instant
//! in milliseconds, let them re-check revocation without the token); this service's own
//! functions verify the forwarded bearer token themselves and never read it (see
//! [`crate::lambda`]). `amr` is the token's `amr` claim joined by spaces (`pwd`, or
//! `pwd otp` after a second factor: context values are strings); a route rule may demand
//! `otp` (see [`RouteRules`]). This module must never allow a request it could not fully check,
//! and never logs the token: one event per decision names the user, the route, the decision
//! and the reason.
//!
//! # Refusals of a valid token are audited
//!
//! When the token is authentic and unrevoked but the route's rules refuse its role, or ask
//! for a second factor its session did not pass, the refusal goes into the caller's audit
//! trail, as the admin routes of the local server record it themselves: on one of this
//! service's admin routes an
//! `admin_access_denied` (`not_admin` or `second_factor_missing`), on any other route (another
//! API's `AUTHORIZER_ROUTE_RULES`, a route no rule names) a `route_access_denied`
//! (`role_refused` or `second_factor_missing`), each with the route key as the operation,
//! the user, the session and API Gateway's `sourceIp`. A bad, expired or revoked token is
//! not recorded: it names no user that can be trusted.
//!
//! The event is stored before the deny is returned: Lambda freezes the sandbox as soon as
//! the invocation ends, and a write left running would stall until the next invocation (or
//! be lost). Only such denials wait for a write (at most [`AUDIT_DEADLINE`]); an allow, and
//! every other deny, writes nothing and waits for nothing. A write that fails or takes too
//! long is logged (the event itself is in the log either way) and the answer is still the
//! deny: storing the event never turns it into an allow or an error.
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
//!   verify the bearer token on every request, revocation included (one `MGET`), so a
//!   revoked token is refused at once even from a cached allow.
//! - **The cache key must include the route.** A cached result is reused for every route
//!   sharing the authorizer and the same identity sources. With only the `Authorization`
//!   header as identity source, a user's allow on `GET /v1/users/me` would be replayed on
//!   `GET /v1/admin/users`. Configure the identity sources as
//!   `["$request.header.Authorization", "$context.routeKey"]` (token first: this module
//!   reads the first entry) whenever the cache is on.

use std::time::Duration;

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::revocation::Revocations;
use super::rules::{Permission, RouteRules};
use super::tokens::{AccessClaims, AccessTokens};
use super::{AuthError, Caller};
use crate::audit::{AuditEvent, AuditKind, AuditReason, AuditSink};
use crate::telemetry::ErrorChain;

/// The longest a deny waits for its audit event to be stored (the function's `Timeout` is
/// 5 s; a write takes milliseconds when all is well). Past it the deny is returned anyway.
pub const AUDIT_DEADLINE: Duration = Duration::from_secs(2);

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
    audit: AuditSink,
}

impl Authorizer {
    /// The authorizer of a deployment: its keys and revocation mirror, `rules`, and the
    /// audit sink its refusals of valid tokens go to.
    pub fn new(
        tokens: AccessTokens,
        revocations: Revocations,
        rules: RouteRules,
        audit: AuditSink,
    ) -> Self {
        Self {
            tokens,
            revocations,
            rules,
            audit,
        }
    }

    /// Decides one request (see [`authorize_request`]).
    pub async fn handle(
        &self,
        event: &ApiGatewayV2CustomAuthorizerV2Request,
    ) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, AuthorizerUnavailable> {
        // Boxed: the revocation check's and the audit store's futures (Redis pipeline,
        // Postgres, DynamoDB) nest deeper than the compiler's default limit lets it lay out
        // when the function's `main` awaits them inline, in release builds.
        Box::pin(authorize_request(
            &self.tokens,
            &self.revocations,
            &self.rules,
            &self.audit,
            event,
        ))
        .await
    }
}

/// Decides whether API Gateway may pass `event`'s request on: an allow with the caller in the
/// context, a deny, or [`AuthorizerUnavailable`] when revocation cannot be checked. A deny of
/// a valid token by the route's rules is stored in `audit` before this returns (see the
/// module docs).
pub async fn authorize_request(
    tokens: &AccessTokens,
    revocations: &Revocations,
    rules: &RouteRules,
    audit: &AuditSink,
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
    // `revoked`: a revoked token let through to finish its own revocation.
    let (caller, revoked) = match super::authorize(tokens, revocations, token).await {
        Ok(authorized) => (authorized.caller, false),
        // The repeat of a logout (or session deletion) that an outage cut short: its token is
        // revoked by then, and the function finishes the revocation (or answers 401 if there
        // is none to finish).
        Err(AuthError::Revoked(caller))
            if REPEATABLE_REVOCATION_ROUTES.contains(&route) && rules.is_service_default() =>
        {
            (caller, true)
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
    let permission = rules.allows(route, caller.role, caller.amr);
    if permission != Permission::Allowed {
        let reason = match permission {
            Permission::SecondFactorMissing => "second_factor",
            _ => "role",
        };
        log_decision(Some(&caller), route, request_id, Decision::Deny(reason));
        // A revoked token names no one who may still act: nothing to put in a trail.
        if !revoked {
            store_refusal(
                audit,
                refusal_event(rules, &caller, route, permission, event),
            )
            .await;
        }
        return Ok(deny());
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

/// The audit event of a valid token refused by the route's rules (see the module docs).
fn refusal_event(
    rules: &RouteRules,
    caller: &Caller,
    route: &str,
    permission: Permission,
    event: &ApiGatewayV2CustomAuthorizerV2Request,
) -> AuditEvent {
    let second_factor = permission == Permission::SecondFactorMissing;
    let (kind, reason) = match (rules.is_service_admin_route(route), second_factor) {
        (true, false) => (AuditKind::AdminAccessDenied, AuditReason::NotAdmin),
        (true, true) => (
            AuditKind::AdminAccessDenied,
            AuditReason::SecondFactorMissing,
        ),
        (false, false) => (AuditKind::RouteAccessDenied, AuditReason::RoleRefused),
        (false, true) => (
            AuditKind::RouteAccessDenied,
            AuditReason::SecondFactorMissing,
        ),
    };
    let ip = event
        .request_context
        .http
        .source_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse().ok());
    let mut audit = AuditEvent::failure(kind, reason)
        .user(caller.user_id)
        .session(caller.session_id)
        .ip(ip);
    // The route key: a method and a template, never a concrete path.
    if !route.is_empty() {
        audit = audit.operation(route.to_owned());
    }
    audit
}

/// Records `event` and waits until it is stored, at most [`AUDIT_DEADLINE`]; whatever
/// happens to the write, it returns (the deny stands).
async fn store_refusal(audit: &AuditSink, event: AuditEvent) {
    event.record(audit);
    // The writer logs a write it gives up; a deadline passed is logged here.
    if tokio::time::timeout(AUDIT_DEADLINE, audit.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            target: "authorizer",
            "audit event not stored by the deadline; denied anyway (the event is in the log)"
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amr, Role};

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
    fn a_refusal_is_an_admin_access_denied_on_this_services_admin_routes_only() {
        let caller = Caller {
            user_id: uuid::Uuid::now_v7(),
            role: Role::User,
            session_id: uuid::Uuid::now_v7(),
            amr: Amr::PASSWORD,
        };
        let event_of = |route: &str| -> ApiGatewayV2CustomAuthorizerV2Request {
            serde_json::from_value(json!({
                "version": "2.0",
                "type": "REQUEST",
                "routeKey": route,
                "requestContext": {"http": {"method": "GET", "path": "/x", "sourceIp": "198.51.100.7"}}
            }))
            .expect("event")
        };
        let service = RouteRules::service_default(true).expect("built-in rules are valid");
        let other = RouteRules::from_json(
            r#"{"POST /v1/payments": {"roles": ["user", "admin"], "amr": ["otp"]}}"#,
        )
        .expect("rules");
        for (rules, route, permission, kind, reason) in [
            (
                &service,
                "GET /v1/admin/users/{id}",
                Permission::RoleRefused,
                AuditKind::AdminAccessDenied,
                AuditReason::NotAdmin,
            ),
            (
                &service,
                "ANY /v1/admin/{proxy+}",
                Permission::SecondFactorMissing,
                AuditKind::AdminAccessDenied,
                AuditReason::SecondFactorMissing,
            ),
            (
                &service,
                "GET /v1/reports",
                Permission::RoleRefused,
                AuditKind::RouteAccessDenied,
                AuditReason::RoleRefused,
            ),
            (
                &other,
                "POST /v1/payments",
                Permission::SecondFactorMissing,
                AuditKind::RouteAccessDenied,
                AuditReason::SecondFactorMissing,
            ),
            (
                &other,
                "GET /v1/admin/users",
                Permission::RoleRefused,
                AuditKind::RouteAccessDenied,
                AuditReason::RoleRefused,
            ),
        ] {
            let event = refusal_event(rules, &caller, route, permission, &event_of(route));
            assert_eq!(event.kind, kind, "{route}");
            assert_eq!(event.reason, Some(reason), "{route}");
            assert_eq!(event.outcome, crate::audit::Outcome::Failure, "{route}");
            assert_eq!(event.changes.as_deref(), Some(route), "the operation");
            assert_eq!(event.user_id, Some(caller.user_id));
            assert_eq!(event.session_id, Some(caller.session_id));
            assert_eq!(event.ip, Some("198.51.100.7".parse().expect("ip")));
        }
    }
}
