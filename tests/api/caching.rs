//! Contract, "Conventions" (v2): every response under `/v1/` carries `Cache-Control: no-store`
//! (successes, problems, the 404 of an unknown path), while the JWKS stays cacheable.

use reqwest::Method;
use reqwest::header::CACHE_CONTROL;
use serde_json::json;
use user_service_tests::{TestApp, strong_password, unique_email};

/// The response's `Cache-Control`, or `""`.
fn cache_control(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_v1_response_is_no_store() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    let cases: Vec<(&str, u16, reqwest::Response)> = vec![
        (
            "a registration",
            201,
            app.register(&unique_email(), &strong_password()).await,
        ),
        ("a login", 200, app.login(&user.email, &user.password).await),
        ("GET /me", 200, app.me(token).await),
        (
            "an admin list",
            200,
            app.admin_list(&admin.tokens.access_token, "").await,
        ),
        (
            "a malformed body",
            400,
            app.post_raw("/v1/auth/login", "{", Some("application/json"))
                .await,
        ),
        (
            "a wrong password",
            401,
            app.login(&user.email, "not-the-password-at-all").await,
        ),
        ("no token", 401, app.get("/v1/users/me").await),
        (
            "a user on an admin route",
            403,
            app.get_authed("/v1/admin/users", token).await,
        ),
        (
            "an unknown /v1 path",
            404,
            app.get("/v1/no/such/path").await,
        ),
        ("a trailing slash", 404, app.get("/v1/users/me/").await),
        (
            "a wrong method",
            405,
            app.request(Method::DELETE, "/v1/auth/login")
                .send()
                .await
                .expect("DELETE"),
        ),
        (
            "a body over 64 KiB",
            413,
            app.post_raw(
                "/v1/auth/login",
                "x".repeat(65 * 1024),
                Some("application/json"),
            )
            .await,
        ),
        (
            "a body that is not JSON",
            415,
            app.post_raw("/v1/auth/login", "a=b", Some("text/plain"))
                .await,
        ),
    ];
    for (what, status, resp) in cases {
        assert_eq!(resp.status().as_u16(), status, "{what}");
        assert_eq!(cache_control(&resp), "no-store", "{what} ({status})");
    }
}

#[tokio::test]
async fn a_rate_limited_answer_is_no_store() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", 1)
        .spawn()
        .await;
    let ip = user_service_tests::random_client_ip();
    let body = json!({"email": unique_email(), "password": strong_password()});
    let mut last = None;
    for _ in 0..2 {
        last = Some(
            app.request_from(&ip, Method::POST, "/v1/auth/login")
                .json(&body)
                .send()
                .await
                .expect("login"),
        );
    }
    let resp = last.expect("two logins");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(cache_control(&resp), "no-store");
}

/// Outside `/v1/`: the keys are meant to be cached; the health probes never are.
#[tokio::test]
async fn outside_v1_the_keys_stay_cacheable() {
    let app = TestApp::spawn().await;
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status().as_u16(), 200);
    let jwks_cache = cache_control(&jwks);
    assert!(jwks_cache.contains("max-age"), "{jwks_cache:?}");
    assert!(!jwks_cache.contains("no-store"), "{jwks_cache:?}");
    for path in ["/healthz", "/readyz"] {
        let resp = app.get(path).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(cache_control(&resp), "no-store", "{path}");
    }
}
