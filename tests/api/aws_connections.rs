//! How the service reaches its dependencies on AWS: RDS and ElastiCache over TLS with the
//! certificate verified (here: TLS proxies with a private test CA in front of the local
//! Postgres and Redis), and the database credentials and the Redis AUTH token read from
//! Secrets Manager (here: moto, through the real AWS SDK) instead of the environment.

use std::time::Duration;

use serde_json::json;
use user_service::Config;
use user_service::db::runtime_role::RUNTIME_ROLE;
use user_service::db::{self, Connector, Db};
use user_service::redis_store::Cache;
use user_service::secrets::SecretsManager;
use user_service_tests::moto::{create_secret, moto_endpoint};
use user_service_tests::test_app::{POSTGRES_ADDR, REDIS_ADDR};
use user_service_tests::tls::{TestPki, TlsProxy, TlsStart};
use user_service_tests::{TestApp, strong_password, unique_email};
use uuid::Uuid;

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir()
        .join("user-service-tests")
        .join(format!("pki-{}", Uuid::new_v4()))
}

fn config(vars: &[(&str, String)]) -> Config {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
    .expect("configuration")
}

/// Signs up and in: a round trip through Postgres (the account, the session) and Redis
/// (the login limits, the revocation mirror).
async fn sign_up_and_in(app: &TestApp) {
    let email = unique_email();
    let password = strong_password();
    app.register_ok(&email, &password).await;
    let tokens = app.login_ok(&email, &password).await;
    app.assert_me_status(&tokens.access_token, 200).await;
}

#[tokio::test]
async fn postgres_and_redis_are_reached_over_verified_tls() {
    let pki = TestPki::new(&temp_dir(), "trusted");
    let postgres = TlsProxy::start(
        &pki,
        TlsStart::PostgresSslRequest,
        POSTGRES_ADDR.parse().expect("addr"),
    )
    .await;
    let redis = TlsProxy::start(&pki, TlsStart::Immediate, REDIS_ADDR.parse().expect("addr")).await;
    let app = TestApp::builder()
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@{}/{{database}}", postgres.addr()),
        )
        .env("DATABASE_TLS", "verify-full")
        .env("DATABASE_CA_FILE", pki.ca_file.display())
        .env("REDIS_URL", format!("rediss://{}", redis.addr()))
        .env("REDIS_CA_FILE", pki.ca_file.display())
        .spawn()
        .await;
    sign_up_and_in(&app).await;
    assert!(
        postgres.handshakes() > 0,
        "Postgres was reached through TLS"
    );
    assert!(redis.handshakes() > 0, "Redis was reached through TLS");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_not_trusted() {
    let dir = temp_dir();
    let server_pki = TestPki::new(&dir, "server");
    let other_ca = TestPki::new(&dir, "other");
    let postgres = TlsProxy::start(
        &server_pki,
        TlsStart::PostgresSslRequest,
        POSTGRES_ADDR.parse().expect("addr"),
    )
    .await;
    let redis = TlsProxy::start(
        &server_pki,
        TlsStart::Immediate,
        REDIS_ADDR.parse().expect("addr"),
    )
    .await;
    let config = config(&[
        (
            "DATABASE_URL",
            format!("postgres://postgres@{}/postgres", postgres.addr()),
        ),
        ("DATABASE_TLS", "verify-full".into()),
        ("DATABASE_CA_FILE", other_ca.ca_file.display().to_string()),
        ("REDIS_URL", format!("rediss://{}", redis.addr())),
        ("REDIS_CA_FILE", other_ca.ca_file.display().to_string()),
        ("DEPENDENCY_TIMEOUT_MS", "3000".into()),
    ]);
    let secrets = SecretsManager::from_config(&config);
    let connector = Connector::owner(&config, &secrets).expect("connector");
    let refused = db::migrate(&connector)
        .await
        .expect_err("untrusted certificate");
    assert!(
        format!("{refused:#}").contains("certificate"),
        "the error names the certificate: {refused:#}"
    );
    let cache = Cache::from_config(&config, &secrets).expect("cache");
    assert!(
        cache.ping().await.is_err(),
        "Redis with an untrusted certificate"
    );
}

#[tokio::test]
async fn required_tls_never_falls_back_to_plain_text() {
    // The local Postgres is not set up with a certificate this CA issued (it may offer
    // none at all): with TLS required the connection must fail, not go on in the clear.
    let pki = TestPki::new(&temp_dir(), "unrelated");
    let config = config(&[
        (
            "DATABASE_URL",
            format!("postgres://postgres@{POSTGRES_ADDR}/postgres"),
        ),
        ("DATABASE_TLS", "verify-full".into()),
        ("DATABASE_CA_FILE", pki.ca_file.display().to_string()),
    ]);
    let connector =
        Connector::owner(&config, &SecretsManager::from_config(&config)).expect("connector");
    assert!(db::migrate(&connector).await.is_err());
}

