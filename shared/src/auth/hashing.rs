//! Password hashing with argon2id, off the async threads and with bounded concurrency.
//!
//! One argon2id hash at the defaults takes ~15 ms of CPU and 19 MiB of memory. Running it on
//! the async worker threads would stall every other request, and running 100 at once would
//! allocate 1.9 GiB, so hashes run on `HASHING_CONCURRENCY` dedicated threads (default: CPU
//! count), which take jobs from one queue in arrival order. A job that has waited longer than
//! `HASHING_QUEUE_TIMEOUT_MS` when its turn comes is answered 503 instead of being hashed,
//! and a job whose request has gone away is skipped.
//!
//! Why a queue the threads pull from, and not a semaphore the requests wait on: with a
//! semaphore, a thread that finishes a hash sits idle until the next waiting request's task
//! is woken and scheduled and hands it the next job: lost hashing time on a busy machine.
//! A thread that pulls its next job itself loses none. The queue has no length limit of its
//! own: the deadline bounds it, and a job past its deadline is answered without hashing.
//!
//! Why dedicated threads and not tokio's blocking pool: the blocking pool hands each job to
//! whichever thread is idle and starts new ones freely, and every thread that ever hashed
//! keeps its own malloc arena holding a freed 19 MiB block. Under a login flood that grew
//! the server to 450 MiB with only two hashes running at a time; a fixed set of threads
//! keeps it to one block per thread.
//!
//! Never logs a password or a hash.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

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
    /// The hashing threads, started on the first hash: a function that never hashes (the
    /// JWKS, health, most of the admin routes) never pays for them.
    workers: Arc<OnceLock<Workers>>,
    concurrency: usize,
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
            workers: Arc::new(OnceLock::new()),
            concurrency: concurrency.max(1),
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
        let dummy = self.dummy_hash().await?;
        self.verify(attempt, dummy).await.map(drop)
    }

    /// Builds the dummy hash now, if it is not built yet (and so starts the hashing
    /// threads): for a login function's init, so that its first unknown-email login does
    /// not pay one hash more than a known one.
    pub async fn prepare_dummy(&self) -> Result<(), HashError> {
        self.dummy_hash().await.map(drop)
    }

    /// The hash of a random password that [`verify_dummy`](Self::verify_dummy) checks
    /// against; made on first use.
    async fn dummy_hash(&self) -> Result<&String, HashError> {
        self.dummy_hash
            .get_or_try_init(|| async {
                let mut random = [0u8; 32];
                aws_lc_rs::rand::fill(&mut random)
                    .map_err(|_| HashError::Internal(anyhow::anyhow!("no randomness")))?;
                self.hash_secret(SecretString::from(hex(&random))).await
            })
            .await
    }

    /// The hashing threads, started now if this is the first hash.
    fn workers(&self) -> Result<&Workers, HashError> {
        if let Some(workers) = self.workers.get() {
            return Ok(workers);
        }
        let started = Workers::start(self.concurrency)?;
        // Two first hashes at once: one set of threads wins, the other's threads stop as soon
        // as its sender is dropped here.
        Ok(self.workers.get_or_init(|| started))
    }

    /// Runs `work` on a hashing thread (with that thread's argon2 memory), or answers
    /// [`HashError::Busy`] if no thread could start it within the queue timeout.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let start_by = Instant::now() + self.queue_timeout;
        let (done, result) = tokio::sync::oneshot::channel();
        self.workers()?.submit(Box::new(move |memory| {
            // The receiver is gone only if the request was dropped: no one wants the answer.
            if done.is_closed() {
                return;
            }
            let answer = if Instant::now() > start_by {
                Err(HashError::Busy)
            } else {
                work(memory)
            };
            let _ = done.send(answer);
        }))?;
        result
            .await
            .map_err(|_| HashError::Internal(anyhow::anyhow!("hashing thread stopped")))?
    }
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

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
                    let mut memory = Memory::default();
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

/// argon2id of `password` and `salt` into `output`, in `memory`.
fn compute(
    params: &Params,
    version: Version,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
    memory: &mut Memory,
) -> Result<(), HashError> {
    let params = argon2::ParamsBuilder::new()
        .m_cost(params.m_cost())
        .t_cost(params.t_cost())
        .p_cost(params.p_cost())
        .output_len(output.len())
        .build()
        .map_err(|e| HashError::Internal(anyhow::anyhow!("argon2 parameters: {e}")))?;
    let blocks = memory.blocks(params.block_count());
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(password, salt, output, blocks)
        .map_err(|e| HashError::Internal(anyhow::anyhow!("argon2: {e}")))
}

/// A hashing thread's argon2 memory: kept between hashes (no 19 MiB allocation, page faults
/// and free per hash) and backed by huge pages where the kernel allows.
///
/// argon2 reads blocks at pseudo-random places all over its 19 MiB, so with 4 KiB pages
/// nearly every block read misses the TLB, and in a virtual machine each miss walks two sets
/// of page tables. On the 2-CPU VM of scripts/compare.sh one verify took 22 ms on 4 KiB
/// pages and 14 ms on 2 MiB pages.
#[derive(Default)]
struct Memory {
    blocks: Vec<Block>,
}

