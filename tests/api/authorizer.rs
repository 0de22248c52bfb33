//! The API Gateway Lambda authorizer (HTTP API, payload 2.0, simple responses), fed the
//! events API Gateway sends, and a protected function fed the request API Gateway passes on
//! after an allow.
//!
//! The authorizer runs in-process (`authorize_request`) on a state built from the test app's
//! own configuration, so it shares the app's database, Redis prefix and key file: tokens
//! come from real logins, and logouts go through HTTP.

use std::time::Duration;

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use axum::body::to_bytes;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use user_service::AppState;
use user_service::auth::authorizer::authorize_request;
use user_service::auth::rules::RouteRules;
use user_service::http::routes::{get_me, logout};
use user_service_tests::jwt::{SigningKey, b64url, claims_of, decode_unverified, now};
use user_service_tests::runtime_api::{HttpEvent, authorizer_event};
use user_service_tests::{TestApp, TestUser, expect_status};
use uuid::Uuid;

fn parse_event(event: &Value) -> ApiGatewayV2CustomAuthorizerV2Request {
    let parsed: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_value(event.clone())
        .unwrap_or_else(|e| panic!("not an authorizer v2 event ({e}): {event}"));
    assert_eq!(parsed.version.as_deref(), Some("2.0"));
    assert_eq!(parsed.type_.as_deref(), Some("REQUEST"));
    parsed
}

/// The test app's deployment, seen by an authorizer function.
struct Authorizer {
    state: AppState,
    rules: RouteRules,
}

impl Authorizer {
    async fn of(app: &TestApp) -> Self {
        let state = user_service::app::state(&app.config)
            .await
            .expect("authorizer state from the app's configuration");
        let rules = RouteRules::from_config(&app.config).expect("route rules");
        Self { state, rules }
    }

    /// The simple response, as the JSON API Gateway receives.
    async fn decide(&self, event: &Value) -> Value {
        let response = self.decide_raw(event).await.unwrap_or_else(|e| {
            panic!("the authorizer failed ({e}) on {event}");
        });
        serde_json::to_value(&response).expect("serialize the response")
    }

    async fn decide_raw(
        &self,
        event: &Value,
    ) -> Result<
        ApiGatewayV2CustomAuthorizerSimpleResponse,
        user_service::auth::authorizer::AuthorizerUnavailable,
    > {
        authorize_request(
            self.state.authenticator.tokens(),
            self.state.authenticator.revocations(),
            &self.rules,
            &self.state.audit,
            &parse_event(event),
        )
        .await
    }

    async fn decide_for(&self, route_key: &str, path: &str, token: &str) -> Value {
        self.decide(&authorizer_event(
            route_key,
            path,
            Some(&format!("Bearer {token}")),
        ))
        .await
    }
}

fn assert_denied(response: &Value, what: &str) {
    assert_eq!(
        response["isAuthorized"],
        json!(false),
        "{what}: expected a deny, got {response}"
    );
    assert_eq!(
        response["context"],
        json!({}),
        "{what}: a deny carries no caller"
    );
}

/// Asserts an allow whose context is exactly the caller of `token`; returns the context.
fn assert_allowed_as(response: &Value, token: &str, role: &str, what: &str) -> Value {
    assert_eq!(
        response["isAuthorized"],
        json!(true),
        "{what}: expected an allow, got {response}"
    );
    let claims = claims_of(token);
    let context = response["context"].clone();
    assert_eq!(context["sub"], claims["sub"], "{what}: {response}");
    assert_eq!(context["sid"], claims["sid"], "{what}: {response}");
    assert_eq!(context["jti"], claims["jti"], "{what}: {response}");
    assert_eq!(context["role"], json!(role), "{what}: {response}");
    let iat_ms = context["iat_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: iat_ms must be a number: {response}"));
    assert_eq!(
        iat_ms / 1000,
        claims["iat"].as_u64().expect("iat"),
        "{what}: iat_ms is the issue instant in ms"
    );
    assert_eq!(
        context["amr"],
        json!(
            claims["amr"]
                .as_array()
                .expect("amr")
                .iter()
                .map(|m| m.as_str().expect("method"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "{what}: amr is the token's, space-separated: {response}"
    );
    assert_eq!(
        context.as_object().map(|o| o.len()),
        Some(6),
        "{what}: the context holds sub, role, sid, jti, iat_ms and amr only: {response}"
    );
    assert!(
        !response.to_string().contains(token),
        "the token must not be echoed"
    );
    context
}

async fn make_admin(app: &TestApp, user: &TestUser) -> TestUser {
    let id: Uuid = user.id.parse().expect("user id");
    let updated = app
        .database()
        .await
        .execute("UPDATE users SET role = 'admin' WHERE id = $1", &[&id])
        .await
        .expect("make the user an admin");
    assert_eq!(updated, 1);
    let tokens = app.login_ok(&user.email, &user.password).await;
    TestUser {
        tokens,
        ..user.clone()
    }
}

#[tokio::test]
async fn a_user_token_is_allowed_on_its_own_routes_with_the_caller_in_the_context() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let token = &user.tokens.access_token;
    for (route, path) in [
        ("GET /v1/users/me", "/v1/users/me"),
        ("PATCH /v1/users/me", "/v1/users/me"),
        ("PUT /v1/users/me/password", "/v1/users/me/password"),
        ("POST /v1/auth/logout", "/v1/auth/logout"),
    ] {
        let response = authorizer.decide_for(route, path, token).await;
        let context = assert_allowed_as(&response, token, "user", route);
        assert_eq!(context["sub"], json!(user.id));
    }
}

#[tokio::test]
async fn the_authorization_header_is_used_when_the_identity_source_is_not() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let bearer = format!("Bearer {}", user.tokens.access_token);
    let mut event = authorizer_event("GET /v1/users/me", "/v1/users/me", Some(&bearer));
    event
        .as_object_mut()
        .expect("object")
        .remove("identitySource");
    let response = authorizer.decide(&event).await;
    assert_allowed_as(&response, &user.tokens.access_token, "user", "header only");
}

