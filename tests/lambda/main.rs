//! End-to-end tests of the Lambda functions: every function binary (`functions/*`, built by
//! `cargo build --workspace --bins`) runs as its own process under an emulated Lambda
//! Runtime API ([`LambdaProcess`]), against the real Postgres and Redis of a fresh
//! deployment, and is fed the events API Gateway would send it.
//!
//! Each function has one test, named after it (`get-me` is `get_me`), which
//! [`every_function_binary_has_a_test`] checks against `ENDPOINTS` plus the authorizer. The
//! example of another API behind the authorizer (`examples/protected-api`, a workspace
//! member) has its own test too: `protected_api`. A
//! test's deployment is a [`TestApp`] (it creates and migrates the database, the key file and
//! the bootstrap admin); the steps that set a scene (a user to log in, a session to end) go
//! through it in-process, and the function under test only through its binary.

mod admin;
mod auth;
mod authorizer;
mod email;
mod example;
mod me;
mod mfa;
mod public;
mod runtime;
mod sessions;

use std::collections::BTreeSet;

use user_service::http::routes::ENDPOINTS;
use user_service_tests::runtime_api::{HttpEvent, LambdaProcess, function_binary};
use user_service_tests::{TestApp, TestUser};

/// The function crates that are not HTTP endpoints and so not in `ENDPOINTS` (migrate and
/// rotate-keys have tests of their own in the `api` binary).
const NON_HTTP_FUNCTIONS: &[&str] = &["authorizer", "cleanup"];

/// Every function binary under test: each `ENDPOINTS` function once, the authorizer and the
/// cleanup.
fn functions() -> BTreeSet<&'static str> {
    ENDPOINTS
        .iter()
        .map(|e| e.function)
        .chain(NON_HTTP_FUNCTIONS.iter().copied())
        .collect()
}

/// The `(method, path)` routes `function` serves, from `ENDPOINTS`.
fn routes_of(function: &str) -> Vec<(&'static str, &'static str)> {
    ENDPOINTS
        .iter()
        .filter(|e| e.function == function)
        .flat_map(|e| e.methods.iter().map(|m| (*m, e.path)))
        .collect()
}

/// The event API Gateway sends for `user` calling `method path` with their bearer token.
fn authed(method: &str, path: &str, user: &TestUser) -> HttpEvent {
    HttpEvent::new(method, path).bearer(&user.tokens.access_token)
}

#[test]
fn every_function_binary_has_a_test() {
    // This test executable's own list of tests (libtest `--list`), whatever the filter.
    let exe = std::env::current_exe().expect("test executable");
    let listed = std::process::Command::new(&exe)
        .args(["--list", "--format", "terse"])
        .output()
        .expect("list the tests");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let tests: BTreeSet<&str> = listed
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .filter_map(|name| name.rsplit("::").next())
        .collect();
    let missing: Vec<&str> = functions()
        .into_iter()
        .filter(|f| !tests.contains(f.replace('-', "_").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "functions without an end-to-end test named after them: {missing:?} (tests: {tests:?})"
    );
    for function in functions() {
        function_binary(function);
    }
}

/// Starts `function` in `app`'s deployment (a shorthand).
async fn start(function: &str, app: &TestApp) -> LambdaProcess {
    LambdaProcess::start(function, app).await
}
