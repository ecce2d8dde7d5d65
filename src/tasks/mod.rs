//! The rules about tasks: what a valid task is (`input`), and every query the
//! API runs on them. All reads and writes are scoped to one user's rows.

mod fields;
mod input;
mod query;

pub use entity::{Priority, task::search_key};
pub use fields::{
    Description, MAX_DESCRIPTION_CHARS, MAX_TAG_CHARS, MAX_TITLE_CHARS, TagName, Text, TextRule,
    Title, trimmed_text_pattern,
};
pub use input::{MAX_TAGS, TIMESTAMP_RULE, TaskChanges, TaskDraft, normalize_tag, parse_timestamp};
pub use query::{
    SEARCH_INDEX_MAX_MATCHES, TagCount, TaskStats, TaskWithTags, create, delete, get, list, stats,
    sweep_orphan_tags, tag_counts, toggle, update,
};

use poem_openapi::{Enum, registry::Registry, types::Type};

use crate::error::{ApiError, FieldError};

/// The rule a value of an enumeration breaks: "must be `asc` or `desc`",
/// "must be one of `low`, `medium`, `high`", from the values the type itself
/// publishes in the OpenAPI document.
pub fn one_of<T: Type>() -> String {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let values: Vec<String> = registry
        .schemas
        .get(T::name().as_ref())
        .into_iter()
        .flat_map(|schema| &schema.enum_items)
        .map(|value| format!("`{}`", value.as_str().unwrap_or_default()))
        .collect();
    match values.as_slice() {
        [first, second] => format!("must be {first} or {second}"),
        _ => format!("must be one of {}", values.join(", ")),
    }
}

/// Which tasks to list by completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum StatusFilter {
    #[default]
    All,
    Pending,
    Completed,
}

/// The field tasks are listed by; ties are broken by `id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SortField {
    #[default]
    CreatedAt,
    UpdatedAt,
    Title,
    DueDate,
    Priority,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;
/// Largest `offset`: 2^53 - 1, the largest integer a JavaScript number holds
/// exactly.
pub const MAX_OFFSET: u64 = 9_007_199_254_740_991;
/// Longest search text (`q`), in characters.
pub const MAX_SEARCH_CHARS: usize = 1000;

/// Everything `GET /tasks` can narrow, order and page by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: StatusFilter,
    pub priority: Option<Priority>,
    /// A normalised tag name.
    pub tag: Option<String>,
    /// Matched case-insensitively and literally against title and description.
    pub q: Option<String>,
    /// Due strictly before this instant.
    pub due_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Due at or after this instant.
    pub due_after: Option<chrono::DateTime<chrono::Utc>>,
    pub sort: SortField,
    pub order: SortOrder,
    pub limit: u64,
    pub offset: u64,
}

impl TaskFilter {
    /// Filtered by status at most: the total is then the user's task count
    /// (kept by the database), not a count of matching rows.
    pub fn is_status_only(&self) -> bool {
        self.priority.is_none()
            && self.tag.is_none()
            && self.q.is_none()
            && self.due_before.is_none()
            && self.due_after.is_none()
    }
}

impl Default for TaskFilter {
    fn default() -> Self {
        Self {
            status: StatusFilter::All,
            priority: None,
            tag: None,
            q: None,
            due_before: None,
            due_after: None,
            sort: SortField::CreatedAt,
            order: SortOrder::Desc,
            limit: DEFAULT_PAGE_SIZE,
            offset: 0,
        }
    }
}

impl TaskFilter {
    /// Adds the free-text filters, normalised the way stored values are.
    pub fn with_text(mut self, tag: Option<String>, q: Option<String>) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        // Empty values filter nothing, as frontends send `?tag=&q=` for "any".
        if let Some(tag) = tag.filter(|tag| !tag.trim().is_empty()) {
            match normalize_tag(&tag) {
                Ok(tag) => self.tag = Some(tag),
                Err(message) => errors.push(FieldError::new("tag", message)),
            }
        }
        match q {
            Some(q) if q.contains('\0') => {
                errors.push(FieldError::new("q", "must not contain NUL characters"));
            }
            Some(q) if !q.is_empty() => self.q = Some(q),
            _ => {}
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}
