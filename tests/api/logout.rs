//! POST /v1/auth/logout: one session or all of them, at once.

use reqwest::Method;
use serde_json::json;
use user_service_tests::{TestApp, assert_problem, expect_status};

#[tokio::test]
async fn logout_ends_this_session_at_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    // Body optional: no body at all.
    expect_status(app.logout(&user.tokens.access_token, None).await, 204).await;
    app.assert_me_status(&user.tokens.access_token, 401).await;
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
    // The other session keeps working.
    app.assert_me_status(&other.access_token, 200).await;
    let rotated = app.refresh_ok(&other.refresh_token).await;
    app.assert_me_status(&rotated.access_token, 200).await;
    // Logging out again with the dead token is refused.
    let resp = app.logout(&user.tokens.access_token, None).await;
    assert_problem(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn logout_ends_every_access_token_of_the_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    // Two live access tokens in one session: the login's and the refresh's.
    let refreshed = app.refresh_ok(&user.tokens.refresh_token).await;
    app.assert_me_status(&user.tokens.access_token, 200).await;
    expect_status(app.logout(&refreshed.access_token, None).await, 204).await;
    app.assert_me_status(&user.tokens.access_token, 401).await;
    app.assert_me_status(&refreshed.access_token, 401).await;
    app.assert_refresh_rejected(&refreshed.refresh_token).await;
}

#[tokio::test]
async fn logout_accepts_an_empty_object_and_all_false() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let second = app.login_ok(&user.email, &user.password).await;
    let resp = app
        .request(Method::POST, "/v1/auth/logout")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({}))
        .send()
        .await
        .expect("logout");
    expect_status(resp, 204).await;
    app.assert_me_status(&user.tokens.access_token, 401).await;

    let third = app.login_ok(&user.email, &user.password).await;
    expect_status(app.logout(&third.access_token, Some(false)).await, 204).await;
    app.assert_me_status(&third.access_token, 401).await;
    // `all: false` is one session only.
    app.assert_me_status(&second.access_token, 200).await;
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let second = app.login_ok(&user.email, &user.password).await;
    let third = app.login_ok(&user.email, &user.password).await;
    let bystander = app.new_user().await;
    expect_status(app.logout(&third.access_token, Some(true)).await, 204).await;
    for pair in [&user.tokens, &second, &third] {
        app.assert_me_status(&pair.access_token, 401).await;
        app.assert_refresh_rejected(&pair.refresh_token).await;
    }
    // Other users are not touched, and the user can log in again.
    app.assert_me_status(&bystander.tokens.access_token, 200)
        .await;
    let again = app.login_ok(&user.email, &user.password).await;
    app.assert_me_status(&again.access_token, 200).await;
}
