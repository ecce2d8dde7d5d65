//! The HTTP API: one `#[OpenApi]` struct per area, merged into one service
//! that produces both the routes and the published OpenAPI document.

mod account;
mod body;
mod changes;
mod conditions;
pub mod document;
mod events;
mod health;
mod idempotency;
pub mod problems;
pub mod schema;
mod security;
mod tags;
mod tasks;
mod trash;

use poem_openapi::{LicenseObject, OpenApiService, ServerObject, Tags};
use tasks::query_rule;

/// Groups of operations in the OpenAPI document and Swagger UI.
#[derive(Tags)]
pub enum ApiTags {
    /// Create, read, update, complete and delete your tasks.
    Tasks,
    /// Deleted tasks: restore them, or delete them for good.
    Trash,
    /// Keep a local copy of your tasks up to date: the change feed.
    Sync,
    /// The tags on your tasks.
    Tags,
    /// The signed-in user.
    Account,
    /// Service status.
    Health,
}

pub type ApiService = OpenApiService<
    (
        tasks::TasksApi,
        trash::TrashApi,
        changes::ChangesApi,
        events::EventsApi,
        tags::TagsApi,
        account::AccountApi,
        health::HealthApi,
    ),
    (),
>;

/// The API and its OpenAPI document. Stateless: state reaches handlers as
/// request data, so the spec can be rendered without a database.
pub fn service() -> ApiService {
    OpenApiService::new(
        (
            tasks::TasksApi,
            trash::TrashApi,
            changes::ChangesApi,
            events::EventsApi,
            tags::TagsApi,
            account::AccountApi,
            health::HealthApi,
        ),
        "Todo API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(include_str!("description.md"))
    .license(
        LicenseObject::new(env!("CARGO_PKG_LICENSE")).url("https://opensource.org/licenses/MIT"),
    )
    .server(ServerObject::new("/").description("The server this document is served from"))
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    document::document_json()
}
