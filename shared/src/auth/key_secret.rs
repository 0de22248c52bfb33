//! The JWT signing keys as AWS Secrets Manager holds them: the secret's JSON format
//! ([`KeySecret`]), and [`SecretsManagerKeys`], the [`KeySource`] that reads it on Lambda.
//!
//! ```json
//! {"keys": [{"kid": "<RFC 7638 thumbprint>", "alg": "ES256",
//!            "pem": "-----BEGIN PRIVATE KEY-----...", "created_at": "2026-11-29T18:00:00Z",
//!            "retired_at": null}]}
//! ```
//!
//! The first key signs; every key verifies and is published in the JWKS (the order
//! [`KeySet::from_pem`](super::keys::KeySet::from_pem) takes). A key that no longer signs
//! carries the instant it stopped (`retired_at`), so that the rotation
//! ([`crate::rotation`]) can drop it once every token it signed has expired. A parsed
//! [`KeySecret`] is valid: each `kid` and `alg` is the key's own, no `kid` appears twice,
//! the signing key is not retired and every other key is.
//!
//! Only the functions that issue tokens (and the rotation) may read that secret. The others
//! read the *public-key secret* that the rotation writes beside it ([`public_json`],
//! [`SecretsManagerPublicKeys`]): the same keys' public halves as JWKs, the signing key
//! first, plus the pagination-cursor MAC key derived from the signing key (it signs nothing
//! but a cursor):
//!
//! ```json
//! {"keys": [{"kty": "EC", "crv": "P-256", "x": "...", "y": "...", "alg": "ES256",
//!            "kid": "<RFC 7638 thumbprint>", "use": "sig"}],
//!  "cursor_key": "<base64url>"}
//! ```
//!
//! Key material never leaves this module except as PEM text wrapped in [`SecretString`],
//! and never appears in an error or a log line (JSON errors give only a position).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_secretsmanager::Client;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::Jwk;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::keys::{KeyAlgorithm, KeySet, KeySource, SigningKey};
use crate::secrets::SecretsManager;

/// Why a key secret was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeySecretError {
    /// Not JSON of the expected shape (only the position is kept: serde's messages may
    /// quote the offending value).
    #[error(
        "the key secret is not the expected JSON ({category} error at line {line}, column {column})"
    )]
    Json {
        /// serde_json's category of the error (syntax, data, ...).
        category: &'static str,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// A `pem` that is not exactly one P-256, Ed25519 or RSA private key.
    #[error("key {index} of the key secret: {reason}")]
    BadKey {
        /// 1-based position in `keys`.
        index: usize,
        /// What is wrong (no key material).
        reason: String,
    },
    /// A `kid` that is not the key's RFC 7638 thumbprint.
    #[error("key {index} of the key secret: kid {kid:?} is not the key's thumbprint {actual:?}")]
    KidMismatch {
        /// 1-based position in `keys`.
        index: usize,
        /// The stored kid.
        kid: String,
        /// The key's real thumbprint.
        actual: String,
    },
    /// An `alg` that is not the key's algorithm.
    #[error("key {index} of the key secret: alg {alg:?} does not match the key ({actual})")]
    AlgMismatch {
        /// 1-based position in `keys`.
        index: usize,
        /// The stored alg.
        alg: String,
        /// The key's algorithm.
        actual: &'static str,
    },
    /// The same key twice.
    #[error("key {index} of the key secret repeats kid {kid:?}")]
    DuplicateKid {
        /// 1-based position of the repetition.
        index: usize,
        /// The repeated kid.
        kid: String,
    },
    /// `retired_at` on the signing key, or missing on a key after it.
    #[error("key {index} of the key secret: {reason}")]
    BadRetirement {
        /// 1-based position in `keys`.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// No key at all: the secret is still the template's placeholder.
    #[error("no signing key yet: the rotation has not run (the key secret holds no key)")]
    NoKeys,
}

impl From<serde_json::Error> for KeySecretError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json {
            category: match e.classify() {
                serde_json::error::Category::Io => "I/O",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "unexpected end",
            },
            line: e.line(),
            column: e.column(),
        }
    }
}

