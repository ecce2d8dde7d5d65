//! The published OpenAPI document: poem-openapi's, finished with what its
//! derive macros cannot say in 5.1. It is built once here and used for
//! `/openapi.json`, Swagger UI, `todo-api openapi` and the committed file, so
//! all four are the same document.
//!
//! What is finished, and why it cannot come from the handlers:
//! - media types: `Json<T>` declares `application/json; charset=utf-8`, which
//!   generated clients look up as an unknown key; it is `application/json`.
//! - header names: the derive upper-cases them (`LOCATION`); they get their
//!   usual spelling.
//! - error responses: every operation shares `ApiError`, whose metadata lists
//!   every status; each operation keeps those it can actually return.
//! - `links` from `createTask` to the operations on the created task, from
//!   `deleteTask` to restoring or purging it, and from `restoreTask` back,
//!   for clients and contract testers that follow them.
//! - property examples, taken from each schema's example, and for each error
//!   response the problem document of that status.
//! - enum references without the derive's `allOf` wrapper parts.
//! - a description for success responses returned as a bare `Json<T>`, which
//!   the derive leaves empty: the description of the schema they return.

use std::sync::LazyLock;

use bytes::Bytes;
use poem::{Endpoint, Response, endpoint::make_sync};
use serde_json::{Map, Value, json};

use super::{
    problems::{self, ErrorStatus},
    service,
};

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The finished document.
#[expect(
    clippy::expect_used,
    reason = "poem-openapi renders its spec from our own types; a failure is a bug every test shows"
)]
pub fn document() -> Value {
    let mut document: Value =
        serde_json::from_str(&service().spec()).expect("poem-openapi renders valid JSON");
    for operation in operations(&mut document) {
        plain_json_media_type(operation);
        canonical_header_names(operation);
        declared_errors(operation);
        rate_limit_headers(operation);
        declare_public(operation);
    }
    link_created_task(&mut document);
    link_trashed_task(&mut document);
    hoist_all_of_annotations(&mut document);
    nullable_references(&mut document);
    describe_success_responses(&mut document);
    if let Some(schemas) = document.pointer_mut("/components/schemas") {
        for (name, schema) in schemas.as_object_mut().into_iter().flatten() {
            // A problem's members show in different statuses' examples
            // (`errors` on a 422, `current_version` on a 412).
            let more_examples = match name.as_str() {
                "Problem" => ErrorStatus::ALL
                    .into_iter()
                    .filter_map(ErrorStatus::example_problem)
                    .collect(),
                // `deleted_at` shows in a trashed task.
                "Task" => {
                    poem_openapi::types::ToJSON::to_json(&super::schema::Task::trashed_example())
                        .into_iter()
                        .collect()
                }
                _ => Vec::new(),
            };
            property_examples_from_schema_example(schema, &more_examples);
        }
    }
    document
}

/// The finished document as `todo-api openapi` prints it and
/// `openapi/openapi.json` holds it.
pub fn document_json() -> String {
    // A `Value`'s `Display` cannot fail, unlike the generic serialiser.
    format!("{:#}", document())
}

/// `GET /openapi.json`, rendered once, when first asked for.
pub fn document_endpoint() -> impl Endpoint {
    static BODY: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(document_json()));
    make_sync(|_| {
        Response::builder()
            .content_type("application/json")
            .body(BODY.clone())
    })
}

/// Swagger UI (poem-openapi's bundled, offline copy) showing the finished document.
///
/// The page carries the whole 1.6 MB bundle: it is built when first asked
/// for (many instances never are), and every response shares that one copy.
pub fn swagger_ui() -> impl Endpoint {
    static PAGE: LazyLock<Bytes> = LazyLock::new(|| {
        let service = service();
        let page = service
            .swagger_ui_html()
            .replacen(&service.spec(), &document_json(), 1);
        Bytes::from(page)
    });
    make_sync(|_| {
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(PAGE.clone())
    })
}

