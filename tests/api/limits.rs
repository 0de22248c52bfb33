//! Contract, "Abuse limits": failed logins per account, requests per client IP, counted in
//! Redis so that they hold across instances; 429 `rate_limited` with `Retry-After`.

use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;
use reqwest::header::RETRY_AFTER;
use serde_json::json;
use user_service_tests::problem::check_problem_body;
use user_service_tests::{
    TestApp, assert_problem, eventually, expect_json, random_client_ip, strong_password,
    unique_email,
};

const WRONG: &str = "wrong-password-entirely";

/// Asserts a 429 `rate_limited` problem and returns its `Retry-After` in whole seconds.
async fn assert_rate_limited(resp: reqwest::Response) -> u64 {
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_problem(resp, 429, "rate_limited").await;
    let raw = retry_after.unwrap_or_else(|| panic!("429 without Retry-After"));
    let seconds: u64 = raw
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is whole seconds ({e}): {raw:?}"));
    assert!(seconds > 0, "Retry-After: {seconds}");
    seconds
}

/// `n` failed logins for `email`, each asserted 401.
async fn fail_logins(app: &TestApp, email: &str, n: usize) {
    for i in 0..n {
        let resp = app.login(email, WRONG).await;
        let url = resp.url().to_string();
        let status = resp.status().as_u16();
        assert_eq!(status, 401, "{url}: failed login {} of {n}", i + 1);
    }
}

/// POST /v1/auth/register from `ip`.
async fn register_from(app: &TestApp, ip: &str) -> reqwest::Response {
    app.request_from(ip, Method::POST, "/v1/auth/register")
        .json(&json!({"email": unique_email(), "password": strong_password()}))
        .send()
        .await
        .expect("register")
}

// ----- failed logins per account -----

/// After 5 failed logins in 15 minutes the account gets 429 with `Retry-After`, even with
/// the right password; other accounts are not affected.
#[tokio::test]
async fn five_failed_logins_lock_the_account() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let bystander = app.new_user().await;
    fail_logins(&app, &user.email, 5).await;
    let seconds = assert_rate_limited(app.login(&user.email, &user.password).await).await;
    assert!(seconds <= 60, "the first lockout lasts a minute: {seconds}");
    app.login_ok(&bystander.email, &bystander.password).await;
    // Still locked, in any spelling of the email.
    let shouted = format!(" {} ", user.email.to_uppercase());
    assert_rate_limited(app.login(&shouted, &user.password).await).await;
}

/// An unknown email is counted and locked like a registered one, so a 429 reveals nothing;
/// and no Redis key holds the email.
#[tokio::test]
async fn unknown_emails_lock_like_known_ones() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let unknown = unique_email();
    fail_logins(&app, &user.email, 5).await;
    fail_logins(&app, &unknown, 5).await;
    let known = assert_rate_limited(app.login(&user.email, WRONG).await).await;
    let other = assert_rate_limited(app.login(&unknown, WRONG).await).await;
    assert!(known.abs_diff(other) <= 1, "{known} vs {other}");
    for key in app.redis_keys().await {
        assert!(
            !key.contains(&user.email) && !key.contains(&unknown),
            "a Redis key holds an email: {key}"
        );
    }
}

/// Each lockout within a day lasts twice the one before, up to the cap.
#[tokio::test]
async fn repeated_lockouts_grow_up_to_the_cap() {
    let app = TestApp::builder()
        .env("LOCKOUT_THRESHOLD", 2)
        .env("LOCKOUT_BASE_SECONDS", 1)
        .env("LOCKOUT_MAX_SECONDS", 3)
        .spawn()
        .await;
    let user = app.new_user().await;
    let mut waits = Vec::new();
    for _ in 0..3 {
        fail_logins(&app, &user.email, 2).await;
        let seconds = assert_rate_limited(app.login(&user.email, &user.password).await).await;
        waits.push(seconds);
        tokio::time::sleep(Duration::from_millis(seconds * 1000 + 200)).await;
    }
    assert_eq!(waits, [1, 2, 3], "1 s, then doubled, then capped at 3 s");
    // The lock lapsed: the right password works, and it resets the level.
    app.login_ok(&user.email, &user.password).await;
    fail_logins(&app, &user.email, 2).await;
    let seconds = assert_rate_limited(app.login(&user.email, &user.password).await).await;
    assert_eq!(seconds, 1, "a success starts the lockouts over");
}

/// A successful login forgets the failures before it.
#[tokio::test]
async fn a_successful_login_resets_the_count() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    fail_logins(&app, &user.email, 4).await;
    app.login_ok(&user.email, &user.password).await;
    fail_logins(&app, &user.email, 4).await;
    app.login_ok(&user.email, &user.password).await;
    // Five in a row still lock.
    fail_logins(&app, &user.email, 5).await;
    assert_rate_limited(app.login(&user.email, &user.password).await).await;
}

/// A burst of concurrent guesses cannot slip past the lock: no more than 5 are verified.
#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_lock() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let answers = join_all((0..15).map(|_| app.login(&user.email, WRONG))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let verified = statuses.iter().filter(|&&s| s == 401).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(
        verified, 5,
        "exactly the threshold is verified: {statuses:?}"
    );
    assert_eq!(verified + limited, statuses.len(), "{statuses:?}");
    assert_rate_limited(app.login(&user.email, &user.password).await).await;
}

