//! Service configuration, read once from environment variables at start. A leaf: it names
//! no other module of the crate, and the settings types of every component live here.
//!
//! Every knob has a default that works on a developer machine with the local Postgres and
//! Redis, so `user-service serve` runs with no environment at all. Secrets never live here
//! as plain strings: a database password stays inside the URL, which is wrapped in
//! [`SecretString`] so that `{:?}` of a `Config` cannot print it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// Everything the service needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the local server listens on (`LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The local server's connection limits (`HTTP_*`).
    pub http_server: HttpServerConfig,
    /// Postgres connection URL (`DATABASE_URL`); may carry a password. Its user is the
    /// owner of the schema, who runs the migrations; the service itself connects as
    /// `database_runtime_user`. On AWS it is built from `DATABASE_HOST`, `DATABASE_PORT` and
    /// `DATABASE_NAME`, without credentials.
    pub database_url: SecretString,
    /// Secrets Manager secret holding the credentials of the owner who migrates, JSON
    /// `{"username", "password"}` (`DATABASE_SECRET_ARN`, the RDS-managed master secret:
    /// only the migrate function has it); read on first connect and again after
    /// `SECRETS_REFRESH_SECONDS` or a refused password.
    pub database_secret_arn: Option<String>,
    /// The role the service connects as (`DATABASE_RUNTIME_USER`, default [`RUNTIME_ROLE`],
    /// the role the migrations create with only the privileges the code uses). Without `DATABASE_RUNTIME_SECRET_ARN` it logs in with
    /// no password (trust authentication on a developer machine), unless it is the URL's
    /// own user, which keeps the URL's password.
    pub database_runtime_user: String,
    /// Secrets Manager secret of the runtime role, JSON `{"username", "password", ...}`
    /// (`DATABASE_RUNTIME_SECRET_ARN`, rotated by Secrets Manager): the service's login
    /// when set; the migrate function sets the role's password from it.
    pub database_runtime_secret_arn: Option<String>,
    /// TLS to Postgres (`DATABASE_TLS`: `verify-full` or `off`; `verify-full` by default
    /// with `DATABASE_HOST`, else `off`).
    pub database_tls: TlsMode,
    /// PEM file of the roots Postgres certificates must chain to (`DATABASE_CA_FILE`);
    /// default: the bundled RDS CAs and Amazon roots.
    pub database_ca_file: Option<PathBuf>,
    /// Largest number of pooled Postgres connections (`DATABASE_POOL_SIZE`).
    pub database_pool_size: usize,
    /// Redis connection URL (`REDIS_URL`); may carry a password. `rediss://` is TLS. On AWS
    /// it is built from `REDIS_HOST` and `REDIS_PORT`, TLS unless `REDIS_TLS=off`.
    pub redis_url: SecretString,
    /// Secrets Manager secret holding the Redis AUTH token, JSON `{"token"}`
    /// (`REDIS_AUTH_SECRET_ARN`); read on first use.
    pub redis_auth_secret_arn: Option<String>,
    /// PEM file of the roots a `rediss://` server's certificate must chain to
    /// (`REDIS_CA_FILE`); default: the system's and Mozilla's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Secrets Manager secret holding the JWT signing keys (`JWT_KEYS_SECRET_ARN`); when set
    /// it replaces `JWT_PRIVATE_KEY_FILE`. Read on first use, again after
    /// `SECRETS_REFRESH_SECONDS`, and when a token names a key id not yet seen.
    pub jwt_keys_secret_arn: Option<String>,
    /// Secrets Manager secret holding the public halves of those keys and the cursor MAC key
    /// (`JWT_PUBLIC_KEYS_SECRET_ARN`), which the key rotation writes: a function that
    /// verifies tokens but issues none reads this one instead of `JWT_KEYS_SECRET_ARN`
    /// (which wins when both are set), and rotate-keys writes it.
    pub jwt_public_keys_secret_arn: Option<String>,
    /// How long a secret read from Secrets Manager is used before it is read again
    /// (`SECRETS_REFRESH_SECONDS`, default 5 minutes), so a rotation needs no redeploy. The
    /// key rotation keeps a retired key this much longer than the token lifetime, because
    /// an instance that cached it may sign with it until then.
    pub secrets_refresh: Duration,
    /// Prefix of every Redis key this service writes (`REDIS_KEY_PREFIX`), so that several
    /// deployments (or test runs) can share one Redis.
    pub redis_key_prefix: String,
    /// Deadline for one dependency step: connect, pool wait, query (`DEPENDENCY_TIMEOUT_MS`).
    /// An outage answers 503 well within 5 s instead of hanging.
    pub dependency_timeout: Duration,
    /// PEM file with the JWT signing keys (`JWT_PRIVATE_KEY_FILE`): the first key signs,
    /// every key in the file verifies and is published in the JWKS.
    pub jwt_private_key_file: PathBuf,
    /// Algorithm of the key created when the key file is missing (`JWT_ALGORITHM`).
    pub jwt_algorithm: KeyAlgorithm,
    /// `iss` claim of issued tokens, and the only issuer accepted (`JWT_ISSUER`).
    pub jwt_issuer: String,
    /// `aud` claim of issued tokens, and the only audience accepted (`JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Lifetime of an access token (`ACCESS_TOKEN_TTL_SECONDS`, default 15 minutes).
    pub access_token_ttl: Duration,
    /// Lifetime of one refresh token; using it mints a new one (`REFRESH_TOKEN_TTL_SECONDS`,
    /// default 30 days). This is the session's idle expiry.
    pub refresh_token_ttl: Duration,
    /// Longest a session may live however often it is refreshed
    /// (`SESSION_MAX_LIFETIME_SECONDS`, default 90 days): the absolute expiry.
    pub session_max_lifetime: Duration,
    /// How long a spent refresh token may be presented again and still get a new pair,
    /// while the successor it produced is unused (`REFRESH_REUSE_GRACE_SECONDS`, default 0:
    /// off): for a client whose answer was lost. The earlier successor then stops working.
    pub refresh_reuse_grace: Duration,
    /// Argon2id parameters for new hashes.
    pub argon2: Argon2Config,
    /// How many hashes may run at once (`HASHING_CONCURRENCY`, default: CPU count).
    pub hashing_concurrency: usize,
    /// How long a hash may wait in the queue for a hashing thread before 503
    /// (`HASHING_QUEUE_TIMEOUT_MS`).
    pub hashing_queue_timeout: Duration,
    /// Base of links in emails (`PUBLIC_BASE_URL`, default `http://LISTEN_ADDR`).
    pub public_base_url: String,
    /// Where emails go (`MAIL_BACKEND`: `smtp`, `ses` or `log`); unset: SMTP when `SMTP_URL`
    /// is set, else the log. See [`crate::mail`].
    pub mail_backend: MailBackend,
    /// SMTP server URL as lettre reads it (`SMTP_URL`); may carry a password.
    pub smtp_url: Option<SecretString>,
    /// Sender of emails (`SMTP_FROM`, default `no-reply@localhost.localdomain`).
    pub smtp_from: String,
    /// Lifetime of a password-reset token (`PASSWORD_RESET_TTL_SECONDS`, default 30 minutes).
    pub password_reset_ttl: Duration,
    /// Lifetime of a verification or email-change link (`EMAIL_VERIFICATION_TTL_SECONDS`,
    /// default 24 hours).
    pub email_verification_ttl: Duration,
    /// Refuse logins to accounts whose email is not verified (`REQUIRE_VERIFIED_EMAIL`,
    /// default false).
    pub require_verified_email: bool,
    /// Take the client IP from `X-Forwarded-For` (`TRUST_FORWARDED_FOR`); only behind a
    /// proxy that sets it, or clients could pick their own IP.
    pub trust_forwarded_for: bool,
    /// Abuse limits: per client IP, per account, per email (`RATE_LIMIT_*`, `LOCKOUT_*`).
    pub limits: LimitsConfig,
    /// Route rules of the Lambda authorizer (`AUTHORIZER_ROUTE_RULES`): raw JSON mapping an
    /// API Gateway route key to the roles allowed on it, parsed by
    /// [`crate::auth::rules::RouteRules::from_config`]; unset means this service's own rules.
    pub authorizer_route_rules: Option<String>,
    /// The admin routes refuse access tokens of sessions opened without a second factor
    /// (`ADMIN_REQUIRES_MFA`, default false): 403 `forbidden`, in the service and in the
    /// authorizer's own rules.
    pub admin_requires_mfa: bool,
    /// Two-factor login (`MFA_*`, `ADMIN_REQUIRES_MFA`).
    pub mfa: MfaConfig,
    /// Created as admin at start if no active admin exists (`BOOTSTRAP_ADMIN_EMAIL` and
    /// `BOOTSTRAP_ADMIN_PASSWORD`, both or neither).
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// DynamoDB table of the audit trail (`AUDIT_TABLE`); unset: Postgres (`audit_events`).
    pub audit_table: Option<String>,
    /// How long audit events are kept (`AUDIT_RETENTION_DAYS`, default 90).
    pub audit_retention: Duration,
    /// DynamoDB endpoint (`AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`, as the AWS
    /// SDK reads them; read here too so that they go through the same lookup as the rest,
    /// e.g. to a local moto server in tests). Unset: the SDK's default endpoint.
    pub dynamodb_endpoint_url: Option<String>,
    /// Secrets Manager endpoint (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, else
    /// `AWS_ENDPOINT_URL`), read like the DynamoDB one. Unset: the SDK's default endpoint.
    pub secretsmanager_endpoint_url: Option<String>,
}

