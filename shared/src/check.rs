//! `user-service check`: an operator's first look at a configuration. It reads the
//! configuration, asks every dependency whether it is there and usable (Postgres and its
//! migrations, Redis, the JWT signing keys, the two-factor keys, the mail back end, the
//! Secrets Manager secrets) and reports one line per check, through the same code the
//! service starts with.
//!
//! It changes nothing: no database, key file or table is created (what the service would
//! create at first start is reported as such), no migration is applied, no mail is sent. It
//! never prints a secret: URLs are shown without their password, and every line is masked
//! against the passwords the environment holds, whatever an error message quoted.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use crate::auth::key_secret::{SecretsManagerKeys, SecretsManagerPublicKeys, algorithm_name};
use crate::auth::keys::KeySet;
use crate::auth::mfa_keys::MfaKeys;
use crate::config::{Config, MailBackend};
use crate::db::{self, AbortOnDrop, Connector, MigrationStatus};
use crate::mail::Mailer;
use crate::redis_store::Cache;
use crate::secrets::{CachedSecret, SecretsManager};

/// Exit code: every check passed (warnings allowed).
pub const EXIT_OK: u8 = 0;
/// Exit code: a check failed (a dependency unreachable, keys unusable, ...).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the configuration itself is invalid (a variable that cannot be used).
pub const EXIT_INVALID: u8 = 2;

/// How a check came out, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// It works.
    Ok,
    /// It works, but read the line: something is created at first start, or is unfit for
    /// a deployment.
    Warn,
    /// It does not work: the service would fail to start, or fail requests.
    Fail,
    /// The configuration cannot be used as it is (a variable that does not parse).
    Invalid,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "WARN",
            Self::Fail | Self::Invalid => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug)]
pub struct Finding {
    status: Status,
    check: &'static str,
    detail: String,
}

impl Finding {
    fn new(status: Status, check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            check,
            detail: detail.into(),
        }
    }
}

/// The report: the findings in a fixed order, and the secrets masked when it is printed.
pub struct Report {
    findings: Vec<Finding>,
    masked: Vec<String>,
}

impl Report {
    /// [`EXIT_OK`], [`EXIT_FAILED`] or [`EXIT_INVALID`], after the worst finding.
    pub fn exit_code(&self) -> u8 {
        match self.findings.iter().map(|f| f.status).max() {
            Some(Status::Invalid) => EXIT_INVALID,
            Some(Status::Fail) => EXIT_FAILED,
            _ => EXIT_OK,
        }
    }

    fn mask(&self, text: &str) -> String {
        self.masked
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(
                f,
                "{:<4} {:<9} {}",
                finding.status.label(),
                finding.check,
                self.mask(&finding.detail)
            )?;
        }
        let count = |wanted: &[Status]| {
            self.findings
                .iter()
                .filter(|f| wanted.contains(&f.status))
                .count()
        };
        let warnings = count(&[Status::Warn]);
        writeln!(
            f,
            "{} ok, {warnings} warning{}, {} failed: exit {}",
            count(&[Status::Ok]),
            if warnings == 1 { "" } else { "s" },
            count(&[Status::Fail, Status::Invalid]),
            self.exit_code()
        )
    }
}

/// Runs every check on the configuration `lookup` gives (the environment, in `main`).
pub async fn run(lookup: impl Fn(&str) -> Option<String>) -> Report {
    let masked = secrets_in(&lookup);
    let findings = match Config::from_lookup(&lookup) {
        // The message names the variable and what is wrong, never a secret's value.
        Err(e) => vec![Finding::new(Status::Invalid, "config", e.to_string())],
        Ok(config) => check_all(&config).await,
    };
    Report { findings, masked }
}

