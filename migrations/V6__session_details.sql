-- What GET /v1/users/me/sessions shows of a session: where and with what it was opened (the
-- login's client IP and User-Agent, NULL when unknown; the application cuts the User-Agent
-- to 256 characters). Its `last_used_at` is derived, not stored:
-- coalesce(last_refreshed_at, created_at), the login time moved by each refresh.
ALTER TABLE sessions
    ADD COLUMN ip inet,
    ADD COLUMN user_agent text CONSTRAINT sessions_user_agent_length CHECK (char_length(user_agent) <= 256);

-- The list: a user's unrevoked sessions newest first. Also serves the revocations that end
-- all of a user's live sessions, so it replaces the index on user_id alone.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at DESC, id DESC)
    WHERE revoked_at IS NULL;
DROP INDEX sessions_user_live_idx;

-- The cleanup (Db::prune_expired) finds dead rows by these, a batch at a time: sessions
-- past their absolute expiry, sessions idle past their last refresh token's expiry,
-- refresh tokens past expiry, and used password-reset tokens (revoked sessions and expired
-- reset tokens have indexes already).
CREATE INDEX sessions_absolute_expires_idx ON sessions (absolute_expires_at);
CREATE INDEX sessions_last_used_idx ON sessions ((coalesce(last_refreshed_at, created_at)));
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX password_reset_tokens_used_idx ON password_reset_tokens (used_at)
    WHERE used_at IS NOT NULL;
