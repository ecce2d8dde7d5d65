//! Wire types: what the frontend sends and receives. Their doc comments are
//! the descriptions in the published OpenAPI document.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use poem_openapi::{
    Enum, Object,
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{
        Example, MaybeUndefined, ParseError, ParseFromJSON, ParseFromParameter, ParseResult,
        ToJSON, Type,
    },
};
use serde_json::{Value, json};

use crate::tasks::{
    self, Description, FieldValue, Priority, TagList, TaskWithTags, Text, TextRule, Title,
    inline_type,
};

/// An instant, always rendered in UTC with a `Z` suffix and at most
/// microsecond precision, e.g. `2026-11-22T10:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

// No example in the schema: Swagger UI would pre-fill the optional
// `due_before` and `due_after` filters with it. Properties get theirs from
// their schema's example.
inline_type!(
    [] Timestamp,
    "string_date-time",
    MetaSchema::new_with_format("string", "date-time")
);

impl ToJSON for Timestamp {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(
            self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ))
    }
}

impl ParseFromJSON for Timestamp {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => Self::parse_from_parameter(&text),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl FieldValue for Timestamp {
    fn read(value: &Value) -> Result<Self, String> {
        let text = tasks::without_nul(value.as_str().ok_or("must be a string")?)?;
        tasks::parse_timestamp(text)
            .map(Self)
            .ok_or_else(|| tasks::TIMESTAMP_RULE.into())
    }
}

impl ParseFromParameter for Timestamp {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        tasks::parse_timestamp(value)
            .map(Self)
            .ok_or_else(|| ParseError::custom(tasks::TIMESTAMP_RULE))
    }
}

/// A response property that is always present and `null` when there is no
/// value. poem-openapi makes every `Option` property optional, which would let
/// generated clients type it `field?: T | null` although the server always
/// sends it; with `#[oai(nullable)]` this is a required, nullable property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nullable<T>(pub Option<T>);

impl<T: Type> Type for Nullable<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl<T: ToJSON> ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<Value> {
        Some(
            self.0
                .as_ref()
                .and_then(ToJSON::to_json)
                .unwrap_or(Value::Null),
        )
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Option::<T>::parse_from_json(value)
            .map(Self)
            .map_err(ParseError::propagate)
    }
}

impl<T> From<Option<T>> for Nullable<T> {
    fn from(value: Option<T>) -> Self {
        Self(value)
    }
}

/// A task, as every task endpoint returns it.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Task {
    /// Unique id of the task.
    pub id: i64,
    /// Owner of the task: the token subject that created it.
    pub user_id: String,
    /// Short title, 1 to 200 characters, trimmed.
    pub title: String,
    /// Longer free text, up to 1000 characters; `null` when not set.
    #[oai(nullable)]
    pub description: Nullable<String>,
    /// Whether the task is done.
    pub completed: bool,
    /// How important the task is.
    pub priority: Priority,
    /// When the task is due; `null` when it has no due date.
    #[oai(nullable)]
    pub due_date: Nullable<Timestamp>,
    /// Tag names: trimmed, lower-cased, unique and sorted.
    pub tags: Vec<String>,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When the task was last changed.
    pub updated_at: Timestamp,
    /// When the task was completed; `null` while it is pending.
    #[oai(nullable)]
    pub completed_at: Nullable<Timestamp>,
    /// 1 when created, +1 on every change. The response's `ETag` is this
    /// number quoted; send it in `If-Match` so a write cannot overwrite a
    /// change you have not seen.
    pub version: i64,
    /// When the task was moved to the trash; `null` while it is live. Only
    /// the trash and the change feed show trashed tasks.
    #[oai(nullable)]
    pub deleted_at: Nullable<Timestamp>,
}

impl From<TaskWithTags> for Task {
    fn from(TaskWithTags { task, tags }: TaskWithTags) -> Self {
        Self {
            id: task.id,
            user_id: task.user_id,
            title: task.title,
            description: task.description.into(),
            completed: task.completed,
            priority: task.priority,
            due_date: task.due_date.map(Timestamp).into(),
            tags,
            created_at: Timestamp(task.created_at),
            updated_at: Timestamp(task.updated_at),
            completed_at: task.completed_at.map(Timestamp).into(),
            version: task.version,
            deleted_at: task.deleted_at.map(Timestamp).into(),
        }
    }
}

/// A new task. Only `title` is required.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct NewTask {
    /// 1 to 200 characters after trimming surrounding whitespace.
    pub title: Text<Title>,
    /// Up to 1000 characters, or `null`.
    #[oai(nullable)]
    pub description: Option<Text<Description>>,
    /// Defaults to `medium`.
    pub priority: Option<Priority>,
    /// An RFC 3339 date-time (any offset; stored in UTC), or `null`.
    #[oai(nullable)]
    pub due_date: Option<Timestamp>,
    /// Up to 20 tags of 1 to 50 characters once trimmed and lower-cased (a few
    /// letters, such as `İ`, lower-case to two); duplicates collapse.
    pub tags: Option<TagList>,
}