/// The checks of a readable configuration, at once; each has its own deadline.
async fn check_all(config: &Config) -> Vec<Finding> {
    let secrets = SecretsManager::from_config(config);
    let deadline = config.dependency_timeout + Duration::from_secs(3);
    let (postgres, login, redis, jwt, mfa, mail, stored) = tokio::join!(
        within(deadline, "postgres", postgres(config, &secrets)),
        within(deadline, "db login", runtime_login(config, &secrets)),
        within(deadline, "redis", redis(config, &secrets)),
        within(deadline, "jwt keys", jwt_keys(config, &secrets)),
        within(deadline, "mfa keys", mfa_keys(config, &secrets)),
        within(deadline, "mail", mail(config)),
        stored_secrets(config, &secrets, deadline),
    );
    let mut findings = vec![summary(config), postgres, login, redis, jwt, mfa, mail];
    findings.extend(stored);
    findings
}

/// `check` under `deadline`: a dependency that does not answer is a failure, not a hang.
async fn within(
    deadline: Duration,
    check: &'static str,
    step: impl Future<Output = Finding>,
) -> Finding {
    tokio::time::timeout(deadline, step)
        .await
        .unwrap_or_else(|_| {
            Finding::new(
                Status::Fail,
                check,
                format!("no answer within {:.1} s", deadline.as_secs_f64()),
            )
        })
}

/// The error and its causes, `outer: inner`, as [`ErrorChain`](crate::telemetry::ErrorChain)
/// writes them, but without a cause the text already holds (many errors repeat their
/// source in their own message).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The settings an operator looks for first.
fn summary(config: &Config) -> Finding {
    Finding::new(
        Status::Ok,
        "config",
        format!(
            "LISTEN_ADDR={}, PUBLIC_BASE_URL={}, JWT_ISSUER={}, JWT_AUDIENCE={}, \
             ACCESS_TOKEN_TTL_SECONDS={}, DEPENDENCY_TIMEOUT_MS={}",
            config.listen_addr,
            config.public_base_url,
            config.jwt_issuer,
            config.jwt_audience,
            config.access_token_ttl.as_secs(),
            config.dependency_timeout.as_millis(),
        ),
    )
}

/// Postgres as the migrations reach it (the owner's login): reachable, its version, the
/// database there (or created at first start), the migrations applied and pending.
async fn postgres(config: &Config, secrets: &SecretsManager) -> Finding {
    const CHECK: &str = "postgres";
    let connector = match Connector::owner(config, secrets) {
        Ok(connector) => connector,
        Err(e) => return Finding::new(Status::Invalid, CHECK, chain(e.as_ref())),
    };
    let target = connector.describe();
    match connector.connect(None).await {
        Ok((mut client, driver)) => {
            let _driver = AbortOnDrop(driver);
            let version = server_version(&client).await;
            match db::migration_status(&mut client).await {
                Ok(status) => migrations(&target, &version, &status),
                Err(e) => Finding::new(
                    Status::Fail,
                    CHECK,
                    format!("{target} ({version}): {}", chain(e.as_ref())),
                ),
            }
        }
        Err(e) if db::is_missing_database(&e) => {
            // What `serve` does then: create it from the maintenance database.
            match connector.connect(Some("postgres")).await {
                Ok((client, driver)) => {
                    let _driver = AbortOnDrop(driver);
                    let version = server_version(&client).await;
                    Finding::new(
                        Status::Warn,
                        CHECK,
                        format!(
                            "{target} ({version}): the database does not exist yet; \
                             `serve` or `migrate` creates it and applies every migration"
                        ),
                    )
                }
                Err(e) => Finding::new(
                    Status::Fail,
                    CHECK,
                    format!(
                        "{target}: the database does not exist, and the `postgres` database \
                         to create it from cannot be reached: {}",
                        chain(&e)
                    ),
                ),
            }
        }
        Err(e) => Finding::new(Status::Fail, CHECK, format!("{target}: {}", chain(&e))),
    }
}

/// `PostgreSQL 15.19`, or what went wrong asking.
async fn server_version(client: &tokio_postgres::Client) -> String {
    match client.query_one("SHOW server_version", &[]).await {
        Ok(row) => {
            let full: String = row.get(0);
            let number = full.split_whitespace().next().unwrap_or_default();
            format!("PostgreSQL {number}")
        }
        Err(_) => "PostgreSQL, version unknown".to_owned(),
    }
}

