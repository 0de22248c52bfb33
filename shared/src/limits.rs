//! Abuse limits, kept in Redis so that they hold across every instance and every Lambda
//! function of a deployment (contract, "Abuse limits").
//!
//! - **Per client IP**, per minute: login, register, password forgot and password reset each
//!   have their own counter, `rl:ip:<action>:<ip>`. An IPv6 client is counted by its /64
//!   (one host usually holds a whole /64, so counting single addresses would let it rotate
//!   through them). Past the limit: 429 `rate_limited` with `Retry-After`.
//! - **Failed logins per account**: after `LOCKOUT_THRESHOLD` (5) failures within
//!   `LOCKOUT_WINDOW_SECONDS` (15 min), the account is locked: every login attempt for it gets
//!   429 with `Retry-After`, even with the right password. The first lockout lasts
//!   `LOCKOUT_BASE_SECONDS` (60 s); each further lockout within 24 hours doubles it, up to
//!   `LOCKOUT_MAX_SECONDS` (1 h). A successful login forgets the failures and the level.
//! - **Forgot requests per email**, per hour ([`Limits::forgot_allowed`]): past the limit the
//!   endpoint still answers 202 but sends nothing.
//!
//! Every counter is a fixed window that starts at its first hit (`INCR`, and `PEXPIRE` when the
//! key has no expiry yet) in one Lua script, so concurrent requests on any instance count
//! exactly; no clock of ours is involved, only Redis key expiry. `Retry-After` is the
//! counter's remaining lifetime rounded up to whole seconds. A window that starts at the
//! first hit lets a client that waits for its end send the next batch at once (at most twice
//! the limit in a short burst, never more than the limit per window on average).
//!
//! ## Accounts, without revealing which exist
//!
//! Account keys are derived from the SHA-256 of the normalised email (`lockout:{<hash>}:...`),
//! never from the user id: an unknown email is counted and locked exactly like a registered
//! one, so the 429 tells nothing about existence, and no email appears in a Redis key. (The
//! braces are a Redis Cluster hash tag: the keys of one account live on one shard, as a
//! multi-key script needs.) The state of an account:
//! - `fails`: failed attempts in the current window;
//! - `pending`: attempts verifying right now. An attempt *reserves* a slot before the
//!   (slow) argon2 verify, and is refused while `fails + pending` has reached the threshold.
//!   Without it, a burst of concurrent guesses from many IPs would all pass the lock check
//!   before the first failure is recorded; with it, at most `threshold` guesses per window
//!   are ever verified. A slot is given back when the attempt ends (and expires after a
//!   minute should the instance die mid-request);
//! - `level`: how many lockouts in the last 24 hours (drives the doubling);
//! - `locked`: exists while the account is locked; its TTL is the remaining lock.
//!
//! ## When Redis is unreachable
//!
//! The limits cannot be checked, and each action decides ([`IpAction::fails_closed`]):
//! - **login fails closed**: 503 `unavailable` (with `Retry-After: 1`). Failing open would
//!   turn every Redis outage (or an attacker able to cause one) into unlimited password
//!   guessing; a short login outage is the lesser harm, and tokens already issued keep
//!   working (revocation falls back to Postgres).
//! - **forgot fails closed** too: what its limits stop (mail bombing a victim) cannot be
//!   undone once the emails are sent.
//! - **register and reset fail open** (a warning is logged): no secret can be guessed
//!   through them (a reset token has 256 random bits), their cost is bounded by the hashing
//!   queue, and refusing sign-ups during an outage would only hurt real users.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};

use crate::audit::{AuditEvent, AuditKind, AuditReason};
use crate::domain::Email;
use crate::redis_store::{Cache, CacheError};
use crate::telemetry::ErrorChain;

/// The per-IP window.
const MINUTE: Duration = Duration::from_secs(60);
/// The per-email window of forgot requests.
const HOUR: Duration = Duration::from_secs(3600);
/// How long the lockout level is remembered after the last lockout (at least; see
/// [`Limits::level_memory`]).
const LEVEL_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How long a reserved verification slot lives if its attempt never gives it back.
const PENDING_TTL: Duration = Duration::from_secs(60);
/// `Retry-After` when an account is busy with as many verifications as it has attempts left.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

