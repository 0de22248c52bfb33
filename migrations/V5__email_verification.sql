-- Verified emails and the confirmed email change.
--
-- `email_verified` is set when the owner of the address proves it: a verification link, an
-- email-change link (the new address), or a completed password reset. `mfa_enabled` is
-- shown on every user; two-factor login (a later migration) turns it on.
ALTER TABLE users
    ADD COLUMN email_verified boolean NOT NULL DEFAULT false,
    ADD COLUMN mfa_enabled boolean NOT NULL DEFAULT false;

-- One-time links sent by email that prove the reader owns an address: `verify` (the
-- account's current address) and `change` (a new address the account asked to move to).
-- Only the SHA-256 of a token is stored, as for reset tokens. `email` is the address the
-- link went to: a `verify` link counts only while the account still has that address, a
-- `change` link moves the account to it. A newer link of the same purpose deletes the
-- older unused ones, so only the newest works; a spent row is kept until the clean-up.
CREATE TABLE email_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify', 'change')),
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);
-- For the clean-up of rows that can no longer be used.
CREATE INDEX email_tokens_expires_idx ON email_tokens (expires_at);

-- An email change's audit event records the address before and after.
ALTER TABLE audit_events
    ADD COLUMN old_email text,
    ADD COLUMN new_email text;
