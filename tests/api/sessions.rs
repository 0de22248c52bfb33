//! The caller's sessions: `GET /v1/users/me/sessions` lists the live ones, `DELETE
//! /v1/users/me/sessions/{id}` ends one at once (on every instance and in the authorizer),
//! and the cleanup deletes dead sessions and expired tokens in bounded batches.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use user_service::auth::authorizer::authorize_request;
use user_service::auth::rules::RouteRules;
use user_service_tests::jwt::claims_of;
use user_service_tests::runtime_api::authorizer_event;
use user_service_tests::{
    TestApp, TokenPair, assert_problem, eventually, expect_json, expect_status, token_pair,
};
use uuid::Uuid;

const SESSIONS: &str = "/v1/users/me/sessions";

/// POST /v1/auth/login from `ip` with `User-Agent: user_agent` (none when `None`).
async fn login_with(
    app: &TestApp,
    email: &str,
    password: &str,
    ip: &str,
    user_agent: Option<&str>,
) -> TokenPair {
    let mut request = app
        .request_from(ip, Method::POST, "/v1/auth/login")
        .json(&json!({ "email": email, "password": password }));
    if let Some(user_agent) = user_agent {
        request = request.header("user-agent", user_agent);
    }
    let response = request.send().await.expect("login request");
    token_pair(expect_json(response, 200).await)
}

/// GET /v1/users/me/sessions with `token`, asserting 200 and the shape of every item.
async fn list(app: &TestApp, token: &str) -> Vec<Value> {
    let body = expect_json(app.get_authed(SESSIONS, token).await, 200).await;
    let sessions = body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("a `sessions` array: {body}"))
        .clone();
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    for session in &sessions {
        let mut keys: Vec<&str> = session
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "created_at",
                "current",
                "expires_at",
                "id",
                "ip",
                "last_used_at",
                "user_agent"
            ],
            "{session}"
        );
    }
    sessions
}

/// DELETE /v1/users/me/sessions/`id` with `token`.
async fn delete(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.request(Method::DELETE, &format!("{SESSIONS}/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete request")
}

fn sid(pair: &TokenPair) -> String {
    claims_of(&pair.access_token)["sid"]
        .as_str()
        .expect("sid")
        .to_owned()
}

fn time(session: &Value, field: &str) -> DateTime<Utc> {
    session[field]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("{field} is an RFC 3339 time: {session}"))
        .with_timezone(&Utc)
}

fn find<'a>(sessions: &'a [Value], id: &str) -> &'a Value {
    sessions
        .iter()
        .find(|s| s["id"] == json!(id))
        .unwrap_or_else(|| panic!("session {id} listed: {sessions:?}"))
}

fn ids(sessions: &[Value]) -> Vec<&str> {
    sessions.iter().filter_map(|s| s["id"].as_str()).collect()
}

/// Asserts the session's `expires_at` is `pair`'s refresh expiry (to the second or so).
fn assert_expires_with(session: &Value, pair: &TokenPair) {
    let expected = Utc::now() + chrono::Duration::seconds(pair.refresh_expires_in);
    let diff = (time(session, "expires_at") - expected).num_seconds().abs();
    assert!(
        diff <= 5,
        "expires_at is when the refresh token expires ({expected}): {session}"
    );
}