#[tokio::test]
async fn database_credentials_come_from_secrets_manager() {
    let Some(moto) = moto_endpoint("Secrets Manager") else {
        return;
    };
    // This machine's Postgres trusts local connections whatever the password, so what the
    // test can see is the user: the migrations run as the owner's secret's user, and every
    // pooled connection of the service is the runtime role's secret's user.
    let _password_is_ours = user_service_tests::database::RUNTIME_ROLE_PASSWORD
        .lock()
        .await;
    let owner = format!("svc_{}", Uuid::new_v4().simple());
    let admin = user_service_tests::test_app::admin_postgres()
        .await
        .expect("postgres");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN SUPERUSER PASSWORD 'unused'"
        ))
        .await
        .expect("create the role");
    let owner_secret = create_secret(
        &moto,
        "db",
        &json!({"username": owner, "password": "rotated-elsewhere"}).to_string(),
    )
    .await;
    let runtime_secret = create_secret(
        &moto,
        "db-runtime",
        &json!({"username": RUNTIME_ROLE, "password": "rotated-by-secrets-manager"}).to_string(),
    )
    .await;
    let app = TestApp::builder()
        .env(
            "DATABASE_URL",
            format!("postgres://{POSTGRES_ADDR}/{{database}}"),
        )
        .env("DATABASE_SECRET_ARN", &owner_secret)
        .env("DATABASE_RUNTIME_SECRET_ARN", &runtime_secret)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto)
        .spawn()
        .await;
    sign_up_and_in(&app).await;
    let users: Vec<String> = admin
        .query(
            "SELECT DISTINCT usename::text FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'user-service'",
            &[&app.database_name()],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        users,
        vec![RUNTIME_ROLE.to_owned()],
        "every pooled connection is the runtime secret's user"
    );
    let table_owner: String = app
        .database()
        .await
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'users'",
            &[],
        )
        .await
        .expect("pg_tables")
        .get(0);
    assert_eq!(
        table_owner, owner,
        "the migrations ran as the owner's secret's user"
    );
    drop(app);
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {owner}"))
        .await;
}

#[tokio::test]
async fn an_unreadable_database_secret_is_an_outage_not_a_crash() {
    let Some(moto) = moto_endpoint("Secrets Manager") else {
        return;
    };
    let missing = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-{}",
        Uuid::new_v4()
    );
    let config = config(&[
        (
            "DATABASE_URL",
            format!("postgres://{POSTGRES_ADDR}/postgres"),
        ),
        ("DATABASE_RUNTIME_SECRET_ARN", missing),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto),
    ]);
    // Nothing is read while the pool is built (a cold start reads no secret it may not
    // need); the first query finds out, and that is a 503-class outage in bounded time.
    let connector =
        Connector::runtime(&config, &SecretsManager::from_config(&config)).expect("connector");
    let db = Db::connect(connector, 2, Duration::from_secs(3)).expect("pool");
    let started = std::time::Instant::now();
    let outage = db.ping().await.expect_err("no credentials, no connection");
    assert!(matches!(outage, db::DbError::Unavailable(_)), "{outage:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_redis_auth_token_comes_from_secrets_manager() {
    let Some(moto) = moto_endpoint("Secrets Manager") else {
        return;
    };
    // ElastiCache's AUTH token is the default user's password; the local Redis has none, so
    // the test gives a Redis ACL user the token and names it in the secret.
    let user = format!("svc-{}", Uuid::new_v4());
    let token = format!("t{}", Uuid::new_v4().simple());
    let mut redis = user_service_tests::test_app::redis_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("ACL")
        .arg(vec![
            "SETUSER",
            &user,
            "on",
            &format!(">{token}"),
            "~*",
            "&*",
            "+@all",
        ])
        .query_async(&mut redis)
        .await
        .expect("ACL SETUSER");
    let good = create_secret(
        &moto,
        "redis",
        &json!({"username": user, "token": token}).to_string(),
    )
    .await;
    let bad = create_secret(
        &moto,
        "redis",
        &json!({"username": user, "token": "wrong"}).to_string(),
    )
    .await;
    let app = TestApp::builder()
        .env("REDIS_AUTH_SECRET_ARN", &good)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto)
        .spawn()
        .await;
    sign_up_and_in(&app).await;

    let wrong = config(&[
        ("REDIS_AUTH_SECRET_ARN", bad),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.clone()),
    ]);
    let cache = Cache::from_config(&wrong, &SecretsManager::from_config(&wrong)).expect("cache");
    assert!(cache.ping().await.is_err(), "a wrong token is refused");
    let _: Result<(), _> = redis::cmd("ACL")
        .arg(vec!["DELUSER", &user])
        .query_async(&mut redis)
        .await;
}
