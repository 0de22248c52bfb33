//! /healthz, /readyz and the published API description.

use user_service_tests::{TestApp, assert_problem, expect_json, expect_status};

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

// Found by the contract fuzzing (scripts/fuzz.sh): the document said that logout needs a body
// (the contract: optional) and that `limit` may be any integer (the service: 1 to 100).
#[tokio::test]
async fn the_document_states_what_the_service_accepts() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let doc = expect_json(app.get("/openapi.json").await, 200).await;

    let logout_body = &doc["paths"]["/v1/auth/logout"]["post"]["requestBody"];
    assert_ne!(logout_body["required"], true, "logout's body is optional");
    let user = app.new_user().await;
    expect_status(app.logout(&user.tokens.access_token, None).await, 204).await;

    for path in ["/v1/admin/users", "/v1/admin/users/{id}/audit"] {
        let limit = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|params| params.iter().find(|p| p["name"] == "limit"))
            .unwrap_or_else(|| panic!("{path}: no limit parameter"));
        assert_eq!(limit["schema"]["minimum"].as_f64(), Some(1.0), "{path}");
        assert_eq!(limit["schema"]["maximum"].as_f64(), Some(100.0), "{path}");
    }
    // A display name's rules (trimmed, 1 to 100 characters, no control character) are in
    // the document as a pattern; before, a name with a control character was schema-valid.
    for schema in [
        "RegisterRequest",
        "CreateUserRequest",
        "UpdateMeRequest",
        "UpdateUserRequest",
    ] {
        let name = &doc["components"]["schemas"][schema]["properties"]["name"];
        assert!(name["pattern"].is_string(), "{schema}.name has no pattern");
    }
    let resp = app
        .patch_me(
            &app.new_user().await.tokens.access_token,
            &serde_json::json!({"name": "Ada\u{1f}"}),
        )
        .await;
    assert_problem(resp, 400, "validation_failed").await;

    let token = &admin.tokens.access_token;
    for (limit, status) in [(0, 400), (1, 200), (100, 200), (101, 400)] {
        expect_status(
            app.admin_list(token, &format!("limit={limit}")).await,
            status,
        )
        .await;
    }
}