#[tokio::test]
async fn a_request_without_a_token_is_denied() {
    let app = TestApp::spawn().await;
    let authorizer = Authorizer::of(&app).await;
    let response = authorizer
        .decide(&authorizer_event("GET /v1/users/me", "/v1/users/me", None))
        .await;
    assert_denied(&response, "no token");
    for authorization in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "not-a-jwt"] {
        let response = authorizer
            .decide(&authorizer_event(
                "GET /v1/users/me",
                "/v1/users/me",
                Some(authorization),
            ))
            .await;
        assert_denied(&response, authorization);
    }
}

#[tokio::test]
async fn a_tampered_token_is_denied() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let token = &user.tokens.access_token;
    // The payload changed to claim admin, the signature kept: it no longer matches.
    let (header, mut claims) = decode_unverified(token);
    claims["role"] = json!("admin");
    let parts: Vec<&str> = token.split('.').collect();
    let promoted = format!(
        "{}.{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string()),
        parts[2]
    );
    // One character of the signature changed.
    let mut signature: Vec<char> = parts[2].chars().collect();
    signature[10] = if signature[10] == 'A' { 'B' } else { 'A' };
    let bad_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        signature.into_iter().collect::<String>()
    );
    // Signed by a key the service never published, under the service's own kid.
    let (stranger, _) = SigningKey::generate_es256();
    let kid = user_service_tests::jwt::kid_of(token);
    let foreign = stranger.sign(Some(&kid), &claims_of(token));
    for (what, forged) in [
        ("payload changed", promoted.as_str()),
        ("signature changed", bad_signature.as_str()),
        ("foreign key", foreign.as_str()),
    ] {
        for route in ["GET /v1/users/me", "GET /v1/admin/users"] {
            let response = authorizer.decide_for(route, "/v1/users/me", forged).await;
            assert_denied(&response, what);
        }
    }
}

#[tokio::test]
async fn an_expired_token_is_denied() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let key = SigningKey::from_key_file(app.key_file(), "ES256");
    let token = &user.tokens.access_token;
    // Control: the same token re-signed unchanged is allowed, so the deny below is the
    // expiry and not the forging.
    let resigned = key.resign(token, |_| {});
    let response = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", &resigned)
        .await;
    assert_allowed_as(&response, &resigned, "user", "re-signed control");
    let t = now();
    let expired = key.resign(token, |c| {
        c["iat"] = json!(t - 1000);
        c["exp"] = json!(t - 60);
    });
    let response = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", &expired)
        .await;
    assert_denied(&response, "expired");
}

#[tokio::test]
async fn a_token_revoked_by_logout_is_denied_at_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other_session = app.login_ok(&user.email, &user.password).await;
    let authorizer = Authorizer::of(&app).await;
    let token = &user.tokens.access_token;
    let response = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", token)
        .await;
    assert_allowed_as(&response, token, "user", "before logout");

    expect_status(app.logout(token, None).await, 204).await;
    let response = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", token)
        .await;
    assert_denied(&response, "after logout");
    // Only that session ended.
    let response = authorizer
        .decide_for(
            "GET /v1/users/me",
            "/v1/users/me",
            &other_session.access_token,
        )
        .await;
    assert_allowed_as(&response, &other_session.access_token, "user", "other");

    // Logout-all ends the rest.
    expect_status(
        app.logout(&other_session.access_token, Some(true)).await,
        204,
    )
    .await;
    let response = authorizer
        .decide_for(
            "GET /v1/users/me",
            "/v1/users/me",
            &other_session.access_token,
        )
        .await;
    assert_denied(&response, "after logout-all");
}

