//! JWT signing keys: where they come from ([`KeySource`]), and the set in use ([`KeySet`]).
//!
//! A key set is an ordered list of keys: the first signs new tokens, every one of them
//! verifies and is published in the JWKS. Rotation without downtime is therefore: put the
//! new key first and keep the old one after it until every token it signed has expired,
//! then drop it. Each key's `kid` is its RFC 7638 thumbprint, so every instance given the
//! same keys agrees on the ids without coordination.
//!
//! A set read from private keys ([`KeySet::from_pem`]) signs and verifies; one read from
//! their public halves ([`KeySet::from_public`]) only verifies: on AWS only the functions
//! that issue tokens can read the private keys (see [`super::key_secret`]).
//!
//! Private key material never leaves this module except as the `EncodingKey` that signs.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::telemetry::ErrorChain;
use anyhow::{Context as _, anyhow, bail};
use arc_swap::ArcSwapOption;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use futures::future::BoxFuture;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretBox, SecretString};

pub use crate::config::KeyAlgorithm;

impl KeyAlgorithm {
    /// The `alg` header value.
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    /// A fresh private key for this algorithm, PKCS#8 PEM.
    pub fn generate_pem(self) -> anyhow::Result<SecretString> {
        let der: Vec<u8> = match self {
            Self::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(|_| anyhow!("generating a P-256 key"))?
                    .as_ref()
                    .to_vec()
            }
            // PKCS#8 v1 (no embedded public key): the form jsonwebtoken reads.
            Self::EdDsa => {
                let pair =
                    Ed25519KeyPair::generate().map_err(|_| anyhow!("generating an Ed25519 key"))?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair
                    .as_der()
                    .map_err(|_| anyhow!("encoding the Ed25519 key"))?;
                der.as_ref().to_vec()
            }
            Self::Rs256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| anyhow!("generating an RSA key"))?;
                pair.as_der()
                    .map_err(|_| anyhow!("encoding the RSA key"))?
                    .as_ref()
                    .to_vec()
            }
        };
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)).into())
    }
}

/// Where signing keys come from: a PEM file here, AWS Secrets Manager on Lambda.
pub trait KeySource {
    /// Every key, the signing key first.
    fn load(&self) -> impl Future<Output = anyhow::Result<KeySet>> + Send;
}

/// Keys in a local PEM file, created (mode 0600) with one fresh key if it is missing.
#[derive(Debug, Clone)]
pub struct PemFile {
    path: PathBuf,
    algorithm_for_new_key: KeyAlgorithm,
}

impl PemFile {
    /// Keys at `path`; a missing file gets one new key for `algorithm_for_new_key`.
    pub fn new(path: impl Into<PathBuf>, algorithm_for_new_key: KeyAlgorithm) -> Self {
        Self {
            path: path.into(),
            algorithm_for_new_key,
        }
    }
}

impl KeySource for PemFile {
    async fn load(&self) -> anyhow::Result<KeySet> {
        let path = self.path.clone();
        let algorithm = self.algorithm_for_new_key;
        let pem = tokio::task::spawn_blocking(move || read_or_create(&path, algorithm)).await??;
        KeySet::from_pem(&pem)
    }
}

