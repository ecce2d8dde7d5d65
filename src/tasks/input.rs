//! Validation of task request bodies. Bodies arrive as raw JSON so that every
//! bad field, including one of the wrong type, is reported by name in a single
//! 422 instead of the framework's first-error 400.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};
use serde_json::{Map, Value};

use poem_openapi::types::ParseFromJSON;

use super::{
    Priority,
    fields::{Description, TagName, Text, Title, without_nul},
    one_of,
};
use crate::error::{ApiError, FieldError};

pub const MAX_TAGS: usize = 20;

/// A complete task as sent to create (POST) or replace (PUT).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDraft {
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub due_date: Option<DateTime<Utc>>,
    /// Normalised: trimmed, lower-cased, unique, sorted.
    pub tags: Vec<String>,
    /// Only PUT may set it; `None` keeps the current state.
    pub completed: Option<bool>,
}

/// A partial update (PATCH): `None` leaves a field unchanged; for nullable
/// fields `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub due_date: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub completed: Option<bool>,
}

impl From<TaskDraft> for TaskChanges {
    /// A replace is an update of every field, absent optional ones reset.
    fn from(draft: TaskDraft) -> Self {
        Self {
            title: Some(draft.title),
            description: Some(draft.description),
            priority: Some(draft.priority),
            due_date: Some(draft.due_date),
            tags: Some(draft.tags),
            completed: draft.completed,
        }
    }
}

impl TaskDraft {
    /// Reads a POST body (`accept_completed = false`) or a PUT body.
    pub fn from_json(body: &Value, accept_completed: bool) -> Result<Self, ApiError> {
        let mut fields = Fields::of(body)?;
        let title = fields.required("title", title);
        let description = fields.optional("description", description);
        let priority = fields.optional("priority", priority);
        let due_date = fields.optional("due_date", due_date);
        let tags = fields.optional("tags", tags);
        let completed = if accept_completed {
            fields.optional("completed", completed)
        } else {
            None
        };
        fields.finish()?;
        Ok(Self {
            // `finish` has reported a missing or invalid title.
            title: title.unwrap_or_default(),
            description: description.flatten(),
            priority: priority.unwrap_or(Priority::Medium),
            due_date: due_date.flatten(),
            tags: tags.unwrap_or_default(),
            completed,
        })
    }
}

impl TaskChanges {
    /// Reads a PATCH body: any subset of the task's writable fields.
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let mut fields = Fields::of(body)?;
        let changes = Self {
            title: fields.optional("title", title),
            description: fields.optional("description", description),
            priority: fields.optional("priority", priority),
            due_date: fields.optional("due_date", due_date),
            tags: fields.optional("tags", tags),
            completed: fields.optional("completed", completed),
        };
        fields.finish()?;
        Ok(changes)
    }
}

/// Collects one error per bad field while the body's fields are read.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn of(body: &'a Value) -> Result<Self, ApiError> {
        match body {
            Value::Object(body) => Ok(Self {
                body,
                errors: Vec::new(),
            }),
            _ => Err(ApiError::invalid("body", "must be a JSON object")),
        }
    }

    /// `None` when absent or invalid (the error is recorded).
    fn optional<T>(&mut self, name: &str, parse: fn(&Value) -> Result<T, String>) -> Option<T> {
        let value = self.body.get(name)?;
        parse(value)
            .map_err(|message| self.errors.push(FieldError::new(name, message)))
            .ok()
    }

    fn required<T>(&mut self, name: &str, parse: fn(&Value) -> Result<T, String>) -> Option<T> {
        if !self.body.contains_key(name) {
            self.errors.push(FieldError::new(name, "is required"));
        }
        self.optional(name, parse)
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// A string without NUL characters, which PostgreSQL cannot store.
fn text(value: &Value) -> Result<&str, String> {
    without_nul(value.as_str().ok_or("must be a string")?)
}

fn title(value: &Value) -> Result<String, String> {
    Text::<Title>::parse(value).map(Text::into_inner)
}

fn description(value: &Value) -> Result<Option<String>, String> {
    if value.is_null() {
        return Ok(None);
    }
    Text::<Description>::parse(value).map(|description| Some(description.into_inner()))
}

fn priority(value: &Value) -> Result<Priority, String> {
    Priority::parse_from_json(Some(value.clone())).map_err(|_| one_of::<Priority>())
}

fn due_date(value: &Value) -> Result<Option<DateTime<Utc>>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let due = text(value)?;
    parse_timestamp(due)
        .map(Some)
        .ok_or_else(|| format!("{TIMESTAMP_RULE}, or null"))
}