/// The refusals of valid tokens in the trail of `user`, as the admin reads them: the
/// `admin_access_denied` and `route_access_denied` events, newest first.
async fn refusals_in_trail(app: &TestApp, admin: &TestUser, user: &TestUser) -> Vec<Value> {
    let mut events = app.audit_trail(&admin.tokens.access_token, &user.id).await;
    events.retain(|e| e["type"] == "admin_access_denied" || e["type"] == "route_access_denied");
    events
}

#[tokio::test]
async fn a_user_token_is_denied_on_admin_routes() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let id = Uuid::new_v4();
    let routes = [
        ("GET /v1/admin/users", "/v1/admin/users".to_owned()),
        ("POST /v1/admin/users", "/v1/admin/users".to_owned()),
        ("GET /v1/admin/users/{id}", format!("/v1/admin/users/{id}")),
        (
            "PATCH /v1/admin/users/{id}",
            format!("/v1/admin/users/{id}"),
        ),
        (
            "DELETE /v1/admin/users/{id}",
            format!("/v1/admin/users/{id}"),
        ),
        (
            "GET /v1/admin/users/{id}/audit",
            format!("/v1/admin/users/{id}/audit"),
        ),
        ("ANY /v1/admin/{proxy+}", "/v1/admin/anything".to_owned()),
    ];
    for (route, path) in &routes {
        let response = authorizer
            .decide_for(route, path, &user.tokens.access_token)
            .await;
        assert_denied(&response, route);
    }
    // A route no rule names is denied too (fail closed).
    let response = authorizer
        .decide_for("GET /v1/reports", "/v1/reports", &user.tokens.access_token)
        .await;
    assert_denied(&response, "unlisted route");

    // Each refusal is in the user's trail as the admin audit route shows it, stored by the
    // time the authorizer answered (no waiting here: a Lambda is frozen once it answers).
    let refusals = refusals_in_trail(&app, &admin, &user).await;
    assert_eq!(
        refusals.len(),
        routes.len() + 1,
        "one event per refusal: {refusals:#?}"
    );
    let sid = claims_of(&user.tokens.access_token)["sid"].clone();
    let operations = |kind: &str| {
        let mut operations: Vec<String> = refusals
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["changes"].as_str().expect("the operation").to_owned())
            .collect();
        operations.sort();
        operations
    };
    let mut expected: Vec<String> = routes.iter().map(|(r, _)| r.to_string()).collect();
    expected.sort();
    assert_eq!(operations("admin_access_denied"), expected, "{refusals:#?}");
    // Not one of this service's admin routes: a route refusal, not an admin one.
    assert_eq!(operations("route_access_denied"), ["GET /v1/reports"]);
    for event in &refusals {
        let reason = if event["type"] == "admin_access_denied" {
            "not_admin"
        } else {
            "role_refused"
        };
        assert_eq!(event["reason"], json!(reason), "{event}");
        assert_eq!(event["outcome"], json!("failure"), "{event}");
        assert_eq!(event["session_id"], sid, "{event}");
        assert_eq!(
            event["ip"],
            json!("203.0.113.7"),
            "the event's sourceIp: {event}"
        );
        assert_eq!(event["actor_id"], Value::Null, "{event}");
    }

    // A token the authorizer cannot trust names no one: its deny records nothing, even if
    // its claims name the user.
    let (stranger, _) = SigningKey::generate_es256();
    let token = &user.tokens.access_token;
    let foreign = stranger.sign(
        Some(&user_service_tests::jwt::kid_of(token)),
        &claims_of(token),
    );
    let key = SigningKey::from_key_file(app.key_file(), "ES256");
    let t = now();
    let expired = key.resign(token, |c| {
        c["iat"] = json!(t - 1000);
        c["exp"] = json!(t - 60);
    });
    let revoked = app.login_ok(&user.email, &user.password).await.access_token;
    expect_status(app.logout(&revoked, None).await, 204).await;
    for (what, token) in [
        ("foreign key", foreign.as_str()),
        ("expired", expired.as_str()),
        ("revoked", revoked.as_str()),
        ("garbage", "not-a-jwt"),
    ] {
        let response = authorizer
            .decide_for("GET /v1/admin/users", "/v1/admin/users", token)
            .await;
        assert_denied(&response, what);
    }
    assert_eq!(
        refusals_in_trail(&app, &admin, &user).await.len(),
        routes.len() + 1,
        "a denied invalid token records nothing"
    );
}