fn migrations(target: &str, version: &str, status: &MigrationStatus) -> Finding {
    let mut detail = format!(
        "{target} ({version}), migrations: {} applied, {} pending",
        status.applied,
        status.pending.len()
    );
    let mut worst = Status::Ok;
    if !status.pending.is_empty() {
        worst = Status::Warn;
        detail.push_str(&format!(
            " ({}; `serve` and `migrate` apply them)",
            status.pending.join(", ")
        ));
    }
    if !status.unknown.is_empty() {
        worst = Status::Warn;
        detail.push_str(&format!(
            "; applied but unknown to this build: {} (a newer version migrated this database)",
            status.unknown.join(", ")
        ));
    }
    if !status.changed.is_empty() {
        worst = Status::Fail;
        detail.push_str(&format!(
            "; changed since they were applied: {} (`serve` refuses to start)",
            status.changed.join(", ")
        ));
    }
    Finding::new(worst, "postgres", detail)
}

/// Redis: reachable (`PING`, with the AUTH token when one is configured) and its version.
async fn redis(config: &Config, secrets: &SecretsManager) -> Finding {
    const CHECK: &str = "redis";
    let cache = match Cache::from_config(config, secrets) {
        Ok(cache) => cache,
        Err(e) => return Finding::new(Status::Invalid, CHECK, chain(e.as_ref())),
    };
    let target = cache.describe();
    if let Err(e) = cache.ping().await {
        return Finding::new(Status::Fail, CHECK, format!("{target}: {}", chain(&e)));
    }
    let version = async {
        let mut connection = cache.connection().await?;
        cache
            .timed(
                redis::cmd("INFO")
                    .arg("server")
                    .query_async::<String>(&mut connection),
            )
            .await
    }
    .await
    .ok()
    .and_then(|info| {
        info.lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .map(|v| format!("Redis {}", v.trim()))
    })
    .unwrap_or_else(|| "Redis, version unknown".to_owned());
    Finding::new(
        Status::Ok,
        CHECK,
        format!(
            "{target} ({version}), key prefix {:?}",
            config.redis_key_prefix
        ),
    )
}

/// The service's own login (the runtime role): it connects. Before the first migration
/// the role (or the database) is not there yet: a warning, since the migrations create it.
async fn runtime_login(config: &Config, secrets: &SecretsManager) -> Finding {
    const CHECK: &str = "db login";
    let connector = match Connector::runtime(config, secrets) {
        Ok(connector) => connector,
        // Parsed, but a login the service cannot make (`serve` would stop here).
        Err(e) => return Finding::new(Status::Fail, CHECK, chain(e.as_ref())),
    };
    let target = connector.describe();
    match connector.connect(None).await {
        Ok((_client, driver)) => {
            let _driver = AbortOnDrop(driver);
            Finding::new(
                Status::Ok,
                CHECK,
                format!("the service connects as {target}"),
            )
        }
        Err(e) if db::is_missing_database(&e) || db::is_unknown_role(&e) => Finding::new(
            Status::Warn,
            CHECK,
            format!("{target}: not there yet; the migrations create the database and the role"),
        ),
        Err(e) => Finding::new(Status::Fail, CHECK, format!("{target}: {}", chain(&e))),
    }
}