#[tokio::test]
async fn the_list_shows_each_login_newest_first_with_where_it_came_from() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let first = user.tokens.clone();
    let a = login_with(
        &app,
        &user.email,
        &user.password,
        "10.1.2.3",
        Some("Agent-A/1.0 (X11)"),
    )
    .await;
    let long_agent = format!("Agent-B/{}", "é".repeat(300));
    let b = login_with(
        &app,
        &user.email,
        &user.password,
        "2001:db8::7",
        Some(&long_agent),
    )
    .await;

    let sessions = list(&app, &b.access_token).await;
    assert_eq!(
        ids(&sessions),
        [sid(&b), sid(&a), sid(&first)],
        "newest first"
    );
    let current: Vec<&Value> = sessions
        .iter()
        .filter(|s| s["current"] == json!(true))
        .collect();
    assert_eq!(current.len(), 1, "{sessions:?}");
    assert_eq!(current[0]["id"], json!(sid(&b)));

    let listed_b = find(&sessions, &sid(&b));
    assert_eq!(listed_b["ip"], json!("2001:db8::7"));
    let cut: String = long_agent.chars().take(256).collect();
    assert_eq!(listed_b["user_agent"], json!(cut), "cut to 256 characters");
    let listed_a = find(&sessions, &sid(&a));
    assert_eq!(listed_a["ip"], json!("10.1.2.3"));
    assert_eq!(listed_a["user_agent"], json!("Agent-A/1.0 (X11)"));
    assert_eq!(listed_a["current"], json!(false));
    let listed_first = find(&sessions, &sid(&first));
    assert_eq!(listed_first["user_agent"], Value::Null, "no header: null");
    assert!(listed_first["ip"].is_string(), "{listed_first}");
    for (session, pair) in [(listed_a, &a), (listed_b, &b), (listed_first, &first)] {
        assert_eq!(
            session["last_used_at"], session["created_at"],
            "not refreshed yet: {session}"
        );
        assert_expires_with(session, pair);
    }

    // A refresh keeps the session and moves its last use and its expiry.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a2 = app.refresh_ok(&a.refresh_token).await;
    assert_eq!(sid(&a2), sid(&a), "a rotation stays in its session");
    let sessions = list(&app, &a2.access_token).await;
    assert_eq!(ids(&sessions), [sid(&b), sid(&a), sid(&first)]);
    let refreshed = find(&sessions, &sid(&a));
    assert_eq!(refreshed["current"], json!(true));
    assert_eq!(refreshed["created_at"], listed_a["created_at"]);
    assert!(
        time(refreshed, "last_used_at") > time(refreshed, "created_at"),
        "last_used_at moved: {refreshed}"
    );
    assert!(
        time(refreshed, "expires_at") > time(listed_a, "expires_at"),
        "expires_at moved: {refreshed} (was {listed_a})"
    );
    assert_expires_with(refreshed, &a2);
    assert_eq!(find(&sessions, &sid(&b))["current"], json!(false));

    // A logged-out session is gone from the list.
    expect_status(app.logout(&b.access_token, None).await, 204).await;
    let sessions = list(&app, &a2.access_token).await;
    assert_eq!(ids(&sessions), [sid(&a), sid(&first)]);

    // Another user sees only its own.
    let other = app.new_user().await;
    let theirs = list(&app, &other.tokens.access_token).await;
    assert_eq!(ids(&theirs), [sid(&other.tokens)]);

    assert_problem(app.get(SESSIONS).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn deleting_a_session_ends_it_at_once_on_every_instance_and_in_the_authorizer() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let user = a.new_user().await;
    let other = b.login_ok(&user.email, &user.password).await;
    b.assert_me_status(&other.access_token, 200).await;

    // The authorizer of the same deployment.
    let state = user_service::app::state(&b.config)
        .await
        .expect("authorizer state");
    let rules = RouteRules::from_config(&b.config).expect("route rules");
    let decide = |token: String| {
        let state = state.clone();
        let rules = rules.clone();
        async move {
            let event: aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request =
                serde_json::from_value(authorizer_event(
                    "GET /v1/users/me",
                    "/v1/users/me",
                    Some(&format!("Bearer {token}")),
                ))
                .expect("authorizer event");
            let response = authorize_request(
                state.authenticator.tokens(),
                state.authenticator.revocations(),
                &rules,
                &state.audit,
                &event,
            )
            .await
            .expect("the authorizer decides");
            response.is_authorized
        }
    };
    assert!(decide(other.access_token.clone()).await, "allowed before");

    expect_status(
        delete(&a, &user.tokens.access_token, &sid(&other)).await,
        204,
    )
    .await;
    b.assert_me_status(&other.access_token, 401).await;
    assert!(!decide(other.access_token.clone()).await, "denied at once");
    b.assert_refresh_rejected(&other.refresh_token).await;

    // The caller's own session goes on, on both instances and in the authorizer.
    b.assert_me_status(&user.tokens.access_token, 200).await;
    assert!(decide(user.tokens.access_token.clone()).await);
    let sessions = list(&b, &user.tokens.access_token).await;
    assert_eq!(ids(&sessions), [sid(&user.tokens)]);
    let renewed = b.refresh_ok(&user.tokens.refresh_token).await;
    a.assert_me_status(&renewed.access_token, 200).await;

    // Gone: a second deletion finds nothing.
    assert_problem(
        delete(&b, &renewed.access_token, &sid(&other)).await,
        404,
        "not_found",
    )
    .await;

    // In the user's audit trail, naming the session.
    let path = format!("/v1/admin/users/{}/audit", user.id);
    let deleted = sid(&other);
    let found = eventually(Duration::from_secs(15), || async {
        let trail = expect_json(a.get_authed(&path, &admin.tokens.access_token).await, 200).await;
        trail["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["type"] == json!("session_deleted")
                    && e["outcome"] == json!("success")
                    && e["session_id"] == json!(deleted)
            })
        })
    })
    .await;
    assert!(found, "a session_deleted event for {deleted} in the trail");
}

