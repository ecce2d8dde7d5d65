//! A one-row table that `/health` writes to, so that a database which can
//! still answer queries but can no longer commit (disk full, read-only) is
//! reported unhealthy.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WriteProbe {
    Table,
    Id,
    CheckedAt,
    Filler,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WriteProbe::Table)
                    .if_not_exists()
                    .col(integer(WriteProbe::Id).primary_key())
                    .col(timestamp_with_time_zone(WriteProbe::CheckedAt))
                    .col(blob_null(WriteProbe::Filler))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WriteProbe::Table).to_owned())
            .await
    }
}
