//! Integration tests of user-service, against the HTTP contract (the OpenAPI document), with a
//! real Postgres and Redis. All of them compile into this one binary; the helpers are in the
//! `user_service_tests` library (`tests/src`). Every test starts its own app (see
//! `TestApp`), so they are independent and run in parallel.

mod admin;
mod audit;
mod authorizer;
mod aws_connections;
mod caching;
mod connections;
mod db_role;
mod docs;
mod docs_page;
mod email;
mod errors;
mod failover;
mod health;
mod instances;
mod jwks;
mod limits;
mod login;
mod logout;
mod me;
mod mfa;
mod migrate_resource;
mod outage;
mod password_change;
mod password_reset;
mod refresh;
mod register;
mod revocation_faults;
mod rotation;
mod secrets_at_rest;
mod sessions;
mod structure;
mod tokens;