/// Two-factor login: where the keys that encrypt TOTP secrets are, and what the set-up shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaConfig {
    /// The key file (`MFA_KEY_FILE`, created with mode 0600 when missing; default under the
    /// local data directory). Ignored when `MFA_KEYS_SECRET_ARN` is set.
    pub key_file: PathBuf,
    /// Secrets Manager secret holding the keys (`MFA_KEYS_SECRET_ARN`), JSON
    /// `{"current": "<id>", "<id>": "<key>", ...}`; read on first use.
    pub keys_secret_arn: Option<String>,
    /// The issuer an authenticator app shows (`MFA_ISSUER`, default `user-service`).
    pub issuer: String,
}

/// The local server's connection limits (see `http::server`); Lambda functions have none
/// (API Gateway holds the connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpServerConfig {
    /// How long a request's head (request line and headers) may take to arrive whole, from
    /// the connection's start or the request's first byte (`HTTP_HEADER_READ_TIMEOUT_SECONDS`,
    /// default 10).
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request after a response
    /// (`HTTP_IDLE_TIMEOUT_SECONDS`, default 75: longer than the 60 s idle timeout of common
    /// load balancers, so that the balancer, not this server, closes a pooled connection).
    pub idle_timeout: Duration,
    /// Most connections open at once (`HTTP_MAX_CONNECTIONS`, default 4096); keep it under
    /// the process's open-file limit less the database and Redis pools.
    pub max_connections: usize,
}

