//! The admin user-management endpoints (`/v1/admin/users…`): who may call them, their
//! validation, the bootstrap admin, keyset pagination, last-admin protection, and changes
//! that take effect at once on every instance.
//!
//! Not covered here: the audit route (`/v1/admin/users/{id}/audit`, see `audit.rs`), and that
//! `PATCH /v1/users/me` refuses `role` (see `errors.rs`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use user_service_tests::jwt::claims_of;
use user_service_tests::problem::{check_problem_body, read};
use user_service_tests::{
    TestApp, TestUser, assert_problem, expect_json, expect_status, strong_password, token_pair,
    unique_email,
};
use uuid::Uuid;

use crate::register::assert_user_shape;

// ----- helpers -----

/// Sends `method path` with an optional bearer token and JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app.request(method.clone(), path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} failed: {e:?}"))
}

/// The `users` array of a list page.
fn users_of(page: &Value) -> &Vec<Value> {
    page["users"]
        .as_array()
        .unwrap_or_else(|| panic!("a page has a `users` array: {page}"))
}

/// The ids of `users`, in order.
fn ids(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|u| {
            u["id"]
                .as_str()
                .unwrap_or_else(|| panic!("a user has a string id: {u}"))
                .to_owned()
        })
        .collect()
}

fn created_at(user: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(user["created_at"].as_str().expect("created_at"))
        .unwrap_or_else(|e| panic!("created_at is not RFC 3339 ({e}): {user}"))
}

/// Asserts `users` are newest first (`created_at` never increases).
fn assert_newest_first(users: &[Value], what: &str) {
    for pair in users.windows(2) {
        assert!(
            created_at(&pair[0]) >= created_at(&pair[1]),
            "{what}: not newest first: {} comes before {}",
            pair[0],
            pair[1]
        );
    }
}

/// Asserts no id occurs twice in `users`.
fn assert_no_duplicates(users: &[Value], what: &str) {
    let mut seen = HashSet::new();
    for id in ids(users) {
        assert!(seen.insert(id.clone()), "{what}: user {id} listed twice");
    }
}

/// A cursor with the base64url character at `at` replaced by another that differs in its
/// highest bit (which every character of an encoding uses, the last one included).
fn flip(cursor: &str, at: usize) -> String {
    let mut bytes = cursor.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'g' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

/// How a guarded admin change that may lose a race ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 200 or 204.
    Done,
    /// 409 `last_admin`.
    LastAdmin,
    /// 401 `unauthorized`: the caller's own admin rights were cut off first.
    CutOff,
}

async fn outcome(resp: reqwest::Response, what: &str) -> Outcome {
    let url = resp.url().to_string();
    let (status, content_type, text) = read(resp).await;
    match status {
        200 | 204 => Outcome::Done,
        409 => {
            check_problem_body(&url, 409, "last_admin", &content_type, &text);
            Outcome::LastAdmin
        }
        401 => {
            check_problem_body(&url, 401, "unauthorized", &content_type, &text);
            Outcome::CutOff
        }
        _ => panic!(
            "{what}: expected success, 409 `last_admin` or 401 `unauthorized`, got {status}: {text}"
        ),
    }
}

/// The active (enabled) admins, as the list endpoint shows them.
async fn active_admins(app: &TestApp, admin_token: &str) -> Vec<String> {
    let admins = app.admin_list_all(admin_token, "role=admin").await;
    for admin in &admins {
        assert_eq!(
            admin["role"], "admin",
            "role=admin lists only admins: {admin}"
        );
    }
    let active: Vec<Value> = admins
        .into_iter()
        .filter(|a| a["disabled"] == false)
        .collect();
    ids(&active)
}

/// Registers every email (8 at a time) with a strong password; returns the users.
async fn register_all(app: &TestApp, emails: &[String]) -> Vec<Value> {
    futures::stream::iter(emails)
        .map(|email| async move { app.register_ok(email, &strong_password()).await })
        .buffer_unordered(8)
        .collect()
        .await
}

/// The problem body of a response with volatile members (none are expected) removed, for
/// comparing two answers.
async fn problem_body(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let mut body = assert_problem(resp, status, code).await;
    if let Some(object) = body.as_object_mut() {
        object.remove("instance");
    }
    body
}

// ----- who may call -----

#[tokio::test]
async fn every_admin_route_needs_an_admin_token() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let admin_token = admin.tokens.access_token.as_str();
    let user = app.new_user().await;
    let target = app.new_user().await;
    let victim = app.new_user().await;
    let new_email = unique_email();
    let create_body = json!({"email": new_email, "password": strong_password(), "role": "admin"});
    let patch_body = json!({"role": "admin", "name": "Mallory"});
    let target_path = format!("/v1/admin/users/{}", target.id);
    let victim_path = format!("/v1/admin/users/{}", victim.id);
    let routes: [(Method, &str, Option<&Value>); 5] = [
        (Method::GET, "/v1/admin/users", None),
        (Method::POST, "/v1/admin/users", Some(&create_body)),
        (Method::GET, &target_path, None),
        (Method::PATCH, &target_path, Some(&patch_body)),
        (Method::DELETE, &victim_path, None),
    ];

    for (method, path, body) in &routes {
        let resp = call(&app, method.clone(), path, None, *body).await;
        assert_problem(resp, 401, "unauthorized").await;
        let resp = call(&app, method.clone(), path, Some("not-a-jwt"), *body).await;
        assert_problem(resp, 401, "unauthorized").await;
        let resp = call(
            &app,
            method.clone(),
            path,
            Some(&user.tokens.access_token),
            *body,
        )
        .await;
        assert_problem(resp, 403, "forbidden").await;
    }

    // None of the refused calls changed anything.
    let listed = expect_json(
        app.admin_list(admin_token, &format!("email={new_email}"))
            .await,
        200,
    )
    .await;
    assert!(
        users_of(&listed).is_empty(),
        "a refused create created: {listed}"
    );
    let got = expect_json(app.admin_get(admin_token, &target.id).await, 200).await;
    assert_eq!(got["role"], "user", "a refused patch changed: {got}");
    assert_eq!(got["name"], Value::Null, "a refused patch changed: {got}");
    expect_json(app.admin_get(admin_token, &victim.id).await, 200).await;
    app.assert_me_status(&victim.tokens.access_token, 200).await;
    app.assert_me_status(&user.tokens.access_token, 200).await;

    // An admin token succeeds on every route.
    let page = expect_json(app.admin_list(admin_token, "").await, 200).await;
    let listed = ids(users_of(&page));
    for id in [&admin.id, &user.id, &target.id, &victim.id] {
        assert!(
            listed.contains(id),
            "user {id} missing from the list: {page}"
        );
    }
    assert!(
        page["next_cursor"].is_null(),
        "four users fit one page: {page}"
    );
    for u in users_of(&page) {
        assert_user_shape(u);
    }

    let created = expect_json(app.admin_create(admin_token, &create_body).await, 201).await;
    assert_user_shape(&created);
    assert_eq!(created["email"], new_email);
    assert_eq!(created["role"], "admin");

    let got = expect_json(app.admin_get(admin_token, &target.id).await, 200).await;
    assert_user_shape(&got);
    assert_eq!(got["id"], target.id);
    assert_eq!(got["email"], target.email);
    assert_eq!(got["role"], "user");
    let me = expect_json(app.me(&target.tokens.access_token).await, 200).await;
    assert_eq!(got, me, "the admin sees the user as the user sees itself");

    let patched = expect_json(
        app.admin_patch(admin_token, &target.id, &patch_body).await,
        200,
    )
    .await;
    assert_user_shape(&patched);
    assert_eq!(patched["role"], "admin");
    assert_eq!(patched["name"], "Mallory");

    expect_status(app.admin_delete(admin_token, &victim.id).await, 204).await;
    assert_problem(
        app.admin_get(admin_token, &victim.id).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn unknown_ids_and_ids_that_are_not_uuids_are_404() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    let ids = [
        Uuid::new_v4().to_string(),
        Uuid::nil().to_string(),
        "not-a-uuid".to_owned(),
        "12345".to_owned(),
        format!("{}0", admin.id),
        admin.id[..admin.id.len() - 1].to_owned(),
    ];
    for id in &ids {
        assert_problem(app.admin_get(token, id).await, 404, "not_found").await;
        assert_problem(
            app.admin_patch(token, id, &json!({"name": "Nobody"})).await,
            404,
            "not_found",
        )
        .await;
        assert_problem(
            app.admin_patch(token, id, &json!({"role": "user"})).await,
            404,
            "not_found",
        )
        .await;
        assert_problem(app.admin_delete(token, id).await, 404, "not_found").await;
    }
    // The admin itself was not touched.
    let me = expect_json(app.admin_get(token, &admin.id).await, 200).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["name"], Value::Null);
}

