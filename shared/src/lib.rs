//! user-service core: everything the local server and every Lambda function share.
//!
//! Read it top down: [`domain`] holds the validated value types, [`auth`] the password
//! hashing, signing keys, tokens and revocation, [`db`] the Postgres storage, [`http`] one
//! small router per endpoint plus the layers every route gets, and [`app`] wires them into
//! a running service. A Lambda function's `main.rs` only calls [`lambda::run`].

pub mod app;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod custom_resource;
pub mod db;
pub mod domain;
pub mod expiring;
pub mod http;
pub mod lambda;
pub mod limits;
pub mod mail;
pub mod profiles;
pub mod redis_store;
pub mod rotation;
pub mod secrets;
pub mod telemetry;
pub mod tls;

pub use app::{App, AppState, StartupError};
pub use config::Config;
