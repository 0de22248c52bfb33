//! The runtime role `user_service_app` (migrations/V8__runtime_role.sql): what the service
//! connects as has only the privileges the code uses. Connected as that role to a freshly
//! migrated database, it cannot change the schema, cannot edit or erase the audit trail
//! (only the retention function removes expired rows), holds no role attributes, and every
//! table of the schema has a grant decision written down here. (That every route works
//! under it is the rest of the suite: `TestApp` and the Lambda harness run the service as
//! this role.)

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use user_service::db::runtime_role::{Migrator, RUNTIME_ROLE};
use user_service_tests::test_app::POSTGRES_ADDR;
use user_service_tests::{TestApp, TestDatabase, strong_password, unique_email};
use uuid::Uuid;

/// The grant decision for every table of the schema: what the runtime role may do to it.
/// A new table fails `every_table_has_a_grant_decision` until it is listed here, with the
/// privileges its migration grants (none is a decision too).
const GRANTS: &[(&str, &[&str])] = &[
    ("audit_events", &["INSERT", "SELECT"]),
    ("email_tokens", &["DELETE", "INSERT", "SELECT", "UPDATE"]),
    (
        "mfa_recovery_codes",
        &["DELETE", "INSERT", "SELECT", "UPDATE"],
    ),
    ("mfa_tokens", &["DELETE", "INSERT", "SELECT", "UPDATE"]),
    ("mfa_totp", &["DELETE", "INSERT", "SELECT", "UPDATE"]),
    (
        "password_reset_tokens",
        &["DELETE", "INSERT", "SELECT", "UPDATE"],
    ),
    ("refinery_schema_history", &[]),
    ("refresh_tokens", &["DELETE", "INSERT", "SELECT", "UPDATE"]),
    ("sessions", &["DELETE", "INSERT", "SELECT", "UPDATE"]),
    ("users", &["INSERT", "SELECT", "UPDATE"]),
];

/// The functions of the schema the runtime role may call.
const EXECUTABLE: &[&str] = &["prune_audit_events"];

/// A fresh database migrated as `postgres`, and a connection to it as the runtime role.
async fn migrated() -> (TestDatabase, tokio_postgres::Client) {
    let db = TestDatabase::create().await;
    let url = db.url();
    let config =
        user_service::Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))
            .expect("configuration");
    let secrets = user_service::secrets::SecretsManager::from_config(&config);
    Migrator::from_config(&config, &secrets)
        .expect("migrator")
        .run()
        .await
        .expect("migrations");
    let (client, connection) = tokio_postgres::connect(
        &format!("postgres://{RUNTIME_ROLE}@{POSTGRES_ADDR}/{}", db.name()),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect as the runtime role");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    (db, client)
}

/// Runs `sql` and expects Postgres to refuse it for want of a privilege.
async fn refused(client: &tokio_postgres::Client, sql: &str) {
    let error = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("the runtime role ran {sql:?}"));
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql:?}: {error}"
    );
}

#[tokio::test]
async fn the_runtime_role_cannot_change_the_schema() {
    let (_db, app) = migrated().await;
    for sql in [
        "CREATE TABLE scratch (id int)",
        "ALTER TABLE users ADD COLUMN scratch int",
        "ALTER TABLE audit_events DROP COLUMN reason",
        "DROP TABLE audit_events",
        "DROP TABLE refinery_schema_history",
        "CREATE INDEX scratch_idx ON users (name)",
        "CREATE SCHEMA scratch",
        "CREATE FUNCTION scratch() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "DROP FUNCTION prune_audit_events(bigint)",
        "SELECT * FROM refinery_schema_history",
    ] {
        refused(&app, sql).await;
    }
}