/// The `alg` name of a key algorithm, as JOSE spells it.
pub fn algorithm_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Es256 => "ES256",
        KeyAlgorithm::Rs256 => "RS256",
        KeyAlgorithm::EdDsa => "EdDSA",
    }
}

/// One key of the secret: validated, its PEM kept secret.
pub struct KeyEntry {
    kid: String,
    algorithm: KeyAlgorithm,
    pem: SecretString,
    created_at: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
}

impl KeyEntry {
    /// A new, not retired entry for `pem` (one private key), created at `created_at`.
    pub fn new(pem: SecretString, created_at: DateTime<Utc>) -> Result<Self, KeySecretError> {
        let key = read_one_key(&pem, 1)?;
        Ok(Self {
            kid: key.kid().to_owned(),
            algorithm: key.algorithm(),
            pem,
            created_at,
            retired_at: None,
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key stopped signing, if it has.
    pub fn retired_at(&self) -> Option<DateTime<Utc>> {
        self.retired_at
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// The whole secret: the keys, the signing key first.
#[derive(Debug, Default)]
pub struct KeySecret {
    keys: Vec<KeyEntry>,
}

/// The JSON as stored; only ever a transient step of [`KeySecret::parse`] and
/// [`KeySecret::to_json`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    keys: Vec<RawEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    kid: String,
    alg: String,
    pem: String,
    created_at: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
}

impl KeySecret {
    /// Parses and validates the secret's JSON (see the module docs for what is checked).
    pub fn parse(json: &SecretString) -> Result<Self, KeySecretError> {
        let raw: RawSecret = serde_json::from_str(json.expose_secret())?;
        let mut seen = HashSet::new();
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (i, entry) in raw.keys.into_iter().enumerate() {
            let index = i + 1;
            let pem = SecretString::from(entry.pem);
            let key = read_one_key(&pem, index)?;
            if key.kid() != entry.kid {
                return Err(KeySecretError::KidMismatch {
                    index,
                    kid: entry.kid,
                    actual: key.kid().to_owned(),
                });
            }
            let actual = algorithm_name(key.algorithm());
            if entry.alg != actual {
                return Err(KeySecretError::AlgMismatch {
                    index,
                    alg: entry.alg,
                    actual,
                });
            }
            if !seen.insert(entry.kid.clone()) {
                return Err(KeySecretError::DuplicateKid {
                    index,
                    kid: entry.kid,
                });
            }
            match (index, entry.retired_at) {
                (1, Some(_)) => {
                    return Err(KeySecretError::BadRetirement {
                        index,
                        reason: "the signing key (the first) cannot be retired",
                    });
                }
                (2.., None) => {
                    return Err(KeySecretError::BadRetirement {
                        index,
                        reason: "every key after the first must have retired_at",
                    });
                }
                _ => {}
            }
            keys.push(KeyEntry {
                kid: entry.kid,
                algorithm: key.algorithm(),
                pem,
                created_at: entry.created_at,
                retired_at: entry.retired_at,
            });
        }
        Ok(Self { keys })
    }

    /// The secret's JSON (holds the private keys: keep it secret).
    pub fn to_json(&self) -> SecretString {
        let raw = RawSecret {
            keys: self
                .keys
                .iter()
                .map(|k| RawEntry {
                    kid: k.kid.clone(),
                    alg: algorithm_name(k.algorithm).to_owned(),
                    pem: k.pem.expose_secret().to_owned(),
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                })
                .collect(),
        };
        // Strings and timestamps only: serializing cannot fail.
        serde_json::to_string(&raw).unwrap_or_default().into()
    }

    /// The keys, the signing key first.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }

    /// Every key's PEM, the signing key first: what [`KeySet::from_pem`] reads. No key is
    /// [`KeySecretError::NoKeys`].
    ///
    /// [`KeySet::from_pem`]: super::keys::KeySet::from_pem
    pub fn pem_chain(&self) -> Result<SecretString, KeySecretError> {
        if self.keys.is_empty() {
            return Err(KeySecretError::NoKeys);
        }
        let mut text = String::new();
        for key in &self.keys {
            text.push_str(key.pem.expose_secret().trim_end());
            text.push('\n');
        }
        Ok(text.into())
    }

    /// The secret after one rotation at `now`: `new` signs, the previous signing key is
    /// retired at `now`, and every key retired more than `retention` before `now` is
    /// dropped (by then every token it signed has expired).
    pub fn rotated(self, new: KeyEntry, now: DateTime<Utc>, retention: Duration) -> Self {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
        let mut keys = Vec::with_capacity(self.keys.len() + 1);
        keys.push(new);
        for mut key in self.keys {
            if key.kid == keys[0].kid {
                continue;
            }
            let retired_at = *key.retired_at.get_or_insert(now);
            if retired_at
                .checked_add_signed(retention)
                .is_none_or(|until| until >= now)
            {
                keys.push(key);
            }
        }
        Self { keys }
    }
}

/// Reads `pem` as exactly one private key (a second block would smuggle in a key the
/// `kid` check never saw).
fn read_one_key(pem: &SecretString, index: usize) -> Result<SigningKey, KeySecretError> {
    let bad = |reason: &str| KeySecretError::BadKey {
        index,
        reason: reason.to_owned(),
    };
    match pem::parse_many(pem.expose_secret()) {
        Ok(blocks) if blocks.len() == 1 => {}
        Ok(_) => return Err(bad("pem must hold exactly one PEM block")),
        Err(_) => return Err(bad("pem is not PEM")),
    }
    SigningKey::from_pem(pem.expose_secret())
        .map_err(|_| bad("pem is not a P-256, Ed25519 or RSA private key"))
}

/// The signing keys in a Secrets Manager secret (its `AWSCURRENT` version), as the
/// rotation function writes it. The client is built on first use.
#[derive(Clone)]
pub struct SecretsManagerKeys {
    secret_id: Arc<str>,
    secrets: SecretsManager,
}

impl fmt::Debug for SecretsManagerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerKeys")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerKeys {
    /// The keys in `secret_id` (name or ARN, e.g. `JWT_KEYS_SECRET_ARN`), read through
    /// `secrets`.
    pub fn new(secrets: SecretsManager, secret_id: impl Into<String>) -> Self {
        Self {
            secret_id: secret_id.into().into(),
            secrets,
        }
    }

    async fn client(&self) -> &Client {
        self.secrets.client().await
    }

    /// The current version of the secret, parsed and validated.
    pub async fn current(&self) -> anyhow::Result<KeySecret> {
        let output = self
            .client()
            .await
            .get_secret_value()
            .secret_id(self.secret_id.as_ref())
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| {
                anyhow::Error::new(e.into_service_error()).context(format!(
                    "reading the JWT key secret {} from Secrets Manager",
                    self.secret_id
                ))
            })?;
        let text = output.secret_string().ok_or_else(|| {
            anyhow::anyhow!("the JWT key secret {} has no SecretString", self.secret_id)
        })?;
        Ok(KeySecret::parse(&SecretString::from(text))?)
    }
}

impl KeySource for SecretsManagerKeys {
    async fn load(&self) -> anyhow::Result<KeySet> {
        KeySet::from_pem(&self.current().await?.pem_chain()?)
    }
}

/// The public-key secret as stored; only ever a transient step of [`public_json`] and
/// [`parse_public`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublic {
    keys: Vec<Jwk>,
    cursor_key: String,
}

/// The public-key secret's JSON for `set` (see the module docs): what the functions that
/// only verify read. Holds the cursor MAC key: keep it secret too.
pub fn public_json(set: &KeySet) -> SecretString {
    let raw = RawPublic {
        keys: set.jwks().keys,
        cursor_key: URL_SAFE_NO_PAD.encode(set.cursor_key().expose_secret()),
    };
    // JWKs and a string: serializing cannot fail.
    serde_json::to_string(&raw).unwrap_or_default().into()
}

/// Reads the public-key secret's JSON: a set that verifies (every `kid` checked against its
/// key) and cannot sign.
pub fn parse_public(json: &SecretString) -> anyhow::Result<KeySet> {
    let raw: RawPublic =
        serde_json::from_str(json.expose_secret()).map_err(KeySecretError::from)?;
    let cursor_key = URL_SAFE_NO_PAD
        .decode(&raw.cursor_key)
        .map_err(|_| anyhow::anyhow!("the cursor key is not base64url"))?;
    KeySet::from_public(&raw.keys, cursor_key).context("the public-key secret")
}

/// The public keys in a Secrets Manager secret (its `AWSCURRENT` version), as the rotation
/// function writes it: the key source of every function that verifies tokens but issues
/// none. The client is built on first use.
#[derive(Clone)]
pub struct SecretsManagerPublicKeys {
    secret_id: Arc<str>,
    secrets: SecretsManager,
}

impl fmt::Debug for SecretsManagerPublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerPublicKeys")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerPublicKeys {
    /// The public keys in `secret_id` (`JWT_PUBLIC_KEYS_SECRET_ARN`), read through `secrets`.
    pub fn new(secrets: SecretsManager, secret_id: impl Into<String>) -> Self {
        Self {
            secret_id: secret_id.into().into(),
            secrets,
        }
    }
}