/// The JWT signing keys, as the service loads them, from a secret or the key file. A
/// missing key file is reported, not created.
async fn jwt_keys(config: &Config, secrets: &SecretsManager) -> Finding {
    const CHECK: &str = "jwt keys";
    let from_secret = match (
        &config.jwt_keys_secret_arn,
        &config.jwt_public_keys_secret_arn,
    ) {
        (Some(arn), _) => Some((
            format!("from JWT_KEYS_SECRET_ARN {arn}"),
            KeySet::load(&SecretsManagerKeys::new(secrets.clone(), arn)).await,
        )),
        (None, Some(arn)) => Some((
            format!("public keys only, from JWT_PUBLIC_KEYS_SECRET_ARN {arn}"),
            KeySet::load(&SecretsManagerPublicKeys::new(secrets.clone(), arn)).await,
        )),
        (None, None) => None,
    };
    if let Some((source, loaded)) = from_secret {
        return match loaded {
            Ok(set) => Finding::new(Status::Ok, CHECK, describe_keys(&set, &source)),
            Err(e) => Finding::new(
                Status::Fail,
                CHECK,
                format!("{source}: {}", chain(e.as_ref())),
            ),
        };
    }
    let path = &config.jwt_private_key_file;
    let source = format!("from JWT_PRIVATE_KEY_FILE {}", path.display());
    let (text, permissions) = match read_key_file(path).await {
        KeyFile::Missing => {
            return Finding::new(
                Status::Warn,
                CHECK,
                format!(
                    "JWT_PRIVATE_KEY_FILE {} does not exist: a new {} key is created there \
                     at first start",
                    path.display(),
                    algorithm_name(config.jwt_algorithm)
                ),
            );
        }
        KeyFile::Unreadable(reason) => {
            return Finding::new(Status::Fail, CHECK, format!("{source}: {reason}"));
        }
        KeyFile::Read { text, permissions } => (text, permissions),
    };
    match KeySet::from_pem(&text) {
        Ok(set) => {
            let mut detail = describe_keys(&set, &source);
            let status = match permissions {
                Some(warning) => {
                    detail.push_str(&format!("; {warning}"));
                    Status::Warn
                }
                None => Status::Ok,
            };
            Finding::new(status, CHECK, detail)
        }
        Err(e) => Finding::new(
            Status::Fail,
            CHECK,
            format!("{source}: {}", chain(e.as_ref())),
        ),
    }
}

fn describe_keys(set: &KeySet, source: &str) -> String {
    let count = set.jwks().keys.len();
    let signing = set.signing_key();
    format!(
        "{count} key{}, signing kid {}, {} ({source})",
        if count == 1 { "" } else { "s" },
        signing.kid(),
        algorithm_name(signing.algorithm())
    )
}

/// A key file as read, without ever creating it.
enum KeyFile {
    Missing,
    Unreadable(String),
    Read {
        text: SecretString,
        /// A warning when group or others may read it.
        permissions: Option<String>,
    },
}

async fn read_key_file(path: &Path) -> KeyFile {
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return KeyFile::Missing,
        Err(e) => return KeyFile::Unreadable(e.to_string()),
    };
    match tokio::fs::read_to_string(path).await {
        Ok(text) => KeyFile::Read {
            text: text.into(),
            permissions: loose_permissions(&metadata),
        },
        Err(e) => KeyFile::Unreadable(e.to_string()),
    }
}

#[cfg(unix)]
fn loose_permissions(metadata: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| format!("readable by group or others (mode {mode:o}): chmod 600"))
}

#[cfg(not(unix))]
fn loose_permissions(_: &std::fs::Metadata) -> Option<String> {
    None
}

/// The keys that encrypt TOTP secrets, from the secret or the key file. A missing key file
/// is reported, not created.
async fn mfa_keys(config: &Config, secrets: &SecretsManager) -> Finding {
    const CHECK: &str = "mfa keys";
    let mut permissions = None;
    let (keys, source) = match &config.mfa.keys_secret_arn {
        Some(arn) => (
            MfaKeys::secret(CachedSecret::new(
                secrets.clone(),
                arn,
                config.secrets_refresh,
            )),
            format!("from MFA_KEYS_SECRET_ARN {arn}"),
        ),
        None => {
            let path = &config.mfa.key_file;
            match tokio::fs::metadata(path).await {
                Ok(metadata) => permissions = loose_permissions(&metadata),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Finding::new(
                        Status::Warn,
                        CHECK,
                        format!(
                            "MFA_KEY_FILE {} does not exist: it is created, with one new key, \
                             at the first two-factor use",
                            path.display()
                        ),
                    );
                }
                Err(e) => {
                    return Finding::new(
                        Status::Fail,
                        CHECK,
                        format!("MFA_KEY_FILE {}: {e}", path.display()),
                    );
                }
            }
            (
                MfaKeys::file(path),
                format!("from MFA_KEY_FILE {}", path.display()),
            )
        }
    };
    let ids = match keys.key_ids().await {
        Ok(ids) => ids,
        Err(e) => return Finding::new(Status::Fail, CHECK, format!("{source}: {}", chain(&e))),
    };
    let current = keys.current_id().await.unwrap_or_default();
    let mut detail = format!(
        "{} key{} ({}), current {current} ({source})",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", ")
    );
    match permissions {
        Some(warning) => {
            detail.push_str(&format!("; {warning}"));
            Finding::new(Status::Warn, CHECK, detail)
        }
        None => Finding::new(Status::Ok, CHECK, detail),
    }
}

