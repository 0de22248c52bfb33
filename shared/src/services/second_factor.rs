//! Second factors: reading a presented code (a TOTP code or a recovery code) into what the
//! database spends, and making the recovery codes of a new set-up. Shared by the login's
//! second step ([`super::sessions`]) and the removal of two-factor login
//! ([`super::accounts`]), so that both accept exactly the same codes.

use aws_lc_rs::digest::{Context, SHA256};
use data_encoding::BASE32_NOPAD;
use uuid::Uuid;

use super::DependencyError;
use crate::auth::mfa_keys::{MfaKeyError, MfaKeys, Sealed};
use crate::auth::totp::{DIGITS, TotpSecret};
use crate::db::Db;
use crate::db::mfa::SecondFactor;

/// Recovery codes per set-up.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per recovery code: 80 bits, 16 base32 characters.
const RECOVERY_CODE_BYTES: usize = 10;

impl From<MfaKeyError> for DependencyError {
    fn from(e: MfaKeyError) -> Self {
        match e {
            MfaKeyError::Unavailable(_) => Self::Unavailable(e.into()),
            MfaKeyError::UnknownKey(_) | MfaKeyError::Corrupt => Self::Internal(e.into()),
        }
    }
}

/// Reads presented codes for one deployment: the stored secrets and the keys that open them.
#[derive(Clone)]
pub struct SecondFactors {
    db: Db,
    keys: MfaKeys,
}

impl SecondFactors {
    /// Codes checked against `db`'s secrets, opened with `keys`.
    pub fn new(db: Db, keys: MfaKeys) -> Self {
        Self { db, keys }
    }

    /// The encryption keys.
    pub fn keys(&self) -> &MfaKeys {
        &self.keys
    }

    /// What `code` would spend for `user_id`: the time step of a current TOTP code of the
    /// confirmed secret, or a recovery code's hash (whether it exists and is unused is
    /// decided by spending it). `None` for anything else. Spends nothing.
    pub async fn read(
        &self,
        user_id: Uuid,
        code: &str,
    ) -> Result<Option<SecondFactor>, DependencyError> {
        let code = code.trim();
        if code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
            let Some(stored) = self.db.totp(user_id).await? else {
                return Ok(None);
            };
            if !stored.confirmed {
                return Ok(None);
            }
            return Ok(self
                .step_of(user_id, &stored.sealed, code)
                .await?
                .map(SecondFactor::Step));
        }
        Ok(recovery_hash(user_id, code).map(SecondFactor::RecoveryCode))
    }

    /// Re-encrypts every stored secret that is not under the current key, a batch at a
    /// time; returns how many it re-encrypted. Safe while the service runs: a row changed
    /// meanwhile (a new set-up) is left as it is, since it is under the current key already.
    pub async fn reencrypt_all(&self) -> Result<u64, DependencyError> {
        let current = self.keys.current_id().await?;
        let mut done = 0;
        loop {
            let batch = self.db.totp_not_under(&current, 100).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for (user_id, sealed) in batch {
                let secret = self.keys.open(user_id, &sealed).await?;
                let resealed = self.keys.seal(user_id, &secret).await?;
                if resealed.key_id != current {
                    return Err(DependencyError::internal(
                        "the current key changed during re-encryption",
                    ));
                }
                if self.db.reseal_totp(user_id, &sealed, &resealed).await? {
                    done += 1;
                }
                progressed = true;
            }
            if !progressed {
                return Ok(done);
            }
        }
    }

    /// The time step whose code `code` is, for the secret `sealed` of `user_id`, now.
    pub async fn step_of(
        &self,
        user_id: Uuid,
        sealed: &Sealed,
        code: &str,
    ) -> Result<Option<i64>, DependencyError> {
        let secret = self.keys.open(user_id, sealed).await?;
        let now = jsonwebtoken::get_current_timestamp();
        Ok(secret
            .matching_step(code.trim(), now)
            .and_then(|step| i64::try_from(step).ok()))
    }
}

/// A new TOTP secret.
pub fn new_secret() -> Result<TotpSecret, DependencyError> {
    TotpSecret::generate().map_err(|_| DependencyError::internal("CSPRNG failed"))
}

/// Ten new recovery codes (`xxxx-xxxx-xxxx-xxxx`, base32 lowercase) and their hashes for
/// `user_id`.
pub fn new_recovery_codes(user_id: Uuid) -> Result<(Vec<String>, Vec<[u8; 32]>), DependencyError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = [0u8; RECOVERY_CODE_BYTES];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| DependencyError::internal("CSPRNG failed"))?;
        let plain = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
        let shown = plain
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        let hash = recovery_hash(user_id, &shown)
            .ok_or_else(|| DependencyError::internal("a new recovery code does not read back"))?;
        codes.push(shown);
        hashes.push(hash);
    }
    Ok((codes, hashes))
}

/// The stored hash of recovery code `code` of `user_id`: case, dashes and spaces ignored;
/// `None` unless it is 16 base32 characters.
fn recovery_hash(user_id: Uuid, code: &str) -> Option<[u8; 32]> {
    let plain: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = BASE32_NOPAD.decode(plain.as_bytes()).ok()?;
    if bytes.len() != RECOVERY_CODE_BYTES {
        return None;
    }
    let mut context = Context::new(&SHA256);
    context.update(user_id.as_bytes());
    context.update(&bytes);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.finish().as_ref());
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_read_back_in_any_case_and_spacing_for_their_user_only() {
        let user = Uuid::now_v7();
        let (codes, hashes) = new_recovery_codes(user).expect("codes");
        assert_eq!(codes.len(), RECOVERY_CODES);
        for (code, hash) in codes.iter().zip(&hashes) {
            assert_eq!(code.len(), 19, "{code}");
            assert_eq!(recovery_hash(user, code), Some(*hash));
            let sloppy = code.to_ascii_uppercase().replace('-', " ");
            assert_eq!(recovery_hash(user, &sloppy), Some(*hash));
            assert_ne!(recovery_hash(Uuid::now_v7(), code), Some(*hash));
        }
        let distinct: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for garbage in ["", "123456", "abcd-efgh", "!!!!-!!!!-!!!!-!!!!"] {
            assert_eq!(recovery_hash(user, garbage), None, "{garbage:?}");
        }
    }
}
