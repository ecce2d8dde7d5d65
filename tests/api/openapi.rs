//! The published OpenAPI document: committed, served, and saying what the
//! contract says.

use std::collections::BTreeSet;

use poem::http::StatusCode;
use rstest::rstest;
use serde_json::Value;
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
fn api_operations_declare_bearer_auth_and_their_error_responses() {
    let spec = spec();
    assert_eq!(
        spec["components"]["securitySchemes"]["BearerAuth"],
        serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": spec["components"]["securitySchemes"]["BearerAuth"]["description"]})
    );
    for (path, operations) in spec["paths"].as_object().unwrap() {
        assert!(!path.contains(':'), "{path} must use {{param}} templates");
        for (method, operation) in operations.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            if path == "/health" {
                assert!(operation.get("security").is_none());
                assert!(responses.contains_key("200") && responses.contains_key("503"));
                continue;
            }
            assert_eq!(
                operation["security"],
                serde_json::json!([{"BearerAuth": []}]),
                "{method} {path}"
            );
            for status in ["400", "401", "403", "422", "503"] {
                let response = &responses[status];
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} documents {status} as a problem"
                );
            }
            assert!(
                responses["401"]["headers"]
                    .get("WWW-Authenticate")
                    .is_some()
            );
            if path.contains("{task_id}") {
                assert!(
                    responses.contains_key("404"),
                    "{method} {path} documents 404"
                );
            }
        }
    }
    let create = &spec["paths"]["/api/{user_id}/tasks"]["post"]["responses"]["201"];
    assert!(
        create["headers"]
            .as_object()
            .unwrap()
            .keys()
            .any(|h| h.eq_ignore_ascii_case("location"))
    );
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

#[rstest]
#[tokio::test]
async fn the_served_spec_and_swagger_ui_match_the_code(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let served = send(app.client.get("/openapi.json")).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, spec());

    let docs = app.client.get("/docs").send().await;
    docs.assert_status_is_ok();
    let html = docs.0.into_body().into_string().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
}