/// The asymmetric algorithms a key may be for. HMAC is deliberately absent: a shared secret
/// would let every verifier mint tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256 (the default: small keys, fast).
    Es256,
    /// RSA PKCS#1 v1.5 with SHA-256, 2048-bit keys (slow to sign, widest support).
    Rs256,
    /// Ed25519 (fastest).
    EdDsa,
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            "EdDSA" => Ok(Self::EdDsa),
            other => Err(format!(
                "{other:?} is not supported; use ES256, RS256 or EdDSA"
            )),
        }
    }
}

/// Where emails go (`MAIL_BACKEND`: `smtp`, `ses` or `log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailBackend {
    /// Written to the log, not sent (local development).
    Log,
    /// The SMTP server of `SMTP_URL`.
    Smtp,
    /// Amazon SES through its API.
    Ses,
}

impl MailBackend {
    /// The name `MAIL_BACKEND` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Smtp => "smtp",
            Self::Ses => "ses",
        }
    }
}

impl FromStr for MailBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "log" => Ok(Self::Log),
            "smtp" => Ok(Self::Smtp),
            "ses" => Ok(Self::Ses),
            other => Err(format!(
                "unknown mail back end {other:?} (smtp, ses or log)"
            )),
        }
    }
}

/// The limits (`RATE_LIMIT_*` and `LOCKOUT_*`); a limit or threshold of 0 turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Login attempts per client IP per minute (`RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE`).
    pub login_per_ip_per_minute: u32,
    /// Registrations per client IP per minute (`RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE`).
    pub register_per_ip_per_minute: u32,
    /// Forgot requests per client IP per minute (`RATE_LIMIT_FORGOT_PER_IP_PER_MINUTE`).
    pub forgot_per_ip_per_minute: u32,
    /// Reset requests per client IP per minute (`RATE_LIMIT_RESET_PER_IP_PER_MINUTE`).
    pub reset_per_ip_per_minute: u32,
    /// Forgot requests per email per hour that send an email
    /// (`RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR`).
    pub forgot_per_email_per_hour: u32,
    /// Verification emails per account per hour that a resend request sends
    /// (`RATE_LIMIT_VERIFICATION_PER_ACCOUNT_PER_HOUR`).
    pub verification_per_account_per_hour: u32,
    /// Failed logins within the window that lock the account (`LOCKOUT_THRESHOLD`).
    pub lockout_threshold: u32,
    /// The window failures are counted in (`LOCKOUT_WINDOW_SECONDS`).
    pub lockout_window: Duration,
    /// How long the first lockout lasts (`LOCKOUT_BASE_SECONDS`); each repeat doubles it.
    pub lockout_base: Duration,
    /// The longest lockout (`LOCKOUT_MAX_SECONDS`).
    pub lockout_max: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            login_per_ip_per_minute: 30,
            register_per_ip_per_minute: 20,
            forgot_per_ip_per_minute: 10,
            reset_per_ip_per_minute: 10,
            forgot_per_email_per_hour: 3,
            verification_per_account_per_hour: 3,
            lockout_threshold: 5,
            lockout_window: Duration::from_secs(15 * 60),
            lockout_base: Duration::from_secs(60),
            lockout_max: Duration::from_secs(3600),
        }
    }
}