pub use crate::config::LimitsConfig;

/// The actions limited per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAction {
    /// `POST /v1/auth/login`.
    Login,
    /// `POST /v1/auth/register`.
    Register,
    /// `POST /v1/auth/password/forgot`.
    Forgot,
    /// `POST /v1/auth/password/reset`.
    Reset,
}

impl IpAction {
    /// The name in Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::Forgot => "forgot",
            Self::Reset => "reset",
        }
    }

    /// The audit event kind of a refused request.
    pub fn audit_kind(self) -> AuditKind {
        match self {
            Self::Login => AuditKind::Login,
            Self::Register => AuditKind::Register,
            Self::Forgot => AuditKind::PasswordForgot,
            Self::Reset => AuditKind::PasswordReset,
        }
    }

    /// Whether the request is refused (503) when the limit cannot be checked; see the
    /// module docs for why.
    pub fn fails_closed(self) -> bool {
        match self {
            Self::Login | Self::Forgot => true,
            Self::Register | Self::Reset => false,
        }
    }

    fn limit(self, config: &LimitsConfig) -> u32 {
        match self {
            Self::Login => config.login_per_ip_per_minute,
            Self::Register => config.register_per_ip_per_minute,
            Self::Forgot => config.forgot_per_ip_per_minute,
            Self::Reset => config.reset_per_ip_per_minute,
        }
    }
}

/// What a limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// Refuse with 429; retry after this many seconds (at least 1).
    Limited {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
}

/// `INCR` a window counter, starting its window on the first hit. Returns the count and the
/// milliseconds left in the window.
static HIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local n = redis.call('INCR', KEYS[1])
          local ttl = redis.call('PTTL', KEYS[1])
          if ttl < 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            ttl = tonumber(ARGV[1])
          end
          return {n, ttl}",
    )
});

/// Before a login's password is verified. KEYS: fails, pending, locked. ARGV: threshold,
/// pending TTL (ms). Returns 0 (go ahead, a slot is reserved), the milliseconds the account
/// stays locked, or -1 (as many verifications under way as attempts are left).
static LOGIN_BEGIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local locked = redis.call('PTTL', KEYS[3])
          if locked > 0 then return locked end
          local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
          local pending = tonumber(redis.call('GET', KEYS[2]) or '0')
          if pending < 0 then pending = 0 end
          if fails + pending >= tonumber(ARGV[1]) then return -1 end
          redis.call('INCR', KEYS[2])
          redis.call('PEXPIRE', KEYS[2], ARGV[2])
          return 0",
    )
});

/// A verified login failed. KEYS: fails, pending, level, locked. ARGV: threshold, window,
/// base, max, level memory (all ms). Gives the slot back and counts the failure; the
/// threshold-th one locks the account for base * 2^(level - 1), at most max. Returns the
/// lock's milliseconds when this failure started one, else 0.
static LOGIN_FAILED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
          if redis.call('PTTL', KEYS[4]) > 0 then return 0 end
          local n = redis.call('INCR', KEYS[1])
          if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
          if n < tonumber(ARGV[1]) then return 0 end
          redis.call('DEL', KEYS[1])
          local level = redis.call('INCR', KEYS[3])
          redis.call('PEXPIRE', KEYS[3], ARGV[5])
          local max = tonumber(ARGV[4])
          local ms = tonumber(ARGV[3])
          for _ = 2, level do
            if ms >= max then break end
            ms = ms * 2
          end
          if ms > max then ms = max end
          redis.call('SET', KEYS[4], level, 'PX', ms)
          return ms",
    )
});

/// A login succeeded. KEYS: fails, pending, level. Gives the slot back and forgets the
/// failures and the lockout level.
static LOGIN_SUCCEEDED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
          redis.call('DEL', KEYS[1], KEYS[3])
          return 1",
    )
});

