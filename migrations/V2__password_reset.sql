-- One-time password-reset tokens (POST /v1/auth/password/forgot and /reset).
-- Only the SHA-256 of a token is stored: the token itself travels in the email alone, so
-- a copy of this table cannot reset anyone's password. A token is spent by setting
-- used_at, once (a conditional UPDATE); a newer request for the same user deletes the
-- older unused tokens, so only the newest email works.

CREATE TABLE password_reset_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- When the request was made (what orders two requests of one user).
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE INDEX password_reset_tokens_user_idx ON password_reset_tokens (user_id);
-- For pruning rows that can no longer be used.
CREATE INDEX password_reset_tokens_expires_idx ON password_reset_tokens (expires_at);
