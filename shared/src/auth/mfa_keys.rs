//! The keys that encrypt TOTP secrets at rest: AES-256-GCM, the key outside the database.
//!
//! The key material is a JSON object, `{"current": "k2", "k1": "<key>", "k2": "<key>"}`: every
//! named key decrypts, `current` encrypts. A key is any text of at least 32 characters of
//! high entropy (Secrets Manager's generated passwords, or what [`add_key_to_file`] writes);
//! the AES-256 key is its SHA-256. It comes from:
//! - locally, the file `MFA_KEY_FILE`, created with mode 0600 and one new key when missing,
//!   read again whenever it changes;
//! - on AWS, the Secrets Manager secret `MFA_KEYS_SECRET_ARN`, read on first use and again
//!   after `SECRETS_REFRESH_SECONDS` or when a ciphertext names a key not yet seen.
//!
//! A ciphertext is stored with the id of its key; the user's id is bound in as associated
//! data, so a ciphertext copied onto another account does not decrypt. Rotation: add a key
//! and make it `current` (`user-service mfa new-key` for the file), then re-encrypt the
//! stored secrets under it (`user-service mfa reencrypt`); old keys keep decrypting until
//! they are removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::totp::TotpSecret;
use crate::secrets::CachedSecret;

/// Shortest key text accepted.
const MIN_KEY_CHARS: usize = 32;

/// Why a secret could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum MfaKeyError {
    /// The keys could not be read (file, Secrets Manager) or are not valid: a 503.
    #[error("the two-factor keys are unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A stored ciphertext names a key that is not (any more) among the keys.
    #[error("no two-factor key with id {0:?}")]
    UnknownKey(String),
    /// The ciphertext does not open with its key and user: altered or misplaced.
    #[error("a stored two-factor secret does not decrypt")]
    Corrupt,
}

/// A secret encrypted under the key `key_id`: nonce, ciphertext, tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The key's id.
    pub key_id: String,
    /// `nonce || ciphertext || tag`.
    pub bytes: Vec<u8>,
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Secret(CachedSecret),
}

/// The parsed key set.
struct KeyTable {
    current: String,
    keys: BTreeMap<String, LessSafeKey>,
}

/// The TOTP encryption keys, loaded on first use. Cheap to clone.
#[derive(Clone)]
pub struct MfaKeys {
    source: Source,
    loaded: Arc<Mutex<Option<Loaded>>>,
}

/// The key table and the key file's modification time it was read at (`None` for a secret).
struct Loaded {
    table: Arc<KeyTable>,
    modified: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for MfaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaKeys")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MfaKeys {
    /// Keys from the file `path` (created when missing).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::with_source(Source::File(path.into()))
    }

    /// Keys from a Secrets Manager secret.
    pub fn secret(secret: CachedSecret) -> Self {
        Self::with_source(Source::Secret(secret))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            loaded: Arc::default(),
        }
    }

    /// The id of the key that encrypts.
    pub async fn current_id(&self) -> Result<String, MfaKeyError> {
        Ok(self.table(false).await?.current.clone())
    }

    /// The ids of every key, for `user-service check` (ids only: never key material).
    pub async fn key_ids(&self) -> Result<Vec<String>, MfaKeyError> {
        Ok(self.table(false).await?.keys.keys().cloned().collect())
    }

    /// Encrypts `secret` for `user_id` under the current key.
    pub async fn seal(&self, user_id: Uuid, secret: &TotpSecret) -> Result<Sealed, MfaKeyError> {
        let table = self.table(false).await?;
        let key = table
            .keys
            .get(&table.current)
            .ok_or_else(|| MfaKeyError::UnknownKey(table.current.clone()))?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| MfaKeyError::Unavailable(anyhow!("CSPRNG failed")))?;
        let mut in_out = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(user_id.as_bytes()),
            &mut in_out,
        )
        .map_err(|_| MfaKeyError::Corrupt)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&in_out);
        Ok(Sealed {
            key_id: table.current.clone(),
            bytes,
        })
    }

    /// Decrypts `sealed`, stored for `user_id`. A key id not yet seen reloads the keys once
    /// (another instance may have rotated them).
    pub async fn open(&self, user_id: Uuid, sealed: &Sealed) -> Result<TotpSecret, MfaKeyError> {
        let mut table = self.table(false).await?;
        if !table.keys.contains_key(&sealed.key_id) {
            table = self.table(true).await?;
        }
        let key = table
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| MfaKeyError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(MfaKeyError::Corrupt);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| MfaKeyError::Corrupt)?;
        let mut in_out = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(user_id.as_bytes()), &mut in_out)
            .map_err(|_| MfaKeyError::Corrupt)?;
        let secret = TotpSecret::from_bytes(plain).ok_or(MfaKeyError::Corrupt);
        secrecy::zeroize::Zeroize::zeroize(&mut in_out);
        secret
    }

    /// The key table: loaded on first use; read again when the key file changed (a running
    /// server picks up `user-service mfa new-key` at once), when the secret's refresh
    /// interval has passed, or when `reload` asks for it.
    async fn table(&self, reload: bool) -> Result<Arc<KeyTable>, MfaKeyError> {
        let mut loaded = self.loaded.lock().await;
        let (json, modified) = match &self.source {
            Source::File(path) => {
                let modified = tokio::fs::metadata(path)
                    .await
                    .and_then(|m| m.modified())
                    .ok();
                if let Some(current) = loaded.as_ref()
                    && !reload
                    && modified.is_some()
                    && current.modified == modified
                {
                    return Ok(current.table.clone());
                }
                // A file created just now has no recorded time: the next use reads it again.
                let json = read_or_create_file(path)
                    .await
                    .map_err(MfaKeyError::Unavailable)?;
                (json, modified)
            }
            Source::Secret(secret) => {
                if reload {
                    secret.invalidate().await;
                }
                (secret.get().await.map_err(MfaKeyError::Unavailable)?, None)
            }
        };
        let table = Arc::new(parse(&json).map_err(MfaKeyError::Unavailable)?);
        *loaded = Some(Loaded {
            table: table.clone(),
            modified,
        });
        Ok(table)
    }
}

