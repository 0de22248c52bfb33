//! GET /.well-known/jwks.json, and signing-key rotation with no downtime.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use user_service_tests::jwt::{header_of, jwk_by_kid, kid_of, kids, read_key_file};
use user_service_tests::{TestApp, expect_json};

/// Verifies `token` the way a third party would: with the published JWKS only.
fn verify_with_jwks(app: &TestApp, jwks: &Value, token: &str) -> Result<Value, String> {
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|e| format!("not a JWKS jsonwebtoken can read ({e}): {jwks}"))?;
    let kid = kid_of(token);
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in {jwks}"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK ({e}): {jwks}"))?;
    let alg: jsonwebtoken::Algorithm =
        serde_json::from_value(header_of(token)["alg"].clone()).map_err(|e| format!("alg: {e}"))?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[&app.config.jwt_issuer]);
    validation.set_audience(&[&app.config.jwt_audience]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| format!("{e}"))
}

#[tokio::test]
async fn the_jwks_publishes_the_key_of_issued_tokens() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let resp = app.get("/.well-known/jwks.json").await;
    let jwks = expect_json(resp, 200).await;
    let kid = kid_of(&user.tokens.access_token);
    let jwk = jwk_by_kid(&jwks, &kid);
    assert_eq!(jwk["kty"], "EC", "{jwk}");
    assert_eq!(jwk["crv"], "P-256", "{jwk}");
    if let Some(alg) = jwk.get("alg") {
        assert_eq!(alg, "ES256", "{jwk}");
    }
    if let Some(usage) = jwk.get("use") {
        assert_eq!(usage, "sig", "{jwk}");
    }
    for key in jwks["keys"].as_array().expect("keys") {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                key.get(private).is_none(),
                "the JWKS leaks private key material `{private}`: {key}"
            );
        }
    }
    let claims = verify_with_jwks(&app, &jwks, &user.tokens.access_token)
        .unwrap_or_else(|e| panic!("a third party cannot verify the token: {e}"));
    assert_eq!(claims["sub"], user.id);
}

#[tokio::test]
async fn rs256_and_eddsa_keys_sign_and_are_published() {
    for (alg, kty) in [("RS256", "RSA"), ("EdDSA", "OKP")] {
        let app = TestApp::builder().env("JWT_ALGORITHM", alg).spawn().await;
        let user = app.new_user().await;
        let token = &user.tokens.access_token;
        assert_eq!(header_of(token)["alg"], alg);
        let jwks = app.jwks().await;
        let jwk = jwk_by_kid(&jwks, &kid_of(token));
        assert_eq!(jwk["kty"], kty, "{jwk}");
        verify_with_jwks(&app, &jwks, token)
            .unwrap_or_else(|e| panic!("{alg}: a third party cannot verify the token: {e}"));
        app.assert_me_status(token, 200).await;
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                jwk.get(private).is_none(),
                "{alg}: private `{private}` leaked"
            );
        }
    }
}

/// The key file may hold several keys: the first signs, all verify and are published. So a
/// new key is rolled out by putting it first, and tokens signed by the old key keep working
/// until they expire.
#[tokio::test]
async fn signing_keys_rotate_without_downtime() {
    let a = TestApp::spawn().await;
    let user = a.new_user().await;
    let token_a = user.tokens.access_token.clone();
    let kid1 = kid_of(&token_a);

    // key2: made by the service itself, in a throwaway deployment with a fresh key path.
    let throwaway = TestApp::spawn().await;
    let throwaway_kids = kids(&throwaway.jwks().await);
    assert_eq!(throwaway_kids.len(), 1, "a new key file holds one key");
    let kid2 = throwaway_kids[0].clone();
    assert_ne!(kid1, kid2);
    let key2 = std::fs::read_to_string(throwaway.key_file()).expect("key2");
    let key1 = std::fs::read_to_string(a.key_file()).expect("key1");
    assert_eq!(read_key_file(a.key_file()).len(), 1);

    let rotated = a.temp_dir().join("rotated.pem");
    std::fs::write(&rotated, format!("{}\n{}", key2.trim_end(), key1)).expect("write");
    let only_key2 = a.temp_dir().join("only-key2.pem");
    std::fs::write(&only_key2, &key2).expect("write");

    // Instance B, same database and Redis, with [key2, key1].
    let b = a.sibling().key_file(&rotated).spawn().await;
    let published = kids(&b.jwks().await);
    assert!(
        published.contains(&kid1) && published.contains(&kid2),
        "B publishes both keys: {published:?}"
    );
    b.assert_me_status(&token_a, 200).await;
    let token_b = b.login_ok(&user.email, &user.password).await.access_token;
    assert_eq!(kid_of(&token_b), kid2, "the first key in the file signs");
    let refreshed = b.refresh_ok(&user.tokens.refresh_token).await;
    assert_eq!(kid_of(&refreshed.access_token), kid2);
    verify_with_jwks(&b, &b.jwks().await, &token_b)
        .unwrap_or_else(|e| panic!("B's token does not verify with B's JWKS: {e}"));

    // Instance C, with key2 only: key1's tokens are no longer honoured.
    let c = a.sibling().key_file(&only_key2).spawn().await;
    assert_eq!(kids(&c.jwks().await), vec![kid2.clone()]);
    c.assert_me_status(&token_a, 401).await;
    c.assert_me_status(&token_b, 200).await;
}
