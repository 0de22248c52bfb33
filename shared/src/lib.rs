//! user-service core: everything the local server and every Lambda function share.
//!
//! Read it by layer, each one using only the layers before it:
//!
//! 1. [`domain`]: the validated value types ([`config`] too is a leaf);
//! 2. infrastructure: [`db`] (Postgres), [`redis_store`], [`auth`] (hashing, keys, tokens,
//!    revocation), [`limits`], [`mail`], [`audit`], [`profiles`], [`secrets`] and friends;
//! 3. [`services`]: the use cases, one method per account or session operation, each doing
//!    the whole rule;
//! 4. [`http`]: one small router per endpoint, the extractors, and the one mapping from
//!    service errors to problem responses;
//! 5. [`app`] wires them into a running service, [`lambda`] runs one endpoint as a Lambda
//!    function (a function's `main.rs` only calls [`lambda::run`]), [`check`] asks every
//!    dependency of a configuration whether it is there, and `main.rs` is the command line.
//!
//! The test `tests/api/structure.rs` fails when an import runs back up this list.

// Every route awaits the revocation check inside its extractors: the futures nest deeper
// than the compiler's default limit of 128 lets it lay out.
#![recursion_limit = "256"]

pub mod app;
pub(crate) mod audit;
pub mod auth;
pub mod check;
pub mod config;
pub mod custom_resource;
pub mod db;
pub mod domain;
pub(crate) mod expiring;
pub mod http;
pub mod lambda;
pub(crate) mod limits;
pub(crate) mod mail;
pub(crate) mod profiles;
pub mod redis_store;
pub mod rotation;
pub mod secrets;
pub mod services;
pub mod telemetry;
pub(crate) mod tls;

/// The workspace root, for the unit tests that read the repository. Read when the test runs
/// (`cargo test` sets `CARGO_MANIFEST_DIR`), never with `env!`: a test binary that the shared
/// build cache kept from another clone would read, or write, that clone's files.
#[cfg(test)]
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    std::path::Path::new(&manifest_dir).join("..")
}

pub use app::{App, StartupError};
pub use config::Config;
pub use http::AppState;
