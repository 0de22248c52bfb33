//! The audit trail: security events are stored (DynamoDB with `AUDIT_TABLE`, served here by
//! a local moto server through the real AWS SDK; Postgres otherwise) and
//! `GET /v1/admin/users/{id}/audit` returns a user's events newest first, page by page.
//!
//! The DynamoDB test needs `MOTO_ENDPOINT` (and the fake `AWS_*` credentials), which
//! `scripts/test.sh` sets after starting moto. Without it the test fails when `CI` is set
//! and is skipped (saying why) otherwise.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, FixedOffset, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use user_service_tests::moto::{create_audit_table, dynamodb, moto_endpoint};
use user_service_tests::test_app::unique_admin_email;
use user_service_tests::{
    TestApp, TestAppBuilder, TestUser, assert_problem, eventually, expect_json, strong_password,
};
use uuid::Uuid;

/// Events are stored in the background: how long a test waits for them.
const SETTLE: Duration = Duration::from_secs(15);

/// What the scenario below leaves in the user's trail, newest first: (type, outcome, reason).
const EXPECTED: &[(&str, &str, Option<&str>)] = &[
    ("admin_user_updated", "success", Some("profile_only")),
    ("logout", "success", None),
    ("login", "success", None),
    ("login", "failure", Some("wrong_password")),
    ("login", "success", None),
    ("user_registered", "success", None),
];

/// An app with a bootstrap admin, configured by `configure`, and that admin, logged in.
async fn spawn_with_admin(
    configure: impl FnOnce(TestAppBuilder) -> TestAppBuilder,
) -> (TestApp, TestUser) {
    let email = unique_admin_email();
    let password = strong_password();
    let app = configure(TestApp::builder().bootstrap_admin(&email, &password))
        .spawn()
        .await;
    let admin = app.login_user(&email, &password).await;
    (app, admin)
}

/// GET /v1/admin/users/`id`/audit?`query`.
async fn audit(app: &TestApp, token: &str, id: &str, query: &str) -> reqwest::Response {
    let path = if query.is_empty() {
        format!("/v1/admin/users/{id}/audit")
    } else {
        format!("/v1/admin/users/{id}/audit?{query}")
    };
    app.get_authed(&path, token).await
}

/// Registers and logs in a user (login success), fails a login with a wrong password, logs
/// in again and logs that session out, then has the admin rename the user: the trail
/// `EXPECTED` describes. Returns the user.
async fn scenario(app: &TestApp, admin: &TestUser) -> TestUser {
    let user = app.new_user().await;
    assert_problem(
        app.login(&user.email, "not the password at all").await,
        401,
        "invalid_credentials",
    )
    .await;
    let second = app.login_ok(&user.email, &user.password).await;
    let resp = app.logout(&second.access_token, None).await;
    assert_eq!(resp.status(), 204, "logout");
    expect_json(
        app.admin_patch(
            &admin.tokens.access_token,
            &user.id,
            &json!({"name": "Audited"}),
        )
        .await,
        200,
    )
    .await;
    user
}

/// Waits until the user's trail holds at least `EXPECTED.len()` events; returns them all
/// (one page of 100).
async fn settled_trail(app: &TestApp, admin: &TestUser, user: &TestUser) -> Vec<Value> {
    let token = &admin.tokens.access_token;
    let settled = eventually(SETTLE, || async {
        let page = expect_json(audit(app, token, &user.id, "limit=100").await, 200).await;
        page["events"].as_array().map_or(0, Vec::len) >= EXPECTED.len()
    })
    .await;
    let page = expect_json(audit(app, token, &user.id, "limit=100").await, 200).await;
    assert!(
        settled,
        "the audit trail did not fill up within {SETTLE:?}: {page}"
    );
    assert_eq!(
        page["next_cursor"],
        Value::Null,
        "one page holds it all: {page}"
    );
    page["events"].as_array().expect("events").clone()
}

fn at(event: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(event["at"].as_str().expect("at is a string"))
        .unwrap_or_else(|e| panic!("at is not RFC 3339 ({e}): {event}"))
}