fn read_or_create(path: &Path, algorithm: KeyAlgorithm) -> anyhow::Result<SecretString> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Write a private temporary file, then hard-link it into place: the link fails if
    // another instance created the key first, and nobody ever reads a half-written file.
    let pem = algorithm.generate_pem()?;
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(pem.expose_secret().as_bytes())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), ?algorithm, "created a new JWT signing key");
            Ok(pem)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.into())
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// The signing keys could not be loaded (Secrets Manager unreachable, the secret empty or
/// malformed): a 503, never a 401, since the caller's token may well be good.
#[derive(Debug, thiserror::Error)]
#[error("JWT signing keys unavailable")]
pub struct KeysUnavailable(#[source] pub anyhow::Error);

type LoadKeys = Box<dyn Fn() -> BoxFuture<'static, anyhow::Result<KeySet>> + Send + Sync>;

/// The key set in use, and where a newer one comes from: fixed (a key file, read at start)
/// or read from a [`KeySource`] on first use and again after a refresh interval (Secrets
/// Manager, whose rotation then needs no redeploy). A token naming a `kid` not in the set
/// also triggers a reload, at most every [`UNKNOWN_KID_RELOAD_INTERVAL`], so an instance
/// verifies tokens signed by a key that another instance picked up first.
///
/// A failed reload keeps the set it has: the old keys stay good until the rotation retires
/// them, which waits for the longest token lifetime.
pub struct KeyRing {
    current: ArcSwapOption<KeySet>,
    loader: Option<LoadKeys>,
    refresh: Duration,
    /// When the last load was attempted; one reload at a time.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

/// The shortest time between two reloads asked for by unknown key ids: a stream of tokens
/// with made-up `kid`s must not turn into a stream of Secrets Manager calls.
pub const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.load())
            .field("refreshing", &self.loader.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Always `keys`.
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            current: ArcSwapOption::from_pointee(keys),
            loader: None,
            refresh: Duration::MAX,
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// Read from `source` on first use and again once `refresh` has passed.
    pub fn refreshing<S>(source: S, refresh: Duration) -> Self
    where
        S: KeySource + Send + Sync + 'static,
    {
        let source = Arc::new(source);
        Self {
            current: ArcSwapOption::empty(),
            loader: Some(Box::new(move || {
                let source = Arc::clone(&source);
                Box::pin(async move { source.load().await })
            })),
            refresh,
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// The set to use now, loading or refreshing it first if it is due.
    pub async fn current(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        self.reload_if_older_than(self.refresh).await
    }

    /// The set after a reload, if the last one is older than
    /// [`UNKNOWN_KID_RELOAD_INTERVAL`] (a token named a key this set does not have).
    pub async fn reload_for_unknown_kid(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        self.reload_if_older_than(UNKNOWN_KID_RELOAD_INTERVAL.min(self.refresh))
            .await
    }

    async fn reload_if_older_than(&self, age: Duration) -> Result<Arc<KeySet>, KeysUnavailable> {
        let current = self.current.load_full();
        let Some(loader) = &self.loader else {
            return current.ok_or_else(|| KeysUnavailable(anyhow!("no key set")));
        };
        let mut last_attempt = self.last_attempt.lock().await;
        let due = last_attempt.is_none_or(|at| at.elapsed() >= age);
        if !due {
            // Someone else reloaded while this caller waited for the lock, or the set is fresh.
            return self
                .current
                .load_full()
                .ok_or_else(|| KeysUnavailable(anyhow!("the last key load failed")));
        }
        *last_attempt = Some(Instant::now());
        let loaded = loader().await;
        match (loaded, current) {
            (Ok(set), _) => {
                let set = Arc::new(set);
                self.current.store(Some(Arc::clone(&set)));
                Ok(set)
            }
            (Err(e), Some(old)) => {
                tracing::warn!(error = %ErrorChain(e.as_ref()), "reloading the JWT keys failed; keeping the current set");
                Ok(old)
            }
            (Err(e), None) => {
                // Let the next request try again at once rather than after the interval.
                *last_attempt = None;
                Err(KeysUnavailable(e))
            }
        }
    }
}

/// One key of the set: its public half, and the private half where this instance may sign.
pub struct SigningKey {
    kid: String,
    algorithm: KeyAlgorithm,
    /// `None` in a set read from public keys only.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    public_jwk: Jwk,
}

impl SigningKey {
    /// Reads one PKCS#8 (or PKCS#1 RSA) private key in PEM; the algorithm follows the key type.
    pub fn from_pem(pem_text: &str) -> anyhow::Result<Self> {
        let bytes = pem_text.as_bytes();
        let (algorithm, encoding) = if let Ok(k) = EncodingKey::from_ec_pem(bytes) {
            (KeyAlgorithm::Es256, k)
        } else if let Ok(k) = EncodingKey::from_ed_pem(bytes) {
            (KeyAlgorithm::EdDsa, k)
        } else if let Ok(k) = EncodingKey::from_rsa_pem(bytes) {
            (KeyAlgorithm::Rs256, k)
        } else {
            bail!("not a P-256, Ed25519 or RSA private key");
        };
        let mut public_jwk = Jwk::from_encoding_key(&encoding, algorithm.jwt_algorithm())
            .context("deriving the public key")?;
        let kid = public_jwk
            .thumbprint(ThumbprintHash::SHA256)
            .context("computing the key id")?;
        public_jwk.common.key_id = Some(kid.clone());
        public_jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&public_jwk).context("building the verifier")?;
        Ok(Self {
            kid,
            algorithm,
            encoding: Some(encoding),
            decoding,
            public_jwk,
        })
    }

    /// Reads one public key as the JWKS publishes it: a P-256, Ed25519 or RSA key whose
    /// `alg` is its algorithm and whose `kid` is its RFC 7638 thumbprint. It verifies only.
    pub fn from_public_jwk(jwk: &Jwk) -> anyhow::Result<Self> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm as Alg};
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::EllipticCurve(p), Some(Alg::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                KeyAlgorithm::Es256
            }
            (AlgorithmParameters::OctetKeyPair(p), Some(Alg::EdDSA))
                if p.curve == EllipticCurve::Ed25519 =>
            {
                KeyAlgorithm::EdDsa
            }
            (AlgorithmParameters::RSA(_), Some(Alg::RS256)) => KeyAlgorithm::Rs256,
            _ => bail!("not a P-256 (ES256), Ed25519 (EdDSA) or RSA (RS256) public key"),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .context("computing the key id")?;
        if jwk.common.key_id.as_deref() != Some(kid.as_str()) {
            bail!("the kid is not the key's thumbprint {kid:?}");
        }
        let decoding = DecodingKey::from_jwk(jwk).context("building the verifier")?;
        Ok(Self {
            kid,
            algorithm,
            encoding: None,
            decoding,
            public_jwk: jwk.clone(),
        })
    }

    /// The key id (`kid` header).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Signs with this key; `None` where this instance holds its public half only.
    pub fn encoding_key(&self) -> Option<&EncodingKey> {
        self.encoding.as_ref()
    }

    /// Verifies with this key's public half.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The keys in use: the first signs, all verify.
pub struct KeySet {
    keys: Vec<SigningKey>,
    by_kid: HashMap<String, usize>,
    /// HMAC key derived from the signing key, for values the service signs for itself
    /// (pagination cursors): every instance with the same keys derives the same one. A set
    /// of public keys gets it alongside them (it can sign nothing but a cursor).
    mac_key: MacKey,
}

/// The cursor MAC key, and the bytes it was made from (for the public-key secret).
struct MacKey {
    key: aws_lc_rs::hmac::Key,
    bytes: SecretBox<[u8]>,
}

impl MacKey {
    /// The HMAC-SHA256 key of `bytes`.
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes),
            bytes: SecretBox::new(bytes.into_boxed_slice()),
        }
    }

    /// Derived from the signing key: the same keys give the same MAC key everywhere.
    fn derived_from(signer: &EncodingKey) -> Self {
        use aws_lc_rs::hmac;
        let root = hmac::Key::new(hmac::HMAC_SHA256, signer.as_bytes());
        Self::new(
            hmac::sign(&root, b"user-service internal mac key v1")
                .as_ref()
                .to_vec(),
        )
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Loads the set from a [`KeySource`].
    pub async fn load(source: &impl KeySource) -> anyhow::Result<Self> {
        source.load().await
    }

    /// Reads every PEM block of `text` (private keys), in order: a set that signs.
    pub fn from_pem(text: &SecretString) -> anyhow::Result<Self> {
        let blocks = pem::parse_many(text.expose_secret()).context("reading PEM")?;
        let mut keys = Vec::with_capacity(blocks.len());
        for (index, block) in blocks.iter().enumerate() {
            let key = SigningKey::from_pem(&pem::encode(block))
                .with_context(|| format!("key {} of the key file", index + 1))?;
            keys.push(key);
        }
        let Some(signer) = keys.first().and_then(SigningKey::encoding_key) else {
            bail!("no signing key yet (a new key secret is filled by its first rotation)");
        };
        let mac_key = MacKey::derived_from(signer);
        Ok(Self::of(keys, mac_key))
    }

    /// The public halves of the keys, in order, and the cursor MAC key (`cursor_key`, as
    /// [`cursor_key`](Self::cursor_key) gave it): a set that verifies but cannot sign.
    pub fn from_public(keys: &[Jwk], cursor_key: Vec<u8>) -> anyhow::Result<Self> {
        if keys.is_empty() {
            bail!("no public key yet (the public-key secret is filled by the first rotation)");
        }
        if cursor_key.len() < 32 {
            bail!("the cursor key is shorter than 32 bytes");
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(index, jwk)| {
                SigningKey::from_public_jwk(jwk)
                    .with_context(|| format!("public key {}", index + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::of(keys, MacKey::new(cursor_key)))
    }

    fn of(keys: Vec<SigningKey>, mac_key: MacKey) -> Self {
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid.clone(), i))
            .collect();
        Self {
            keys,
            by_kid,
            mac_key,
        }
    }

    /// Signs `data` with the derived MAC key (HMAC-SHA256).
    pub fn mac(&self, data: &[u8]) -> Vec<u8> {
        aws_lc_rs::hmac::sign(&self.mac_key.key, data)
            .as_ref()
            .to_vec()
    }

    /// Checks a MAC made by [`mac`](Self::mac), in constant time.
    pub fn verify_mac(&self, data: &[u8], tag: &[u8]) -> bool {
        aws_lc_rs::hmac::verify(&self.mac_key.key, data, tag).is_ok()
    }

    /// The cursor MAC key's bytes, for the public-key secret that the rotation writes.
    pub fn cursor_key(&self) -> &SecretBox<[u8]> {
        &self.mac_key.bytes
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The key with this `kid`, if it is in the set.
    pub fn verification_key(&self, kid: &str) -> Option<&SigningKey> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// The public JWKS: every key that may have signed a live token.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.public_jwk.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_a_key_it_can_read_back() {
        for algorithm in [
            KeyAlgorithm::Es256,
            KeyAlgorithm::EdDsa,
            KeyAlgorithm::Rs256,
        ] {
            let pem = algorithm.generate_pem().expect("generate");
            let set = KeySet::from_pem(&pem).expect("read back");
            assert_eq!(set.signing_key().algorithm(), algorithm);
            assert_eq!(
                set.signing_key().kid().len(),
                43,
                "SHA-256 thumbprint, base64url"
            );
        }
    }

    #[test]
    fn the_first_key_signs_and_every_key_is_published() {
        let new = KeyAlgorithm::Es256.generate_pem().expect("generate");
        let old = KeyAlgorithm::EdDsa.generate_pem().expect("generate");
        let both = SecretString::from(format!("{}{}", new.expose_secret(), old.expose_secret()));
        let set = KeySet::from_pem(&both).expect("two keys");
        let old_kid = KeySet::from_pem(&old)
            .expect("one key")
            .signing_key()
            .kid()
            .to_owned();
        assert_eq!(set.signing_key().algorithm(), KeyAlgorithm::Es256);
        assert!(set.verification_key(&old_kid).is_some());
        let jwks = serde_json::to_value(set.jwks()).expect("json");
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
        assert!(
            !jwks.to_string().contains("\"d\""),
            "no private parts: {jwks}"
        );
    }

    /// Keys held in memory, swapped by the test: the rotation seen by a running process.
    struct Swappable(std::sync::Mutex<anyhow::Result<SecretString>>);

    impl KeySource for Arc<Swappable> {
        async fn load(&self) -> anyhow::Result<KeySet> {
            match &*self.0.lock().expect("lock") {
                Ok(pem) => KeySet::from_pem(pem),
                Err(e) => Err(anyhow!("{e}")),
            }
        }
    }

    #[tokio::test]
    async fn a_refreshing_ring_loads_late_keeps_old_keys_on_failure_and_follows_new_kids() {
        let source = Arc::new(Swappable(std::sync::Mutex::new(Err(anyhow!(
            "unreachable"
        )))));
        let ring = KeyRing::refreshing(Arc::clone(&source), Duration::from_secs(3600));
        assert!(ring.current().await.is_err(), "nothing to serve yet");

        let first = KeyAlgorithm::Es256.generate_pem().expect("generate");
        *source.0.lock().expect("lock") = Ok(first.clone());
        let loaded = ring.current().await.expect("loaded on the next call");
        let first_kid = loaded.signing_key().kid().to_owned();

        // Rotated: within the refresh interval the ring keeps its set...
        let second = KeyAlgorithm::Es256.generate_pem().expect("generate");
        let both = SecretString::from(format!(
            "{}{}",
            second.expose_secret(),
            first.expose_secret()
        ));
        *source.0.lock().expect("lock") = Ok(both);
        assert_eq!(
            ring.current().await.expect("cached").signing_key().kid(),
            first_kid
        );
        // ...unless a token names a key it lacks (and the last load is old enough).
        *ring.last_attempt.lock().await = Some(Instant::now() - UNKNOWN_KID_RELOAD_INTERVAL);
        let reloaded = ring.reload_for_unknown_kid().await.expect("reloaded");
        assert_ne!(reloaded.signing_key().kid(), first_kid, "the new key signs");
        assert!(
            reloaded.verification_key(&first_kid).is_some(),
            "the old one verifies"
        );

        // Secrets Manager down at the next refresh: the current set stays in service.
        *source.0.lock().expect("lock") = Err(anyhow!("unreachable"));
        *ring.last_attempt.lock().await = Some(Instant::now() - Duration::from_secs(3600));
        let kept = ring.current().await.expect("kept");
        assert_eq!(kept.signing_key().kid(), reloaded.signing_key().kid());
    }

    #[test]
    fn a_set_of_public_keys_verifies_what_the_private_set_signs_and_cannot_sign() {
        let new = KeyAlgorithm::Es256.generate_pem().expect("generate");
        let old = KeyAlgorithm::EdDsa.generate_pem().expect("generate");
        let both = SecretString::from(format!("{}{}", new.expose_secret(), old.expose_secret()));
        let private = KeySet::from_pem(&both).expect("two keys");
        let cursor_key = private.cursor_key().expose_secret().to_vec();
        let public = KeySet::from_public(&private.jwks().keys, cursor_key).expect("public");

        let signer = private.signing_key();
        assert!(signer.encoding_key().is_some());
        assert!(public.signing_key().encoding_key().is_none(), "cannot sign");
        assert_eq!(public.signing_key().kid(), signer.kid());
        assert_eq!(public.jwks(), private.jwks(), "publishes the same JWKS");
        let header = jsonwebtoken::Header {
            kid: Some(signer.kid().to_owned()),
            ..jsonwebtoken::Header::new(Algorithm::ES256)
        };
        let claims = serde_json::json!({ "sub": "someone", "exp": 4_102_444_800_u64 });
        let token = jsonwebtoken::encode(&header, &claims, signer.encoding_key().expect("key"))
            .expect("signed");
        let verifier = public.verification_key(signer.kid()).expect("known kid");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, verifier.decoding_key(), &validation)
            .expect("verifies with the public half");
        // The same cursor MAC on both sides.
        assert!(public.verify_mac(b"page", &private.mac(b"page")));

        // A key whose kid was altered, or a symmetric key, is refused.
        let mut altered = private.jwks().keys;
        altered[0].common.key_id = Some("another".into());
        assert!(KeySet::from_public(&altered, vec![7; 32]).is_err());
        let hmac: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "x"
        }))
        .expect("jwk");
        assert!(KeySet::from_public(&[hmac], vec![7; 32]).is_err());
        assert!(KeySet::from_public(&[], vec![7; 32]).is_err(), "no key");
    }

    #[test]
    fn garbage_and_hmac_are_refused() {
        assert!(KeySet::from_pem(&SecretString::from("not a pem")).is_err());
        assert!("HS256".parse::<KeyAlgorithm>().is_err());
    }

    #[tokio::test]
    async fn a_missing_file_is_created_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::now_v7()));
        let path = dir.join("nested/key.pem");
        let source = PemFile::new(&path, KeyAlgorithm::Es256);
        let first = KeySet::load(&source).await.expect("created");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = KeySet::load(&source).await.expect("read");
        assert_eq!(first.signing_key().kid(), second.signing_key().kid());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
