//! The Lambda authorizer: the simple responses it gives API Gateway's requests.

use serde_json::{Value, json};
use user_service_tests::jwt::claims_of;
use user_service_tests::moto::{create_audit_table, dynamodb, moto_endpoint};
use user_service_tests::runtime_api::{InvokeError, LambdaProcess, authorizer_event};
use user_service_tests::test_app::unique_admin_email;
use user_service_tests::{TestApp, TestUser, expect_status, strong_password};

use super::runtime::wait_until_frozen;
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

/// Asserts that the trail of `user`, read by `admin` through the admin audit route, holds
/// exactly one `admin_access_denied` of `operation` (reason `not_admin`, the user's session,
/// the event's source IP). Read once the authorizer is frozen: stored before the invocation
/// ended, or never.
async fn assert_refusal_stored(
    app: &TestApp,
    admin: &TestUser,
    user: &TestUser,
    operation: &str,
    authorizer: &LambdaProcess,
) {
    wait_until_frozen(authorizer.pid()).await;
    let refusals = app
        .audit_events_of(&admin.tokens.access_token, &user.id, "admin_access_denied")
        .await;
    assert_eq!(
        refusals.len(),
        1,
        "the refusal is stored before the invocation ends: {refusals:#?}\nfunction output:\n{}",
        authorizer.output().join("\n")
    );
    let event = &refusals[0];
    assert_eq!(event["changes"], json!(operation), "the operation: {event}");
    assert_eq!(event["reason"], json!("not_admin"), "{event}");
    assert_eq!(event["outcome"], json!("failure"), "{event}");
    assert_eq!(
        event["session_id"],
        claims_of(&user.tokens.access_token)["sid"],
        "{event}"
    );
    assert_eq!(event["ip"], json!("203.0.113.7"), "the sourceIp: {event}");
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
    // The refusal is in the user's trail, as the admin audit route shows it.
    assert_refusal_stored(&app, &admin, &user, admin_route.0, &authorizer).await;
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
    // A revoked token's deny, like the no-token and garbage ones, records nothing.
    assert_denied(
        &decide(&authorizer, admin_route.0, &admin_route.1, Some(token)).await,
        "revoked on admin",
    );
    wait_until_frozen(authorizer.pid()).await;
    assert_eq!(
        app.audit_events_of(&admin.tokens.access_token, &user.id, "admin_access_denied")
            .await
            .len(),
        1,
        "only the valid token's refusal is recorded"
    );
}

/// On AWS the trail is in DynamoDB (`AUDIT_TABLE`): the authorizer stores the refusal there
/// before its invocation ends, and the admin audit route serves it.
#[tokio::test]
async fn the_authorizer_stores_a_refusal_in_dynamodb_before_the_freeze() {
    let Some(endpoint) = moto_endpoint("the authorizer's audit write to DynamoDB") else {
        return;
    };
    let client = dynamodb(&endpoint);
    let table = format!("authorizer-audit-{}", uuid::Uuid::new_v4().simple());
    create_audit_table(&client, &table).await;
    let (email, password) = (unique_admin_email(), strong_password());
    let app = TestApp::builder()
        .bootstrap_admin(&email, &password)
        .env("AUDIT_TABLE", &table)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .spawn()
        .await;
    let admin = app.login_user(&email, &password).await;
    let user = app.new_user().await;
    // The table is in moto's us-east-1 (the emulator's functions default to eu-west-1).
    let authorizer = LambdaProcess::builder("authorizer")
        .deployment(&app)
        .env("AWS_REGION", "us-east-1")
        .spawn()
        .await
        .expect("start the authorizer");
    let route = "DELETE /v1/admin/users/{id}";
    let path = format!("/v1/admin/users/{}", admin.id);
    assert_denied(
        &decide(&authorizer, route, &path, Some(&user.tokens.access_token)).await,
        "user on admin",
    );
    assert_refusal_stored(&app, &admin, &user, route, &authorizer).await;
    drop(authorizer);
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("deleting table {table}: {e:?}"));
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