/// The mail back end: what is configured and, for SMTP, whether the server answers. No
/// message is sent.
async fn mail(config: &Config) -> Finding {
    const CHECK: &str = "mail";
    let mailer = match Mailer::from_config(config) {
        Ok(mailer) => mailer,
        Err(e) => return Finding::new(Status::Invalid, CHECK, e.to_string()),
    };
    let from = &config.smtp_from;
    match config.mail_backend {
        MailBackend::Log => Finding::new(
            Status::Warn,
            CHECK,
            "log: emails, reset links included, are written to the log and not sent (local \
             development only; set SMTP_URL, or MAIL_BACKEND=ses on AWS)",
        ),
        MailBackend::Ses => Finding::new(
            Status::Ok,
            CHECK,
            format!(
                "ses: the Amazon SES API, from {from}, region and credentials from the AWS \
                 environment (not contacted: SES is only called to send)"
            ),
        ),
        MailBackend::Smtp => {
            let url = config
                .smtp_url
                .as_ref()
                .map(|url| without_password(url.expose_secret()))
                .unwrap_or_default();
            match mailer.test_smtp_connection().await {
                Some(Ok(true)) | None => Finding::new(
                    Status::Ok,
                    CHECK,
                    format!("smtp {url}, from {from}: the server answers (nothing sent)"),
                ),
                Some(Ok(false)) => Finding::new(
                    Status::Fail,
                    CHECK,
                    format!("smtp {url}: the server does not answer NOOP"),
                ),
                Some(Err(e)) => {
                    Finding::new(Status::Fail, CHECK, format!("smtp {url}: {}", chain(&e)))
                }
            }
        }
    }
}

/// Each configured Secrets Manager secret: readable by these credentials (the value is
/// read, never shown).
async fn stored_secrets(
    config: &Config,
    secrets: &SecretsManager,
    deadline: Duration,
) -> Vec<Finding> {
    const CHECK: &str = "secrets";
    let configured: Vec<(&str, &String)> = [
        ("DATABASE_SECRET_ARN", &config.database_secret_arn),
        (
            "DATABASE_RUNTIME_SECRET_ARN",
            &config.database_runtime_secret_arn,
        ),
        ("REDIS_AUTH_SECRET_ARN", &config.redis_auth_secret_arn),
        ("JWT_KEYS_SECRET_ARN", &config.jwt_keys_secret_arn),
        (
            "JWT_PUBLIC_KEYS_SECRET_ARN",
            &config.jwt_public_keys_secret_arn,
        ),
        ("MFA_KEYS_SECRET_ARN", &config.mfa.keys_secret_arn),
    ]
    .into_iter()
    .filter_map(|(name, arn)| arn.as_ref().map(|arn| (name, arn)))
    .collect();
    if configured.is_empty() {
        return vec![Finding::new(
            Status::Ok,
            CHECK,
            "none configured (no *_SECRET_ARN set)",
        )];
    }
    futures::future::join_all(configured.into_iter().map(|(name, arn)| {
        within(deadline, CHECK, async move {
            match secrets.current_value(arn).await {
                Ok(_) => Finding::new(Status::Ok, CHECK, format!("{name} {arn}: readable")),
                Err(e) => Finding::new(
                    Status::Fail,
                    CHECK,
                    format!("{name}: {}", chain(e.as_ref())),
                ),
            }
        })
    }))
    .await
}

/// Every secret value the environment holds, to mask in the report: the passwords of the
/// URLs (as written and percent-decoded) and the password variables. Longest first, so a
/// secret containing another is masked whole.
fn secrets_in(lookup: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut found = Vec::new();
    for name in ["DATABASE_URL", "REDIS_URL", "SMTP_URL"] {
        if let Some(password) = lookup(name).as_deref().and_then(url_password) {
            found.push(password.to_owned());
            if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                found.push(decoded.into_owned());
            }
        }
    }
    for name in ["BOOTSTRAP_ADMIN_PASSWORD", "ADMIN_PASSWORD"] {
        found.extend(lookup(name));
    }
    found.retain(|secret| !secret.is_empty());
    found.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    found.dedup();
    found
}

