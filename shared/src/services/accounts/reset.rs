//! The password-reset flow: email a one-time link ([`Accounts::forgot_password`]), then set
//! a new password with its token ([`Accounts::reset_password`]).
//!
//! # Forgot
//! Every well-formed email gets the same answer after the same work: the per-IP limit and
//! the per-email limit (both in Redis, keyed by the email's hash whether an account has it
//! or not). Everything that depends on the account (the lookup, minting the token and
//! storing its hash, building and sending the email) happens in a background task after
//! the answer, so neither the answer nor its timing tells a client whether an account
//! exists. Audit events and logs record why no email went out (unknown email, disabled
//! account, per-email limit, a database or mail failure); clients never see them. The price:
//! a Postgres outage is not reported to the client (the failure is logged), since failing
//! only the requests that reach the lookup would be the very difference this design avoids.
//!
//! The email carries `PUBLIC_BASE_URL/reset-password?token=<token>`: 256 random bits as 43
//! base64url characters, of which only the SHA-256 is stored, valid for
//! `PASSWORD_RESET_TTL_SECONDS` (30 minutes) and once. A newer request deletes the older
//! tokens of the account. Past `RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR` requests for one
//! email, no email is sent. If Redis cannot be reached, the request fails closed (see
//! [`crate::limits`]): emails, once sent, cannot be taken back.
//!
//! On AWS Lambda the background task runs while the execution environment is thawed: the
//! function waits for it before it answers (see `crate::lambda`).
//!
//! # Reset
//! In this order:
//! 1. the per-IP limit (`RATE_LIMIT_RESET_PER_IP_PER_MINUTE`; fails open when Redis is
//!    down, see [`crate::limits`]);
//! 2. the token is looked up, *not* spent: unknown, used or expired is `InvalidToken`;
//! 3. the new password is checked against the policy, which needs the account's email and
//!    name: a weak password is refused and the token stays usable;
//! 4. the new hash is computed;
//! 5. every session ends and every access token issued so far is cut off. This comes
//!    before the commit so that a failure here changes nothing the user relies on: the
//!    token is not spent and the old password still works;
//! 6. one transaction spends the token (a conditional `UPDATE`: of concurrent requests
//!    with one token exactly one gets here, the others get `InvalidToken`) and stores
//!    the new hash;
//! 7. sessions started between 5 and 6 (a login with the old password in that instant)
//!    are ended too.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{AccountError, Accounts};
use crate::audit::{AuditEvent, AuditKind, AuditReason};
use crate::auth::opaque::{self, OpaqueToken};
use crate::db::sessions::RevokeReason;
use crate::domain::{Email, NewPassword, UserName};
use crate::limits::IpAction;
use crate::mail::OutgoingEmail;
use crate::telemetry::ErrorChain;

/// Where the link in the email points, under `PUBLIC_BASE_URL`.
pub const RESET_PAGE: &str = "/reset-password";

/// Length of a token as issued: 32 bytes in base64url without padding.
const TOKEN_CHARS: usize = 43;

/// How long the background work waits before it starts (see [`Accounts::send_reset_link`]).
const START_DELAY: Duration = Duration::from_millis(5);

impl Accounts {
    /// Counts the request against the limits and, in the background, emails a reset link
    /// when an enabled account has `email` (see the module docs). Returns before the
    /// account is even looked up.
    pub async fn forgot_password(
        &self,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        self.parts.limits.enforce_ip(IpAction::Forgot, ip).await?;
        let email = Email::parse(email)?;
        let requested_at = Utc::now();
        // Counted for every email, whether an account has it or not.
        let allowed = self.parts.limits.forgot_allowed(&email).await?;
        let accounts = self.clone();
        self.parts.background.spawn(
            async move {
                accounts
                    .send_reset_link(email, allowed, requested_at, ip)
                    .await
            }
            .instrument(tracing::info_span!("password_forgot")),
        );
        Ok(())
    }

