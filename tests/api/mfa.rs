//! Two-factor login (contract v2, "Two-factor login"): set-up, confirmation, the two-step
//! login with TOTP and recovery codes, replay and guessing limits, removal by the user and by
//! an admin, the secret at rest, `amr` in tokens and through refresh, and admin routes that
//! demand a second factor. Codes are computed here from the set-up's secret, as an
//! authenticator app would.

use std::time::Duration;

use futures::future::join_all;
use reqwest::Response;
use serde_json::{Value, json};
use user_service_tests::jwt::claims_of;
use user_service_tests::mfa::{code_at, current_step};
use user_service_tests::test_app::unique_admin_email;
use user_service_tests::{
    SmtpServer, TestApp, assert_problem, expect_json, expect_status, strong_password, token_pair,
};

const SETUP: &str = "/v1/users/me/mfa/totp";
const CONFIRM: &str = "/v1/users/me/mfa/totp/confirm";
const DISABLE: &str = "/v1/users/me/mfa/disable";
const LOGIN_MFA: &str = "/v1/auth/login/mfa";
const MAIL_WAIT: Duration = Duration::from_secs(15);

async fn second_step(app: &TestApp, mfa_token: &str, code: &str) -> Response {
    app.post_json(LOGIN_MFA, &json!({ "mfa_token": mfa_token, "code": code }))
        .await
}

fn amr_of(access_token: &str) -> Value {
    claims_of(access_token)["amr"].clone()
}

async fn count(app: &TestApp, sql: &str, user_id: &str) -> i64 {
    let id: uuid::Uuid = user_id.parse().expect("uuid");
    app.database()
        .await
        .query_one(sql, &[&id])
        .await
        .expect("count")
        .get(0)
}

async fn sessions_of(app: &TestApp, user_id: &str) -> i64 {
    count(
        app,
        "SELECT count(*) FROM sessions WHERE user_id = $1",
        user_id,
    )
    .await
}

#[tokio::test]
async fn setup_shows_a_secret_and_an_otpauth_uri_and_turns_nothing_on() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let body = expect_json(
        app.post_authed(
            SETUP,
            &user.tokens.access_token,
            &json!({ "current_password": user.password }),
        )
        .await,
        200,
    )
    .await;
    let secret = body["secret"].as_str().expect("secret");
    assert_eq!(
        secret.len(),
        32,
        "160 bits in base32 without padding: {secret}"
    );
    assert_eq!(
        body["otpauth_uri"],
        format!(
            "otpauth://totp/user-service:{}?secret={secret}&issuer=user-service&algorithm=SHA1&digits=6&period=30",
            user.email
        )
    );
    let me = expect_json(app.me(&user.tokens.access_token).await, 200).await;
    assert_eq!(
        me["mfa_enabled"], false,
        "nothing is on before a code confirms it"
    );
    assert_eq!(
        amr_of(&app.login_ok(&user.email, &user.password).await.access_token),
        json!(["pwd"]),
        "login stays one step"
    );

    // Asking again replaces the pending secret: a code of the first no longer confirms.
    let second = app.start_mfa_setup(&user).await;
    assert_ne!(second, secret);
    assert_problem(
        app.post_authed(
            CONFIRM,
            &user.tokens.access_token,
            &json!({ "code": code_at(secret, current_step()) }),
        )
        .await,
        400,
        "invalid_mfa_code",
    )
    .await;

    // A wrong password is refused like any re-authentication.
    assert_problem(
        app.post_authed(
            SETUP,
            &user.tokens.access_token,
            &json!({ "current_password": "not the password at all" }),
        )
        .await,
        403,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn confirm_turns_it_on_once_with_ten_recovery_codes() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    // No set-up pending.
    assert_problem(
        app.post_authed(
            CONFIRM,
            &user.tokens.access_token,
            &json!({ "code": "123456" }),
        )
        .await,
        400,
        "invalid_mfa_code",
    )
    .await;
    let secret = app.start_mfa_setup(&user).await;
    let wrong = format!(
        "{:06}",
        (code_at(&secret, current_step())
            .parse::<u32>()
            .expect("digits")
            + 1)
            % 1_000_000
    );
    for code in [wrong.as_str(), "12345", "abcdef", ""] {
        assert_problem(
            app.post_authed(CONFIRM, &user.tokens.access_token, &json!({ "code": code }))
                .await,
            400,
            "invalid_mfa_code",
        )
        .await;
    }
    let enrolled = app.confirm_mfa(user, secret).await;
    assert_eq!(enrolled.recovery_codes.len(), 10);
    let distinct: std::collections::HashSet<_> = enrolled.recovery_codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    let me = expect_json(app.me(&enrolled.user.tokens.access_token).await, 200).await;
    assert_eq!(me["mfa_enabled"], true);
    // On already: a new set-up is refused, and confirming again has nothing pending.
    assert_problem(
        app.post_authed(
            SETUP,
            &enrolled.user.tokens.access_token,
            &json!({ "current_password": enrolled.user.password }),
        )
        .await,
        409,
        "mfa_already_enabled",
    )
    .await;
    assert_problem(
        app.post_authed(
            CONFIRM,
            &enrolled.user.tokens.access_token,
            &json!({ "code": code_at(&enrolled.secret, current_step()) }),
        )
        .await,
        400,
        "invalid_mfa_code",
    )
    .await;
}

