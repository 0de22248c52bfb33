//! The account's address: proving it ([`Accounts::resend_verification`] and the link sent
//! at registration), moving to a new one ([`Accounts::request_email_change`]), and the
//! one endpoint that completes both ([`Accounts::verify_email`]).
//!
//! Links carry `PUBLIC_BASE_URL/verify-email?token=<token>`: 256 random bits as 43
//! base64url characters, of which only the SHA-256 is stored, valid for
//! `EMAIL_VERIFICATION_TTL_SECONDS` (24 hours) and once; a newer link of the same purpose
//! makes the older ones invalid.
//!
//! # Changing the address
//! The new address is checked (syntax, not another account's), then the caller's
//! `current_password` as a login attempt (see [`super::super::credentials`]). The email does
//! not change yet: a link goes to the new address and a notice to the current one. When the
//! link is presented, one transaction spends it, moves the account (verified), and drops the
//! outstanding reset links; then a notice goes to the old address. Sessions survive. A
//! password change or reset in between cancels the pending change.

use std::net::IpAddr;

use tracing::Instrument as _;

use super::{AccountError, Accounts, link};
use crate::audit::{AuditEvent, AuditKind, AuditReason};
use crate::auth::Caller;
use crate::auth::opaque::{self, OpaqueToken};
use crate::db::email_tokens::{EmailPurpose, EmailTokenUse};
use crate::domain::{Email, User};
use crate::mail::templates::{self, Template};
use crate::telemetry::ErrorChain;

/// Where the links in verification and email-change emails point, under `PUBLIC_BASE_URL`.
pub const VERIFY_PAGE: &str = "/verify-email";

impl Accounts {
    /// Sends a new verification link to the caller's address when it is unverified and the
    /// account is within its hourly allowance; otherwise nothing. The answer is the same
    /// either way, and comes before the email is sent.
    pub async fn resend_verification(
        &self,
        caller: Caller,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let user = self.caller_record(caller).await?.user;
        let event = AuditEvent::success(AuditKind::EmailVerificationRequested)
            .user(user.id)
            .session(caller.session_id)
            .ip(ip);
        if user.email_verified {
            event
                .reason(AuditReason::AlreadyVerified)
                .record(&self.parts.audit);
            return Ok(());
        }
        if !self.parts.limits.verification_allowed(user.id).await? {
            AuditEvent::failure(
                AuditKind::EmailVerificationRequested,
                AuditReason::EmailRateLimited,
            )
            .user(user.id)
            .session(caller.session_id)
            .ip(ip)
            .record(&self.parts.audit);
            return Ok(());
        }
        event.record(&self.parts.audit);
        self.send_verification_link(&user);
        Ok(())
    }

