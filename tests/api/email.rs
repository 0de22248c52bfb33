//! Verified emails, the confirmed email change, re-authentication that counts, reset links
//! that die with the account's changes, and security notices (contract v2), end to end: the
//! app sends through its SMTP back end to a real SMTP server the test starts, and the test
//! follows the links in what arrives.

use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use user_service_tests::smtp::unreachable_smtp_url;
use user_service_tests::test_app::unique_admin_email;
use user_service_tests::{
    ReceivedMail, SmtpServer, TestApp, TestAppBuilder, TestUser, assert_problem, eventually,
    expect_json, expect_status, strong_password, unique_email,
};

/// `PUBLIC_BASE_URL` of the apps here: the links must be built on it.
const BASE_URL: &str = "https://app.example.test";
/// How long an email may take to arrive (it is sent after the response).
const MAIL_WAIT: Duration = Duration::from_secs(15);
/// How long to wait before concluding that no (further) email is coming.
const QUIET: Duration = Duration::from_millis(750);

/// Subjects, from `shared/templates/email/*.txt`.
const VERIFY: &str = "Confirm your email address";
const CHANGE_LINK: &str = "Confirm your new email address";
const CHANGE_REQUESTED: &str = "A change of your email address was requested";
const CHANGED: &str = "Your email address was changed";
const PASSWORD_CHANGED: &str = "Your password was changed";
const PASSWORD_RESET: &str = "Your password was reset";
const LOCKOUT: &str = "Sign-in to your account is paused";
const RESET_LINK: &str = "Reset your password";

const VERIFY_PATH: &str = "/v1/auth/email/verify";
const CHANGE_PATH: &str = "/v1/users/me/email";
const RESEND_PATH: &str = "/v1/users/me/email/verification";

// ----- helpers -----

async fn spawn_with(builder: TestAppBuilder) -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    let app = builder.mail_to(&smtp, BASE_URL).spawn().await;
    (app, smtp)
}

async fn spawn() -> (TestApp, SmtpServer) {
    spawn_with(TestApp::builder()).await
}

/// An app with a bootstrap admin, and that admin logged in.
async fn spawn_with_admin(builder: TestAppBuilder) -> (TestApp, SmtpServer, TestUser) {
    let (email, password) = (unique_admin_email(), strong_password());
    let (app, smtp) = spawn_with(builder.bootstrap_admin(&email, &password)).await;
    let admin = app.login_user(&email, &password).await;
    (app, smtp, admin)
}

/// The token of the link to `page` in `mail` (in the text and, the same, in the HTML).
fn token_in(mail: &ReceivedMail, page: &str) -> String {
    let prefix = format!("{BASE_URL}{page}?token=");
    let token = mail.link_token(&prefix);
    // The HTML escapes `/` as `&#x2f;` (valid in an attribute and in text alike).
    let html = mail.html().replace("&#x2f;", "/");
    assert!(
        html.contains(&format!("href=\"{prefix}{token}\"")),
        "the HTML part holds the same link:\n{html}"
    );
    token
}

/// The token of the `n`-th (1-based) email about `subject` to `to`, once it arrived.
async fn nth_token(smtp: &SmtpServer, to: &str, subject: &str, n: usize) -> String {
    let mails = smtp.wait_for_about(to, subject, n, MAIL_WAIT).await;
    token_in(&mails[n - 1], "/verify-email")
}

/// A notice: it arrived, holds no link with a token (text or HTML), and has both parts.
async fn notice(smtp: &SmtpServer, to: &str, subject: &str) -> ReceivedMail {
    let mail = smtp
        .wait_for_about(to, subject, 1, MAIL_WAIT)
        .await
        .remove(0);
    for body in [mail.text(), mail.html()] {
        assert!(!body.contains("token"), "a notice carries no token: {body}");
        assert!(!body.contains(BASE_URL), "a notice carries no link: {body}");
    }
    mail
}

