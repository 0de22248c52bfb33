//! The example of another API behind the authorizer (`examples/protected-api`): its function
//! binary, fed what API Gateway sends it once the real authorizer binary, started with the
//! example's route rules, has allowed a request of a real user's session.

use serde_json::{Map, Value, json};
use user_service::auth::rules::SERVICE_DEFAULT_RULES;
use user_service_tests::runtime_api::{HttpEvent, HttpResponse, LambdaProcess, authorizer_event};
use user_service_tests::{TestApp, expect_json, expect_status, token_pair};

/// The user-service stack's `AuthorizerRouteRules` while the example is deployed
/// (docs/deploying.md): this service's own rules and the example's three routes.
const ROUTE_RULES: &str = include_str!("../../examples/protected-api/route-rules.json");

/// The example's routes: API Gateway's route key and a request path.
type Route = (&'static str, &'static str);
const HELLO: Route = ("GET /example/hello", "/example/hello");
const REPORT: Route = ("GET /example/admin/report", "/example/admin/report");
const TRANSFERS: Route = ("POST /example/transfers", "/example/transfers");

/// What API Gateway does with a request to the example API carrying `token`: asks the
/// authorizer, and on an allow invokes the function with the allow's context and the
/// request. `None` when the authorizer denies (the client gets API Gateway's 403).
async fn call(
    authorizer: &LambdaProcess,
    function: &LambdaProcess,
    (route_key, path): Route,
    token: &str,
) -> Option<HttpResponse> {
    let bearer = format!("Bearer {token}");
    let answer = authorizer
        .invoke(&authorizer_event(route_key, path, Some(&bearer)))
        .await;
    if answer["isAuthorized"] != json!(true) {
        assert_eq!(
            answer["context"],
            json!({}),
            "a deny names no one: {answer}"
        );
        return None;
    }
    Some(
        function
            .http(&behind(route_key, path, &bearer, &answer["context"]))
            .await,
    )
}

/// The event API Gateway passes the function after an allow with `context`.
fn behind(route_key: &str, path: &str, bearer: &str, context: &Value) -> HttpEvent {
    let method = route_key.split(' ').next().unwrap_or("GET");
    HttpEvent::new(method, path)
        .route_key(route_key)
        .header("authorization", bearer)
        .authorizer_context(context)
}

