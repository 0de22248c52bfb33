//! Forged and invalid access tokens: every one is 401 `unauthorized` on GET /v1/users/me.
//!
//! The forgeries are made with the server's own private key (read from the key file it
//! created), so each is correctly signed and wrong in exactly one way. The first test shows
//! that a faithful re-signing IS accepted: otherwise the 401s would prove nothing.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use user_service_tests::jwt::{
    SigningKey, assemble, b64url, b64url_decode, decode_unverified, ec_p256_spki_der, hmac_token,
    jwk_by_kid, kid_of, now, public_key_pem, signature_of, unsigned_token,
};
use user_service_tests::problem::read;
use user_service_tests::{TestApp, TestUser};

async fn app_and_user() -> (TestApp, TestUser, SigningKey) {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let key = SigningKey::from_key_file(app.key_file(), "ES256");
    (app, user, key)
}

/// Sends each token to GET /v1/users/me and collects those not answered 401 `unauthorized`.
async fn rejected_all(app: &TestApp, cases: Vec<(&str, String)>) {
    let mut failures = Vec::new();
    for (name, token) in cases {
        let (status, content_type, body) = read(app.me(&token).await).await;
        let code = serde_json::from_str::<Value>(&body).unwrap_or_default()["code"].clone();
        if status != 401
            || code != "unauthorized"
            || !content_type.starts_with("application/problem+json")
        {
            failures.push(format!("{name}: {status} {content_type} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "forged tokens not answered 401 unauthorized:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_faithfully_resigned_token_is_accepted() {
    let (app, user, key) = app_and_user().await;
    let copy = key.resign(&user.tokens.access_token, |_| {});
    assert_ne!(
        copy, user.tokens.access_token,
        "ECDSA signatures are randomised, so this is our own signature"
    );
    let me = user_service_tests::expect_json(app.me(&copy).await, 200).await;
    assert_eq!(me["id"], user.id);
}

#[tokio::test]
async fn tokens_with_wrong_claims_are_401() {
    let (app, user, key) = app_and_user().await;
    let token = &user.tokens.access_token;
    let t = now();
    let cases = vec![
        (
            "wrong iss",
            key.resign(token, |c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "no iss",
            key.resign(token, |c| drop(c.as_object_mut().unwrap().remove("iss"))),
        ),
        (
            "wrong aud",
            key.resign(token, |c| c["aud"] = json!("some-other-service")),
        ),
        (
            "wrong aud list",
            key.resign(token, |c| c["aud"] = json!(["a", "b"])),
        ),
        (
            "no aud",
            key.resign(token, |c| drop(c.as_object_mut().unwrap().remove("aud"))),
        ),
        (
            "expired an hour ago",
            key.resign(token, |c| {
                c["iat"] = json!(t - 4500);
                c["exp"] = json!(t - 3600);
            }),
        ),
        (
            "expired 5 minutes ago (beyond any sane leeway)",
            key.resign(token, |c| {
                c["iat"] = json!(t - 1200);
                c["exp"] = json!(t - 300);
            }),
        ),
        // Assumption: a token without `exp` never expires, so it cannot be accepted.
        (
            "no exp",
            key.resign(token, |c| drop(c.as_object_mut().unwrap().remove("exp"))),
        ),
        (
            "exp as a string",
            key.resign(token, |c| c["exp"] = json!((t + 600).to_string())),
        ),
        // Someone else's user id in a live session: the sid does not belong to that user.
        (
            "unknown sub",
            key.resign(token, |c| {
                c["sub"] = json!(uuid::Uuid::now_v7().to_string())
            }),
        ),
    ];
    rejected_all(&app, cases).await;
    // None of that revoked the real token.
    app.assert_me_status(token, 200).await;
}

#[tokio::test]
async fn a_tampered_payload_under_the_original_signature_is_401() {
    let (app, user, _) = app_and_user().await;
    let token = &user.tokens.access_token;
    let (header, claims) = decode_unverified(token);
    let sig = signature_of(token);
    let mut admin = claims.clone();
    admin["role"] = json!("admin");
    let mut later = claims.clone();
    later["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    let other_user = app.new_user().await;
    let mut someone_else = claims.clone();
    someone_else["sub"] = json!(other_user.id);
    let cases = vec![
        ("role flipped to admin", assemble(&header, &admin, sig)),
        ("exp pushed back a day", assemble(&header, &later, sig)),
        ("sub of another user", assemble(&header, &someone_else, sig)),
        ("signature removed", assemble(&header, &claims, "")),
        (
            "signature of another token",
            assemble(
                &header,
                &claims,
                signature_of(&other_user.tokens.access_token),
            ),
        ),
        (
            "signature truncated",
            assemble(&header, &claims, &sig[..sig.len() - 4]),
        ),
    ];
    rejected_all(&app, cases).await;
    app.assert_me_status(token, 200).await;
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_401() {
    let (app, user, _) = app_and_user().await;
    let token = &user.tokens.access_token;
    let (header, claims) = decode_unverified(token);
    let kid = kid_of(token);
    let jwks = app.jwks().await;
    let jwk = jwk_by_kid(&jwks, &kid);
    let spki = ec_p256_spki_der(jwk);
    let pem = public_key_pem(&spki);
    let raw_point = spki[spki.len() - 65..].to_vec();
    let jwk_json = jwk.to_string();

    let mut cases = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            format!("alg {alg}"),
            unsigned_token(alg, Some(&kid), &claims),
        ));
    }
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    cases.push((
        "alg none with the real signature kept".into(),
        assemble(&none_header, &claims, signature_of(token)),
    ));
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("public key PEM", pem.clone().into_bytes()),
        (
            "public key PEM, CRLF",
            pem.replace('\n', "\r\n").into_bytes(),
        ),
        (
            "public key PEM, no final newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
        ("public key DER", spki.clone()),
        ("raw public point", raw_point),
        ("JWK JSON", jwk_json.into_bytes()),
        ("x coordinate", b64url_decode(jwk["x"].as_str().unwrap())),
        ("kid", kid.clone().into_bytes()),
        ("empty secret", Vec::new()),
    ];
    for (what, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            cases.push((
                format!("{alg:?} keyed with the {what}"),
                hmac_token(alg, secret, Some(&kid), &claims),
            ));
        }
    }
    let cases = cases.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    rejected_all(&app, cases).await;
    app.assert_me_status(token, 200).await;
}

#[tokio::test]
async fn unknown_kids_and_foreign_keys_are_401() {
    let (app, user, key) = app_and_user().await;
    let token = &user.tokens.access_token;
    let (header, claims) = decode_unverified(token);
    let kid = kid_of(token);
    let mut header: jsonwebtoken::Header = serde_json::from_value(header).expect("header");
    header.kid = Some("not-a-kid-we-issued".into());
    let (stranger, _) = SigningKey::generate_es256();
    let cases = vec![
        (
            "unknown kid, signed by the real key",
            key.sign_with_header(&header, &claims),
        ),
        (
            "real kid, signed by a key the service never had",
            stranger.sign(Some(&kid), &claims),
        ),
        (
            "unknown kid, signed by a foreign key",
            stranger.sign(Some("not-a-kid-we-issued"), &claims),
        ),
        (
            "jku pointing elsewhere",
            stranger.sign_with_header(
                &{
                    let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
                    h.kid = Some(kid.clone());
                    h.jku = Some("http://127.0.0.1:9/jwks.json".into());
                    h
                },
                &claims,
            ),
        ),
        ("embedded jwk of a foreign key", {
            let mut h: Value = decode_unverified(&stranger.sign(Some(&kid), &claims)).0;
            h["jwk"] = json!({"kty": "EC", "crv": "P-256", "x": b64url([1u8; 32]), "y": b64url([2u8; 32])});
            let signed = stranger.sign(Some(&kid), &claims);
            assemble(&h, &claims, signature_of(&signed))
        }),
    ];
    rejected_all(&app, cases).await;
}

#[tokio::test]
async fn a_token_of_another_deployment_is_401() {
    let ours = TestApp::spawn().await;
    let theirs = TestApp::spawn().await;
    let user = theirs.new_user().await;
    // Same issuer and audience, same claims shape, other key and database.
    ours.assert_me_status(&user.tokens.access_token, 401).await;
    theirs
        .assert_me_status(&user.tokens.access_token, 200)
        .await;
}