/// The trail is what the scenario did, newest first, with the fields the contract names.
fn check_trail(events: &[Value], admin: &TestUser) {
    let summary: Vec<(String, String, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let expected: Vec<(String, String, Option<String>)> = EXPECTED
        .iter()
        .map(|(t, o, r)| ((*t).to_owned(), (*o).to_owned(), r.map(str::to_owned)))
        .collect();
    assert_eq!(summary, expected, "the trail, newest first: {events:#?}");
    for pair in events.windows(2) {
        assert!(at(&pair[0]) >= at(&pair[1]), "newest first: {pair:#?}");
    }
    for event in events {
        for field in [
            "at",
            "type",
            "outcome",
            "ip",
            "reason",
            "actor_id",
            "session_id",
            "changes",
        ] {
            assert!(
                event.get(field).is_some(),
                "every event has `{field}`: {event}"
            );
        }
        assert!(
            at(event) > Utc::now() - chrono::Duration::minutes(5),
            "recent: {event}"
        );
        // The tests send a random X-Forwarded-For, which the app trusts.
        assert!(
            event["ip"]
                .as_str()
                .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok()),
            "an IP: {event}"
        );
    }
    let admin_event = &events[0];
    assert_eq!(
        admin_event["actor_id"],
        admin.id.as_str(),
        "the admin acted: {admin_event}"
    );
    assert!(
        admin_event["changes"]
            .as_str()
            .is_some_and(|c| c.contains("name")),
        "names what changed: {admin_event}"
    );
    assert!(
        events[1]["session_id"].as_str().is_some(),
        "logout names its session: {}",
        events[1]
    );
}

/// Follows `next_cursor` with `limit`; returns every event in order, and the page count.
async fn all_pages(
    app: &TestApp,
    admin: &TestUser,
    user: &TestUser,
    limit: usize,
) -> (Vec<Value>, usize) {
    let token = &admin.tokens.access_token;
    let mut events = Vec::new();
    let mut query = format!("limit={limit}");
    let mut pages = 0;
    loop {
        let page = expect_json(audit(app, token, &user.id, &query).await, 200).await;
        pages += 1;
        let batch = page["events"].as_array().expect("events");
        assert!(batch.len() <= limit, "at most `limit` events: {page}");
        events.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(
                    !batch.is_empty(),
                    "a page with a next cursor has events: {page}"
                );
                query = format!("limit={limit}&cursor={cursor}");
            }
            None => break,
        }
        assert!(pages < 50, "pagination does not end");
    }
    (events, pages)
}

/// The endpoint's own rules: paging, cursors bound to the user, limits, 404s, admins only.
async fn check_endpoint(app: &TestApp, admin: &TestUser, user: &TestUser, all: &[Value]) {
    let token = &admin.tokens.access_token;
    let (paged, pages) = all_pages(app, admin, user, 2).await;
    assert_eq!(paged, all, "pages of 2 add up to the whole trail, in order");
    assert_eq!(pages, EXPECTED.len().div_ceil(2), "page count");
    let (paged, _) = all_pages(app, admin, user, 4).await;
    assert_eq!(paged, all, "pages of 4 add up to the whole trail, in order");

    // The default page size is 20: the whole trail here.
    let page = expect_json(audit(app, token, &user.id, "").await, 200).await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(all.len()));

    // A cursor is bound to its user and cannot be forged.
    let first = expect_json(audit(app, token, &user.id, "limit=1").await, 200).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    assert_problem(
        audit(app, token, &admin.id, &format!("cursor={cursor}")).await,
        400,
        "malformed_request",
    )
    .await;
    let mut tampered = cursor.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for bad in [tampered.as_str(), "garbage", "e30.e30"] {
        assert_problem(
            audit(app, token, &user.id, &format!("cursor={bad}")).await,
            400,
            "malformed_request",
        )
        .await;
    }
    for limit in ["0", "101", "-1", "abc", "1.5"] {
        assert_problem(
            audit(app, token, &user.id, &format!("limit={limit}")).await,
            400,
            "validation_failed",
        )
        .await;
    }
    assert_problem(
        audit(app, token, &Uuid::now_v7().to_string(), "").await,
        404,
        "not_found",
    )
    .await;
    assert_problem(audit(app, token, "not-a-uuid", "").await, 404, "not_found").await;
    assert_problem(
        audit(app, &user.tokens.access_token, &user.id, "").await,
        403,
        "forbidden",
    )
    .await;
    // The 403 lands in the user's trail (one more event than `EXPECTED`).
    denial_in_trail(app, admin, user, "GET /v1/admin/users/{id}/audit").await;
    let resp = app
        .request(Method::GET, &format!("/v1/admin/users/{}/audit", user.id))
        .send()
        .await
        .expect("request");
    assert_problem(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn audit_events_land_in_dynamodb_and_the_admin_route_serves_them() {
    let Some(endpoint) = moto_endpoint("the DynamoDB audit trail") else {
        return;
    };
    let client = dynamodb(&endpoint);
    let table = format!("audit-test-{}", Uuid::new_v4().simple());
    create_audit_table(&client, &table).await;

    let (app, admin) = spawn_with_admin(|b| {
        b.env("AUDIT_TABLE", &table)
            .env("AWS_ENDPOINT_URL", &endpoint)
    })
    .await;
    let user = scenario(&app, &admin).await;
    let events = settled_trail(&app, &admin, &user).await;
    check_trail(&events, &admin);
    check_endpoint(&app, &admin, &user, &events).await;

    // The items are in the table, keyed by user, with a TTL 90 days out (the default).
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
    assert_eq!(
        items.len(),
        EXPECTED.len() + 1,
        "one item per event, the 403 of check_endpoint included: {items:#?}"
    );
    for item in &items {
        let expires_at: i64 = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a numeric expires_at: {item:?}"));
        let days = (expires_at - Utc::now().timestamp()) as f64 / 86_400.0;
        assert!(
            (89.9..=90.1).contains(&days),
            "expires in 90 days, not {days}: {item:?}"
        );
        let sk = item.get("sk").and_then(|v| v.as_s().ok()).expect("sk");
        assert!(sk.contains('#'), "sk is time#id: {sk}");
    }
    // Nothing went to Postgres.
    let rows = app
        .database()
        .await
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(rows, 0, "with AUDIT_TABLE, Postgres keeps no audit events");

    drop(app);
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("deleting table {table}: {e:?}"));
}