    /// Looks the account up and, for an existing, enabled one within the per-email limit
    /// (`allowed`), stores a new token's hash (unless a newer request got there first) and
    /// emails the link, with retries. Every outcome is audited or logged; the client was
    /// answered already and learns none of it.
    async fn send_reset_link(
        &self,
        email: Email,
        allowed: bool,
        requested_at: DateTime<Utc>,
        ip: Option<IpAddr>,
    ) {
        // Start once the answer is on its way, so that the work only a real account gets
        // does not compete with writing it (measured: without this pause, answers for
        // existing accounts came out a few percent slower on a 2-CPU machine).
        tokio::time::sleep(START_DELAY).await;
        let record = match self.parts.db.user_by_email(&email).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "could not look the account up; no email sent");
                return;
            }
        };
        let user = match record {
            Some(record) if !record.user.disabled && allowed => record.user,
            refused => {
                let event = match refused {
                    None => {
                        AuditEvent::failure(AuditKind::PasswordForgot, AuditReason::UnknownEmail)
                    }
                    Some(record) if record.user.disabled => {
                        AuditEvent::failure(AuditKind::PasswordForgot, AuditReason::Disabled)
                            .user(record.user.id)
                    }
                    Some(record) => AuditEvent::failure(
                        AuditKind::PasswordForgot,
                        AuditReason::EmailRateLimited,
                    )
                    .user(record.user.id),
                };
                event.ip(ip).record(&self.parts.audit);
                return;
            }
        };
        let Ok(token) = OpaqueToken::generate() else {
            tracing::error!(user_id = %user.id, "CSPRNG failed; no email sent");
            return;
        };
        let ttl = self.parts.settings.password_reset_ttl;
        match self
            .parts
            .db
            .store_reset_token(user.id, token.hash(), requested_at, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    user_id = %user.id,
                    "a newer request superseded this one, or the account is gone; no email"
                );
                return;
            }
            Err(e) => {
                tracing::error!(
                    user_id = %user.id,
                    error = %ErrorChain(&e),
                    "could not store the reset token; no email sent"
                );
                return;
            }
        }
        AuditEvent::success(AuditKind::PasswordForgot)
            .user(user.id)
            .ip(ip)
            .record(&self.parts.audit);
        let email = reset_email(
            &self.parts.settings.public_base_url,
            &user.email,
            &token,
            ttl,
        );
        self.parts
            .mailer
            .deliver(email)
            .instrument(tracing::info_span!("password_reset_email", user_id = %user.id))
            .await;
    }

    /// Sets a new password with the token of a reset email: spends the token (once, also
    /// under concurrency) and ends every session of the user. A weak password does not
    /// spend the token.
    pub async fn reset_password(
        &self,
        token: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        self.parts.limits.enforce_ip(IpAction::Reset, ip).await?;
        let refuse = |user_id: Option<Uuid>, reason: AuditReason| {
            let mut event = AuditEvent::failure(AuditKind::PasswordReset, reason).ip(ip);
            if let Some(user_id) = user_id {
                event = event.user(user_id);
            }
            event.record(&self.parts.audit);
        };
        if !looks_like_a_token(token) {
            refuse(None, AuditReason::InvalidToken);
            return Err(AccountError::InvalidToken);
        }
        let token_hash = opaque::hash(token);
        let Some(record) = self.parts.db.reset_token_user(&token_hash).await? else {
            refuse(None, AuditReason::InvalidToken);
            return Err(AccountError::InvalidToken);
        };
        let user_id = record.user.id;
        let hints: Vec<&str> = record.user.name.iter().map(UserName::as_str).collect();
        let password = NewPassword::parse(password, &record.user.email, &hints)
            .inspect_err(|_| refuse(Some(user_id), AuditReason::WeakPassword))?;
        let new_hash = self.parts.hasher.hash(&password).await?;

        self.parts
            .revocations
            .end_sessions(user_id, None, RevokeReason::PasswordReset)
            .await?;
        self.parts
            .revocations
            .cut_off_access_tokens(user_id)
            .await?;
        if self
            .parts
            .db
            .spend_reset_token(&token_hash, &new_hash)
            .await?
            .is_none()
        {
            // Spent by a concurrent request (or expired) since the lookup.
            refuse(Some(user_id), AuditReason::InvalidToken);
            return Err(AccountError::InvalidToken);
        }
        self.parts.profiles.changed(user_id).await;
        match self
            .parts
            .revocations
            .end_sessions(user_id, None, RevokeReason::PasswordReset)
            .await
        {
            Ok(0) => {}
            Ok(late) => {
                tracing::info!(%user_id, sessions = late, "ended sessions started during the reset")
            }
            Err(e) => {
                tracing::warn!(%user_id, error = %ErrorChain(&e), "could not sweep sessions started during the reset")
            }
        }
        tracing::info!(%user_id, "password reset");
        AuditEvent::success(AuditKind::PasswordReset)
            .user(user_id)
            .ip(ip)
            .record(&self.parts.audit);
        Ok(())
    }
}

