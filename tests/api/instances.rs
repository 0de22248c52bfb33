//! Two instances on one database, Redis and key file behave as one service.

use serde_json::json;
use user_service_tests::{TestApp, assert_problem, expect_json, expect_status, strong_password};

#[tokio::test]
async fn a_token_from_one_instance_works_on_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    let me = expect_json(b.me(&user.tokens.access_token).await, 200).await;
    assert_eq!(me["id"], user.id);
    assert_eq!(a.jwks().await, b.jwks().await, "one key file, one JWKS");
    // A refresh token from A rotates on B, and the result works on A.
    let rotated = b.refresh_ok(&user.tokens.refresh_token).await;
    a.assert_me_status(&rotated.access_token, 200).await;
    // Registered on B, taken on A.
    let email = user_service_tests::unique_email();
    b.register_ok(&email, &strong_password()).await;
    assert_problem(
        a.register(&email, &strong_password()).await,
        409,
        "email_taken",
    )
    .await;
}

#[tokio::test]
async fn a_logout_on_one_instance_is_seen_by_the_other_at_once() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    b.assert_me_status(&user.tokens.access_token, 200).await;
    expect_status(a.logout(&user.tokens.access_token, None).await, 204).await;
    b.assert_me_status(&user.tokens.access_token, 401).await;
    b.assert_refresh_rejected(&user.tokens.refresh_token).await;

    // Logout-all on B, seen on A.
    let one = a.login_ok(&user.email, &user.password).await;
    let two = b.login_ok(&user.email, &user.password).await;
    a.assert_me_status(&two.access_token, 200).await;
    expect_status(b.logout(&two.access_token, Some(true)).await, 204).await;
    a.assert_me_status(&one.access_token, 401).await;
    a.assert_me_status(&two.access_token, 401).await;
}

#[tokio::test]
async fn reuse_detected_on_one_instance_revokes_the_session_on_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    let newest = a.refresh_ok(&user.tokens.refresh_token).await;
    b.assert_refresh_rejected(&user.tokens.refresh_token).await;
    a.assert_refresh_rejected(&newest.refresh_token).await;
    a.assert_me_status(&newest.access_token, 401).await;
    b.assert_me_status(&newest.access_token, 401).await;
}

#[tokio::test]
async fn a_password_change_on_one_instance_ends_other_sessions_on_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    let other = b.login_ok(&user.email, &user.password).await;
    let new_password = strong_password();
    let resp = a
        .change_password(&user.tokens.access_token, &user.password, &new_password)
        .await;
    expect_status(resp, 204).await;
    b.assert_me_status(&other.access_token, 401).await;
    b.assert_me_status(&user.tokens.access_token, 200).await;
    b.login_ok(&user.email, &new_password).await;
}

/// Each instance remembers the profiles `GET /me` served (see `profiles.rs`); every change
/// made on another instance must show at once all the same.
#[tokio::test]
async fn a_profile_change_on_one_instance_shows_on_the_other_at_once() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    let token = &user.tokens.access_token;
    let first = expect_json(b.me(token).await, 200).await;
    assert_eq!(
        expect_json(b.me(token).await, 200).await,
        first,
        "B remembers it"
    );

    // The user's own change, on A.
    let patched = expect_json(
        a.patch_me(token, &json!({"name": "Grace Hopper"})).await,
        200,
    )
    .await;
    assert_eq!(patched["name"], "Grace Hopper");
    assert_eq!(expect_json(b.me(token).await, 200).await, patched);

    // A password change, on A: the caller's session lives on, `updated_at` moves.
    let new_password = strong_password();
    expect_status(
        a.change_password(token, &user.password, &new_password)
            .await,
        204,
    )
    .await;
    let changed = expect_json(b.me(token).await, 200).await;
    assert_ne!(changed["updated_at"], patched["updated_at"]);
    assert_eq!(changed, expect_json(a.me(token).await, 200).await);

    // An admin's change of the name (no token is cut off by it), on A.
    let by_admin = expect_json(
        a.admin_patch(
            &admin.tokens.access_token,
            &user.id,
            &json!({"name": "G. Hopper"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(by_admin["name"], "G. Hopper");
    let seen = expect_json(b.me(token).await, 200).await;
    assert_eq!(seen["name"], "G. Hopper");
    assert_eq!(seen["updated_at"], by_admin["updated_at"]);
}