/// Size of a huge page on x86_64 and arm64 Linux.
const HUGE_PAGE: usize = 2 << 20;

impl Memory {
    /// `count` blocks starting at a 2 MiB boundary, so that huge pages can back all of them.
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        let slack = HUGE_PAGE / std::mem::size_of::<Block>();
        let needed = count + slack;
        if self.blocks.len() < needed {
            // A new, untouched allocation: the advice must come before the pages are first
            // written.
            let mut grown: Vec<Block> = Vec::with_capacity(needed);
            advise_huge_pages(grown.spare_capacity_mut());
            grown.resize(needed, Block::default());
            self.blocks = grown;
        }
        let start = self.blocks.as_ptr() as usize;
        let skip =
            (start.next_multiple_of(HUGE_PAGE) - start).div_ceil(std::mem::size_of::<Block>());
        &mut self.blocks[skip..skip + count]
    }
}

/// Asks Linux to back the 2 MiB-aligned part of `region` with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`; it applies when THP is `always` or `madvise`). Advice only:
/// where the kernel cannot (THP `never`, another OS), memory stays on normal pages.
#[cfg(target_os = "linux")]
fn advise_huge_pages(region: &mut [std::mem::MaybeUninit<Block>]) {
    let start = region.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(region);
    let aligned = start.next_multiple_of(HUGE_PAGE);
    if aligned >= end {
        return;
    }
    // SAFETY: the range lies inside `region`, an allocation this function's caller owns,
    // and starts on a page boundary. MADV_HUGEPAGE changes only which page size the kernel
    // backs the range with, never its contents or whether it is mapped.
    let advised = unsafe {
        rustix::mm::madvise(
            aligned as *mut std::ffi::c_void,
            end - aligned,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
    if let Err(e) = advised {
        tracing::debug!(error = %crate::telemetry::ErrorChain(&e), "no transparent huge pages for argon2 memory");
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_region: &mut [std::mem::MaybeUninit<Block>]) {}

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

    /// The threads of this process whose name starts with `argon2-`.
    fn argon2_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .filter(|name| name.starts_with("argon2-"))
                    .count()
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn the_hashing_threads_start_on_the_first_hash() {
        let hasher = PasswordHasher::new(cheap(), 3, Duration::from_secs(5)).expect("params");
        assert!(hasher.workers.get().is_none(), "no thread before a hash");
        let clone = hasher.clone();
        clone
            .hash(&new_password("correct-horse-battery-staple-1"))
            .await
            .expect("hash");
        // Started once, shared by every clone.
        assert!(hasher.workers.get().is_some());
        if cfg!(target_os = "linux") {
            assert!(argon2_threads() >= 3, "the configured threads run now");
        }
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
    async fn a_job_that_cannot_start_in_time_is_busy_and_the_queue_recovers() {
        let hasher = PasswordHasher::new(cheap(), 1, Duration::from_millis(50)).expect("params");
        let stored = hasher
            .hash(&new_password("correct-horse-battery-staple-1"))
            .await
            .expect("hash");
        // The one hashing thread is taken for 300 ms...
        let occupied = hasher.run(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        let attempt = PasswordAttempt::new("correct-horse-battery-staple-1");
        // ...so a verify queued behind it waits past its 50 ms and is turned away.
        let (occupied, waited) = tokio::join!(occupied, hasher.verify(&attempt, &stored));
        occupied.expect("the first job runs");
        assert!(matches!(waited, Err(HashError::Busy)), "{waited:?}");
        // With the thread free again, the next job runs.
        assert_eq!(
            hasher.verify(&attempt, &stored).await.expect("verify"),
            Verification::Match {
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn the_threads_take_queued_jobs_themselves_at_most_one_each() {
        // Two threads, six jobs submitted at once. The first two meet (each waits up to 5 s
        // for the other to be running), so both threads took a job without a request
        // handing it over; and never more than two run at the same time.
        let hasher = PasswordHasher::new(cheap(), 2, Duration::from_secs(10)).expect("params");
        let running = Arc::new((
            std::sync::Mutex::new((0usize, 0usize)),
            std::sync::Condvar::new(),
        ));
        let jobs = (0..6).map(|_| {
            let running = Arc::clone(&running);
            hasher.run(move |_| {
                let (lock, changed) = &*running;
                let mut counts = lock.lock().expect("lock");
                counts.0 += 1;
                counts.1 = counts.1.max(counts.0);
                changed.notify_all();
                let (mut counts, _) = changed
                    .wait_timeout_while(counts, Duration::from_secs(5), |(_, most)| *most < 2)
                    .expect("lock");
                counts.0 -= 1;
                Ok(counts.1)
            })
        });
        for result in futures::future::join_all(jobs).await {
            assert_eq!(result.expect("every job runs"), 2, "two jobs ran at once");
        }
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
