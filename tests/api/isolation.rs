//! One user never sees, changes or deletes another user's data: another
//! user's task is a 404 indistinguishable from a missing one, another user's
//! path is a 403, and the owner's rows are untouched afterwards.

use entity::{tag, task, task_tag, user};
use poem::{
    endpoint::BoxEndpoint,
    http::{Method, StatusCode},
    test::TestRequestBuilder,
};
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, User, id_of, send};
use crate::spawn_or_skip;

/// Every row of every table, in a stable order.
#[derive(Debug, PartialEq)]
struct Stored {
    users: Vec<user::Model>,
    tasks: Vec<task::Model>,
    tags: Vec<tag::Model>,
    task_tags: Vec<task_tag::Model>,
}

async fn stored(db: &DatabaseConnection) -> Stored {
    Stored {
        users: user::Entity::find()
            .order_by_asc(user::Column::Id)
            .all(db)
            .await
            .unwrap(),
        tasks: task::Entity::find()
            .order_by_asc(task::Column::Id)
            .all(db)
            .await
            .unwrap(),
        tags: tag::Entity::find()
            .order_by_asc(tag::Column::Id)
            .all(db)
            .await
            .unwrap(),
        task_tags: task_tag::Entity::find()
            .order_by_asc(task_tag::Column::TaskId)
            .order_by_asc(task_tag::Column::TagId)
            .all(db)
            .await
            .unwrap(),
    }
}

/// A response exactly as sent: status, content type and body bytes.
#[derive(Debug, PartialEq)]
struct Raw {
    status: StatusCode,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn raw(request: TestRequestBuilder<'_, BoxEndpoint<'static>>) -> Raw {
    let response = request.send().await.0;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().into_bytes().await.unwrap().to_vec();
    Raw {
        status,
        content_type,
        body,
    }
}

/// What the owner sees of their tasks, byte for byte: the full list and each
/// task on its own.
async fn owner_view(owner: &User<'_>, task_ids: &[i64]) -> Vec<Raw> {
    let mut view = vec![
        raw(owner.request(Method::GET, "/tasks?limit=100&sort=created_at&order=asc")).await,
        raw(owner.request(Method::GET, "/tags")).await,
        raw(owner.request(Method::GET, "/stats")).await,
    ];
    for id in task_ids {
        view.push(raw(owner.request(Method::GET, &format!("/tasks/{id}"))).await);
    }
    for response in &view {
        assert_eq!(response.status, StatusCode::OK);
    }
    view
}

/// Every task endpoint that names a task: method, path suffix and body.
fn task_endpoints(task_id: i64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/tasks/{task_id}"), None),
        (
            Method::PUT,
            format!("/tasks/{task_id}"),
            Some(json!({"title": "Taken over", "completed": true, "tags": ["mine"]})),
        ),
        (
            Method::PATCH,
            format!("/tasks/{task_id}"),
            Some(json!({"title": "Changed", "priority": "low", "tags": []})),
        ),
        (Method::DELETE, format!("/tasks/{task_id}"), None),
        (Method::PATCH, format!("/tasks/{task_id}/complete"), None),
        (Method::POST, format!("/trash/{task_id}/restore"), None),
        (Method::DELETE, format!("/trash/{task_id}"), None),
    ]
}

/// Every endpoint under `/api/{user_id}`, naming `task_id` where one is needed.
pub(crate) fn every_endpoint(task_id: i64) -> Vec<(Method, String, Option<Value>)> {
    let mut endpoints = vec![
        (Method::GET, "/tasks".to_owned(), None),
        (
            Method::POST,
            "/tasks".to_owned(),
            Some(json!({"title": "Planted", "tags": ["planted"]})),
        ),
    ];
    endpoints.extend(task_endpoints(task_id));
    endpoints.extend([
        (Method::GET, "/tags".to_owned(), None),
        (Method::GET, "/stats".to_owned(), None),
        (Method::GET, "/me".to_owned(), None),
        (Method::GET, "/trash".to_owned(), None),
        (Method::DELETE, "/trash".to_owned(), None),
        (Method::GET, "/changes".to_owned(), None),
    ]);
    endpoints
}

pub(crate) fn with_body<'a>(
    request: TestRequestBuilder<'a, BoxEndpoint<'static>>,
    body: &Option<Value>,
) -> TestRequestBuilder<'a, BoxEndpoint<'static>> {
    match body {
        Some(body) => request.body_json(body),
        None => request,
    }
}

