//! POST /v1/auth/login: the token pair, the access token's header and claims. The abuse
//! limits a client runs into are in `limits.rs`.

use serde_json::Value;
use user_service_tests::jwt::{decode_unverified, now};
use user_service_tests::{
    TestApp, TokenPair, expect_json, strong_password, token_pair, unique_email,
};

use crate::register::assert_user_shape;

const THIRTY_DAYS: i64 = 30 * 24 * 3600;

/// Asserts the contract's token-pair shape and the access token's header and claims.
pub fn assert_token_pair(app: &TestApp, body: &Value, user_id: &str) -> TokenPair {
    let keys: std::collections::BTreeSet<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("a token pair is an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
            "user"
        ]
        .into(),
        "a token pair has exactly these fields: {body}"
    );
    assert!(
        body["expires_in"].is_i64(),
        "expires_in is an integer: {body}"
    );
    assert!(
        body["refresh_expires_in"].is_i64(),
        "refresh_expires_in is an integer: {body}"
    );
    let pair = token_pair(body.clone());
    assert_eq!(pair.token_type, "Bearer");
    assert_user_shape(&pair.user);
    assert_eq!(pair.user["id"], user_id);

    let (header, claims) = decode_unverified(&pair.access_token);
    let kid = header["kid"].as_str().unwrap_or_default();
    assert!(!kid.is_empty(), "the header carries a kid: {header}");
    assert_eq!(claims["iss"], app.config.jwt_issuer, "iss: {claims}");
    let audience = &app.config.jwt_audience;
    let aud_ok = claims["aud"] == *audience
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == audience));
    assert!(aud_ok, "aud must be {audience}: {claims}");
    assert_eq!(claims["sub"], user_id, "sub is the user id: {claims}");
    assert_eq!(claims["role"], pair.user["role"], "role: {claims}");
    for claim in ["sid", "jti"] {
        assert!(
            claims[claim].as_str().is_some_and(|s| !s.is_empty()),
            "`{claim}` is a non-empty string: {claims}"
        );
    }
    let iat = claims["iat"].as_i64().expect("iat is a number");
    let exp = claims["exp"].as_i64().expect("exp is a number");
    assert!((iat - now()).abs() < 60, "iat is about now: {claims}");
    assert_eq!(pair.expires_in, exp - iat, "expires_in == exp - iat");
    assert!(pair.refresh_expires_in > 0, "{body}");
    assert!(pair.refresh_expires_in <= THIRTY_DAYS, "{body}");
    assert!(
        pair.refresh_token.len() >= 43,
        "a refresh token carries at least 256 random bits: {}",
        pair.refresh_token
    );
    pair
}

#[tokio::test]
async fn login_returns_a_token_pair() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let password = strong_password();
    let user = app.register_ok(&email, &password).await;
    let body = expect_json(app.login(&email, &password).await, 200).await;
    let pair = assert_token_pair(&app, &body, user["id"].as_str().expect("id"));
    // Defaults: 15 minutes, 30 days (the idle expiry comes before the 90-day absolute one).
    assert_eq!(pair.expires_in, 900);
    assert!(
        pair.refresh_expires_in > THIRTY_DAYS - 120,
        "refresh_expires_in should be 30 days: {}",
        pair.refresh_expires_in
    );
    let (header, _) = decode_unverified(&pair.access_token);
    assert_eq!(header["alg"], "ES256", "ES256 by default: {header}");
    // The token works.
    let me = expect_json(app.me(&pair.access_token).await, 200).await;
    assert_eq!(me["id"], user["id"]);
    let text = body.to_string();
    assert!(!text.contains(&password), "the password is echoed: {text}");
}

#[tokio::test]
async fn each_login_is_a_session_of_its_own() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let second = app.login_ok(&user.email, &user.password).await;
    let (_, a) = decode_unverified(&user.tokens.access_token);
    let (_, b) = decode_unverified(&second.access_token);
    assert_ne!(a["sid"], b["sid"], "two logins, two sessions");
    assert_ne!(a["jti"], b["jti"]);
    assert_ne!(user.tokens.refresh_token, second.refresh_token);
}

#[tokio::test]
async fn login_takes_the_email_in_any_case_and_with_spaces() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let shouted = format!("  {}  ", user.email.to_uppercase());
    let body = expect_json(app.login(&shouted, &user.password).await, 200).await;
    assert_eq!(body["user"]["email"], user.email);
}

#[tokio::test]
async fn token_lifetimes_follow_the_configuration() {
    let app = TestApp::builder()
        .env("ACCESS_TOKEN_TTL_SECONDS", 120)
        .env("REFRESH_TOKEN_TTL_SECONDS", 3600)
        .env("SESSION_MAX_LIFETIME_SECONDS", 7200)
        .spawn()
        .await;
    let user = app.new_user().await;
    assert_eq!(user.tokens.expires_in, 120);
    let (_, claims) = decode_unverified(&user.tokens.access_token);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    let r = user.tokens.refresh_expires_in;
    assert!(
        (3540..=3600).contains(&r),
        "refresh_expires_in {r}, want 3600"
    );
}
