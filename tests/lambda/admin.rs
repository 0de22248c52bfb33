//! The admin functions, called by the bootstrap admin (and refused to a user).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use user_service_tests::runtime_api::{HttpEvent, LambdaProcess};
use user_service_tests::{TestApp, TestUser, strong_password, unique_email};

use super::{authed, start};

/// A fresh deployment with its bootstrap admin logged in, a plain user, and `function`.
async fn setup(function: &str) -> (TestApp, TestUser, TestUser, LambdaProcess) {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let (process, user) = tokio::join!(start(function, &app), app.new_user());
    (app, admin, user, process)
}

#[tokio::test]
async fn admin_list_users() {
    let (_app, admin, user, list) = setup("admin-list-users").await;

    let page = list
        .http(&authed("GET", "/v1/admin/users?limit=1", &admin))
        .await
        .expect(200);
    let users = page["users"].as_array().expect("users");
    assert_eq!(users.len(), 1, "{page}");
    assert_eq!(users[0]["id"], json!(user.id), "newest first: {page}");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let page = list
        .http(&authed(
            "GET",
            &format!("/v1/admin/users?limit=1&cursor={cursor}"),
            &admin,
        ))
        .await
        .expect(200);
    assert_eq!(page["users"][0]["id"], json!(admin.id), "{page}");
    assert_eq!(page["next_cursor"], Value::Null, "{page}");

    let filtered = list
        .http(&authed("GET", "/v1/admin/users?role=admin", &admin))
        .await
        .expect(200);
    assert_eq!(
        filtered["users"].as_array().map(Vec::len),
        Some(1),
        "{filtered}"
    );
    list.http(&authed("GET", "/v1/admin/users?limit=0", &admin))
        .await
        .expect_problem(400, "validation_failed");
    list.http(&authed("GET", "/v1/admin/users", &user))
        .await
        .expect_problem(403, "forbidden");
    list.http(&HttpEvent::get("/v1/admin/users"))
        .await
        .expect_problem(401, "unauthorized");
}

#[tokio::test]
async fn admin_create_user() {
    let (app, admin, user, create) = setup("admin-create-user").await;
    let email = unique_email();
    let password = strong_password();
    let body = json!({ "email": email, "password": password, "role": "admin", "name": "Ops" });

    let created = create
        .http(&authed("POST", "/v1/admin/users", &admin).json(&body))
        .await
        .expect(201);
    assert_eq!(created["email"], json!(email));
    assert_eq!(created["role"], json!("admin"));
    assert_eq!(created["name"], json!("Ops"));
    let logged_in = app.login_ok(&email, &password).await;
    assert_eq!(logged_in.user["id"], created["id"]);

    create
        .http(&authed("POST", "/v1/admin/users", &admin).json(&body))
        .await
        .expect_problem(409, "email_taken");
    create
        .http(&authed("POST", "/v1/admin/users", &user).json(&body))
        .await
        .expect_problem(403, "forbidden");
}

#[tokio::test]
async fn admin_get_user() {
    let (_app, admin, user, get) = setup("admin-get-user").await;

    let got = get
        .http(&authed(
            "GET",
            &format!("/v1/admin/users/{}", user.id),
            &admin,
        ))
        .await
        .expect(200);
    assert_eq!(got["id"], json!(user.id));
    assert_eq!(got["email"], json!(user.email));
    assert_eq!(got["role"], json!("user"));
    for missing in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        get.http(&authed(
            "GET",
            &format!("/v1/admin/users/{missing}"),
            &admin,
        ))
        .await
        .expect_problem(404, "not_found");
    }
    get.http(&authed(
        "GET",
        &format!("/v1/admin/users/{}", admin.id),
        &user,
    ))
    .await
    .expect_problem(403, "forbidden");
}

#[tokio::test]
async fn admin_update_user() {
    let (app, admin, user, update) = setup("admin-update-user").await;

    let updated = update
        .http(
            &authed("PATCH", &format!("/v1/admin/users/{}", user.id), &admin)
                .json(&json!({ "disabled": true, "name": "Suspended" })),
        )
        .await
        .expect(200);
    assert_eq!(updated["disabled"], json!(true), "{updated}");
    assert_eq!(updated["name"], json!("Suspended"), "{updated}");
    // Disabling takes effect at once.
    app.assert_me_status(&user.tokens.access_token, 401).await;

    // The only admin cannot demote itself.
    update
        .http(
            &authed("PATCH", &format!("/v1/admin/users/{}", admin.id), &admin)
                .json(&json!({ "role": "user" })),
        )
        .await
        .expect_problem(409, "last_admin");
}

#[tokio::test]
async fn admin_delete_user() {
    let (app, admin, user, delete) = setup("admin-delete-user").await;

    let response = delete
        .http(&authed(
            "DELETE",
            &format!("/v1/admin/users/{}", user.id),
            &admin,
        ))
        .await;
    assert_eq!(response.status, 204, "{}", response.body);
    app.assert_me_status(&user.tokens.access_token, 401).await;
    // The email is free again.
    app.register_ok(&user.email, &strong_password()).await;

    delete
        .http(&authed(
            "DELETE",
            &format!("/v1/admin/users/{}", user.id),
            &admin,
        ))
        .await
        .expect_problem(404, "not_found");
    delete
        .http(&authed(
            "DELETE",
            &format!("/v1/admin/users/{}", admin.id),
            &admin,
        ))
        .await
        .expect_problem(409, "last_admin");
}

#[tokio::test]
async fn admin_user_audit() {
    let (app, admin, user, audit) = setup("admin-user-audit").await;
    // A failed login joins the registration and the login of `setup` in the trail.
    user_service_tests::assert_problem(
        app.login(&user.email, "wrong-horse-battery-staple").await,
        401,
        "invalid_credentials",
    )
    .await;

    // The service stores events in the background: wait until all three are in.
    let event = authed("GET", &format!("/v1/admin/users/{}/audit", user.id), &admin);
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let page = audit.http(&event).await.expect(200);
        let events = page["events"].as_array().expect("events").clone();
        if events.len() >= 3 || Instant::now() >= deadline {
            assert_eq!(page["next_cursor"], Value::Null, "{page}");
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("login", "failure"),
            ("login", "success"),
            ("user_registered", "success")
        ],
        "newest first: {events:?}"
    );
    assert!(events.iter().all(|e| e["at"].is_string()), "{events:?}");

    audit
        .http(&authed(
            "GET",
            &format!("/v1/admin/users/{}/audit", admin.id),
            &user,
        ))
        .await
        .expect_problem(403, "forbidden");
}
