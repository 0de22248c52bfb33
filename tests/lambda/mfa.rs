//! Two-factor login through the four function binaries: mfa-setup, mfa-confirm, mfa-disable
//! and login-mfa. The scene (a user, a set-up, a first login step) is set through the
//! in-process app; the step under test goes only through its function.

use serde_json::json;
use user_service_tests::TestApp;
use user_service_tests::jwt::claims_of;
use user_service_tests::mfa::{code_at, current_step};
use user_service_tests::runtime_api::HttpEvent;

use super::{authed, start};

#[tokio::test]
async fn mfa_setup() {
    let app = TestApp::spawn().await;
    let function = start("mfa-setup", &app).await;
    let user = app.new_user().await;
    let request = |password: &str| {
        authed("POST", "/v1/users/me/mfa/totp", &user)
            .json(&json!({ "current_password": password }))
    };
    function
        .http(&request("not the password at all"))
        .await
        .expect_problem(403, "invalid_credentials");
    let body = function.http(&request(&user.password)).await.expect(200);
    let secret = body["secret"].as_str().expect("secret");
    assert!(
        body["otpauth_uri"]
            .as_str()
            .expect("uri")
            .starts_with(&format!(
                "otpauth://totp/user-service:{}?secret={secret}&",
                user.email
            )),
        "{body}"
    );
    // The function's key reaches the in-process app through the shared key file: a code of
    // the secret confirms the set-up there.
    app.confirm_mfa(user, secret.to_owned()).await;
}

#[tokio::test]
async fn mfa_confirm() {
    let app = TestApp::spawn().await;
    let function = start("mfa-confirm", &app).await;
    let user = app.new_user().await;
    let secret = app.start_mfa_setup(&user).await;
    let body = function
        .http(
            &authed("POST", "/v1/users/me/mfa/totp/confirm", &user)
                .json(&json!({ "code": code_at(&secret, current_step()) })),
        )
        .await
        .expect(200);
    assert_eq!(body["recovery_codes"].as_array().expect("codes").len(), 10);
    function
        .http(
            &authed("POST", "/v1/users/me/mfa/totp/confirm", &user)
                .json(&json!({ "code": code_at(&secret, current_step()) })),
        )
        .await
        .expect_problem(400, "invalid_mfa_code");
    let me = app.me(&user.tokens.access_token).await;
    assert_eq!(
        me.json::<serde_json::Value>().await.expect("json")["mfa_enabled"],
        true
    );
}

#[tokio::test]
async fn mfa_disable() {
    let app = TestApp::spawn().await;
    let function = start("mfa-disable", &app).await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let request = |code: &str| {
        authed("POST", "/v1/users/me/mfa/disable", &e.user)
            .json(&json!({ "current_password": e.user.password, "code": code }))
    };
    function
        .http(&request("000000-not-a-code"))
        .await
        .expect_problem(400, "invalid_mfa_code");
    function
        .http(&request(&e.recovery_codes[0]))
        .await
        .expect(204);
    function
        .http(&request(&e.recovery_codes[1]))
        .await
        .expect_problem(409, "mfa_not_enabled");
}

#[tokio::test]
async fn login_mfa() {
    let app = TestApp::spawn().await;
    let function = start("login-mfa", &app).await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let mfa_token = app.mfa_first_step(&e.user).await;
    let event = |code: &str| {
        HttpEvent::post_json(
            "/v1/auth/login/mfa",
            &json!({ "mfa_token": mfa_token, "code": code }),
        )
    };
    function
        .http(&event("abcdef"))
        .await
        .expect_problem(401, "invalid_mfa_code");
    let pair = function.http(&event(&e.next_code())).await.expect(200);
    let access = pair["access_token"].as_str().expect("access token");
    assert_eq!(claims_of(access)["amr"], json!(["pwd", "otp"]));
    app.assert_me_status(access, 200).await;
    function
        .http(&event(&e.next_code()))
        .await
        .expect_problem(401, "invalid_credentials");
}
