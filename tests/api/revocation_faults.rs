//! Revocations that meet an outage never half-happen (contract, Tokens): a 2xx is in full
//! effect; a 503 may be repeated and the repeat completes it; a session whose access tokens
//! are refused never mints an accepted access token again.
//!
//! The fault is real and sits exactly where it hurts: a deferred constraint trigger that the
//! test installs in the app's database makes the commit of a session revocation (or of an
//! admin's change) fail with `query_canceled`, an outage to the service, *after* the service
//! wrote its Redis markers. Two instances share the database and Redis, as in a deployment:
//! the revocation is attempted on one, and its effects are checked on the other.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use user_service_tests::{
    SmtpServer, TestApp, TestUser, assert_problem, expect_status, strong_password,
};

const RESET: &str = "/v1/auth/password/reset";

/// Makes every commit that sets `table.column` fail like an outage, until [`heal`].
async fn inject_commit_fault(app: &TestApp, table: &str, column: &str) {
    let db = app.database().await;
    db.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION test_injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = 'query_canceled'; END $$;
         CREATE CONSTRAINT TRIGGER test_fault_{table} AFTER UPDATE OF {column} ON {table}
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_injected_fault();"
    ))
    .await
    .expect("install the fault");
}

/// Removes the fault of [`inject_commit_fault`].
async fn heal(app: &TestApp, table: &str) {
    let db = app.database().await;
    db.batch_execute(&format!("DROP TRIGGER test_fault_{table} ON {table}"))
        .await
        .expect("remove the fault");
}

/// Whether Postgres has revoked the session of `access_token`.
async fn revoked_in_postgres(app: &TestApp, access_token: &str) -> bool {
    let sid = claim(access_token, "sid");
    let db = app.database().await;
    let row = db
        .query_one(
            "SELECT revoked_at IS NOT NULL FROM sessions WHERE id = $1::text::uuid",
            &[&sid],
        )
        .await
        .expect("the session row");
    row.get(0)
}

/// A claim of a JWT, read without verifying it (the test issued nothing: only reads).
fn claim(token: &str, name: &str) -> String {
    let claims = user_service_tests::jwt::claims_of(token);
    claims[name]
        .as_str()
        .unwrap_or_else(|| panic!("claim {name} in {claims}"))
        .to_owned()
}

/// A refresh of a session that a revocation ended (perhaps only in Redis so far): never an
/// accepted token. While the fault lasts the service cannot finish the revocation (503);
/// afterwards it finishes it and refuses (401).
async fn assert_refresh_mints_nothing(app: &TestApp, refresh_token: &str, when: &str) {
    let response = app.refresh(refresh_token).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(
        status == 401 || status == 503,
        "{when}: a refresh of an ended session answered {status} {body}"
    );
    if status == 401 {
        assert_eq!(body["code"], "invalid_refresh_token", "{when}");
    }
}

/// An app and a sibling instance (same database, Redis and keys).
async fn two_instances() -> (TestApp, TestApp) {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    (a, b)
}

