//! Search moved from lower-casing to full case folding with NFKC
//! (`entity::task::search_key`): the stored search columns of existing tasks
//! are recomputed, in batches so that a large table is not held in memory.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Title,
    Description,
    TitleSearch,
    DescriptionSearch,
}

const BATCH: u64 = 500;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        recompute(manager, entity::task::search_key).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // What the previous release stored: plain Unicode lower case.
        recompute(manager, str::to_lowercase).await
    }
}

async fn recompute(manager: &SchemaManager<'_>, key: fn(&str) -> String) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let mut after = 0i64;
    loop {
        let page = Query::select()
            .columns([Tasks::Id, Tasks::Title, Tasks::Description])
            .from(Tasks::Table)
            .and_where(Expr::col(Tasks::Id).gt(after))
            .order_by(Tasks::Id, Order::Asc)
            .limit(BATCH)
            .to_owned();
        let rows = db.query_all(&page).await?;
        for row in &rows {
            let id: i64 = row.try_get("", "id")?;
            let title: String = row.try_get("", "title")?;
            let description: Option<String> = row.try_get("", "description")?;
            let update = Query::update()
                .table(Tasks::Table)
                .value(Tasks::TitleSearch, key(&title))
                .value(Tasks::DescriptionSearch, description.as_deref().map(key))
                .and_where(Expr::col(Tasks::Id).eq(id))
                .to_owned();
            db.execute(&update).await?;
            after = id;
        }
        if (rows.len() as u64) < BATCH {
            return Ok(());
        }
    }
}
