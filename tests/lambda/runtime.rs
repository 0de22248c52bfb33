//! The emulated execution environment itself: the freeze between invocations, and a
//! function that cannot start.

use std::time::{Duration, Instant};

use user_service_tests::TestApp;
use user_service_tests::runtime_api::{HttpEvent, InvokeError, LambdaProcess};

/// The state letter of `/proc/<pid>/stat` (`T`: stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: the state follows the last `)`.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
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