/// What a valid timestamp looks like, for the 422 that rejects one.
pub const TIMESTAMP_RULE: &str = "must be an RFC 3339 date-time such as `2026-12-01T17:00:00Z`, \
     between years 0001 and 9999 in UTC";

/// Parses an RFC 3339 date-time into UTC at the microsecond precision both
/// databases store. Its UTC value must fall in years 1..=9999, the range
/// RFC 3339 can write back (an offset can push `9999-12-31` past it). A leap
/// second (`23:59:60`) reads as the next second, as PostgreSQL stores it.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(value)
        .ok()?
        .with_timezone(&Utc);
    let at = match at.nanosecond().checked_sub(1_000_000_000) {
        Some(nanos) => DateTime::from_timestamp(at.timestamp() + 1, nanos)?,
        None => at,
    };
    (1..=9999).contains(&at.year()).then(|| at.trunc_subsecs(6))
}

fn tags(value: &Value) -> Result<Vec<String>, String> {
    let items = value.as_array().ok_or("must be an array of strings")?;
    if items.len() > MAX_TAGS {
        return Err(format!(
            "must hold at most {MAX_TAGS} tags (got {})",
            items.len()
        ));
    }
    let mut tags = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let tag = item
            .as_str()
            .ok_or_else(|| "must be an array of strings".to_owned())
            .and_then(normalize_tag)
            .map_err(|e| format!("item {index} {e}"))?;
        tags.insert(tag);
    }
    Ok(tags.into_iter().collect())
}

/// Tags are compared trimmed and lower-cased, in queries as in storage.
pub fn normalize_tag(tag: &str) -> Result<String, String> {
    Text::<TagName>::check(tag).map(Text::into_inner)
}

fn completed(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| "must be true or false".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_errors(result: Result<impl std::fmt::Debug, ApiError>) -> Vec<(String, String)> {
        match result {
            Err(ApiError::Validation(errors)) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_draft_gets_the_documented_defaults() {
        let draft = TaskDraft::from_json(&json!({"title": "  Write report  "}), false).unwrap();
        assert_eq!(
            draft,
            TaskDraft {
                title: "Write report".into(),
                description: None,
                priority: Priority::Medium,
                due_date: None,
                tags: vec![],
                completed: None,
            }
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = field_errors(TaskDraft::from_json(
            &json!({"title": 7, "description": false, "priority": "urgent",
                    "due_date": "tomorrow", "tags": "work"}),
            false,
        ));
        let fields: Vec<_> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["title", "description", "priority", "due_date", "tags"]
        );
    }

    #[test]
    fn tags_are_trimmed_lower_cased_deduplicated_and_sorted() {
        let draft = TaskDraft::from_json(
            &json!({"title": "t", "tags": [" Work", "q4", "WORK "]}),
            false,
        )
        .unwrap();
        assert_eq!(draft.tags, ["q4", "work"]);
    }

    #[test]
    fn due_dates_are_normalised_to_utc_microseconds() {
        let due = parse_timestamp("2026-12-01T19:00:00.123456789+02:00").unwrap();
        assert_eq!(due.to_rfc3339(), "2026-12-01T17:00:00.123456+00:00");
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let changes = TaskChanges::from_json(&json!({"description": null})).unwrap();
        assert_eq!(changes.description, Some(None));
        assert_eq!(changes.due_date, None);
        assert_eq!(changes.title, None);
    }

    #[test]
    fn post_ignores_completed_but_put_reads_it() {
        let body = json!({"title": "t", "completed": true});
        assert_eq!(TaskDraft::from_json(&body, false).unwrap().completed, None);
        assert_eq!(
            TaskDraft::from_json(&body, true).unwrap().completed,
            Some(true)
        );
    }
}
