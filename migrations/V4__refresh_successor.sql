-- The successor a refresh token was spent for, so that a client whose answer was lost can
-- present the spent token again within REFRESH_REUSE_GRACE_SECONDS: while the successor is
-- unused it is deleted and a new one takes its place (one live refresh token per session).
ALTER TABLE refresh_tokens ADD COLUMN replaced_by bytea;