#[tokio::test]
async fn an_admin_token_is_allowed_on_admin_and_user_routes() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let admin = make_admin(&app, &user).await;
    let authorizer = Authorizer::of(&app).await;
    let token = &admin.tokens.access_token;
    assert_eq!(claims_of(token)["role"], json!("admin"));
    let id = Uuid::new_v4();
    for (route, path) in [
        ("GET /v1/admin/users", "/v1/admin/users".to_owned()),
        (
            "DELETE /v1/admin/users/{id}",
            format!("/v1/admin/users/{id}"),
        ),
        ("GET /v1/users/me", "/v1/users/me".to_owned()),
    ] {
        let response = authorizer.decide_for(route, &path, token).await;
        assert_allowed_as(&response, token, "admin", route);
    }
}

#[tokio::test]
async fn route_rules_come_from_the_configuration() {
    let rules = json!({
        "GET /v1/reports/{id}": ["admin"],
        "ANY /v1/reports/{id}/comments": ["user", "admin"],
        "ANY /v1/public/{proxy+}": ["user", "admin"]
    });
    let app = TestApp::builder()
        .env("AUTHORIZER_ROUTE_RULES", rules)
        .spawn()
        .await;
    let user = app.new_user().await;
    let admin = make_admin(&app, &app.new_user().await).await;
    let authorizer = Authorizer::of(&app).await;
    let cases = [
        ("GET /v1/reports/{id}", "/v1/reports/7", false, true),
        (
            "POST /v1/reports/{id}/comments",
            "/v1/reports/7/comments",
            true,
            true,
        ),
        ("GET /v1/public/{proxy+}", "/v1/public/a/b", true, true),
        // Not in these rules, and no "$default": denied, even the service's own routes.
        ("GET /v1/users/me", "/v1/users/me", false, false),
        ("DELETE /v1/reports/{id}", "/v1/reports/7", false, false),
    ];
    for (route, path, user_allowed, admin_allowed) in cases {
        for (who, token, role, allowed) in [
            ("user", &user.tokens.access_token, "user", user_allowed),
            ("admin", &admin.tokens.access_token, "admin", admin_allowed),
        ] {
            let response = authorizer.decide_for(route, path, token).await;
            let what = format!("{who} on {route}");
            if allowed {
                assert_allowed_as(&response, token, role, &what);
            } else {
                assert_denied(&response, &what);
            }
        }
    }
}

#[tokio::test]
async fn an_outage_fails_the_invocation_instead_of_answering() {
    let app = TestApp::builder()
        .postgres_via_proxy()
        .redis_via_proxy()
        .spawn()
        .await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let event = authorizer_event(
        "GET /v1/users/me",
        "/v1/users/me",
        Some(&format!("Bearer {}", user.tokens.access_token)),
    );
    assert_eq!(authorizer.decide(&event).await["isAuthorized"], json!(true));

    app.redis_proxy().cut();
    app.postgres_proxy().cut();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), authorizer.decide_raw(&event))
        .await
        .expect("the authorizer must answer within the dependency timeouts");
    assert!(
        outcome.is_err(),
        "with Redis and Postgres down the authorizer must fail, not answer: {outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    app.redis_proxy().restore();
    app.postgres_proxy().restore();
}

// ----- a protected function behind the authorizer -----

/// An HTTP API (payload 2.0) request as API Gateway passes it to the function after the
/// authorizer allowed it: `context` is the authorizer's context.
fn function_event(path: &str, authorization: Option<&str>, context: Option<&Value>) -> String {
    let mut event = HttpEvent::get(path).source_ip("203.0.113.7");
    if let Some(authorization) = authorization {
        event = event.header("authorization", authorization);
    }
    if let Some(context) = context {
        event = event.authorizer_context(context);
    }
    event.to_json().to_string()
}