/// Whether a connection uses TLS. With TLS the server's certificate and host name are always
/// verified: there is no "encrypt but trust anyone" mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (the local machine).
    Off,
    /// TLS, the certificate verified against the configured roots and the host name.
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!("{other:?}: use verify-full or off")),
        }
    }
}

/// The first admin's credentials, from the environment.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    /// Its email (validated at start).
    pub email: String,
    /// Its password (held as a secret; checked against the policy at start).
    pub password: SecretString,
}

/// Argon2id cost parameters (`ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    /// Memory cost in KiB (OWASP minimum 19456).
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The runtime database role's name, as `migrations/V8__runtime_role.sql` creates it (roles
/// are cluster-wide: every database of the cluster that this service migrates shares it);
/// see `db::runtime_role`.
pub const RUNTIME_ROLE: &str = "user_service_app";

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {reason}")]
pub struct ConfigError {
    name: &'static str,
    reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let listen_addr: SocketAddr = parse_or(&get, "LISTEN_ADDR", "127.0.0.1:8080".parse().ok())?;
        let secs = |name, default: u64| -> Result<Duration, ConfigError> {
            parse_or(&get, name, Some(default)).map(Duration::from_secs)
        };
        let millis = |name, default: u64| -> Result<Duration, ConfigError> {
            parse_or(&get, name, Some(default)).map(Duration::from_millis)
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let defaults = Argon2Config::default();
        let database_host = get("DATABASE_HOST");
        let redis_host = get("REDIS_HOST");
        let config = Self {
            listen_addr,
            http_server: HttpServerConfig {
                header_read_timeout: secs("HTTP_HEADER_READ_TIMEOUT_SECONDS", 10)?,
                idle_timeout: secs("HTTP_IDLE_TIMEOUT_SECONDS", 75)?,
                max_connections: parse_or(&get, "HTTP_MAX_CONNECTIONS", Some(4096))?,
            },
            database_url: match (get("DATABASE_URL"), &database_host) {
                (Some(url), None) => url,
                (None, Some(host)) => format!(
                    "postgres://{host}:{}/{}",
                    parse_or(&get, "DATABASE_PORT", Some(5432_u16))?,
                    get("DATABASE_NAME").unwrap_or_else(|| "user_service".into()),
                ),
                (None, None) => "postgres://postgres@127.0.0.1:5432/user_service".into(),
                (Some(_), Some(_)) => {
                    return Err(ConfigError {
                        name: "DATABASE_HOST",
                        reason: "set DATABASE_URL or DATABASE_HOST, not both".into(),
                    });
                }
            }
            .into(),
            database_secret_arn: get("DATABASE_SECRET_ARN"),
            database_runtime_user: get("DATABASE_RUNTIME_USER")
                .unwrap_or_else(|| RUNTIME_ROLE.to_owned()),
            database_runtime_secret_arn: get("DATABASE_RUNTIME_SECRET_ARN"),
            database_tls: parse_or(
                &get,
                "DATABASE_TLS",
                Some(if database_host.is_some() {
                    TlsMode::VerifyFull
                } else {
                    TlsMode::Off
                }),
            )?,
            database_ca_file: get("DATABASE_CA_FILE").map(PathBuf::from),
            database_pool_size: parse_or(&get, "DATABASE_POOL_SIZE", Some(16))?,
            redis_url: match (get("REDIS_URL"), &redis_host) {
                (Some(url), None) => url,
                (None, Some(host)) => {
                    let scheme = match parse_or(&get, "REDIS_TLS", Some(TlsMode::VerifyFull))? {
                        TlsMode::VerifyFull => "rediss",
                        TlsMode::Off => "redis",
                    };
                    let port = parse_or(&get, "REDIS_PORT", Some(6379_u16))?;
                    format!("{scheme}://{host}:{port}")
                }
                (None, None) => "redis://127.0.0.1:6379".into(),
                (Some(_), Some(_)) => {
                    return Err(ConfigError {
                        name: "REDIS_HOST",
                        reason: "set REDIS_URL or REDIS_HOST, not both".into(),
                    });
                }
            }
            .into(),
            redis_auth_secret_arn: get("REDIS_AUTH_SECRET_ARN"),
            redis_ca_file: get("REDIS_CA_FILE").map(PathBuf::from),
            jwt_keys_secret_arn: get("JWT_KEYS_SECRET_ARN"),
            jwt_public_keys_secret_arn: get("JWT_PUBLIC_KEYS_SECRET_ARN"),
            secrets_refresh: secs("SECRETS_REFRESH_SECONDS", 300)?,
            redis_key_prefix: get("REDIS_KEY_PREFIX").unwrap_or_else(|| "user-service:".into()),
            dependency_timeout: millis("DEPENDENCY_TIMEOUT_MS", 2_000)?,
            jwt_private_key_file: get("JWT_PRIVATE_KEY_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| default_data_dir(&get).join("jwt-private-key.pem")),
            jwt_algorithm: parse_or(&get, "JWT_ALGORITHM", Some(KeyAlgorithm::Es256))?,
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "user-service".into()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "user-service".into()),
            access_token_ttl: secs("ACCESS_TOKEN_TTL_SECONDS", 15 * 60)?,
            refresh_token_ttl: secs("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600)?,
            session_max_lifetime: secs("SESSION_MAX_LIFETIME_SECONDS", 90 * 24 * 3600)?,
            refresh_reuse_grace: secs("REFRESH_REUSE_GRACE_SECONDS", 0)?,
            argon2: Argon2Config {
                memory_kib: parse_or(&get, "ARGON2_MEMORY_KIB", Some(defaults.memory_kib))?,
                iterations: parse_or(&get, "ARGON2_ITERATIONS", Some(defaults.iterations))?,
                parallelism: parse_or(&get, "ARGON2_PARALLELISM", Some(defaults.parallelism))?,
            },
            hashing_concurrency: parse_or(&get, "HASHING_CONCURRENCY", Some(cpus))?,
            hashing_queue_timeout: millis("HASHING_QUEUE_TIMEOUT_MS", 10_000)?,
            public_base_url: get("PUBLIC_BASE_URL")
                .unwrap_or_else(|| format!("http://{listen_addr}"))
                .trim_end_matches('/')
                .to_owned(),
            mail_backend: match get("MAIL_BACKEND") {
                Some(_) => parse_or(&get, "MAIL_BACKEND", None)?,
                None if get("SMTP_URL").is_some() => MailBackend::Smtp,
                None => MailBackend::Log,
            },
            smtp_url: get("SMTP_URL").map(SecretString::from),
            smtp_from: get("SMTP_FROM").unwrap_or_else(|| "no-reply@localhost.localdomain".into()),
            password_reset_ttl: secs("PASSWORD_RESET_TTL_SECONDS", 30 * 60)?,
            email_verification_ttl: secs("EMAIL_VERIFICATION_TTL_SECONDS", 24 * 3600)?,
            require_verified_email: parse_or(&get, "REQUIRE_VERIFIED_EMAIL", Some(false))?,
            trust_forwarded_for: parse_or(&get, "TRUST_FORWARDED_FOR", Some(false))?,
            limits: parse_limits(&get)?,
            authorizer_route_rules: get("AUTHORIZER_ROUTE_RULES"),
            admin_requires_mfa: parse_or(&get, "ADMIN_REQUIRES_MFA", Some(false))?,
            mfa: MfaConfig {
                key_file: get("MFA_KEY_FILE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| default_data_dir(&get).join("mfa-keys.json")),
                keys_secret_arn: get("MFA_KEYS_SECRET_ARN"),
                issuer: get("MFA_ISSUER").unwrap_or_else(|| "user-service".into()),
            },
            audit_table: get("AUDIT_TABLE").map(|t| t.trim().to_owned()),
            audit_retention: parse_or(&get, "AUDIT_RETENTION_DAYS", Some(90_u64))
                .map(|days| Duration::from_secs(days.saturating_mul(24 * 3600)))?,
            secretsmanager_endpoint_url: get("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                .or_else(|| get("AWS_ENDPOINT_URL")),
            dynamodb_endpoint_url: get("AWS_ENDPOINT_URL_DYNAMODB")
                .or_else(|| get("AWS_ENDPOINT_URL")),
            bootstrap_admin: match (
                get("BOOTSTRAP_ADMIN_EMAIL"),
                lookup("BOOTSTRAP_ADMIN_PASSWORD").filter(|p| !p.is_empty()),
            ) {
                (Some(email), Some(password)) => Some(BootstrapAdmin {
                    email,
                    password: password.into(),
                }),
                (None, None) => None,
                _ => {
                    return Err(ConfigError {
                        name: "BOOTSTRAP_ADMIN_EMAIL",
                        reason: "set it together with BOOTSTRAP_ADMIN_PASSWORD, or neither".into(),
                    });
                }
            },
        };
        config.check()
    }

    fn check(self) -> Result<Self, ConfigError> {
        check_limits(&self.limits)?;
        let positive = [
            ("DATABASE_POOL_SIZE", self.database_pool_size as u64),
            ("HASHING_CONCURRENCY", self.hashing_concurrency as u64),
            ("ACCESS_TOKEN_TTL_SECONDS", self.access_token_ttl.as_secs()),
            (
                "REFRESH_TOKEN_TTL_SECONDS",
                self.refresh_token_ttl.as_secs(),
            ),
            (
                "DEPENDENCY_TIMEOUT_MS",
                self.dependency_timeout.as_millis() as u64,
            ),
            (
                "PASSWORD_RESET_TTL_SECONDS",
                self.password_reset_ttl.as_secs(),
            ),
            (
                "EMAIL_VERIFICATION_TTL_SECONDS",
                self.email_verification_ttl.as_secs(),
            ),
            ("AUDIT_RETENTION_DAYS", self.audit_retention.as_secs()),
            ("SECRETS_REFRESH_SECONDS", self.secrets_refresh.as_secs()),
            (
                "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                self.http_server.header_read_timeout.as_secs(),
            ),
            (
                "HTTP_IDLE_TIMEOUT_SECONDS",
                self.http_server.idle_timeout.as_secs(),
            ),
            (
                "HTTP_MAX_CONNECTIONS",
                self.http_server.max_connections as u64,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    name,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self.session_max_lifetime < self.refresh_token_ttl {
            return Err(ConfigError {
                name: "SESSION_MAX_LIFETIME_SECONDS",
                reason: "must be at least REFRESH_TOKEN_TTL_SECONDS".into(),
            });
        }
        // An SMTP_URL that would be ignored is a mistake, not a choice.
        match (self.mail_backend, self.smtp_url.is_some()) {
            (MailBackend::Smtp, false) => {
                return Err(ConfigError {
                    name: "SMTP_URL",
                    reason: "is required with MAIL_BACKEND=smtp".into(),
                });
            }
            (MailBackend::Ses | MailBackend::Log, true) => {
                return Err(ConfigError {
                    name: "MAIL_BACKEND",
                    reason: format!(
                        "is {} but SMTP_URL is set; unset one of them",
                        self.mail_backend.as_str()
                    ),
                });
            }
            _ => {}
        }
        Ok(self)
    }
}

/// The `RATE_LIMIT_*` and `LOCKOUT_*` variables.
fn parse_limits(
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<LimitsConfig, ConfigError> {
    let d = LimitsConfig::default();
    let secs = |name, default: Duration| -> Result<Duration, ConfigError> {
        parse_or(get, name, Some(default.as_secs())).map(Duration::from_secs)
    };
    Ok(LimitsConfig {
        login_per_ip_per_minute: parse_or(
            get,
            "RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE",
            Some(d.login_per_ip_per_minute),
        )?,
        register_per_ip_per_minute: parse_or(
            get,
            "RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE",
            Some(d.register_per_ip_per_minute),
        )?,
        forgot_per_ip_per_minute: parse_or(
            get,
            "RATE_LIMIT_FORGOT_PER_IP_PER_MINUTE",
            Some(d.forgot_per_ip_per_minute),
        )?,
        reset_per_ip_per_minute: parse_or(
            get,
            "RATE_LIMIT_RESET_PER_IP_PER_MINUTE",
            Some(d.reset_per_ip_per_minute),
        )?,
        forgot_per_email_per_hour: parse_or(
            get,
            "RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR",
            Some(d.forgot_per_email_per_hour),
        )?,
        verification_per_account_per_hour: parse_or(
            get,
            "RATE_LIMIT_VERIFICATION_PER_ACCOUNT_PER_HOUR",
            Some(d.verification_per_account_per_hour),
        )?,
        lockout_threshold: parse_or(get, "LOCKOUT_THRESHOLD", Some(d.lockout_threshold))?,
        lockout_window: secs("LOCKOUT_WINDOW_SECONDS", d.lockout_window)?,
        lockout_base: secs("LOCKOUT_BASE_SECONDS", d.lockout_base)?,
        lockout_max: secs("LOCKOUT_MAX_SECONDS", d.lockout_max)?,
    })
}

fn check_limits(limits: &LimitsConfig) -> Result<(), ConfigError> {
    for (name, value) in [
        ("LOCKOUT_WINDOW_SECONDS", limits.lockout_window),
        ("LOCKOUT_BASE_SECONDS", limits.lockout_base),
        ("LOCKOUT_MAX_SECONDS", limits.lockout_max),
    ] {
        if value.is_zero() {
            return Err(ConfigError {
                name,
                reason: "must be greater than zero".into(),
            });
        }
    }
    if limits.lockout_max < limits.lockout_base {
        return Err(ConfigError {
            name: "LOCKOUT_MAX_SECONDS",
            reason: "must be at least LOCKOUT_BASE_SECONDS".into(),
        });
    }
    Ok(())
}

/// `$XDG_DATA_HOME/user-service`, else `$HOME/.local/share/user-service`, else `./.data`.
fn default_data_dir(get: &impl Fn(&'static str) -> Option<String>) -> PathBuf {
    if let Some(xdg) = get("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("user-service");
    }
    match get("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/user-service"),
        None => PathBuf::from(".data"),
    }
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: Option<T>,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match (get(name), default) {
        (Some(raw), _) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
        }),
        (None, Some(default)) => Ok(default),
        (None, None) => Err(ConfigError {
            name,
            reason: "is required".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[("HOME", "/home/u")]).expect("defaults are valid");
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.secrets_refresh, Duration::from_secs(300));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.argon2, Argon2Config::default());
        assert_eq!(c.hashing_queue_timeout, Duration::from_secs(10));
        assert_eq!(
            c.http_server,
            HttpServerConfig {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(75),
                max_connections: 4096,
            }
        );
        assert!(!c.trust_forwarded_for);
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.limits.login_per_ip_per_minute, 30);
        assert_eq!(c.limits.register_per_ip_per_minute, 20);
        assert_eq!(c.limits.forgot_per_ip_per_minute, 10);
        assert_eq!(c.limits.reset_per_ip_per_minute, 10);
        assert_eq!(c.limits.lockout_threshold, 5);
        assert_eq!(c.limits.lockout_window, Duration::from_secs(15 * 60));
        assert_eq!(
            c.jwt_private_key_file,
            PathBuf::from("/home/u/.local/share/user-service/jwt-private-key.pem")
        );
    }

    #[test]
    fn on_aws_hosts_become_tls_urls_without_credentials() {
        let c = config(&[
            ("DATABASE_HOST", "db.example.internal"),
            ("DATABASE_NAME", "users"),
            ("DATABASE_SECRET_ARN", "arn:db"),
            ("REDIS_HOST", "cache.example.internal"),
            ("REDIS_PORT", "6380"),
        ])
        .expect("valid");
        assert_eq!(
            c.database_url.expose_secret(),
            "postgres://db.example.internal:5432/users"
        );
        assert_eq!(c.database_tls, TlsMode::VerifyFull);
        assert_eq!(c.database_secret_arn.as_deref(), Some("arn:db"));
        assert_eq!(c.database_runtime_user, "user_service_app");
        assert_eq!(
            c.redis_url.expose_secret(),
            "rediss://cache.example.internal:6380"
        );
        let local = config(&[]).expect("defaults");
        assert_eq!(local.database_tls, TlsMode::Off);
        let err = config(&[("DATABASE_URL", "postgres://x/y"), ("DATABASE_HOST", "h")])
            .expect_err("both");
        assert!(err.to_string().contains("DATABASE_HOST"), "{err}");
        let err = config(&[("DATABASE_TLS", "require")]).expect_err("no unverified TLS");
        assert!(err.to_string().contains("DATABASE_TLS"), "{err}");
    }

    #[test]
    fn public_base_url_follows_listen_addr() {
        let c = config(&[("LISTEN_ADDR", "127.0.0.1:9999")]).expect("valid");
        assert_eq!(c.public_base_url, "http://127.0.0.1:9999");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("ARGON2_MEMORY_KIB", "lots")]).expect_err("not a number");
        assert!(err.to_string().contains("ARGON2_MEMORY_KIB"), "{err}");
        let err = config(&[("JWT_ALGORITHM", "HS256")]).expect_err("HMAC is refused");
        assert!(err.to_string().contains("JWT_ALGORITHM"), "{err}");
        let err = config(&[("HASHING_CONCURRENCY", "0")]).expect_err("zero");
        assert!(err.to_string().contains("HASHING_CONCURRENCY"), "{err}");
    }