/// The methods the API serves at a request path, as an `Allow` header value
/// (`GET, POST`); `None` for a path it does not serve.
pub fn allowed_methods(path: &str) -> Option<String> {
    let methods = route(path)?.iter().map(|(method, _)| method.as_str());
    Some(methods.collect::<Vec<_>>().join(", "))
}

/// The operationId of the operation serving `method` at a request path, for
/// a response given before the request reached it (a rate-limited 429).
pub fn operation_id(method: &str, path: &str) -> Option<&'static str> {
    route(path)?
        .iter()
        .find(|(served, _)| served.eq_ignore_ascii_case(method))
        .map(|(_, id)| *id)
}

/// The methods (upper case) and operationIds of the path template a request
/// path matches.
fn route(path: &str) -> Option<&'static [(String, &'static str)]> {
    type Methods = Vec<(String, &'static str)>;
    static ROUTES: LazyLock<Vec<(Vec<String>, Methods)>> = LazyLock::new(|| {
        let document = document();
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        paths
            .into_iter()
            .map(|(template, operations)| {
                let segments = template.split('/').map(str::to_owned).collect();
                let methods = operations
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(method, operation)| {
                        let id = operation["operationId"].as_str().unwrap_or_default();
                        // Leaked once: the table lives as long as the process.
                        let id: &'static str = Box::leak(id.to_owned().into_boxed_str());
                        (method.to_ascii_uppercase(), id)
                    })
                    .collect();
                (segments, methods)
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.iter().find_map(|(template, methods)| {
        let matches = template.len() == segments.len()
            && template.iter().zip(&segments).all(|(expected, actual)| {
                expected == actual || (expected.starts_with('{') && !actual.is_empty())
            });
        matches.then_some(methods.as_slice())
    })
}

fn operations(document: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|methods| methods.values_mut())
        .filter_map(Value::as_object_mut)
}

fn plain_json_media_type(operation: &mut Map<String, Value>) {
    let rename = |body: &mut Value| {
        if let Some(content) = body.get_mut("content").and_then(Value::as_object_mut)
            && let Some(media) = content.shift_remove(JSON_UTF8)
        {
            content.insert("application/json".into(), media);
        }
    };
    if let Some(body) = operation.get_mut("requestBody") {
        rename(body);
    }
    if let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    {
        responses.values_mut().for_each(rename);
    }
}

/// Header names whose registered spelling is not one capital per word.
const HEADER_SPELLINGS: &[&str] = &["ETag"];

/// `LOCATION` → `Location`, `X-REQUEST-ID` → `X-Request-Id`, `ETAG` → `ETag`.
fn canonical_header_names(operation: &mut Map<String, Value>) {
    let responses = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) else {
            continue;
        };
        *headers = std::mem::take(headers)
            .into_iter()
            .map(|(name, header)| {
                let spelled = HEADER_SPELLINGS
                    .iter()
                    .find(|spelling| spelling.eq_ignore_ascii_case(&name));
                let canonical = if let Some(spelling) = spelled {
                    (*spelling).to_owned()
                } else if name.chars().any(|c| c.is_ascii_lowercase()) {
                    name
                } else {
                    name.split('-')
                        .map(|word| word[..1].to_owned() + &word[1..].to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join("-")
                };
                (canonical, header)
            })
            .collect();
    }
}

/// Keeps the error responses the operation declares
/// ([`problems::declared_errors`]), each with its example problem document.
/// An operation without a declaration is a bug the document refuses to hide.
fn declared_errors(operation: &mut Map<String, Value>) {
    let id = operation["operationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let declared = problems::declared_errors(&id)
        .unwrap_or_else(|| panic!("operation `{id}` has no entry in DECLARED_ERRORS"));
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    responses.retain(|status, _| {
        let error = status.parse().ok().and_then(ErrorStatus::from_code);
        error.is_none_or(|error| declared.contains(&error))
    });
    for (status, response) in responses.iter_mut() {
        let example = status
            .parse()
            .ok()
            .and_then(ErrorStatus::from_code)
            .and_then(ErrorStatus::example_problem);
        if let (Some(example), Some(media)) = (
            example,
            response.pointer_mut("/content/application~1problem+json"),
        ) {
            media["example"] = example;
        }
    }
}

/// Every response of an operation that takes a token says where the user
/// stands against the rate limit, but a 401 (no user to count) and a 408 or
/// 413 (answered before the request is read); absent when `RATE_LIMIT=off`.
fn rate_limit_headers(operation: &mut Map<String, Value>) {
    if operation.get("security").is_none() {
        return;
    }
    let header = |description: &str, example: &str| {
        serde_json::json!({
            "description": description,
            "required": false,
            "schema": {"type": "string", "example": example},
        })
    };
    let policy = header(
        "The rate limit (draft-ietf-httpapi-ratelimit-headers): `q` requests per `w` seconds per user on this server (`RATE_LIMIT`). Requests refill one every `w / q` seconds.",
        "\"default\";q=600;w=60",
    );
    let standing = header(
        "Where you stand: `r` requests left, and `t` seconds until the whole quota is back, or, when `r` is 0, until the next request is allowed (a 429's `Retry-After`).",
        "\"default\";r=599;t=1",
    );
    let responses = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|responses| responses.iter_mut());
    for (status, response) in responses {
        if matches!(status.as_str(), "401" | "408" | "413") {
            continue;
        }
        if let Some(response) = response.as_object_mut() {
            let headers = response
                .entry("headers")
                .or_insert_with(|| Value::Object(Map::new()));
            headers["RateLimit-Policy"] = policy.clone();
            headers["RateLimit"] = standing.clone();
        }
    }
}

/// An operation that takes no token says so (`security: []`), rather than
/// leaving readers and linters to guess.
fn declare_public(operation: &mut Map<String, Value>) {
    operation
        .entry("security")
        .or_insert_with(|| Value::Array(vec![]));
}

/// A nullable reference (`nullable` beside `allOf: [$ref]`) as OpenAPI 3.0.3
/// spells it: `anyOf` the reference and `null` (`nullable` applies only
/// beside a `type`, and never loosens a referenced schema).
fn nullable_references(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let reference = object
                .get("allOf")
                .and_then(Value::as_array)
                .filter(|parts| parts.len() == 1)
                .and_then(|parts| parts[0].get("$ref"))
                .cloned();
            if object.get("nullable") == Some(&Value::Bool(true))
                && let Some(reference) = reference
            {
                object.remove("nullable");
                object.remove("allOf");
                object.insert(
                    "anyOf".into(),
                    json!([{"$ref": reference}, {"type": "object", "nullable": true, "enum": [null]}]),
                );
            }
            object.values_mut().for_each(nullable_references);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_references),
        _ => {}
    }
}