#[tokio::test]
async fn a_logout_cut_short_is_finished_by_its_repeat_and_never_comes_back() {
    let (a, b) = two_instances().await;
    let user = a.new_user().await;
    let bystander = b.login_ok(&user.email, &user.password).await;

    inject_commit_fault(&a, "sessions", "revoked_at").await;
    let resp = a.logout(&user.tokens.access_token, None).await;
    assert_problem(resp, 503, "unavailable").await;
    // The marker is written: the session's access token is refused on every instance...
    b.assert_me_status(&user.tokens.access_token, 401).await;
    a.assert_me_status(&user.tokens.access_token, 401).await;
    // ...and its refresh token mints nothing that could be accepted.
    assert_refresh_mints_nothing(&b, &user.tokens.refresh_token, "during the fault").await;
    assert!(!revoked_in_postgres(&a, &user.tokens.access_token).await);
    // The marker outlives the access-token lifetime until Postgres has the revocation: it
    // cannot expire and let the session come back.
    let marker = format!(
        "{}revoked:session:{}",
        a.redis_prefix(),
        claim(&user.tokens.access_token, "sid")
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&marker)
        .query_async(&mut a.redis().await)
        .await
        .expect("TTL");
    assert!(
        ttl > 30 * 24 * 3600,
        "a pending marker lives as long as a session can, not {ttl} s"
    );

    heal(&a, "sessions").await;
    // The repeat, with the token the first attempt already cut off, completes it.
    expect_status(b.logout(&user.tokens.access_token, None).await, 204).await;
    assert!(revoked_in_postgres(&a, &user.tokens.access_token).await);
    a.assert_refresh_rejected(&user.tokens.refresh_token).await;
    b.assert_me_status(&user.tokens.access_token, 401).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(&marker)
        .query_async(&mut a.redis().await)
        .await
        .expect("TTL");
    assert!(
        (1..=15 * 60 + 60).contains(&ttl),
        "once committed, the marker lives an access-token lifetime: {ttl} s"
    );
    // A second repeat has nothing left to finish: a revoked token, as always.
    assert_problem(
        b.logout(&user.tokens.access_token, None).await,
        401,
        "unauthorized",
    )
    .await;
    // The other session never noticed.
    a.assert_me_status(&bystander.access_token, 200).await;
    a.refresh_ok(&bystander.refresh_token).await;
}

#[tokio::test]
async fn a_refresh_finishes_a_logout_cut_short() {
    let (a, b) = two_instances().await;
    let user = a.new_user().await;
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    assert_problem(
        a.logout(&user.tokens.access_token, None).await,
        503,
        "unavailable",
    )
    .await;
    heal(&a, "sessions").await;
    // No repeat of the logout: the session's own refresh finds the marker and finishes it.
    let resp = b.refresh(&user.tokens.refresh_token).await;
    assert_problem(resp, 401, "invalid_refresh_token").await;
    assert!(revoked_in_postgres(&a, &user.tokens.access_token).await);
    a.assert_refresh_rejected(&user.tokens.refresh_token).await;
}

#[tokio::test]
async fn a_logout_all_cut_short_is_finished_by_its_repeat() {
    let (a, b) = two_instances().await;
    let user = a.new_user().await;
    let second = b.login_ok(&user.email, &user.password).await;
    let third = a.login_ok(&user.email, &user.password).await;
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    let resp = a.logout(&user.tokens.access_token, Some(true)).await;
    assert_problem(resp, 503, "unavailable").await;
    for (pair, name) in [
        (&user.tokens, "first"),
        (&second, "second"),
        (&third, "third"),
    ] {
        b.assert_me_status(&pair.access_token, 401).await;
        assert_refresh_mints_nothing(&b, &pair.refresh_token, name).await;
    }
    heal(&a, "sessions").await;
    expect_status(b.logout(&user.tokens.access_token, Some(true)).await, 204).await;
    for pair in [&user.tokens, &second, &third] {
        assert!(revoked_in_postgres(&a, &pair.access_token).await);
        a.assert_refresh_rejected(&pair.refresh_token).await;
        a.assert_me_status(&pair.access_token, 401).await;
    }
    // A new login is a new session, untouched.
    let again = b.login_ok(&user.email, &user.password).await;
    a.assert_me_status(&again.access_token, 200).await;
}

