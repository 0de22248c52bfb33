-- The runtime role `user_service_app`: the login every function but migrate (and the local
-- server's routes) connects as, with only the privileges the code uses. The master user
-- (the owner of every table, which runs these migrations) is for migrations alone.
--
-- What it may do, table by table (the grant test, tests/api/db_role.rs, lists the same and
-- fails on a table without a decision, so a new table's migration must grant or say none):
--   users                  SELECT, INSERT, UPDATE (deletion is soft: `deleted_at`)
--   sessions, refresh_tokens, password_reset_tokens, email_tokens,
--   mfa_totp, mfa_recovery_codes, mfa_tokens
--                          SELECT, INSERT, UPDATE, DELETE
--   audit_events           SELECT, INSERT: the trail cannot be edited or erased by the
--                          service; expired rows go through prune_audit_events() below
--   refinery_schema_history nothing
-- and nothing else: no DDL (it owns nothing and may create nothing in the schema), no
-- TRUNCATE, no sequences (ids are UUIDs), not a superuser, cannot create roles or databases.
--
-- Roles are cluster-wide while these migrations run per database, and several databases
-- may migrate at once (the test suite does): the role is created by the first, and a
-- concurrent CREATE ROLE of the same name fails with duplicate_object or, when both
-- inserts race, unique_violation; either means it exists now. (An advisory lock would not
-- serialise this: advisory locks are per database.) It is created without a password: the
-- migrate function sets it from the role's own Secrets Manager secret after migrating;
-- locally (trust authentication) it needs none.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'user_service_app') THEN
        BEGIN
            CREATE ROLE user_service_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOREPLICATION NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- A role of that name made by someone else with more power is refused, not used.
    IF EXISTS (SELECT FROM pg_roles
               WHERE rolname = 'user_service_app'
                 AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication
                      OR rolbypassrls OR NOT rolcanlogin))
       OR EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                  WHERE r.rolname = 'user_service_app') THEN
        RAISE EXCEPTION 'role user_service_app exists with more than LOGIN (superuser, '
            'createrole, createdb, replication, bypassrls or membership of another role): '
            'refusing to run the service as it';
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO user_service_app', current_database());
    -- Older servers let PUBLIC create in the public schema; nothing but the owner may here.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO user_service_app', current_schema());
END
$$;

GRANT SELECT, INSERT, UPDATE ON users TO user_service_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    sessions, refresh_tokens, password_reset_tokens, email_tokens,
    mfa_totp, mfa_recovery_codes, mfa_tokens
    TO user_service_app;
GRANT SELECT, INSERT ON audit_events TO user_service_app;

-- Retention of the audit trail without DELETE on it: the cleanup calls this function,
-- which runs as its owner (the master user) and deletes only rows whose expires_at
-- (AUDIT_RETENTION_DAYS after the event) has passed, at most `max_rows` of them; it
-- returns how many it deleted. Its search_path is fixed to this schema (and pg_temp last),
-- so a caller cannot slip in objects of its own.
DO $$
BEGIN
    EXECUTE format($fn$
        CREATE FUNCTION %1$I.prune_audit_events(max_rows bigint) RETURNS bigint
        LANGUAGE sql
        SECURITY DEFINER
        SET search_path = %1$I, pg_temp
        AS $body$
            WITH gone AS (
                DELETE FROM audit_events WHERE id IN (
                    SELECT id FROM audit_events WHERE expires_at < now() LIMIT max_rows)
                RETURNING 1)
            SELECT count(*) FROM gone
        $body$
    $fn$, current_schema());
END
$$;
REVOKE ALL ON FUNCTION prune_audit_events(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_audit_events(bigint) TO user_service_app;

-- Functions that later migrations create are not executable by everyone (PUBLIC) by
-- default: each one is granted to the runtime role by name, or to nobody. Tables and
-- sequences already start with no privileges for it, so a new table's migration grants
-- what the code uses (and the grant test makes it say so).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
