//! Password reset by email (contract: `POST /v1/auth/password/forgot` and
//! `POST /v1/auth/password/reset`), end to end: the app sends through its SMTP back end to a
//! real SMTP server the test starts ([`SmtpServer`]), and the test follows the link in the
//! email it received.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use reqwest::Response;
use serde_json::json;
use user_service_tests::smtp::unreachable_smtp_url;
use user_service_tests::test_app::unique_admin_email;
use user_service_tests::{
    ReceivedMail, SmtpServer, TestApp, TestAppBuilder, assert_problem, expect_json, expect_status,
    strong_password, unique_email,
};

/// `PUBLIC_BASE_URL` of the apps here: the links must be built on it.
const BASE_URL: &str = "https://app.example.test";
/// `SMTP_FROM` of the apps here.
const SENDER: &str = "no-reply@example.test";
/// How long an email may take to arrive (it is sent after the response).
const MAIL_WAIT: Duration = Duration::from_secs(15);
/// How long to wait before concluding that no email is coming.
const QUIET: Duration = Duration::from_millis(750);

/// The subject of the reset email (`shared/templates/email/password_reset.txt`).
const RESET_SUBJECT: &str = "Reset your password";

const FORGOT: &str = "/v1/auth/password/forgot";
const RESET: &str = "/v1/auth/password/reset";

// ----- helpers -----

/// `builder` sending its email to a fresh SMTP server, with links under [`BASE_URL`].
async fn spawn_with(builder: TestAppBuilder) -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    // The reset emails only (not the verification link of each registration, nor notices).
    smtp.keep_only(RESET_SUBJECT);
    let app = builder
        .env("SMTP_URL", smtp.url())
        .env("SMTP_FROM", SENDER)
        .env("PUBLIC_BASE_URL", BASE_URL)
        .spawn()
        .await;
    (app, smtp)
}

async fn spawn() -> (TestApp, SmtpServer) {
    spawn_with(TestApp::builder()).await
}

/// POST /v1/auth/password/forgot `{email}`.
async fn forgot(app: &TestApp, email: &str) -> Response {
    app.post_json(FORGOT, &json!({ "email": email })).await
}

/// POST /v1/auth/password/forgot, asserting 202.
async fn forgot_ok(app: &TestApp, email: &str) {
    expect_status(forgot(app, email).await, 202).await;
}

/// POST /v1/auth/password/reset `{token, password}`.
async fn reset(app: &TestApp, token: &str, password: &str) -> Response {
    app.post_json(RESET, &json!({ "token": token, "password": password }))
        .await
}

/// The token of the reset link in `mail`: `BASE_URL/reset-password?token=<43 base64url>`.
fn token_in(mail: &ReceivedMail) -> String {
    let token = mail.link_token(&format!("{BASE_URL}/reset-password?token="));
    let bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
    assert_eq!(bytes.len(), 32, "256 bits");
    token
}

/// Asks for a reset of `email` and returns the token of the email that arrives for it.
async fn request_token(app: &TestApp, smtp: &SmtpServer, email: &str) -> String {
    let before = smtp.messages_to(email).len();
    forgot_ok(app, email).await;
    let mails = smtp.wait_for_count(email, before + 1, MAIL_WAIT).await;
    token_in(&mails[before])
}

/// Waits for the reset email of a fresh user on `app`. Emails go out in the background, in
/// no particular order: once this one arrived, and a little later, emails of requests made
/// before it had every chance to arrive too.
async fn settle(app: &TestApp, smtp: &SmtpServer) {
    let witness = app.new_user().await;
    request_token(app, smtp, &witness.email).await;
    tokio::time::sleep(QUIET).await;
}

// ----- forgot -----