#[tokio::test]
async fn a_password_change_cut_short_is_finished_by_its_repeat() {
    let (a, b) = two_instances().await;
    let user = a.new_user().await;
    let other = b.login_ok(&user.email, &user.password).await;
    let new_password = strong_password();
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    let resp = a
        .change_password(&user.tokens.access_token, &user.password, &new_password)
        .await;
    assert_problem(resp, 503, "unavailable").await;
    // The other session is dead for good; this one and the old password still work.
    b.assert_me_status(&other.access_token, 401).await;
    assert_refresh_mints_nothing(&b, &other.refresh_token, "during the fault").await;
    a.assert_me_status(&user.tokens.access_token, 200).await;
    heal(&a, "sessions").await;
    let resp = b
        .change_password(&user.tokens.access_token, &user.password, &new_password)
        .await;
    expect_status(resp, 204).await;
    assert!(revoked_in_postgres(&a, &other.access_token).await);
    a.assert_refresh_rejected(&other.refresh_token).await;
    a.assert_me_status(&user.tokens.access_token, 200).await;
    a.login_ok(&user.email, &new_password).await;
}

#[tokio::test]
async fn a_password_reset_cut_short_is_finished_by_its_repeat() {
    let smtp = SmtpServer::start().await;
    smtp.keep_only("Reset your password");
    let a = TestApp::builder()
        .env("SMTP_URL", smtp.url())
        .env("PUBLIC_BASE_URL", "https://app.example.test")
        .spawn()
        .await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    expect_status(
        a.post_json("/v1/auth/password/forgot", &json!({"email": user.email}))
            .await,
        202,
    )
    .await;
    let mail = smtp.wait_for(&user.email, Duration::from_secs(15)).await;
    let text = mail.text();
    let at = text.find("token=").expect("a link with a token") + "token=".len();
    let token: String = text[at..].chars().take(43).collect();
    let new_password = strong_password();
    let body = json!({"token": token, "password": new_password});
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    assert_problem(a.post_json(RESET, &body).await, 503, "unavailable").await;
    b.assert_me_status(&user.tokens.access_token, 401).await;
    assert_refresh_mints_nothing(&b, &user.tokens.refresh_token, "during the fault").await;
    heal(&a, "sessions").await;
    // The token was not spent by the failed attempt: the repeat completes the reset.
    expect_status(b.post_json(RESET, &body).await, 204).await;
    assert!(revoked_in_postgres(&a, &user.tokens.access_token).await);
    a.assert_refresh_rejected(&user.tokens.refresh_token).await;
    a.login_ok(&user.email, &new_password).await;
}

/// The admin's change (or delete) of `user`.
async fn admin_send(
    app: &TestApp,
    admin: &TestUser,
    user: &TestUser,
    change: &Value,
    delete: bool,
) -> reqwest::Response {
    if delete {
        app.admin_delete(&admin.tokens.access_token, &user.id).await
    } else {
        app.admin_patch(&admin.tokens.access_token, &user.id, change)
            .await
    }
}

