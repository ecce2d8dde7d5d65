//! Wire types: what the frontend sends and receives. Their doc comments are
//! the descriptions in the published OpenAPI document.

use std::{borrow::Cow, marker::PhantomData};

use chrono::{DateTime, SecondsFormat, Utc};
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    Object,
    error::ParseRequestPayloadError,
    payload::{Json, ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type},
};
use serde_json::Value;

use crate::tasks::{self, Priority, TaskWithTags};

/// An instant, always rendered in UTC with a `Z` suffix and at most
/// microsecond precision, e.g. `2026-11-22T10:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl Type for Timestamp {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            example: Some("2026-11-22T10:00:00Z".into()),
            ..MetaSchema::new_with_format("string", "date-time")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

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

impl ParseFromParameter for Timestamp {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        tasks::parse_timestamp(value).map(Self).ok_or_else(|| {
            ParseError::custom("must be an RFC 3339 date-time such as `2026-12-01T17:00:00Z`")
        })
    }
}

/// A JSON request body kept as raw JSON for the `tasks` module to validate,
/// so that a field of the wrong type is a 422 naming that field instead of
/// the framework's first-error 400. The published schema is `T`'s; bodies
/// that are empty or not JSON at all are still a 400.
pub struct JsonBody<T> {
    pub value: Value,
    schema: PhantomData<fn() -> T>,
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = Json::<T>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        Json::<T>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = Vec::<u8>::from_request(request, body).await?;
        if bytes.is_empty() {
            return Err(ParseRequestPayloadError {
                reason: "the body is empty".into(),
            }
            .into());
        }
        let value = serde_json::from_slice(&bytes).map_err(|err| ParseRequestPayloadError {
            reason: err.to_string(),
        })?;
        Ok(Self {
            value,
            schema: PhantomData,
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type);

/// A task, as every task endpoint returns it.
#[derive(Debug, Clone, Object)]
pub struct Task {
    /// Unique id of the task.
    pub id: i64,
    /// Owner of the task: the token subject that created it.
    pub user_id: String,
    /// Short title, 1 to 200 characters, trimmed.
    pub title: String,
    /// Longer free text, up to 1000 characters; `null` when not set.
    #[oai(nullable)]
    pub description: Option<String>,
    /// Whether the task is done.
    pub completed: bool,
    /// How important the task is.
    pub priority: Priority,
    /// When the task is due; `null` when it has no due date.
    #[oai(nullable)]
    pub due_date: Option<Timestamp>,
    /// Tag names: trimmed, lower-cased, unique and sorted.
    pub tags: Vec<String>,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When the task was last changed.
    pub updated_at: Timestamp,
    /// When the task was completed; `null` while it is pending.
    #[oai(nullable)]
    pub completed_at: Option<Timestamp>,
}

impl From<TaskWithTags> for Task {
    fn from(TaskWithTags { task, tags }: TaskWithTags) -> Self {
        Self {
            id: task.id,
            user_id: task.user_id,
            title: task.title,
            description: task.description,
            completed: task.completed,
            priority: task.priority.into(),
            due_date: task.due_date.map(Timestamp),
            tags,
            created_at: Timestamp(task.created_at),
            updated_at: Timestamp(task.updated_at),
            completed_at: task.completed_at.map(Timestamp),
        }
    }
}

/// A new task. Only `title` is required.
#[derive(Debug, Clone, Object)]
pub struct NewTask {
    /// 1 to 200 characters after trimming surrounding whitespace.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    /// Up to 1000 characters, or `null`.
    #[oai(nullable, validator(max_length = 1000))]
    pub description: Option<String>,
    /// Defaults to `medium`.
    pub priority: Option<Priority>,
    /// An RFC 3339 date-time (any offset; stored in UTC), or `null`.
    #[oai(nullable)]
    pub due_date: Option<Timestamp>,
    /// Up to 20 tags of 1 to 50 characters; trimmed, lower-cased, duplicates collapse.
    #[oai(validator(max_items = 20))]
    pub tags: Option<Vec<String>>,
}

/// A full replacement of a task: absent optional fields are reset to their
/// defaults (no description, `medium`, no due date, no tags), except
/// `completed`, which is kept when absent.
#[derive(Debug, Clone, Object)]
pub struct TaskReplacement {
    #[oai(flatten)]
    pub task: NewTask,
    /// Completion state; unchanged when absent.
    pub completed: Option<bool>,
}

/// A partial update: absent fields are unchanged, `null` clears
/// `description` or `due_date`.
#[derive(Debug, Clone, Object)]
pub struct TaskPatch {
    /// 1 to 200 characters after trimming surrounding whitespace.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: Option<String>,
    /// Up to 1000 characters; `null` clears it.
    #[oai(nullable, validator(max_length = 1000))]
    pub description: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New due date; `null` clears it.
    #[oai(nullable)]
    pub due_date: Option<Timestamp>,
    /// Replaces all of the task's tags.
    #[oai(validator(max_items = 20))]
    pub tags: Option<Vec<String>>,
    /// Completion state; completing sets `completed_at`, reopening clears it.
    pub completed: Option<bool>,
}

/// One page of tasks.
#[derive(Debug, Clone, Object)]
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

/// A tag and how many of the user's tasks carry it.
#[derive(Debug, Clone, Object)]
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
pub struct Me {
    /// The user id (the token's `sub`).
    pub id: String,
    /// Email from the token's `email` claim; `null` if no token carried one.
    #[oai(nullable)]
    pub email: Option<String>,
    /// Display name from the token's `name` claim; `null` if no token carried one.
    #[oai(nullable)]
    pub name: Option<String>,
    /// When the API first saw this user.
    pub created_at: Timestamp,
}

impl From<entity::user::Model> for Me {
    fn from(user: entity::user::Model) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            created_at: Timestamp(user.created_at),
        }
    }
}

/// Liveness and database reachability.
#[derive(Debug, Clone, Object)]
pub struct Health {
    /// `ok` when the service is up.
    pub status: String,
    /// `ok` when the database answered.
    pub database: String,
}
