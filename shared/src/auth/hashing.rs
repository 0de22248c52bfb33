//! Password hashing with argon2id, off the async threads and with bounded concurrency.
//!
//! One argon2id hash at the defaults takes ~15 ms of CPU and 19 MiB of memory. Running it on
//! the async worker threads would stall every other request, and running 100 at once would
//! allocate 1.9 GiB, so hashes wait for one of `HASHING_CONCURRENCY` slots (default: CPU
//! count) for at most `HASHING_QUEUE_TIMEOUT_MS`, then run on one of as many dedicated
//! hashing threads. A request that cannot get a slot in time is answered 503 rather than
//! queued forever.
//!
//! Why dedicated threads and not tokio's blocking pool: the blocking pool hands each job to
//! whichever thread is idle and starts new ones freely, and every thread that ever hashed
//! keeps its own malloc arena holding a freed 19 MiB block. Under a login flood that grew
//! the server to 450 MiB with only two hashes running at a time; a fixed set of threads
//! keeps it to one block per thread.
//!
//! Never logs a password or a hash.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
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
    workers: Workers,
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
        let concurrency = concurrency.max(1);
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(concurrency)),
            workers: Workers::start(concurrency)?,
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
        self.run(move |memory| {
            let mut salt = [0u8; SALT_LEN];
            aws_lc_rs::rand::fill(&mut salt)
                .map_err(|_| HashError::Internal(anyhow::anyhow!("no randomness")))?;
            let mut output = [0u8; OUTPUT_LEN];
            compute(
                &params,
                Version::V0x13,
                password.expose_secret().as_bytes(),
                &salt,
                &mut output,
                memory,
            )?;
            Ok(format!(
                "$argon2id$v=19$m={},t={},p={}${}${}",
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                PHC_B64.encode(salt),
                PHC_B64.encode(output)
            ))
        })
        .await
    }

    /// Checks `attempt` against the stored PHC string `stored`, with the parameters recorded
    /// in it.
    pub async fn verify(
        &self,
        attempt: &PasswordAttempt,
        stored: &str,
    ) -> Result<Verification, HashError> {
        let password = SecretString::from(attempt.expose());
        let stored = stored.to_owned();
        let configured = self.params.clone();
        self.run(move |memory| {
            let unreadable =
                |what: &str| HashError::Internal(anyhow::anyhow!("stored hash: {what}"));
            let hash = PasswordHash::new(&stored).map_err(|_| unreadable("not a PHC string"))?;
            if hash.algorithm.as_str() != "argon2id" {
                return Err(unreadable("not argon2id"));
            }
            let params = Params::try_from(&hash).map_err(|_| unreadable("parameters"))?;
            let version = match hash.version {
                Some(0x10) => Version::V0x10,
                _ => Version::V0x13,
            };
            let salt = hash.salt.as_ref().ok_or_else(|| unreadable("no salt"))?;
            let expected = hash.hash.as_ref().ok_or_else(|| unreadable("no hash"))?;
            let mut output = vec![0u8; expected.as_ref().len()];
            compute(
                &params,
                version,
                password.expose_secret().as_bytes(),
                salt.as_ref(),
                &mut output,
                memory,
            )?;
            if aws_lc_rs::constant_time::verify_slices_are_equal(&output, expected.as_ref())
                .is_err()
            {
                return Ok(Verification::Mismatch);
            }
            Ok(Verification::Match {
                needs_rehash: version != Version::V0x13 || !same_cost(&params, &configured),
            })
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

    /// Runs `work` on a hashing thread (with that thread's argon2 memory) once a hashing
    /// slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        self.workers.submit(Box::new(move |memory| {
            let _permit = permit;
            // The receiver is gone only if the request was dropped; nothing to report then.
            let _ = done.send(work(memory));
        }))?;
        result
            .await
            .map_err(|_| HashError::Internal(anyhow::anyhow!("hashing thread stopped")))?
    }
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// A fixed set of threads that run hashing jobs; they stop when the last sender is dropped.
#[derive(Clone)]
struct Workers {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Workers {
    fn start(count: usize) -> Result<Self, HashError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for index in 0..count {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    // This thread's argon2 memory, kept between hashes: no 19 MiB allocation,
                    // page faults and free per hash.
                    let mut memory: Vec<Block> = Vec::new();
                    loop {
                        // Hold the lock only to take a job, never while running it.
                        let job = match queue.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Internal(e.into()))?;
        }
        Ok(Self { jobs })
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.jobs
            .send(job)
            .map_err(|_| HashError::Internal(anyhow::anyhow!("hashing threads stopped")))
    }
}

/// Same memory, passes and lanes (the output length recorded in a hash does not count).
fn same_cost(a: &Params, b: &Params) -> bool {
    (a.m_cost(), a.t_cost(), a.p_cost()) == (b.m_cost(), b.t_cost(), b.p_cost())
}

/// Length of a new hash's salt (bytes).
const SALT_LEN: usize = 16;
/// Length of a new hash's output (bytes).
const OUTPUT_LEN: usize = 32;
/// PHC strings use standard base64 without padding.
const PHC_B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// argon2id of `password` and `salt` into `output`, in `memory` (grown when too small).
fn compute(
    params: &Params,
    version: Version,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), HashError> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let params = argon2::ParamsBuilder::new()
        .m_cost(params.m_cost())
        .t_cost(params.t_cost())
        .p_cost(params.p_cost())
        .output_len(output.len())
        .build()
        .map_err(|e| HashError::Internal(anyhow::anyhow!("argon2 parameters: {e}")))?;
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(password, salt, output, &mut memory[..blocks])
        .map_err(|e| HashError::Internal(anyhow::anyhow!("argon2: {e}")))
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
    async fn hashes_interoperate_with_the_argon2_crates_own_phc_code() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(cheap(), 1, Duration::from_secs(5)).expect("params");
        let ours = hasher
            .hash(&new_password("correct-horse-battery-staple-1"))
            .await
            .expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct-horse-battery-staple-1", &parsed)
                .is_ok()
        );
        let params = Params::new(1024, 1, 1, None).expect("params");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct-horse-battery-staple-2")
            .expect("hash")
            .to_string();
        let attempt = PasswordAttempt::new("correct-horse-battery-staple-2");
        assert_eq!(
            hasher.verify(&attempt, &theirs).await.expect("verify"),
            Verification::Match {
                needs_rehash: false
            }
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
