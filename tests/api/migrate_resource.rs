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
use user_service_tests::TestDatabase;
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
    let config = user_service::Config::from_lookup(|name| {
        (name == "DATABASE_URL").then(|| database_url.clone())
    })
    .expect("configuration");
    let secrets = user_service::secrets::SecretsManager::from_config(&config);
    let connector = user_service::db::Connector::from_config(&config, &secrets).expect("connector");
    MigrationResource::new(connector).expect("the migrate resource")
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
