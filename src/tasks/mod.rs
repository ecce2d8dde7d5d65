//! The rules about tasks, each written once: what a valid field of a request
//! is (`fields`, `params`: the check, its message and its published schema),
//! what a write means (`input`), and every query the API runs on them. All
//! reads and writes are scoped to one user's rows.

mod changes;
mod fields;
mod input;
mod params;
mod query;
mod trash;

pub use changes::{Change, ChangePage, changes, last_change};
pub use entity::{Priority, task::search_key};
pub(crate) use fields::inline_type;
pub use fields::{
    Description, FieldValue, MAX_DESCRIPTION_CHARS, MAX_TAG_CHARS, MAX_TAGS, MAX_TITLE_CHARS,
    TagList, TagName, Text, TextRule, Title, WITHOUT_NUL_PATTERN, trimmed_text_pattern,
    without_nul,
};
pub use input::{IfVersion, TIMESTAMP_RULE, TaskChanges, TaskDraft, parse_timestamp};
pub use params::{
    ChangeCursor, ChangeLimit, DEFAULT_CHANGES_PAGE, DEFAULT_PAGE_SIZE, MAX_CHANGES_PAGE,
    MAX_OFFSET, MAX_PAGE_SIZE, MAX_SEARCH_CHARS, Offset, PageSize, SearchText, TagFilter,
};
pub use query::{
    SEARCH_INDEX_MAX_MATCHES, TagCount, TaskStats, TaskWithTags, create, create_in, get, list,
    stats, sweep_orphan_tags, tag_counts, toggle, trash, update,
};
pub use trash::{delete_trashed, empty_trash, forget_deletions, list_trash, purge_trash, restore};

use poem_openapi::{Enum, registry::Registry, types::Type};

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