/// Parses the key JSON of the module docs.
fn parse(json: &SecretString) -> anyhow::Result<KeyTable> {
    let raw: BTreeMap<String, SecretString> =
        serde_json::from_str(json.expose_secret()).map_err(|e| {
            anyhow!(
                "the two-factor keys are not a JSON object of strings (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
    let current = raw
        .get("current")
        .map(|id| id.expose_secret().to_owned())
        .context("the two-factor keys name no \"current\" key")?;
    let mut keys = BTreeMap::new();
    for (id, text) in &raw {
        if id == "current" {
            continue;
        }
        let text = text.expose_secret();
        if text.chars().count() < MIN_KEY_CHARS {
            anyhow::bail!("two-factor key {id:?} is shorter than {MIN_KEY_CHARS} characters");
        }
        let material = digest(&SHA256, text.as_bytes());
        let key = UnboundKey::new(&AES_256_GCM, material.as_ref())
            .map_err(|_| anyhow!("two-factor key {id:?} is not usable"))?;
        keys.insert(id.clone(), LessSafeKey::new(key));
    }
    if !keys.contains_key(&current) {
        anyhow::bail!("the current two-factor key {current:?} is not among the keys");
    }
    Ok(KeyTable { current, keys })
}

/// 32 random bytes as base64url: a new key's text.
fn new_key_text() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("CSPRNG failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The file's keys, or a new file with one key (`k1`) when there is none (mode 0600; when
/// several processes start at once, one creates it and the others read it).
async fn read_or_create_file(path: &Path) -> anyhow::Result<SecretString> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => return Ok(text.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let json = serde_json::json!({"current": "k1", "k1": new_key_text()?}).to_string();
    match write_new(path, &json) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the two-factor key file");
            Ok(json.into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(text.into())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Creates `path` (and its directory) with mode 0600 and writes `text`; fails if it exists.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Adds a new key to the key file `path` (created when missing) and makes it current;
/// returns its id. The earlier keys stay, so existing ciphertexts keep decrypting. The file
/// is replaced atomically, mode 0600.
pub async fn add_key_to_file(path: &Path) -> anyhow::Result<String> {
    let json = read_or_create_file(path).await?;
    let mut raw: BTreeMap<String, String> = serde_json::from_str(json.expose_secret())
        .map_err(|_| anyhow!("{} is not a JSON object of strings", path.display()))?;
    let next = raw
        .keys()
        .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let id = format!("k{next}");
    raw.insert(id.clone(), new_key_text()?);
    raw.insert("current".into(), id.clone());
    let text = serde_json::to_string_pretty(&raw).context("encoding the keys")?;
    let staging = path.with_extension("new");
    let _ = std::fs::remove_file(&staging);
    write_new(&staging, &text).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("mfa-keys-{}-{name}.json", Uuid::now_v7()))
    }

    #[tokio::test]
    async fn a_sealed_secret_opens_for_its_user_only_and_after_rotation() {
        let path = temp_path("rotation");
        let keys = MfaKeys::file(&path);
        let user = Uuid::now_v7();
        let secret = TotpSecret::generate().expect("rng");
        let sealed = keys.seal(user, &secret).await.expect("seal");
        assert_eq!(sealed.key_id, "k1");
        assert!(
            !sealed
                .bytes
                .windows(secret.as_bytes().len())
                .any(|w| w == secret.as_bytes()),
            "the plain secret is not in the ciphertext"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let opened = keys.open(user, &sealed).await.expect("open");
        assert_eq!(opened.as_bytes(), secret.as_bytes());
        assert!(matches!(
            keys.open(Uuid::now_v7(), &sealed).await,
            Err(MfaKeyError::Corrupt)
        ));
        let mut altered = sealed.clone();
        altered.bytes[NONCE_LEN] ^= 1;
        assert!(matches!(
            keys.open(user, &altered).await,
            Err(MfaKeyError::Corrupt)
        ));

        assert_eq!(add_key_to_file(&path).await.expect("new key"), "k2");
        // The running instance sees the new key at once (the file changed), as does a fresh
        // process; the old key still decrypts.
        assert_eq!(keys.current_id().await.expect("keys"), "k2");
        let rotated = MfaKeys::file(&path);
        assert_eq!(rotated.current_id().await.expect("keys"), "k2");
        assert_eq!(
            rotated
                .open(user, &sealed)
                .await
                .expect("old key")
                .as_bytes(),
            secret.as_bytes()
        );
        let resealed = rotated.seal(user, &secret).await.expect("seal");
        assert_eq!(resealed.key_id, "k2");
        assert_eq!(
            keys.open(user, &resealed)
                .await
                .expect("reloads for k2")
                .as_bytes(),
            secret.as_bytes()
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_key_sets_are_refused() {
        for json in [
            r#"{"k1": "0123456789abcdef0123456789abcdef"}"#,
            r#"{"current": "k2", "k1": "0123456789abcdef0123456789abcdef"}"#,
            r#"{"current": "k1", "k1": "short"}"#,
            r#"["k1"]"#,
        ] {
            assert!(parse(&json.to_owned().into()).is_err(), "{json}");
        }
    }
}
