//! Request bodies read field by field, so that every bad field, one of the
//! wrong type included, is named in a single 422 instead of the framework's
//! first-error 400. A body is read into its wire type, the struct the OpenAPI
//! document publishes, each field by the rule of its own type
//! ([`FieldValue`]); the handler then hands the `tasks` module what it means.

use std::marker::PhantomData;

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    error::ParseRequestPayloadError,
    payload::{Json, ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::{MaybeUndefined, Type},
};
use serde_json::{Map, Value};

use super::schema::{NewTask, TaskPatch, TaskReplacement};
use crate::{
    error::{ApiError, FieldError},
    tasks::{FieldValue, TagList, TaskChanges, TaskDraft, Text},
};

/// A JSON request body, published as `T`'s schema and read into a `T` by
/// [`JsonBody::read`]. Bodies that are empty or not JSON at all are a 400.
pub struct JsonBody<T> {
    value: Value,
    schema: PhantomData<fn() -> T>,
}

impl<T> JsonBody<T> {
    /// The body as parsed JSON, before its fields are read.
    pub fn json(&self) -> &Value {
        &self.value
    }
}

impl<T: ReadBody> JsonBody<T> {
    /// The body as `T`, or a 422 naming every bad field.
    pub fn read(&self) -> Result<T, ApiError> {
        let Value::Object(body) = &self.value else {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        };
        let mut fields = Fields {
            body,
            errors: Vec::new(),
        };
        match T::read(&mut fields) {
            Some(read) if fields.errors.is_empty() => Ok(read),
            _ => Err(ApiError::Validation(fields.errors)),
        }
    }
}

/// A body type read field by field.
pub trait ReadBody: Sized {
    /// Reads every field; `None` when one was missing or bad, which `fields`
    /// has recorded.
    fn read(fields: &mut Fields<'_>) -> Option<Self>;
}

/// The fields of one JSON object, and an error for each bad one read so far.
pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields<'_> {
    /// `None` when absent or invalid (the error is recorded).
    pub fn optional<T: FieldValue>(&mut self, name: &str) -> Option<T> {
        let value = self.body.get(name)?;
        T::read(value)
            .map_err(|message| self.errors.push(FieldError::new(name, message)))
            .ok()
    }

    pub fn required<T: FieldValue>(&mut self, name: &str) -> Option<T> {
        if !self.body.contains_key(name) {
            self.errors.push(FieldError::new(name, "is required"));
        }
        self.optional(name)
    }

    /// A field where `null` means no value, as absence does.
    pub fn nullable<T: FieldValue>(&mut self, name: &str) -> Option<T> {
        self.optional::<Option<T>>(name).flatten()
    }

    /// A field of a partial update, where absence leaves it unchanged and
    /// `null` clears it.
    pub fn clearable<T: FieldValue>(&mut self, name: &str) -> MaybeUndefined<T> {
        match self.optional::<Option<T>>(name) {
            None => MaybeUndefined::Undefined,
            Some(None) => MaybeUndefined::Null,
            Some(Some(value)) => MaybeUndefined::Value(value),
        }
    }
}

impl ReadBody for NewTask {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let title = fields.required("title");
        let description = fields.nullable("description");
        let priority = fields.optional("priority");
        let due_date = fields.nullable("due_date");
        let tags = fields.optional("tags");
        Some(Self {
            title: title?,
            description,
            priority,
            due_date,
            tags,
        })
    }
}

impl ReadBody for TaskReplacement {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let task = NewTask::read(fields);
        let completed = fields.optional("completed");
        Some(Self {
            task: task?,
            completed,
        })
    }
}

impl ReadBody for TaskPatch {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            title: fields.optional("title"),
            description: fields.clearable("description"),
            priority: fields.optional("priority"),
            due_date: fields.clearable("due_date"),
            tags: fields.optional("tags"),
            completed: fields.optional("completed"),
        })
    }
}