    #[test]
    fn limits_are_read_from_their_variables() {
        let c = config(&[
            ("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", "7"),
            ("RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR", "0"),
            ("LOCKOUT_THRESHOLD", "2"),
            ("LOCKOUT_BASE_SECONDS", "1"),
            ("LOCKOUT_MAX_SECONDS", "4"),
        ])
        .expect("valid");
        assert_eq!(c.limits.login_per_ip_per_minute, 7);
        assert_eq!(c.limits.forgot_per_email_per_hour, 0);
        assert_eq!(c.limits.lockout_threshold, 2);
        assert_eq!(c.limits.lockout_base, Duration::from_secs(1));
        assert_eq!(c.limits.lockout_max, Duration::from_secs(4));
        let err = config(&[
            ("LOCKOUT_BASE_SECONDS", "120"),
            ("LOCKOUT_MAX_SECONDS", "60"),
        ])
        .expect_err("max below base");
        assert!(err.to_string().contains("LOCKOUT_MAX_SECONDS"), "{err}");
        let err = config(&[("LOCKOUT_WINDOW_SECONDS", "0")]).expect_err("zero window");
        assert!(err.to_string().contains("LOCKOUT_WINDOW_SECONDS"), "{err}");
        let err = config(&[("LOCKOUT_THRESHOLD", "-1")]).expect_err("negative");
        assert!(err.to_string().contains("LOCKOUT_THRESHOLD"), "{err}");
    }