/// Alice with two tasks carrying every kind of field, one completed; returns
/// their ids.
async fn alice_with_tasks(app: &TestApp) -> Vec<i64> {
    let alice = app.user("alice");
    let first = alice
        .create(json!({
            "title": "Secret plan",
            "description": "Only for Alice",
            "priority": "high",
            "due_date": "2020-01-01T09:00:00Z",
            "tags": ["secret", "work"]
        }))
        .await;
    let second = alice
        .create(json!({"title": "Alice's errand", "tags": ["home"]}))
        .await;
    let done = alice.toggle(id_of(&second)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    vec![id_of(&first), id_of(&second)]
}

#[apply(both_backends)]
#[tokio::test]
async fn another_users_task_is_a_404_identical_to_a_missing_task_on_every_task_endpoint(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice_ids = alice_with_tasks(&app).await;
    let bob = app.user("bob");
    bob.create(json!({"title": "Bob's own"})).await;
    let missing = task::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .max()
        .unwrap()
        + 1000;
    let before = stored(&app.db).await;
    let alice = app.user("alice");
    let alice_before = owner_view(&alice, &alice_ids).await;

    for &alice_id in &alice_ids {
        for ((method, path, body), (_, missing_path, _)) in task_endpoints(alice_id)
            .into_iter()
            .zip(task_endpoints(missing))
        {
            let reply = send(with_body(bob.request(method.clone(), &path), &body)).await;
            reply.problem(StatusCode::NOT_FOUND);

            let for_alices = raw(with_body(bob.request(method.clone(), &path), &body)).await;
            let for_missing =
                raw(with_body(bob.request(method.clone(), &missing_path), &body)).await;
            assert_eq!(
                for_alices,
                for_missing,
                "{method} {path}: another user's task must look exactly like a missing one ({})",
                String::from_utf8_lossy(&for_alices.body)
            );
        }
    }

    assert_eq!(
        stored(&app.db).await,
        before,
        "no row changed in the database"
    );
    assert_eq!(
        owner_view(&alice, &alice_ids).await,
        alice_before,
        "Alice sees her tasks byte for byte as before"
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn a_token_on_another_users_path_is_a_403_on_every_endpoint_and_creates_nothing(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice_ids = alice_with_tasks(&app).await;
    let bob = app.user("bob");
    let bobs = bob
        .create(json!({"title": "Bob's own", "tags": ["bob"]}))
        .await;
    let before = stored(&app.db).await;
    let alice = app.user("alice");
    let alice_before = owner_view(&alice, &alice_ids).await;

    // Alice's tasks, Bob's task, and a task that does not exist: all 403,
    // whether or not the task is there.
    for task_id in [alice_ids[0], alice_ids[1], id_of(&bobs), 999_999] {
        for (method, path, body) in every_endpoint(task_id) {
            let reply = send(with_body(
                bob.request_as(method.clone(), "alice", &path),
                &body,
            ))
            .await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{method} /api/alice{path} with Bob's token: {}",
                reply.body
            );
            reply.problem(StatusCode::FORBIDDEN);
            assert!(reply.header("location").is_none());
        }
    }

    let after = stored(&app.db).await;
    assert_eq!(
        after.tasks.len(),
        before.tasks.len(),
        "no task created for either user"
    );
    assert_eq!(
        after, before,
        "no row created, changed or deleted in any table"
    );
    assert_eq!(
        owner_view(&alice, &alice_ids).await,
        alice_before,
        "Alice sees her tasks byte for byte as before"
    );
    let bobs_now = bob.get(&format!("/tasks/{}", id_of(&bobs))).await;
    assert_eq!(bobs_now.body, bobs, "Bob's own task is untouched too");
}

#[apply(both_backends)]
#[tokio::test]
async fn the_owners_tasks_are_unchanged_and_nothing_of_them_shows_in_another_users_views(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice_ids = alice_with_tasks(&app).await;
    let alice = app.user("alice");
    let alice_tasks_before = alice.all_tasks().await;
    let alice_rows_before: Vec<task::Model> = task::Entity::find()
        .order_by_asc(task::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    let bob = app.user("bob");
    let bobs = bob
        .create(json!({"title": "Bob's chores", "tags": ["home"]}))
        .await;

    // Bob tries everything, on his own path and on Alice's.
    for &alice_id in &alice_ids {
        for (method, path, body) in every_endpoint(alice_id) {
            let own = send(with_body(bob.request(method.clone(), &path), &body)).await;
            if path.starts_with("/tasks/") || path.starts_with("/trash/") {
                own.problem(StatusCode::NOT_FOUND);
            } else {
                assert!(own.status.is_success(), "{method} {path}: {}", own.body);
            }
            send(with_body(
                bob.request_as(method.clone(), "alice", &path),
                &body,
            ))
            .await
            .problem(StatusCode::FORBIDDEN);
        }
    }

    let alice_tasks_after = alice.all_tasks().await;
    assert_eq!(
        alice_tasks_after, alice_tasks_before,
        "Alice's tasks, updated_at included, are exactly as before"
    );
    let alice_rows_after: Vec<task::Model> = task::Entity::find()
        .order_by_asc(task::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.user_id == "alice")
        .collect();
    assert_eq!(alice_rows_after, alice_rows_before);

    // Bob's views: his own task and the one "Planted" by his own POSTs, and
    // nothing of Alice's.
    let bob_tasks = bob.all_tasks().await;
    assert!(!bob_tasks.is_empty());
    for task in &bob_tasks {
        assert_eq!(task["user_id"], "bob", "{task}");
        assert!(!alice_ids.contains(&id_of(task)), "{task}");
    }
    assert!(bob_tasks.iter().any(|t| t["id"] == bobs["id"]));
    let bob_total = bob_tasks.len() as i64;
    for filter in [
        "/tasks?tag=secret",
        "/tasks?tag=work",
        "/tasks?q=secret",
        "/tasks?q=Alice",
        "/tasks?status=completed",
        "/tasks?priority=high",
        "/tasks?due_before=2021-01-01T00:00:00Z",
    ] {
        let reply = bob.get(filter).await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.body);
        assert_eq!(reply.body["items"], json!([]), "{filter}");
        assert_eq!(reply.body["total"], 0, "{filter}");
    }
    let bob_tags = bob.get("/tags").await;
    assert_eq!(bob_tags.status, StatusCode::OK);
    let names: Vec<&str> = bob_tags
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"home"), "{}", bob_tags.body);
    for alices in ["secret", "work"] {
        assert!(!names.contains(&alices), "{}", bob_tags.body);
    }
    let bob_stats = bob.get("/stats").await;
    assert_eq!(
        bob_stats.body,
        json!({"total": bob_total, "completed": 0, "pending": bob_total, "overdue": 0})
    );
    let bob_me = bob.get("/me").await;
    assert_eq!(bob_me.body["id"], "bob");
    assert_eq!(bob_me.body["email"], "bob@example.com");
}