async fn verify(app: &TestApp, token: &str) -> Response {
    app.post_json(VERIFY_PATH, &json!({ "token": token })).await
}

async fn change_email(app: &TestApp, access: &str, new_email: &str, password: &str) -> Response {
    app.request(Method::POST, CHANGE_PATH)
        .bearer_auth(access)
        .json(&json!({ "new_email": new_email, "current_password": password }))
        .send()
        .await
        .expect("request")
}

async fn resend(app: &TestApp, access: &str) -> Response {
    app.request(Method::POST, RESEND_PATH)
        .bearer_auth(access)
        .send()
        .await
        .expect("request")
}

/// Asks for a reset of `email` and returns the token of the `n`-th reset email.
async fn reset_token(app: &TestApp, smtp: &SmtpServer, email: &str, n: usize) -> String {
    expect_status(
        app.post_json("/v1/auth/password/forgot", &json!({ "email": email }))
            .await,
        202,
    )
    .await;
    let mails = smtp.wait_for_about(email, RESET_LINK, n, MAIL_WAIT).await;
    mails[n - 1].link_token(&format!("{BASE_URL}/reset-password?token="))
}

async fn reset(app: &TestApp, token: &str, password: &str) -> Response {
    app.post_json(
        "/v1/auth/password/reset",
        &json!({ "token": token, "password": password }),
    )
    .await
}

/// Asserts that the reset link with `token` no longer works.
async fn assert_dead_reset_link(app: &TestApp, token: &str) {
    assert_problem(
        reset(app, token, &strong_password()).await,
        400,
        "invalid_token",
    )
    .await;
}

/// The caller's account as GET /me shows it.
async fn me(app: &TestApp, access: &str) -> Value {
    expect_json(app.me(access).await, 200).await
}

/// Waits until the user's audit trail holds an event matching `wanted`; returns it.
async fn audited(
    app: &TestApp,
    admin: &TestUser,
    user_id: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/v1/admin/users/{user_id}/audit?limit=100");
    let find = || async {
        let page = expect_json(app.get_authed(&path, &admin.tokens.access_token).await, 200).await;
        page["events"]
            .as_array()
            .and_then(|events| events.iter().find(|e| wanted(e)).cloned())
    };
    eventually(Duration::from_secs(10), || async { find().await.is_some() }).await;
    find().await.unwrap_or_else(|| {
        panic!("no such event in the trail of {user_id}");
    })
}

fn is(event: &Value, kind: &str, outcome: &str, reason: Option<&str>) -> bool {
    event["type"] == kind
        && event["outcome"] == outcome
        && reason.is_none_or(|r| event["reason"] == r)
}

// ----- verification -----

#[tokio::test]
async fn registration_sends_a_link_that_verifies_the_email_once() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let access = &user.tokens.access_token;
    assert_eq!(me(&app, access).await["email_verified"], false);

    let token = nth_token(&smtp, &user.email, VERIFY, 1).await;
    assert_eq!(expect_status(verify(&app, &token).await, 204).await, "");
    let verified = me(&app, access).await;
    assert_eq!(verified["email_verified"], true, "{verified}");
    assert_eq!(verified["email"], user.email);
    // Single use.
    assert_problem(verify(&app, &token).await, 400, "invalid_token").await;
}

#[tokio::test]
async fn verification_links_are_replaced_by_newer_ones_and_expire() {
    let (app, smtp) = spawn_with(TestApp::builder().env("EMAIL_VERIFICATION_TTL_SECONDS", 2)).await;
    let user = app.new_user().await;
    let access = &user.tokens.access_token;
    let first = nth_token(&smtp, &user.email, VERIFY, 1).await;
    expect_status(resend(&app, access).await, 202).await;
    let second = nth_token(&smtp, &user.email, VERIFY, 2).await;
    assert_ne!(first, second);
    assert_problem(verify(&app, &first).await, 400, "invalid_token").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_problem(verify(&app, &second).await, 400, "invalid_token").await;
    assert_eq!(me(&app, access).await["email_verified"], false);
    // Malformed input changes nothing and gets a clear answer.
    assert_problem(verify(&app, "not-a-token").await, 400, "invalid_token").await;
    let resp = app.post_json(VERIFY_PATH, &json!({})).await;
    assert_problem(resp, 400, "malformed_request").await;
}

