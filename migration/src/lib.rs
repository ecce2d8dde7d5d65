//! Schema migrations. Every schema change is a new module here, appended to
//! [`Migrator::migrations`]; an applied migration is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_tables;
mod m20261203_000001_create_write_probe;
mod m20261203_000002_tag_links_restrict_tag_delete;
mod m20261203_000003_recompute_search_keys;
mod m20261203_000004_task_counts;
mod m20261203_000005_list_order_indexes;
mod m20261203_000006_search_trigram_indexes;
mod m20261203_000007_due_date_desc_index;
mod m20261203_000008_sqlite_search_index;
mod m20261205_000001_task_versions;
mod m20261205_000002_idempotency_keys;
mod m20261205_000003_trash_and_changes;
mod m20261205_000004_event_listeners;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_tables::Migration),
            Box::new(m20261203_000001_create_write_probe::Migration),
            Box::new(m20261203_000002_tag_links_restrict_tag_delete::Migration),
            Box::new(m20261203_000003_recompute_search_keys::Migration),
            Box::new(m20261203_000004_task_counts::Migration),
            Box::new(m20261203_000005_list_order_indexes::Migration),
            Box::new(m20261203_000006_search_trigram_indexes::Migration),
            Box::new(m20261203_000007_due_date_desc_index::Migration),
            Box::new(m20261203_000008_sqlite_search_index::Migration),
            Box::new(m20261205_000001_task_versions::Migration),
            Box::new(m20261205_000002_idempotency_keys::Migration),
            Box::new(m20261205_000003_trash_and_changes::Migration),
            Box::new(m20261205_000004_event_listeners::Migration),
        ]
    }
}
