//! The caller's own account: get-me (by bearer token, behind the authorizer too), update-me,
//! change-password.

use serde_json::json;
use user_service_tests::runtime_api::{HttpEvent, LambdaProcess, authorizer_event};
use user_service_tests::{TestApp, assert_problem, expect_status};

use super::{authed, start};

#[tokio::test]
async fn get_me() {
    let app = TestApp::spawn().await;
    let [get_me, authorizer] = LambdaProcess::start_all(["get-me", "authorizer"], &app).await;
    let user = app.new_user().await;

    // With the bearer token (a route without the authorizer): the function checks it.
    let me = get_me
        .http(&authed("GET", "/v1/users/me", &user))
        .await
        .expect(200);
    assert_eq!(me["id"], json!(user.id));
    assert_eq!(me["email"], json!(user.email));
    assert_eq!(me["role"], json!("user"));
    get_me
        .http(&HttpEvent::get("/v1/users/me"))
        .await
        .expect_problem(401, "unauthorized");

    // Behind the authorizer: its allow's context and the forwarded header. The function
    // verifies the token itself: the context alone, as a direct invoke could forge it,
    // opens nothing.
    let bearer = format!("Bearer {}", user.tokens.access_token);
    let allow = authorizer
        .invoke(&authorizer_event(
            "GET /v1/users/me",
            "/v1/users/me",
            Some(&bearer),
        ))
        .await;
    assert_eq!(allow["isAuthorized"], json!(true), "{allow}");
    let behind_authorizer = HttpEvent::get("/v1/users/me")
        .header("authorization", &bearer)
        .authorizer_context(&allow["context"]);
    let me = get_me.http(&behind_authorizer).await.expect(200);
    assert_eq!(me["id"], json!(user.id));
    get_me
        .http(&HttpEvent::get("/v1/users/me").authorizer_context(&allow["context"]))
        .await
        .expect_problem(401, "unauthorized");

    // After a logout, API Gateway may still replay that allow from its cache: the function
    // re-checks revocation and refuses it.
    expect_status(app.logout(&user.tokens.access_token, None).await, 204).await;
    get_me
        .http(&behind_authorizer)
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn update_me() {
    let app = TestApp::spawn().await;
    let update_me = start("update-me", &app).await;
    let user = app.new_user().await;

    let updated = update_me
        .http(&authed("PATCH", "/v1/users/me", &user).json(&json!({ "name": "Grace Hopper" })))
        .await
        .expect(200);
    assert_eq!(updated["id"], json!(user.id));
    assert_eq!(updated["name"], json!("Grace Hopper"));
    let me = app.me(&user.tokens.access_token).await;
    assert_eq!(
        user_service_tests::expect_json(me, 200).await["name"],
        json!("Grace Hopper")
    );

    update_me
        .http(&authed("PATCH", "/v1/users/me", &user).json(&json!({ "role": "admin" })))
        .await
        .expect_problem(400, "malformed_request");
    update_me
        .http(&HttpEvent::new("PATCH", "/v1/users/me").json(&json!({ "name": "x" })))
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn change_password() {
    let app = TestApp::spawn().await;
    let change_password = start("change-password", &app).await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    let new_password = user_service_tests::strong_password();

    change_password
        .http(&authed("PUT", "/v1/users/me/password", &user).json(&json!({
            "current_password": "not-the-password-at-all-1234",
            "new_password": new_password,
        })))
        .await
        .expect_problem(403, "invalid_credentials");
    let response = change_password
        .http(&authed("PUT", "/v1/users/me/password", &user).json(&json!({
            "current_password": user.password,
            "new_password": new_password,
        })))
        .await;
    assert_eq!(response.status, 204, "{}", response.body);

    // This session keeps working, the other one ends; the new password logs in.
    app.assert_me_status(&user.tokens.access_token, 200).await;
    app.assert_me_status(&other.access_token, 401).await;
    app.login_ok(&user.email, &new_password).await;
    assert_problem(
        app.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
}
