//! `idempotency_keys`: per user and `Idempotency-Key`, the fingerprint of
//! the request that used it and the response it got, written in the same
//! transaction as the write the response describes. Rows past `expires_at`
//! are deleted by the service.

use sea_orm::DbBackend;
use sea_orm_migration::{
    prelude::*,
    schema::{integer, text, text_null, timestamp_with_time_zone},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    UserId,
    Key,
    Fingerprint,
    Status,
    Body,
    Location,
    Etag,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create()
            .table(IdempotencyKeys::Table)
            .col(text(IdempotencyKeys::UserId))
            .col(text(IdempotencyKeys::Key))
            .col(text(IdempotencyKeys::Fingerprint))
            .col(integer(IdempotencyKeys::Status))
            .col(text(IdempotencyKeys::Body))
            .col(text_null(IdempotencyKeys::Location))
            .col(text_null(IdempotencyKeys::Etag))
            .col(timestamp_with_time_zone(IdempotencyKeys::ExpiresAt))
            .primary_key(
                Index::create()
                    .col(IdempotencyKeys::UserId)
                    .col(IdempotencyKeys::Key),
            )
            .foreign_key(
                ForeignKey::create()
                    .from(IdempotencyKeys::Table, IdempotencyKeys::UserId)
                    .to(Users::Table, Users::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        // No index on `expires_at`: every keyed write would pay for it, while
        // the sweep that deletes expired keys runs every few minutes, in
        // batches that find the oldest rows first. On SQLite the rows live in
        // the primary key's b-tree (one b-tree to write, not two).
        if manager.get_database_backend() == DbBackend::Sqlite {
            table.extra("WITHOUT ROWID");
        }
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}