#[tokio::test]
async fn deleting_ones_current_session_ends_it_too() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    expect_status(
        delete(&app, &user.tokens.access_token, &sid(&user.tokens)).await,
        204,
    )
    .await;
    app.assert_me_status(&user.tokens.access_token, 401).await;
    app.assert_refresh_rejected(&user.tokens.refresh_token)
        .await;
    assert_problem(
        app.get_authed(SESSIONS, &user.tokens.access_token).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn only_the_callers_live_sessions_can_be_deleted() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let victim = app.new_user().await;
    let token = &user.tokens.access_token;

    // Another user's session: not found, and it keeps working.
    assert_problem(
        delete(&app, token, &sid(&victim.tokens)).await,
        404,
        "not_found",
    )
    .await;
    app.assert_me_status(&victim.tokens.access_token, 200).await;
    let renewed = app.refresh_ok(&victim.tokens.refresh_token).await;
    app.assert_me_status(&renewed.access_token, 200).await;

    // An unknown id, an id that is not a UUID, an ended session.
    for id in [Uuid::now_v7().to_string(), "not-a-uuid".into(), "42".into()] {
        assert_problem(delete(&app, token, &id).await, 404, "not_found").await;
    }
    let ended = app.login_ok(&user.email, &user.password).await;
    expect_status(app.logout(&ended.access_token, None).await, 204).await;
    assert_problem(delete(&app, token, &sid(&ended)).await, 404, "not_found").await;

    // None of this touched the caller's session; no token at all is 401.
    app.assert_me_status(token, 200).await;
    let response = app
        .request(Method::DELETE, &format!("{SESSIONS}/{}", sid(&user.tokens)))
        .send()
        .await
        .expect("request");
    assert_problem(response, 401, "unauthorized").await;
}