/// A login ended without a verdict on the password (a dependency failed). KEYS: pending.
static LOGIN_ABANDONED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
          return 1",
    )
});

/// Why a limited action may not go on.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The limit is reached; the client may try again after this many whole seconds.
    #[error("rate limited; retry after {retry_after_secs} s")]
    Limited {
        /// At least 1.
        retry_after_secs: u64,
    },
    /// The limit could not be checked and the action fails closed.
    #[error(transparent)]
    Unavailable(#[from] CacheError),
}

/// The abuse limits of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    cache: Cache,
    config: LimitsConfig,
}

impl Limits {
    /// Limits counted in `cache`.
    pub fn new(cache: Cache, config: LimitsConfig) -> Self {
        Self { cache, config }
    }

    // ----- per client IP -----

    /// Counts one `action` request from `ip`. An unknown IP (a Lambda event without a source
    /// IP) is not counted: one shared bucket would let a single client lock everyone out.
    pub async fn check_ip(
        &self,
        action: IpAction,
        ip: Option<IpAddr>,
    ) -> Result<Verdict, CacheError> {
        let limit = action.limit(&self.config);
        let Some(ip) = ip else {
            if limit > 0 {
                tracing::warn!(
                    action = action.as_str(),
                    "client IP unknown; per-IP limit not applied"
                );
            }
            return Ok(Verdict::Allowed);
        };
        if limit == 0 {
            return Ok(Verdict::Allowed);
        }
        let key = self
            .cache
            .key(format_args!("rl:ip:{}:{}", action.as_str(), ip_bucket(ip)));
        self.window_hit(&key, limit, MINUTE).await
    }

    /// [`Self::check_ip`] as a use case wants it: [`LimitError::Limited`] (and an audit
    /// event) past the limit, and the action's policy when Redis cannot be reached
    /// ([`LimitError::Unavailable`], or a warning and on).
    pub async fn enforce_ip(&self, action: IpAction, ip: Option<IpAddr>) -> Result<(), LimitError> {
        match self.check_ip(action, ip).await {
            Ok(Verdict::Allowed) => Ok(()),
            Ok(Verdict::Limited { retry_after_secs }) => {
                // Names no user, so it is logged, not stored in a user's trail.
                AuditEvent::failure(action.audit_kind(), AuditReason::RateLimited)
                    .ip(ip)
                    .log();
                Err(LimitError::Limited { retry_after_secs })
            }
            Err(e) if action.fails_closed() => Err(LimitError::Unavailable(e)),
            Err(e) => {
                tracing::warn!(
                    action = action.as_str(),
                    error = %ErrorChain(&e),
                    "rate limit not checked (Redis unreachable); letting the request through"
                );
                Ok(())
            }
        }
    }

    // ----- forgot requests per email -----

    /// Counts one forgot request for `email`; `false` past the hourly limit (answer 202 as
    /// always, but send no email). Counted whether or not the account exists.
    pub async fn forgot_allowed(&self, email: &Email) -> Result<bool, CacheError> {
        let limit = self.config.forgot_per_email_per_hour;
        if limit == 0 {
            return Ok(true);
        }
        let key = self
            .cache
            .key(format_args!("rl:email:forgot:{}", email_hash(email)));
        Ok(self.window_hit(&key, limit, HOUR).await? == Verdict::Allowed)
    }

    /// Counts one verification email for the account; `false` past the hourly limit (the
    /// request is answered as always, but no email goes out).
    pub async fn verification_allowed(&self, user_id: uuid::Uuid) -> Result<bool, CacheError> {
        let limit = self.config.verification_per_account_per_hour;
        if limit == 0 {
            return Ok(true);
        }
        let key = self
            .cache
            .key(format_args!("rl:account:verification:{user_id}"));
        Ok(self.window_hit(&key, limit, HOUR).await? == Verdict::Allowed)
    }

    // ----- failed logins per account -----