#[tokio::test]
async fn a_resend_is_limited_per_account_and_silent_once_verified() {
    let (app, smtp) =
        spawn_with(TestApp::builder().env("RATE_LIMIT_VERIFICATION_PER_ACCOUNT_PER_HOUR", 2)).await;
    let user = app.new_user().await;
    let access = &user.tokens.access_token;
    nth_token(&smtp, &user.email, VERIFY, 1).await;
    // Two resends, each link awaited before the next request: the mail goes out after the
    // answer, and only the newest link works, so the last to arrive must be the newest.
    let mut latest = String::new();
    for n in 2..=3 {
        assert_eq!(expect_status(resend(&app, access).await, 202).await, "");
        latest = nth_token(&smtp, &user.email, VERIFY, n).await;
    }
    // The third resend is over the limit: the same answer, and nothing is sent.
    assert_eq!(expect_status(resend(&app, access).await, 202).await, "");
    tokio::time::sleep(QUIET).await;
    assert_eq!(smtp.messages_about(&user.email, VERIFY).len(), 3);

    expect_status(verify(&app, &latest).await, 204).await;
    expect_status(resend(&app, access).await, 202).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        smtp.messages_about(&user.email, VERIFY).len(),
        3,
        "nothing is sent to a verified address"
    );
    // Without a token: 401.
    let resp = app
        .request(Method::POST, RESEND_PATH)
        .send()
        .await
        .expect("request");
    assert_problem(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn required_verification_refuses_the_right_password_only() {
    let (app, smtp) = spawn_with(TestApp::builder().env("REQUIRE_VERIFIED_EMAIL", true)).await;
    let (email, password) = (unique_email(), strong_password());
    app.register_ok(&email, &password).await;
    assert_problem(
        app.login(&email, &password).await,
        403,
        "email_not_verified",
    )
    .await;
    // Without the password nothing is revealed.
    assert_problem(
        app.login(&email, "not the password at all").await,
        401,
        "invalid_credentials",
    )
    .await;
    let token = nth_token(&smtp, &email, VERIFY, 1).await;
    expect_status(verify(&app, &token).await, 204).await;
    let tokens = app.login_ok(&email, &password).await;
    assert_eq!(tokens.user["email_verified"], true);

    // A completed reset verifies the address too (the link proved it).
    let (email, password) = (unique_email(), strong_password());
    app.register_ok(&email, &password).await;
    let token = reset_token(&app, &smtp, &email, 1).await;
    let new_password = strong_password();
    expect_status(reset(&app, &token, &new_password).await, 204).await;
    let tokens = app.login_ok(&email, &new_password).await;
    assert_eq!(tokens.user["email_verified"], true);
}

// ----- email change -----

#[tokio::test]
async fn an_email_change_waits_for_the_link_to_the_new_address() {
    let (app, smtp, admin) = spawn_with_admin(TestApp::builder()).await;
    let user = app.new_user().await;
    let access = &user.tokens.access_token;
    let new_email = unique_email();
    let resp = change_email(
        &app,
        access,
        &format!(" {} ", new_email.to_uppercase()),
        &user.password,
    )
    .await;
    assert_eq!(
        expect_json(resp, 202).await,
        json!({ "pending_email": new_email }),
        "trimmed and lowercased"
    );
    assert_eq!(me(&app, access).await["email"], user.email, "not yet");

    let requested = notice(&smtp, &user.email, CHANGE_REQUESTED).await;
    assert!(
        requested.text().contains(&new_email),
        "{}",
        requested.text()
    );
    let mails = smtp
        .wait_for_about(&new_email, CHANGE_LINK, 1, MAIL_WAIT)
        .await;
    let token = token_in(&mails[0], "/verify-email");
    // An older reset link of the account dies with the change.
    let old_reset = reset_token(&app, &smtp, &user.email, 1).await;

    expect_status(verify(&app, &token).await, 204).await;
    let changed = me(&app, access).await;
    assert_eq!(changed["email"], new_email, "{changed}");
    assert_eq!(changed["email_verified"], true, "{changed}");
    // Sessions survive: the access token above, and the refresh token.
    app.refresh_ok(&user.tokens.refresh_token).await;
    let done = notice(&smtp, &user.email, CHANGED).await;
    assert!(done.text().contains(&new_email), "{}", done.text());
    assert!(smtp.messages_about(&new_email, CHANGED).is_empty());
    assert_dead_reset_link(&app, &old_reset).await;
    // Login follows the email; the old one is free again.
    app.login_ok(&new_email, &user.password).await;
    assert_problem(
        app.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.register_ok(&user.email, &strong_password()).await;
    // The trail records both addresses, at the request and at the change.
    for kind in ["email_change_requested", "email_changed"] {
        let event = audited(&app, &admin, &user.id, |e| is(e, kind, "success", None)).await;
        assert_eq!(event["old_email"], user.email, "{event}");
        assert_eq!(event["new_email"], new_email, "{event}");
    }
}

#[tokio::test]
async fn an_email_change_checks_the_address_then_the_password_and_changes_nothing() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let access = &user.tokens.access_token;
    let invalid = assert_problem(
        change_email(&app, access, "not-an-email", "whatever").await,
        400,
        "invalid_email",
    )
    .await;
    assert_eq!(invalid["errors"][0]["field"], "new_email", "{invalid}");
    // The address is checked before the password.
    assert_problem(
        change_email(&app, access, &other.email.to_uppercase(), "wrong").await,
        409,
        "email_taken",
    )
    .await;
    let own = assert_problem(
        change_email(&app, access, &user.email, &user.password).await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(own["errors"][0]["field"], "new_email", "{own}");
    let fresh = unique_email();
    assert_problem(
        change_email(&app, access, &fresh, "not the password at all").await,
        403,
        "invalid_credentials",
    )
    .await;
    let resp = app
        .request(Method::POST, CHANGE_PATH)
        .bearer_auth(access)
        .json(&json!({ "new_email": fresh }))
        .send()
        .await
        .expect("request");
    assert_problem(resp, 400, "malformed_request").await;
    tokio::time::sleep(QUIET).await;
    assert!(smtp.messages_to(&fresh).is_empty(), "no link went out");
    assert!(
        smtp.messages_about(&user.email, CHANGE_REQUESTED)
            .is_empty()
    );
    assert_eq!(me(&app, access).await["email"], user.email);
}

#[tokio::test]
async fn a_newer_request_replaces_the_pending_change() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let access = &user.tokens.access_token;
    let (first, second) = (unique_email(), unique_email());
    expect_json(
        change_email(&app, access, &first, &user.password).await,
        202,
    )
    .await;
    let first_token = nth_token(&smtp, &first, CHANGE_LINK, 1).await;
    expect_json(
        change_email(&app, access, &second, &user.password).await,
        202,
    )
    .await;
    let second_token = nth_token(&smtp, &second, CHANGE_LINK, 1).await;
    assert_problem(verify(&app, &first_token).await, 400, "invalid_token").await;
    expect_status(verify(&app, &second_token).await, 204).await;
    assert_eq!(me(&app, access).await["email"], second);
}

#[tokio::test]
async fn concurrent_confirmations_change_the_email_once() {
    let (app, smtp, admin) = spawn_with_admin(TestApp::builder()).await;
    let user = app.new_user().await;
    let new_email = unique_email();
    expect_json(
        change_email(&app, &user.tokens.access_token, &new_email, &user.password).await,
        202,
    )
    .await;
    let token = nth_token(&smtp, &new_email, CHANGE_LINK, 1).await;
    let answers = join_all((0..8).map(|_| verify(&app, &token))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        me(&app, &user.tokens.access_token).await["email"],
        new_email
    );
    // One change, one notice.
    notice(&smtp, &user.email, CHANGED).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(smtp.messages_about(&user.email, CHANGED).len(), 1);
    let trail = expect_json(
        app.get_authed(
            &format!("/v1/admin/users/{}/audit?limit=100", user.id),
            &admin.tokens.access_token,
        )
        .await,
        200,
    )
    .await;
    let changes = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| is(e, "email_changed", "success", None))
        .count();
    assert_eq!(changes, 1, "{trail}");
}