#[apply(both_backends)]
#[tokio::test]
async fn tags_are_per_user_with_separate_counts_and_survive_the_other_users_deletes(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    alice.create(json!({"title": "a1", "tags": ["work"]})).await;
    alice
        .create(json!({"title": "a2", "tags": ["work", "urgent"]}))
        .await;
    let bobs = bob
        .create(json!({"title": "b1", "tags": ["Work", "home"]}))
        .await;

    let alice_tags = alice.get("/tags").await;
    assert_eq!(alice_tags.status, StatusCode::OK);
    assert_eq!(
        alice_tags.body,
        json!([{"name": "work", "count": 2}, {"name": "urgent", "count": 1}])
    );
    let bob_tags = bob.get("/tags").await;
    assert_eq!(
        bob_tags.body,
        json!([{"name": "home", "count": 1}, {"name": "work", "count": 1}])
    );
    let work_rows: Vec<tag::Model> = tag::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.name == "work")
        .collect();
    let mut owners: Vec<&str> = work_rows.iter().map(|t| t.user_id.as_str()).collect();
    owners.sort();
    assert_eq!(owners, ["alice", "bob"], "one `work` tag per user");

    let deleted = bob.delete(&format!("/tasks/{}", id_of(&bobs))).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);

    assert_eq!(bob.get("/tags").await.body, json!([]));
    assert_eq!(
        alice.get("/tags").await.body,
        alice_tags.body,
        "Bob's delete leaves Alice's tags intact"
    );
    let alice_work = alice.get("/tasks?tag=work").await;
    assert_eq!(alice_work.body["total"], 2, "{}", alice_work.body);
    assert_eq!(
        bob.get("/tasks?tag=work").await.body["total"],
        0,
        "Bob's tag filter does not reach Alice's tasks"
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn the_path_user_id_must_equal_the_token_subject_exactly(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "Mine"})).await);
    let before = stored(&app.db).await;

    for path_user in ["Alice", "ALICE", "alice%20", "%20alice", "alice%09", "alic"] {
        for (method, path, body) in every_endpoint(id) {
            let reply = send(with_body(
                alice.request_as(method.clone(), path_user, &path),
                &body,
            ))
            .await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{method} /api/{path_user}{path} with Alice's token: {}",
                reply.body
            );
            reply.problem(StatusCode::FORBIDDEN);
        }
    }

    assert_eq!(
        stored(&app.db).await,
        before,
        "no user, task or tag row created or changed"
    );
    assert_eq!(
        alice.get(&format!("/tasks/{id}")).await.body["title"],
        "Mine"
    );
}