/// The password of `scheme://user:password@host/...`, or of Postgres' `password=...` form.
/// Generous on malformed input (a password with an unescaped `@` or `/`): better to mask
/// too much than too little.
fn url_password(url: &str) -> Option<&str> {
    password_span(url).map(|span| &url[span])
}

/// Where [`url_password`]'s password is in `url`.
fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let Some(scheme_end) = url.find("://") else {
        let at = url.find("password=")? + "password=".len();
        let len = url[at..]
            .find(char::is_whitespace)
            .unwrap_or(url.len() - at);
        let quoted = url[at..at + len].starts_with('\'') && len >= 2;
        return Some(if quoted {
            at + 1..at + len - 1
        } else {
            at..at + len
        });
    };
    let userinfo_start = scheme_end + "://".len();
    let userinfo_end = userinfo_start + url[userinfo_start..].rfind('@')?;
    let colon = userinfo_start + url[userinfo_start..userinfo_end].find(':')?;
    Some(colon + 1..userinfo_end)
}

/// `url` with its password replaced by `***`.
fn without_password(url: &str) -> String {
    match password_span(url) {
        Some(span) if !span.is_empty() => {
            format!("{}***{}", &url[..span.start], &url[span.end..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_in_every_url_form() {
        assert_eq!(
            url_password("postgres://u:hunter2@db:5432/x"),
            Some("hunter2")
        );
        assert_eq!(
            url_password("redis://:tok%40en@cache:6379"),
            Some("tok%40en")
        );
        assert_eq!(
            url_password("smtp://u:p/a@ss@mail.example.com"),
            Some("p/a@ss")
        );
        assert_eq!(
            url_password("host=db password='s3cret' user=u"),
            Some("s3cret")
        );
        assert_eq!(url_password("postgres://u@db/x"), None);
        assert_eq!(url_password("redis://127.0.0.1:6379"), None);
        assert_eq!(
            without_password("smtp://u:hunter2@mail:587"),
            "smtp://u:***@mail:587"
        );
        // The password's own place, not the first text equal to it.
        assert_eq!(
            without_password("smtp://mail:mail@mail:25"),
            "smtp://mail:***@mail:25"
        );
    }

    #[test]
    fn the_report_masks_every_secret_of_the_environment() {
        let env = |name: &str| match name {
            "DATABASE_URL" => Some("postgres://u:pa%3Ass@db/x".to_owned()),
            "BOOTSTRAP_ADMIN_PASSWORD" => Some("bootstrap-secret".to_owned()),
            _ => None,
        };
        let report = Report {
            findings: vec![Finding::new(
                Status::Fail,
                "postgres",
                "refused pa%3Ass and pa:ss and bootstrap-secret",
            )],
            masked: secrets_in(&env),
        };
        let text = report.to_string();
        assert!(
            !text.contains("pa%3Ass") && !text.contains("pa:ss"),
            "{text}"
        );
        assert!(!text.contains("bootstrap-secret"), "{text}");
        assert!(
            text.starts_with("FAIL postgres  refused *** and *** and ***"),
            "{text}"
        );
        assert_eq!(report.exit_code(), EXIT_FAILED);
    }

    #[test]
    fn the_worst_finding_sets_the_exit_code() {
        let report = |statuses: &[Status]| Report {
            findings: statuses.iter().map(|s| Finding::new(*s, "x", "")).collect(),
            masked: Vec::new(),
        };
        assert_eq!(report(&[Status::Ok, Status::Warn]).exit_code(), EXIT_OK);
        assert_eq!(
            report(&[Status::Warn, Status::Fail]).exit_code(),
            EXIT_FAILED
        );
        assert_eq!(
            report(&[Status::Fail, Status::Invalid]).exit_code(),
            EXIT_INVALID
        );
    }
}