/// An admin, a user with two sessions, and the admin's change that meets the fault.
async fn admin_change_cut_short(change: Value, delete: bool) {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    let second = b.login_ok(&user.email, &user.password).await;
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    assert_problem(
        admin_send(&a, &admin, &user, &change, delete).await,
        503,
        "unavailable",
    )
    .await;
    for (pair, name) in [(&user.tokens, "first"), (&second, "second")] {
        b.assert_me_status(&pair.access_token, 401).await;
        assert_refresh_mints_nothing(&b, &pair.refresh_token, name).await;
    }
    heal(&a, "sessions").await;
    let resp = admin_send(&b, &admin, &user, &change, delete).await;
    assert!(
        resp.status().is_success(),
        "the admin's repeat: {}",
        resp.status()
    );
    for pair in [&user.tokens, &second] {
        assert!(revoked_in_postgres(&a, &pair.access_token).await);
        a.assert_refresh_rejected(&pair.refresh_token).await;
    }
    let resp = a.login(&user.email, &user.password).await;
    assert_problem(resp, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn a_disable_cut_short_is_finished_by_its_repeat() {
    admin_change_cut_short(json!({"disabled": true}), false).await;
}

#[tokio::test]
async fn a_delete_cut_short_is_finished_by_its_repeat() {
    admin_change_cut_short(Value::Null, true).await;
}

#[tokio::test]
async fn a_role_change_cut_short_ends_no_session_and_its_repeat_applies_it() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    inject_commit_fault(&a, "users", "role").await;
    let resp = a
        .admin_patch(
            &admin.tokens.access_token,
            &user.id,
            &json!({"role": "admin"}),
        )
        .await;
    assert_problem(resp, 503, "unavailable").await;
    // Tokens issued before are cut off; the session lives on (a role change ends none), and
    // its refresh mints a token with the role Postgres holds: still `user`.
    b.assert_me_status(&user.tokens.access_token, 401).await;
    let refreshed = b.refresh_ok(&user.tokens.refresh_token).await;
    assert_eq!(claim(&refreshed.access_token, "role"), "user");
    a.assert_me_status(&refreshed.access_token, 200).await;
    heal(&a, "users").await;
    let resp = b
        .admin_patch(
            &admin.tokens.access_token,
            &user.id,
            &json!({"role": "admin"}),
        )
        .await;
    expect_status(resp, 200).await;
    a.assert_me_status(&refreshed.access_token, 401).await;
    let promoted = a.refresh_ok(&refreshed.refresh_token).await;
    assert_eq!(claim(&promoted.access_token, "role"), "admin");
}

#[tokio::test]
async fn a_logout_without_redis_changes_nothing_and_its_repeat_completes_it() {
    let app = TestApp::builder().redis_via_proxy().spawn().await;
    let user = app.new_user().await;
    app.redis_proxy().cut();
    assert_problem(
        app.logout(&user.tokens.access_token, None).await,
        503,
        "unavailable",
    )
    .await;
    app.redis_proxy().restore();
    // Nothing happened: the session works in full.
    app.assert_me_status(&user.tokens.access_token, 200).await;
    assert!(!revoked_in_postgres(&app, &user.tokens.access_token).await);
    expect_status(app.logout(&user.tokens.access_token, None).await, 204).await;
    app.assert_me_status(&user.tokens.access_token, 401).await;
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
}

// ----- the refresh grace window (REFRESH_REUSE_GRACE_SECONDS) -----

async fn refresh_status(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app.refresh(token).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_a_new_pair_and_the_lost_one_dies() {
    let app = TestApp::builder()
        .env("REFRESH_REUSE_GRACE_SECONDS", 30)
        .spawn()
        .await;
    let user = app.new_user().await;
    let lost = app.refresh_ok(&user.tokens.refresh_token).await;
    // The client never saw `lost` and presents its token again.
    let retried = app.refresh_ok(&user.tokens.refresh_token).await;
    app.assert_me_status(&retried.access_token, 200).await;
    // The successor of the first attempt stops working; the session goes on.
    let (status, body) = refresh_status(&app, &lost.refresh_token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_refresh_token"))
    );
    app.assert_me_status(&retried.access_token, 200).await;
    let next = app.refresh_ok(&retried.refresh_token).await;
    app.assert_me_status(&next.access_token, 200).await;
    // Once its successor was used (`retried` was spent for `next`), the original token
    // again is reuse, even within the window: the session ends.
    let (status, _) = refresh_status(&app, &user.tokens.refresh_token).await;
    assert_eq!(status, 401);
    app.assert_me_status(&next.access_token, 401).await;
    app.assert_refresh_rejected(&next.refresh_token).await;
}

#[tokio::test]
async fn outside_the_grace_window_a_retry_is_reuse() {
    let app = TestApp::builder()
        .env("REFRESH_REUSE_GRACE_SECONDS", 1)
        .spawn()
        .await;
    let user = app.new_user().await;
    let successor = app.refresh_ok(&user.tokens.refresh_token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = refresh_status(&app, &user.tokens.refresh_token).await;
    assert_eq!(status, 401);
    app.assert_refresh_rejected(&successor.refresh_token).await;
    app.assert_me_status(&successor.access_token, 401).await;
}

#[tokio::test]
async fn without_a_grace_window_a_retry_is_reuse() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let successor = app.refresh_ok(&user.tokens.refresh_token).await;
    let (status, _) = refresh_status(&app, &user.tokens.refresh_token).await;
    assert_eq!(status, 401);
    app.assert_refresh_rejected(&successor.refresh_token).await;
}

#[tokio::test]
async fn concurrent_retries_leave_exactly_one_live_refresh_token() {
    let a = TestApp::builder()
        .env("REFRESH_REUSE_GRACE_SECONDS", 30)
        .spawn()
        .await;
    let b = a.spawn_sibling().await;
    let user: TestUser = a.new_user().await;
    let first = a.refresh_ok(&user.tokens.refresh_token).await;
    let token = user.tokens.refresh_token.clone();
    let retries = join_all((0..8).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let token = token.clone();
        async move { refresh_status(app, &token).await }
    }))
    .await;
    let mut candidates = vec![first.refresh_token.clone()];
    for (status, body) in &retries {
        assert_eq!(*status, 200, "a retry within the window: {body}");
        candidates.push(
            body["refresh_token"]
                .as_str()
                .expect("a refresh token")
                .to_owned(),
        );
    }
    // Try every token handed out: exactly one is live (the dead ones are unknown, not
    // reuse, so trying them does not end the session).
    let mut live = 0;
    for candidate in &candidates {
        let (status, body) = refresh_status(&a, candidate).await;
        match status {
            200 => live += 1,
            401 => assert_eq!(body["code"], "invalid_refresh_token"),
            other => panic!("unexpected {other} {body}"),
        }
    }
    assert_eq!(live, 1, "exactly one live refresh token per session");
}

