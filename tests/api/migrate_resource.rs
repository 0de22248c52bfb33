//! The migrate function (`functions/migrate`), CloudFormation's custom resource
//! `MigrationRun`: Create and Update apply the migrations, Delete leaves the schema alone,
//! and CloudFormation always gets an answer at the presigned response URL, also when the
//! database is down or hangs. An HTTP server in the test stands in for that S3 URL; the
//! database is a fresh one per test.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use user_service::custom_resource::{MigrationResource, Status};
use user_service::db::runtime_role::RUNTIME_ROLE;
use user_service_tests::TestDatabase;
use user_service_tests::moto::create_secret;
use uuid::Uuid;

/// A generous deadline for work that should finish.
const DEADLINE: Duration = Duration::from_secs(60);

/// One PUT the stand-in received.
#[derive(Debug)]
struct Received {
    method: Method,
    path_and_query: String,
    content_type: Option<String>,
    body: Value,
}

/// The stand-in for CloudFormation's presigned S3 response URL.
struct ResponseUrl {
    url: String,
    received: mpsc::UnboundedReceiver<Received>,
    server: JoinHandle<()>,
}

impl Drop for ResponseUrl {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ResponseUrl {
    async fn start() -> ResponseUrl {
        let (tx, received) = mpsc::unbounded_channel();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
                        json!({"not json": e.to_string(), "raw": String::from_utf8_lossy(&body)})
                    });
                    let _ = tx.send(Received {
                        method,
                        path_and_query: uri
                            .path_and_query()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        content_type: headers
                            .get("content-type")
                            .map(|v| v.to_str().unwrap_or("<not text>").to_owned()),
                        body,
                    });
                    StatusCode::OK
                }
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ResponseUrl {
            // Shaped like a presigned URL: the query string must arrive intact.
            url: format!(
                "http://{addr}/cloudformation-custom-resource-response/stack?X-Amz-Signature=c0ffee&X-Amz-Expires=7200"
            ),
            received,
            server,
        }
    }

    /// The one answer the function sent.
    async fn answer(&mut self) -> Received {
        let received = tokio::time::timeout(Duration::from_secs(5), self.received.recv())
            .await
            .expect("an answer at the response URL")
            .expect("the stand-in is running");
        assert!(self.received.try_recv().is_err(), "exactly one answer");
        received
    }
}

/// A request as CloudFormation sends it for `MigrationRun`.
fn request(kind: &str, response_url: &str, physical_id: Option<&str>) -> Value {
    let mut request = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:migrate",
        "ResponseURL": response_url,
        "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/user-service-dev/{}", Uuid::new_v4()),
        "RequestId": Uuid::new_v4().to_string(),
        "ResourceType": "AWS::CloudFormation::CustomResource",
        "LogicalResourceId": "MigrationRun",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:migrate",
            "DeployId": "test",
            "MigrateVersion": "1"
        }
    });
    if let Some(id) = physical_id {
        request["PhysicalResourceId"] = id.into();
    }
    request
}

/// The answer is a PUT of JSON with an empty content type, naming the request.
fn check_answer(received: &Received, request: &Value, status: &str) {
    assert_eq!(received.method, Method::PUT);
    assert!(
        received
            .path_and_query
            .ends_with("?X-Amz-Signature=c0ffee&X-Amz-Expires=7200"),
        "{}",
        received.path_and_query
    );
    assert_eq!(
        received.content_type.as_deref(),
        Some(""),
        "empty content-type"
    );
    let body = &received.body;
    assert_eq!(body["Status"], status, "{body}");
    for field in ["StackId", "RequestId", "LogicalResourceId"] {
        assert_eq!(body[field], request[field], "{field}: {body}");
    }
    assert_eq!(
        body["PhysicalResourceId"], "user-service-migrations",
        "{body}"
    );
    assert_eq!(body["NoEcho"], false, "{body}");
    assert!(body["Reason"].is_string(), "{body}");
    assert!(body["Data"].is_object(), "{body}");
}