/// Asserts a refusal by the function itself: `status`, as an RFC 9457 problem.
fn assert_refused(response: &HttpResponse, status: u16) {
    assert_eq!(response.status, status, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_str(&response.body).expect("a JSON problem");
    assert_eq!(problem["status"], json!(status), "{problem}");
}

#[test]
fn the_example_rules_keep_this_services_own_rules() {
    let rules: Map<String, Value> = serde_json::from_str(ROUTE_RULES).expect("route-rules.json");
    let own: Map<String, Value> = serde_json::from_str(SERVICE_DEFAULT_RULES).expect("defaults");
    for (route, rule) in &own {
        assert_eq!(
            rules.get(route),
            Some(rule),
            "examples/protected-api/route-rules.json replaces this service's rules, so it must \
             repeat SERVICE_DEFAULT_RULES' rule for {route}"
        );
    }
}

#[tokio::test]
async fn protected_api() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let authorizer = LambdaProcess::builder("authorizer")
        .deployment(&app)
        .env("AUTHORIZER_ROUTE_RULES", ROUTE_RULES)
        .spawn()
        .await
        .expect("start the authorizer");
    // The example knows nothing of user-service's configuration: only what Lambda sets.
    let function = LambdaProcess::builder("protected-api")
        .spawn()
        .await
        .expect("start the example function");
    let user = app.new_user().await;
    let enrolled = app.enroll_mfa(app.new_user().await).await;
    let mfa_token = app.mfa_first_step(&enrolled.user).await;
    let with_otp = token_pair(
        expect_json(
            app.post_json(
                "/v1/auth/login/mfa",
                &json!({"mfa_token": mfa_token, "code": enrolled.next_code()}),
            )
            .await,
            200,
        )
        .await,
    );
    let (user_token, admin_token) = (&user.tokens.access_token, &admin.tokens.access_token);

    // Open to every signed-in user; the function names the caller from the context.
    let hello = call(&authorizer, &function, HELLO, user_token)
        .await
        .expect("a user is allowed on the open route")
        .expect(200);
    assert_eq!(
        hello,
        json!({"route": HELLO.0, "user_id": user.id, "role": "user", "amr": ["pwd"]})
    );

    // Admin only: denied at the authorizer for a user, answered for an admin.
    assert!(
        call(&authorizer, &function, REPORT, user_token)
            .await
            .is_none(),
        "a user is denied the admin route"
    );
    let report = call(&authorizer, &function, REPORT, admin_token)
        .await
        .expect("an admin is allowed on the admin route")
        .expect(200);
    assert_eq!(report["role"], json!("admin"), "{report}");

    // A second factor: a password-only session is denied, whatever its role; a session
    // opened with a TOTP code is allowed.
    for (who, token) in [("a user", user_token), ("an admin", admin_token)] {
        assert!(
            call(&authorizer, &function, TRANSFERS, token)
                .await
                .is_none(),
            "{who} without a second factor is denied the otp route"
        );
    }
    let transfer = call(&authorizer, &function, TRANSFERS, &with_otp.access_token)
        .await
        .expect("a session with a second factor is allowed on the otp route")
        .expect(200);
    assert_eq!(transfer["user_id"], json!(enrolled.user.id), "{transfer}");
    assert_eq!(transfer["amr"], json!(["pwd", "otp"]), "{transfer}");

    // This service's own routes keep their rules under the example's rule set.
    let own = |route: &str, path: &str, token: &str| {
        authorizer_event(route, path, Some(&format!("Bearer {token}")))
    };
    let me = authorizer
        .invoke(&own("GET /v1/users/me", "/v1/users/me", user_token))
        .await;
    assert_eq!(me["isAuthorized"], json!(true), "{me}");
    let admin_list = authorizer
        .invoke(&own("GET /v1/admin/users", "/v1/admin/users", user_token))
        .await;
    assert_eq!(admin_list["isAuthorized"], json!(false), "{admin_list}");

    // The function checks its routes' needs itself too: were the rules in the user-service
    // stack too generous, a user's allow would still not open the admin or otp route. And a
    // request that did not pass the authorizer names no caller.
    let user_bearer = format!("Bearer {user_token}");
    let user_context = hello_context(&authorizer, &user_bearer).await;
    for (route_key, path) in [REPORT, TRANSFERS] {
        let response = function
            .http(&behind(route_key, path, &user_bearer, &user_context))
            .await;
        assert_refused(&response, 403);
    }
    let no_authorizer = HttpEvent::get(HELLO.1).route_key(HELLO.0);
    assert_refused(&function.http(&no_authorizer).await, 401);

    // Revocation: the authorizer refuses a logged-out token at once; an allow API Gateway
    // cached before the logout is still believed by the function until the cache TTL ends
    // (the price of trusting the context, see the example's README).
    expect_status(app.logout(user_token, None).await, 204).await;
    assert!(
        call(&authorizer, &function, HELLO, user_token)
            .await
            .is_none(),
        "a revoked token is denied"
    );
    function
        .http(&behind(HELLO.0, HELLO.1, &user_bearer, &user_context))
        .await
        .expect(200);
}

/// The context of the authorizer's allow for `bearer` on the open route.
async fn hello_context(authorizer: &LambdaProcess, bearer: &str) -> Value {
    let answer = authorizer
        .invoke(&authorizer_event(HELLO.0, HELLO.1, Some(bearer)))
        .await;
    assert_eq!(answer["isAuthorized"], json!(true), "{answer}");
    answer["context"].clone()
}
