//! Reading and forging JWTs the way an attacker (or a third-party verifier) would.
//!
//! The forging tests read the PEM key file the server created, so they can mint tokens that
//! are correctly signed but wrong in exactly one way. [`SigningKey`] also re-signs a real
//! token unchanged, which the service must accept: that proves the forging code works, so a
//! 401 for a forged token means the service caught the flaw, not that the test botched the
//! signature.

use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// base64url without padding, as JWTs use.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {s}"))
}

/// `(header, claims)` of a JWT, without checking the signature.
pub fn decode_unverified(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "a JWS compact token has 3 dot-separated parts: {token}"
    );
    let header = serde_json::from_slice(&b64url_decode(parts[0]))
        .unwrap_or_else(|e| panic!("JWT header is not JSON ({e}): {token}"));
    let claims = serde_json::from_slice(&b64url_decode(parts[1]))
        .unwrap_or_else(|e| panic!("JWT payload is not JSON ({e}): {token}"));
    (header, claims)
}

/// The header of a JWT.
pub fn header_of(token: &str) -> Value {
    decode_unverified(token).0
}

/// The claims of a JWT.
pub fn claims_of(token: &str) -> Value {
    decode_unverified(token).1
}

/// The `kid` of a JWT's header.
pub fn kid_of(token: &str) -> String {
    header_of(token)["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("token header has no string `kid`: {token}"))
        .to_owned()
}

/// The third (signature) part of a JWT.
pub fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or_default()
}

/// `header.payload.signature` from JSON parts and an already encoded signature.
pub fn assemble(header: &Value, claims: &Value, signature_b64: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string()),
        signature_b64
    )
}

/// An unsigned token (`alg` as given, typically some spelling of `none`, empty signature).
pub fn unsigned_token(alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    assemble(&header, claims, "")
}

/// A token MACed with `alg` (HS256/HS384/HS512) under `secret` (computed with aws-lc-rs
/// directly, so that no library refuses an odd secret such as an empty one).
pub fn hmac_token(alg: Algorithm, secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    use aws_lc_rs::hmac;
    let (name, mac) = match alg {
        Algorithm::HS256 => ("HS256", hmac::HMAC_SHA256),
        Algorithm::HS384 => ("HS384", hmac::HMAC_SHA384),
        Algorithm::HS512 => ("HS512", hmac::HMAC_SHA512),
        other => panic!("not an HMAC algorithm: {other:?}"),
    };
    let mut header = json!({ "alg": name, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(mac, secret), signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(tag.as_ref()))
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every PEM block in a key file, in order.
pub fn read_key_file(path: &Path) -> Vec<pem::Pem> {
    let text = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read key file {}: {e}", path.display()));
    let blocks = pem::parse_many(&text)
        .unwrap_or_else(|e| panic!("key file {} is not PEM: {e}", path.display()));
    assert!(
        !blocks.is_empty(),
        "key file {} holds no PEM block",
        path.display()
    );
    blocks
}

/// A private key the tests sign with.
pub struct SigningKey {
    key: EncodingKey,
    alg: Algorithm,
}

impl SigningKey {
    /// Loads a private key PEM block for `alg` (`ES256`, `RS256` or `EdDSA`).
    ///
    /// Assumption: the server writes PKCS#8 (`PRIVATE KEY`); SEC1 (`EC PRIVATE KEY`) and
    /// PKCS#1 (`RSA PRIVATE KEY`) are accepted too so the tests do not depend on the choice.
    pub fn from_pem(block: &pem::Pem, alg: &str) -> Self {
        let alg = Algorithm::from_str(alg).unwrap_or_else(|e| panic!("algorithm {alg}: {e}"));
        let key = match alg {
            Algorithm::ES256 => {
                use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
                let pair = EcdsaKeyPair::from_private_key_der(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    block.contents(),
                )
                .unwrap_or_else(|e| panic!("not a P-256 private key ({}): {e:?}", block.tag()));
                let pkcs8 = pair.to_pkcs8v1().expect("re-encode as PKCS#8");
                EncodingKey::from_ec_der(pkcs8.as_ref())
            }
            Algorithm::EdDSA => EncodingKey::from_ed_der(block.contents()),
            Algorithm::RS256 => match block.tag() {
                "RSA PRIVATE KEY" => EncodingKey::from_rsa_der(block.contents()),
                _ => EncodingKey::from_rsa_pem(pem::encode(block).as_bytes())
                    .unwrap_or_else(|e| panic!("not an RSA private key: {e}")),
            },
            other => panic!("the service signs with ES256, RS256 or EdDSA, not {other:?}"),
        };
        Self { key, alg }
    }

    /// Loads the first (signing) key of the file at `path`.
    pub fn from_key_file(path: &Path, alg: &str) -> Self {
        Self::from_pem(&read_key_file(path)[0], alg)
    }

    /// A fresh ES256 key the service has never seen (generated with aws-lc-rs).
    pub fn generate_es256() -> (Self, pem::Pem) {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let doc = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .expect("generate a P-256 key");
        let block = pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec());
        (Self::from_pem(&block, "ES256"), block)
    }

    /// Signs `claims` under a header with this key's `alg`, `typ: JWT` and `kid`.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` under exactly `header` (its `alg` must match the key).
    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.key)
            .unwrap_or_else(|e| panic!("signing failed ({e}) with header {header:?}"))
    }

    /// Re-signs `token`'s own header and claims after `edit` changed the claims.
    pub fn resign(&self, token: &str, edit: impl FnOnce(&mut Value)) -> String {
        let (header, mut claims) = decode_unverified(token);
        edit(&mut claims);
        let header: Header = serde_json::from_value(header.clone())
            .unwrap_or_else(|e| panic!("unusual JWT header ({e}): {header}"));
        self.sign_with_header(&header, &claims)
    }
}

/// The SubjectPublicKeyInfo DER of a P-256 public key given as a JWK (`kty: EC`, `crv: P-256`).
pub fn ec_p256_spki_der(jwk: &Value) -> Vec<u8> {
    assert_eq!(jwk["kty"], "EC", "not an EC JWK: {jwk}");
    assert_eq!(jwk["crv"], "P-256", "not a P-256 JWK: {jwk}");
    let x = b64url_decode(jwk["x"].as_str().expect("x"));
    let y = b64url_decode(jwk["y"].as_str().expect("y"));
    assert_eq!(
        (x.len(), y.len()),
        (32, 32),
        "P-256 coordinates are 32 bytes: {jwk}"
    );
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 0x00 0x04 || x || y }
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    der.extend_from_slice(&x);
    der.extend_from_slice(&y);
    der
}

/// `-----BEGIN PUBLIC KEY-----` PEM text of a SubjectPublicKeyInfo DER.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der.to_vec()))
}

/// The JWK with `kid` in a JWKS document.
pub fn jwk_by_kid<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("JWKS has no `keys` array: {jwks}"))
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("JWKS does not list kid {kid}: {jwks}"))
}

/// The kids a JWKS document lists.
pub fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("JWKS has no `keys` array: {jwks}"))
        .iter()
        .map(|k| {
            k["kid"]
                .as_str()
                .unwrap_or_else(|| panic!("every JWK needs a string kid: {jwks}"))
                .to_owned()
        })
        .collect()
}
