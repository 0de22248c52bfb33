-- Users, their sessions and the refresh tokens of those sessions.
-- Emails are stored trimmed and lowercased by the application; the unique index on
-- lower(email) makes the database enforce case-insensitive uniqueness as well, and it
-- only covers live rows so a deleted user's email can be registered again.

CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    email              text NOT NULL,
    name               text,
    password_hash      text NOT NULL,
    role               text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled           boolean NOT NULL DEFAULT false,
    -- Access tokens issued at or before this instant are rejected (role change, logout-all,
    -- password reset, disable); NULL: no cut-off. Redis mirrors it; this column is the truth.
    tokens_valid_after timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);

CREATE UNIQUE INDEX users_email_live_key ON users (lower(email)) WHERE deleted_at IS NULL;
-- Keyset pagination for the admin list: newest first (ids are UUIDv7, so they sort by time).
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- A session is one login: the chain of refresh tokens minted from it, and the access tokens
-- that carry its id as `sid`.
CREATE TABLE sessions (
    id                  uuid PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    absolute_expires_at timestamptz NOT NULL,
    last_refreshed_at   timestamptz,
    revoked_at          timestamptz,
    revoked_reason      text
);

CREATE INDEX sessions_user_live_idx ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX users_tokens_valid_after_idx ON users (tokens_valid_after) WHERE tokens_valid_after IS NOT NULL;
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Only the SHA-256 of a refresh token is stored. A token is spent once; presenting a spent
-- token again is reuse, and revokes its session.
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    spent_at    timestamptz
);

CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
