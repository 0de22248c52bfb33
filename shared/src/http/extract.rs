//! Request extractors that answer in the contract's terms: strict JSON bodies, the
//! authenticated caller, and the client IP.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use axum::extract::FromRef;

use super::ApiError;
use super::state::{AdminPolicy, ClientIpSource};
use crate::audit::{AuditEvent, AuditKind, AuditReason, AuditSink};
use crate::auth::{AuthError, Authenticator, Authorized, Caller};

/// A JSON body, strictly: `application/json` (or `+json`) content type or 415, over 64 KiB
/// 413, and anything serde refuses (syntax, unknown field, wrong type, missing field) 400
/// `malformed_request` with serde's explanation as the detail.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// A JSON body that may also be left out entirely (no body at all means `None`).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(request.headers());
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedRequest("the request body could not be read".into())
            }
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body of the API is a JSON object. serde would also fill a struct from an
    // array, field by field in declaration order (`[null, null]` is a valid
    // `{"name": null, "email": null}` to it), so anything else is refused before it gets there.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|&b| b != b'{') {
        return Err(ApiError::MalformedRequest(
            "invalid JSON body: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde's message names the field and what was expected; it never echoes values
        // of string fields, so no password can end up in it.
        ApiError::MalformedRequest(format!("invalid JSON body: {e}"))
    })
}

/// Tells a field that is present (even as `null`) from one that is absent.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The authenticated caller: a valid, unrevoked bearer token, or 401.
///
/// It runs [`auth::authorize`] on the `Authorization` header, behind API Gateway's Lambda
/// authorizer too: a function never takes its caller from the authorizer's context (see
/// [`crate::lambda`]).
///
/// It is [`Authorized`] itself: the caller, and its profile version read with the
/// revocation check (for `GET /me`).
pub type Authenticated = Authorized;

impl<S> FromRequestParts<S> for Authorized
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Boxed: awaiting the other extractor's future inline nests it deep enough to
        // overflow the compiler's layout query on a clean build.
        match Box::pin(LogoutCaller::from_request_parts(parts, state)).await? {
            LogoutCaller::Live(authorized) => Ok(authorized),
            LogoutCaller::CutOff(_) => Err(ApiError::Unauthorized),
        }
    }
}

/// The caller of a logout or a session deletion (and, through [`Authorized`], of every
/// protected route): a live token, or one that a revocation cut off, which those two alone
/// accept as the repeat of a revocation that an outage cut short (the service decides
/// whether there is one to finish; see [`crate::auth::revocation`]).
#[derive(Debug, Clone, Copy)]
pub enum LogoutCaller {
    /// A valid, unrevoked token.
    Live(Authorized),
    /// An authentic, unexpired token that is revoked.
    CutOff(Caller),
}

impl<S> FromRequestParts<S> for LogoutCaller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        match Authenticator::from_ref(state).authorize(token).await {
            Ok(authorized) => Ok(LogoutCaller::Live(authorized)),
            Err(AuthError::Revoked(caller)) => Ok(LogoutCaller::CutOff(caller)),
            Err(AuthError::Unauthorized(_)) => Err(ApiError::Unauthorized),
            Err(AuthError::Unavailable(e)) => Err(ApiError::Unavailable(e)),
        }
    }
}

/// An authenticated caller with the admin role: 401 without a valid token, 403 with a
/// valid token of another role, and with `ADMIN_REQUIRES_MFA` also 403 for an admin whose
/// session passed no second factor. A 403 goes into the caller's audit trail
/// (`admin_access_denied`: who, the refused operation, the IP, and why): someone with an
/// account is probing the admin routes, or an admin's password alone is being used.
#[derive(Debug, Clone, Copy)]
pub struct AdminCaller(pub Caller);

impl<S> FromRequestParts<S> for AdminCaller
where
    Authenticator: FromRef<S>,
    AuditSink: FromRef<S>,
    ClientIpSource: FromRef<S>,
    AdminPolicy: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Authenticated { caller, .. } = Authenticated::from_request_parts(parts, state).await?;
        let (reason, refusal) = if caller.role != crate::domain::Role::Admin {
            (AuditReason::NotAdmin, ApiError::Forbidden)
        } else if AdminPolicy::from_ref(state).requires_second_factor
            && !caller.amr.has_second_factor()
        {
            (
                AuditReason::SecondFactorMissing,
                ApiError::SecondFactorNeeded,
            )
        } else {
            return Ok(AdminCaller(caller));
        };
        let Ok(ip) = ClientIp::from_request_parts(parts, state).await;
        // The route's template, not the path: the operation, never an id from the URL.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        AuditEvent::failure(AuditKind::AdminAccessDenied, reason)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip.0)
            .operation(format!("{} {route}", parts.method))
            .record(&AuditSink::from_ref(state));
        Err(refusal)
    }
}

pub use crate::auth::bearer_token;

/// The client's IP: the TCP peer, or with `TRUST_FORWARDED_FOR` the last address in
/// `X-Forwarded-For` (the one our trusted proxy appended; earlier ones are the client's
/// own claims). Behind API Gateway, the source IP it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientIp
where
    ClientIpSource: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        if ClientIpSource::from_ref(state).trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next_back())
                .and_then(|s| s.trim().parse::<IpAddr>().ok());
            if forwarded.is_some() {
                return Ok(ClientIp(forwarded));
            }
        }
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// The request's `User-Agent` header, as text (bytes that are not UTF-8 replaced); `None`
/// without one. Behind API Gateway the header arrives like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(UserAgent(parts.headers.get(header::USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        })))
    }
}

impl UserAgent {
    /// The header's text, if any.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), expected, "{value}");
        }
    }
}
