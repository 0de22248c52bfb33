//! Password hashing with argon2id, off the async threads and with bounded concurrency.
//!
//! One argon2id hash at the defaults takes ~15 ms of CPU and 19 MiB of memory. Running it on
//! the async worker threads would stall every other request, and running 100 at once would
//! allocate 1.9 GiB, so hashes wait for one of `HASHING_CONCURRENCY` slots (default: CPU
//! count) for at most `HASHING_QUEUE_TIMEOUT_MS`, then run on the blocking pool. A request
//! that cannot get a slot in time is answered 503 rather than queued forever.
//!
//! Never logs a password or a hash.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OnceCell, Semaphore};

use crate::config::Argon2Config;
use crate::domain::{NewPassword, PasswordAttempt};

/// The error type of hashing.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// No hashing slot came free within the queue timeout: a 503.
    #[error("password hashing queue is full")]
    Busy,
    /// Argon2 itself failed (bad parameters, corrupt stored hash).
    #[error("password hashing failed")]
    Internal(#[source] anyhow::Error),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is right. `needs_rehash`: the stored hash used other parameters than
    /// the configured ones, so it should be replaced by a fresh hash.
    Match {
        /// The stored hash's parameters differ from the configured ones.
        needs_rehash: bool,
    },
    /// The password is wrong.
    Mismatch,
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a random password, verified when the email is unknown so that a login for
    /// an unknown account costs the same time as one for a known account.
    dummy_hash: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    /// A hasher with the configured parameters and concurrency.
    pub fn new(
        config: Argon2Config,
        concurrency: usize,
        queue_timeout: Duration,
    ) -> Result<Self, HashError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| HashError::Internal(anyhow::anyhow!("argon2 parameters: {e}")))?;
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
            dummy_hash: Arc::new(OnceCell::new()),
        })
    }

    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=...`).
    pub async fn hash(&self, password: &NewPassword) -> Result<String, HashError> {
        let password = SecretString::from(password.expose());
        self.hash_secret(password).await
    }

    /// Hashes a password that just verified against an older hash, to store it with the
    /// current parameters (it passed the policy when it was set).
    pub async fn rehash(&self, verified: &PasswordAttempt) -> Result<String, HashError> {
        self.hash_secret(SecretString::from(verified.expose()))
            .await
    }

    async fn hash_secret(&self, password: SecretString) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || {
            argon2(params)
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| HashError::Internal(anyhow::anyhow!("argon2 hash: {e}")))
        })
        .await
    }

    /// Checks `attempt` against the stored PHC string `stored`.
    pub async fn verify(
        &self,
        attempt: &PasswordAttempt,
        stored: &str,
    ) -> Result<Verification, HashError> {
        let password = SecretString::from(attempt.expose());
        let stored = stored.to_owned();
        let configured = self.params.clone();
        self.run(move || {
            let hash = PasswordHash::new(&stored)
                .map_err(|e| HashError::Internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
            // Verification uses the parameters recorded in the stored hash.
            match Argon2::default().verify_password(password.expose_secret().as_bytes(), &hash) {
                Ok(()) => Ok(Verification::Match {
                    needs_rehash: hash.algorithm.as_str() != "argon2id"
                        || Params::try_from(&hash).map_or(true, |p| !same_cost(&p, &configured)),
                }),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(Verification::Mismatch),
                Err(e) => Err(HashError::Internal(anyhow::anyhow!("argon2 verify: {e}"))),
            }
        })
        .await
    }

    /// Spends the same work as [`verify`](Self::verify) on a dummy hash and reports a
    /// mismatch: for logins to unknown accounts, so timing does not reveal which exist.
    pub async fn verify_dummy(&self, attempt: &PasswordAttempt) -> Result<(), HashError> {
        let dummy = self
            .dummy_hash
            .get_or_try_init(|| async {
                let mut random = [0u8; 32];
                aws_lc_rs::rand::fill(&mut random)
                    .map_err(|_| HashError::Internal(anyhow::anyhow!("no randomness")))?;
                self.hash_secret(SecretString::from(hex(&random))).await
            })
            .await?;
        self.verify(attempt, dummy).await.map(drop)
    }

    /// Runs `work` on the blocking pool once a hashing slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| HashError::Internal(e.into()))?
    }
}

/// Same memory, passes and lanes (the output length recorded in a hash does not count).
fn same_cost(a: &Params, b: &Params) -> bool {
    (a.m_cost(), a.t_cost(), a.p_cost()) == (b.m_cost(), b.t_cost(), b.p_cost())
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn cheap() -> Argon2Config {
        Argon2Config {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn new_password(raw: &str) -> NewPassword {
        let email = Email::parse("someone@example.com").expect("valid email");
        NewPassword::parse(raw, &email, &[]).expect("strong password")
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(cheap(), 2, Duration::from_secs(5)).expect("params");
        let hash = hasher
            .hash(&new_password("correct-horse-battery-staple-1"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        let right = PasswordAttempt::new("correct-horse-battery-staple-1");
        let wrong = PasswordAttempt::new("correct-horse-battery-staple-2");
        assert_eq!(
            hasher.verify(&right, &hash).await.expect("verify"),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher.verify(&wrong, &hash).await.expect("verify"),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_asks_for_a_rehash() {
        let old = PasswordHasher::new(cheap(), 1, Duration::from_secs(5)).expect("params");
        let stronger = Argon2Config {
            memory_kib: 2048,
            ..cheap()
        };
        let new = PasswordHasher::new(stronger, 1, Duration::from_secs(5)).expect("params");
        let hash = old
            .hash(&new_password("correct-horse-battery-staple-1"))
            .await
            .expect("hash");
        let attempt = PasswordAttempt::new("correct-horse-battery-staple-1");
        assert_eq!(
            new.verify(&attempt, &hash).await.expect("verify"),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting_forever() {
        let hasher = PasswordHasher::new(cheap(), 1, Duration::from_millis(50)).expect("params");
        let _held = hasher.slots.clone().acquire_owned().await.expect("slot");
        let attempt = PasswordAttempt::new("whatever-password");
        let result = hasher
            .verify(&attempt, "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
            .await;
        assert!(matches!(result, Err(HashError::Busy)), "{result:?}");
    }

    #[tokio::test]
    async fn unknown_accounts_are_checked_against_a_dummy_hash() {
        let hasher = PasswordHasher::new(cheap(), 1, Duration::from_secs(5)).expect("params");
        hasher
            .verify_dummy(&PasswordAttempt::new("anything"))
            .await
            .expect("dummy verify runs");
        assert!(hasher.dummy_hash.get().is_some());
    }
}
