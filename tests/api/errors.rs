//! Every error row of the contract that the public endpoints can produce, through HTTP:
//! the status, the stable `code` and the problem-details shape.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use user_service_tests::problem::check_problem_body;
use user_service_tests::{TestApp, assert_problem, expect_json, strong_password, unique_email};

/// The JSON endpoints that need no token, with a well-formed body for each.
fn public_endpoints() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/v1/auth/register",
            json!({"email": unique_email(), "password": strong_password()}),
        ),
        (
            "/v1/auth/login",
            json!({"email": unique_email(), "password": strong_password()}),
        ),
        ("/v1/auth/refresh", json!({"refresh_token": "x".repeat(43)})),
    ]
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    for (path, _) in public_endpoints() {
        for body in ["{not json", "{\"email\": ", "", "\u{0}", "[1, 2"] {
            let resp = app.post_raw(path, body, Some("application/json")).await;
            assert_problem(resp, 400, "malformed_request").await;
        }
    }
}

#[tokio::test]
async fn json_that_is_not_an_object_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    for (path, _) in public_endpoints() {
        for body in ["[]", "null", "\"a string\"", "42", "true"] {
            let resp = app.post_raw(path, body, Some("application/json")).await;
            assert_problem(resp, 400, "malformed_request").await;
        }
    }
}

#[tokio::test]
async fn an_unknown_field_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    for (path, mut body) in public_endpoints() {
        body["unexpected"] = json!("x");
        assert_problem(app.post_json(path, &body).await, 400, "malformed_request").await;
    }
    // The field a privilege escalation would try first.
    let resp = app
        .post_json(
            "/v1/auth/register",
            &json!({"email": unique_email(), "password": strong_password(), "role": "admin"}),
        )
        .await;
    assert_problem(resp, 400, "malformed_request").await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "/v1/auth/register",
            json!({"email": 42, "password": strong_password()}),
        ),
        (
            "/v1/auth/register",
            json!({"email": unique_email(), "password": true}),
        ),
        (
            "/v1/auth/register",
            json!({"email": unique_email(), "password": strong_password(), "name": 5}),
        ),
        (
            "/v1/auth/register",
            json!({"email": [unique_email()], "password": strong_password()}),
        ),
        (
            "/v1/auth/login",
            json!({"email": unique_email(), "password": {"p": 1}}),
        ),
        ("/v1/auth/refresh", json!({"refresh_token": 12345})),
    ];
    for (path, body) in cases {
        assert_problem(app.post_json(path, &body).await, 400, "malformed_request").await;
    }
    let user = app.new_user().await;
    let resp = app
        .request(Method::POST, "/v1/auth/logout")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"all": "yes"}))
        .send()
        .await
        .expect("logout");
    assert_problem(resp, 400, "malformed_request").await;
}

#[tokio::test]
async fn a_missing_required_field_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    let cases = [
        ("/v1/auth/register", json!({"email": unique_email()})),
        ("/v1/auth/register", json!({"password": strong_password()})),
        ("/v1/auth/register", json!({})),
        ("/v1/auth/login", json!({"email": unique_email()})),
        ("/v1/auth/login", json!({"password": strong_password()})),
        ("/v1/auth/refresh", json!({})),
    ];
    for (path, body) in cases {
        assert_problem(app.post_json(path, &body).await, 400, "malformed_request").await;
    }
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    for (path, body) in public_endpoints() {
        let text = body.to_string();
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let resp = app.post_raw(path, text.clone(), content_type).await;
            assert_problem(resp, 415, "unsupported_media_type").await;
        }
    }
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_accepted() {
    let app = TestApp::spawn().await;
    let body = json!({"email": unique_email(), "password": strong_password()});
    let resp = app
        .post_raw(
            "/v1/auth/register",
            body.to_string(),
            Some("application/json; charset=utf-8"),
        )
        .await;
    expect_json(resp, 201).await;
}

