//! POST /v1/auth/register: the user it returns, and exactly-once under concurrency.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde_json::{Value, json};
use user_service_tests::{TestApp, assert_problem, expect_json, strong_password, unique_email};
use uuid::Uuid;

/// Asserts `user` has exactly the contract's user shape; returns its id.
pub fn assert_user_shape(user: &Value) -> Uuid {
    let keys: BTreeSet<&str> = user
        .as_object()
        .unwrap_or_else(|| panic!("a user is an object: {user}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "id",
        "email",
        "name",
        "role",
        "disabled",
        "email_verified",
        "mfa_enabled",
        "created_at",
        "updated_at",
    ]
    .into();
    assert_eq!(keys, expected, "a user has exactly these fields: {user}");
    let id = Uuid::parse_str(user["id"].as_str().expect("id is a string"))
        .unwrap_or_else(|e| panic!("id is not a UUID ({e}): {user}"));
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7: {user}");
    assert!(user["email"].is_string(), "{user}");
    assert!(user["name"].is_null() || user["name"].is_string(), "{user}");
    assert!(user["role"] == "user" || user["role"] == "admin", "{user}");
    assert!(user["disabled"].is_boolean(), "{user}");
    assert!(user["email_verified"].is_boolean(), "{user}");
    assert!(user["mfa_enabled"].is_boolean(), "{user}");
    for field in ["created_at", "updated_at"] {
        let text = user[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {user}"));
        let at = DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}): {user}"));
        assert_eq!(
            at.offset().local_minus_utc(),
            0,
            "{field} must be UTC: {user}"
        );
        let age = Utc::now().signed_duration_since(at.with_timezone(&Utc));
        assert!(
            age.num_seconds().abs() < 300,
            "{field} is not about now: {user}"
        );
    }
    id
}

#[tokio::test]
async fn register_returns_201_and_the_user() {
    let app = TestApp::spawn().await;
    let local = format!("Mixed.Case-{}", Uuid::new_v4().simple());
    let password = strong_password();
    let resp = app
        .register(&format!("  {local}@Example.COM  "), &password)
        .await;
    let user = expect_json(resp, 201).await;
    assert_user_shape(&user);
    assert_eq!(
        user["email"],
        format!("{}@example.com", local.to_lowercase()),
        "email is trimmed and lowercased"
    );
    assert_eq!(user["name"], Value::Null);
    assert_eq!(user["role"], "user");
    assert_eq!(user["disabled"], false);
    let body = user.to_string();
    assert!(!body.contains(&password), "the password is echoed: {body}");
    assert!(
        !body.to_lowercase().contains("argon2") && !body.contains("$v=19$"),
        "password material in the body: {body}"
    );
}

#[tokio::test]
async fn register_keeps_the_name() {
    let app = TestApp::spawn().await;
    for name in [
        "Ada Lovelace".to_owned(),
        "n".repeat(100),
        // 100 characters, 200 bytes: the limit is in characters.
        "é".repeat(100),
    ] {
        let resp = app
            .post_json(
                "/v1/auth/register",
                &json!({"email": unique_email(), "password": strong_password(), "name": name}),
            )
            .await;
        let user = expect_json(resp, 201).await;
        assert_user_shape(&user);
        assert_eq!(user["name"], name);
    }
}

#[tokio::test]
async fn register_accepts_every_valid_email_form() {
    let app = TestApp::spawn().await;
    let id = Uuid::new_v4().simple().to_string();
    let cases = [
        format!("first.o'brien+tag-{id}@sub.example.com"),
        format!("{}@example.com", format!("{id}{id}").get(..64).expect("64")),
        format!("x{}@a-b.c-d.example.org", &id[..8]),
        format!("{{a}}!#$%&*=?^_`|~-{}@example.com", &id[..8]),
        format!("d{}@123.example.io", &id[..8]),
    ];
    for email in cases {
        let resp = app.register(&email, &strong_password()).await;
        let user = expect_json(resp, 201).await;
        assert_eq!(user["email"], email.to_lowercase());
    }
}

#[tokio::test]
async fn a_password_of_256_characters_is_accepted() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let password = crate::errors::long_strong_password(256);
    app.register_ok(&email, &password).await;
    app.login_ok(&email, &password).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_email_create_exactly_one_user() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let attempts = (0..20).map(|i| {
        let app = &app;
        let email = &email;
        async move {
            // Vary the case: the uniqueness is case-insensitive.
            let email = if i % 2 == 0 {
                email.clone()
            } else {
                email.to_uppercase()
            };
            app.register(&email, &strong_password()).await
        }
    });
    let responses = join_all(attempts).await;
    let mut created = 0;
    for resp in responses {
        if resp.status().as_u16() == 201 {
            created += 1;
        } else {
            assert_problem(resp, 409, "email_taken").await;
        }
    }
    assert_eq!(created, 1, "exactly one of 20 registrations must win");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_distinct_registrations_all_succeed_and_can_log_in() {
    let app = TestApp::spawn().await;
    let users: Vec<(String, String)> = (0..60)
        .map(|_| (unique_email(), strong_password()))
        .collect();
    let responses = join_all(users.iter().map(|(e, p)| app.register(e, p))).await;
    let mut ids = BTreeSet::new();
    for resp in responses {
        let user = expect_json(resp, 201).await;
        ids.insert(user["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 60, "every user gets its own id");
    let logins = join_all(users.iter().map(|(e, p)| app.login(e, p))).await;
    for resp in logins {
        let pair = expect_json(resp, 200).await;
        assert!(ids.contains(pair["user"]["id"].as_str().expect("id")));
    }
}