/// OpenAPI `links` from a created task to the operations on it.
fn link_created_task(document: &mut Value) {
    let Some(created) = document.pointer_mut("/paths/~1api~1{user_id}~1tasks/post/responses/201")
    else {
        return;
    };
    let link = |operation: &str, description: &str| {
        json!({
            "operationId": operation,
            "parameters": {
                "user_id": "$request.path.user_id",
                "task_id": "$response.body#/id",
            },
            "description": description,
        })
    };
    created["links"] = json!({
        "GetTask": link("getTask", "Read the created task."),
        "ReplaceTask": link("replaceTask", "Replace the created task."),
        "UpdateTask": link("updateTask", "Change fields of the created task."),
        "ToggleTask": link("toggleTask", "Complete or reopen the created task."),
        "DeleteTask": link("deleteTask", "Delete the created task."),
    });
}

/// OpenAPI `links` from a task moved to the trash to restoring it and to
/// deleting it for good, and from a restored task to the operations on it.
fn link_trashed_task(document: &mut Value) {
    let link = |operation: &str, task_id: &str, description: &str| {
        json!({
            "operationId": operation,
            "parameters": {
                "user_id": "$request.path.user_id",
                "task_id": task_id,
            },
            "description": description,
        })
    };
    if let Some(trashed) =
        document.pointer_mut("/paths/~1api~1{user_id}~1tasks~1{task_id}/delete/responses/204")
    {
        trashed["links"] = json!({
            "RestoreTask": link("restoreTask", "$request.path.task_id", "Restore the trashed task."),
            "DeleteTrashedTask": link(
                "deleteTrashedTask",
                "$request.path.task_id",
                "Delete the trashed task for good."
            ),
        });
    }
    if let Some(restored) = document
        .pointer_mut("/paths/~1api~1{user_id}~1trash~1{task_id}~1restore/post/responses/200")
    {
        restored["links"] = json!({
            "GetTask": link("getTask", "$response.body#/id", "Read the restored task."),
            "DeleteTask": link("deleteTask", "$response.body#/id", "Move it to the trash again."),
        });
    }
}

