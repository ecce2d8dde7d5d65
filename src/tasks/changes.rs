//! The change feed: every change to a user's tasks, in the order of the
//! user's change sequence numbers (see the `trash_and_changes` migration).
//! A task's row holds the number of its latest change and a tombstone the
//! number of its deletion, so a page lists each task once, at its latest
//! state.

use std::collections::HashSet;

use entity::{change_sequence, task, task_tombstone};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait,
    FromQueryResult, JoinType, Order,
    sea_query::{Alias, Asterisk, Expr, Query, SelectStatement, UnionType},
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

const CHANGES: &str = "changes";
const SEQ: &str = "seq";
const TASK_ID: &str = "task_id";

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
    // Each side stops at a page from its own index on (user, number), so a
    // page costs its size whatever the user's: the union is then at most
    // two pages to merge.
    let first_page = |mut numbered: SelectStatement, name: &str| {
        Query::select()
            .column(Asterisk)
            .from_subquery(
                numbered
                    .order_by(Alias::new(SEQ), Order::Asc)
                    .limit(limit + 1)
                    .to_owned(),
                Alias::new(name),
            )
            .to_owned()
    };
    let mut live = first_page(
        Query::select()
            .expr_as(Expr::col(task::Column::ChangeSeq), Alias::new(SEQ))
            .expr_as(Expr::col(task::Column::Id), Alias::new(TASK_ID))
            .from(task::Entity)
            .and_where(task::Column::UserId.eq(user_id))
            .and_where(task::Column::ChangeSeq.gt(after))
            .to_owned(),
        "live",
    );
    let deleted = first_page(
        Query::select()
            .expr_as(
                Expr::col(task_tombstone::Column::ChangeSeq),
                Alias::new(SEQ),
            )
            .expr_as(
                Expr::col(task_tombstone::Column::TaskId),
                Alias::new(TASK_ID),
            )
            .from(task_tombstone::Entity)
            .and_where(task_tombstone::Column::UserId.eq(user_id))
            .and_where(task_tombstone::Column::ChangeSeq.gt(after))
            .to_owned(),
        "deleted",
    );
    // One statement, so one snapshot: a change committed between reading
    // the tasks and the tombstones cannot be skipped over.
    let changed = Alias::new(CHANGES);
    let page = Query::select()
        .column((changed.clone(), Alias::new(SEQ)))
        .column((changed.clone(), Alias::new(TASK_ID)))
        .column((task::Entity, Asterisk))
        .expr_as(
            tag_names_of_row(db.get_database_backend()),
            Alias::new(TAG_NAMES),
        )
        .from_subquery(
            live.union(UnionType::All, deleted).to_owned(),
            changed.clone(),
        )
        .join(
            JoinType::LeftJoin,
            task::Entity,
            Condition::all()
                .add(
                    Expr::col((task::Entity, task::Column::Id))
                        .equals((changed.clone(), Alias::new(TASK_ID))),
                )
                .add(
                    Expr::col((task::Entity, task::Column::ChangeSeq))
                        .equals((changed.clone(), Alias::new(SEQ))),
                ),
        )
        .order_by((changed, Alias::new(SEQ)), Order::Asc)
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
            seq: row.try_get("", SEQ)?,
            task_id: row.try_get("", TASK_ID)?,
            task,
        });
    }
    let page_size = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = changes.len() > page_size;
    changes.truncate(page_size);
    let through = changes.last().map_or(after, |change| change.seq);
    // On SQLite a new task can take the id of the last one deleted for
    // good; its upsert replaces the earlier deletion.
    let mut seen = HashSet::new();
    changes.reverse();
    changes.retain(|change| seen.insert(change.task_id));
    changes.reverse();

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
