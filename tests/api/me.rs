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
async fn patch_refuses_the_email_and_every_field_but_the_name() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    for body in [
        json!({"email": unique_email()}),
        json!({"email": unique_email(), "name": "Changed"}),
        json!({"role": "admin"}),
        json!({"disabled": true}),
        json!({"email_verified": true}),
    ] {
        assert_problem(app.patch_me(token, &body).await, 400, "malformed_request").await;
    }
    let me = expect_json(app.me(token).await, 200).await;
    assert_eq!(
        me["email"], user.email,
        "the email changes only with a confirmation"
    );
    assert_eq!(me["name"], Value::Null, "a refused patch changes nothing");
}