impl From<NewTask> for TaskDraft {
    fn from(task: NewTask) -> Self {
        Self {
            title: task.title.into_inner(),
            description: task.description.map(Text::into_inner),
            priority: task.priority.unwrap_or_default(),
            due_date: task.due_date.map(|at| at.0),
            tags: task.tags.map(TagList::into_names).unwrap_or_default(),
            completed: None,
        }
    }
}

impl From<TaskReplacement> for TaskChanges {
    /// A replace is an update of every field, absent optional ones reset.
    fn from(replacement: TaskReplacement) -> Self {
        Self::from(TaskDraft {
            completed: replacement.completed,
            ..TaskDraft::from(replacement.task)
        })
    }
}

impl From<TaskPatch> for TaskChanges {
    fn from(patch: TaskPatch) -> Self {
        Self {
            title: patch.title.map(Text::into_inner),
            description: clear_or_set(patch.description.map_value(Text::into_inner)),
            priority: patch.priority,
            due_date: clear_or_set(patch.due_date.map_value(|at| at.0)),
            tags: patch.tags.map(TagList::into_names),
            completed: patch.completed,
        }
    }
}

/// `None` leaves a field unchanged, `Some(None)` clears it.
fn clear_or_set<T>(change: MaybeUndefined<T>) -> Option<Option<T>> {
    match change {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tasks::Priority;

    fn read<T: ReadBody>(body: Value) -> Result<T, ApiError> {
        JsonBody::<T> {
            value: body,
            schema: PhantomData,
        }
        .read()
    }

    fn field_errors<T: std::fmt::Debug>(result: Result<T, ApiError>) -> Vec<(String, String)> {
        match result {
            Err(ApiError::Validation(errors)) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_draft_gets_the_documented_defaults() {
        let draft = TaskDraft::from(read::<NewTask>(json!({"title": "  Write report  "})).unwrap());
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
        let errors = field_errors(read::<TaskReplacement>(json!({
            "title": 7, "description": false, "priority": "urgent",
            "due_date": "tomorrow", "tags": "work", "completed": "yes"
        })));
        assert_eq!(
            errors,
            [
                ("title", "must be a string"),
                ("description", "must be a string"),
                ("priority", "must be one of `low`, `medium`, `high`"),
                ("due_date", crate::tasks::TIMESTAMP_RULE),
                ("tags", "must be an array of strings"),
                ("completed", "must be true or false"),
            ]
            .map(|(field, message)| (field.to_owned(), message.to_owned()))
        );
    }

    #[test]
    fn a_missing_title_is_named_with_the_other_bad_fields() {
        let errors = field_errors(read::<NewTask>(json!({"priority": "urgent"})));
        let fields: Vec<_> = errors.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["title", "priority"]);
        assert_eq!(errors[0].1, "is required");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_named_as_the_body() {
        let errors = field_errors(read::<TaskPatch>(json!(["title"])));
        assert_eq!(
            errors,
            [("body".to_owned(), "must be a JSON object".to_owned())]
        );
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let changes = TaskChanges::from(read::<TaskPatch>(json!({"description": null})).unwrap());
        assert_eq!(changes.description, Some(None));
        assert_eq!(changes.due_date, None);
        assert_eq!(changes.title, None);
    }

    #[test]
    fn post_ignores_completed_but_put_reads_it() {
        let body = json!({"title": "t", "completed": true});
        let created = TaskDraft::from(read::<NewTask>(body.clone()).unwrap());
        assert_eq!(created.completed, None);
        let replaced = TaskChanges::from(read::<TaskReplacement>(body).unwrap());
        assert_eq!(replaced.completed, Some(true));
    }

    #[test]
    fn a_replacement_resets_absent_fields_to_their_defaults() {
        let changes = TaskChanges::from(read::<TaskReplacement>(json!({"title": "t"})).unwrap());
        assert_eq!(changes.description, Some(None));
        assert_eq!(changes.priority, Some(Priority::Medium));
        assert_eq!(changes.due_date, Some(None));
        assert_eq!(changes.tags, Some(vec![]));
        assert_eq!(changes.completed, None);
    }
}