/// Two instances of one deployment count the same failures and the same lock.
#[tokio::test]
async fn failures_and_locks_count_across_instances() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    for i in 0..5 {
        let app = if i % 2 == 0 { &a } else { &b };
        fail_logins(app, &user.email, 1).await;
    }
    assert_rate_limited(b.login(&user.email, &user.password).await).await;
    assert_rate_limited(a.login(&user.email, &user.password).await).await;
}

// ----- per client IP -----

/// 30 logins per client IP per minute. Distinct unknown emails, so that no per-account limit
/// is involved.
#[tokio::test]
async fn the_31st_login_from_one_ip_within_a_minute_is_429() {
    let app = TestApp::spawn().await;
    let ip = random_client_ip();
    for i in 0..30 {
        let resp = app
            .login_from(&ip, &unique_email(), "whatever-password")
            .await;
        let status = resp.status().as_u16();
        assert_eq!(status, 401, "attempt {} from one IP", i + 1);
    }
    let resp = app
        .login_from(&ip, &unique_email(), "whatever-password")
        .await;
    let seconds = assert_rate_limited(resp).await;
    assert!(seconds <= 60, "{seconds}");
    // Another client is not affected.
    let user = app.new_user().await;
    let resp = app
        .login_from(&random_client_ip(), &user.email, &user.password)
        .await;
    expect_json(resp, 200).await;
}

/// 20 registrations per client IP per minute.
#[tokio::test]
async fn the_21st_registration_from_one_ip_within_a_minute_is_429() {
    let app = TestApp::spawn().await;
    let ip = random_client_ip();
    for i in 0..20 {
        let resp = register_from(&app, &ip).await;
        assert_eq!(
            resp.status().as_u16(),
            201,
            "registration {} from one IP",
            i + 1
        );
    }
    assert_rate_limited(register_from(&app, &ip).await).await;
    // Another client is not affected.
    expect_json(register_from(&app, &random_client_ip()).await, 201).await;
}

/// Two instances of one deployment share the per-IP counters.
#[tokio::test]
async fn the_ip_limit_counts_across_instances() {
    let a = TestApp::builder()
        .env("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", 4)
        .spawn()
        .await;
    let b = a.spawn_sibling().await;
    let ip = random_client_ip();
    for app in [&a, &b, &a, &b] {
        let resp = app.login_from(&ip, &unique_email(), WRONG).await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    assert_rate_limited(a.login_from(&ip, &unique_email(), WRONG).await).await;
    assert_rate_limited(b.login_from(&ip, &unique_email(), WRONG).await).await;
}

/// With `TRUST_FORWARDED_FOR`, each client named by the proxy has its own counter, and only
/// the address the proxy appended (the last one) counts: a client cannot dodge the limit by
/// sending an `X-Forwarded-For` of its own.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_counted() {
    let app = TestApp::builder()
        .env("TRUST_FORWARDED_FOR", true)
        .env("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", 3)
        .spawn()
        .await;
    let client = random_client_ip();
    for _ in 0..3 {
        // What the client claims, then what the proxy saw.
        let header = format!("{}, {client}", random_client_ip());
        let resp = app.login_from(&header, &unique_email(), WRONG).await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    let header = format!("{}, {client}", random_client_ip());
    assert_rate_limited(app.login_from(&header, &unique_email(), WRONG).await).await;
    // Another client behind the same proxy has a counter of its own.
    let resp = app
        .login_from(&random_client_ip(), &unique_email(), WRONG)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
}

/// Without `TRUST_FORWARDED_FOR` the peer address counts, whatever `X-Forwarded-For` says.
#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_dodge_the_limit() {
    let app = TestApp::builder()
        .env("TRUST_FORWARDED_FOR", false)
        .env("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", 3)
        .env("RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE", 2)
        .spawn()
        .await;
    for _ in 0..3 {
        let resp = app
            .login_from(&random_client_ip(), &unique_email(), WRONG)
            .await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    assert_rate_limited(
        app.login_from(&random_client_ip(), &unique_email(), WRONG)
            .await,
    )
    .await;
    for _ in 0..2 {
        expect_json(register_from(&app, &random_client_ip()).await, 201).await;
    }
    assert_rate_limited(register_from(&app, &random_client_ip()).await).await;
}

// ----- Redis down -----

/// Without Redis the limits cannot be checked: login fails closed (503 `unavailable`, never
/// an unlimited login), registration fails open; both recover with Redis.
#[tokio::test]
async fn without_redis_login_fails_closed_and_register_stays_open() {
    let app = TestApp::builder().redis_via_proxy().spawn().await;
    let user = app.new_user().await;
    app.redis_proxy().cut();
    for _ in 0..2 {
        let resp = app.login(&user.email, &user.password).await;
        let has_retry_after = resp.headers().contains_key(RETRY_AFTER);
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 503, "login with Redis down: {text}");
        check_problem_body("login", 503, "unavailable", &content_type, &text);
        assert!(has_retry_after, "503 without Retry-After");
    }
    app.register_ok(&unique_email(), &strong_password()).await;

    app.redis_proxy().restore();
    let recovered = eventually(Duration::from_secs(15), || async {
        app.login(&user.email, &user.password).await.status() == 200
    })
    .await;
    assert!(recovered, "login did not recover after Redis came back");
}
