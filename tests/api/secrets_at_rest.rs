//! What the service keeps: no password and no refresh token in Postgres or Redis, only
//! hashes (contract, "Tokens" and "Hashing"). The tests read the stores directly, as an
//! attacker with a database dump would.

use tokio_postgres::Client;
use user_service_tests::{TestApp, TestUser, expect_json};

/// Every row of every table of the public schema, as text (bytea shows as hex).
async fn dump_database(db: &Client) -> String {
    let tables = db
        .query(
            "SELECT quote_ident(table_name) FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .expect("list tables");
    let mut dump = String::new();
    for row in tables {
        let table: String = row.get(0);
        let rows = db
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .expect("dump table");
        for r in rows {
            dump.push_str(&table);
            dump.push(' ');
            dump.push_str(&r.get::<_, String>(0));
            dump.push('\n');
        }
    }
    dump
}

/// Every key and value the app keeps in Redis, as text.
async fn dump_redis(app: &TestApp) -> String {
    let mut con = app.redis().await;
    let mut dump = String::new();
    for key in app.redis_keys().await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("TYPE");
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(&mut con).await,
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await,
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await,
            "zset" => {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut con)
                    .await
            }
            "list" => {
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut con)
                    .await
            }
            _ => Ok(redis::Value::Nil),
        }
        .expect("read a Redis value");
        dump.push_str(&format!("{key} {value:?}\n"));
    }
    dump
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn assert_not_stored(dump: &str, secret: &str, what: &str, store: &str) {
    assert!(
        !dump.contains(secret) && !dump.contains(&hex(secret)),
        "{store} holds the {what} in clear"
    );
}

#[tokio::test]
async fn passwords_and_refresh_tokens_are_stored_only_as_hashes() {
    let app = TestApp::spawn().await;
    let user: TestUser = app.new_user().await;
    let rotated = app.refresh_ok(&user.tokens.refresh_token).await;
    let second = app.login_ok(&user.email, &user.password).await;
    let db = app.database().await;
    let database = dump_database(&db).await;
    let redis = dump_redis(&app).await;
    assert!(
        database.contains(&user.email),
        "the dump should hold the user (is the dump working?)"
    );
    assert!(
        database.contains("$argon2id$"),
        "passwords are hashed with argon2id"
    );
    for (store, dump) in [("Postgres", &database), ("Redis", &redis)] {
        assert_not_stored(dump, &user.password, "password", store);
        for token in [
            &user.tokens.refresh_token,
            &rotated.refresh_token,
            &second.refresh_token,
        ] {
            assert_not_stored(dump, token, "refresh token", store);
        }
    }
}

/// "A stored hash with older parameters is re-hashed on the next successful login."
#[tokio::test]
async fn an_old_hash_is_upgraded_on_the_next_login() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let db = app.database().await;
    let before = dump_database(&db).await;
    assert!(
        before.contains("m=1024,t=1,p=1"),
        "hashed with the test parameters"
    );
    let stronger = app
        .sibling()
        .env("ARGON2_MEMORY_KIB", 2048)
        .env("ARGON2_ITERATIONS", 2)
        .spawn()
        .await;
    stronger.login_ok(&user.email, &user.password).await;
    // The upgrade may happen after the response (the login need not wait for it).
    let upgraded = user_service_tests::eventually(std::time::Duration::from_secs(10), || async {
        let after = dump_database(&db).await;
        after.contains("m=2048,t=2,p=1") && !after.contains("m=1024,t=1,p=1")
    })
    .await;
    assert!(
        upgraded,
        "the hash was not upgraded within 10 s of the login"
    );
    // And the upgraded hash still verifies.
    let tokens = stronger.login_ok(&user.email, &user.password).await;
    // A re-hash is not a change of the account: `updated_at` stays (instances that
    // remember the profile for `GET /me` stay right).
    let me = expect_json(stronger.me(&tokens.access_token).await, 200).await;
    assert_eq!(me["updated_at"], me["created_at"], "{me}");
}
