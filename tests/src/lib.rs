//! Helpers for the black-box integration tests of user-service (the tests are in `api/`, and
//! in `lambda/` for the function binaries under an emulated Lambda Runtime API).
//!
//! Every test gets its own running service ([`TestApp`]): a fresh Postgres database named by
//! a UUID, its own Redis key prefix and its own signing-key file, bound to port 0, with typed
//! request helpers, as in zero-to-production's `tests/api/helpers.rs`. Dropping the app
//! stops the server and removes everything it created. These helpers talk to the service
//! only as a client would (HTTP, plus reading the key file it wrote); they must never reach
//! into the service's internals to make a test pass.

pub mod database;
pub mod jwt;
pub mod mfa;
pub mod moto;
pub mod problem;
pub mod proxy;
pub mod redis_server;
pub mod runtime_api;
pub mod smtp;
pub mod test_app;
pub mod tls;

pub use database::TestDatabase;
pub use moto::moto_endpoint;
pub use problem::{assert_problem, expect_json, expect_status};
pub use proxy::TcpProxy;
pub use redis_server::RedisServer;
pub use smtp::{ReceivedMail, SmtpServer};
pub use test_app::{TestApp, TestAppBuilder, TestUser, TokenPair, strong_password, unique_email};

pub use test_app::{random_client_ip, token_pair};

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `check` until it returns `true` or `within` has passed; returns the last answer.
/// For states that settle after an outage ends (pools reconnecting).
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `request`, failing the test if it takes longer than `limit` (a hang); returns the
/// response and how long it took.
pub async fn timed<Fut>(limit: Duration, what: &str, request: Fut) -> (reqwest::Response, Duration)
where
    Fut: Future<Output = reqwest::Result<reqwest::Response>>,
{
    let started = Instant::now();
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(resp)) => (resp, started.elapsed()),
        Ok(Err(e)) => panic!(
            "{what}: request failed after {:?}: {e:?}",
            started.elapsed()
        ),
        Err(_) => panic!("{what}: no answer within {limit:?} (a hang)"),
    }
}
