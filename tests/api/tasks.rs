//! The task lifecycle: create, read, replace, update, toggle, delete.

use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{Backend, id_of};
use crate::spawn_or_skip;

#[apply(both_backends)]
#[tokio::test]
async fn create_returns_201_with_the_task_and_its_location(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");

    let reply = alice
        .post(
            "/tasks",
            json!({
                "title": "  Write report  ",
                "description": "Quarterly numbers",
                "priority": "high",
                "due_date": "2026-12-01T19:00:00+02:00",
                "tags": ["Work", " q4", "work"]
            }),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let task = &reply.body;
    let id = id_of(task);
    assert!(id > 0);
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/alice/tasks/{id}").as_str())
    );
    assert_eq!(task["user_id"], "alice");
    assert_eq!(task["title"], "Write report");
    assert_eq!(task["description"], "Quarterly numbers");
    assert_eq!(task["completed"], false);
    assert_eq!(task["priority"], "high");
    assert_eq!(task["due_date"], "2026-12-01T17:00:00Z");
    assert_eq!(task["tags"], json!(["q4", "work"]));
    assert_eq!(task["completed_at"], json!(null));
    let created_at = task["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "{created_at}");
    assert_eq!(task["updated_at"], task["created_at"]);

    let stored = app.stored_task(id).await.unwrap();
    assert_eq!(stored.user_id, "alice");
    assert_eq!(stored.title, "Write report");
    assert_eq!(stored.priority, entity::Priority::High);

    let fetched = alice.get(&format!("/tasks/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(&fetched.body, task, "a task reads back exactly as created");
}

#[apply(both_backends)]
#[tokio::test]
async fn a_minimal_task_gets_the_documented_defaults(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let task = app.user("alice").create(json!({"title": "Buy milk"})).await;

    assert_eq!(task["description"], json!(null));
    assert_eq!(task["priority"], "medium");
    assert_eq!(task["due_date"], json!(null));
    assert_eq!(task["tags"], json!([]));
    assert_eq!(task["completed"], false);
}

#[apply(both_backends)]
#[tokio::test]
async fn put_replaces_every_field_and_keeps_completion_when_absent(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let task = alice
        .create(
            json!({"title": "Old", "description": "d", "priority": "high",
                       "due_date": "2026-12-01T00:00:00Z", "tags": ["a", "b"]}),
        )
        .await;
    let id = id_of(&task);
    alice.toggle(id).await.assert_success();

    let reply = alice
        .put(
            &format!("/tasks/{id}"),
            json!({"title": "New", "tags": ["c"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let replaced = &reply.body;
    assert_eq!(replaced["id"], id);
    assert_eq!(replaced["title"], "New");
    assert_eq!(replaced["description"], json!(null));
    assert_eq!(replaced["priority"], "medium");
    assert_eq!(replaced["due_date"], json!(null));
    assert_eq!(replaced["tags"], json!(["c"]));
    assert_eq!(replaced["completed"], true, "completed is kept when absent");
    assert_eq!(replaced["created_at"], task["created_at"]);
    assert!(replaced["updated_at"].as_str() > task["updated_at"].as_str());
    assert_eq!(alice.get(&format!("/tasks/{id}")).await.body, *replaced);

    let reopened = alice
        .put(
            &format!("/tasks/{id}"),
            json!({"title": "New", "completed": false}),
        )
        .await;
    assert_eq!(reopened.body["completed"], false);
    assert_eq!(reopened.body["completed_at"], json!(null));
}

#[apply(both_backends)]
#[tokio::test]
async fn patch_changes_only_the_fields_sent_and_null_clears(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let task = alice
        .create(
            json!({"title": "Plan", "description": "details", "priority": "low",
                       "due_date": "2026-12-24T18:00:00Z", "tags": ["home"]}),
        )
        .await;
    let id = id_of(&task);

    let reply = alice
        .patch(
            &format!("/tasks/{id}"),
            json!({"priority": "high", "due_date": null}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["priority"], "high");
    assert_eq!(reply.body["due_date"], json!(null));
    assert_eq!(reply.body["title"], "Plan");
    assert_eq!(reply.body["description"], "details");
    assert_eq!(reply.body["tags"], json!(["home"]));

    let emptied = alice.patch(&format!("/tasks/{id}"), json!({})).await;
    assert_eq!(emptied.status, StatusCode::OK);
    assert_eq!(
        emptied.body["title"], "Plan",
        "an empty patch changes nothing"
    );

    let tags = alice
        .patch(&format!("/tasks/{id}"), json!({"tags": []}))
        .await;
    assert_eq!(tags.body["tags"], json!([]));
    let completed = alice
        .patch(&format!("/tasks/{id}"), json!({"completed": true}))
        .await;
    assert_eq!(completed.body["completed"], true);
    assert!(completed.body["completed_at"].is_string());
}

#[apply(both_backends)]
#[tokio::test]
async fn toggle_flips_completion_and_sets_then_clears_completed_at(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(
        &alice
            .create(json!({"title": "Ship it", "tags": ["x"]}))
            .await,
    );

    let done = alice.toggle(id).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["completed"], true);
    assert!(
        done.body["completed_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    assert_eq!(done.body["tags"], json!(["x"]));

    let reopened = alice.toggle(id).await;
    assert_eq!(reopened.body["completed"], false);
    assert_eq!(reopened.body["completed_at"], json!(null));

    let stored = app.stored_task(id).await.unwrap();
    assert!(!stored.completed);
    assert_eq!(stored.completed_at, None);
}

#[apply(both_backends)]
#[tokio::test]
async fn delete_moves_the_task_to_the_trash_and_answers_204_then_404(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["keep", "drop"]).await;
    alice
        .patch(&format!("/tasks/{}", ids[1]), json!({"tags": ["t"]}))
        .await
        .assert_success();

    let reply = alice.delete(&format!("/tasks/{}", ids[1])).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.body, json!(null));

    alice
        .get(&format!("/tasks/{}", ids[1]))
        .await
        .problem(StatusCode::NOT_FOUND);
    alice
        .delete(&format!("/tasks/{}", ids[1]))
        .await
        .problem(StatusCode::NOT_FOUND);
    // Kept, with its tag link, until the trash lets go of it.
    assert!(app.stored_task(ids[1]).await.unwrap().deleted_at.is_some());
    assert_eq!(
        entity::task_tag::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .len(),
        1
    );
    alice
        .delete(&format!("/trash/{}", ids[1]))
        .await
        .assert_success();
    assert!(app.stored_task(ids[1]).await.is_none());
    assert!(
        entity::task_tag::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .is_empty()
    );
    let remaining: Vec<_> = alice.all_tasks().await.iter().map(id_of).collect();
    assert_eq!(remaining, [ids[0]]);
}

#[apply(both_backends)]
#[tokio::test]
async fn unknown_task_ids_are_404_problems(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    for path in [
        "/tasks/999",
        "/tasks/0",
        "/tasks/-1",
        "/tasks/abc",
        "/tasks/99999999999999999999",
    ] {
        alice.get(path).await.problem(StatusCode::NOT_FOUND);
    }
    alice
        .patch("/tasks/999", json!({"title": "x"}))
        .await
        .problem(StatusCode::NOT_FOUND);
    alice
        .put("/tasks/999", json!({"title": "x"}))
        .await
        .problem(StatusCode::NOT_FOUND);
    alice.toggle(999).await.problem(StatusCode::NOT_FOUND);
}
