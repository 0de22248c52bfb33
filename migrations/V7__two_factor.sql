-- Two-factor login with TOTP (RFC 6238) and recovery codes.
--
-- A TOTP secret is never stored in plain form: `secret` is AES-256-GCM ciphertext (a random
-- 96-bit nonce, then the ciphertext and its tag) under the key named by `key_id`, which
-- lives outside the database (MFA_KEY_FILE locally, a Secrets Manager secret on AWS); the
-- user id is bound in as associated data, so a ciphertext copied onto another account does
-- not decrypt. Rotation re-encrypts rows under the newest key (`user-service mfa reencrypt`).
--
-- One row per user: `confirmed_at` NULL is a set-up waiting for its first code (a new
-- set-up replaces it); once confirmed, `users.mfa_enabled` is true. `last_step` is the
-- newest 30-second step whose code was accepted: a code is accepted only for a later step,
-- so each code works once per account.
CREATE TABLE mfa_totp (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    key_id       text NOT NULL,
    secret       bytea NOT NULL,
    confirmed_at timestamptz,
    last_step    bigint,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Ten single-use recovery codes per confirmed set-up, only as SHA-256 hashes (of the user
-- id and the code: 80 random bits each, so a hash gives nothing away). A new confirmation
-- replaces them; turning two-factor off deletes them.
CREATE TABLE mfa_recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- The second step of a two-factor login: what `POST /v1/auth/login` answers with
-- `mfa_required` (stored as the SHA-256 of the token). Single use, short-lived, spent after
-- `attempts` reaches 5 wrong codes. It remembers the first step's client, for the session.
CREATE TABLE mfa_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    spent_at   timestamptz,
    ip         inet,
    user_agent text CONSTRAINT mfa_tokens_user_agent_length CHECK (char_length(user_agent) <= 256)
);

CREATE INDEX mfa_tokens_expires_idx ON mfa_tokens (expires_at);

-- A session opened with a second factor: its access tokens carry `amr: ["pwd", "otp"]`,
-- also after a refresh.
ALTER TABLE sessions
    ADD COLUMN second_factor boolean NOT NULL DEFAULT false;