/// The tables of the `public` schema, sorted.
async fn tables(db: &TestDatabase) -> Vec<String> {
    db.connect()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("listing tables")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn migration_resource(database_url: String) -> MigrationResource {
    migration_resource_with(&[("DATABASE_URL", database_url)])
}

fn migration_resource_with(vars: &[(&str, String)]) -> MigrationResource {
    let config = user_service::Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("configuration");
    let secrets = user_service::secrets::SecretsManager::from_config(&config);
    let migrator =
        user_service::db::runtime_role::Migrator::from_config(&config, &secrets).expect("migrator");
    MigrationResource::new(migrator).expect("the migrate resource")
}

#[tokio::test]
async fn create_applies_the_migrations_and_update_finds_nothing_left() {
    let db = TestDatabase::create().await;
    let mut url = ResponseUrl::start().await;
    let resource = migration_resource(db.url());
    assert!(tables(&db).await.is_empty(), "a fresh database");

    let create = request("Create", &url.url, None);
    let sent = resource
        .handle(create.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    assert_eq!(sent.status, Status::Success);
    let answer = url.answer().await;
    check_answer(&answer, &create, "SUCCESS");
    let applied: u32 = answer.body["Data"]["AppliedMigrations"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("AppliedMigrations: {}", answer.body));
    assert!(applied >= 3, "every migration applied: {}", answer.body);
    let after_create = tables(&db).await;
    for table in ["users", "sessions", "audit_events"] {
        assert!(
            after_create.iter().any(|t| t == table),
            "{table} in {after_create:?}"
        );
    }

    let update = request("Update", &url.url, Some("user-service-migrations"));
    resource
        .handle(update.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    let answer = url.answer().await;
    check_answer(&answer, &update, "SUCCESS");
    assert_eq!(
        answer.body["Data"]["AppliedMigrations"], "0",
        "{}",
        answer.body
    );
    assert_eq!(tables(&db).await, after_create);
}

#[tokio::test]
async fn delete_answers_success_and_leaves_the_schema_and_data_alone() {
    let db = TestDatabase::create().await;
    let mut url = ResponseUrl::start().await;
    let resource = migration_resource(db.url());
    resource
        .handle(request("Create", &url.url, None), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    assert_eq!(url.answer().await.body["Status"], "SUCCESS");
    let client = db.connect().await;
    client
        .execute(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, 'kept@example.com', 'x')",
            &[&Uuid::now_v7()],
        )
        .await
        .expect("a user row");
    let before = tables(&db).await;

    let delete = request("Delete", &url.url, Some("user-service-migrations"));
    resource
        .handle(delete.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    check_answer(&url.answer().await, &delete, "SUCCESS");
    assert_eq!(tables(&db).await, before, "the schema is untouched");
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 1, "the data is untouched");

    // Delete never touches the database: it succeeds with the database gone, too (as on
    // the rollback of a Create that failed because the database was unreachable).
    let unreachable = migration_resource(format!(
        "postgres://postgres@{}/nowhere",
        closed_port().await
    ));
    let delete = request("Delete", &url.url, Some("user-service-migrations"));
    unreachable
        .handle(delete.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    check_answer(&url.answer().await, &delete, "SUCCESS");
}

/// An address where nothing listens (connection refused).
async fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test]
async fn create_against_a_database_that_refuses_connections_answers_failed() {
    let mut url = ResponseUrl::start().await;
    let resource = migration_resource(format!(
        "postgres://postgres@{}/nowhere",
        closed_port().await
    ));
    let create = request("Create", &url.url, None);
    let sent = resource
        .handle(create.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    assert_eq!(sent.status, Status::Failed);
    let answer = url.answer().await;
    check_answer(&answer, &create, "FAILED");
    let reason = answer.body["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("connecting to Postgres"), "{reason}");
}

#[tokio::test]
async fn create_against_a_hung_database_answers_failed_at_the_deadline() {
    // Accepts connections and never says a word, like a database behind a black hole.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut url = ResponseUrl::start().await;
    let resource = migration_resource(format!("postgres://postgres@{addr}/hung"));
    let create = request("Create", &url.url, None);
    let started = Instant::now();
    let work_deadline = started + Duration::from_secs(2);
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        resource.handle(create.clone(), work_deadline),
    )
    .await
    .expect("the function answers instead of hanging")
    .expect("answered");
    let took = started.elapsed();
    assert_eq!(sent.status, Status::Failed);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "answered at the work deadline, took {took:?}"
    );
    let answer = url.answer().await;
    check_answer(&answer, &create, "FAILED");
    let reason = answer.body["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not finish"), "{reason}");
    holder.abort();
}

/// The runtime role's password as Postgres stores it (a SCRAM-SHA-256 verifier), if any.
async fn runtime_role_verifier() -> Option<String> {
    user_service_tests::test_app::admin_postgres()
        .await
        .expect("postgres")
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&RUNTIME_ROLE],
        )
        .await
        .expect("pg_authid")
        .get(0)
}

