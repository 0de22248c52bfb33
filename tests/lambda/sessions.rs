//! The caller's sessions: list-sessions and delete-session (by bearer token and behind the
//! authorizer), and the scheduled cleanup.

use serde_json::{Value, json};
use user_service_tests::jwt::claims_of;
use user_service_tests::runtime_api::{HttpEvent, LambdaProcess, authorizer_event};
use user_service_tests::{TestApp, TokenPair};

use super::{authed, start};

fn sid(pair: &TokenPair) -> String {
    claims_of(&pair.access_token)["sid"]
        .as_str()
        .expect("sid")
        .to_owned()
}

#[tokio::test]
async fn list_sessions() {
    let app = TestApp::spawn().await;
    let [list_sessions, login] = LambdaProcess::start_all(["list-sessions", "login"], &app).await;
    let user = app.new_user().await;

    // A login through the login function: API Gateway's source IP and the User-Agent header.
    let pair: TokenPair = serde_json::from_value(
        login
            .http(
                &HttpEvent::post_json(
                    "/v1/auth/login",
                    &json!({ "email": user.email, "password": user.password }),
                )
                .source_ip("198.51.100.23")
                .header("user-agent", "Phone-App/2.1"),
            )
            .await
            .expect(200),
    )
    .expect("a token pair");

    let listed = list_sessions
        .http(&HttpEvent::get("/v1/users/me/sessions").bearer(&pair.access_token))
        .await
        .expect(200);
    let sessions = listed["sessions"].as_array().expect("sessions").clone();
    let ids: Vec<&Value> = sessions.iter().map(|s| &s["id"]).collect();
    assert_eq!(
        ids,
        [&json!(sid(&pair)), &json!(sid(&user.tokens))],
        "newest first"
    );
    assert_eq!(sessions[0]["ip"], json!("198.51.100.23"));
    assert_eq!(sessions[0]["user_agent"], json!("Phone-App/2.1"));
    assert_eq!(sessions[0]["current"], json!(true));
    assert_eq!(sessions[1]["current"], json!(false));

    list_sessions
        .http(&HttpEvent::get("/v1/users/me/sessions"))
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn delete_session() {
    let app = TestApp::spawn().await;
    let [delete_session, authorizer] =
        LambdaProcess::start_all(["delete-session", "authorizer"], &app).await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    let path = format!("/v1/users/me/sessions/{}", sid(&other));
    let route_key = "DELETE /v1/users/me/sessions/{id}";

    // Behind the authorizer: its allow's context and the forwarded header.
    let bearer = format!("Bearer {}", user.tokens.access_token);
    let allow = authorizer
        .invoke(&authorizer_event(route_key, &path, Some(&bearer)))
        .await;
    assert_eq!(allow["isAuthorized"], json!(true), "{allow}");
    let response = delete_session
        .http(
            &HttpEvent::new("DELETE", &path)
                .route_key(route_key)
                .header("authorization", &bearer)
                .authorizer_context(&allow["context"]),
        )
        .await;
    assert_eq!(response.status, 204, "{}", response.body);
    app.assert_me_status(&other.access_token, 401).await;
    app.assert_refresh_rejected(&other.refresh_token).await;
    app.assert_me_status(&user.tokens.access_token, 200).await;
    let other_bearer = format!("Bearer {}", other.access_token);
    let denied = authorizer
        .invoke(&authorizer_event(
            "GET /v1/users/me",
            "/v1/users/me",
            Some(&other_bearer),
        ))
        .await;
    assert_eq!(denied["isAuthorized"], json!(false), "{denied}");

    // With the bearer token: ended already, another user's, not a UUID.
    delete_session
        .http(&authed("DELETE", &path, &user))
        .await
        .expect_problem(404, "not_found");
    let stranger = app.new_user().await;
    delete_session
        .http(&authed(
            "DELETE",
            &format!("/v1/users/me/sessions/{}", sid(&user.tokens)),
            &stranger,
        ))
        .await
        .expect_problem(404, "not_found");
    app.assert_me_status(&user.tokens.access_token, 200).await;
    delete_session
        .http(&authed("DELETE", "/v1/users/me/sessions/nope", &user))
        .await
        .expect_problem(404, "not_found");
    delete_session
        .http(&HttpEvent::new("DELETE", &path))
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn cleanup() {
    let app = TestApp::spawn().await;
    let cleanup = start("cleanup", &app).await;
    let user = app.new_user().await;
    let ended = app.login_ok(&user.email, &user.password).await;
    let db = app.database().await;
    let ended_id: uuid::Uuid = sid(&ended).parse().expect("sid");
    db.execute(
        "UPDATE sessions SET revoked_at = now() - interval '2 days', revoked_reason = 'logout'
         WHERE id = $1",
        &[&ended_id],
    )
    .await
    .expect("end it long ago");

    // The event EventBridge's schedule sends.
    let event = json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-03T10:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/cleanup-hourly"],
        "detail": {}
    });
    let answer = cleanup.invoke(&event).await;
    assert_eq!(answer["deleted"]["sessions"], json!(1), "{answer}");
    assert_eq!(answer["deleted"]["refresh_tokens"], json!(1), "{answer}");
    let left: i64 = db
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 1, "the live session stays");
    app.assert_me_status(&user.tokens.access_token, 200).await;
    app.refresh_ok(&user.tokens.refresh_token).await;

    // Nothing left to do: a second pass deletes nothing.
    let again = cleanup.invoke(&event).await;
    assert_eq!(again["deleted"]["sessions"], json!(0), "{again}");
}