/// Each property's example: its value in the schema's example, else in the
/// first of `more_examples` that has one.
fn property_examples_from_schema_example(schema: &mut Value, more_examples: &[Value]) {
    let examples: Vec<Value> = schema
        .get("example")
        .cloned()
        .into_iter()
        .chain(more_examples.iter().cloned())
        .collect();
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, property) in properties {
        let value = examples
            .iter()
            .filter_map(|example| example.get(name))
            .find(|value| !value.is_null());
        if let (Some(value), Some(property)) = (value, property.as_object_mut()) {
            property.insert("example".into(), value.clone());
        }
    }
}

/// `{"allOf": [{"$ref": ...}, {"description": ...}]}`, which the derive writes
/// for a documented or defaulted enum, becomes `{"description": ..., "allOf":
/// [{"$ref": ...}]}`, so generated types read `Priority`, not `Priority & unknown`.
fn hoist_all_of_annotations(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(parts)) = object.get_mut("allOf") {
                let mut hoisted = Vec::new();
                parts.retain(|part| {
                    let annotation_only = part.as_object().is_some_and(|part| {
                        part.keys().all(|key| {
                            matches!(
                                key.as_str(),
                                "description" | "default" | "example" | "nullable"
                            )
                        })
                    });
                    if annotation_only {
                        hoisted.push(part.clone());
                    }
                    !annotation_only
                });
                for part in hoisted {
                    for (key, annotation) in part.as_object().into_iter().flatten() {
                        object
                            .entry(key.clone())
                            .or_insert_with(|| annotation.clone());
                    }
                }
            }
            object.values_mut().for_each(hoist_all_of_annotations);
        }
        Value::Array(items) => items.iter_mut().for_each(hoist_all_of_annotations),
        _ => {}
    }
}

fn describe_success_responses(document: &mut Value) {
    let schemas = document
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_default();
    let described = |schema: &Value| -> Option<String> {
        let name = |reference: &Value| reference.as_str()?.rsplit('/').next().map(str::to_owned);
        if let Some(name) = name(&schema["$ref"]) {
            return schemas[&name]["description"].as_str().map(str::to_owned);
        }
        let item = name(&schema["items"]["$ref"])?;
        let description = schemas[&item]["description"].as_str()?;
        Some(format!("A list; each item is: {description}"))
    };
    for operation in operations(document) {
        let responses = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut);
        for response in responses.into_iter().flat_map(|r| r.values_mut()) {
            if response["description"].as_str().is_some_and(str::is_empty)
                && let Some(text) = described(&response["content"]["application/json"]["schema"])
            {
                response["description"] = Value::String(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_methods_follow_the_path_templates() {
        assert_eq!(
            allowed_methods("/api/alice/tasks").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(
            allowed_methods("/api/alice/tasks/7").as_deref(),
            Some("GET, PUT, PATCH, DELETE")
        );
        assert_eq!(
            allowed_methods("/api/alice/tasks/7/complete").as_deref(),
            Some("PATCH")
        );
        assert_eq!(allowed_methods("/health").as_deref(), Some("GET"));
        assert_eq!(allowed_methods("/api/alice/nothing"), None);
        assert_eq!(allowed_methods("/api//tasks"), None);
    }
}
