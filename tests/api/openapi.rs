//! The published OpenAPI document: committed, served, and saying what the
//! contract says.

use std::collections::BTreeSet;

use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;

use serde_json::{Value, json};
use todo_api::api;

use crate::helpers::{Backend, send};
use crate::spawn_or_skip;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

fn spec() -> Value {
    serde_json::from_str(&api::spec_json()).unwrap()
}

/// Fails when the code's spec and `openapi/openapi.json` differ.
/// `UPDATE_OPENAPI=1 cargo test --test api openapi` rewrites the file.
#[test]
fn the_committed_spec_is_what_the_code_generates() {
    let generated = format!("{}\n", api::spec_json());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test --test api openapi` \
         (or `cargo run -- openapi > openapi/openapi.json`) and commit it"
    );
}

#[test]
fn every_operation_has_its_stable_operation_id() {
    let spec = spec();
    let mut ids = BTreeSet::new();
    for (_, operations) in spec["paths"].as_object().unwrap() {
        for (_, operation) in operations.as_object().unwrap() {
            ids.insert(operation["operationId"].as_str().unwrap().to_owned());
        }
    }
    let expected: BTreeSet<String> = [
        "listTasks",
        "createTask",
        "getTask",
        "replaceTask",
        "updateTask",
        "deleteTask",
        "toggleTask",
        "listTrash",
        "restoreTask",
        "deleteTrashedTask",
        "emptyTrash",
        "listChanges",
        "streamChanges",
        "listTags",
        "getStats",
        "getMe",
        "health",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(ids, expected);
}

#[test]
fn api_operations_declare_bearer_auth_and_exactly_the_statuses_they_can_return() {
    let spec = spec();
    assert_eq!(
        spec["components"]["securitySchemes"]["BearerAuth"],
        serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": spec["components"]["securitySchemes"]["BearerAuth"]["description"]})
    );
    let statuses = |list: &str| list.split(' ').map(String::from).collect::<BTreeSet<_>>();
    let expected = [
        ("listTasks", "200 401 403 422 429 503"),
        ("createTask", "201 400 401 403 408 409 413 422 429 503"),
        ("getTask", "200 304 401 403 404 429 503"),
        (
            "replaceTask",
            "200 400 401 403 404 408 412 413 422 428 429 503",
        ),
        (
            "updateTask",
            "200 400 401 403 404 408 412 413 422 428 429 503",
        ),
        ("deleteTask", "204 401 403 404 412 428 429 503"),
        ("toggleTask", "200 400 401 403 404 409 412 422 428 429 503"),
        ("listTrash", "200 401 403 422 429 503"),
        ("restoreTask", "200 401 403 404 412 429 503"),
        ("deleteTrashedTask", "204 401 403 404 429 503"),
        ("emptyTrash", "204 401 403 429 503"),
        ("listChanges", "200 401 403 410 422 429 503"),
        ("streamChanges", "200 401 403 410 422 429 503"),
        ("listTags", "200 401 403 429 503"),
        ("getStats", "200 401 403 429 503"),
        ("getMe", "200 401 403 404 429 503"),
        ("health", "200 503"),
    ];
    let mut seen = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        assert!(!path.contains(':'), "{path} must use {{param}} templates");
        for (_, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            let responses = operation["responses"].as_object().unwrap();
            let (_, documented) = expected.iter().find(|(op, _)| *op == id).unwrap();
            assert_eq!(
                responses.keys().cloned().collect::<BTreeSet<_>>(),
                statuses(documented),
                "{id}"
            );
            seen += 1;
            if id == "health" {
                assert_eq!(operation["security"], serde_json::json!([]), "public");
            } else {
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{"BearerAuth": []}]),
                    "{id}"
                );
                assert!(
                    responses["401"]["headers"]
                        .get("WWW-Authenticate")
                        .is_some()
                );
            }
            for (status, response) in responses {
                let headers = response["headers"].as_object().unwrap();
                assert!(headers.contains_key("X-Request-Id"), "{id} {status}");
                // The rate limit: on every response to a counted user.
                let counted = id != "health" && !["401", "408", "413"].contains(&status.as_str());
                for name in ["RateLimit-Policy", "RateLimit"] {
                    assert_eq!(headers.contains_key(name), counted, "{id} {status} {name}");
                }
                if status == "429" {
                    assert!(headers.contains_key("Retry-After"), "{id}");
                }
                assert!(
                    headers
                        .keys()
                        .all(|h| h.chars().any(|c| c.is_ascii_lowercase())),
                    "{id} {status}: header names in their usual spelling"
                );
                let content = response.get("content").and_then(Value::as_object);
                if status.starts_with('2') {
                    let media_type = if id == "streamChanges" {
                        "text/event-stream"
                    } else {
                        "application/json"
                    };
                    assert!(content.is_none_or(|c| c.contains_key(media_type)), "{id}");
                } else if status == "304" {
                    assert!(content.is_none(), "{id}: a 304 has no body");
                    assert!(
                        headers.contains_key("ETag"),
                        "{id}: a 304 names the version"
                    );
                } else {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{id} documents {status} as a problem"
                    );
                }
            }
            if let Some(body) = operation.get("requestBody") {
                let media: Vec<&String> = body["content"].as_object().unwrap().keys().collect();
                assert_eq!(media, ["application/json"], "{id}");
            }
        }
    }
    assert_eq!(seen, expected.len());
    let created = &spec["paths"]["/api/{user_id}/tasks"]["post"]["responses"]["201"];
    assert!(created["headers"].get("Location").is_some());
    assert!(
        created["headers"]["Location"]["required"]
            .as_bool()
            .unwrap()
    );
}

#[test]
fn created_tasks_link_to_every_operation_on_one_task() {
    let spec = spec();
    let links = spec["paths"]["/api/{user_id}/tasks"]["post"]["responses"]["201"]["links"]
        .as_object()
        .unwrap();
    let targets: BTreeSet<&str> = links
        .values()
        .map(|link| link["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            "getTask",
            "replaceTask",
            "updateTask",
            "toggleTask",
            "deleteTask"
        ])
    );
    for link in links.values() {
        assert_eq!(
            link["parameters"],
            serde_json::json!({"user_id": "$request.path.user_id", "task_id": "$response.body#/id"})
        );
    }
}

#[test]
fn every_schema_property_has_a_description_and_an_example() {
    let spec = spec();
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{name}"
        );
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            assert!(
                schema.get("enum").is_some(),
                "{name} is an object or an enum"
            );
            continue;
        };
        assert!(schema.get("example").is_some(), "{name} has an example");
        for (property, definition) in properties {
            assert!(
                definition["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{name}.{property} has a description"
            );
            assert!(
                definition.get("example").is_some(),
                "{name}.{property} has an example"
            );
        }
    }
}

#[test]
fn nullable_task_fields_are_declared_nullable() {
    let spec = spec();
    let task = &spec["components"]["schemas"]["Task"]["properties"];
    for field in ["description", "due_date", "completed_at"] {
        assert_eq!(task[field]["nullable"], true, "Task.{field}");
    }
    assert_eq!(task["created_at"]["format"], "date-time");
}

#[apply(both_backends)]
#[tokio::test]
async fn the_served_spec_and_swagger_ui_match_the_code(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let served = send(app.client.get("/openapi.json")).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, spec());

    let docs = app.client.get("/docs").send().await;
    docs.assert_status_is_ok();
    let html = docs.0.into_body().into_string().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(
        html.contains("\"GetTask\""),
        "Swagger UI shows the finished document"
    );
}

/// The published patterns say exactly what the server accepts, so a client
/// validating against the spec (or a contract tester generating from it) and
/// the server never disagree: checked on the strings where they could.
#[apply(both_backends)]
#[tokio::test]
async fn string_patterns_in_the_spec_accept_exactly_what_the_server_accepts(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let spec = spec();
    let pattern = |pointer: &str| {
        let text = spec
            .pointer(pointer)
            .and_then(Value::as_str)
            .expect(pointer);
        regex::Regex::new(text).unwrap()
    };
    let title = pattern("/components/schemas/NewTask/properties/title/pattern");
    let tag = pattern("/components/schemas/NewTask/properties/tags/items/pattern");
    let description = pattern("/components/schemas/NewTask/properties/description/pattern");
    let list = &spec["paths"]["/api/{user_id}/tasks"]["get"]["parameters"];
    let tag_query = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tag")
        .and_then(|p| p["schema"]["pattern"].as_str())
        .map(|p| regex::Regex::new(p).unwrap())
        .unwrap();

    let x = |n: usize| "x".repeat(n);
    let samples = [
        String::new(),
        " ".into(),
        "\t\n\r".into(),
        "a".into(),
        " a ".into(),
        "\u{3000}x\u{3000}".into(),
        "\u{85}x\u{A0}".into(),
        "\u{2029}".into(),
        "\u{FEFF}".into(), // not whitespace to Rust
        "\u{1C}".into(),   // whitespace to Python, not to Rust
        "\u{200B}".into(), // zero-width space: not whitespace
        "a\0b".into(),
        "\0".into(),
        "İ".repeat(50),
        "İ".repeat(25),
        "é".repeat(51),
        x(50),
        x(51),
        format!("  {}  ", x(50)),
        format!("  {}  ", x(51)),
        x(200),
        x(201),
        format!(" {} ", x(200)),
        format!("{} {}", x(100), x(99)),
    ];
    for sample in &samples {
        let created = alice.post("/tasks", json!({ "title": sample })).await;
        assert_eq!(
            title.is_match(sample),
            created.status == StatusCode::CREATED,
            "title {sample:?}: {}",
            created.body
        );
        let created = alice
            .post("/tasks", json!({ "title": "t", "tags": [sample] }))
            .await;
        // The one rule a pattern cannot state: a tag is counted once
        // lower-cased, which lengthens a few letters (`İ` becomes `i̇`).
        let fits_lower_cased = sample.trim().to_lowercase().chars().count() <= 50;
        assert_eq!(
            tag.is_match(sample) && fits_lower_cased,
            created.status == StatusCode::CREATED,
            "tag {sample:?}: {}",
            created.body
        );
        let created = alice
            .post("/tasks", json!({ "title": "t", "description": sample }))
            .await;
        assert_eq!(
            description.is_match(sample),
            created.status == StatusCode::CREATED,
            "description {sample:?}: {}",
            created.body
        );
        let listed = send(
            alice
                .request(poem::http::Method::GET, "/tasks")
                .query("tag", sample),
        )
        .await;
        assert_eq!(
            tag_query.is_match(sample) && (sample.trim().is_empty() || fits_lower_cased),
            listed.status == StatusCode::OK,
            "tag filter {sample:?}: {}",
            listed.body
        );
    }
}

/// Query bounds as published are the ones enforced, to the last integer.
#[apply(both_backends)]
#[tokio::test]
async fn numeric_query_bounds_in_the_spec_are_the_enforced_ones(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let spec = spec();
    let parameters = spec["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for name in ["limit", "offset"] {
        let schema = &parameters.iter().find(|p| p["name"] == name).unwrap()["schema"];
        let bound = |key: &str| schema[key].as_f64().unwrap() as u64;
        let (minimum, maximum) = (bound("minimum"), bound("maximum"));
        for (value, accepted) in [(minimum, true), (maximum, true), (maximum + 1, false)] {
            let reply = alice.get(&format!("/tasks?{name}={value}")).await;
            assert_eq!(
                reply.status == StatusCode::OK,
                accepted,
                "{name}={value}: {}",
                reply.body
            );
        }
        if minimum > 0 {
            let reply = alice.get(&format!("/tasks?{name}={}", minimum - 1)).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        }
    }
}
