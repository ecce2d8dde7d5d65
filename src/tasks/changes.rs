//! The change feed: every change to a user's tasks, in the order of the
//! user's change sequence numbers (see the `trash_and_changes` migration).
//! `task_changes` holds one row per task, numbered with its latest change
//! (a tombstone once it is deleted for good), so a page lists each task
//! once, at its latest state.

use entity::{change_sequence, task, task_change};
use sea_orm::{
    Condition, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait, FromQueryResult,
    JoinType, Order,
    sea_query::{Asterisk, Expr, Query},
};

use super::query::{TAG_NAMES, TaskRow, TaskWithTags, tag_names_of_row};
use crate::{auth::Owner, error::ApiError};

/// One change: the task as it now is, or `None` once deleted for good.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: i64,
    pub task_id: i64,
    pub task: Option<TaskWithTags>,
}

/// A page of the feed, oldest change first.
#[derive(Debug, Clone)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// The sequence number the next page starts after.
    pub through: i64,
    pub has_more: bool,
}

/// The owner's changes numbered after `since` (all of them: a full sync,
/// when `None`), at most `limit`. A cursor the feed can no longer honour
/// (a deletion after it was forgotten) or never gave out (past the last
/// number) is [`ApiError::CursorExpired`].
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn changes(
    db: &DatabaseConnection,
    owner: &Owner,
    since: Option<i64>,
    limit: u64,
) -> Result<ChangePage, ApiError> {
    let user_id = owner.id();
    let after = since.unwrap_or(0);
    use task_change::Column as C;
    // One statement, so one snapshot: the changes and the tasks they name
    // as they stood together.
    let page = Query::select()
        .column((task_change::Entity, C::Seq))
        .column((task_change::Entity, C::TaskId))
        .column((task::Entity, Asterisk))
        .expr_as(tag_names_of_row(db.get_database_backend()), TAG_NAMES)
        .from(task_change::Entity)
        .join(
            JoinType::LeftJoin,
            task::Entity,
            Condition::all()
                .add(
                    Expr::col((task::Entity, task::Column::Id))
                        .equals((task_change::Entity, C::TaskId)),
                )
                .add(Expr::col((task_change::Entity, C::DeletedAt)).is_null()),
        )
        .and_where(Expr::col((task_change::Entity, C::UserId)).eq(user_id))
        .and_where(Expr::col((task_change::Entity, C::Seq)).gt(after))
        .order_by((task_change::Entity, C::Seq), Order::Asc)
        .limit(limit + 1)
        .to_owned();
    let rows = db.query_all(&page).await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        let task = match row.try_get::<Option<i64>>("", "id")? {
            Some(_) => Some(TaskRow::from_query_result(row, "")?.task),
            None => None,
        };
        changes.push(Change {
            seq: row.try_get("", "seq")?,
            task_id: row.try_get("", "task_id")?,
            task,
        });
    }
    let page_size = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = changes.len() > page_size;
    changes.truncate(page_size);
    let through = changes.last().map_or(after, |change| change.seq);

    // Read after the page: a deletion forgotten before the page was read
    // shows here.
    if let Some(since) = since {
        let sequence = change_sequence::Entity::find_by_id(user_id.to_owned())
            .one(db)
            .await?;
        let (last, forgotten) = sequence.map_or((0, 0), |s| (s.last_seq, s.forgotten_through));
        if since < forgotten || since > last {
            return Err(ApiError::CursorExpired);
        }
    }
    Ok(ChangePage {
        changes,
        through,
        has_more,
    })
}

/// The number of the owner's latest change (0 before the first): a stream
/// that starts now follows on from it.
pub async fn last_change(db: &DatabaseConnection, owner: &Owner) -> Result<i64, ApiError> {
    let sequence = change_sequence::Entity::find_by_id(owner.id().to_owned())
        .one(db)
        .await?;
    Ok(sequence.map_or(0, |sequence| sequence.last_seq))
}