/// A full replacement of a task: absent optional fields are reset to their
/// defaults (no description, `medium`, no due date, no tags), except
/// `completed`, which is kept when absent.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct TaskReplacement {
    #[oai(flatten)]
    pub task: NewTask,
    /// Completion state; unchanged when absent.
    pub completed: Option<bool>,
}

/// A partial update: absent fields are unchanged, `null` clears
/// `description` or `due_date`.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct TaskPatch {
    /// 1 to 200 characters after trimming surrounding whitespace.
    pub title: Option<Text<Title>>,
    /// Up to 1000 characters; `null` clears it.
    #[oai(nullable)]
    pub description: MaybeUndefined<Text<Description>>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New due date; `null` clears it.
    #[oai(nullable)]
    pub due_date: MaybeUndefined<Timestamp>,
    /// Replaces all of the task's tags.
    pub tags: Option<TagList>,
    /// Completion state; completing sets `completed_at`, reopening clears it.
    pub completed: Option<bool>,
}

/// One page of tasks.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct TaskPage {
    /// The tasks on this page, in the requested order.
    pub items: Vec<Task>,
    /// How many tasks match the filters, over all pages.
    pub total: u64,
    /// The page size used.
    pub limit: u64,
    /// How many matching tasks were skipped before this page.
    pub offset: u64,
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Created or changed (or restored from the trash): `task` is the live
    /// task; store it.
    Upsert,
    /// Moved to the trash: `task` is the trashed task (`deleted_at` set);
    /// hide it, or show it in your trash view.
    Trash,
    /// Deleted for good: `task` is `null`; forget the task.
    Delete,
}

/// One change to one of your tasks.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Change {
    /// The change's number among your changes: increasing, not contiguous
    /// in a page (a task changed again shows only at its latest change).
    pub seq: i64,
    /// What happened.
    pub op: ChangeOp,
    /// The task it happened to.
    pub task_id: i64,
    /// The task as it now is: live for `upsert`, trashed for `trash`,
    /// `null` for `delete`.
    #[oai(nullable)]
    pub task: Nullable<Task>,
}

impl From<tasks::Change> for Change {
    fn from(change: tasks::Change) -> Self {
        let op = match &change.task {
            None => ChangeOp::Delete,
            Some(task) if task.task.deleted_at.is_some() => ChangeOp::Trash,
            Some(_) => ChangeOp::Upsert,
        };
        Self {
            seq: change.seq,
            op,
            task_id: change.task_id,
            task: change.task.map(Task::from).into(),
        }
    }
}

/// A page of the change feed, oldest change first.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ChangePage {
    /// Each task at most once, at its latest change.
    pub changes: Vec<Change>,
    /// Where the next page starts: send it as `since`. Opaque; store it
    /// once `has_more` is `false` and sync from it next time.
    pub cursor: String,
    /// Whether more changes follow: request again with `since=<cursor>`
    /// right away.
    pub has_more: bool,
}

/// A tag and how many of the user's tasks carry it.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct TagCount {
    /// Tag name (lower-case).
    pub name: String,
    /// Number of tasks carrying the tag (at least 1).
    pub count: i64,
}

impl From<tasks::TagCount> for TagCount {
    fn from(tag: tasks::TagCount) -> Self {
        Self {
            name: tag.name,
            count: tag.count,
        }
    }
}

/// Task counts for a dashboard.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct TaskStats {
    /// All of the user's tasks.
    pub total: i64,
    /// Tasks marked completed.
    pub completed: i64,
    /// Tasks not completed (`total - completed`).
    pub pending: i64,
    /// Pending tasks whose due date has passed.
    pub overdue: i64,
}

impl From<tasks::TaskStats> for TaskStats {
    fn from(stats: tasks::TaskStats) -> Self {
        Self {
            total: stats.total,
            completed: stats.completed,
            pending: stats.pending,
            overdue: stats.overdue,
        }
    }
}

/// The signed-in user, as stored from the token's claims.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Me {
    /// The user id (the token's `sub`).
    pub id: String,
    /// Email from the token's `email` claim; `null` if no token carried one.
    #[oai(nullable)]
    pub email: Nullable<String>,
    /// Display name from the token's `name` claim; `null` if no token carried one.
    #[oai(nullable)]
    pub name: Nullable<String>,
    /// When the API first saw this user.
    pub created_at: Timestamp,
}

impl From<entity::user::Model> for Me {
    fn from(user: entity::user::Model) -> Self {
        Self {
            id: user.id,
            email: user.email.into(),
            name: user.name.into(),
            created_at: Timestamp(user.created_at),
        }
    }
}