/// Whether `verifier` (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5803)
/// was made from `password`.
fn scram_verifies(verifier: &str, password: &str) -> bool {
    use aws_lc_rs::{digest, hmac, pbkdf2};
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((iterations, salt, stored_key)) = verifier
        .strip_prefix("SCRAM-SHA-256$")
        .and_then(|rest| rest.split_once('$'))
        .and_then(|(params, keys)| {
            let (iterations, salt) = params.split_once(':')?;
            let (stored_key, _) = keys.split_once(':')?;
            Some((
                iterations.parse::<u32>().ok()?,
                b64.decode(salt).ok()?,
                b64.decode(stored_key).ok()?,
            ))
        })
    else {
        return false;
    };
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).expect("iterations"),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let client_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salted), b"Client Key");
    digest::digest(&digest::SHA256, client_key.as_ref()).as_ref() == stored_key.as_slice()
}

#[tokio::test]
async fn create_gives_the_runtime_role_the_password_of_its_secret() {
    let Some(moto) = user_service_tests::moto_endpoint("Secrets Manager") else {
        return;
    };
    let _password_is_ours = user_service_tests::database::RUNTIME_ROLE_PASSWORD
        .lock()
        .await;
    let db = TestDatabase::create().await;
    let mut url = ResponseUrl::start().await;
    let password = format!("generated-{}", Uuid::new_v4().simple());
    let secret = create_secret(
        &moto,
        "db-runtime",
        &json!({"username": RUNTIME_ROLE, "password": password, "engine": "postgres"}).to_string(),
    )
    .await;
    let resource = migration_resource_with(&[
        ("DATABASE_URL", db.url()),
        ("DATABASE_RUNTIME_SECRET_ARN", secret),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.clone()),
    ]);
    let create = request("Create", &url.url, None);
    let sent = resource
        .handle(create.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    assert_eq!(sent.status, Status::Success, "{}", sent.reason);
    check_answer(&url.answer().await, &create, "SUCCESS");
    let verifier = runtime_role_verifier()
        .await
        .expect("the role has a password");
    assert!(
        scram_verifies(&verifier, &password),
        "the role's password is the secret's (stored as SCRAM, never in clear)"
    );

    // A secret naming another login (here the master user) is refused: the migrate
    // function never changes any password but the runtime role's.
    let wrong = create_secret(
        &moto,
        "db-runtime",
        &json!({"username": "postgres", "password": "not-the-masters"}).to_string(),
    )
    .await;
    let resource = migration_resource_with(&[
        ("DATABASE_URL", db.url()),
        ("DATABASE_RUNTIME_SECRET_ARN", wrong),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto),
    ]);
    let update = request("Update", &url.url, Some("user-service-migrations"));
    let sent = resource
        .handle(update.clone(), Instant::now() + DEADLINE)
        .await
        .expect("answered");
    assert_eq!(sent.status, Status::Failed);
    assert!(sent.reason.contains(RUNTIME_ROLE), "{}", sent.reason);
    assert!(!sent.reason.contains("not-the-masters"), "{}", sent.reason);
    check_answer(&url.answer().await, &update, "FAILED");
}
