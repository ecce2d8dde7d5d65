//! What every handler shares, attached to each request as data by
//! [`crate::app::build_app`].

use std::sync::Arc;

use crate::{
    auth::TokenVerifier, db, events::ChangeHub, idempotency::Idempotency, users::KnownUsers,
};

/// The app's shared state: database pools, the token verifier, the users
/// already provisioned, and whether writes are known to be failing.
#[derive(Clone)]
pub struct AppState {
    pub db: db::Pools,
    pub verifier: Arc<TokenVerifier>,
    pub users: Arc<KnownUsers>,
    pub write_health: Arc<db::WriteHealth>,
    /// `REQUIRE_IF_MATCH`: writes to a task must say which version they
    /// change.
    pub require_if_match: bool,
    /// The `Idempotency-Key`s being worked on, and how long responses are
    /// remembered.
    pub idempotency: Arc<Idempotency>,
    /// The event streams open on this instance, woken when their user's
    /// tasks change.
    pub changes: Arc<ChangeHub>,
}