#[tokio::test]
async fn the_runtime_role_cannot_edit_or_erase_audit_rows() {
    let (db, app) = migrated().await;
    // One event past its retention, one within it, written as the service writes them.
    let (expired, live) = (Uuid::new_v4(), Uuid::new_v4());
    let user = Uuid::new_v4();
    for (id, expires) in [
        (expired, "now() - interval '1 day'"),
        (live, "now() + interval '1 day'"),
    ] {
        app.execute(
            &format!(
                "INSERT INTO audit_events (id, user_id, at, type, outcome, expires_at)
                 VALUES ($1, $2, now(), 'login', 'success', {expires})"
            ),
            &[&id, &user],
        )
        .await
        .expect("the runtime role writes audit events");
    }
    refused(&app, "DELETE FROM audit_events").await;
    refused(
        &app,
        &format!("DELETE FROM audit_events WHERE id = '{live}'"),
    )
    .await;
    refused(&app, "UPDATE audit_events SET reason = 'rewritten'").await;
    refused(
        &app,
        "UPDATE audit_events SET expires_at = now() - interval '1 year'",
    )
    .await;
    refused(&app, "TRUNCATE audit_events").await;
    // The retention is the one way out, and only for expired rows.
    let deleted: i64 = app
        .query_one("SELECT prune_audit_events(1000)", &[])
        .await
        .expect("the cleanup's function")
        .get(0);
    assert_eq!(deleted, 1, "only the expired event goes");
    let left: Vec<Uuid> = db
        .connect()
        .await
        .query("SELECT id FROM audit_events", &[])
        .await
        .expect("audit rows")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, vec![live]);
}

#[tokio::test]
async fn the_runtime_role_holds_no_role_attributes() {
    let (_db, app) = migrated().await;
    let row = app
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
                    rolcanlogin,
                    (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)
             FROM pg_roles r WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("pg_roles");
    let flags: [bool; 6] = std::array::from_fn(|i| row.get(i));
    assert_eq!(
        flags,
        [false, false, false, false, false, true],
        "superuser, createrole, createdb, replication, bypassrls: none; login: yes"
    );
    assert_eq!(row.get::<_, i64>(6), 0, "a member of no other role");
    refused(&app, "CREATE ROLE scratch").await;
    let error = app
        .batch_execute("CREATE DATABASE scratch")
        .await
        .expect_err("no CREATE DATABASE");
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{error}"
    );
}

#[tokio::test]
async fn every_table_has_a_grant_decision() {
    let (db, _app) = migrated().await;
    let owner = db.connect().await;
    // Every relation of the schema (tables, views, sequences...), then what the role may do.
    let mut granted: BTreeMap<String, Vec<String>> = owner
        .query(
            "SELECT relname::text FROM pg_class
             WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
               AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|row| (row.get(0), Vec::new()))
        .collect();
    for row in owner
        .query(
            "SELECT c.relname::text, p.privilege
             FROM pg_class c
             CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                     'REFERENCES', 'TRIGGER']) AS p(privilege)
             WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
               AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND has_table_privilege($1::name, c.oid, p.privilege)
             ORDER BY 1, 2",
            &[&RUNTIME_ROLE],
        )
        .await
        .expect("privileges")
    {
        let (table, privilege): (String, String) = (row.get(0), row.get(1));
        granted.entry(table).or_default().push(privilege);
    }
    let expected: BTreeMap<String, Vec<String>> = GRANTS
        .iter()
        .map(|(table, privileges)| {
            let mut privileges: Vec<String> = privileges.iter().map(|p| p.to_string()).collect();
            privileges.sort();
            (table.to_string(), privileges)
        })
        .collect();
    let undecided: Vec<&String> = granted
        .keys()
        .filter(|t| !expected.contains_key(*t))
        .collect();
    assert!(
        undecided.is_empty(),
        "tables with no grant decision: {undecided:?}; grant the runtime role what the code \
         uses in the table's migration and list it in GRANTS"
    );
    assert_eq!(
        granted, expected,
        "the runtime role's privileges, table by table"
    );
    let executable: Vec<String> = owner
        .query(
            "SELECT p.proname::text FROM pg_proc p
             WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
               AND has_function_privilege($1::name, p.oid, 'EXECUTE')
             ORDER BY 1",
            &[&RUNTIME_ROLE],
        )
        .await
        .expect("functions")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        executable, EXECUTABLE,
        "the functions the runtime role may call"
    );
}

#[tokio::test]
async fn the_service_runs_as_the_runtime_role() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let password = strong_password();
    app.register_ok(&email, &password).await;
    assert_eq!(app.login(&email, &password).await.status(), 200);
    let admin = user_service_tests::test_app::admin_postgres()
        .await
        .expect("postgres");
    // The migration's own connection (as postgres) closes as the app starts; give the
    // server a moment to notice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let users: Vec<String> = admin
            .query(
                "SELECT DISTINCT usename::text FROM pg_stat_activity
                 WHERE datname = $1 AND application_name = 'user-service'",
                &[&app.database_name()],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|row| row.get(0))
            .collect();
        if users == [RUNTIME_ROLE] || tokio::time::Instant::now() > deadline {
            assert_eq!(users, [RUNTIME_ROLE], "the app's connections");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