    /// Call before verifying a login's password: [`Verdict::Limited`] while the account is
    /// locked (whatever the password), else a verification slot is reserved, and the caller
    /// must end the attempt with [`Self::login_failed`], [`Self::login_succeeded`] or
    /// [`Self::login_abandoned`].
    pub async fn login_begin(&self, email: &Email) -> Result<Verdict, CacheError> {
        if self.lockout_off() {
            return Ok(Verdict::Allowed);
        }
        let keys = AccountKeys::new(&self.cache, email);
        let mut connection = self.cache.connection().await?;
        let answer: i64 = self
            .cache
            .timed(
                LOGIN_BEGIN
                    .key(&keys.fails)
                    .key(&keys.pending)
                    .key(&keys.locked)
                    .arg(self.config.lockout_threshold)
                    .arg(millis(PENDING_TTL))
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok(match answer {
            0 => Verdict::Allowed,
            ms if ms > 0 => Verdict::Limited {
                retry_after_secs: retry_after(ms),
            },
            _ => Verdict::Limited {
                retry_after_secs: BUSY_RETRY_AFTER_SECS,
            },
        })
    }

    /// The password was wrong (or the account unknown or disabled). Returns the lockout's
    /// length in seconds when this failure started one.
    pub async fn login_failed(&self, email: &Email) -> Result<Option<u64>, CacheError> {
        if self.lockout_off() {
            return Ok(None);
        }
        let keys = AccountKeys::new(&self.cache, email);
        let mut connection = self.cache.connection().await?;
        let locked_ms: i64 = self
            .cache
            .timed(
                LOGIN_FAILED
                    .key(&keys.fails)
                    .key(&keys.pending)
                    .key(&keys.level)
                    .key(&keys.locked)
                    .arg(self.config.lockout_threshold)
                    .arg(millis(self.config.lockout_window))
                    .arg(millis(self.config.lockout_base))
                    .arg(millis(self.config.lockout_max))
                    .arg(millis(self.level_memory()))
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok((locked_ms > 0).then(|| retry_after(locked_ms)))
    }

    /// The password was right: the failures and the lockout level are forgotten.
    pub async fn login_succeeded(&self, email: &Email) -> Result<(), CacheError> {
        if self.lockout_off() {
            return Ok(());
        }
        let keys = AccountKeys::new(&self.cache, email);
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(
                LOGIN_SUCCEEDED
                    .key(&keys.fails)
                    .key(&keys.pending)
                    .key(&keys.level)
                    .invoke_async::<i64>(&mut connection),
            )
            .await
            .map(drop)
    }

    /// The account proved its owner another way (a password reset): its failures, its
    /// lockout and the lockout level are forgotten. Attempts in flight keep their slots.
    pub async fn lockout_cleared(&self, email: &Email) -> Result<(), CacheError> {
        let keys = AccountKeys::new(&self.cache, email);
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(
                redis::cmd("DEL")
                    .arg(&keys.fails)
                    .arg(&keys.level)
                    .arg(&keys.locked)
                    .query_async::<i64>(&mut connection),
            )
            .await
            .map(drop)
    }

    /// The attempt ended without a verdict on the password (a dependency failed): its slot
    /// is given back and nothing is counted.
    pub async fn login_abandoned(&self, email: &Email) -> Result<(), CacheError> {
        if self.lockout_off() {
            return Ok(());
        }
        let keys = AccountKeys::new(&self.cache, email);
        let mut connection = self.cache.connection().await?;
        self.cache
            .timed(
                LOGIN_ABANDONED
                    .key(&keys.pending)
                    .invoke_async::<i64>(&mut connection),
            )
            .await
            .map(drop)
    }

    fn lockout_off(&self) -> bool {
        self.config.lockout_threshold == 0
    }

    /// How long the lockout level survives its last lockout: a day, and never less than the
    /// longest lockout plus a window (so the level cannot lapse while a lock is running).
    fn level_memory(&self) -> Duration {
        LEVEL_MEMORY.max(self.config.lockout_max + self.config.lockout_window)
    }

    async fn window_hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Verdict, CacheError> {
        let mut connection = self.cache.connection().await?;
        let (count, ttl_ms): (u64, i64) = self
            .cache
            .timed(
                HIT.key(key)
                    .arg(millis(window))
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok(if count > u64::from(limit) {
            Verdict::Limited {
                retry_after_secs: retry_after(ttl_ms),
            }
        } else {
            Verdict::Allowed
        })
    }
}

/// The Redis keys of one account's login state.
struct AccountKeys {
    fails: String,
    pending: String,
    level: String,
    locked: String,
}

impl AccountKeys {
    fn new(cache: &Cache, email: &Email) -> Self {
        let hash = email_hash(email);
        let key = |part: &str| cache.key(format_args!("lockout:{{{hash}}}:{part}"));
        Self {
            fails: key("fails"),
            pending: key("pending"),
            level: key("level"),
            locked: key("locked"),
        }
    }
}

/// Hex SHA-256 of the (normalised) email: a key per account that is not the email itself.
fn email_hash(email: &Email) -> String {
    digest(&SHA256, email.as_str().as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who a per-IP counter counts: an IPv4 address, or an IPv6 /64 (IPv4-mapped IPv6 addresses
/// count as the IPv4 address they carry).
fn ip_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let network = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{network}/64")
        }
    }
}

/// Whole seconds to wait for `ms` milliseconds, rounded up, at least 1.
fn retry_after(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! Against the real Redis at 127.0.0.1:6379; each test under its own key prefix, which
    //! it deletes at the end.

    use super::*;
    use secrecy::SecretString;

    const REDIS_URL: &str = "redis://127.0.0.1:6379";

    /// A `Limits` under a fresh prefix; deletes the prefix's keys when dropped.
    struct TestLimits {
        limits: Limits,
        prefix: String,
    }

    impl std::ops::Deref for TestLimits {
        type Target = Limits;
        fn deref(&self) -> &Limits {
            &self.limits
        }
    }

    impl Drop for TestLimits {
        fn drop(&mut self) {
            let pattern = format!("{}*", self.prefix);
            let cleanup = std::thread::spawn(move || -> redis::RedisResult<()> {
                let client = redis::Client::open(REDIS_URL)?;
                let mut con = client.get_connection()?;
                let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut con)?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(keys).query::<()>(&mut con)?;
                }
                Ok(())
            });
            if let Ok(Err(e)) = cleanup.join() {
                eprintln!("could not delete test keys {}*: {e}", self.prefix);
            }
        }
    }

    fn limits(config: LimitsConfig) -> TestLimits {
        let prefix = format!("test:limits:{}:", uuid::Uuid::now_v7());
        let cache = Cache::connect(
            &SecretString::from(REDIS_URL),
            &prefix,
            Duration::from_secs(2),
        )
        .expect("redis url");
        TestLimits {
            limits: Limits::new(cache, config),
            prefix,
        }
    }

    fn small_lockout() -> LimitsConfig {
        LimitsConfig {
            lockout_threshold: 3,
            lockout_base: Duration::from_secs(10),
            lockout_max: Duration::from_secs(25),
            ..LimitsConfig::default()
        }
    }

    fn email(s: &str) -> Email {
        Email::parse(s).expect("valid email")
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    async fn keys(l: &TestLimits) -> Vec<String> {
        let mut con = l.cache.connection().await.expect("redis");
        redis::cmd("KEYS")
            .arg(format!("{}*", l.prefix))
            .query_async(&mut con)
            .await
            .expect("KEYS")
    }

    async fn pttl(l: &TestLimits, key: &str) -> i64 {
        let mut con = l.cache.connection().await.expect("redis");
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .expect("PTTL")
    }

    /// One full failed attempt: begin, then fail.
    async fn fail(l: &Limits, e: &Email) -> Option<u64> {
        assert_eq!(l.login_begin(e).await.expect("begin"), Verdict::Allowed);
        l.login_failed(e).await.expect("failed")
    }

    fn limited(v: Verdict) -> u64 {
        match v {
            Verdict::Limited { retry_after_secs } => retry_after_secs,
            Verdict::Allowed => panic!("expected a limit"),
        }
    }

    #[tokio::test]
    async fn the_ip_limit_counts_per_action_and_per_ip() {
        let l = limits(LimitsConfig {
            login_per_ip_per_minute: 3,
            ..LimitsConfig::default()
        });
        for _ in 0..3 {
            let v = l.check_ip(IpAction::Login, ip("192.0.2.1")).await.unwrap();
            assert_eq!(v, Verdict::Allowed);
        }
        let retry = limited(l.check_ip(IpAction::Login, ip("192.0.2.1")).await.unwrap());
        assert!((1..=60).contains(&retry), "{retry}");
        // Other IPs and other actions have counters of their own.
        let other_ip = l.check_ip(IpAction::Login, ip("192.0.2.2")).await.unwrap();
        assert_eq!(other_ip, Verdict::Allowed);
        let register = l.check_ip(IpAction::Register, ip("192.0.2.1")).await;
        assert_eq!(register.unwrap(), Verdict::Allowed);
        // The window is a minute from the first hit, and does not grow with refusals.
        let key = l.cache.key("rl:ip:login:192.0.2.1");
        let ttl = pttl(&l, &key).await;
        assert!((55_000..=60_000).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn ipv6_clients_are_counted_by_their_64() {
        let l = limits(LimitsConfig {
            register_per_ip_per_minute: 2,
            ..LimitsConfig::default()
        });
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::ffff"] {
            let v = l.check_ip(IpAction::Register, ip(host)).await.unwrap();
            assert_eq!(v, Verdict::Allowed);
        }
        let v = l
            .check_ip(IpAction::Register, ip("2001:db8:1:2:aaaa::1"))
            .await
            .unwrap();
        limited(v);
        let v = l
            .check_ip(IpAction::Register, ip("2001:db8:1:3::1"))
            .await
            .unwrap();
        assert_eq!(v, Verdict::Allowed);
        assert_eq!(ip_bucket("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[tokio::test]
    async fn a_limit_of_zero_is_off_and_an_unknown_ip_is_not_counted() {
        let l = limits(LimitsConfig {
            reset_per_ip_per_minute: 0,
            forgot_per_ip_per_minute: 1,
            ..LimitsConfig::default()
        });
        for _ in 0..5 {
            let v = l.check_ip(IpAction::Reset, ip("192.0.2.1")).await.unwrap();
            assert_eq!(v, Verdict::Allowed);
            let v = l.check_ip(IpAction::Forgot, None).await.unwrap();
            assert_eq!(v, Verdict::Allowed);
        }
        assert!(keys(&l).await.is_empty());
    }

    #[tokio::test]
    async fn forgot_is_allowed_a_few_times_per_email_per_hour() {
        let l = limits(LimitsConfig::default());
        let a = email("Someone@Example.com");
        for _ in 0..3 {
            assert!(l.forgot_allowed(&a).await.unwrap());
        }
        assert!(!l.forgot_allowed(&a).await.unwrap());
        assert!(
            !l.forgot_allowed(&email("someone@example.com"))
                .await
                .unwrap()
        );
        assert!(l.forgot_allowed(&email("other@example.com")).await.unwrap());
        let all = keys(&l).await;
        assert!(all.iter().all(|k| !k.contains("someone")), "{all:?}");
        let key = l
            .cache
            .key(format_args!("rl:email:forgot:{}", email_hash(&a)));
        let ttl = pttl(&l, &key).await;
        assert!((3_500_000..=3_600_000).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn the_threshold_th_failure_locks_even_the_right_password_out() {
        let l = limits(small_lockout());
        let victim = email("victim@example.com");
        assert_eq!(fail(&l, &victim).await, None);
        assert_eq!(fail(&l, &victim).await, None);
        assert_eq!(fail(&l, &victim).await, Some(10), "the third failure locks");
        let retry = limited(l.login_begin(&victim).await.unwrap());
        assert!((9..=10).contains(&retry), "{retry}");
        // Another account is not affected.
        let other = email("other@example.com");
        assert_eq!(l.login_begin(&other).await.unwrap(), Verdict::Allowed);
        l.login_succeeded(&other).await.unwrap();
        // No key holds the email.
        let all = keys(&l).await;
        assert!(all.iter().all(|k| !k.contains("victim")), "{all:?}");
    }

    #[tokio::test]
    async fn repeated_lockouts_double_up_to_the_cap() {
        let l = limits(small_lockout());
        let e = email("repeat@example.com");
        let locked_key = AccountKeys::new(&l.cache, &e).locked;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            fail(&l, &e).await;
            fail(&l, &e).await;
            lengths.push(fail(&l, &e).await.expect("locked"));
            // Let the lock lapse (as time would) but keep the level.
            let mut con = l.cache.connection().await.expect("redis");
            redis::cmd("DEL")
                .arg(&locked_key)
                .query_async::<()>(&mut con)
                .await
                .unwrap();
        }
        assert_eq!(lengths, [10, 20, 25, 25]);
    }

    #[tokio::test]
    async fn a_success_forgets_failures_and_level() {
        let l = limits(small_lockout());
        let e = email("forgetful@example.com");
        fail(&l, &e).await;
        fail(&l, &e).await;
        assert_eq!(l.login_begin(&e).await.unwrap(), Verdict::Allowed);
        l.login_succeeded(&e).await.unwrap();
        // Two more failures do not lock: the count started again.
        assert_eq!(fail(&l, &e).await, None);
        assert_eq!(fail(&l, &e).await, None);
        assert_eq!(fail(&l, &e).await, Some(10));
        assert!(keys(&l).await.iter().all(|k| !k.ends_with(":pending")));
    }

    #[tokio::test]
    async fn concurrent_attempts_never_verify_more_than_the_threshold() {
        let l = limits(small_lockout());
        let e = email("burst@example.com");
        let verdicts = futures::future::join_all((0..20).map(|_| l.login_begin(&e))).await;
        let allowed = verdicts
            .iter()
            .filter(|v| matches!(v, Ok(Verdict::Allowed)))
            .count();
        assert_eq!(allowed, 3, "{verdicts:?}");
        assert!(verdicts.iter().all(Result::is_ok));
        // An attempt that ends without a verdict gives its slot back.
        l.login_abandoned(&e).await.unwrap();
        assert_eq!(l.login_begin(&e).await.unwrap(), Verdict::Allowed);
        for _ in 0..3 {
            l.login_failed(&e).await.unwrap();
        }
        limited(l.login_begin(&e).await.unwrap());
    }

    #[tokio::test]
    async fn lockout_off_touches_nothing() {
        let l = limits(LimitsConfig {
            lockout_threshold: 0,
            ..LimitsConfig::default()
        });
        let e = email("free@example.com");
        for _ in 0..10 {
            assert_eq!(fail(&l, &e).await, None);
        }
        assert!(keys(&l).await.is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_not_a_pass() {
        // Nothing listens on port 1.
        let cache = Cache::connect(
            &SecretString::from("redis://127.0.0.1:1"),
            "test:limits:down:",
            Duration::from_millis(300),
        )
        .expect("redis url");
        let l = Limits::new(cache, LimitsConfig::default());
        assert!(l.check_ip(IpAction::Login, ip("192.0.2.1")).await.is_err());
        assert!(l.login_begin(&email("a@example.com")).await.is_err());
        assert!(l.forgot_allowed(&email("a@example.com")).await.is_err());
        let login = l.enforce_ip(IpAction::Login, ip("192.0.2.1")).await;
        assert!(
            matches!(login, Err(LimitError::Unavailable(_))),
            "{login:?}"
        );
        let register = l.enforce_ip(IpAction::Register, ip("192.0.2.1")).await;
        assert!(register.is_ok(), "register fails open: {register:?}");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(1), 1);
        assert_eq!(retry_after(1000), 1);
        assert_eq!(retry_after(1001), 2);
        assert_eq!(retry_after(59_999), 60);
        assert_eq!(retry_after(-2), 1);
    }
}
