//! POST /v1/auth/refresh: rotation, reuse detection, exactly-once under concurrency, expiry.

use std::time::Duration;

use futures::future::join_all;
use user_service_tests::jwt::claims_of;
use user_service_tests::{TestApp, assert_problem, expect_json};

use crate::login::assert_token_pair;

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let body = expect_json(app.refresh(&user.tokens.refresh_token).await, 200).await;
    let next = assert_token_pair(&app, &body, &user.id);
    assert_ne!(
        next.refresh_token, user.tokens.refresh_token,
        "a new refresh token"
    );
    assert_ne!(
        next.access_token, user.tokens.access_token,
        "a new access token"
    );
    assert_eq!(
        claims_of(&next.access_token)["sid"],
        claims_of(&user.tokens.access_token)["sid"],
        "refreshing stays in the same session"
    );
    app.assert_me_status(&next.access_token, 200).await;
    // The presented token is spent...
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
    // ...but only the presented one: this test's reuse revoked the session, so check the
    // chain goes on in a fresh session.
    let fresh = app.login_ok(&user.email, &user.password).await;
    let second = app.refresh_ok(&fresh.refresh_token).await;
    let third = app.refresh_ok(&second.refresh_token).await;
    app.assert_me_status(&third.access_token, 200).await;
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other_session = app.login_ok(&user.email, &user.password).await;
    let spent = user.tokens.refresh_token.clone();
    let newest = app.refresh_ok(&spent).await;
    app.assert_me_status(&newest.access_token, 200).await;

    // Reuse: 401...
    app.assert_refresh_rejected(&spent).await;
    // ...and the session's newest refresh token and its access tokens stop working.
    app.assert_refresh_rejected(&newest.refresh_token).await;
    app.assert_me_status(&newest.access_token, 401).await;
    app.assert_me_status(&user.tokens.access_token, 401).await;

    // Another session of the same user is not touched.
    app.assert_me_status(&other_session.access_token, 200).await;
    let rotated = app.refresh_ok(&other_session.refresh_token).await;
    app.assert_me_status(&rotated.access_token, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_with_one_token_succeed_at_most_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = user.tokens.refresh_token.clone();
    let responses = join_all((0..12).map(|_| app.refresh(&token))).await;
    let mut successes = 0;
    for resp in responses {
        if resp.status().as_u16() == 200 {
            successes += 1;
        } else {
            assert_problem(resp, 401, "invalid_refresh_token").await;
        }
    }
    // The contract says "spent exactly once"; at least one of the racers should win, but a
    // service that refuses all 12 leaks nothing, so only "more than one" is a failure here.
    assert!(
        successes <= 1,
        "{successes} of 12 concurrent refreshes with one token succeeded"
    );
    // Whatever happened, the token is spent now.
    app.assert_refresh_rejected(&token).await;
}

#[tokio::test]
async fn a_garbage_refresh_token_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    app.assert_refresh_rejected("garbage").await;
    // An access token is not a refresh token.
    app.assert_refresh_rejected(&user.tokens.access_token).await;
    // A refresh token with one character changed.
    let mut altered = user.tokens.refresh_token.clone();
    let last = altered.pop().expect("non-empty");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    app.assert_refresh_rejected(&altered).await;
    // None of that touched the real one.
    app.refresh_ok(&user.tokens.refresh_token).await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_401() {
    let app = TestApp::builder()
        .env("REFRESH_TOKEN_TTL_SECONDS", 1)
        .env("SESSION_MAX_LIFETIME_SECONDS", 3600)
        .spawn()
        .await;
    let user = app.new_user().await;
    assert!(user.tokens.refresh_expires_in <= 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
}

/// `refresh_expires_in` is the earlier of the idle and the absolute expiry: with a 60 s idle
/// lifetime and a 62 s session lifetime, 3 s later the absolute expiry comes first.
#[tokio::test]
async fn refresh_expires_in_honours_the_session_lifetime() {
    let app = TestApp::builder()
        .env("REFRESH_TOKEN_TTL_SECONDS", 60)
        .env("SESSION_MAX_LIFETIME_SECONDS", 62)
        .spawn()
        .await;
    let user = app.new_user().await;
    let first = user.tokens.refresh_expires_in;
    assert!(
        (58..=60).contains(&first),
        "refresh_expires_in {first}, want 60"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let next = app.refresh_ok(&user.tokens.refresh_token).await;
    assert!(
        next.refresh_expires_in <= 59,
        "the session ends 62 s after login, so a refresh 3 s later has at most 59 s left, got {}",
        next.refresh_expires_in
    );
    assert!(next.refresh_expires_in > 50, "{}", next.refresh_expires_in);
}