// ----- validation -----

#[tokio::test]
async fn create_validates_like_register() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    let email = unique_email();
    let local = email.split('@').next().expect("local part").to_owned();

    for bad in [
        "",
        "not-an-email",
        "a@b",
        "a..b@example.com",
        " @example.com",
    ] {
        let resp = app
            .admin_create(token, &json!({"email": bad, "password": strong_password()}))
            .await;
        assert_problem(resp, 400, "invalid_email").await;
    }
    for weak in [
        "short".to_owned(),
        "password".to_owned(),
        "12345678".to_owned(),
        format!("zebra {local} quantum lantern"),
    ] {
        let resp = app
            .admin_create(token, &json!({"email": email, "password": weak}))
            .await;
        assert_problem(resp, 400, "weak_password").await;
    }
    let malformed = [
        json!({"email": email, "password": strong_password(), "admin": true}),
        json!({"email": email, "password": strong_password(), "disabled": true}),
        json!({"email": email, "password": strong_password(), "id": Uuid::new_v4().to_string()}),
        json!({"email": email}),
        json!({"password": strong_password()}),
        json!({"email": 5, "password": strong_password()}),
        json!({"email": email, "password": strong_password(), "name": 7}),
        json!([email]),
    ];
    for body in &malformed {
        assert_problem(
            app.admin_create(token, body).await,
            400,
            "malformed_request",
        )
        .await;
    }
    for role in [
        json!("superuser"),
        json!("Admin"),
        json!("ADMIN"),
        json!("User"),
        json!(""),
        json!(" admin"),
        json!(1),
        json!(true),
        json!(["admin"]),
        json!({"name": "admin"}),
    ] {
        let resp = app
            .admin_create(
                token,
                &json!({"email": email, "password": strong_password(), "role": role}),
            )
            .await;
        assert_problem(resp, 400, "malformed_request").await;
    }
    let resp = app
        .admin_create(
            token,
            &json!({"email": email, "password": strong_password(), "name": "n".repeat(101)}),
        )
        .await;
    assert_problem(resp, 400, "validation_failed").await;
    // Nothing was created by any of these.
    let page = expect_json(app.admin_list(token, &format!("email={local}")).await, 200).await;
    assert!(
        users_of(&page).is_empty(),
        "a refused create created: {page}"
    );

    // A valid request: trimmed and lowercased like register, role user by default.
    let mixed = format!("Mixed.Case-{}@Example.COM", Uuid::new_v4().simple());
    let password = strong_password();
    let created = expect_json(
        app.admin_create(
            token,
            &json!({"email": format!("  {mixed}  "), "password": password, "name": "Ada"}),
        )
        .await,
        201,
    )
    .await;
    assert_user_shape(&created);
    assert_eq!(created["email"], mixed.to_lowercase());
    assert_eq!(created["name"], "Ada");
    assert_eq!(created["role"], "user");
    assert_eq!(created["disabled"], false);
    assert!(
        !created.to_string().contains(&password),
        "the password is echoed: {created}"
    );
    let pair = app.login_ok(&mixed, &password).await;
    assert_eq!(pair.user, created, "login returns the created user");
    assert_eq!(claims_of(&pair.access_token)["role"], "user");
    assert_eq!(
        expect_json(
            app.admin_get(token, created["id"].as_str().expect("id"))
                .await,
            200
        )
        .await,
        created
    );

    // role: "user" explicitly, and role: "admin".
    let explicit = expect_json(
        app.admin_create(
            token,
            &json!({"email": unique_email(), "password": strong_password(), "role": "user"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(explicit["role"], "user");
    let new_admin = app.admin_create_user(token, "admin").await;
    assert_eq!(new_admin.tokens.user["role"], "admin");
    assert_eq!(claims_of(&new_admin.tokens.access_token)["role"], "admin");
    expect_json(
        app.admin_list(&new_admin.tokens.access_token, "").await,
        200,
    )
    .await;

    // Emails are compared case-insensitively: registered, bootstrap and admin-created ones.
    let registered = app.new_user().await;
    for taken in [
        registered.email.to_uppercase(),
        admin.email.to_uppercase(),
        format!(" {} ", mixed.to_uppercase()),
        new_admin.email.clone(),
    ] {
        let resp = app
            .admin_create(
                token,
                &json!({"email": taken, "password": strong_password()}),
            )
            .await;
        assert_problem(resp, 409, "email_taken").await;
    }
    // ... and register sees admin-created emails as taken.
    assert_problem(
        app.register(&mixed.to_uppercase(), &strong_password())
            .await,
        409,
        "email_taken",
    )
    .await;
}

#[tokio::test]
async fn update_validates_and_refuses_a_taken_email() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    let user = app.new_user().await;
    let other = app.new_user().await;

    for taken in [
        other.email.to_uppercase(),
        other.email.clone(),
        format!(" {} ", admin.email.to_uppercase()),
    ] {
        let resp = app
            .admin_patch(token, &user.id, &json!({"email": taken, "name": "Changed"}))
            .await;
        assert_problem(resp, 409, "email_taken").await;
    }
    for bad in ["", "not-an-email", "a@b"] {
        let resp = app
            .admin_patch(token, &user.id, &json!({"email": bad}))
            .await;
        assert_problem(resp, 400, "invalid_email").await;
    }
    for body in [
        json!({"password": strong_password()}),
        json!({"id": Uuid::new_v4().to_string()}),
        json!({"created_at": "2020-01-01T00:00:00Z"}),
        json!({"deleted": true}),
        json!({"disabled": "yes"}),
        json!({"disabled": 1}),
        json!({"email": 5}),
        json!({"name": 7}),
        json!("admin"),
    ] {
        let resp = app.admin_patch(token, &user.id, &body).await;
        assert_problem(resp, 400, "malformed_request").await;
    }
    for role in [
        json!("superuser"),
        json!("Admin"),
        json!("USER"),
        json!(""),
        json!(1),
        json!(false),
        json!(["admin"]),
    ] {
        let resp = app
            .admin_patch(token, &user.id, &json!({"role": role, "name": "Changed"}))
            .await;
        assert_problem(resp, 400, "malformed_request").await;
    }
    let resp = app
        .admin_patch(token, &user.id, &json!({"name": "n".repeat(101)}))
        .await;
    assert_problem(resp, 400, "validation_failed").await;

    // Nothing changed, and the user's tokens still work.
    let got = expect_json(app.admin_get(token, &user.id).await, 200).await;
    assert_eq!(got["email"], user.email);
    assert_eq!(got["name"], Value::Null);
    assert_eq!(got["role"], "user");
    assert_eq!(got["disabled"], false);
    app.assert_me_status(&user.tokens.access_token, 200).await;

    // Its own email (any case) is no conflict; an empty patch changes nothing.
    let same = expect_json(
        app.admin_patch(
            token,
            &user.id,
            &json!({"email": user.email.to_uppercase()}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(same["email"], user.email);
    let same = expect_json(app.admin_patch(token, &user.id, &json!({})).await, 200).await;
    assert_eq!(same["email"], user.email);
    assert_eq!(same["name"], Value::Null);

    // A valid change: trimmed and lowercased; login follows the email.
    let new_email = unique_email();
    let patched = expect_json(
        app.admin_patch(
            token,
            &user.id,
            &json!({"email": format!(" {} ", new_email.to_uppercase()), "name": "Grace"}),
        )
        .await,
        200,
    )
    .await;
    assert_user_shape(&patched);
    assert_eq!(patched["email"], new_email);
    assert_eq!(patched["name"], "Grace");
    assert_eq!(patched["id"], user.id);
    assert_eq!(
        expect_json(app.admin_get(token, &user.id).await, 200).await,
        patched,
        "the change is stored"
    );
    app.login_ok(&new_email, &user.password).await;
    assert_problem(
        app.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    // The old email is free; the new one is taken for register too.
    app.register_ok(&user.email, &strong_password()).await;
    assert_problem(
        app.register(&new_email.to_uppercase(), &strong_password())
            .await,
        409,
        "email_taken",
    )
    .await;
    // `name: null` removes the name.
    let unnamed = expect_json(
        app.admin_patch(token, &user.id, &json!({"name": null}))
            .await,
        200,
    )
    .await;
    assert_eq!(unnamed["name"], Value::Null);
    assert_eq!(unnamed["email"], new_email);
}

// ----- the bootstrap admin -----

#[tokio::test]
async fn the_bootstrap_admin_exists_and_later_instances_do_not_add_another() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    assert_eq!(
        admin.tokens.user["role"], "admin",
        "{:?}",
        admin.tokens.user
    );
    assert_eq!(admin.tokens.user["email"], admin.email);
    assert_eq!(admin.tokens.user["disabled"], false);
    assert_eq!(claims_of(token)["role"], "admin");
    let admins = a.admin_list_all(token, "role=admin").await;
    assert_eq!(ids(&admins), [admin.id.as_str()], "one admin: {admins:?}");
    let everyone = a.admin_list_all(token, "").await;
    assert_eq!(
        ids(&everyone),
        [admin.id.as_str()],
        "only the admin: {everyone:?}"
    );

    // A second instance with the same settings: still one admin, the same one.
    let b = a.spawn_sibling().await;
    let on_b = b.login_user(&admin.email, &admin.password).await;
    assert_eq!(on_b.id, admin.id);
    assert_eq!(claims_of(&on_b.tokens.access_token)["role"], "admin");
    let admins = b
        .admin_list_all(&on_b.tokens.access_token, "role=admin")
        .await;
    assert_eq!(
        ids(&admins),
        [admin.id.as_str()],
        "still one admin: {admins:?}"
    );

    // An instance configured with another bootstrap admin: an admin exists, so none is made.
    let other_email = user_service_tests::test_app::unique_admin_email();
    let other_password = strong_password();
    let c = a
        .sibling()
        .bootstrap_admin(&other_email, &other_password)
        .spawn()
        .await;
    assert_problem(
        c.login(&other_email, &other_password).await,
        401,
        "invalid_credentials",
    )
    .await;
    let admins = c.admin_list_all(token, "role=admin").await;
    assert_eq!(
        ids(&admins),
        [admin.id.as_str()],
        "still one admin: {admins:?}"
    );

    // Hand over to a second admin, which deletes the first: a restart does not bring the
    // bootstrap admin back while an active admin exists.
    let second = a.admin_create_user(token, "admin").await;
    expect_status(
        b.admin_delete(&second.tokens.access_token, &admin.id).await,
        204,
    )
    .await;
    a.assert_me_status(token, 401).await;
    let d = a.spawn_sibling().await;
    let admins = d
        .admin_list_all(&second.tokens.access_token, "role=admin")
        .await;
    assert_eq!(ids(&admins), [second.id.as_str()], "{admins:?}");
    assert_problem(
        d.login(&admin.email, &admin.password).await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn instances_starting_at_once_on_a_fresh_database_create_one_admin() {
    for round in 0..3 {
        let (apps, email, password) = TestApp::spawn_many_with_admin_at_once(2).await;
        let admin = apps[0].login_user(&email, &password).await;
        assert_eq!(claims_of(&admin.tokens.access_token)["role"], "admin");
        for app in &apps {
            let admins = app
                .admin_list_all(&admin.tokens.access_token, "role=admin")
                .await;
            assert_eq!(
                ids(&admins),
                [admin.id.as_str()],
                "round {round}: exactly one admin: {admins:?}"
            );
            let everyone = app.admin_list_all(&admin.tokens.access_token, "").await;
            assert_eq!(everyone.len(), 1, "round {round}: one user: {everyone:?}");
        }
        // Both instances are one service: a login on the second works on the first.
        let on_second = apps[1].login_user(&email, &password).await;
        assert_eq!(on_second.id, admin.id);
        expect_json(
            apps[0].admin_list(&on_second.tokens.access_token, "").await,
            200,
        )
        .await;
    }
}

// ----- listing -----

#[tokio::test]
async fn pagination_returns_every_matching_user_once_newest_first_while_users_are_added() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    let marker = format!("mk{}", &Uuid::new_v4().simple().to_string()[..10]);
    // The marker at the start, in the middle and in the domain of the emails.
    let matching: Vec<String> = (0..45)
        .map(|i| match i % 3 {
            0 => format!("{marker}-{i}@example.com"),
            1 => format!("x{i}.{marker}.y@example.com"),
            _ => format!("z{i}@{marker}.example.com"),
        })
        .collect();
    let others: Vec<String> = (0..10).map(|_| unique_email()).collect();
    let registered = register_all(&app, &matching).await;
    register_all(&app, &others).await;
    let before: HashSet<String> = ids(&registered).into_iter().collect();
    assert_eq!(before.len(), 45);

    // Quiet: pages of 10 with the marker in upper case (the filter ignores case).
    let pages = app
        .admin_list_pages(token, &format!("limit=10&email={}", marker.to_uppercase()))
        .await;
    let sizes: Vec<usize> = pages.iter().map(|p| users_of(p).len()).collect();
    assert_eq!(sizes, [10, 10, 10, 10, 5], "page sizes");
    let listed: Vec<Value> = pages.iter().flat_map(|p| users_of(p).clone()).collect();
    assert_no_duplicates(&listed, "quiet paging");
    assert_newest_first(&listed, "quiet paging");
    assert_eq!(
        ids(&listed).into_iter().collect::<HashSet<_>>(),
        before,
        "every matching user, and only those"
    );
    for u in &listed {
        assert_user_shape(u);
    }
    // The same with the marker in lower case, and in pages of 15 (a multiple of the count:
    // no empty page at the end).
    let lower = app.admin_list_all(token, &format!("email={marker}")).await;
    assert_eq!(ids(&lower), ids(&listed), "the filter ignores case");
    let pages = app
        .admin_list_pages(token, &format!("limit=15&email={marker}"))
        .await;
    let sizes: Vec<usize> = pages.iter().map(|p| users_of(p).len()).collect();
    assert_eq!(sizes, [15, 15, 15], "page sizes with limit=15");
    // Default page size 20; limit 100 holds them all; limit 1 gives one and a cursor.
    let page = expect_json(app.admin_list(token, &format!("email={marker}")).await, 200).await;
    assert_eq!(users_of(&page).len(), 20, "default limit is 20");
    assert!(page["next_cursor"].is_string(), "{page}");
    let page = expect_json(
        app.admin_list(token, &format!("limit=100&email={marker}"))
            .await,
        200,
    )
    .await;
    assert_eq!(ids(users_of(&page)), ids(&listed));
    assert!(page["next_cursor"].is_null(), "{page}");
    let page = expect_json(
        app.admin_list(token, &format!("limit=1&email={marker}"))
            .await,
        200,
    )
    .await;
    assert_eq!(ids(users_of(&page)), ids(&listed)[..1]);
    assert!(page["next_cursor"].is_string(), "{page}");

    // Busy: page through with limit=10 while more matching users are registered. Between
    // two pages at least one registration completes.
    let done = AtomicBool::new(false);
    let registered_during = AtomicUsize::new(0);
    let added: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let registrar = async {
        let mut i = 0;
        while !done.load(Ordering::Acquire) && i < 200 {
            let user = app
                .register_ok(&format!("new{i}-{marker}@example.com"), &strong_password())
                .await;
            added
                .lock()
                .expect("lock")
                .push(user["id"].as_str().expect("id").to_owned());
            registered_during.fetch_add(1, Ordering::AcqRel);
            i += 1;
        }
    };
    let pager = async {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("limit=10&email={marker}&cursor={c}"),
                None => format!("limit=10&email={marker}"),
            };
            let page = expect_json(app.admin_list(token, &query).await, 200).await;
            let users = users_of(&page);
            assert!(users.len() <= 10, "page over the limit: {page}");
            seen.extend(users.iter().cloned());
            pages += 1;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
            assert!(pages < 100, "the list never ends");
            let count = registered_during.load(Ordering::Acquire);
            let deadline = Instant::now() + Duration::from_secs(10);
            while registered_during.load(Ordering::Acquire) == count && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        done.store(true, Ordering::Release);
        (seen, pages)
    };
    let ((seen, pages), ()) = tokio::join!(pager, registrar);
    let added: HashSet<String> = added.into_inner().expect("lock").into_iter().collect();
    assert!(
        pages >= 5 && added.len() >= 4,
        "the registrations ran during the paging: {pages} pages, {} added",
        added.len()
    );
    assert_no_duplicates(&seen, "paging while users are added");
    assert_newest_first(&seen, "paging while users are added");
    let seen_ids: HashSet<String> = ids(&seen).into_iter().collect();
    assert!(
        before.is_subset(&seen_ids),
        "users that existed before the first page are missing: {:?}",
        before.difference(&seen_ids).collect::<Vec<_>>()
    );
    for id in &seen_ids {
        assert!(
            before.contains(id) || added.contains(id),
            "{id} is not a matching user"
        );
    }
    // Afterwards, quiet again: every matching user, old and new, exactly once.
    let all = app
        .admin_list_all(token, &format!("limit=7&email={marker}"))
        .await;
    assert_no_duplicates(&all, "final paging");
    assert_newest_first(&all, "final paging");
    let all_ids: HashSet<String> = ids(&all).into_iter().collect();
    let expected: HashSet<String> = before.union(&added).cloned().collect();
    assert_eq!(all_ids, expected);
}

#[tokio::test]
async fn bad_limits_and_cursors_are_400() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    let marker = format!("cur{}", &Uuid::new_v4().simple().to_string()[..10]);
    let emails: Vec<String> = (0..5).map(|i| format!("{marker}{i}@example.com")).collect();
    register_all(&app, &emails).await;

    for limit in [
        "0",
        "101",
        "abc",
        "-1",
        "1.5",
        "",
        "1e1",
        "99999999999999999999",
    ] {
        let resp = app.admin_list(token, &format!("limit={limit}")).await;
        assert_problem(resp, 400, "validation_failed").await;
        let resp = app
            .admin_list(token, &format!("limit={limit}&email={marker}"))
            .await;
        assert_problem(resp, 400, "validation_failed").await;
    }

    let query = format!("limit=2&email={marker}");
    let first = expect_json(app.admin_list(token, &query).await, 200).await;
    let cursor = first["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("5 users in pages of 2 need a cursor: {first}"))
        .to_owned();
    // The genuine cursor works (also with another page size).
    let second = expect_json(
        app.admin_list(token, &format!("{query}&cursor={cursor}"))
            .await,
        200,
    )
    .await;
    assert_eq!(users_of(&second).len(), 2);
    let other_size = expect_json(
        app.admin_list(token, &format!("limit=3&email={marker}&cursor={cursor}"))
            .await,
        200,
    )
    .await;
    assert_eq!(users_of(&other_size).len(), 3);
    assert!(other_size["next_cursor"].is_null(), "{other_size}");

    // Tampered: one character flipped at the start, middle and end of each part; cut short;
    // lengthened; garbage.
    let dot = cursor.find('.');
    let mut tampered: Vec<String> = [0, cursor.len() / 4, cursor.len() / 2, cursor.len() - 2]
        .into_iter()
        .filter(|&at| Some(at) != dot)
        .map(|at| flip(&cursor, at))
        .collect();
    if let Some(dot) = dot {
        tampered.push(flip(&cursor, dot + 1));
        tampered.push(flip(&cursor, dot - 1));
        tampered.push(cursor[..dot].to_owned());
        tampered.push(cursor[dot + 1..].to_owned());
    }
    tampered.push(cursor[..cursor.len() - 1].to_owned());
    tampered.push(format!("{cursor}A"));
    tampered.push("garbage".to_owned());
    tampered.push("e30.AAAA".to_owned());
    for bad in &tampered {
        assert_ne!(bad, &cursor);
        let resp = app
            .admin_list(token, &format!("{query}&cursor={bad}"))
            .await;
        assert_problem(resp, 400, "malformed_request").await;
    }

    // The cursor with other filters.
    for other in [
        format!("limit=2&cursor={cursor}"),
        format!("limit=2&email=zzz&cursor={cursor}"),
        format!("limit=2&email={marker}x&cursor={cursor}"),
        format!("limit=2&email={marker}&role=user&cursor={cursor}"),
        format!("limit=2&email={marker}&role=admin&cursor={cursor}"),
        format!("limit=2&role=user&cursor={cursor}"),
    ] {
        let resp = app.admin_list(token, &other).await;
        assert_problem(resp, 400, "malformed_request").await;
    }

    // A cursor issued for one filter is refused on a list without filters, and the other
    // way round.
    let unfiltered = expect_json(app.admin_list(token, "limit=1").await, 200).await;
    let plain = unfiltered["next_cursor"]
        .as_str()
        .expect("6 users in pages of 1 need a cursor")
        .to_owned();
    expect_json(
        app.admin_list(token, &format!("limit=1&cursor={plain}"))
            .await,
        200,
    )
    .await;
    let resp = app
        .admin_list(token, &format!("limit=1&email={marker}&cursor={plain}"))
        .await;
    assert_problem(resp, 400, "malformed_request").await;
}

#[tokio::test]
async fn role_and_email_filters() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let token = admin.tokens.access_token.as_str();
    let second_admin = app.admin_create_user(token, "admin").await;
    let marker = format!("flt{}", &Uuid::new_v4().simple().to_string()[..10]);
    let emails: Vec<String> = (0..6).map(|i| format!("{marker}{i}@example.com")).collect();
    register_all(&app, &emails).await;
    let marked_admin = expect_json(
        app.admin_create(
            token,
            &json!({"email": format!("boss-{marker}@example.com"), "password": strong_password(), "role": "admin"}),
        )
        .await,
        201,
    )
    .await;
    let mut users = Vec::new();
    for _ in 0..3 {
        users.push(app.new_user().await);
    }

    // role=admin: exactly the admins.
    let admins = app.admin_list_all(token, "role=admin").await;
    let mut got = ids(&admins);
    got.sort();
    let mut want = vec![
        admin.id.clone(),
        second_admin.id.clone(),
        marked_admin["id"].as_str().expect("id").to_owned(),
    ];
    want.sort();
    assert_eq!(got, want, "role=admin: {admins:?}");
    assert_newest_first(&admins, "role=admin");
    // role=user: everyone else.
    let plain = app.admin_list_all(token, "role=user&limit=4").await;
    assert_eq!(plain.len(), 6 + 3, "role=user: {plain:?}");
    assert!(plain.iter().all(|u| u["role"] == "user"), "{plain:?}");
    assert_no_duplicates(&plain, "role=user");
    // Both filters at once.
    let marked = app
        .admin_list_all(
            token,
            &format!("role=admin&email={}", marker.to_uppercase()),
        )
        .await;
    assert_eq!(
        ids(&marked),
        [marked_admin["id"].as_str().expect("id").to_owned()]
    );
    let marked = app
        .admin_list_all(token, &format!("role=user&email={marker}"))
        .await;
    assert_eq!(marked.len(), 6);
    // Everyone: 3 admins + 6 + 3.
    assert_eq!(app.admin_list_all(token, "").await.len(), 12);

    // Roles are exact.
    for role in ["superuser", "ADMIN", "Admin", "admins", "adm"] {
        let resp = app.admin_list(token, &format!("role={role}")).await;
        let url = resp.url().to_string();
        let (status, content_type, text) = read(resp).await;
        assert_eq!(status, 400, "role={role}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        assert!(
            code == "validation_failed" || code == "malformed_request",
            "role={role}: {text}"
        );
        check_problem_body(&url, 400, &code, &content_type, &text);
    }

    // The email filter: a case-insensitive substring, and no pattern language.
    let one = users[1].email.clone();
    let middle = &one[4..20];
    let found = app
        .admin_list_all(token, &format!("email={}", middle.to_uppercase()))
        .await;
    assert_eq!(ids(&found), [users[1].id.as_str()], "substring {middle}");
    let by_domain = app.admin_list_all(token, "email=EXAMPLE.COM").await;
    assert_eq!(by_domain.len(), 12, "every email ends in example.com");
    for pattern in ["%25", "_", "%25example%25", "u-_"] {
        let found = app.admin_list_all(token, &format!("email={pattern}")).await;
        assert!(
            found.is_empty(),
            "email={pattern} is a literal substring, not a pattern: {found:?}"
        );
    }
    let none = app
        .admin_list_all(token, &format!("email={marker}-nobody"))
        .await;
    assert!(none.is_empty(), "{none:?}");
    // What no email can hold is refused, not searched for: control characters (a NUL once
    // reached Postgres, which refused it, and the answer was a 500) and more than 254
    // characters.
    let too_long = "a".repeat(255);
    for bad in ["%00", "ab%00cd", "%1F", "%7F", "%C2%85", too_long.as_str()] {
        let resp = app.admin_list(token, &format!("email={bad}")).await;
        let body = assert_problem(resp, 400, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "email", "email={bad}: {body}");
    }
    let longest = "a".repeat(254);
    let found = app.admin_list_all(token, &format!("email={longest}")).await;
    assert!(found.is_empty(), "{found:?}");
}

// ----- the last admin -----

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
    let (app, a) = TestApp::spawn_with_admin().await;
    let ta = a.tokens.access_token.clone();
    let refused = [
        json!({"role": "user"}),
        json!({"disabled": true}),
        json!({"role": "user", "name": "Changed"}),
        json!({"disabled": true, "role": "admin"}),
    ];
    for body in &refused {
        assert_problem(app.admin_patch(&ta, &a.id, body).await, 409, "last_admin").await;
    }
    assert_problem(app.admin_delete(&ta, &a.id).await, 409, "last_admin").await;
    // Nothing changed: still an admin, still enabled, its token still works.
    let me = expect_json(app.admin_get(&ta, &a.id).await, 200).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["disabled"], false);
    assert_eq!(me["name"], Value::Null, "a refused patch changes nothing");
    // Harmless changes to itself are fine.
    let me = expect_json(
        app.admin_patch(
            &ta,
            &a.id,
            &json!({"role": "admin", "disabled": false, "name": "Root"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(me["name"], "Root");
    expect_json(app.admin_list(&ta, "").await, 200).await;

    // A disabled admin does not count as a remaining admin.
    let b = app.admin_create_user(&ta, "admin").await;
    let disabled = expect_json(
        app.admin_patch(&ta, &b.id, &json!({"disabled": true}))
            .await,
        200,
    )
    .await;
    assert_eq!(disabled["disabled"], true);
    assert_eq!(disabled["role"], "admin");
    assert_problem(
        app.admin_patch(&ta, &a.id, &json!({"role": "user"})).await,
        409,
        "last_admin",
    )
    .await;
    assert_problem(
        app.admin_patch(&ta, &a.id, &json!({"disabled": true}))
            .await,
        409,
        "last_admin",
    )
    .await;
    assert_problem(app.admin_delete(&ta, &a.id).await, 409, "last_admin").await;
    assert_eq!(active_admins(&app, &ta).await, [a.id.as_str()]);

    // Once B is enabled again, A may step down; then B is the last one.
    expect_json(
        app.admin_patch(&ta, &b.id, &json!({"disabled": false}))
            .await,
        200,
    )
    .await;
    let b = app.login_user(&b.email, &b.password).await;
    let tb = b.tokens.access_token.clone();
    let stepped_down = expect_json(
        app.admin_patch(&ta, &a.id, &json!({"role": "user"})).await,
        200,
    )
    .await;
    assert_eq!(stepped_down["role"], "user");
    app.assert_me_status(&ta, 401).await;
    for body in &refused {
        assert_problem(app.admin_patch(&tb, &b.id, body).await, 409, "last_admin").await;
    }
    assert_problem(app.admin_delete(&tb, &b.id).await, 409, "last_admin").await;
    assert_eq!(active_admins(&app, &tb).await, [b.id.as_str()]);
    // The demoted A is an ordinary user now.
    let a_now = app.refresh_ok(&a.tokens.refresh_token).await;
    assert_eq!(claims_of(&a_now.access_token)["role"], "user");
    assert_problem(
        app.admin_list(&a_now.access_token, "").await,
        403,
        "forbidden",
    )
    .await;
    // Demoting, disabling or deleting a non-admin never needs another admin.
    expect_json(
        app.admin_patch(&tb, &a.id, &json!({"role": "user", "disabled": true}))
            .await,
        200,
    )
    .await;
    expect_status(app.admin_delete(&tb, &a.id).await, 204).await;
}

#[tokio::test]
async fn two_admins_removing_each_other_at_once_leave_exactly_one() {
    let (app, root) = TestApp::spawn_with_admin().await;
    let sibling = app.spawn_sibling().await;
    let mut boss: TestUser = root;
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..6 {
        let boss_token = boss.tokens.access_token.clone();
        let a = app.admin_create_user(&boss_token, "admin").await;
        let b = app.admin_create_user(&boss_token, "admin").await;
        // The boss steps down: A and B are the only active admins.
        expect_json(
            app.admin_patch(&boss_token, &boss.id, &json!({"role": "user"}))
                .await,
            200,
        )
        .await;
        let mut active = active_admins(&app, &a.tokens.access_token).await;
        active.sort();
        let mut pair = vec![a.id.clone(), b.id.clone()];
        pair.sort();
        assert_eq!(active, pair, "round {round}: A and B are the active admins");

        // A removes B on one instance while B removes A on the other.
        let (kind, body) = match round % 3 {
            0 => ("demote", Some(json!({"role": "user"}))),
            1 => ("disable", Some(json!({"disabled": true}))),
            _ => ("delete", None),
        };
        let (ra, rb) = match &body {
            Some(body) => {
                tokio::join!(
                    app.admin_patch(&a.tokens.access_token, &b.id, body),
                    sibling.admin_patch(&b.tokens.access_token, &a.id, body),
                )
            }
            None => tokio::join!(
                app.admin_delete(&a.tokens.access_token, &b.id),
                sibling.admin_delete(&b.tokens.access_token, &a.id),
            ),
        };
        let oa = outcome(ra, &format!("round {round}: A {kind}s B")).await;
        let ob = outcome(rb, &format!("round {round}: B {kind}s A")).await;
        let (winner, loser, lost) = match (oa, ob) {
            (Outcome::Done, other) => (a, b, other),
            (other, Outcome::Done) => (b, a, other),
            _ => panic!("round {round} ({kind}): neither succeeded: A {oa:?}, B {ob:?}"),
        };
        assert_ne!(
            lost,
            Outcome::Done,
            "round {round} ({kind}): both admins were removed: A {oa:?}, B {ob:?}"
        );
        *tally
            .entry(if lost == Outcome::LastAdmin {
                "last_admin"
            } else {
                "cut_off"
            })
            .or_default() += 1;

        // Exactly the winner is left as an active admin, on both instances.
        for instance in [&app, &sibling] {
            assert_eq!(
                active_admins(instance, &winner.tokens.access_token).await,
                [winner.id.as_str()],
                "round {round} ({kind}): the winner is the one active admin"
            );
        }
        // The loser's admin token is dead everywhere.
        for instance in [&app, &sibling] {
            instance
                .assert_me_status(&loser.tokens.access_token, 401)
                .await;
            assert_problem(
                instance.admin_list(&loser.tokens.access_token, "").await,
                401,
                "unauthorized",
            )
            .await;
        }
        match kind {
            "demote" => {
                let fresh = sibling.refresh_ok(&loser.tokens.refresh_token).await;
                assert_eq!(claims_of(&fresh.access_token)["role"], "user");
                assert_problem(
                    app.admin_list(&fresh.access_token, "").await,
                    403,
                    "forbidden",
                )
                .await;
            }
            _ => {
                sibling
                    .assert_refresh_rejected(&loser.tokens.refresh_token)
                    .await;
            }
        }
        boss = winner;
    }
    eprintln!("mutual removal outcomes of the losers: {tally:?}");
}

// ----- changes take effect at once, on every instance -----

#[tokio::test]
async fn a_role_change_cuts_off_access_tokens_on_every_instance_and_refresh_mints_the_new_role() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let admin_token = admin.tokens.access_token.as_str();
    let user = a.new_user().await;
    let other_session = b.login_ok(&user.email, &user.password).await;
    for app in [&a, &b] {
        app.assert_me_status(&user.tokens.access_token, 200).await;
        assert_problem(
            app.admin_list(&user.tokens.access_token, "").await,
            403,
            "forbidden",
        )
        .await;
    }

    // user -> admin, on A.
    let promoted = expect_json(
        a.admin_patch(admin_token, &user.id, &json!({"role": "admin"}))
            .await,
        200,
    )
    .await;
    assert_eq!(promoted["role"], "admin");
    for app in [&a, &b] {
        for token in [&user.tokens.access_token, &other_session.access_token] {
            app.assert_me_status(token, 401).await;
            assert_problem(app.admin_list(token, "").await, 401, "unauthorized").await;
        }
    }
    // Both sessions' refresh tokens still work and mint admin tokens.
    let as_admin = b.refresh_ok(&user.tokens.refresh_token).await;
    let other_admin = a.refresh_ok(&other_session.refresh_token).await;
    for pair in [&as_admin, &other_admin] {
        assert_eq!(claims_of(&pair.access_token)["role"], "admin");
        assert_eq!(pair.user["role"], "admin");
        for app in [&a, &b] {
            app.assert_me_status(&pair.access_token, 200).await;
            expect_json(app.admin_list(&pair.access_token, "").await, 200).await;
        }
    }
    let login = a.login_ok(&user.email, &user.password).await;
    assert_eq!(claims_of(&login.access_token)["role"], "admin");
    // The admin making the change was not affected.
    expect_json(b.admin_list(admin_token, "").await, 200).await;

    // admin -> user, on B.
    let demoted = expect_json(
        b.admin_patch(admin_token, &user.id, &json!({"role": "user"}))
            .await,
        200,
    )
    .await;
    assert_eq!(demoted["role"], "user");
    for app in [&a, &b] {
        for token in [
            &as_admin.access_token,
            &other_admin.access_token,
            &login.access_token,
        ] {
            app.assert_me_status(token, 401).await;
            assert_problem(app.admin_list(token, "").await, 401, "unauthorized").await;
        }
    }
    let as_user = a.refresh_ok(&as_admin.refresh_token).await;
    assert_eq!(claims_of(&as_user.access_token)["role"], "user");
    assert_eq!(as_user.user["role"], "user");
    for app in [&a, &b] {
        app.assert_me_status(&as_user.access_token, 200).await;
        assert_problem(
            app.admin_list(&as_user.access_token, "").await,
            403,
            "forbidden",
        )
        .await;
        assert_problem(
            app.admin_get(&as_user.access_token, &admin.id).await,
            403,
            "forbidden",
        )
        .await;
    }
    let again = b.refresh_ok(&login.refresh_token).await;
    assert_eq!(claims_of(&again.access_token)["role"], "user");
}

#[tokio::test]
async fn disabling_a_user_rejects_every_token_on_every_instance_until_it_is_enabled() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let admin_token = admin.tokens.access_token.as_str();
    let user = a.new_user().await;
    let second = b.login_ok(&user.email, &user.password).await;
    let rotated = a.refresh_ok(&second.refresh_token).await;

    let disabled = expect_json(
        b.admin_patch(admin_token, &user.id, &json!({"disabled": true}))
            .await,
        200,
    )
    .await;
    assert_eq!(disabled["disabled"], true);
    for app in [&a, &b] {
        for token in [
            &user.tokens.access_token,
            &second.access_token,
            &rotated.access_token,
        ] {
            app.assert_me_status(token, 401).await;
        }
    }
    a.assert_refresh_rejected(&user.tokens.refresh_token).await;
    b.assert_refresh_rejected(&rotated.refresh_token).await;

    // Login: the same answer as a wrong password, even with the right one.
    let right = problem_body(
        a.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    let wrong = problem_body(
        b.login(&user.email, "not-the-password-at-all-42").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(right, wrong, "a disabled user looks like a wrong password");

    // The admin still sees it, disabled.
    let got = expect_json(a.admin_get(admin_token, &user.id).await, 200).await;
    assert_eq!(got["disabled"], true);
    let listed = a
        .admin_list_all(admin_token, &format!("email={}", user.email))
        .await;
    assert_eq!(ids(&listed), [user.id.as_str()]);
    assert_eq!(listed[0]["disabled"], true);

    // Enabled again: login works on both instances; the old tokens stay dead.
    let enabled = expect_json(
        a.admin_patch(admin_token, &user.id, &json!({"disabled": false}))
            .await,
        200,
    )
    .await;
    assert_eq!(enabled["disabled"], false);
    let fresh = b.login_ok(&user.email, &user.password).await;
    assert_eq!(fresh.user["disabled"], false);
    for app in [&a, &b] {
        app.assert_me_status(&fresh.access_token, 200).await;
        app.assert_me_status(&user.tokens.access_token, 401).await;
        app.assert_me_status(&rotated.access_token, 401).await;
    }
    a.login_ok(&user.email, &user.password).await;
    let renewed = a.refresh_ok(&fresh.refresh_token).await;
    b.assert_me_status(&renewed.access_token, 200).await;
    b.assert_refresh_rejected(&second.refresh_token).await;
}

#[tokio::test]
async fn deleting_a_user_ends_everything_and_frees_the_email() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let admin_token = admin.tokens.access_token.as_str();
    let user = a.new_user().await;
    let second = b.login_ok(&user.email, &user.password).await;
    let bystander = a.new_user().await;

    expect_status(b.admin_delete(admin_token, &user.id).await, 204).await;
    for app in [&a, &b] {
        app.assert_me_status(&user.tokens.access_token, 401).await;
        app.assert_me_status(&second.access_token, 401).await;
        assert_problem(app.admin_get(admin_token, &user.id).await, 404, "not_found").await;
    }
    a.assert_refresh_rejected(&second.refresh_token).await;
    b.assert_refresh_rejected(&user.tokens.refresh_token).await;
    assert_problem(
        a.admin_patch(admin_token, &user.id, &json!({"name": "Ghost"}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        a.admin_delete(admin_token, &user.id).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        a.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    let listed = a
        .admin_list_all(admin_token, &format!("email={}", user.email))
        .await;
    assert!(listed.is_empty(), "a deleted user is listed: {listed:?}");
    let everyone = ids(&b.admin_list_all(admin_token, "").await);
    assert!(!everyone.contains(&user.id), "{everyone:?}");
    assert!(everyone.contains(&bystander.id), "{everyone:?}");
    a.assert_me_status(&bystander.tokens.access_token, 200)
        .await;

    // The email is free again (in any case); the new account is a new user.
    let password = strong_password();
    let again = expect_json(b.register(&user.email.to_uppercase(), &password).await, 201).await;
    assert_eq!(again["email"], user.email);
    assert_ne!(again["id"], user.id, "a new account, not the old one back");
    assert_eq!(again["role"], "user");
    let listed = a
        .admin_list_all(admin_token, &format!("email={}", user.email))
        .await;
    assert_eq!(ids(&listed), [again["id"].as_str().expect("id").to_owned()]);
    let fresh = a.login_ok(&user.email, &password).await;
    b.assert_me_status(&fresh.access_token, 200).await;
    assert_problem(
        a.login(&user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    // And the old account's tokens stay dead.
    a.assert_me_status(&user.tokens.access_token, 401).await;
}

// ----- changes racing with refreshes -----

/// Refreshes in a loop, starting from `refresh_token`, until `stop` is set or the refresh
/// token is refused (401 `invalid_refresh_token`); returns every access token minted.
async fn refresh_until(app: &TestApp, refresh_token: &str, stop: &AtomicBool) -> Vec<String> {
    let mut refresh_token = refresh_token.to_owned();
    let mut minted = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let resp = app.refresh(&refresh_token).await;
        if resp.status() == 401 {
            assert_problem(resp, 401, "invalid_refresh_token").await;
            break;
        }
        let pair = token_pair(expect_json(resp, 200).await);
        minted.push(pair.access_token);
        refresh_token = pair.refresh_token;
    }
    minted
}

/// Runs `change` while every session in `refresh_tokens` refreshes in a loop (alternating
/// between the two instances); the loops go on for a while after `change` has returned.
/// Returns the access tokens minted.
async fn race_refreshes_with<F>(
    a: &TestApp,
    b: &TestApp,
    refresh_tokens: &[String],
    change: F,
) -> Vec<String>
where
    F: std::future::Future<Output = ()>,
{
    let stop = AtomicBool::new(false);
    let loops = futures::future::join_all(refresh_tokens.iter().enumerate().map(|(i, t)| {
        let app = if i % 2 == 0 { a } else { b };
        refresh_until(app, t, &stop)
    }));
    let changer = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        change.await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        stop.store(true, Ordering::Release);
    };
    let (minted, ()) = tokio::join!(loops, changer);
    minted.into_iter().flatten().collect()
}

#[tokio::test]
async fn no_access_token_with_the_old_role_survives_a_role_change_racing_with_refreshes() {
    let (a, admin) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let admin_token = admin.tokens.access_token.as_str();
    let user = a.new_user().await;
    let mut sessions: Vec<String> = vec![user.tokens.refresh_token.clone()];
    for _ in 0..7 {
        sessions.push(a.login_ok(&user.email, &user.password).await.refresh_token);
    }
    let mut stale = Vec::new();
    let mut minted_total = 0;
    for round in 0..6 {
        let new_role = if round % 2 == 0 { "admin" } else { "user" };
        let minted = race_refreshes_with(&a, &b, &sessions, async {
            let changed = expect_json(
                a.admin_patch(admin_token, &user.id, &json!({"role": new_role}))
                    .await,
                200,
            )
            .await;
            assert_eq!(changed["role"], new_role);
        })
        .await;
        minted_total += minted.len();
        // Every token minted with the old role must be dead now, on both instances.
        for token in &minted {
            let old_role = claims_of(token)["role"].clone();
            if old_role == new_role {
                continue;
            }
            for app in [&a, &b] {
                let resp = app.me(token).await;
                if resp.status() != 401 {
                    stale.push(format!(
                        "round {round} (to {new_role}): a token with role {old_role} minted around the change answers {} on GET /v1/users/me of {}",
                        resp.status(),
                        app.address
                    ));
                }
                if old_role == "admin" {
                    let resp = app.admin_list(token, "limit=1").await;
                    if resp.status() != 401 {
                        stale.push(format!(
                            "round {round} (to {new_role}): a token with role {old_role} minted around the change answers {} on GET /v1/admin/users of {}",
                            resp.status(),
                            app.address
                        ));
                    }
                }
            }
        }
        // Continue from fresh sessions (the loops' last refresh tokens are unknown here).
        sessions.clear();
        for _ in 0..8 {
            sessions.push(a.login_ok(&user.email, &user.password).await.refresh_token);
        }
    }
    assert!(minted_total > 0, "the refresh loops minted nothing");
    assert!(
        stale.is_empty(),
        "{} times, access tokens carrying the old role outlived the role change (every one must be 401):\n{}",
        stale.len(),
        stale.join("\n")
    );
}

/// Disables (`delete == false`) or deletes an admin (not the last one), round after round,
/// while its sessions refresh in a loop on both instances; then every access token minted
/// must be rejected, on user and on admin routes.
async fn race_refreshes_with_removal(delete: bool) {
    let (a, root) = TestApp::spawn_with_admin().await;
    let b = a.spawn_sibling().await;
    let root_token = root.tokens.access_token.as_str();
    let what = if delete { "delete" } else { "disable" };
    let mut user = a.admin_create_user(root_token, "admin").await;
    let mut survivors = Vec::new();
    let mut minted_total = 0;
    for round in 0..6 {
        let mut sessions = vec![user.tokens.refresh_token.clone()];
        for _ in 0..7 {
            sessions.push(a.login_ok(&user.email, &user.password).await.refresh_token);
        }
        let minted = race_refreshes_with(&a, &b, &sessions, async {
            if delete {
                expect_status(b.admin_delete(root_token, &user.id).await, 204).await;
            } else {
                let changed = expect_json(
                    b.admin_patch(root_token, &user.id, &json!({"disabled": true}))
                        .await,
                    200,
                )
                .await;
                assert_eq!(changed["disabled"], true);
            }
        })
        .await;
        minted_total += minted.len();
        for token in &minted {
            for app in [&a, &b] {
                for (route, resp) in [
                    ("GET /v1/users/me", app.me(token).await),
                    (
                        "GET /v1/admin/users",
                        app.admin_list(token, "limit=1").await,
                    ),
                ] {
                    if resp.status() != 401 {
                        survivors.push(format!(
                            "round {round}: a token minted around the {what} answers {} on {route} of {}",
                            resp.status(),
                            app.address
                        ));
                    }
                }
            }
        }
        if delete {
            user = a.admin_create_user(root_token, "admin").await;
        } else {
            expect_json(
                a.admin_patch(root_token, &user.id, &json!({"disabled": false}))
                    .await,
                200,
            )
            .await;
            user = a.login_user(&user.email, &user.password).await;
        }
    }
    assert!(minted_total > 0, "the refresh loops minted nothing");
    assert!(
        survivors.is_empty(),
        "{} times, access tokens outlived the {what} of their user (every one must be 401):\n{}",
        survivors.len(),
        survivors.join("\n")
    );
}

#[tokio::test]
async fn no_access_token_survives_a_disable_racing_with_refreshes() {
    race_refreshes_with_removal(false).await;
}

#[tokio::test]
async fn no_access_token_survives_a_delete_racing_with_refreshes() {
    race_refreshes_with_removal(true).await;
}