/// `DELETE /v1/users/me/sessions/{id}` cut short: repeated, it completes; for one's own
/// session the caller's token is refused already, and the repeat with that same token
/// completes the deletion (204).
#[tokio::test]
async fn a_session_deletion_cut_short_is_finished_by_its_repeat() {
    let (a, b) = two_instances().await;
    let user = a.new_user().await;
    let other = b.login_ok(&user.email, &user.password).await;
    let bystander = b.login_ok(&user.email, &user.password).await;
    let token = &user.tokens.access_token;
    let delete = |app: &TestApp, sid: String| {
        app.request(
            reqwest::Method::DELETE,
            &format!("/v1/users/me/sessions/{sid}"),
        )
        .bearer_auth(token)
        .send()
    };

    // Another session of the caller.
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    let resp = delete(&a, claim(&other.access_token, "sid"))
        .await
        .expect("request");
    assert_problem(resp, 503, "unavailable").await;
    b.assert_me_status(&other.access_token, 401).await;
    assert_refresh_mints_nothing(&b, &other.refresh_token, "during the fault").await;
    heal(&a, "sessions").await;
    let resp = delete(&b, claim(&other.access_token, "sid"))
        .await
        .expect("request");
    expect_status(resp, 204).await;
    assert!(revoked_in_postgres(&a, &other.access_token).await);
    b.assert_refresh_rejected(&other.refresh_token).await;

    // The caller's own session.
    inject_commit_fault(&a, "sessions", "revoked_at").await;
    let resp = delete(&a, claim(token, "sid")).await.expect("request");
    assert_problem(resp, 503, "unavailable").await;
    b.assert_me_status(token, 401).await;
    assert_refresh_mints_nothing(&b, &user.tokens.refresh_token, "during the fault").await;
    assert!(!revoked_in_postgres(&a, token).await);
    heal(&a, "sessions").await;
    let resp = delete(&b, claim(token, "sid")).await.expect("request");
    expect_status(resp, 204).await;
    assert!(revoked_in_postgres(&a, token).await);
    b.assert_refresh_rejected(&user.tokens.refresh_token).await;
    // Done: another repeat is a plain revoked token.
    let resp = delete(&b, claim(token, "sid")).await.expect("request");
    assert_problem(resp, 401, "unauthorized").await;
    // The session nobody deleted lives on.
    a.assert_me_status(&bystander.access_token, 200).await;
}