    #[test]
    fn mail_settings_pick_the_back_end() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.mail_backend, MailBackend::Log);
        assert!(c.smtp_url.is_none());
        assert_eq!(c.smtp_from, "no-reply@localhost.localdomain");
        assert_eq!(c.password_reset_ttl, Duration::from_secs(30 * 60));
        let c = config(&[("SMTP_URL", "smtp://127.0.0.1:2525")]).expect("smtp");
        assert_eq!(c.mail_backend, MailBackend::Smtp);
        let c = config(&[
            ("MAIL_BACKEND", "SES"),
            ("PASSWORD_RESET_TTL_SECONDS", "60"),
        ])
        .expect("ses");
        assert_eq!(c.mail_backend, MailBackend::Ses);
        assert_eq!(c.password_reset_ttl, Duration::from_secs(60));
        for (vars, name) in [
            (&[("MAIL_BACKEND", "smtp")][..], "SMTP_URL"),
            (&[("MAIL_BACKEND", "carrier-pigeon")][..], "MAIL_BACKEND"),
            (
                &[("MAIL_BACKEND", "ses"), ("SMTP_URL", "smtp://h")][..],
                "MAIL_BACKEND",
            ),
            (
                &[("PASSWORD_RESET_TTL_SECONDS", "0")][..],
                "PASSWORD_RESET_TTL_SECONDS",
            ),
        ] {
            let err = config(vars).expect_err("refused");
            assert!(err.to_string().contains(name), "{vars:?}: {err}");
        }
        let c = config(&[("SMTP_URL", "smtp://u:hunter3secret@mail.example.com")]).expect("url");
        assert!(!format!("{c:?}").contains("hunter3secret"));
    }

    #[test]
    fn secrets_do_not_print() {
        let c = config(&[("DATABASE_URL", "postgres://u:hunter2secret@db/x")]).expect("valid");
        assert!(!format!("{c:?}").contains("hunter2secret"));
    }
}
