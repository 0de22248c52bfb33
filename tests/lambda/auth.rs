//! The public auth functions: register, login, refresh, logout, forgot and reset password.

use std::time::Duration;

use serde_json::json;
use user_service_tests::jwt::claims_of;
use user_service_tests::runtime_api::HttpEvent;
use user_service_tests::{
    ReceivedMail, SmtpServer, TestApp, assert_problem, expect_status, strong_password, unique_email,
};

use super::{authed, start};

/// Asserts `user` is a user as the contract returns it, with no password material.
fn assert_user_shape(user: &serde_json::Value, email: &str, role: &str) {
    assert!(
        user["id"]
            .as_str()
            .is_some_and(|id| id.parse::<uuid::Uuid>().is_ok()),
        "{user}"
    );
    assert_eq!(user["email"], json!(email), "{user}");
    assert_eq!(user["role"], json!(role), "{user}");
    assert_eq!(user["disabled"], json!(false), "{user}");
    for field in ["created_at", "updated_at"] {
        assert!(user[field].is_string(), "{field}: {user}");
    }
    let text = user.to_string().to_ascii_lowercase();
    assert!(
        !text.contains("password") && !text.contains("argon2"),
        "{user}"
    );
}

/// Asserts `pair` is a token pair for `user_id` as the contract describes it.
fn assert_token_pair(pair: &serde_json::Value, user_id: &str) {
    assert_eq!(pair["token_type"], json!("Bearer"), "{pair}");
    let access = pair["access_token"].as_str().expect("access_token");
    let claims = claims_of(access);
    assert_eq!(claims["sub"], json!(user_id), "{claims}");
    assert_eq!(
        pair["expires_in"].as_i64(),
        Some(
            claims["exp"].as_i64().unwrap_or_default() - claims["iat"].as_i64().unwrap_or_default()
        ),
        "expires_in is exp - iat: {pair}"
    );
    assert!(
        pair["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43),
        "{pair}"
    );
    assert!(
        pair["refresh_expires_in"].as_i64().is_some_and(|s| s > 0),
        "{pair}"
    );
    assert_eq!(pair["user"]["id"], json!(user_id), "{pair}");
}

#[tokio::test]
async fn register() {
    let app = TestApp::spawn().await;
    let register = start("register", &app).await;
    let email = unique_email();
    let password = strong_password();
    let body = json!({ "email": email.to_uppercase(), "password": password, "name": "Ada" });

    let created = register
        .http(&HttpEvent::post_json("/v1/auth/register", &body))
        .await
        .expect(201);
    assert_user_shape(&created, &email, "user");
    assert_eq!(created["name"], json!("Ada"));

    register
        .http(&HttpEvent::post_json("/v1/auth/register", &body))
        .await
        .expect_problem(409, "email_taken");
    register
        .http(&HttpEvent::post_json(
            "/v1/auth/register",
            &json!({ "email": unique_email(), "password": "password" }),
        ))
        .await
        .expect_problem(400, "weak_password");
    // The account is real: the in-process service logs it in.
    let tokens = app.login_ok(&email, &password).await;
    assert_eq!(tokens.user["id"], created["id"]);
}

#[tokio::test]
async fn login() {
    let app = TestApp::spawn().await;
    let login = start("login", &app).await;
    let email = unique_email();
    let password = strong_password();
    let user = app.register_ok(&email, &password).await;
    let id = user["id"].as_str().expect("id");

    let success = login
        .http(&HttpEvent::post_json(
            "/v1/auth/login",
            &json!({ "email": email, "password": password }),
        ))
        .await;
    let pair = success.expect(200);
    assert_token_pair(&pair, id);
    app.assert_me_status(pair["access_token"].as_str().expect("token"), 200)
        .await;

    let refused = login
        .http(&HttpEvent::post_json(
            "/v1/auth/login",
            &json!({ "email": email, "password": "wrong-horse-battery-staple" }),
        ))
        .await;
    refused.expect_problem(401, "invalid_credentials");
    // Contract, "Conventions" (v2): every /v1 response is `no-store`, in a function too.
    let unknown = login.http(&HttpEvent::get("/v1/no/such/path")).await;
    unknown.expect_problem(404, "not_found");
    for (what, response) in [
        ("a success", &success),
        ("a problem", &refused),
        ("an unknown /v1 path", &unknown),
    ] {
        assert_eq!(
            response.header("cache-control"),
            Some("no-store"),
            "{what}: {:?}",
            response.headers
        );
    }
    login
        .http(&HttpEvent::post_json(
            "/v1/auth/login",
            &json!({ "email": email }),
        ))
        .await
        .expect_problem(400, "malformed_request");

    // CloudWatch metrics: one Embedded Metric Format document per invocation on stdout,
    // namespace UserService, what the LoginFailures alarm and the dashboard read.
    // The output is read from the process's pipes as it comes: give the last lines a moment.
    let emf_documents = || -> Vec<serde_json::Value> {
        login
            .output()
            .iter()
            .filter_map(|line| line.strip_prefix("[stdout] "))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|doc| doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "UserService")
            .collect()
    };
    let mut documents = emf_documents();
    for _ in 0..20 {
        if documents
            .iter()
            .any(|doc| doc.get("LoginFailures").is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        documents = emf_documents();
    }
    let total = |metric: &str| -> f64 {
        documents
            .iter()
            .filter_map(|doc| doc[metric].as_f64())
            .sum()
    };
    assert_eq!(total("LoginSuccesses"), 1.0, "EMF output: {documents:?}");
    assert_eq!(total("LoginFailures"), 1.0, "EMF output: {documents:?}");
    assert_eq!(total("TokensIssued"), 1.0, "EMF output: {documents:?}");
    let failure = documents
        .iter()
        .find(|doc| doc.get("LoginFailures").is_some())
        .expect("a document with LoginFailures");
    assert!(
        failure["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
            .as_array()
            .is_some_and(|sets| sets
                .iter()
                .all(|set| set.as_array().is_some_and(Vec::is_empty))),
        "LoginFailures has no dimensions, as the alarm expects: {failure}"
    );
}

#[tokio::test]
async fn refresh() {
    let app = TestApp::spawn().await;
    let refresh = start("refresh", &app).await;
    let user = app.new_user().await;
    let spent = user.tokens.refresh_token.clone();

    let pair = refresh
        .http(&HttpEvent::post_json(
            "/v1/auth/refresh",
            &json!({ "refresh_token": spent }),
        ))
        .await
        .expect(200);
    assert_token_pair(&pair, &user.id);
    let next = pair["refresh_token"].as_str().expect("refresh_token");
    assert_ne!(next, spent, "the refresh token rotates");

    // Reuse of the spent token: 401, and the whole session ends.
    refresh
        .http(&HttpEvent::post_json(
            "/v1/auth/refresh",
            &json!({ "refresh_token": spent }),
        ))
        .await
        .expect_problem(401, "invalid_refresh_token");
    app.assert_refresh_rejected(next).await;
}

#[tokio::test]
async fn logout() {
    let app = TestApp::spawn().await;
    let logout = start("logout", &app).await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;

    let response = logout.http(&authed("POST", "/v1/auth/logout", &user)).await;
    assert_eq!(response.status, 204, "{}", response.body);
    assert!(
        response.body.is_empty(),
        "204 has no body: {}",
        response.body
    );
    // That session's tokens stop working at once; the other session lives on.
    app.assert_me_status(&user.tokens.access_token, 401).await;
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
    app.assert_me_status(&other.access_token, 200).await;

    logout
        .http(&authed("POST", "/v1/auth/logout", &user))
        .await
        .expect_problem(401, "unauthorized");
    logout
        .http(&HttpEvent::new("POST", "/v1/auth/logout"))
        .await
        .expect_problem(401, "unauthorized");
}

/// `PUBLIC_BASE_URL` of the deployments that send reset emails.
const BASE_URL: &str = "https://app.example.test";

/// A deployment sending its email to a fresh SMTP server.
async fn spawn_with_smtp() -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    // The reset emails only (not the verification link of each registration, nor notices).
    smtp.keep_only("Reset your password");
    let app = TestApp::builder().mail_to(&smtp, BASE_URL).spawn().await;
    (app, smtp)
}

/// The token of the reset link in `mail`.
fn token_in(mail: &ReceivedMail) -> String {
    mail.link_token(&format!("{BASE_URL}/reset-password?token="))
}

#[tokio::test]
async fn forgot_password() {
    let (app, smtp) = spawn_with_smtp().await;
    let forgot = start("forgot-password", &app).await;
    let user = app.new_user().await;

    let started = std::time::Instant::now();
    let response = forgot
        .http(&HttpEvent::post_json(
            "/v1/auth/password/forgot",
            &json!({ "email": user.email }),
        ))
        .await;
    let known_took = started.elapsed();
    assert_eq!(response.status, 202, "{}", response.body);
    // Lambda freezes the environment between invocations (and so does the emulator): the
    // email must be out before the freeze, not "in the background" after it. (The function
    // may send it after its response: its extension holds the freeze until it is out.)
    super::runtime::wait_until_frozen(forgot.pid()).await;
    let mail = smtp
        .messages_to(&user.email)
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            panic!(
                "the reset email was not sent before the freeze; function output:\n{}",
                forgot.output().join("\n")
            )
        });
    let token = token_in(&mail);
    // The link works: the in-process service resets with it.
    let password = strong_password();
    expect_status(
        app.post_json(
            "/v1/auth/password/reset",
            &json!({ "token": token, "password": password }),
        )
        .await,
        204,
    )
    .await;
    app.login_ok(&user.email, &password).await;

    // Unknown email: the same 202, and no email, after the same floor of time: the answer's
    // timing does not tell whether the account exists.
    let started = std::time::Instant::now();
    let response = forgot
        .http(&HttpEvent::post_json(
            "/v1/auth/password/forgot",
            &json!({ "email": unique_email() }),
        ))
        .await;
    let unknown_took = started.elapsed();
    assert_eq!(response.status, 202, "{}", response.body);
    let floor = user_service::http::routes::forgot_password::LAMBDA_RESPONSE_FLOOR;
    assert!(
        known_took >= floor && unknown_took >= floor,
        "both answers wait for the floor: {known_took:?} and {unknown_took:?}"
    );
    forgot
        .http(&HttpEvent::post_json(
            "/v1/auth/password/forgot",
            &json!({ "email": "not-an-email" }),
        ))
        .await
        .expect_problem(400, "invalid_email");
}

#[tokio::test]
async fn reset_password() {
    let (app, smtp) = spawn_with_smtp().await;
    let reset = start("reset-password", &app).await;
    let user = app.new_user().await;
    expect_status(
        app.post_json("/v1/auth/password/forgot", &json!({ "email": user.email }))
            .await,
        202,
    )
    .await;
    let token = token_in(&smtp.wait_for(&user.email, Duration::from_secs(15)).await);

    reset
        .http(&HttpEvent::post_json(
            "/v1/auth/password/reset",
            &json!({ "token": token, "password": "password" }),
        ))
        .await
        .expect_problem(400, "weak_password");
    let password = strong_password();
    let body = json!({ "token": token, "password": password });
    let response = reset
        .http(&HttpEvent::post_json("/v1/auth/password/reset", &body))
        .await;
    assert_eq!(response.status, 204, "{}", response.body);
    // Every session ended; the new password works, the old one not.
    app.assert_me_status(&user.tokens.access_token, 401).await;
    app.login_ok(&user.email, &password).await;
    assert_problem(
        app.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    // Single use.
    reset
        .http(&HttpEvent::post_json("/v1/auth/password/reset", &body))
        .await
        .expect_problem(400, "invalid_token");
}