#[tokio::test]
async fn an_address_taken_meanwhile_is_409_and_spends_the_link() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let wanted = unique_email();
    expect_json(
        change_email(&app, &user.tokens.access_token, &wanted, &user.password).await,
        202,
    )
    .await;
    let token = nth_token(&smtp, &wanted, CHANGE_LINK, 1).await;
    app.register_ok(&wanted, &strong_password()).await;
    assert_problem(verify(&app, &token).await, 409, "email_taken").await;
    assert_problem(verify(&app, &token).await, 400, "invalid_token").await;
    assert_eq!(
        me(&app, &user.tokens.access_token).await["email"],
        user.email
    );
}

#[tokio::test]
async fn a_password_change_or_reset_cancels_a_pending_email_change() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let access = &user.tokens.access_token;
    let first = unique_email();
    expect_json(
        change_email(&app, access, &first, &user.password).await,
        202,
    )
    .await;
    let token = nth_token(&smtp, &first, CHANGE_LINK, 1).await;
    let password = strong_password();
    expect_status(
        app.change_password(access, &user.password, &password).await,
        204,
    )
    .await;
    assert_problem(verify(&app, &token).await, 400, "invalid_token").await;

    let second = unique_email();
    expect_json(change_email(&app, access, &second, &password).await, 202).await;
    let token = nth_token(&smtp, &second, CHANGE_LINK, 1).await;
    let reset_link = reset_token(&app, &smtp, &user.email, 1).await;
    expect_status(reset(&app, &reset_link, &strong_password()).await, 204).await;
    assert_problem(verify(&app, &token).await, 400, "invalid_token").await;
}

