//! PUT /v1/users/me/password: this session stays, every other one ends.

use user_service_tests::{TestApp, assert_problem, expect_status, strong_password};

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_only() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    let bystander = app.new_user().await;
    let new_password = strong_password();
    let resp = app
        .change_password(&user.tokens.access_token, &user.password, &new_password)
        .await;
    expect_status(resp, 204).await;

    // This session keeps working, refresh included.
    app.assert_me_status(&user.tokens.access_token, 200).await;
    let rotated = app.refresh_ok(&user.tokens.refresh_token).await;
    app.assert_me_status(&rotated.access_token, 200).await;
    // The other session is over.
    app.assert_me_status(&other.access_token, 401).await;
    app.assert_refresh_rejected(&other.refresh_token).await;
    // Other users are not touched.
    app.assert_me_status(&bystander.tokens.access_token, 200)
        .await;
    // Only the new password logs in.
    let resp = app.login(&user.email, &user.password).await;
    assert_problem(resp, 401, "invalid_credentials").await;
    app.login_ok(&user.email, &new_password).await;
}

#[tokio::test]
async fn a_weak_new_password_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    for weak in ["short", "password123"] {
        let resp = app
            .change_password(&user.tokens.access_token, &user.password, weak)
            .await;
        let body = assert_problem(resp, 400, "weak_password").await;
        assert!(!body["detail"].as_str().unwrap_or("").trim().is_empty());
    }
    app.assert_me_status(&other.access_token, 200).await;
    app.refresh_ok(&other.refresh_token).await;
    app.login_ok(&user.email, &user.password).await;
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    let new_password = strong_password();
    let resp = app
        .change_password(
            &user.tokens.access_token,
            "wrong-current-password",
            &new_password,
        )
        .await;
    assert_problem(resp, 403, "invalid_credentials").await;
    // The bearer token itself was fine and still is.
    app.assert_me_status(&user.tokens.access_token, 200).await;
    app.assert_me_status(&other.access_token, 200).await;
    app.login_ok(&user.email, &user.password).await;
    let resp = app.login(&user.email, &new_password).await;
    assert_problem(resp, 401, "invalid_credentials").await;
}