#[tokio::test]
async fn a_known_email_gets_a_single_use_link_by_email() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let resp = forgot(&app, &user.email).await;
    assert_eq!(expect_status(resp, 202).await, "", "no body");

    let mail = smtp.wait_for(&user.email, MAIL_WAIT).await;
    assert_eq!(
        mail.to,
        std::slice::from_ref(&user.email),
        "one recipient: the account"
    );
    assert_eq!(mail.from, SENDER, "envelope sender is SMTP_FROM");
    let from = mail.header("From").expect("From header");
    assert!(from.contains(SENDER), "From: {from}");
    let to = mail.header("To").expect("To header");
    assert!(to.contains(&user.email), "To: {to}");
    assert!(!mail.header("Subject").unwrap_or_default().is_empty());
    let token = token_in(&mail);
    // Sent as readable text: the link is one line of the raw message.
    assert!(
        mail.raw()
            .contains(&format!("{BASE_URL}/reset-password?token={token}\r\n")),
        "{}",
        mail.raw()
    );

    // Only a hash of the token is kept.
    let db = app.database().await;
    let rows = db
        .query("SELECT t::text FROM password_reset_tokens t", &[])
        .await
        .expect("read the token table");
    assert_eq!(rows.len(), 1);
    let hex: String = URL_SAFE_NO_PAD
        .decode(&token)
        .expect("base64url")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for row in rows {
        let row: String = row.get(0);
        assert!(!row.contains(&token) && !row.contains(&hex), "{row}");
    }

    let new_password = strong_password();
    expect_status(reset(&app, &token, &new_password).await, 204).await;
    app.login_ok(&user.email, &new_password).await;
}

#[tokio::test]
async fn an_unknown_email_gets_202_and_no_email() {
    let (app, smtp) = spawn().await;
    let unknown = unique_email();
    let resp = forgot(&app, &unknown).await;
    assert_eq!(expect_status(resp, 202).await, "");
    settle(&app, &smtp).await;
    assert!(smtp.messages_to(&unknown).is_empty());
    assert_eq!(smtp.messages().len(), 1, "only the witness's email");
}

#[tokio::test]
async fn a_disabled_account_gets_202_and_no_email() {
    let admin_email = unique_admin_email();
    let admin_password = strong_password();
    let (app, smtp) =
        spawn_with(TestApp::builder().bootstrap_admin(&admin_email, &admin_password)).await;
    let admin = app.login_user(&admin_email, &admin_password).await;
    let user = app.new_user().await;
    let resp = app
        .admin_patch(
            &admin.tokens.access_token,
            &user.id,
            &json!({ "disabled": true }),
        )
        .await;
    expect_json(resp, 200).await;
    forgot_ok(&app, &user.email).await;
    settle(&app, &smtp).await;
    assert!(smtp.messages_to(&user.email).is_empty());
}

#[tokio::test]
async fn forgot_validates_its_body() {
    let (app, _smtp) = spawn().await;
    assert_problem(forgot(&app, "not-an-email").await, 400, "invalid_email").await;
    let resp = app.post_json(FORGOT, &json!({})).await;
    assert_problem(resp, 400, "malformed_request").await;
    let resp = app
        .post_json(FORGOT, &json!({ "email": unique_email(), "extra": 1 }))
        .await;
    assert_problem(resp, 400, "malformed_request").await;
}

#[tokio::test]
async fn past_the_per_email_limit_the_answer_is_202_but_no_email() {
    let (app, smtp) =
        spawn_with(TestApp::builder().env("RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR", 2)).await;
    let user = app.new_user().await;
    // One at a time: a request whose email is still on its way when a newer one arrives
    // may be superseded before it is sent (only the newest link works anyway).
    request_token(&app, &smtp, &user.email).await;
    request_token(&app, &smtp, &user.email).await;
    forgot_ok(&app, &user.email).await;
    forgot_ok(&app, &user.email).await;
    settle(&app, &smtp).await;
    assert_eq!(smtp.messages_to(&user.email).len(), 2);
}

#[tokio::test]
async fn a_newer_request_invalidates_the_older_link() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let older = request_token(&app, &smtp, &user.email).await;
    let newer = request_token(&app, &smtp, &user.email).await;
    assert_ne!(older, newer);
    let password = strong_password();
    assert_problem(reset(&app, &older, &password).await, 400, "invalid_token").await;
    expect_status(reset(&app, &newer, &password).await, 204).await;
    app.login_ok(&user.email, &password).await;
}

