//! The trash: trashed tasks keep their row (and tags) with `deleted_at` set,
//! are hidden from everything but the trash, and are deleted for good on
//! request or `TRASH_RETENTION` after they were trashed. A database trigger
//! remembers each deletion for the change feed.

use chrono::{DateTime, Utc};
use entity::{task, task_change};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, ExprTrait, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, sea_query::Expr,
};

use super::{
    IfVersion,
    query::{
        TAG_NAMES, TaskRow, TaskWithTags, at_version, next_version, now, tag_names_of_row,
        tags_of_task, why_not_written,
    },
};
use crate::{auth::Owner, error::ApiError};

/// The owner's trashed tasks.
fn whole_trash(user_id: &str) -> Condition {
    Condition::all()
        .add(task::Column::UserId.eq(user_id))
        .add(task::Column::DeletedAt.is_not_null())
}

/// The owner's trashed task.
fn in_trash(user_id: &str, task_id: i64) -> Condition {
    whole_trash(user_id).add(task::Column::Id.eq(task_id))
}

/// One page of the trash, most recently trashed first, and its size.
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn list_trash(
    db: &DatabaseConnection,
    owner: &Owner,
    limit: u64,
    offset: u64,
) -> Result<(Vec<TaskWithTags>, u64), ApiError> {
    let trash = task::Entity::find().filter(whole_trash(owner.id()));
    // One row beyond the page shows whether it is the last one, which
    // then tells the total without counting.
    let mut page = trash
        .clone()
        .order_by(task::Column::DeletedAt, Order::Desc)
        .order_by(task::Column::Id, Order::Desc)
        .limit(limit + 1)
        .offset(offset);
    QuerySelect::query(&mut page).expr_as(tag_names_of_row(db.get_database_backend()), TAG_NAMES);
    let mut rows = page.into_model::<TaskRow>().all(db).await?;
    let page_size = usize::try_from(limit).unwrap_or(usize::MAX);
    let total = if rows.len() <= page_size && (!rows.is_empty() || offset == 0) {
        offset + rows.len() as u64
    } else {
        trash.count(db).await?
    };
    rows.truncate(page_size);
    Ok((rows.into_iter().map(|row| row.task).collect(), total))
}

/// Takes the task out of the trash, live again with its tags.
#[tracing::instrument(skip_all, fields(user_id = owner.id(), task_id = task_id))]
pub async fn restore(
    db: &DatabaseConnection,
    owner: &Owner,
    task_id: i64,
    expected: &IfVersion,
) -> Result<TaskWithTags, ApiError> {
    let user_id = owner.id();
    use task::Column as C;
    let restored = task::Entity::update_many()
        .filter(at_version(in_trash(user_id, task_id), expected))
        .col_expr(C::DeletedAt, Expr::val(None::<DateTime<Utc>>))
        .col_expr(C::UpdatedAt, Expr::val(now()))
        .col_expr(C::Version, next_version())
        .exec_with_returning(db)
        .await?
        .pop();
    let Some(task) = restored else {
        return Err(why_not_written(db, in_trash(user_id, task_id), expected).await);
    };
    let tags = tags_of_task(db, task_id).await?;
    Ok(TaskWithTags { task, tags })
}

/// Deletes one trashed task for good; a live task is not in the trash (404).
#[tracing::instrument(skip_all, fields(user_id = owner.id(), task_id = task_id))]
pub async fn delete_trashed(
    db: &DatabaseConnection,
    owner: &Owner,
    task_id: i64,
) -> Result<(), ApiError> {
    // Its task_tags rows go with it (ON DELETE CASCADE).
    let deleted = task::Entity::delete_many()
        .filter(in_trash(owner.id(), task_id))
        .exec(db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(ApiError::NotFound(
            "no task with this id in this user's trash".into(),
        ));
    }
    Ok(())
}

/// Trashed tasks deleted per statement when a trash is emptied: each is a
/// trigger's work (a tombstone, a change number), and one statement for a
/// huge trash could outlast `DATABASE_STATEMENT_TIMEOUT`.
const EMPTY_BATCH: u64 = 1000;

/// Deletes every trashed task of the owner for good, in batches that each
/// commit: a failure part way leaves a smaller trash, never a broken one.
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn empty_trash(db: &DatabaseConnection, owner: &Owner) -> Result<u64, ApiError> {
    let mut deleted = 0;
    loop {
        let batch = task::Entity::find()
            .select_only()
            .column(task::Column::Id)
            .filter(whole_trash(owner.id()))
            .limit(EMPTY_BATCH)
            .into_query();
        let emptied = task::Entity::delete_many()
            .filter(task::Column::Id.in_subquery(batch))
            .filter(whole_trash(owner.id()))
            .exec(db)
            .await?
            .rows_affected;
        deleted += emptied;
        if emptied < EMPTY_BATCH {
            return Ok(deleted);
        }
    }
}

/// Deletes for good up to `limit` tasks trashed before `cutoff`, oldest
/// first; returns how many.
pub async fn purge_trash(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    let expired = task::Entity::find()
        .select_only()
        .column(task::Column::Id)
        .filter(task::Column::DeletedAt.lt(cutoff))
        .order_by(task::Column::DeletedAt, Order::Asc)
        .limit(limit)
        .into_query();
    // The cutoff again on the row itself: a task restored meanwhile (which
    // the subquery's snapshot still saw in the trash) is rechecked and kept.
    let deleted = task::Entity::delete_many()
        .filter(task::Column::Id.in_subquery(expired))
        .filter(task::Column::DeletedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// Forgets up to `limit` deletions made before `cutoff` (Unix seconds);
/// returns how many. A trigger raises each user's `forgotten_through`, so
/// a change feed cursor from before them is refused rather than silently
/// missing them.
pub async fn forget_deletions(
    db: &DatabaseConnection,
    cutoff: i64,
    limit: u64,
) -> Result<u64, DbErr> {
    use task_change::Column as C;
    let expired = task_change::Entity::find()
        .select_only()
        .column(C::UserId)
        .column(C::TaskId)
        .filter(C::DeletedAt.lt(cutoff))
        .order_by(C::DeletedAt, Order::Asc)
        .limit(limit)
        .into_query();
    let deleted = task_change::Entity::delete_many()
        .filter(Expr::tuple([Expr::col(C::UserId), Expr::col(C::TaskId)]).in_subquery(expired))
        .filter(C::DeletedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