#[tokio::test]
async fn login_takes_two_steps_and_the_session_carries_otp_through_refresh() {
    let app = TestApp::spawn().await;
    let plain = app.new_user().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let before = sessions_of(&app, &e.user.id).await;

    let mfa_token = app.mfa_first_step(&e.user).await;
    assert_eq!(
        sessions_of(&app, &e.user.id).await,
        before,
        "no session before the second step"
    );
    let pair = token_pair(
        expect_json(
            second_step(&app, &mfa_token, &code_at(&e.secret, e.confirmed_step + 1)).await,
            200,
        )
        .await,
    );
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.user["mfa_enabled"], true);
    assert_eq!(amr_of(&pair.access_token), json!(["pwd", "otp"]));
    app.assert_me_status(&pair.access_token, 200).await;
    // The token was single use.
    assert_problem(
        second_step(&app, &mfa_token, &code_at(&e.secret, e.confirmed_step + 1)).await,
        401,
        "invalid_credentials",
    )
    .await;
    // A refresh keeps the session's amr; a password-only session says pwd alone.
    let refreshed = app.refresh_ok(&pair.refresh_token).await;
    assert_eq!(amr_of(&refreshed.access_token), json!(["pwd", "otp"]));
    assert_eq!(amr_of(&plain.tokens.access_token), json!(["pwd"]));
    let plain_refreshed = app.refresh_ok(&plain.tokens.refresh_token).await;
    assert_eq!(amr_of(&plain_refreshed.access_token), json!(["pwd"]));

    // Unknown or malformed tokens: invalid_credentials whatever the code.
    for token in ["", "x", &"A".repeat(43)] {
        assert_problem(
            second_step(&app, token, &code_at(&e.secret, current_step())).await,
            401,
            "invalid_credentials",
        )
        .await;
    }
}