// ----- mail delivery -----

#[tokio::test]
async fn a_refused_delivery_is_retried_and_the_request_does_not_wait_for_it() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    smtp.refuse_next(1);
    let started = Instant::now();
    forgot_ok(&app, &user.email).await;
    let answered = started.elapsed();
    let mail = smtp.wait_for(&user.email, MAIL_WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the second attempt comes after a pause"
    );
    assert!(
        answered < Duration::from_millis(900),
        "the answer did not wait for the retry: {answered:?}"
    );
    let token = token_in(&mail);
    expect_status(reset(&app, &token, &strong_password()).await, 204).await;
}

#[tokio::test]
async fn an_unreachable_mail_server_neither_fails_nor_delays_the_request() {
    let app = TestApp::builder()
        .env("SMTP_URL", unreachable_smtp_url())
        .spawn()
        .await;
    let user = app.new_user().await;
    let started = Instant::now();
    forgot_ok(&app, &user.email).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn without_a_mail_back_end_the_request_still_succeeds() {
    // No SMTP_URL: the log back end (the email goes to the service's log).
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    forgot_ok(&app, &user.email).await;
    forgot_ok(&app, &unique_email()).await;
}

// ----- reset -----

#[tokio::test]
async fn a_reset_sets_the_new_password_and_ends_every_session() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    let bystander = app.new_user().await;
    let token = request_token(&app, &smtp, &user.email).await;
    let new_password = strong_password();
    let resp = reset(&app, &token, &new_password).await;
    assert_eq!(expect_status(resp, 204).await, "");

    for session in [&user.tokens, &other] {
        app.assert_me_status(&session.access_token, 401).await;
        app.assert_refresh_rejected(&session.refresh_token).await;
    }
    app.assert_me_status(&bystander.tokens.access_token, 200)
        .await;
    let resp = app.login(&user.email, &user.password).await;
    assert_problem(resp, 401, "invalid_credentials").await;
    let fresh = app.login_ok(&user.email, &new_password).await;
    app.assert_me_status(&fresh.access_token, 200).await;
}

#[tokio::test]
async fn a_weak_password_is_refused_and_does_not_spend_the_token() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let token = request_token(&app, &smtp, &user.email).await;
    let local_part = user.email.split('@').next().expect("local part");
    for weak in [
        "short".to_owned(),
        "password123".to_owned(),
        format!("{local_part}-2024"),
    ] {
        let body = assert_problem(reset(&app, &token, &weak).await, 400, "weak_password").await;
        assert!(!body["detail"].as_str().unwrap_or("").trim().is_empty());
    }
    // Nothing changed: the sessions and the old password work, and so does the token.
    app.assert_me_status(&user.tokens.access_token, 200).await;
    app.login_ok(&user.email, &user.password).await;
    let new_password = strong_password();
    expect_status(reset(&app, &token, &new_password).await, 204).await;
    app.login_ok(&user.email, &new_password).await;
}

