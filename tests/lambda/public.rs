//! The public documents: health, JWKS, OpenAPI. Each function serves every route
//! `ENDPOINTS` gives it.

use serde_json::json;
use user_service::http::routes::ENDPOINTS;
use user_service_tests::TestApp;
use user_service_tests::jwt::kid_of;
use user_service_tests::runtime_api::HttpEvent;

use super::{routes_of, start};

#[tokio::test]
async fn health() {
    let app = TestApp::spawn().await;
    let health = start("health", &app).await;
    let routes = routes_of("health");
    assert_eq!(routes.len(), 2, "/healthz and /readyz: {routes:?}");
    for (method, path) in routes {
        let response = health.http(&HttpEvent::new(method, path)).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    health
        .http(&HttpEvent::get("/healthz/"))
        .await
        .expect_problem(404, "not_found");
}

#[tokio::test]
async fn jwks() {
    let app = TestApp::spawn().await;
    let jwks = start("jwks", &app).await;
    let user = app.new_user().await;

    let document = jwks
        .http(&HttpEvent::get("/.well-known/jwks.json"))
        .await
        .expect(200);
    let keys = document["keys"].as_array().expect("keys");
    let kid = kid_of(&user.tokens.access_token);
    let key = keys
        .iter()
        .find(|k| k["kid"] == json!(kid))
        .unwrap_or_else(|| panic!("the signing key {kid} is not published: {document}"));
    assert_eq!(key["kty"], json!("EC"), "{key}");
    assert_eq!(key["crv"], json!("P-256"), "{key}");
    assert!(key.get("d").is_none(), "no private part: {key}");
}

#[tokio::test]
async fn openapi() {
    let app = TestApp::spawn().await;
    let openapi = start("openapi", &app).await;

    let document = openapi
        .http(&HttpEvent::get("/openapi.json"))
        .await
        .expect(200);
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "OpenAPI 3.1, got {version:?}");
    let paths = document["paths"].as_object().expect("paths");
    for endpoint in ENDPOINTS {
        let described = paths
            .get(endpoint.path)
            .unwrap_or_else(|| panic!("{} is not described", endpoint.path));
        for method in endpoint.methods {
            assert!(
                described.get(method.to_ascii_lowercase()).is_some(),
                "{method} {} is not described",
                endpoint.path
            );
        }
    }
    let docs = openapi.http(&HttpEvent::get("/docs")).await;
    assert_eq!(docs.status, 200, "{}", docs.body);
    assert!(
        docs.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        docs.headers
    );
    assert!(
        docs.body.contains("id=\"swagger-ui\""),
        "/docs is Swagger UI's page: {}",
        docs.body
    );
    let stylesheet = openapi.http(&HttpEvent::get("/docs/swagger-ui.css")).await;
    assert_eq!(stylesheet.status, 200);
    assert_eq!(
        stylesheet.header("content-type"),
        Some("text/css; charset=utf-8"),
        "{:?}",
        stylesheet.headers
    );
}
