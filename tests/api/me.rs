//! GET and PATCH /v1/users/me.

use serde_json::{Value, json};
use user_service_tests::{TestApp, assert_problem, expect_json, unique_email};

use crate::register::assert_user_shape;

#[tokio::test]
async fn me_returns_the_user() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let password = user_service_tests::strong_password();
    let registered = app.register_ok(&email, &password).await;
    let tokens = app.login_ok(&email, &password).await;
    let me = expect_json(app.me(&tokens.access_token).await, 200).await;
    assert_user_shape(&me);
    assert_eq!(me, registered, "GET /me returns the user as registered");
}

#[tokio::test]
async fn patch_changes_the_name() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    let before = expect_json(app.me(token).await, 200).await;
    let patched = expect_json(
        app.patch_me(token, &json!({"name": "Grace Hopper"})).await,
        200,
    )
    .await;
    assert_user_shape(&patched);
    assert_eq!(patched["name"], "Grace Hopper");
    assert_eq!(patched["email"], before["email"]);
    assert_eq!(patched["created_at"], before["created_at"]);
    let updated = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["updated_at"].as_str().expect("updated_at"))
            .expect("RFC 3339")
    };
    assert!(updated(&patched) >= updated(&before));
    let me = expect_json(app.me(token).await, 200).await;
    assert_eq!(me, patched, "the change is stored");
    // 100 characters (200 bytes) is still a valid name.
    let long = "é".repeat(100);
    let patched = expect_json(app.patch_me(token, &json!({"name": long})).await, 200).await;
    assert_eq!(patched["name"], long);
    // An empty patch changes nothing.
    let same = expect_json(app.patch_me(token, &json!({})).await, 200).await;
    assert_eq!(same["name"], long);
}

#[tokio::test]
async fn patch_changes_the_email_and_sessions_survive() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    let new_email = unique_email();
    let patched = expect_json(
        app.patch_me(
            token,
            &json!({"email": format!(" {} ", new_email.to_uppercase())}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["email"], new_email, "trimmed and lowercased");
    // The same access token still works and sees the new email.
    let me = expect_json(app.me(token).await, 200).await;
    assert_eq!(me["email"], new_email);
    // So does the session's refresh token.
    let rotated = app.refresh_ok(&user.tokens.refresh_token).await;
    app.assert_me_status(&rotated.access_token, 200).await;
    // Login follows the email.
    app.login_ok(&new_email, &user.password).await;
    let resp = app.login(&user.email, &user.password).await;
    assert_problem(resp, 401, "invalid_credentials").await;
    // The old email is free again.
    app.register_ok(&user.email, &user_service_tests::strong_password())
        .await;
}

#[tokio::test]
async fn patch_to_a_taken_email_is_409_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let token = &user.tokens.access_token;
    for taken in [other.email.clone(), other.email.to_uppercase()] {
        let resp = app
            .patch_me(token, &json!({"email": taken, "name": "Changed"}))
            .await;
        assert_problem(resp, 409, "email_taken").await;
    }
    let me = expect_json(app.me(token).await, 200).await;
    assert_eq!(me["email"], user.email);
    assert_eq!(me["name"], Value::Null, "a refused patch changes nothing");
    // Patching to one's own email is no conflict.
    expect_json(
        app.patch_me(token, &json!({"email": user.email})).await,
        200,
    )
    .await;
}

#[tokio::test]
async fn patch_to_a_malformed_email_is_400_invalid_email() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for bad in ["", "not-an-email", "a@b"] {
        let resp = app
            .patch_me(&user.tokens.access_token, &json!({"email": bad}))
            .await;
        assert_problem(resp, 400, "invalid_email").await;
    }
}
