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
//!    are ended too;
//! 8. the account's lockout is cleared (the link proved the owner), and a notice goes to
//!    the address.
//!
//! The same transaction as 6 marks the email verified (the link proved it) and drops the
//! account's other reset links and a pending email change.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{AccountError, Accounts, link};
use crate::audit::{AuditEvent, AuditKind, AuditReason};
use crate::auth::opaque::{self, OpaqueToken};
use crate::db::sessions::RevokeReason;
use crate::domain::{Email, NewPassword, UserName};
use crate::limits::IpAction;
use crate::mail::templates::{self, Template};
use crate::telemetry::ErrorChain;

/// Where the link in the email points, under `PUBLIC_BASE_URL`.
pub const RESET_PAGE: &str = "/reset-password";

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
        let link = link(
            &self.parts.settings.public_base_url,
            RESET_PAGE,
            token.expose(),
        );
        self.parts
            .outbox
            .deliver(
                Template::PasswordReset,
                &user.email,
                &[("link", &link), ("lifetime", &templates::lifetime(ttl))],
            )
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
        if !opaque::is_well_formed(token) {
            refuse(None, AuditReason::InvalidToken);
            return Err(AccountError::InvalidToken);
        }
        let token_hash = opaque::hash(token);
        let Some(record) = self.parts.db.reset_token_user(&token_hash).await? else {
            refuse(None, AuditReason::InvalidToken);
            return Err(AccountError::InvalidToken);
        };
        let user_id = record.user.id;
        let email = record.user.email;
        let hints: Vec<&str> = record.user.name.iter().map(UserName::as_str).collect();
        let password = NewPassword::parse(password, &email, &hints)
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
        // The link proved the owner: the lockout a guesser may have caused ends.
        if let Err(e) = self.parts.limits.lockout_cleared(&email).await {
            tracing::warn!(%user_id, error = %ErrorChain(&e), "could not clear the account's lockout");
        }
        tracing::info!(%user_id, "password reset");
        AuditEvent::success(AuditKind::PasswordReset)
            .user(user_id)
            .ip(ip)
            .record(&self.parts.audit);
        self.parts
            .outbox
            .send(Template::NoticePasswordReset, &email, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::link;

    #[test]
    fn the_link_is_under_the_public_base_url() {
        assert_eq!(
            link("https://app.example.com/", super::RESET_PAGE, "abc_-"),
            "https://app.example.com/reset-password?token=abc_-"
        );
        assert_eq!(
            link("http://127.0.0.1:8080", super::RESET_PAGE, "t"),
            "http://127.0.0.1:8080/reset-password?token=t"
        );
    }
}
