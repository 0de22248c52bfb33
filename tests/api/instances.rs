//! Two instances on one database, Redis and key file behave as one service.

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