#[tokio::test]
async fn a_totp_code_is_accepted_once_per_account_counting_the_confirmation() {
    let app = TestApp::spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    // The code that confirmed the set-up is spent.
    let token = app.mfa_first_step(&e.user).await;
    assert_problem(
        second_step(&app, &token, &code_at(&e.secret, e.confirmed_step)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    // The next step's code works once; again, in its window, it is a replay.
    let next = code_at(&e.secret, e.confirmed_step + 1);
    expect_status(second_step(&app, &token, &next).await, 200).await;
    let token = app.mfa_first_step(&e.user).await;
    assert_problem(
        second_step(&app, &token, &next).await,
        401,
        "invalid_mfa_code",
    )
    .await;
}

#[tokio::test]
async fn codes_of_the_steps_around_now_pass_and_two_steps_ago_does_not() {
    let app = TestApp::spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    // Forget the replay guard, so that only the time window decides.
    let id: uuid::Uuid = e.user.id.parse().expect("uuid");
    app.database()
        .await
        .execute(
            "UPDATE mfa_totp SET last_step = NULL WHERE user_id = $1",
            &[&id],
        )
        .await
        .expect("reset last_step");
    let now = current_step();
    let token = app.mfa_first_step(&e.user).await;
    assert_problem(
        second_step(&app, &token, &code_at(&e.secret, now - 2)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    assert_problem(
        second_step(&app, &token, &code_at(&e.secret, now + 3)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    // The step before now is within the window.
    expect_status(
        second_step(&app, &token, &code_at(&e.secret, now - 1)).await,
        200,
    )
    .await;
}

#[tokio::test]
async fn recovery_codes_work_once_each_in_any_case() {
    let app = TestApp::spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let token = app.mfa_first_step(&e.user).await;
    let pair =
        token_pair(expect_json(second_step(&app, &token, &e.recovery_codes[0]).await, 200).await);
    assert_eq!(amr_of(&pair.access_token), json!(["pwd", "otp"]));
    let token = app.mfa_first_step(&e.user).await;
    assert_problem(
        second_step(&app, &token, &e.recovery_codes[0]).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    // Another code, typed in capitals with spaces instead of dashes, still works.
    let sloppy = e.recovery_codes[1].to_uppercase().replace('-', " ");
    expect_status(second_step(&app, &token, &sloppy).await, 200).await;
    let id: uuid::Uuid = e.user.id.parse().expect("uuid");
    let stored: Vec<Vec<u8>> = app
        .database()
        .await
        .query(
            "SELECT code_hash FROM mfa_recovery_codes WHERE user_id = $1",
            &[&id],
        )
        .await
        .expect("codes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 10, "stored as ten hashes");
    for code in &e.recovery_codes {
        assert!(
            stored
                .iter()
                .all(|h| h.len() == 32 && !h.windows(4).any(|w| w == &code.as_bytes()[..4])),
            "no recovery code is stored in plain form"
        );
    }
}

#[tokio::test]
async fn five_wrong_codes_spend_the_mfa_token() {
    // The lockout is set high here so that only the token's own limit shows.
    let app = TestApp::builder()
        .env("LOCKOUT_THRESHOLD", 50)
        .spawn()
        .await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let token = app.mfa_first_step(&e.user).await;
    let right = code_at(&e.secret, e.confirmed_step + 1);
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().expect("digits") + 500_000) % 1_000_000
    );
    for _ in 0..5 {
        assert_problem(
            second_step(&app, &token, &wrong).await,
            401,
            "invalid_mfa_code",
        )
        .await;
    }
    assert_problem(
        second_step(&app, &token, &right).await,
        401,
        "invalid_credentials",
    )
    .await;
    // A new first step gets a new token, and the right code works with it.
    let token = app.mfa_first_step(&e.user).await;
    expect_status(second_step(&app, &token, &right).await, 200).await;
}

#[tokio::test]
async fn wrong_codes_count_toward_the_lockout_and_the_password_alone_does_not_clear_it() {
    let app = TestApp::builder().env("LOCKOUT_THRESHOLD", 3).spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let right = code_at(&e.secret, e.confirmed_step + 1);
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().expect("digits") + 1) % 1_000_000
    );
    let token = app.mfa_first_step(&e.user).await;
    for _ in 0..2 {
        assert_problem(
            second_step(&app, &token, &wrong).await,
            401,
            "invalid_mfa_code",
        )
        .await;
    }
    // The right password again: a new token, but the two failures still count.
    let token = app.mfa_first_step(&e.user).await;
    assert_problem(
        second_step(&app, &token, &wrong).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    // Locked now: even the right code is refused, and so is the password.
    let resp = second_step(&app, &token, &right).await;
    assert!(resp.headers().get("retry-after").is_some());
    assert_problem(resp, 429, "rate_limited").await;
    assert_problem(
        app.login(&e.user.email, &e.user.password).await,
        429,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn concurrent_uses_of_one_mfa_token_open_one_session_at_most() {
    let app = TestApp::spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let token = app.mfa_first_step(&e.user).await;
    let code = code_at(&e.secret, e.confirmed_step + 1);
    let answers = join_all((0..8).map(|_| second_step(&app, &token, &code))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // The others lost the token (401), or met the lockout's cap on attempts in flight at
    // once (429: concurrent guesses cannot outrun the count).
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND second_factor",
            &e.user.id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_secret_is_stored_encrypted_under_a_key_outside_the_database() {
    let app = TestApp::spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let raw = data_encoding::BASE32_NOPAD
        .decode(e.secret.as_bytes())
        .expect("base32");
    let id: uuid::Uuid = e.user.id.parse().expect("uuid");
    let db = app.database().await;
    let row = db
        .query_one(
            "SELECT key_id, secret, row_to_json(t)::text FROM mfa_totp t WHERE user_id = $1",
            &[&id],
        )
        .await
        .expect("stored");
    let key_id: String = row.get(0);
    let stored: Vec<u8> = row.get(1);
    let as_text: String = row.get(2);
    assert_eq!(key_id, "k1");
    assert!(
        stored.len() >= 12 + raw.len() + 16,
        "nonce, ciphertext and tag"
    );
    assert!(
        !stored.windows(raw.len()).any(|w| w == raw.as_slice()),
        "no plain secret"
    );
    assert!(!as_text.contains(&e.secret), "no base32 secret in the row");
    // The key lives in the key file, readable by its owner only.
    let key_file = app.temp_dir().join("mfa-keys.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Copied onto another account, the ciphertext does not decrypt: that account's second
    // step fails closed (no code of the copied secret opens it).
    let other = app.enroll_mfa(app.new_user().await).await;
    let other_id: uuid::Uuid = other.user.id.parse().expect("uuid");
    db.execute(
        "UPDATE mfa_totp SET secret = $2, key_id = $3, last_step = NULL WHERE user_id = $1",
        &[&other_id, &stored, &key_id],
    )
    .await
    .expect("copy");
    let token = app.mfa_first_step(&other.user).await;
    let resp = second_step(&app, &token, &code_at(&e.secret, current_step())).await;
    assert_problem(resp, 500, "internal_error").await;
}

#[tokio::test]
async fn disable_checks_state_then_password_then_code_and_sends_notices() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::builder()
        .mail_to(&smtp, "https://app.example.test")
        .spawn()
        .await;
    let user = app.new_user().await;
    let access = user.tokens.access_token.clone();
    let body = |password: &str, code: &str| json!({ "current_password": password, "code": code });
    assert_problem(
        app.post_authed(DISABLE, &access, &body(&user.password, "123456"))
            .await,
        409,
        "mfa_not_enabled",
    )
    .await;

    let e = app.enroll_mfa(user).await;
    smtp.wait_for_about(
        &e.user.email,
        "Two-factor login is on for your account",
        1,
        MAIL_WAIT,
    )
    .await;
    let code = code_at(&e.secret, e.confirmed_step + 1);
    assert_problem(
        app.post_authed(DISABLE, &access, &body("not the password at all", &code))
            .await,
        403,
        "invalid_credentials",
    )
    .await;
    let wrong = format!(
        "{:06}",
        (code.parse::<u32>().expect("digits") + 1) % 1_000_000
    );
    assert_problem(
        app.post_authed(DISABLE, &access, &body(&e.user.password, &wrong))
            .await,
        400,
        "invalid_mfa_code",
    )
    .await;
    expect_status(
        app.post_authed(DISABLE, &access, &body(&e.user.password, &code))
            .await,
        204,
    )
    .await;
    let notice = smtp
        .wait_for_about(
            &e.user.email,
            "Two-factor login is off for your account",
            1,
            MAIL_WAIT,
        )
        .await
        .remove(0);
    assert!(
        !notice.text().contains("administrator"),
        "{}",
        notice.text()
    );

    let me = expect_json(app.me(&access).await, 200).await;
    assert_eq!(me["mfa_enabled"], false);
    let pair = app.login_ok(&e.user.email, &e.user.password).await;
    assert_eq!(amr_of(&pair.access_token), json!(["pwd"]));
    let id: uuid::Uuid = e.user.id.parse().expect("uuid");
    let left: i64 = app
        .database()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM mfa_totp WHERE user_id = $1) + (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1)",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the secret and the recovery codes are gone");
}

#[tokio::test]
async fn a_code_spent_on_disable_cannot_log_in() {
    let app = TestApp::spawn().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    // Turned off with a recovery code, then on again: that code is gone with the old set.
    expect_status(
        app.post_authed(
            DISABLE,
            &e.user.tokens.access_token,
            &json!({ "current_password": e.user.password, "code": e.recovery_codes[0] }),
        )
        .await,
        204,
    )
    .await;
    let again = app.enroll_mfa(e.user).await;
    let token = app.mfa_first_step(&again.user).await;
    assert_problem(
        second_step(&app, &token, &e.recovery_codes[0]).await,
        401,
        "invalid_mfa_code",
    )
    .await;
}

#[tokio::test]
async fn an_admin_removes_a_users_second_factor_but_cannot_turn_it_on() {
    let smtp = SmtpServer::start().await;
    let (email, password) = (unique_admin_email(), strong_password());
    let app = TestApp::builder()
        .mail_to(&smtp, "https://app.example.test")
        .bootstrap_admin(&email, &password)
        .spawn()
        .await;
    let admin = app.login_user(&email, &password).await;
    let e = app.enroll_mfa(app.new_user().await).await;
    app.mfa_first_step(&e.user).await;
    assert_problem(
        app.admin_patch(
            &admin.tokens.access_token,
            &e.user.id,
            &json!({ "mfa_enabled": true }),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    let user = expect_json(
        app.admin_patch(
            &admin.tokens.access_token,
            &e.user.id,
            &json!({ "mfa_enabled": false }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(user["mfa_enabled"], false);
    let notice = smtp
        .wait_for_about(
            &e.user.email,
            "Two-factor login is off for your account",
            1,
            MAIL_WAIT,
        )
        .await
        .remove(0);
    assert!(notice.text().contains("administrator"), "{}", notice.text());
    // One step again, and the old secret is gone.
    let pair = app.login_ok(&e.user.email, &e.user.password).await;
    assert_eq!(amr_of(&pair.access_token), json!(["pwd"]));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM mfa_totp WHERE user_id = $1",
            &e.user.id
        )
        .await,
        0
    );
}

#[tokio::test]
async fn admin_routes_can_demand_a_second_factor() {
    let (email, password) = (unique_admin_email(), strong_password());
    let app = TestApp::builder()
        .env("ADMIN_REQUIRES_MFA", true)
        .bootstrap_admin(&email, &password)
        .spawn()
        .await;
    let admin = app.login_user(&email, &password).await;
    let problem = assert_problem(
        app.admin_list(&admin.tokens.access_token, "").await,
        403,
        "forbidden",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("second factor"),
        "{problem}"
    );
    // The admin's own routes still work, so the admin can turn two-factor login on.
    let e = app.enroll_mfa(admin).await;
    let token = app.mfa_first_step(&e.user).await;
    let pair = token_pair(
        expect_json(
            second_step(&app, &token, &code_at(&e.secret, e.confirmed_step + 1)).await,
            200,
        )
        .await,
    );
    expect_status(app.admin_list(&pair.access_token, "").await, 200).await;
    // An ordinary user with a second factor is still no admin.
    let u = app.enroll_mfa(app.new_user().await).await;
    let token = app.mfa_first_step(&u.user).await;
    let pair = token_pair(
        expect_json(
            second_step(&app, &token, &code_at(&u.secret, u.confirmed_step + 1)).await,
            200,
        )
        .await,
    );
    assert_problem(
        app.admin_list(&pair.access_token, "").await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn the_authorizer_passes_amr_on_and_a_route_rule_can_demand_otp() {
    use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
    use user_service::auth::authorizer::authorize_request;
    use user_service::auth::rules::RouteRules;
    use user_service_tests::runtime_api::authorizer_event;

    let app = TestApp::spawn().await;
    let plain = app.new_user().await;
    let e = app.enroll_mfa(app.new_user().await).await;
    let token = app.mfa_first_step(&e.user).await;
    let with_otp = token_pair(
        expect_json(
            second_step(&app, &token, &code_at(&e.secret, e.confirmed_step + 1)).await,
            200,
        )
        .await,
    );
    let state = user_service::app::state(&app.config).await.expect("state");
    let rules = RouteRules::from_json(
        r#"{"GET /v1/reports": ["user", "admin"],
            "POST /v1/payments": {"roles": ["user", "admin"], "amr": ["otp"]}}"#,
    )
    .expect("rules");
    let decide = |route: &'static str, path: &'static str, access: String| {
        let state = state.clone();
        let rules = rules.clone();
        async move {
            let event: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_value(
                authorizer_event(route, path, Some(&format!("Bearer {access}"))),
            )
            .expect("event");
            let response = authorize_request(
                state.authenticator.tokens(),
                state.authenticator.revocations(),
                &rules,
                &state.audit,
                &event,
            )
            .await
            .expect("decided");
            serde_json::to_value(&response).expect("json")
        }
    };
    let denied = decide(
        "POST /v1/payments",
        "/v1/payments",
        plain.tokens.access_token.clone(),
    )
    .await;
    assert_eq!(denied["isAuthorized"], false, "{denied}");
    let allowed = decide(
        "POST /v1/payments",
        "/v1/payments",
        with_otp.access_token.clone(),
    )
    .await;
    assert_eq!(allowed["isAuthorized"], true, "{allowed}");
    assert_eq!(allowed["context"]["amr"], "pwd otp");
    // The array form keeps working, and its context says pwd for a password-only session.
    let plain_allowed = decide(
        "GET /v1/reports",
        "/v1/reports",
        plain.tokens.access_token.clone(),
    )
    .await;
    assert_eq!(plain_allowed["isAuthorized"], true, "{plain_allowed}");
    assert_eq!(plain_allowed["context"]["amr"], "pwd");
}
