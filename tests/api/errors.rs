//! Errors the framework raises before a handler runs (bad JSON, wrong content
//! type, oversized body, unknown route or method), request ids, CORS, and the
//! endpoints outside `/api`. Every error is a problem document.

use entity::task;
use poem::http::{HeaderValue, Method, StatusCode};
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, id_of, send};
use crate::spawn_or_skip;

/// The body limit of the contract: 64 KiB.
const LIMIT: usize = 64 * 1024;
const FRONTEND: &str = "http://localhost:3000";
const EVIL: &str = "http://evil.example";

async fn task_count(app: &TestApp) -> u64 {
    task::Entity::find()
        .count(&app.db)
        .await
        .expect("count tasks")
}

/// A valid JSON task body of exactly `size` bytes, its description padded far
/// past 1000 characters.
fn json_body_of_size(size: usize) -> String {
    let (head, tail) = (r#"{"title":"Big","description":""#, r#""}"#);
    let body = format!("{head}{}{tail}", "a".repeat(size - head.len() - tail.len()));
    assert_eq!(body.len(), size);
    serde_json::from_str::<Value>(&body).expect("padded body is JSON");
    body
}

/// A request id as the service generates or accepts one: short printable ASCII.
#[track_caller]
fn assert_sane_request_id(reply: &Reply, case: &str) -> String {
    let id = reply
        .header("x-request-id")
        .unwrap_or_else(|| panic!("{case}: no x-request-id in {:?}", reply.headers));
    assert!(
        (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()),
        "{case}: generated request id {id:?} is not short printable ASCII"
    );
    id.to_owned()
}

#[apply(both_backends)]
#[tokio::test]
async fn unparsable_json_is_a_400_problem(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let task = alice.create(json!({"title": "Untouched"})).await;
    let path = format!("/tasks/{}", id_of(&task));

    let bodies: [(&str, &[u8]); 7] = [
        ("unterminated object", br#"{"title": "x""#),
        ("unquoted key", br#"{title: "x"}"#),
        ("trailing brace", br#"{"title": "x"}}"#),
        ("trailing comma", br#"{"title": "x",}"#),
        ("single quotes", br#"{'title': 'x'}"#),
        ("bare word", b"title"),
        ("invalid UTF-8", b"{\"title\": \"\xff\xfe\"}"),
    ];
    for (case, body) in bodies {
        for (method, path) in [
            (Method::POST, "/tasks"),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            let reply = send(
                alice
                    .request(method.clone(), path)
                    .content_type("application/json")
                    .body(body.to_vec()),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{case} on {method}: {}",
                reply.body
            );
            reply.problem(StatusCode::BAD_REQUEST);
        }
    }
    assert_eq!(task_count(&app).await, 1, "no task was created");
    assert_eq!(alice.get(&path).await.body, task, "the task is unchanged");
}

#[apply(both_backends)]
#[tokio::test]
async fn an_empty_body_is_a_400_problem(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let task = alice.create(json!({"title": "Untouched"})).await;
    let path = format!("/tasks/{}", id_of(&task));

    // Every case is tried before failing, so a failure lists all that differ.
    let mut wrong = Vec::new();
    for (method, path) in [
        (Method::POST, "/tasks"),
        (Method::PUT, path.as_str()),
        (Method::PATCH, path.as_str()),
    ] {
        for content_type in [Some("application/json"), None] {
            let mut request = alice.request(method.clone(), path).body("");
            if let Some(content_type) = content_type {
                request = request.content_type(content_type);
            }
            let reply = send(request).await;
            if reply.status == StatusCode::BAD_REQUEST {
                reply.problem(StatusCode::BAD_REQUEST);
            } else {
                wrong.push(format!(
                    "empty body on {method} with content type {content_type:?} answered {}: {}",
                    reply.status, reply.body
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "expected 400 problems:\n{}",
        wrong.join("\n")
    );
    assert_eq!(task_count(&app).await, 1, "no task was created");
    assert_eq!(alice.get(&path).await.body, task, "the task is unchanged");
}

#[apply(both_backends)]
#[tokio::test]
async fn a_body_not_sent_as_json_is_a_400_problem(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let task = alice.create(json!({"title": "Untouched"})).await;
    let path = format!("/tasks/{}", id_of(&task));
    let body = r#"{"title": "Looks like JSON"}"#;

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("text/json-ish"),
        None,
    ] {
        for (method, path) in [
            (Method::POST, "/tasks"),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            let mut request = alice.request(method.clone(), path).body(body);
            if let Some(content_type) = content_type {
                request = request.content_type(content_type);
            }
            let reply = send(request).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{method} with content type {content_type:?}: {}",
                reply.body
            );
            reply.problem(StatusCode::BAD_REQUEST);
        }
    }
    assert_eq!(task_count(&app).await, 1, "no task was created");
    assert_eq!(alice.get(&path).await.body, task, "the task is unchanged");

    // The same body declared as JSON, with a charset, is accepted.
    let reply = send(
        alice
            .request(Method::POST, "/tasks")
            .content_type("application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["title"], "Looks like JSON");
}

#[apply(both_backends)]
#[tokio::test]
async fn a_body_over_64_kib_is_a_413_problem_with_or_without_content_length(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let task = alice.create(json!({"title": "Untouched"})).await;
    let path = format!("/tasks/{}", id_of(&task));

    for size in [70_000, LIMIT + 1] {
        let body = json_body_of_size(size);
        for (method, path) in [
            (Method::POST, "/tasks"),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            for with_length in [true, false] {
                let mut request = alice
                    .request(method.clone(), path)
                    .content_type("application/json")
                    .body(body.clone());
                if with_length {
                    request = request.header("content-length", body.len());
                }
                let reply = send(request).await;
                assert_eq!(
                    reply.status,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "{size} bytes on {method}, content-length sent: {with_length}: {}",
                    reply.body
                );
                reply.problem(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
    }
    assert_eq!(task_count(&app).await, 1, "no task was created");
    assert_eq!(alice.get(&path).await.body, task, "the task is unchanged");
}

#[apply(both_backends)]
#[tokio::test]
async fn a_body_up_to_64_kib_is_read_and_validated_not_refused(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");

    for size in [LIMIT - 100, LIMIT] {
        let body = json_body_of_size(size);
        for with_length in [true, false] {
            let mut request = alice
                .request(Method::POST, "/tasks")
                .content_type("application/json")
                .body(body.clone());
            if with_length {
                request = request.header("content-length", body.len());
            }
            let reply = send(request).await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{size} bytes, content-length sent: {with_length}: {}",
                reply.body
            );
            assert_eq!(
                reply.invalid_fields(),
                ["description"],
                "{size} bytes: the over-long description is what is wrong"
            );
        }
    }
    assert_eq!(task_count(&app).await, 0);
}

#[apply(both_backends)]
#[tokio::test]
async fn unknown_routes_are_404_problems(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");

    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/nope"),
        (Method::GET, "/api/alice/nope"),
        (Method::GET, "/api/alice/tasks/1/nope"),
        (Method::GET, "/api"),
    ] {
        for with_token in [false, true] {
            let request = if with_token {
                app.client
                    .request(method.clone(), path)
                    .header("authorization", format!("Bearer {}", alice.token))
            } else {
                app.client.request(method.clone(), path)
            };
            let reply = send(request).await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{method} {path} (token: {with_token}): {}",
                reply.body
            );
            reply.problem(StatusCode::NOT_FOUND);
        }
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn a_task_id_that_is_not_an_integer_is_a_404_problem(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    alice.create(json!({"title": "Untouched"})).await;

    for id in ["abc", "1.5", "1e3", "0x1", "%20"] {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::PUT, ""),
            (Method::PATCH, ""),
            (Method::DELETE, ""),
            (Method::PATCH, "/complete"),
        ] {
            let path = format!("/tasks/{id}{suffix}");
            let reply = send(
                alice
                    .request(method.clone(), &path)
                    .body_json(&json!({"title": "x"})),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                reply.body
            );
            reply.problem(StatusCode::NOT_FOUND);
        }
    }
    assert_eq!(alice.all_tasks().await.len(), 1);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_a_405_problem(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "Untouched"})).await);

    for (method, path, allow) in [
        (Method::DELETE, "/health".to_owned(), "GET"),
        (Method::POST, "/health".to_owned(), "GET"),
        (
            Method::POST,
            format!("/api/alice/tasks/{id}"),
            "GET, PUT, PATCH, DELETE",
        ),
        (Method::PUT, "/api/alice/tasks".to_owned(), "GET, POST"),
        (Method::DELETE, "/api/alice/tasks".to_owned(), "GET, POST"),
        (
            Method::GET,
            format!("/api/alice/tasks/{id}/complete"),
            "PATCH",
        ),
        (Method::TRACE, "/api/alice/me".to_owned(), "GET"),
    ] {
        let reply = send(
            app.client
                .request(method.clone(), &path)
                .header("authorization", format!("Bearer {}", alice.token))
                .body_json(&json!({"title": "x"})),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            reply.body
        );
        reply.problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    assert_eq!(alice.all_tasks().await.len(), 1);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_sane_request_id_is_echoed_back_on_success_and_on_errors(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let longest = "r".repeat(128);

    let cases = [
        ("200 health", "req-123_abc", app.client.get("/health")),
        (
            "201 create",
            "0f9c2d1e-7d35-4c7b-9a6c-1f0e2b3c4d5e",
            alice
                .request(Method::POST, "/tasks")
                .body_json(&json!({"title": "t"})),
        ),
        ("404 route", "x.y:z/1", app.client.get("/nope")),
        (
            "401 no token",
            longest.as_str(),
            app.client.get("/api/alice/tasks"),
        ),
        (
            "422 invalid",
            "~!@#$%^&*()",
            alice
                .request(Method::POST, "/tasks")
                .body_json(&json!({"title": ""})),
        ),
        (
            "400 bad JSON",
            "bad-json",
            alice
                .request(Method::POST, "/tasks")
                .content_type("application/json")
                .body("{"),
        ),
        (
            "413 too large",
            "too-large",
            alice
                .request(Method::POST, "/tasks")
                .content_type("application/json")
                .body(json_body_of_size(70_000)),
        ),
    ];
    for (case, id, request) in cases {
        let reply = send(request.header("x-request-id", id)).await;
        assert_eq!(reply.header("x-request-id"), Some(id), "{case}");
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn a_missing_request_id_is_generated_fresh_for_each_request(backend: Backend) {
    let app = spawn_or_skip!(backend);

    let first = send(app.client.get("/health")).await;
    let second = send(app.client.get("/health")).await;
    let error = send(app.client.get("/nope")).await;
    error.problem(StatusCode::NOT_FOUND);

    let ids = [
        assert_sane_request_id(&first, "first 200"),
        assert_sane_request_id(&second, "second 200"),
        assert_sane_request_id(&error, "404"),
    ];
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    assert_ne!(ids[1], ids[2], "each request gets its own id");
}

#[apply(both_backends)]
#[tokio::test]
async fn an_unsafe_request_id_is_replaced_by_a_generated_one(backend: Backend) {
    let app = spawn_or_skip!(backend);

    let unsafe_ids: Vec<(&str, HeaderValue)> = vec![
        (
            "300 characters",
            HeaderValue::from_str(&"a".repeat(300)).unwrap(),
        ),
        (
            "129 characters",
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        ),
        ("a space", HeaderValue::from_static("has space")),
        ("a tab", HeaderValue::from_static("has\ttab")),
        ("empty", HeaderValue::from_static("")),
        (
            "non-ASCII",
            HeaderValue::from_bytes("réq-1".as_bytes()).unwrap(),
        ),
    ];
    for (case, sent) in unsafe_ids {
        for (path, status) in [
            ("/health", StatusCode::OK),
            ("/nope", StatusCode::NOT_FOUND),
        ] {
            let reply = send(app.client.get(path).header("x-request-id", sent.clone())).await;
            assert_eq!(reply.status, status, "{case} on {path}: {}", reply.body);
            let id = assert_sane_request_id(&reply, &format!("{case} on {path}"));
            assert_ne!(
                id.as_bytes(),
                sent.as_bytes(),
                "{case} on {path}: an unsafe id is not echoed"
            );
        }
    }
}

fn preflight<'a>(
    app: &'a TestApp,
    origin: &str,
) -> poem::test::TestRequestBuilder<'a, poem::endpoint::BoxEndpoint<'static>> {
    app.client
        .request(Method::OPTIONS, "/api/alice/tasks")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key,if-match",
        )
}

/// Lower-cased items of a comma-separated header.
fn header_items(response: &poem::Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

#[apply(both_backends)]
#[tokio::test]
async fn cors_lets_the_frontend_origin_call_the_api(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");

    let response = preflight(&app, FRONTEND).send().await.0;
    assert!(
        response.status().is_success(),
        "preflight answered {}",
        response.status()
    );
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(FRONTEND)
    );
    let methods = header_items(&response, "access-control-allow-methods");
    assert!(methods.contains(&"post".to_owned()), "{methods:?}");
    let headers = header_items(&response, "access-control-allow-headers");
    for needed in [
        "authorization",
        "content-type",
        "if-match",
        "if-none-match",
        "idempotency-key",
        "last-event-id",
    ] {
        assert!(
            headers.contains(&needed.to_owned()),
            "{needed}: {headers:?}"
        );
    }

    // The actual request: the frontend may read the response and `Location`.
    let reply = send(
        alice
            .request(Method::POST, "/tasks")
            .header("origin", FRONTEND)
            .body_json(&json!({"title": "From the browser"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), Some(FRONTEND));
    let exposed: Vec<String> = reply
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for readable in [
        "location",
        "etag",
        "retry-after",
        "idempotent-replayed",
        "x-request-id",
    ] {
        assert!(
            exposed.contains(&readable.to_owned()),
            "{readable}: {exposed:?}"
        );
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn swagger_ui_on_the_api_own_origin_may_write(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    // What a browser sends for "Try it out" at http://api.example.com:8000/docs.
    let reply = send(
        alice
            .request(Method::POST, "/tasks")
            .header("host", "api.example.com:8000")
            .header("origin", "http://api.example.com:8000")
            .body_json(&json!({"title": "From Swagger UI"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    // Another port on the same host is another origin.
    let reply = send(
        alice
            .request(Method::POST, "/tasks")
            .header("host", "api.example.com:8000")
            .header("origin", "http://api.example.com:9000")
            .body_json(&json!({"title": "From elsewhere"})),
    )
    .await;
    reply.problem(StatusCode::FORBIDDEN);
    let titles: Vec<Value> = alice
        .all_tasks()
        .await
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("From Swagger UI")]);
}

#[apply(both_backends)]
#[tokio::test]
async fn cors_does_not_let_another_origin_call_the_api(backend: Backend) {
    let app = spawn_or_skip!(backend);

    let response = preflight(&app, EVIL).send().await.0;
    let allowed = response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert!(
        response.status().is_client_error() || allowed.is_none(),
        "preflight from {EVIL} answered {} with allow-origin {allowed:?}",
        response.status()
    );
    assert_ne!(allowed.as_deref(), Some(EVIL), "the origin is not echoed");
    assert_ne!(allowed.as_deref(), Some("*"), "no wildcard either");
    assert!(
        response.headers().contains_key("x-request-id"),
        "a refused preflight still carries a request id"
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn a_request_refused_by_cors_gets_a_problem_document(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");

    let requests = [
        ("preflight", preflight(&app, EVIL)),
        (
            "GET /api/alice/tasks",
            alice.request(Method::GET, "/tasks").header("origin", EVIL),
        ),
    ];
    // Both are refused with 403. Both are tried before failing, so a failure
    // lists each that differs.
    let mut wrong = Vec::new();
    for (case, request) in requests {
        let response = request.send().await.0;
        let status = response.status();
        if status != StatusCode::FORBIDDEN {
            wrong.push(format!("{case} from {EVIL} answered {status}, not 403"));
            continue;
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().into_string().await.unwrap();
        let problem: Option<Value> = serde_json::from_str(&body).ok();
        let is_problem = content_type.as_deref() == Some("application/problem+json")
            && problem.is_some_and(|p| {
                p["status"] == status.as_u16()
                    && p["detail"].as_str().is_some_and(|d| !d.is_empty())
            });
        if !is_problem {
            wrong.push(format!(
                "{case} from {EVIL} answered {status}, content type {content_type:?}, body {body:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "every error must be a problem document:\n{}",
        wrong.join("\n")
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn health_reports_the_service_and_its_database_ok(backend: Backend) {
    let app = spawn_or_skip!(backend);

    let reply = send(app.client.get("/health")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.header("content-type")
    );
    assert_eq!(reply.body, json!({"status": "ok", "database": "ok"}));
}

#[apply(both_backends)]
#[tokio::test]
async fn the_openapi_document_is_served_as_json(backend: Backend) {
    let app = spawn_or_skip!(backend);

    let reply = send(app.client.get("/openapi.json")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.contains("json")),
        "{:?}",
        reply.header("content-type")
    );
    assert!(
        reply.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "openapi field: {}",
        reply.body["openapi"]
    );
    assert!(reply.body["paths"]["/api/{user_id}/tasks"].is_object());
}

#[apply(both_backends)]
#[tokio::test]
async fn swagger_ui_is_served_as_html_at_docs(backend: Backend) {
    let app = spawn_or_skip!(backend);

    let response = app.client.get("/docs").send().await.0;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.into_body().into_string().await.unwrap();
    assert!(html.to_ascii_lowercase().contains("swagger"), "{html}");
}
