//! Postgres or Redis going away: 503 `unavailable` within 5 s (never a hang or a bare 500),
//! a revoked token is never accepted, and the service recovers by itself.
//!
//! The shared Postgres and Redis are never touched: the app reaches them through a
//! [`TcpProxy`] that the test cuts (connections closed, new ones closed at once) or stalls
//! (connections open, nothing forwarded: a network partition).

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::json;
use user_service_tests::problem::{check_problem_body, read};
use user_service_tests::proxy::TcpProxy;
use user_service_tests::{
    TestApp, TestUser, eventually, expect_json, expect_status, strong_password, timed,
};

/// The contract's bound on an answer during an outage.
const WITHIN: Duration = Duration::from_secs(5);
/// How long the service may take to recover once the dependency is back.
const RECOVERY: Duration = Duration::from_secs(15);

/// Sends `request`, asserts the answer came within 5 s; returns `(status, code)`.
async fn answer(what: &str, request: RequestBuilder) -> (u16, String) {
    let (resp, took) = timed(Duration::from_secs(20), what, request.send()).await;
    let (status, content_type, body) = read(resp).await;
    assert!(
        took < WITHIN,
        "{what}: answered {status} after {took:?}; the contract says within 5 s"
    );
    assert_ne!(status, 500, "{what}: a bare 500 during an outage: {body}");
    // /readyz may describe its checks in a body of its own; every other 503 is a problem.
    if status == 503 && !what.contains("readyz") {
        check_problem_body(what, 503, "unavailable", &content_type, &body);
    }
    let code = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

fn me(app: &TestApp, token: &str) -> RequestBuilder {
    app.request(Method::GET, "/v1/users/me").bearer_auth(token)
}

fn login(app: &TestApp, user: &TestUser) -> RequestBuilder {
    app.request(Method::POST, "/v1/auth/login")
        .json(&json!({"email": user.email, "password": user.password}))
}

fn refresh(app: &TestApp, token: &str) -> RequestBuilder {
    app.request(Method::POST, "/v1/auth/refresh")
        .json(&json!({"refresh_token": token}))
}

fn readyz(app: &TestApp) -> RequestBuilder {
    app.request(Method::GET, "/readyz")
}

async fn status_of(request: RequestBuilder) -> u16 {
    match request.timeout(Duration::from_secs(10)).send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

async fn postgres_outage(break_it: fn(&TcpProxy)) {
    let app = TestApp::builder().postgres_via_proxy().spawn().await;
    let user = app.new_user().await;
    let seen = app.new_user().await;
    let seen_profile = expect_json(app.me(&seen.tokens.access_token).await, 200).await;
    let spare_refresh = app
        .login_ok(&user.email, &user.password)
        .await
        .refresh_token;

    break_it(app.postgres_proxy());
    let token = &user.tokens.access_token;
    // Twice: the first request may meet a pooled connection, the second a fresh one.
    for round in 0..2 {
        // A profile this instance served moments ago is answered from its memory (the
        // revocation check is Redis's); one it has not seen needs Postgres.
        let what = "GET /v1/users/me, a profile seen before";
        let (resp, took) = timed(WITHIN, what, me(&app, &seen.tokens.access_token).send()).await;
        assert!(took < WITHIN, "{what}: {took:?}");
        assert_eq!(expect_json(resp, 200).await, seen_profile, "round {round}");
        let cases = [
            ("GET /v1/users/me", me(&app, token)),
            ("POST /v1/auth/login", login(&app, &user)),
            ("POST /v1/auth/refresh", refresh(&app, &spare_refresh)),
            (
                "POST /v1/auth/register",
                app.request(Method::POST, "/v1/auth/register").json(
                    &json!({"email": user_service_tests::unique_email(), "password": strong_password()}),
                ),
            ),
        ];
        for (what, request) in cases {
            let (status, code) = answer(what, request).await;
            assert_eq!(
                (status, code.as_str()),
                (503, "unavailable"),
                "{what} (round {round}) with Postgres down"
            );
        }
        let (status, _) = answer("GET /readyz", readyz(&app)).await;
        assert_eq!(status, 503, "/readyz with Postgres down");
    }
    let (status, _) = answer("GET /healthz", app.request(Method::GET, "/healthz")).await;
    assert_eq!(status, 200, "/healthz only says the process is up");

    app.postgres_proxy().restore();
    assert!(
        eventually(RECOVERY, || async { status_of(readyz(&app)).await == 200 }).await,
        "/readyz did not recover within {RECOVERY:?} of Postgres coming back"
    );
    assert!(
        eventually(RECOVERY, || async {
            status_of(me(&app, token)).await == 200
        })
        .await,
        "GET /v1/users/me did not recover"
    );
    app.login_ok(&user.email, &user.password).await;
    // A refresh refused for the outage did not spend the token.
    app.refresh_ok(&spare_refresh).await;
}

#[tokio::test]
async fn postgres_down_is_503_within_5_s_and_recovers() {
    postgres_outage(TcpProxy::cut).await;
}

#[tokio::test]
async fn postgres_unreachable_is_503_within_5_s_and_recovers() {
    postgres_outage(TcpProxy::stall).await;
}

async fn redis_outage(break_it: fn(&TcpProxy)) {
    let app = TestApp::builder().redis_via_proxy().spawn().await;
    let user = app.new_user().await;
    // Revoked before the outage: one session by logout, every session of another user by
    // logout-all, one by reuse detection.
    let logged_out = app.login_ok(&user.email, &user.password).await;
    expect_status(app.logout(&logged_out.access_token, None).await, 204).await;
    let other = app.new_user().await;
    let other_second = app.login_ok(&other.email, &other.password).await;
    expect_status(
        app.logout(&other_second.access_token, Some(true)).await,
        204,
    )
    .await;
    let reused = app.login_ok(&user.email, &user.password).await;
    let reused_next = app.refresh_ok(&reused.refresh_token).await;
    app.assert_refresh_rejected(&reused.refresh_token).await;
    let revoked_access = [
        &logged_out.access_token,
        &other.tokens.access_token,
        &other_second.access_token,
        &reused_next.access_token,
    ];
    let revoked_refresh = [
        &logged_out.refresh_token,
        &other.tokens.refresh_token,
        &reused_next.refresh_token,
    ];

    break_it(app.redis_proxy());
    let valid = &user.tokens.access_token;
    for round in 0..2 {
        let (status, _) = answer("GET /v1/users/me, valid token", me(&app, valid)).await;
        assert!(
            status == 200 || status == 503,
            "a valid token with Redis down: {status} (round {round})"
        );
        for token in revoked_access {
            let (status, code) = answer("GET /v1/users/me, revoked token", me(&app, token)).await;
            assert!(
                (status, code.as_str()) == (401, "unauthorized") || status == 503,
                "a revoked access token with Redis down: {status} {code} (round {round})"
            );
        }
        for token in revoked_refresh {
            let (status, code) =
                answer("POST /v1/auth/refresh, revoked", refresh(&app, token)).await;
            assert!(
                (status, code.as_str()) == (401, "invalid_refresh_token") || status == 503,
                "a revoked refresh token with Redis down: {status} {code} (round {round})"
            );
        }
        let (status, _) = answer("POST /v1/auth/login", login(&app, &user)).await;
        assert!(
            status == 200 || status == 503,
            "login with Redis down: {status}"
        );
        let (status, _) = answer("GET /readyz", readyz(&app)).await;
        assert_eq!(status, 503, "/readyz with Redis down");
    }
    let (status, _) = answer("GET /healthz", app.request(Method::GET, "/healthz")).await;
    assert_eq!(status, 200, "/healthz only says the process is up");

    app.redis_proxy().restore();
    assert!(
        eventually(RECOVERY, || async { status_of(readyz(&app)).await == 200 }).await,
        "/readyz did not recover within {RECOVERY:?} of Redis coming back"
    );
    assert!(
        eventually(RECOVERY, || async {
            status_of(me(&app, valid)).await == 200
        })
        .await,
        "a valid token is not accepted again after Redis came back"
    );
    for token in revoked_access {
        app.assert_me_status(token, 401).await;
    }
    for token in revoked_refresh {
        app.assert_refresh_rejected(token).await;
    }
    app.login_ok(&user.email, &user.password).await;
}

#[tokio::test]
async fn redis_down_never_lets_a_revoked_token_through_and_recovers() {
    redis_outage(TcpProxy::cut).await;
}

#[tokio::test]
async fn redis_unreachable_never_lets_a_revoked_token_through_and_recovers() {
    redis_outage(TcpProxy::stall).await;
}

/// Redis without persistence loses everything on a restart; revocations must survive that.
#[tokio::test]
async fn revocations_survive_the_loss_of_every_redis_key() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let logged_out = app.login_ok(&user.email, &user.password).await;
    expect_status(app.logout(&logged_out.access_token, None).await, 204).await;

    let all_out = app.new_user().await;
    let all_out_second = app.login_ok(&all_out.email, &all_out.password).await;
    expect_status(
        app.logout(&all_out_second.access_token, Some(true)).await,
        204,
    )
    .await;

    let changer = app.new_user().await;
    let changer_other = app.login_ok(&changer.email, &changer.password).await;
    let resp = app
        .change_password(
            &changer.tokens.access_token,
            &changer.password,
            &strong_password(),
        )
        .await;
    expect_status(resp, 204).await;

    let reused = app.login_ok(&user.email, &user.password).await;
    let reused_next = app.refresh_ok(&reused.refresh_token).await;
    app.assert_refresh_rejected(&reused.refresh_token).await;

    let lost = app.flush_redis().await;
    eprintln!("deleted {lost} Redis keys");

    for token in [
        &logged_out.access_token,
        &all_out.tokens.access_token,
        &all_out_second.access_token,
        &changer_other.access_token,
        &reused_next.access_token,
    ] {
        app.assert_me_status(token, 401).await;
    }
    for token in [
        &logged_out.refresh_token,
        &all_out.tokens.refresh_token,
        &changer_other.refresh_token,
        &reused_next.refresh_token,
        &reused.refresh_token,
    ] {
        app.assert_refresh_rejected(token).await;
    }
    // What was valid still is.
    app.assert_me_status(&user.tokens.access_token, 200).await;
    app.assert_me_status(&changer.tokens.access_token, 200)
        .await;
}

/// "503 unavailable: ... or the hashing queue is full". One hashing slot, a 50 ms wait for
/// it and expensive hashes: of 8 simultaneous registrations some must be turned away with
/// 503 quickly, the others succeed, and none fails any other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_is_503_unavailable() {
    let app = TestApp::builder()
        .env("HASHING_CONCURRENCY", 1)
        .env("HASHING_QUEUE_TIMEOUT_MS", 50)
        .env("ARGON2_MEMORY_KIB", 65_536)
        .env("ARGON2_ITERATIONS", 3)
        .spawn()
        .await;
    let attempts = (0..8).map(|i| {
        let app = &app;
        async move {
            let request = app.request(Method::POST, "/v1/auth/register").json(
                &json!({"email": user_service_tests::unique_email(), "password": strong_password()}),
            );
            answer(&format!("registration {i}"), request).await
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, c)| *s == 503 && c == "unavailable")
        .count();
    assert_eq!(
        created + refused,
        answers.len(),
        "only 201 or 503 unavailable: {answers:?}"
    );
    assert!(created >= 1, "someone gets the slot: {answers:?}");
    assert!(
        refused >= 1,
        "a full queue turns requests away: {answers:?}"
    );
    // Once the queue has drained, hashing works again.
    let email = user_service_tests::unique_email();
    let password = strong_password();
    app.register_ok(&email, &password).await;
    app.login_ok(&email, &password).await;
}