// ----- re-authentication, lockout, reset links -----

/// The attack of a stolen access token: no step takes the account.
#[tokio::test]
async fn a_stolen_access_token_cannot_take_the_account() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let stolen = &user.tokens.access_token;
    let attacker_email = unique_email();
    // No email change without the password.
    assert_problem(
        app.patch_me(stolen, &json!({ "email": attacker_email }))
            .await,
        400,
        "malformed_request",
    )
    .await;
    // Guessing the password through re-authentication locks the account like logins do.
    for _ in 0..5 {
        assert_problem(
            change_email(&app, stolen, &attacker_email, "a wrong guess!").await,
            403,
            "invalid_credentials",
        )
        .await;
    }
    let locked = change_email(&app, stolen, &attacker_email, &user.password).await;
    assert!(locked.headers().contains_key("retry-after"), "{locked:?}");
    assert_problem(locked, 429, "rate_limited").await;
    assert_problem(
        app.change_password(stolen, &user.password, &strong_password())
            .await,
        429,
        "rate_limited",
    )
    .await;
    assert_problem(
        app.login(&user.email, &user.password).await,
        429,
        "rate_limited",
    )
    .await;
    // The owner hears of the lockout; the attacker's address got nothing.
    notice(&smtp, &user.email, LOCKOUT).await;
    tokio::time::sleep(QUIET).await;
    assert!(smtp.messages_to(&attacker_email).is_empty());
    assert_eq!(me(&app, stolen).await["email"], user.email);

    // A reset by the owner clears the lockout at once.
    let token = reset_token(&app, &smtp, &user.email, 1).await;
    let password = strong_password();
    expect_status(reset(&app, &token, &password).await, 204).await;
    app.login_ok(&user.email, &password).await;
}