    /// Asks to move the caller's account to `new_email`: checks the address, then the
    /// password (a login attempt for the lockout); sends the confirmation link to the new
    /// address and a notice to the current one. Returns the pending address.
    pub async fn request_email_change(
        &self,
        caller: Caller,
        new_email: &str,
        current_password: &str,
        ip: Option<IpAddr>,
    ) -> Result<Email, AccountError> {
        let new_email = Email::parse(new_email)?;
        match self.parts.db.user_by_email(&new_email).await? {
            Some(holder) if holder.user.id == caller.user_id => {
                return Err(AccountError::SameEmail);
            }
            Some(_) => return Err(AccountError::EmailTaken),
            None => {}
        }
        let record = self
            .reauthenticate(
                caller,
                current_password,
                AuditKind::EmailChangeRequested,
                ip,
            )
            .await?;
        let token = super::super::new_opaque_token()?;
        let ttl = self.parts.settings.email_verification_ttl;
        let stored = self
            .parts
            .db
            .store_email_token(
                caller.user_id,
                EmailPurpose::Change,
                &new_email,
                token.hash(),
                ttl,
            )
            .await?;
        if !stored {
            return Err(AccountError::CallerGone);
        }
        AuditEvent::success(AuditKind::EmailChangeRequested)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip)
            .emails(&record.user.email, &new_email)
            .record(&self.parts.audit);
        let link = self.link(&token);
        let lifetime = templates::lifetime(ttl);
        self.parts.outbox.send(
            Template::ConfirmEmailChange,
            &new_email,
            &[
                ("new_email", new_email.as_str()),
                ("link", &link),
                ("lifetime", &lifetime),
            ],
        );
        self.parts.outbox.send(
            Template::NoticeEmailChangeRequested,
            &record.user.email,
            &[("new_email", new_email.as_str())],
        );
        Ok(new_email)
    }

    /// Completes a verification or an email change with the token of its link (once, also
    /// under concurrency). [`AccountError::EmailTaken`] when another account took the new
    /// address meanwhile (the link is spent then).
    pub async fn verify_email(&self, token: &str, ip: Option<IpAddr>) -> Result<(), AccountError> {
        let refuse = || {
            AuditEvent::failure(AuditKind::EmailVerified, AuditReason::InvalidToken)
                .ip(ip)
                .log();
            AccountError::InvalidToken
        };
        if !opaque::is_well_formed(token) {
            return Err(refuse());
        }
        match self.parts.db.use_email_token(&opaque::hash(token)).await? {
            EmailTokenUse::Invalid => Err(refuse()),
            EmailTokenUse::EmailTaken { user_id } => {
                AuditEvent::failure(AuditKind::EmailChanged, AuditReason::EmailTaken)
                    .user(user_id)
                    .ip(ip)
                    .record(&self.parts.audit);
                Err(AccountError::EmailTaken)
            }
            EmailTokenUse::Verified(user) => {
                self.parts.profiles.changed(user.id).await;
                AuditEvent::success(AuditKind::EmailVerified)
                    .user(user.id)
                    .ip(ip)
                    .record(&self.parts.audit);
                Ok(())
            }
            EmailTokenUse::Changed { user, old_email } => {
                self.parts.profiles.changed(user.id).await;
                AuditEvent::success(AuditKind::EmailChanged)
                    .user(user.id)
                    .ip(ip)
                    .emails(&old_email, &user.email)
                    .record(&self.parts.audit);
                self.notify_email_changed(&old_email, &user.email);
                Ok(())
            }
        }
    }

    /// Tells the old address that the account moved to `new`.
    pub(super) fn notify_email_changed(&self, old: &Email, new: &Email) {
        self.parts.outbox.send(
            Template::NoticeEmailChanged,
            old,
            &[("old_email", old.as_str()), ("new_email", new.as_str())],
        );
    }

    /// In the background: stores a new verification token for `user`'s current address
    /// and emails the link. Every failure is logged; the caller was answered already.
    pub(super) fn send_verification_link(&self, user: &User) {
        let accounts = self.clone();
        let (user_id, email) = (user.id, user.email.clone());
        self.parts.background.spawn(
            async move {
                let Ok(token) = OpaqueToken::generate() else {
                    tracing::error!(%user_id, "CSPRNG failed; no verification email sent");
                    return;
                };
                let ttl = accounts.parts.settings.email_verification_ttl;
                match accounts
                    .parts
                    .db
                    .store_email_token(user_id, EmailPurpose::Verify, &email, token.hash(), ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(%user_id, "verified, changed or gone meanwhile; no email");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(%user_id, error = %ErrorChain(&e), "could not store the verification token; no email sent");
                        return;
                    }
                }
                let link = accounts.link(&token);
                accounts
                    .parts
                    .outbox
                    .deliver(
                        Template::VerifyEmail,
                        &email,
                        &[("link", &link), ("lifetime", &templates::lifetime(ttl))],
                    )
                    .await;
            }
            .instrument(tracing::info_span!("verification_email", %user_id)),
        );
    }

    /// The link that carries `token` to the verification page.
    fn link(&self, token: &OpaqueToken) -> String {
        link(
            &self.parts.settings.public_base_url,
            VERIFY_PAGE,
            token.expose(),
        )
    }
}
