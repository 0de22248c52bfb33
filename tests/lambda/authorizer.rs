//! The Lambda authorizer: the simple responses it gives API Gateway's requests.

use serde_json::{Value, json};
use user_service_tests::jwt::claims_of;
use user_service_tests::runtime_api::{InvokeError, LambdaProcess, authorizer_event};
use user_service_tests::{TestApp, expect_status};

use super::start;

/// The authorizer's answer for `token` on `route_key` (`"GET /v1/users/me"`) at `path`.
async fn decide(
    authorizer: &LambdaProcess,
    route_key: &str,
    path: &str,
    token: Option<&str>,
) -> Value {
    let authorization = token.map(|t| format!("Bearer {t}"));
    authorizer
        .invoke(&authorizer_event(route_key, path, authorization.as_deref()))
        .await
}

fn assert_denied(response: &Value, what: &str) {
    assert_eq!(response["isAuthorized"], json!(false), "{what}: {response}");
    assert_eq!(
        response["context"],
        json!({}),
        "{what}: a deny carries no caller"
    );
}

#[tokio::test]
async fn authorizer() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let (authorizer, user) = tokio::join!(start("authorizer", &app), app.new_user());
    let token = &user.tokens.access_token;

    let allow = decide(&authorizer, "GET /v1/users/me", "/v1/users/me", Some(token)).await;
    assert_eq!(allow["isAuthorized"], json!(true), "{allow}");
    let claims = claims_of(token);
    let context = &allow["context"];
    for field in ["sub", "sid", "jti"] {
        assert_eq!(context[field], claims[field], "{field}: {allow}");
    }
    assert_eq!(context["role"], json!("user"), "{allow}");
    assert_eq!(
        context["iat_ms"].as_u64().map(|ms| ms / 1000),
        claims["iat"].as_u64(),
        "iat_ms is the issue instant: {allow}"
    );
    assert!(
        !allow.to_string().contains(token.as_str()),
        "the token is not echoed"
    );

    // The route's roles: a user is denied on admin routes, the admin allowed.
    let admin_route = (
        "GET /v1/admin/users/{id}",
        format!("/v1/admin/users/{}", user.id),
    );
    assert_denied(
        &decide(&authorizer, admin_route.0, &admin_route.1, Some(token)).await,
        "user on admin",
    );
    let admin_allow = decide(
        &authorizer,
        admin_route.0,
        &admin_route.1,
        Some(&admin.tokens.access_token),
    )
    .await;
    assert_eq!(admin_allow["isAuthorized"], json!(true), "{admin_allow}");
    assert_eq!(
        admin_allow["context"]["role"],
        json!("admin"),
        "{admin_allow}"
    );

    assert_denied(
        &decide(&authorizer, "GET /v1/users/me", "/v1/users/me", None).await,
        "no token",
    );
    assert_denied(
        &decide(
            &authorizer,
            "GET /v1/users/me",
            "/v1/users/me",
            Some("not-a-jwt"),
        )
        .await,
        "garbage",
    );

    // Revoked at once.
    expect_status(app.logout(token, None).await, 204).await;
    assert_denied(
        &decide(&authorizer, "GET /v1/users/me", "/v1/users/me", Some(token)).await,
        "after logout",
    );
}

#[tokio::test]
async fn an_outage_fails_the_authorizer_invocation() {
    let app = TestApp::builder()
        .postgres_via_proxy()
        .redis_via_proxy()
        .spawn()
        .await;
    let (authorizer, user) = tokio::join!(start("authorizer", &app), app.new_user());
    let bearer = format!("Bearer {}", user.tokens.access_token);
    let event = authorizer_event("GET /v1/users/me", "/v1/users/me", Some(&bearer));
    assert_eq!(authorizer.invoke(&event).await["isAuthorized"], json!(true));

    // Neither Redis nor Postgres can tell whether the token was revoked: the invocation
    // fails (API Gateway answers 500 and caches nothing), it neither allows nor denies.
    app.redis_proxy().cut();
    app.postgres_proxy().cut();
    let started = std::time::Instant::now();
    match authorizer.try_invoke(&event).await {
        Err(InvokeError::Function { error_type, body }) => {
            assert!(!body.contains(&user.tokens.access_token), "{body}");
            assert!(!error_type.is_empty());
        }
        other => panic!(
            "{}",
            authorizer.failure(&format!("expected a function error, got {other:?}"), &event)
        ),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    app.redis_proxy().restore();
    app.postgres_proxy().restore();
    // The pools reconnect on their own.
    let recovered = user_service_tests::eventually(std::time::Duration::from_secs(10), || async {
        matches!(authorizer.try_invoke(&event).await, Ok(r) if r["isAuthorized"] == json!(true))
    })
    .await;
    assert!(
        recovered,
        "{}",
        authorizer.failure(&"no allow after the outage", &event)
    );
}
