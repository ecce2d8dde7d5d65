//! Every database read and write on tasks and tags. Each statement filters by
//! the owner's `user_id`, so another user's rows are never loaded and another
//! user's task is indistinguishable from a missing one (404).

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use entity::{tag, task, task_count, task_tag};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, ExprTrait, FromQueryResult, JoinType,
    Order, PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait,
    RelationTrait, Select, Set, TransactionTrait,
    sea_query::{
        Alias, Asterisk, BinOper, Expr, Func, LikeExpr, LockBehavior, LockType, NullOrdering,
        OnConflict, Query, SelectStatement, SimpleExpr, WindowStatement,
    },
};

use super::{
    IfVersion, SortField, SortOrder, StatusFilter, TaskChanges, TaskDraft, TaskFilter, search_key,
};
use crate::{auth::Owner, error::ApiError};

/// A task row with its tag names, sorted.
#[derive(Debug, Clone)]
pub struct TaskWithTags {
    pub task: task::Model,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCount {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStats {
    pub total: i64,
    pub completed: i64,
    pub pending: i64,
    pub overdue: i64,
}

/// Timestamps are kept at microsecond precision, what both databases store,
/// so a value reads back exactly as it was written.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The owner's live task: a trashed one is found only through the trash.
fn owned(user_id: &str, task_id: i64) -> Condition {
    Condition::all()
        .add(task::Column::Id.eq(task_id))
        .add(task::Column::UserId.eq(user_id))
        .add(task::Column::DeletedAt.is_null())
}

/// The owner's live task, if its version is one `expected` accepts: the
/// row a conditional write may change, so the check and the write are one
/// step.
fn owned_at(user_id: &str, task_id: i64, expected: &IfVersion) -> Condition {
    at_version(owned(user_id, task_id), expected)
}

/// `task`, if its version is one `expected` accepts.
pub(super) fn at_version(task: Condition, expected: &IfVersion) -> Condition {
    match expected {
        IfVersion::Any => task,
        IfVersion::OneOf(versions) => task.add(task::Column::Version.is_in(versions.clone())),
    }
}

/// Why a write matched no row: there is no such task of this user (404),
/// or its version is not one `If-Match` named (412).
async fn not_written(
    db: &impl ConnectionTrait,
    user_id: &str,
    task_id: i64,
    expected: &IfVersion,
) -> ApiError {
    why_not_written(db, owned(user_id, task_id), expected).await
}

/// Why a conditional write of `task` matched no row: it was not there
/// (404), or not at a version `If-Match` named (412). Only a version that
/// `If-Match` does not name is a 412: a task found at a named one (or any,
/// without `If-Match`) came back, restored, after the write missed it.
pub(super) async fn why_not_written(
    db: &impl ConnectionTrait,
    task: Condition,
    expected: &IfVersion,
) -> ApiError {
    let IfVersion::OneOf(versions) = expected else {
        return ApiError::task_not_found();
    };
    let stored = task::Entity::find()
        .select_only()
        .column(task::Column::Version)
        .filter(task)
        .into_tuple::<i64>()
        .one(db)
        .await;
    match stored {
        Ok(Some(current_version)) if !versions.contains(&current_version) => {
            ApiError::PreconditionFailed { current_version }
        }
        Ok(_) => ApiError::task_not_found(),
        Err(err) => err.into(),
    }
}

/// The version after a change.
pub(super) fn next_version() -> SimpleExpr {
    Expr::col(task::Column::Version).add(1)
}

/// Creates a task in a transaction of its own.
pub async fn create(
    db: &DatabaseConnection,
    owner: &Owner,
    draft: TaskDraft,
) -> Result<TaskWithTags, ApiError> {
    let txn = db.begin().await?;
    let task = create_in(&txn, owner, draft).await?;
    txn.commit().await?;
    Ok(task)
}

/// Creates a task within `txn`, which commits it with whatever else it holds
/// (an idempotency key's remembered response).
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn create_in(
    txn: &DatabaseTransaction,
    owner: &Owner,
    draft: TaskDraft,
) -> Result<TaskWithTags, ApiError> {
    let user_id = owner.id();
    let now = now();
    let completed = draft.completed.unwrap_or(false);
    let task = task::ActiveModel {
        user_id: Set(user_id.to_owned()),
        title_search: Set(search_key(&draft.title)),
        title: Set(draft.title),
        description_search: Set(draft.description.as_deref().map(search_key)),
        description: Set(draft.description),
        completed: Set(completed),
        priority: Set(draft.priority),
        due_date: Set(draft.due_date),
        completed_at: Set(completed.then_some(now)),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(1),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    link_tags(txn, user_id, task.id, &draft.tags).await?;
    Ok(TaskWithTags {
        task,
        tags: draft.tags,
    })
}

/// The task and its tags, in one statement.
#[tracing::instrument(skip_all, fields(user_id = owner.id(), task_id = task_id))]
pub async fn get(
    db: &DatabaseConnection,
    owner: &Owner,
    task_id: i64,
) -> Result<TaskWithTags, ApiError> {
    let user_id = owner.id();
    let backend = db.get_database_backend();
    let mut query = task::Entity::find().filter(owned(user_id, task_id));
    QuerySelect::query(&mut query).expr_as(tag_names_of_row(backend), TAG_NAMES);
    let row = query
        .into_model::<TaskRow>()
        .one(db)
        .await?
        .ok_or_else(ApiError::task_not_found)?;
    Ok(row.task)
}

/// Applies a PUT or PATCH in one `UPDATE ... RETURNING` that writes only the
/// given columns, so concurrent updates of different fields (or a toggle) are
/// not lost.
#[tracing::instrument(skip_all, fields(user_id = owner.id(), task_id = task_id))]
pub async fn update(
    db: &DatabaseConnection,
    owner: &Owner,
    task_id: i64,
    expected: &IfVersion,
    changes: TaskChanges,
) -> Result<TaskWithTags, ApiError> {
    let user_id = owner.id();
    use task::Column as C;
    let now = now();
    let mut update = task::Entity::update_many()
        .filter(owned_at(user_id, task_id, expected))
        .col_expr(C::UpdatedAt, Expr::val(now))
        .col_expr(C::Version, next_version());
    if let Some(title) = &changes.title {
        update = update
            .col_expr(C::Title, Expr::val(title.as_str()))
            .col_expr(C::TitleSearch, Expr::val(search_key(title)));
    }
    if let Some(description) = &changes.description {
        update = update
            .col_expr(C::Description, Expr::val(description.clone()))
            .col_expr(
                C::DescriptionSearch,
                Expr::val(description.as_deref().map(search_key)),
            );
    }
    if let Some(priority) = changes.priority {
        update = update.col_expr(C::Priority, Expr::val(priority));
    }
    if let Some(due_date) = changes.due_date {
        update = update.col_expr(C::DueDate, Expr::val(due_date));
    }
    if let Some(completed) = changes.completed {
        // Completing keeps the first completion time; reopening clears it.
        let completed_at = if completed {
            Func::coalesce([Expr::col(C::CompletedAt), Expr::val(now)]).into()
        } else {
            Expr::val(None::<DateTime<Utc>>)
        };
        update = update
            .col_expr(C::Completed, Expr::val(completed))
            .col_expr(C::CompletedAt, completed_at);
    }

    let txn = db.begin().await?;
    let Some(task) = update.exec_with_returning(&txn).await?.pop() else {
        let refusal = not_written(&txn, user_id, task_id, expected).await;
        txn.rollback().await?;
        return Err(refusal);
    };
    let tags = match changes.tags {
        Some(tags) => {
            task_tag::Entity::delete_many()
                .filter(task_tag::Column::TaskId.eq(task_id))
                .exec(&txn)
                .await?;
            link_tags(&txn, user_id, task_id, &tags).await?;
            tags
        }
        None => tags_of_task(&txn, task_id).await?,
    };
    txn.commit().await?;
    Ok(TaskWithTags { task, tags })
}

/// Flips `completed` in a single statement, so concurrent toggles each take
/// effect (an even number of them leaves the task as it was).
#[tracing::instrument(skip_all, fields(user_id = owner.id(), task_id = task_id))]
pub async fn toggle(
    db: &impl ConnectionTrait,
    owner: &Owner,
    task_id: i64,
    expected: &IfVersion,
) -> Result<TaskWithTags, ApiError> {
    let user_id = owner.id();
    use task::Column as C;
    let now = now();
    let completed_at = Expr::case(Expr::col(C::Completed), Expr::val(None::<DateTime<Utc>>))
        .finally(Expr::val(now));
    let toggled = task::Entity::update_many()
        .filter(owned_at(user_id, task_id, expected))
        .col_expr(C::Completed, Expr::col(C::Completed).not())
        .col_expr(C::CompletedAt, completed_at.into())
        .col_expr(C::UpdatedAt, Expr::val(now))
        .col_expr(C::Version, next_version())
        .exec_with_returning(db)
        .await?
        .pop();
    let Some(task) = toggled else {
        return Err(not_written(db, user_id, task_id, expected).await);
    };
    let tags = tags_of_task(db, task_id).await?;
    Ok(TaskWithTags { task, tags })
}

/// Moves the task to the trash: it keeps its tags and can be restored.
#[tracing::instrument(skip_all, fields(user_id = owner.id(), task_id = task_id))]
pub async fn trash(
    db: &DatabaseConnection,
    owner: &Owner,
    task_id: i64,
    expected: &IfVersion,
) -> Result<(), ApiError> {
    let user_id = owner.id();
    use task::Column as C;
    let now = now();
    let trashed = task::Entity::update_many()
        .filter(owned_at(user_id, task_id, expected))
        .col_expr(C::DeletedAt, Expr::val(now))
        .col_expr(C::UpdatedAt, Expr::val(now))
        .col_expr(C::Version, next_version())
        .exec(db)
        .await?;
    if trashed.rows_affected == 0 {
        return Err(not_written(db, user_id, task_id, expected).await);
    }
    Ok(())
}

/// One page of tasks and the number of tasks matching the filter. Each row
/// carries its tags; where the total is the user's task count (kept by the
/// database: a filter by status at most) it rides along too, and on
/// PostgreSQL so does the window count of any other filter but a search, so
/// such a list is one statement. A page past the end has no row to carry
/// it, and a search or a SQLite window count is not worth its cost (below):
/// then a second statement counts, unless the page itself shows where the
/// list ends.
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn list(
    db: &DatabaseConnection,
    owner: &Owner,
    filter: &TaskFilter,
) -> Result<(Vec<TaskWithTags>, u64), ApiError> {
    let user_id = owner.id();
    let backend = db.get_database_backend();
    let search = text_search(db, backend, filter).await?;
    let matching = matching(backend, user_id, filter, search.as_ref());
    let order = match filter.order {
        SortOrder::Asc => Order::Asc,
        SortOrder::Desc => Order::Desc,
    };
    let unsorted = matching.clone();
    let sorted = match filter.sort {
        SortField::CreatedAt => unsorted.order_by(task::Column::CreatedAt, order.clone()),
        SortField::UpdatedAt => unsorted.order_by(task::Column::UpdatedAt, order.clone()),
        SortField::Title => unsorted.order_by(task::Column::TitleSearch, order.clone()),
        SortField::Priority => unsorted.order_by(task::Column::Priority, order.clone()),
        // Undated tasks are listed after dated ones in either direction.
        SortField::DueDate => {
            unsorted.order_by_with_nulls(task::Column::DueDate, order.clone(), NullOrdering::Last)
        }
    };
    // A window count reads and sorts every match before the LIMIT; SQLite
    // even computes every column of each (the tags subquery included). A
    // search may match all of a large user's tasks: there a page that stops
    // at `limit` rows plus a plain count took a third of the time
    // (PostgreSQL, 100 000 matches: 68 ms against 207 ms), and a rare text's
    // page is the last one, which tells the total itself. On SQLite, in
    // process, a second statement costs no round trip at all.
    let window_count = backend == DbBackend::Postgres && filter.q.is_none();
    let total_in_rows = filter.is_status_only() || window_count;
    // Without the total in its rows, one row beyond the page shows whether
    // the page is the last one.
    let fetched = if total_in_rows {
        filter.limit
    } else {
        filter.limit + 1
    };
    let mut page = sorted
        .order_by(task::Column::Id, order)
        .limit(fetched)
        .offset(filter.offset);
    let statement = QuerySelect::query(&mut page);
    statement.expr_as(tag_names_of_row(backend), TAG_NAMES);
    if filter.is_status_only() {
        let counted = counted(user_id, filter.status).into_query();
        statement.expr_as(SimpleExpr::SubQuery(None, Box::new(counted.into())), TOTAL);
    } else if window_count {
        statement.expr_window_as(
            Func::count(Expr::col(Asterisk)),
            WindowStatement::new(),
            TOTAL,
        );
    }
    let mut rows = page.into_model::<TaskRow>().all(db).await?;
    let page_size = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    let last_page = rows.len() <= page_size;
    rows.truncate(page_size);
    let total = match rows.first() {
        Some(row) if total_in_rows => u64::try_from(row.total).unwrap_or_default(),
        Some(_) if last_page => filter.offset + u64::try_from(rows.len()).unwrap_or_default(),
        None if filter.offset == 0 => 0,
        _ if filter.is_status_only() => counted(user_id, filter.status)
            .into_tuple::<Option<i64>>()
            .one(db)
            .await?
            .flatten()
            .map_or(0, |total| u64::try_from(total).unwrap_or_default()),
        _ => matching.count(db).await?,
    };
    Ok((rows.into_iter().map(|row| row.task).collect(), total))
}

/// A `q` search: the text as the search keys hold it, and whether SQLite's
/// trigram index narrows it.
struct TextSearch {
    key: String,
    indexed: bool,
}

async fn text_search(
    db: &DatabaseConnection,
    backend: DbBackend,
    filter: &TaskFilter,
) -> Result<Option<TextSearch>, DbErr> {
    let Some(text) = &filter.q else {
        return Ok(None);
    };
    let key = search_key(text);
    // A text shorter than three characters has no trigram to look up.
    let indexed =
        backend == DbBackend::Sqlite && key.chars().count() >= 3 && is_rare(db, &key).await?;
    Ok(Some(TextSearch { key, indexed }))
}

/// Whether SQLite's trigram index (see its migration) should narrow a search
/// for `key`: when the text is rare. The index holds every user's tasks, so
/// a search through it costs the text's matches among all users, and its
/// page must sort them all; reading the user's rows costs their number, but
/// a page of a common text stops after `limit` of them. So the index is
/// asked whether the text has more than [`SEARCH_INDEX_MAX_MATCHES`]
/// matches in all, which costs at most that many.
async fn is_rare(db: &DatabaseConnection, key: &str) -> Result<bool, DbErr> {
    let first_matches = indexed_matches(key)
        .limit(SEARCH_INDEX_MAX_MATCHES + 1)
        .to_owned();
    let probe = Query::select()
        .expr(Func::count(Expr::col(Asterisk)))
        .from_subquery(first_matches, Alias::new("first_matches"))
        .to_owned();
    let matches: i64 = match db.query_one(&probe).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(u64::try_from(matches).unwrap_or_default() <= SEARCH_INDEX_MAX_MATCHES)
}

/// A text with at most this many matches among all users' tasks is searched
/// through SQLite's trigram index; a page of it then costs about a
/// millisecond at most.
pub const SEARCH_INDEX_MAX_MATCHES: u64 = 1_000;

/// The user's number of tasks with the status: the sum over their count
/// rows, as a bigint (PostgreSQL sums bigints as numeric); NULL for a user
/// who never had a task.
fn counted(user_id: &str, status: StatusFilter) -> Select<task_count::Entity> {
    use task_count::Column as C;
    let counted = match status {
        StatusFilter::All => Expr::col(C::Total),
        StatusFilter::Completed => Expr::col(C::Completed),
        StatusFilter::Pending => Expr::col(C::Total).sub(Expr::col(C::Completed)),
    };
    task_count::Entity::find()
        .select_only()
        .expr(Func::cast_as(Func::sum(counted), "bigint"))
        .filter(C::UserId.eq(user_id))
}

pub(super) const TAG_NAMES: &str = "tag_names";
const TOTAL: &str = "total";

/// A task row with its tags as one JSON array of names (and, in a list, the
/// window count of matching rows).
pub(super) struct TaskRow {
    pub(super) task: TaskWithTags,
    total: i64,
}

impl FromQueryResult for TaskRow {
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        let task = task::Model::from_query_result(row, pre)?;
        let names: Option<String> = row.try_get(pre, TAG_NAMES)?;
        let mut tags: Vec<String> = match names {
            Some(json) => serde_json::from_str(&json)
                .map_err(|err| DbErr::Type(format!("tag names of task {}: {err}", task.id)))?,
            None => Vec::new(),
        };
        // Sorted here rather than in SQL, where the order would depend on the
        // database's collation.
        tags.sort();
        let total = row.try_get(pre, TOTAL).unwrap_or_default();
        Ok(Self {
            task: TaskWithTags { task, tags },
            total,
        })
    }
}

/// The tag names of the row's task as a JSON array (text), or NULL (on
/// PostgreSQL) when it has none: a correlated subquery, so a page and its
/// tags are one statement.
pub(super) fn tag_names_of_row(backend: DbBackend) -> SimpleExpr {
    let name = Expr::col((tag::Entity, tag::Column::Name));
    let array: SimpleExpr = match backend {
        DbBackend::Postgres => Func::cast_as(Func::cust("json_agg").arg(name), "text").into(),
        _ => Func::cust("json_group_array").arg(name).into(),
    };
    let names = Query::select()
        .expr(array)
        .from(task_tag::Entity)
        .inner_join(
            tag::Entity,
            Expr::col((tag::Entity, tag::Column::Id))
                .equals((task_tag::Entity, task_tag::Column::TagId)),
        )
        .and_where(
            Expr::col((task_tag::Entity, task_tag::Column::TaskId))
                .equals((task::Entity, task::Column::Id)),
        )
        .to_owned();
    SimpleExpr::SubQuery(None, Box::new(names.into()))
}

/// The user's tasks that pass the filter, `q` given as its [`TextSearch`].
fn matching(
    backend: DbBackend,
    user_id: &str,
    filter: &TaskFilter,
    search: Option<&TextSearch>,
) -> Select<task::Entity> {
    use task::Column as C;
    let mut query = task::Entity::find()
        .filter(C::UserId.eq(user_id))
        .filter(C::DeletedAt.is_null());
    match filter.status {
        StatusFilter::All => {}
        StatusFilter::Pending => query = query.filter(C::Completed.eq(false)),
        StatusFilter::Completed => query = query.filter(C::Completed.eq(true)),
    }
    if let Some(priority) = filter.priority {
        query = query.filter(C::Priority.eq(priority));
    }
    if let Some(tag) = &filter.tag {
        let tagged = Query::select()
            .column((task_tag::Entity, task_tag::Column::TaskId))
            .from(task_tag::Entity)
            .inner_join(
                tag::Entity,
                Expr::col((tag::Entity, tag::Column::Id))
                    .equals((task_tag::Entity, task_tag::Column::TagId)),
            )
            .and_where(Expr::col((tag::Entity, tag::Column::UserId)).eq(user_id))
            .and_where(Expr::col((tag::Entity, tag::Column::Name)).eq(tag.as_str()))
            .to_owned();
        query = query.filter(C::Id.in_subquery(tagged));
    }
    if let Some(search) = search {
        let pattern = format!("%{}%", escape_like(&search.key));
        let contains = |column: C| match backend {
            DbBackend::Postgres => {
                // Written into the statement, not bound. A bound pattern gets
                // a generic plan after five runs of the prepared statement,
                // which cannot tell whether the pattern has trigrams and so
                // scans all the user's rows. Seeing the pattern, the planner
                // takes the trigram indexes when it has trigrams and the
                // user's rows when it has none (for which a trigram scan
                // would read the whole index). sea-query writes it as an
                // escaped string literal; backslash is PostgreSQL's default
                // LIKE escape.
                Expr::col(column).binary(BinOper::Like, Expr::Constant(pattern.clone().into()))
            }
            _ => column.like(LikeExpr::new(pattern.clone()).escape('\\')),
        };
        query = query.filter(
            Condition::any()
                .add(contains(C::TitleSearch))
                .add(contains(C::DescriptionSearch)),
        );
        if search.indexed {
            query = query.filter(C::Id.in_subquery(indexed_matches(&search.key)));
        }
    }
    if let Some(before) = filter.due_before {
        query = query.filter(C::DueDate.lt(before));
    }
    if let Some(after) = filter.due_after {
        query = query.filter(C::DueDate.gte(after));
    }
    query
}

/// On SQLite, the ids of all users' tasks whose search keys contain `key`
/// (at least three characters: one trigram), from the FTS5 trigram index.
/// A phrase of the key's trigrams matches exactly where the key is a
/// substring; the `LIKE` beside it keeps the result exact regardless.
fn indexed_matches(key: &str) -> SelectStatement {
    let phrase = format!("\"{}\"", key.replace('"', "\"\""));
    Query::select()
        .expr(Expr::col(Alias::new("rowid")))
        .from(Alias::new(SEARCH_INDEX))
        // The table's own name as a column: the match covers both keys.
        .and_where(Expr::col(Alias::new(SEARCH_INDEX)).binary(BinOper::Custom("MATCH"), phrase))
        .to_owned()
}

/// The FTS5 table over the search keys (SQLite only; see its migration).
const SEARCH_INDEX: &str = "task_search";

/// Makes `%`, `_` and `\` in user input match themselves.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Tag names of the given tasks, each list sorted. One query.
async fn tags_of(
    db: &impl ConnectionTrait,
    task_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, DbErr> {
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    if task_ids.is_empty() {
        return Ok(tags);
    }
    let rows: Vec<(i64, String)> = task_tag::Entity::find()
        .select_only()
        .column(task_tag::Column::TaskId)
        .column(tag::Column::Name)
        .join(JoinType::InnerJoin, task_tag::Relation::Tag.def())
        .filter(task_tag::Column::TaskId.is_in(task_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    for (task_id, name) in rows {
        tags.entry(task_id).or_default().push(name);
    }
    // Sorted here rather than in SQL, where the order would depend on the
    // database's collation.
    tags.values_mut().for_each(|names| names.sort());
    Ok(tags)
}

pub(super) async fn tags_of_task(
    db: &impl ConnectionTrait,
    task_id: i64,
) -> Result<Vec<String>, DbErr> {
    Ok(tags_of(db, &[task_id])
        .await?
        .remove(&task_id)
        .unwrap_or_default())
}

/// Attaches normalised tag names to a task, creating the user's tags that do
/// not exist yet. Concurrent requests creating the same tag both succeed.
async fn link_tags(
    txn: &impl ConnectionTrait,
    user_id: &str,
    task_id: i64,
    names: &[String],
) -> Result<(), DbErr> {
    if names.is_empty() {
        return Ok(());
    }
    // The tags are linked straight from the select that share-locks them
    // until commit, so the orphan sweep (which skips locked rows) cannot
    // delete one between here and the link. A tag the sweep deleted just
    // before it was locked is not linked; it is inserted again.
    let mut linked = 0;
    for _ in 0..3 {
        tag::Entity::insert_many(names.iter().map(|name| tag::ActiveModel {
            user_id: Set(user_id.to_owned()),
            name: Set(name.clone()),
            ..Default::default()
        }))
        .on_conflict(
            OnConflict::columns([tag::Column::UserId, tag::Column::Name])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        let tags = Query::select()
            .expr(Expr::val(task_id))
            .column(tag::Column::Id)
            .from(tag::Entity)
            .and_where(tag::Column::UserId.eq(user_id))
            .and_where(tag::Column::Name.is_in(names.iter().map(String::as_str)))
            .lock_shared()
            .to_owned();
        let link = Query::insert()
            .into_table(task_tag::Entity)
            .columns([task_tag::Column::TaskId, task_tag::Column::TagId])
            .select_from(tags)
            .map_err(|err| DbErr::Custom(err.to_string()))?
            .on_conflict(
                OnConflict::columns([task_tag::Column::TaskId, task_tag::Column::TagId])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        linked += txn.execute(&link).await?.rows_affected();
        if linked >= names.len() as u64 {
            break;
        }
    }
    Ok(())
}

/// Deletes up to `limit` tags that no task carries any more; returns how many.
/// Tags a transaction is linking are row-locked and skipped, so the sweep
/// never races a concurrent write (see `link_tags`).
pub async fn sweep_orphan_tags(db: &DatabaseConnection, limit: u64) -> Result<u64, DbErr> {
    let linked = Query::select()
        .expr(Expr::val(1))
        .from(task_tag::Entity)
        .and_where(
            Expr::col((task_tag::Entity, task_tag::Column::TagId))
                .equals((tag::Entity, tag::Column::Id)),
        )
        .to_owned();
    let orphans = Query::select()
        .column((tag::Entity, tag::Column::Id))
        .from(tag::Entity)
        .and_where(Expr::exists(linked).not())
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let deleted = tag::Entity::delete_many()
        .filter(tag::Column::Id.in_subquery(orphans))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// The user's tags that are on at least one live task, most used first.
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn tag_counts(db: &DatabaseConnection, owner: &Owner) -> Result<Vec<TagCount>, ApiError> {
    let user_id = owner.id();
    let count = task_tag::Column::TaskId.count();
    let rows: Vec<(String, i64)> = tag::Entity::find()
        .select_only()
        .column(tag::Column::Name)
        .column_as(count.clone(), "count")
        .join(JoinType::InnerJoin, task_tag::Relation::Tag.def().rev())
        .join(JoinType::InnerJoin, task_tag::Relation::Task.def())
        .filter(tag::Column::UserId.eq(user_id))
        .filter(task::Column::DeletedAt.is_null())
        .group_by(tag::Column::Id)
        .group_by(tag::Column::Name)
        .into_tuple()
        .all(db)
        .await?;
    let mut counts: Vec<TagCount> = rows
        .into_iter()
        .map(|(name, count)| TagCount { name, count })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    Ok(counts)
}

/// Counts for a dashboard, in one query. Overdue: not completed and due
/// before now.
#[tracing::instrument(skip_all, fields(user_id = owner.id()))]
pub async fn stats(db: &DatabaseConnection, owner: &Owner) -> Result<TaskStats, ApiError> {
    let user_id = owner.id();
    use task::Column as C;
    let count_where =
        |condition: Expr| Expr::from(Func::count(Expr::case(condition, Expr::val(1))));
    let overdue = C::Completed.eq(false).and(C::DueDate.lt(now()));
    let (total, completed, overdue): (i64, i64, i64) = task::Entity::find()
        .select_only()
        .column_as(C::Id.count(), "total")
        .column_as(count_where(C::Completed.eq(true)), "completed")
        .column_as(count_where(overdue), "overdue")
        .filter(C::UserId.eq(user_id))
        .filter(C::DeletedAt.is_null())
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or_default();
    Ok(TaskStats {
        total,
        completed,
        pending: total - completed,
        overdue,
    })
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_in_user_input_are_escaped() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
    }
}
