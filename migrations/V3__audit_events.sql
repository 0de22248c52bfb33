-- The audit trail's Postgres store (used when AUDIT_TABLE is not set): one row per
-- security event that concerns a known user, read newest first by
-- GET /v1/admin/users/{id}/audit. Rows are written in batches by a background task and
-- pruned by it once expires_at (AUDIT_RETENTION_DAYS after the event) has passed.
-- No foreign key to users: the trail of a deleted user outlives the account, and a write
-- must never fail because of what happened to the user meanwhile.

CREATE TABLE audit_events (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    at          timestamptz NOT NULL,
    type        text NOT NULL,
    outcome     text NOT NULL,
    ip          inet,
    actor_id    uuid,
    session_id  uuid,
    reason      text,
    changes     text,
    expires_at  timestamptz NOT NULL
);

-- A user's events newest first, by keyset (at, id).
CREATE INDEX audit_events_user_at_idx ON audit_events (user_id, at DESC, id DESC);
-- For pruning expired rows.
CREATE INDEX audit_events_expires_idx ON audit_events (expires_at);