/// Liveness and database reachability.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Health {
    /// `ok` when the service is up.
    pub status: String,
    /// `ok` when the database answered.
    pub database: String,
}

// Examples shown in Swagger UI and the OpenAPI document (one per schema; each
// property's example is taken from it when the document is finished).

#[expect(
    clippy::expect_used,
    reason = "the examples are constants; a bad one fails every document test"
)]
fn text<R: TextRule>(value: &str) -> Text<R> {
    Text::check(value).expect("a valid example")
}

#[expect(
    clippy::expect_used,
    reason = "the examples are constants; a bad one fails every document test"
)]
fn at(text: &str) -> Timestamp {
    Timestamp(text.parse().expect("a valid example timestamp"))
}

#[expect(
    clippy::expect_used,
    reason = "the examples are constants; a bad one fails every document test"
)]
fn tags(names: &[&str]) -> TagList {
    TagList::read(&json!(names)).expect("valid example tags")
}

impl Example for Task {
    fn example() -> Self {
        Self {
            id: 42,
            user_id: "6tnM3f0nQ6kSxXq1".into(),
            title: "Write report".into(),
            description: Nullable(Some("Quarterly numbers".into())),
            completed: true,
            priority: Priority::High,
            due_date: Nullable(Some(at("2026-12-01T17:00:00Z"))),
            tags: vec!["q4".into(), "work".into()],
            created_at: at("2026-11-22T10:00:00Z"),
            updated_at: at("2026-11-28T16:30:00Z"),
            completed_at: Nullable(Some(at("2026-11-28T16:30:00Z"))),
            version: 3,
            deleted_at: Nullable(None),
        }
    }
}

impl Task {
    /// A task in the trash, as `listTrash` and the change feed show it.
    pub fn trashed_example() -> Self {
        Self {
            id: 43,
            title: "Old draft".into(),
            completed: false,
            completed_at: Nullable(None),
            tags: vec!["work".into()],
            updated_at: at("2026-11-29T09:15:00Z"),
            version: 2,
            deleted_at: Nullable(Some(at("2026-11-29T09:15:00Z"))),
            ..Self::example()
        }
    }
}

impl Example for NewTask {
    fn example() -> Self {
        Self {
            title: text("Write report"),
            description: Some(text("Quarterly numbers")),
            priority: Some(Priority::High),
            due_date: Some(at("2026-12-01T17:00:00Z")),
            tags: Some(tags(&["work", "q4"])),
        }
    }
}

impl Example for TaskReplacement {
    fn example() -> Self {
        Self {
            task: NewTask::example(),
            completed: Some(false),
        }
    }
}

impl Example for TaskPatch {
    fn example() -> Self {
        Self {
            title: Some(text("Write the Q4 report")),
            description: MaybeUndefined::Value(text("Numbers for the board")),
            priority: Some(Priority::Low),
            due_date: MaybeUndefined::Value(at("2026-12-08T17:00:00Z")),
            tags: Some(tags(&["work"])),
            completed: Some(true),
        }
    }
}

impl Example for TaskPage {
    fn example() -> Self {
        Self {
            items: vec![Task::example()],
            total: 1,
            limit: 20,
            offset: 0,
        }
    }
}

impl Example for Change {
    fn example() -> Self {
        Self {
            seq: 57,
            op: ChangeOp::Upsert,
            task_id: 42,
            task: Nullable(Some(Task::example())),
        }
    }
}

impl Example for ChangePage {
    fn example() -> Self {
        Self {
            changes: vec![
                Change::example(),
                Change {
                    seq: 58,
                    op: ChangeOp::Trash,
                    task_id: 43,
                    task: Nullable(Some(Task::trashed_example())),
                },
                Change {
                    seq: 60,
                    op: ChangeOp::Delete,
                    task_id: 17,
                    task: Nullable(None),
                },
            ],
            cursor: tasks::ChangeCursor(60).to_string(),
            has_more: false,
        }
    }
}

impl Example for TagCount {
    fn example() -> Self {
        Self {
            name: "work".into(),
            count: 3,
        }
    }
}

impl Example for TaskStats {
    fn example() -> Self {
        Self {
            total: 12,
            completed: 5,
            pending: 7,
            overdue: 2,
        }
    }
}

impl Example for Me {
    fn example() -> Self {
        Self {
            id: "6tnM3f0nQ6kSxXq1".into(),
            email: Nullable(Some("ada@example.com".into())),
            name: Nullable(Some("Ada Lovelace".into())),
            created_at: at("2026-11-22T10:00:00Z"),
        }
    }
}

impl Example for Health {
    fn example() -> Self {
        Self {
            status: "ok".into(),
            database: "ok".into(),
        }
    }
}