/// Whether `token` has the shape of an issued token (43 base64url characters): anything
/// else is refused without a database round trip.
fn looks_like_a_token(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The email with the reset link.
fn reset_email(base_url: &str, to: &Email, token: &OpaqueToken, ttl: Duration) -> OutgoingEmail {
    let link = reset_link(base_url, token.expose());
    let lifetime = human_duration(ttl);
    let text = format!(
        "Hello,\n\
         \n\
         Someone (hopefully you) asked to reset the password of the account {to}.\n\
         To choose a new password, open this link within {lifetime}:\n\
         \n\
         {link}\n\
         \n\
         The link works once. If you did not ask for a new password, ignore this email:\n\
         your password stays as it is.\n"
    );
    OutgoingEmail::new("password_reset", to, "Reset your password", text)
}

/// `PUBLIC_BASE_URL/reset-password?token=<token>` (the token is base64url: no escaping).
fn reset_link(base_url: &str, token: &str) -> String {
    format!(
        "{}{RESET_PAGE}?token={token}",
        base_url.trim_end_matches('/')
    )
}

/// "30 minutes", "1 hour", "90 seconds": the token's lifetime as the email states it.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_shaped_strings_are_looked_up() {
        let token = OpaqueToken::generate().expect("rng");
        assert!(looks_like_a_token(token.expose()));
        for garbage in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &token.expose()[..42]),
            &format!("{}+", &token.expose()[..42]),
            &format!("{}é", &token.expose()[..41]),
        ] {
            assert!(!looks_like_a_token(garbage), "{garbage:?}");
        }
    }

    #[test]
    fn the_link_is_under_the_public_base_url() {
        assert_eq!(
            reset_link("https://app.example.com/", "abc_-"),
            "https://app.example.com/reset-password?token=abc_-"
        );
        assert_eq!(
            reset_link("http://127.0.0.1:8080", "t"),
            "http://127.0.0.1:8080/reset-password?token=t"
        );
    }

    #[test]
    fn the_email_holds_the_link_and_the_lifetime() {
        let token = OpaqueToken::generate().expect("rng");
        let to = Email::parse("ada@example.com").expect("valid");
        let email = reset_email(
            "https://app.example.com",
            &to,
            &token,
            Duration::from_secs(1800),
        );
        assert_eq!(email.to(), &to);
        let expected = format!(
            "\nhttps://app.example.com/reset-password?token={}\n",
            token.expose()
        );
        assert!(email.text().contains(&expected), "{}", email.text());
        assert!(
            email.text().contains("within 30 minutes"),
            "{}",
            email.text()
        );
        assert!(!format!("{email:?}").contains(token.expose()));
    }

    #[test]
    fn durations_read_naturally() {
        let h = |secs| human_duration(Duration::from_secs(secs));
        assert_eq!(h(1800), "30 minutes");
        assert_eq!(h(3600), "1 hour");
        assert_eq!(h(7200), "2 hours");
        assert_eq!(h(60), "1 minute");
        assert_eq!(h(90), "90 seconds");
        assert_eq!(h(1), "1 second");
    }
}
