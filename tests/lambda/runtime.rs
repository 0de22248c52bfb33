//! The emulated execution environment itself: the freeze between invocations, a function
//! that cannot start, and the work a function finishes after its response.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use user_service_tests::TestApp;
use user_service_tests::moto::{create_audit_table, dynamodb, moto_endpoint};
use user_service_tests::runtime_api::{HttpEvent, InvokeError, LambdaProcess};

/// The state letter of `/proc/<pid>/stat` (`T`: stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: the state follows the last `)`.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until the process is stopped (frozen while it waits for its next event).
pub(super) async fn wait_until_frozen(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_state(pid) != Some('T') {
        assert!(
            Instant::now() < deadline,
            "the process waiting for its next event is not stopped: {:?}",
            process_state(pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A function answers without waiting for its audit write (its internal extension stores
/// the events after the response), yet the event is stored before Lambda freezes it: once
/// the process is frozen, the failed login is in DynamoDB.
#[tokio::test]
async fn audit_events_are_stored_after_the_response_and_before_the_freeze() {
    let Some(endpoint) = moto_endpoint("the audit write after a Lambda response") else {
        return;
    };
    let client = dynamodb(&endpoint);
    let table = format!("lambda-audit-{}", uuid::Uuid::new_v4().simple());
    create_audit_table(&client, &table).await;
    let app = TestApp::builder()
        .env("AUDIT_TABLE", &table)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .spawn()
        .await;
    let user = app.new_user().await;
    // The table is in moto's us-east-1 (the emulator's functions default to eu-west-1).
    let login = LambdaProcess::builder("login")
        .deployment(&app)
        .env("AWS_REGION", "us-east-1")
        .spawn()
        .await
        .expect("start the login function");
    let response = login
        .http(&HttpEvent::post_json(
            "/v1/auth/login",
            &json!({"email": user.email, "password": "not-the-password-at-all"}),
        ))
        .await;
    response.expect_problem(401, "invalid_credentials");
    assert_eq!(
        login.runtime_api().extensions(),
        1,
        "the function registered its settling extension"
    );
    wait_until_frozen(login.pid()).await;
    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("USER#{}", user.id)))
        .send()
        .await
        .expect("query moto")
        .items
        .unwrap_or_default();
    let failed = items
        .iter()
        .filter(|item| {
            item.get("reason")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("wrong_password")
        })
        .count();
    assert_eq!(
        failed,
        1,
        "the failed login is stored before the freeze: {items:#?}\nfunction output:\n{}",
        login.output().join("\n")
    );
}

#[tokio::test]
async fn a_function_is_frozen_between_invocations() {
    let app = TestApp::spawn().await;
    let health = super::start("health", &app).await;
    for _ in 0..2 {
        let response = health.http(&HttpEvent::get("/healthz")).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_state(health.pid()) != Some('T') {
            assert!(
                Instant::now() < deadline,
                "the process waiting for its next event is not stopped: {:?}",
                process_state(health.pid())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(health.runtime_api().polls() >= 2);
}

#[tokio::test]
async fn a_function_that_cannot_start_fails_the_invocation_with_its_output() {
    let app = TestApp::spawn().await;
    let health = LambdaProcess::builder("health")
        .deployment(&app)
        .env("JWT_ALGORITHM", "HS256")
        .spawn()
        .await
        .expect("spawn");
    let event = HttpEvent::get("/healthz").to_json();
    let error = health
        .try_invoke_within(&event, Duration::from_secs(20))
        .await
        .expect_err("a configuration the service refuses");
    assert!(
        matches!(error, InvokeError::Exited(_) | InvokeError::Init(_)),
        "{error}"
    );
    let message = health.failure(&error, &event);
    assert!(message.contains("JWT_ALGORITHM"), "{message}");
}