impl KeySource for SecretsManagerPublicKeys {
    async fn load(&self) -> anyhow::Result<KeySet> {
        parse_public(&self.secrets.current_value(&self.secret_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeySet;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    fn entry(algorithm: KeyAlgorithm, created: &str) -> KeyEntry {
        KeyEntry::new(algorithm.generate_pem().expect("key"), at(created)).expect("entry")
    }

    #[test]
    fn a_secret_round_trips_and_its_pem_chain_is_a_key_set() {
        let first = entry(KeyAlgorithm::Es256, "2026-01-01T00:00:00Z");
        let kid = first.kid().to_owned();
        let secret = KeySecret::default().rotated(
            first,
            at("2026-01-01T00:00:00Z"),
            Duration::from_secs(60),
        );
        let second = entry(KeyAlgorithm::EdDsa, "2026-02-01T00:00:00Z");
        let new_kid = second.kid().to_owned();
        let secret = secret.rotated(second, at("2026-02-01T00:00:00Z"), Duration::from_secs(60));
        let json = secret.to_json();
        let value: serde_json::Value = serde_json::from_str(json.expose_secret()).expect("json");
        assert_eq!(value["keys"][0]["kid"], new_kid.as_str());
        assert_eq!(value["keys"][0]["alg"], "EdDSA");
        assert_eq!(value["keys"][0]["retired_at"], serde_json::Value::Null);
        assert_eq!(value["keys"][1]["kid"], kid.as_str());
        assert_eq!(value["keys"][1]["retired_at"], "2026-02-01T00:00:00Z");
        let parsed = KeySecret::parse(&json).expect("parses back");
        let set = KeySet::from_pem(&parsed.pem_chain().expect("keys")).expect("key set");
        assert_eq!(set.signing_key().kid(), new_kid);
        assert!(set.verification_key(&kid).is_some());
    }

    #[test]
    fn the_public_secret_holds_no_private_key_and_reads_back_as_a_set_that_cannot_sign() {
        let secret = KeySecret::default()
            .rotated(
                entry(KeyAlgorithm::Es256, "2026-01-01T00:00:00Z"),
                at("2026-01-01T00:00:00Z"),
                Duration::from_secs(60),
            )
            .rotated(
                entry(KeyAlgorithm::Rs256, "2026-01-02T00:00:00Z"),
                at("2026-01-02T00:00:00Z"),
                Duration::from_secs(86_400),
            );
        let private = KeySet::from_pem(&secret.pem_chain().expect("keys")).expect("set");
        let json = public_json(&private);
        let text = json.expose_secret();
        assert!(!text.contains("PRIVATE"), "{text}");
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        for key in value["keys"].as_array().expect("keys") {
            for private_part in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(key.get(private_part).is_none(), "{private_part} in {key}");
            }
        }
        let public = parse_public(&json).expect("reads back");
        assert_eq!(public.jwks(), private.jwks());
        assert_eq!(public.signing_key().kid(), secret.keys()[0].kid());
        assert!(public.signing_key().encoding_key().is_none());
        let err = parse_public(&SecretString::from(r#"{"keys": [], "cursor_key": ""}"#))
            .expect_err("placeholder");
        assert!(format!("{err:#}").contains("no public key yet"), "{err:#}");
    }

    #[test]
    fn rotation_drops_keys_retired_longer_than_the_retention() {
        let retention = Duration::from_secs(1_500);
        let a = entry(KeyAlgorithm::Es256, "2026-01-01T00:00:00Z");
        let a_kid = a.kid().to_owned();
        let secret = KeySecret::default().rotated(a, at("2026-01-01T00:00:00Z"), retention);
        let b = entry(KeyAlgorithm::Es256, "2026-01-01T01:00:00Z");
        let secret = secret.rotated(b, at("2026-01-01T01:00:00Z"), retention);
        // Within the retention of a's retirement: a stays.
        let c = entry(KeyAlgorithm::Es256, "2026-01-01T01:20:00Z");
        let secret = secret.rotated(c, at("2026-01-01T01:20:00Z"), retention);
        let kids: Vec<_> = secret.keys().iter().map(KeyEntry::kid).collect();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[2], a_kid);
        // Past it: a goes, b (retired 01:20) stays.
        let d = entry(KeyAlgorithm::Es256, "2026-01-01T01:30:00Z");
        let secret = secret.rotated(d, at("2026-01-01T01:30:00Z"), retention);
        assert_eq!(secret.keys().len(), 3);
        assert!(secret.keys().iter().all(|k| k.kid() != a_kid));
    }

    #[test]
    fn the_placeholder_parses_but_has_no_signing_key() {
        let empty = KeySecret::parse(&SecretString::from(r#"{"keys": []}"#)).expect("parses");
        let err = empty.pem_chain().expect_err("no key");
        assert!(err.to_string().contains("rotation has not run"), "{err}");
    }

    #[test]
    fn a_wrong_kid_alg_or_retirement_is_refused() {
        let secret = KeySecret::default().rotated(
            entry(KeyAlgorithm::Es256, "2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:00Z"),
            Duration::from_secs(60),
        );
        let good: serde_json::Value =
            serde_json::from_str(secret.to_json().expose_secret()).expect("json");
        let with = |field: &str, value: serde_json::Value| {
            let mut v = good.clone();
            v["keys"][0][field] = value;
            SecretString::from(v.to_string())
        };
        let err = KeySecret::parse(&with("kid", "not-the-thumbprint".into())).expect_err("kid");
        assert!(matches!(err, KeySecretError::KidMismatch { .. }), "{err}");
        let err = KeySecret::parse(&with("alg", "RS256".into())).expect_err("alg");
        assert!(matches!(err, KeySecretError::AlgMismatch { .. }), "{err}");
        let err = KeySecret::parse(&with("retired_at", "2026-01-02T00:00:00Z".into()))
            .expect_err("retired signer");
        assert!(matches!(err, KeySecretError::BadRetirement { .. }), "{err}");
        let pem = good["keys"][0]["pem"].as_str().expect("pem").to_owned();
        let err =
            KeySecret::parse(&with("pem", format!("{pem}{pem}").into())).expect_err("two blocks");
        assert!(matches!(err, KeySecretError::BadKey { .. }), "{err}");
        let mut twice = good.clone();
        let mut copy = good["keys"][0].clone();
        copy["retired_at"] = "2026-01-02T00:00:00Z".into();
        twice["keys"].as_array_mut().expect("keys").push(copy);
        let err = KeySecret::parse(&SecretString::from(twice.to_string())).expect_err("duplicate");
        assert!(matches!(err, KeySecretError::DuplicateKid { .. }), "{err}");
    }

    #[test]
    fn errors_never_quote_key_material() {
        let secret = KeySecret::default().rotated(
            entry(KeyAlgorithm::Es256, "2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:00Z"),
            Duration::from_secs(60),
        );
        let mut v: serde_json::Value =
            serde_json::from_str(secret.to_json().expose_secret()).expect("json");
        // A type error on the PEM's neighbour: serde would quote the value it saw.
        let pem = v["keys"][0]["pem"].as_str().expect("pem").to_owned();
        v["keys"][0]["created_at"] = pem.clone().into();
        let err = KeySecret::parse(&SecretString::from(v.to_string())).expect_err("bad date");
        let body = &pem[28..60];
        assert!(!err.to_string().contains(body), "{err}");
        assert!(!format!("{err:?}").contains(body), "{err:?}");
        assert!(!format!("{secret:?}").contains(body));
    }
}