#[tokio::test]
async fn re_authentication_counts_toward_the_per_ip_login_limit() {
    let (app, _smtp, admin) =
        spawn_with_admin(TestApp::builder().env("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", 3)).await;
    let user = app.new_user().await;
    let ip = user_service_tests::random_client_ip();
    let attempt = |password: &'static str| {
        app.request_from(&ip, Method::PUT, "/v1/users/me/password")
            .bearer_auth(&user.tokens.access_token)
            .json(&json!({ "current_password": password, "new_password": strong_password() }))
            .send()
    };
    for _ in 0..3 {
        let resp = attempt("a wrong guess!").await.expect("request");
        assert_problem(resp, 403, "invalid_credentials").await;
    }
    let resp = attempt("a wrong guess!").await.expect("request");
    assert_problem(resp, 429, "rate_limited").await;
    // The same IP's logins are limited too.
    assert_problem(
        app.login_from(&ip, &user.email, &user.password).await,
        429,
        "rate_limited",
    )
    .await;
    // The refusals name the account in its trail (the per-IP limit and the wrong password).
    audited(&app, &admin, &user.id, |e| {
        is(e, "password_change", "failure", Some("rate_limited"))
    })
    .await;
    audited(&app, &admin, &user.id, |e| {
        is(e, "login", "failure", Some("rate_limited"))
    })
    .await;
    audited(&app, &admin, &user.id, |e| {
        is(
            e,
            "password_change",
            "failure",
            Some("wrong_current_password"),
        )
    })
    .await;
}

