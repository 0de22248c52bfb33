//! /healthz, /readyz and the published API description.

use user_service_tests::{TestApp, expect_json, expect_status};

#[tokio::test]
async fn healthz_is_200() {
    let app = TestApp::spawn().await;
    expect_status(app.get("/healthz").await, 200).await;
}

#[tokio::test]
async fn readyz_is_200_when_postgres_and_redis_are_up() {
    let app = TestApp::spawn().await;
    expect_status(app.get("/readyz").await, 200).await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_endpoints() {
    let app = TestApp::spawn().await;
    let doc = expect_json(app.get("/openapi.json").await, 200).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "OpenAPI 3.1, got {version:?}");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/users/me",
        "/v1/users/me/password",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let docs = expect_status(app.get("/docs").await, 200).await;
    assert!(!docs.trim().is_empty(), "/docs is empty");
}
