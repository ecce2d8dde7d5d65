//! SeaORM entities mirroring the schema that the `migration` crate creates.
//!
//! Only table shapes and relations live here; the rules about tasks (validation,
//! queries) live in the service's `tasks` module.

pub mod change_sequence;
pub mod event_listener;
pub mod idempotency_key;
pub mod tag;
pub mod task;
pub mod task_change;
pub mod task_count;
pub mod task_tag;
pub mod user;
pub mod write_probe;

pub use task::Priority;