#[tokio::test]
async fn a_login_refused_by_the_lockout_is_in_the_accounts_trail() {
    let (app, _smtp, admin) = spawn_with_admin(TestApp::builder()).await;
    let user = app.new_user().await;
    for _ in 0..5 {
        assert_problem(
            app.login(&user.email, "a wrong guess!").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    assert_problem(
        app.login(&user.email, &user.password).await,
        429,
        "rate_limited",
    )
    .await;
    audited(&app, &admin, &user.id, |e| {
        is(e, "login", "failure", Some("locked_out"))
    })
    .await;
    let refused = audited(&app, &admin, &user.id, |e| {
        is(e, "login", "failure", Some("account_locked"))
    })
    .await;
    assert!(refused["ip"].is_string(), "{refused}");
}

#[tokio::test]
async fn reset_links_die_with_a_password_change_a_disable_and_a_delete() {
    let (app, smtp, admin) = spawn_with_admin(TestApp::builder()).await;
    let admin_token = &admin.tokens.access_token;

    let user = app.new_user().await;
    let token = reset_token(&app, &smtp, &user.email, 1).await;
    let password = strong_password();
    expect_status(
        app.change_password(&user.tokens.access_token, &user.password, &password)
            .await,
        204,
    )
    .await;
    assert_dead_reset_link(&app, &token).await;

    // Disabled, then enabled again: the link asked for before stays dead.
    let token = reset_token(&app, &smtp, &user.email, 2).await;
    for disabled in [true, false] {
        expect_json(
            app.admin_patch(admin_token, &user.id, &json!({ "disabled": disabled }))
                .await,
            200,
        )
        .await;
    }
    assert_dead_reset_link(&app, &token).await;

    let token = reset_token(&app, &smtp, &user.email, 3).await;
    expect_status(app.admin_delete(admin_token, &user.id).await, 204).await;
    // Even once the email is registered again.
    app.register_ok(&user.email, &strong_password()).await;
    assert_dead_reset_link(&app, &token).await;
}

// ----- notices -----

#[tokio::test]
async fn a_password_change_and_a_reset_send_notices_without_a_token() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let password = strong_password();
    expect_status(
        app.change_password(&user.tokens.access_token, &user.password, &password)
            .await,
        204,
    )
    .await;
    let changed = notice(&smtp, &user.email, PASSWORD_CHANGED).await;
    assert!(changed.text().contains(&user.email), "{}", changed.text());
    let token = reset_token(&app, &smtp, &user.email, 1).await;
    expect_status(reset(&app, &token, &strong_password()).await, 204).await;
    notice(&smtp, &user.email, PASSWORD_RESET).await;
}

#[tokio::test]
async fn a_mail_outage_neither_fails_nor_undoes_a_change() {
    let app = TestApp::builder()
        .env("SMTP_URL", unreachable_smtp_url())
        .spawn()
        .await;
    let user = app.new_user().await;
    let password = strong_password();
    expect_status(
        app.change_password(&user.tokens.access_token, &user.password, &password)
            .await,
        204,
    )
    .await;
    app.login_ok(&user.email, &password).await;
    expect_json(
        change_email(&app, &user.tokens.access_token, &unique_email(), &password).await,
        202,
    )
    .await;
}

// ----- admin -----

#[tokio::test]
async fn admins_set_email_verification_and_remove_two_factor() {
    let (app, smtp, admin) = spawn_with_admin(TestApp::builder()).await;
    let token = &admin.tokens.access_token;
    let body = |email_verified: Option<bool>| {
        let mut body = json!({ "email": unique_email(), "password": strong_password() });
        if let Some(verified) = email_verified {
            body["email_verified"] = json!(verified);
        }
        body
    };
    let vouched = expect_json(app.admin_create(token, &body(Some(true))).await, 201).await;
    assert_eq!(vouched["email_verified"], true, "{vouched}");
    let unverified = expect_json(app.admin_create(token, &body(None)).await, 201).await;
    assert_eq!(unverified["email_verified"], false, "{unverified}");
    let id = unverified["id"].as_str().expect("id");
    let old_email = unverified["email"].as_str().expect("email");
    // The unverified address gets a link; the vouched-for one none.
    nth_token(&smtp, old_email, VERIFY, 1).await;

    // An admin's email change applies at once, unverified unless the request says so.
    let new_email = unique_email();
    let moved = expect_json(
        app.admin_patch(token, id, &json!({ "email": new_email }))
            .await,
        200,
    )
    .await;
    assert_eq!(moved["email"], new_email);
    assert_eq!(moved["email_verified"], false);
    notice(&smtp, old_email, CHANGED).await;
    nth_token(&smtp, &new_email, VERIFY, 1).await;
    let vouched_move = expect_json(
        app.admin_patch(
            token,
            id,
            &json!({ "email": unique_email(), "email_verified": true }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(vouched_move["email_verified"], true);
    let unmarked = expect_json(
        app.admin_patch(token, id, &json!({ "email_verified": false }))
            .await,
        200,
    )
    .await;
    assert_eq!(unmarked["email_verified"], false);

    // Two-factor login can be removed by an admin, never turned on.
    let refused = assert_problem(
        app.admin_patch(token, id, &json!({ "mfa_enabled": true }))
            .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "mfa_enabled", "{refused}");
    let off = expect_json(
        app.admin_patch(token, id, &json!({ "mfa_enabled": false }))
            .await,
        200,
    )
    .await;
    assert_eq!(off["mfa_enabled"], false);
    let moved_event = audited(&app, &admin, id, |e| {
        is(e, "admin_user_updated", "success", None) && e["new_email"] == new_email
    })
    .await;
    assert_eq!(moved_event["old_email"], old_email, "{moved_event}");
}