/// A register body of exactly `len` bytes whose only fault is a `name` far over 100 chars.
fn register_body_of_len(len: usize) -> String {
    let skeleton = json!({"email": unique_email(), "password": strong_password(), "name": ""});
    let base = skeleton.to_string().len();
    let mut body = skeleton;
    body["name"] = json!("n".repeat(len - base));
    let text = body.to_string();
    assert_eq!(text.len(), len);
    text
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = TestApp::spawn().await;
    // 64 KiB is allowed ("over 64 KiB" is refused): judged on its content, not its size.
    let resp = app
        .post_raw(
            "/v1/auth/register",
            register_body_of_len(64 * 1024),
            Some("application/json"),
        )
        .await;
    assert_problem(resp, 400, "validation_failed").await;
    for len in [64 * 1024 + 1, 200 * 1024] {
        let resp = app
            .post_raw(
                "/v1/auth/register",
                register_body_of_len(len),
                Some("application/json"),
            )
            .await;
        assert_problem(resp, 413, "payload_too_large").await;
    }
}

/// The contract judges the size from `Content-Length` before reading the body: announce
/// 10 MiB, send none of it, and the answer must come anyway.
#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body_is_sent() {
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 10485760\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if text
                .find("\r\n\r\n")
                .is_some_and(|end| text[end..].contains('}'))
            {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(
        read.is_ok() || !text.is_empty(),
        "no answer within 5 s while the body was withheld: the size was not judged from Content-Length"
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        head.starts_with("HTTP/1.1 413"),
        "expected 413 before the body was sent, got: {text}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    // The body may be chunked; only check it mentions the code then.
    if body.trim_start().starts_with('{') {
        check_problem_body(
            "raw 413",
            413,
            "payload_too_large",
            &content_type,
            body.trim(),
        );
    } else {
        assert!(
            content_type.starts_with("application/problem+json")
                && body.contains("payload_too_large"),
            "413 must be a payload_too_large problem: {text}"
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_404_not_found() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    for (method, path) in [
        (Method::GET, "/v1/nope"),
        (Method::POST, "/v1/auth/nope"),
        (Method::GET, "/v2/users/me"),
        // No trailing slashes (contract, "Conventions").
        (Method::GET, "/v1/users/me/"),
        (Method::POST, "/v1/auth/login/"),
        (Method::GET, "/healthz/"),
    ] {
        let resp = app
            .request(method, path)
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_problem(resp, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_malformed_email_is_400_invalid_email() {
    let app = TestApp::spawn().await;
    let long_local = format!("{}@example.com", "a".repeat(65));
    // 254 is the limit: a 64-char local part plus a 190+-char domain goes over it.
    let long_total = format!(
        "{}@{}.example.com",
        "a".repeat(64),
        ["b".repeat(60), "c".repeat(60), "d".repeat(60)].join(".")
    );
    assert!(long_total.len() > 254);
    let cases = [
        "",
        " ",
        "plainaddress",
        "@example.com",
        "alice@",
        "alice@example",
        "alice@@example.com",
        "al ice@example.com",
        "a..b@example.com",
        ".alice@example.com",
        "alice.@example.com",
        "alice@-example.com",
        "alice@example-.com",
        "alice@example..com",
        "alice@.example.com",
        "alice@example.com.",
        "alice@exa_mple.com",
        "alice@example.123",
        "alice(comment)@example.com",
        "\"quoted\"@example.com",
        long_local.as_str(),
        long_total.as_str(),
    ];
    for email in cases {
        let resp = app.register(email, &strong_password()).await;
        let status = resp.status().as_u16();
        let body = assert_problem_or_report(resp, 400, "invalid_email").await;
        assert!(body.is_ok(), "email {email:?}: {status} {:?}", body.err());
    }
}

/// Like [`assert_problem`] but returns the mismatch instead of panicking.
async fn assert_problem_or_report(
    resp: reqwest::Response,
    status: u16,
    code: &str,
) -> Result<Value, String> {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if got == status && body["code"] == code {
        Ok(body)
    } else {
        Err(format!("expected {status} {code}, got {got}: {text}"))
    }
}

#[tokio::test]
async fn a_weak_password_is_400_weak_password_with_a_reason() {
    let app = TestApp::spawn().await;
    let local = format!("marigold{}", uuid::Uuid::new_v4().simple());
    let email = format!("{local}@example.com");
    let cases: Vec<(&str, String)> = vec![
        ("too short", "Xk#9vT!".into()),
        ("empty", String::new()),
        ("common", "password123".into()),
        // NFKC turns the full-width form into the common "password123".
        ("common after NFKC", "ｐａｓｓｗｏｒｄ１２３".into()),
        ("low entropy", "aaaaaaaaaaaaaaaa".into()),
        ("keyboard walk", "qwertyuiop".into()),
        (
            "contains the email's local part",
            format!("Zq8!{local}#vault"),
        ),
        (
            "contains the local part in capitals",
            format!("Zq8!{}#vault", local.to_uppercase()),
        ),
        ("over 256 characters", long_strong_password(257)),
    ];
    let mut failures = Vec::new();
    for (why, password) in &cases {
        let resp = app.register(&email, password).await;
        match assert_problem_or_report(resp, 400, "weak_password").await {
            Ok(body) => {
                if body["detail"].as_str().unwrap_or("").trim().is_empty() {
                    failures.push(format!("{why}: `detail` must say why: {body}"));
                }
            }
            Err(e) => failures.push(format!("{why}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing was created along the way.
    let resp = app.register(&email, &strong_password()).await;
    expect_json(resp, 201).await;
}

/// `len` characters of high-entropy text.
pub fn long_strong_password(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(len);
    s
}

#[tokio::test]
async fn an_email_already_registered_is_409_email_taken_whatever_its_case() {
    let app = TestApp::spawn().await;
    let local = format!("alice-{}", uuid::Uuid::new_v4().simple());
    app.register_ok(&format!("{local}@example.com"), &strong_password())
        .await;
    for taken in [
        format!("{local}@example.com"),
        format!("{}@EXAMPLE.com", local.to_uppercase()),
        format!("  {local}@example.com  "),
    ] {
        let resp = app.register(&taken, &strong_password()).await;
        assert_problem(resp, 409, "email_taken").await;
    }
}

#[tokio::test]
async fn a_failed_login_looks_the_same_for_an_unknown_email_and_a_wrong_password() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let wrong_password = assert_problem(
        app.login(&user.email, "not-the-right-password-at-all")
            .await,
        401,
        "invalid_credentials",
    )
    .await;
    let unknown_email = assert_problem(
        app.login(&unique_email(), &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&wrong_password),
        keys(&unknown_email),
        "the two failures must have the same shape"
    );
    for field in ["type", "title", "status", "detail", "code"] {
        assert_eq!(
            wrong_password[field], unknown_email[field],
            "`{field}` tells an unknown email from a wrong password"
        );
    }
}

#[tokio::test]
async fn an_unknown_refresh_token_is_401_invalid_refresh_token() {
    let app = TestApp::spawn().await;
    for token in [
        "garbage".to_owned(),
        String::new(),
        "A".repeat(43),
        "x".repeat(5000),
    ] {
        app.assert_refresh_rejected(&token).await;
    }
}

#[tokio::test]
async fn a_missing_or_garbage_access_token_is_401_unauthorized() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let me = "/v1/users/me";
    let resp = app.get(me).await;
    assert_problem(resp, 401, "unauthorized").await;
    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer garbage".to_owned(),
        "Bearer a.b.c".to_owned(),
        format!("Basic {}", user_service_tests::jwt::b64url("user:pass")),
        // The right token under the wrong scheme, and with no scheme.
        format!("Token {}", user.tokens.access_token),
        user.tokens.access_token.clone(),
        // The refresh token is not an access token.
        format!("Bearer {}", user.tokens.refresh_token),
    ] {
        let resp = app
            .request(Method::GET, me)
            .header("authorization", &header)
            .send()
            .await
            .expect("request");
        assert_problem(resp, 401, "unauthorized").await;
    }
    // Every authenticated route says the same.
    let resp = app
        .request(Method::POST, "/v1/auth/logout")
        .send()
        .await
        .expect("logout");
    assert_problem(resp, 401, "unauthorized").await;
    let resp = app
        .request(Method::PATCH, "/v1/users/me")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("patch");
    assert_problem(resp, 401, "unauthorized").await;
    let resp = app
        .request(Method::PUT, "/v1/users/me/password")
        .json(&json!({"current_password": "a", "new_password": "b"}))
        .send()
        .await
        .expect("put");
    assert_problem(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn patching_a_field_that_is_not_yours_to_change_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    for body in [
        json!({"role": "admin"}),
        json!({"disabled": false}),
        json!({"name": "ok", "role": "admin"}),
        json!({"id": uuid::Uuid::new_v4().to_string()}),
        json!({"password": strong_password()}),
        json!({"name": 7}),
    ] {
        assert_problem(app.patch_me(token, &body).await, 400, "malformed_request").await;
    }
    // Nothing changed.
    let me = expect_json(app.me(token).await, 200).await;
    assert_eq!(me["role"], "user");
    assert_eq!(me["name"], Value::Null);
}

#[tokio::test]
async fn a_name_over_100_characters_is_400_validation_failed() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let resp = app
        .patch_me(&user.tokens.access_token, &json!({"name": "n".repeat(101)}))
        .await;
    let body = assert_problem(resp, 400, "validation_failed").await;
    if let Some(errors) = body["errors"].as_array() {
        assert!(
            errors.iter().any(|e| e["field"] == "name"),
            "`errors` should name the field: {body}"
        );
    }
    let resp = app
        .post_json(
            "/v1/auth/register",
            &json!({"email": unique_email(), "password": strong_password(), "name": "n".repeat(101)}),
        )
        .await;
    assert_problem(resp, 400, "validation_failed").await;
}

#[tokio::test]
async fn a_wrong_current_password_is_403_invalid_credentials() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let resp = app
        .change_password(
            &user.tokens.access_token,
            "not-the-current-password",
            &strong_password(),
        )
        .await;
    assert_problem(resp, 403, "invalid_credentials").await;
}

// Found by the contract fuzzing (scripts/fuzz.sh): serde fills a struct from a JSON array,
// field by field, so `[null, null]` was a valid "change nothing" PATCH, and `[true]` a
// logout of every session.
#[tokio::test]
async fn a_json_array_body_is_400_malformed_request_even_where_every_field_is_optional() {
    let (app, admin) = TestApp::spawn_with_admin().await;
    let user = app.new_user().await;
    let token = &user.tokens.access_token;
    for body in ["[null, null]", "[]", " [\"new name\"]"] {
        let resp = app
            .request(Method::PATCH, "/v1/users/me")
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_problem(resp, 400, "malformed_request").await;
        let resp = app
            .request(Method::PATCH, &format!("/v1/admin/users/{}", user.id))
            .bearer_auth(&admin.tokens.access_token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_problem(resp, 400, "malformed_request").await;
    }
    let resp = app
        .request(Method::POST, "/v1/auth/logout")
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("[true]")
        .send()
        .await
        .expect("request");
    assert_problem(resp, 400, "malformed_request").await;
    // Nothing changed, and the session is alive.
    let me = expect_json(app.me(token).await, 200).await;
    assert_eq!(me["name"], Value::Null);
    assert_eq!(me["email"], user.email.as_str());
}
