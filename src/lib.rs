//! todo-api: a multi-user task API for Next.js + Better Auth frontends.
//!
//! Modules import only from those listed after them in this chain (CI checks
//! it with `.ci/module_graph.py`): `app → api → state → (users, tasks,
//! idempotency, events) → auth → db → telemetry → (error, config) →
//! rate_limit`; `server` stands alone.

/// HTTP handlers and the wire types the OpenAPI document is generated from.
pub mod api;
/// Building the app (state, routes, middleware) from a [`config::Config`].
pub mod app;
/// Verifying bearer tokens, the [`auth::Owner`] a verified caller may act as,
/// and minting development tokens.
pub mod auth;
/// Configuration from the environment.
pub mod config;
/// Database connection and availability checks.
pub mod db;
/// The single error type and the problem document it is answered with.
pub mod error;
/// The event streams open on this instance, and how changes wake them.
pub mod events;
/// `Idempotency-Key`: writes that run once however often they are retried.
pub mod idempotency;
/// The per-user request rate limit and its headers.
pub mod rate_limit;
/// The HTTP/1.1 server loop with its timeouts and connection limits.
pub mod server;
/// The state every handler shares.
pub mod state;
/// Task rules: validation and queries.
pub mod tasks;
/// Logging: the subscriber, the request log, the statement log.
pub mod telemetry;
/// User rows provisioned from token claims.
pub mod users;