#[tokio::test]
async fn a_token_works_once() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let token = request_token(&app, &smtp, &user.email).await;
    let first = strong_password();
    expect_status(reset(&app, &token, &first).await, 204).await;
    let second = strong_password();
    assert_problem(reset(&app, &token, &second).await, 400, "invalid_token").await;
    app.login_ok(&user.email, &first).await;
    let resp = app.login(&user.email, &second).await;
    assert_problem(resp, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn an_expired_token_is_invalid() {
    let (app, smtp) = spawn_with(TestApp::builder().env("PASSWORD_RESET_TTL_SECONDS", 1)).await;
    let user = app.new_user().await;
    let token = request_token(&app, &smtp, &user.email).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = reset(&app, &token, &strong_password()).await;
    assert_problem(resp, 400, "invalid_token").await;
    app.login_ok(&user.email, &user.password).await;
}

#[tokio::test]
async fn garbage_tokens_are_invalid() {
    let (app, smtp) = spawn().await;
    let user = app.new_user().await;
    let token = request_token(&app, &smtp, &user.email).await;
    // The real token with its last character changed, one that was never issued, and
    // strings of the wrong shape.
    let last = if token.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{}{last}", &token[..42]);
    let never_issued = URL_SAFE_NO_PAD.encode([7u8; 32]);
    for garbage in [
        tampered.as_str(),
        never_issued.as_str(),
        "",
        "garbage",
        &format!("{token}A"),
        &format!("{token}=="),
    ] {
        let resp = reset(&app, garbage, &strong_password()).await;
        assert_problem(resp, 400, "invalid_token").await;
    }
    let resp = app
        .post_json(RESET, &json!({ "token": token, "password": 12345678 }))
        .await;
    assert_problem(resp, 400, "malformed_request").await;
    let resp = app.post_json(RESET, &json!({ "token": token })).await;
    assert_problem(resp, 400, "malformed_request").await;
    // None of that spent the real token.
    expect_status(reset(&app, &token, &strong_password()).await, 204).await;
}

#[tokio::test]
async fn concurrent_resets_with_one_token_exactly_one_succeeds() {
    // Lockout off: the losers' passwords are all tried below.
    let (app, smtp) = spawn_with(TestApp::builder().env("LOCKOUT_THRESHOLD", 0)).await;
    let user = app.new_user().await;
    let token = request_token(&app, &smtp, &user.email).await;
    let passwords: Vec<String> = (0..8).map(|_| strong_password()).collect();
    let statuses = join_all(passwords.iter().map(|password| async {
        let resp = reset(&app, &token, password).await;
        let status = resp.status().as_u16();
        if status != 204 {
            assert_problem(resp, 400, "invalid_token").await;
        }
        status
    }))
    .await;
    let winners: Vec<&String> = statuses
        .iter()
        .zip(&passwords)
        .filter(|(status, _)| **status == 204)
        .map(|(_, password)| password)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one 204: {statuses:?}");
    app.login_ok(&user.email, winners[0]).await;
    for loser in passwords.iter().filter(|p| *p != winners[0]) {
        let resp = app.login(&user.email, loser).await;
        assert_problem(resp, 401, "invalid_credentials").await;
    }
}

#[tokio::test]
async fn with_postgres_down_forgot_still_answers_202_and_reset_503() {
    let (app, smtp) = spawn_with(TestApp::builder().postgres_via_proxy()).await;
    let user = app.new_user().await;
    app.postgres_proxy().cut();
    // The account lookup happens after the answer, so an outage cannot show in it.
    let started = Instant::now();
    forgot_ok(&app, &user.email).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let token = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let started = Instant::now();
    let resp = reset(&app, &token, &strong_password()).await;
    assert_problem(resp, 503, "unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    app.postgres_proxy().restore();
    // The request made during the outage has had its chance (its lookup gives up after
    // DEPENDENCY_TIMEOUT_MS, 2 s); a new one gets its email.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let token = request_token(&app, &smtp, &user.email).await;
    expect_status(reset(&app, &token, &strong_password()).await, 204).await;
}

#[tokio::test]
async fn a_reset_shows_in_the_profile_on_every_instance() {
    let (a, smtp) = spawn().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    // B remembers the profile as it was.
    let before = expect_json(b.me(&user.tokens.access_token).await, 200).await;
    let token = request_token(&a, &smtp, &user.email).await;
    let new_password = strong_password();
    expect_status(reset(&a, &token, &new_password).await, 204).await;
    let tokens = b.login_ok(&user.email, &new_password).await;
    let after = expect_json(b.me(&tokens.access_token).await, 200).await;
    assert_ne!(after["updated_at"], before["updated_at"], "{after}");
    assert_eq!(
        after,
        expect_json(a.me(&tokens.access_token).await, 200).await
    );
}
