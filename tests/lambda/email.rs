//! The address of an account: change-email, resend-verification and verify-email, each
//! sending through a real SMTP server the test starts (the emails go out before the
//! environment is frozen, as on Lambda).

use std::time::Duration;

use serde_json::json;
use user_service_tests::runtime_api::HttpEvent;
use user_service_tests::{ReceivedMail, SmtpServer, TestApp, strong_password, unique_email};

use super::{authed, start};

const BASE_URL: &str = "https://app.example.test";
const MAIL_WAIT: Duration = Duration::from_secs(15);

/// A deployment sending its email to a fresh SMTP server, with links under [`BASE_URL`].
async fn spawn_with_smtp() -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    let app = TestApp::builder().mail_to(&smtp, BASE_URL).spawn().await;
    (app, smtp)
}

/// The token of the `/verify-email` link in `mail`.
fn token_in(mail: &ReceivedMail) -> String {
    mail.link_token(&format!("{BASE_URL}/verify-email?token="))
}

#[tokio::test]
async fn change_email() {
    let (app, smtp) = spawn_with_smtp().await;
    let change_email = start("change-email", &app).await;
    let user = app.new_user().await;
    let new_email = unique_email();
    let request = |password: &str| {
        authed("POST", "/v1/users/me/email", &user)
            .json(&json!({ "new_email": new_email, "current_password": password }))
    };
    change_email
        .http(&request("not the password at all"))
        .await
        .expect_problem(403, "invalid_credentials");
    let pending = change_email
        .http(&request(&user.password))
        .await
        .expect(202);
    assert_eq!(pending, json!({ "pending_email": new_email }));
    // The link to the new address completes the change (through the in-process app here).
    let mail = smtp
        .wait_for_about(&new_email, "Confirm your new email address", 1, MAIL_WAIT)
        .await;
    let resp = app
        .post_json(
            "/v1/auth/email/verify",
            &json!({ "token": token_in(&mail[0]) }),
        )
        .await;
    assert_eq!(resp.status(), 204);
    change_email
        .http(&HttpEvent::new("POST", "/v1/users/me/email").json(&json!({
            "new_email": unique_email(), "current_password": strong_password()
        })))
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn resend_verification() {
    let (app, smtp) = spawn_with_smtp().await;
    let resend = start("resend-verification", &app).await;
    let user = app.new_user().await;
    resend
        .http(&authed("POST", "/v1/users/me/email/verification", &user))
        .await
        .expect(202);
    // The registration's link, then the resent one.
    let mails = smtp
        .wait_for_about(&user.email, "Confirm your email address", 2, MAIL_WAIT)
        .await;
    assert_ne!(token_in(&mails[0]), token_in(&mails[1]));
    resend
        .http(&HttpEvent::new("POST", "/v1/users/me/email/verification"))
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn verify_email() {
    let (app, smtp) = spawn_with_smtp().await;
    let verify = start("verify-email", &app).await;
    let user = app.new_user().await;
    let mail = smtp
        .wait_for_about(&user.email, "Confirm your email address", 1, MAIL_WAIT)
        .await;
    let event = HttpEvent::post_json(
        "/v1/auth/email/verify",
        &json!({ "token": token_in(&mail[0]) }),
    );
    verify.http(&event).await.expect(204);
    let me = user_service_tests::expect_json(app.me(&user.tokens.access_token).await, 200).await;
    assert_eq!(me["email_verified"], json!(true));
    verify
        .http(&event)
        .await
        .expect_problem(400, "invalid_token");
}