/// Serves `event` with the get-me function as it runs on Lambda; returns status and body.
async fn invoke_get_me(state: &AppState, event: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(event)
        .unwrap_or_else(|e| panic!("not an HTTP API event ({e}): {event}"));
    let app = user_service::lambda::function_app(get_me::router(), state.clone());
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("response body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_function_behind_the_authorizer_takes_its_caller_from_the_token_not_the_context() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let token = &user.tokens.access_token;
    let bearer = format!("Bearer {token}");
    let allow = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", token)
        .await;
    let context = assert_allowed_as(&allow, token, "user", "allow");

    // As API Gateway passes it: the allow's context and the forwarded header.
    let (status, body) = invoke_get_me(
        &authorizer.state,
        &function_event("/v1/users/me", Some(&bearer), Some(&context)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(user.id));
    assert_eq!(body["email"], json!(user.email));

    // Invoked directly with a context and no token: even a genuine context opens nothing.
    let (status, body) = invoke_get_me(
        &authorizer.state,
        &function_event("/v1/users/me", None, Some(&context)),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")));

    // A context forged to name another user as an admin, beside the user's own token: the
    // token decides.
    let mut forged = context.clone();
    forged["sub"] = json!(other.id);
    forged["role"] = json!("admin");
    forged["sid"] = json!(uuid::Uuid::new_v4().to_string());
    let (status, body) = invoke_get_me(
        &authorizer.state,
        &function_event("/v1/users/me", Some(&bearer), Some(&forged)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].clone(), body["role"].clone()),
        (json!(user.id), json!("user"))
    );

    // Without a context (no authorizer on the route) the same: the token alone decides.
    let (status, body) = invoke_get_me(
        &authorizer.state,
        &function_event("/v1/users/me", Some(&bearer), None),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(user.id));
    let (status, body) = invoke_get_me(
        &authorizer.state,
        &function_event("/v1/users/me", None, None),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")));
}

#[tokio::test]
async fn a_function_rechecks_revocation_behind_a_cached_allow() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let token = &user.tokens.access_token;
    let allow = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", token)
        .await;
    let context = assert_allowed_as(&allow, token, "user", "allow");
    let event = function_event(
        "/v1/users/me",
        Some(&format!("Bearer {token}")),
        Some(&context),
    );
    assert_eq!(invoke_get_me(&authorizer.state, &event).await.0, 200);

    // API Gateway may replay this allow from its cache after a logout: the function must
    // still refuse it.
    expect_status(app.logout(token, None).await, 204).await;
    let (status, body) = invoke_get_me(&authorizer.state, &event).await;
    assert_eq!(
        (status, body["code"].clone()),
        (401, json!("unauthorized")),
        "{body}"
    );
}

/// Serves `event` with the logout function as it runs on Lambda; returns the status.
async fn invoke_logout(state: &AppState, event: &str) -> u16 {
    let request = lambda_http::request::from_str(event)
        .unwrap_or_else(|e| panic!("not an HTTP API event ({e}): {event}"));
    let app = user_service::lambda::function_app(logout::router(), state.clone());
    app.oneshot(request)
        .await
        .expect("infallible")
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_the_authorizer_a_logout_cut_short_is_finished_by_its_repeat() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let authorizer = Authorizer::of(&app).await;
    let token = &user.tokens.access_token;
    // The commit of the session's revocation fails after the Redis marker is written.
    let db = app.database().await;
    db.batch_execute(
        "CREATE FUNCTION test_injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = 'query_canceled'; END $$;
         CREATE CONSTRAINT TRIGGER test_fault AFTER UPDATE OF revoked_at ON sessions
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_injected_fault();",
    )
    .await
    .expect("install the fault");
    expect_status(app.logout(token, None).await, 503).await;
    db.batch_execute("DROP TRIGGER test_fault ON sessions")
        .await
        .expect("remove the fault");

    // The token is refused everywhere but on the logout route, where its repeat is taken.
    let me = authorizer
        .decide_for("GET /v1/users/me", "/v1/users/me", token)
        .await;
    assert_denied(&me, "a revoked token on another route");
    let allow = authorizer
        .decide_for("POST /v1/auth/logout", "/v1/auth/logout", token)
        .await;
    let context = assert_allowed_as(&allow, token, "user", "the repeat of a logout");
    let event = HttpEvent::new("POST", "/v1/auth/logout")
        .route_key("POST /v1/auth/logout")
        .source_ip("203.0.113.7")
        .header("authorization", &format!("Bearer {token}"))
        .authorizer_context(&context)
        .to_json()
        .to_string();
    assert_eq!(invoke_logout(&authorizer.state, &event).await, 204);
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
    // Nothing left to finish: the same token is refused like any revoked one.
    assert_eq!(invoke_logout(&authorizer.state, &event).await, 401);

    // Another API's rules never admit a revoked token, not even on a route of that name.
    let foreign =
        RouteRules::from_json(r#"{"POST /v1/auth/logout": ["user", "admin"]}"#).expect("rules");
    let other = Authorizer {
        state: authorizer.state.clone(),
        rules: foreign,
    };
    let deny = other
        .decide_for("POST /v1/auth/logout", "/v1/auth/logout", token)
        .await;
    assert_denied(&deny, "another API's route");
}