/// Rows of `table` (the test's own connection).
async fn count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn the_cleanup_deletes_dead_rows_in_bounded_batches_and_keeps_live_ones() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let db = app.database().await;
    let user_id: Uuid = user.id.parse().expect("user id");

    // Five logins per kind of dead session, one live one (the user's first), one revoked an
    // hour ago (still kept: dead for less than a day).
    let mut logins = Vec::new();
    for _ in 0..16 {
        logins.push(app.login_ok(&user.email, &user.password).await);
    }
    let ids: Vec<Uuid> = logins
        .iter()
        .map(|p| sid(p).parse().expect("sid"))
        .collect();
    let (revoked, rest) = ids.split_at(5);
    let (expired, rest) = rest.split_at(5);
    let (idle, recent) = rest.split_at(5);
    // Each dead session also has spent refresh tokens (a few rotations).
    for pair in &logins[..15] {
        let next = app.refresh_ok(&pair.refresh_token).await;
        app.refresh_ok(&next.refresh_token).await;
    }
    db.execute(
        "UPDATE sessions SET revoked_at = now() - interval '2 days', revoked_reason = 'logout'
         WHERE id = ANY($1)",
        &[&revoked],
    )
    .await
    .expect("revoke");
    db.execute(
        "UPDATE sessions SET revoked_at = now() - interval '1 hour', revoked_reason = 'logout'
         WHERE id = ANY($1)",
        &[&recent],
    )
    .await
    .expect("revoke recently");
    db.execute(
        "UPDATE sessions SET created_at = now() - interval '100 days',
                             absolute_expires_at = now() - interval '2 days'
         WHERE id = ANY($1)",
        &[&expired],
    )
    .await
    .expect("expire");
    db.execute(
        "UPDATE sessions SET created_at = now() - interval '60 days',
                             last_refreshed_at = now() - interval '40 days'
         WHERE id = ANY($1)",
        &[&idle],
    )
    .await
    .expect("idle");
    db.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '2 days'
         WHERE session_id = ANY($1)",
        &[&[expired, idle].concat()],
    )
    .await
    .expect("expire their refresh tokens");
    // Password-reset tokens: expired, used, live.
    for (hash, expires, used) in [
        (vec![1u8; 32], "now() - interval '2 days'", "NULL"),
        (
            vec![2u8; 32],
            "now() + interval '10 days'",
            "now() - interval '2 days'",
        ),
        (vec![3u8; 32], "now() + interval '20 minutes'", "NULL"),
    ] {
        db.execute(
            &format!(
                "INSERT INTO password_reset_tokens (token_hash, user_id, expires_at, used_at)
                 VALUES ($1, $2, {expires}, {used})"
            ),
            &[&hash, &user_id],
        )
        .await
        .expect("reset token");
    }
    let sessions_before = count(&db, "sessions").await;
    let tokens_before = count(&db, "refresh_tokens").await;
    assert_eq!(sessions_before, 17);

    // One bounded pass: at most `batch` rows per statement, `max_batches` statements each.
    let mut cleanup = user_service::app::cleanup(&app.config).expect("cleanup");
    let full = cleanup.policy;
    cleanup.policy.batch = 4;
    cleanup.policy.max_batches = 2;
    let pruned = cleanup.run().await.expect("bounded pass");
    assert!(
        pruned.of("refresh_tokens") <= 2 * 2 * 4,
        "two token statements: {pruned:?}"
    );
    assert!(pruned.of("sessions") <= 2 * 4, "{pruned:?}");
    assert_eq!(
        tokens_before - count(&db, "refresh_tokens").await,
        pruned.of("refresh_tokens") as i64
    );
    assert_eq!(
        sessions_before - count(&db, "sessions").await,
        pruned.of("sessions") as i64
    );
    assert!(
        pruned.of("refresh_tokens") > 0,
        "it made progress: {pruned:?}"
    );

    // Passes with the default bounds finish the work.
    cleanup.policy = full;
    let mut passes = 0;
    while cleanup.run().await.expect("pass").total() > 0 {
        passes += 1;
        assert!(passes < 10, "the cleanup converges");
    }
    let left: Vec<Uuid> = db
        .query("SELECT id FROM sessions ORDER BY id", &[])
        .await
        .expect("sessions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut kept: Vec<Uuid> = recent.to_vec();
    kept.push(sid(&user.tokens).parse().expect("sid"));
    kept.sort_unstable();
    assert_eq!(left, kept, "the live one and the recently revoked one stay");
    let orphans = db
        .query_one(
            "SELECT count(*) FROM refresh_tokens WHERE NOT (session_id = ANY($1))",
            &[&kept],
        )
        .await
        .expect("orphans")
        .get::<_, i64>(0);
    assert_eq!(orphans, 0, "no refresh token of a deleted session is left");
    let resets: Vec<Vec<u8>> = db
        .query("SELECT token_hash FROM password_reset_tokens", &[])
        .await
        .expect("reset tokens")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(resets, [vec![3u8; 32]], "only the live reset token stays");

    // The live session still works, refreshes and is listed.
    let renewed = app.refresh_ok(&user.tokens.refresh_token).await;
    let sessions = list(&app, &renewed.access_token).await;
    assert_eq!(
        sessions.iter().map(|s| s["id"].clone()).collect::<Vec<_>>(),
        [json!(sid(&user.tokens))]
    );
}
