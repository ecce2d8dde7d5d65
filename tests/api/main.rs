//! Black-box tests of the HTTP API. Each test builds the app with the same
//! `build_app` as `main`, on a fresh database of its own, and runs once on
//! SQLite and once on PostgreSQL (when `TEST_DATABASE_URL` is set).

// Test code, helpers included: a failed unwrap is a failing test with its
// message (the workspace denies them in the service itself).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod availability;
mod better_auth;
mod cli;
mod concurrency;
mod conditional;
mod durability;
mod errors;
mod events;
mod idempotency;
mod isolation;
mod jwks;
mod jwks_server;
mod limits;
mod listing;
mod metrics;
mod openapi;
mod process;
mod rate_limit;
mod server;
mod startup;
mod summaries;
mod sync;
mod tasks;
mod trash;
mod validation;
