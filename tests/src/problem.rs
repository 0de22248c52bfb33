//! Assertions on responses: statuses and RFC 9457 problem details as the contract defines
//! them. Every failure message carries the request URL and the body, so a failing test says
//! what the service actually answered.

use reqwest::Response;
use serde_json::Value;

/// Asserts `resp` is the problem `status` / `code` with the contract's shape, and returns
/// the parsed body.
///
/// Shape (contract, "Conventions"): `Content-Type: application/problem+json`, a JSON object
/// with string `type`, `title`, `detail` and `code`, and a numeric `status` equal to the HTTP
/// status. When `errors` is present it is an array of `{field, code, message}`.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    let url = resp.url().to_string();
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(
        got, status,
        "{url}: expected {status} `{code}`, got {got} with body {text}"
    );
    check_problem_body(&url, status, code, &content_type, &text)
}

/// Checks a problem body that was already read (see [`assert_problem`]).
pub fn check_problem_body(
    url: &str,
    status: u16,
    code: &str,
    content_type: &str,
    text: &str,
) -> Value {
    assert!(
        content_type
            .to_ascii_lowercase()
            .starts_with("application/problem+json"),
        "{url}: {status} `{code}` must be application/problem+json, got Content-Type {content_type:?} and body {text}"
    );
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{url}: problem body is not JSON ({e}): {text}"));
    for field in ["type", "title", "detail", "code"] {
        assert!(
            body[field].is_string(),
            "{url}: problem field `{field}` must be a string: {body}"
        );
    }
    assert!(
        !body["title"].as_str().unwrap_or_default().is_empty(),
        "{url}: problem `title` must not be empty: {body}"
    );
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "{url}: problem `status` must equal the HTTP status {status}: {body}"
    );
    assert_eq!(
        body["code"].as_str(),
        Some(code),
        "{url}: expected code `{code}`: {body}"
    );
    if let Some(errors) = body.get("errors") {
        let list = errors
            .as_array()
            .unwrap_or_else(|| panic!("{url}: `errors` must be an array: {body}"));
        for e in list {
            for field in ["field", "code", "message"] {
                assert!(
                    e[field].is_string(),
                    "{url}: every `errors` entry needs a string `{field}`: {body}"
                );
            }
        }
    }
    body
}

/// Asserts the status and returns the JSON body.
pub async fn expect_json(resp: Response, status: u16) -> Value {
    let url = resp.url().to_string();
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "{url}: expected {status}, got {got}: {text}");
    assert!(
        content_type.to_ascii_lowercase().contains("json"),
        "{url}: expected a JSON Content-Type, got {content_type:?}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: body is not JSON ({e}): {text}"))
}

/// Asserts the status and returns the body as text.
pub async fn expect_status(resp: Response, status: u16) -> String {
    let url = resp.url().to_string();
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "{url}: expected {status}, got {got}: {text}");
    text
}

/// Reads a response into `(status, content type, body text)` for tests that accept several
/// answers.
pub async fn read(resp: Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    (status, content_type, text)
}