#[tokio::test]
async fn without_an_audit_table_events_are_kept_in_postgres_and_served_the_same_way() {
    let (app, admin) = spawn_with_admin(|b| b.env("AUDIT_RETENTION_DAYS", 30)).await;
    let user = scenario(&app, &admin).await;
    let events = settled_trail(&app, &admin, &user).await;
    check_trail(&events, &admin);
    check_endpoint(&app, &admin, &user, &events).await;

    let user_id: Uuid = user.id.parse().expect("uuid");
    let rows = app
        .database()
        .await
        .query(
            "SELECT extract(epoch FROM expires_at - at)::float8 / 86400 FROM audit_events
             WHERE user_id = $1",
            &[&user_id],
        )
        .await
        .expect("query audit_events");
    assert_eq!(
        rows.len(),
        EXPECTED.len() + 1,
        "one row per event, the 403 of check_endpoint included"
    );
    for row in rows {
        let days: f64 = row.get(0);
        assert!(
            (days - 30.0).abs() < 1e-6,
            "kept AUDIT_RETENTION_DAYS: {days}"
        );
    }
}

/// Waits until `user`'s trail shows an `admin_access_denied` of `operation`; returns it.
async fn denial_in_trail(
    app: &TestApp,
    admin: &TestUser,
    user: &TestUser,
    operation: &str,
) -> Value {
    let token = &admin.tokens.access_token;
    let denial = |page: &Value| {
        page["events"].as_array().and_then(|events| {
            events
                .iter()
                .find(|e| e["type"] == "admin_access_denied" && e["changes"] == operation)
                .cloned()
        })
    };
    eventually(SETTLE, || async {
        let page = expect_json(audit(app, token, &user.id, "limit=100").await, 200).await;
        denial(&page).is_some()
    })
    .await;
    let page = expect_json(audit(app, token, &user.id, "limit=100").await, 200).await;
    denial(&page).unwrap_or_else(|| panic!("no admin_access_denied for {operation}: {page}"))
}

/// Contract, "Audit" (v2): a user-role token refused an admin route (403) is in that
/// user's trail: who (its session), which operation, from which IP.
#[tokio::test]
async fn a_403_on_an_admin_route_is_in_the_callers_trail() {
    let (app, admin) = spawn_with_admin(|b| b).await;
    let user = app.new_user().await;
    let ip = "198.51.100.23";
    let resp = app
        .request_from(ip, Method::GET, "/v1/admin/users")
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .expect("request");
    assert_problem(resp, 403, "forbidden").await;
    let event = denial_in_trail(&app, &admin, &user, "GET /v1/admin/users").await;
    assert_eq!(event["outcome"], "failure", "{event}");
    assert_eq!(event["reason"], "not_admin", "{event}");
    assert_eq!(event["ip"], ip, "{event}");
    assert_eq!(event["actor_id"], Value::Null, "{event}");
    let session_id = user_service_tests::jwt::claims_of(&user.tokens.access_token)["sid"].clone();
    assert_eq!(
        event["session_id"], session_id,
        "the token's session: {event}"
    );
}

#[tokio::test]
async fn a_deleted_users_trail_is_not_found_and_the_bootstrap_is_in_the_admins() {
    let (app, admin) = spawn_with_admin(|b| b).await;
    let user = app.new_user().await;
    let resp = app.admin_delete(&admin.tokens.access_token, &user.id).await;
    assert_eq!(resp.status(), 204, "delete");
    assert_problem(
        audit(&app, &admin.tokens.access_token, &user.id, "").await,
        404,
        "not_found",
    )
    .await;
    // The admin's own trail is there (the bootstrap, its login, the deletion is the user's).
    let settled = eventually(SETTLE, || async {
        let page = expect_json(
            audit(&app, &admin.tokens.access_token, &admin.id, "").await,
            200,
        )
        .await;
        page["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["type"] == "admin_bootstrapped"))
    })
    .await;
    assert!(settled, "the bootstrap admin's creation is in its trail");
}
