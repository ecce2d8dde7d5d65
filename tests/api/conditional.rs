//! Versions and conditional requests (contract: "Versions and conditional
//! requests"): every single-task response carries `ETag: "<version>"`,
//! `If-Match` makes a write conditional in the same statement that writes,
//! `If-None-Match` answers 304, and `REQUIRE_IF_MATCH` refuses blind writes.

use futures::future::join_all;
use poem::http::{Method, StatusCode};
use rstest_reuse::apply;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, User, both_backends, id_of, send};
use crate::spawn_or_skip;

const PRECONDITION_FAILED: &str = "/problems/precondition-failed";

/// A write to task `id` with `If-Match: if_match`: `PUT`/`PATCH` carry
/// `body`, `DELETE` and the toggle none.
async fn write(
    user: &User<'_>,
    write: &str,
    id: i64,
    if_match: Option<&str>,
    body: Value,
) -> Reply {
    let (method, path) = match write {
        "put" => (Method::PUT, format!("/tasks/{id}")),
        "patch" => (Method::PATCH, format!("/tasks/{id}")),
        "delete" => (Method::DELETE, format!("/tasks/{id}")),
        "toggle" => (Method::PATCH, format!("/tasks/{id}/complete")),
        other => panic!("no write {other}"),
    };
    let mut request = user.request(method, &path);
    if let Some(tags) = if_match {
        request = request.header("if-match", tags);
    }
    if matches!(write, "put" | "patch") {
        request = request.body_json(&body);
    }
    send(request).await
}

async fn get_if_none_match(user: &User<'_>, id: i64, tags: &str) -> Reply {
    send(
        user.request(Method::GET, &format!("/tasks/{id}"))
            .header("if-none-match", tags),
    )
    .await
}

/// The stored row's (title, completed, version).
async fn stored(app: &crate::helpers::TestApp, id: i64) -> Option<(String, bool, i64)> {
    app.stored_task(id)
        .await
        .map(|task| (task.title, task.completed, task.version))
}

#[track_caller]
fn assert_version(reply: &Reply, version: i64) {
    assert!(reply.status.is_success(), "{} {}", reply.status, reply.body);
    assert_eq!(reply.body["version"], version, "{}", reply.body);
    assert_eq!(
        reply.header("etag"),
        Some(format!("\"{version}\"").as_str())
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn every_single_task_response_carries_its_version_as_a_strong_etag(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let created = alice.post("/tasks", json!({"title": "Draft"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_version(&created, 1);
    let id = id_of(&created.body);

    assert_version(&alice.get(&format!("/tasks/{id}")).await, 1);
    assert_version(
        &alice
            .patch(&format!("/tasks/{id}"), json!({"title": "Edited"}))
            .await,
        2,
    );
    assert_version(
        &alice
            .put(&format!("/tasks/{id}"), json!({"title": "Replaced"}))
            .await,
        3,
    );
    assert_version(&alice.toggle(id).await, 4);
    let listed = alice.all_tasks().await;
    assert_eq!(listed[0]["version"], 4);
    assert_eq!(stored(&app, id).await, Some(("Replaced".into(), true, 4)));
}

#[apply(both_backends)]
#[tokio::test]
async fn a_write_with_a_stale_if_match_is_412_with_the_current_version_and_changes_nothing(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "Draft"})).await);
    alice
        .patch(&format!("/tasks/{id}"), json!({"title": "Seen by tab B"}))
        .await
        .assert_success();

    for kind in ["put", "patch", "delete", "toggle"] {
        let reply = write(&alice, kind, id, Some("\"1\""), json!({"title": "Lost"})).await;
        let problem = reply.problem_of_type(StatusCode::PRECONDITION_FAILED, PRECONDITION_FAILED);
        assert_eq!(problem["current_version"], 2, "{kind}");
        assert_eq!(
            stored(&app, id).await,
            Some(("Seen by tab B".into(), false, 2)),
            "{kind} changed the task"
        );
    }

    let current = write(
        &alice,
        "patch",
        id,
        Some("\"2\""),
        json!({"title": "Merged"}),
    )
    .await;
    assert_version(&current, 3);
    assert_eq!(current.body["title"], "Merged");
    let deleted = write(&alice, "delete", id, Some("\"3\""), Value::Null).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let trashed = app.stored_task(id).await.unwrap();
    assert_eq!((trashed.version, trashed.deleted_at.is_some()), (4, true));
}

#[apply(both_backends)]
#[tokio::test]
async fn if_match_takes_a_list_or_a_star_and_compares_strongly(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "t"})).await);

    for (tags, matches) in [
        (r#""5", "1""#, true),
        ("*", true),
        (r#"W/"3""#, false),
        (r#""03""#, false),
        (r#""x""#, false),
        (r#""3", W/"3""#, true),
    ] {
        let before = stored(&app, id).await.unwrap().2;
        let reply = write(&alice, "toggle", id, Some(tags), Value::Null).await;
        if matches {
            assert_version(&reply, before + 1);
        } else {
            let problem =
                reply.problem_of_type(StatusCode::PRECONDITION_FAILED, PRECONDITION_FAILED);
            assert_eq!(problem["current_version"], before, "{tags}");
            assert_eq!(stored(&app, id).await.unwrap().2, before, "{tags}");
        }
    }
}

/// A value that is not entity tags (`1` without quotes, say) names no
/// version: a write is refused with the version to send, a read is answered
/// in full.
#[apply(both_backends)]
#[tokio::test]
async fn an_if_match_that_is_not_entity_tags_names_no_version(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "t"})).await);

    for tags in ["1", "\"1", r#""1" "2""#, ",", r#"*, "1""#, r#"w/"1""#] {
        for kind in ["put", "patch", "delete", "toggle"] {
            let reply = write(&alice, kind, id, Some(tags), json!({"title": "x"})).await;
            let problem =
                reply.problem_of_type(StatusCode::PRECONDITION_FAILED, PRECONDITION_FAILED);
            assert_eq!(problem["current_version"], 1, "{kind} {tags}");
            assert!(
                problem["detail"].as_str().unwrap().contains(r#"`"1"`"#),
                "{kind} {tags}: the detail shows the tag to send: {problem}"
            );
        }
        let read = get_if_none_match(&alice, id, tags).await;
        assert_version(&read, 1);
    }
    assert_eq!(stored(&app, id).await, Some(("t".into(), false, 1)));
}

/// RFC 9110 §13.2.1: a precondition is evaluated only when the request would
/// otherwise succeed.
#[apply(both_backends)]
#[tokio::test]
async fn unauthorized_forbidden_missing_and_invalid_take_precedence_over_412(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let id = id_of(&alice.create(json!({"title": "alice's"})).await);
    let bobs = id_of(&bob.create(json!({"title": "bob's"})).await);
    let stale = Some("\"9\"");

    for kind in ["put", "patch", "delete", "toggle"] {
        write(&alice, kind, 999_999, stale, json!({"title": "x"}))
            .await
            .problem(StatusCode::NOT_FOUND);
        write(&alice, kind, bobs, stale, json!({"title": "x"}))
            .await
            .problem(StatusCode::NOT_FOUND);
        let foreign = send(
            alice
                .request_as(Method::DELETE, "bob", &format!("/tasks/{bobs}"))
                .header("if-match", "\"9\""),
        )
        .await;
        foreign.problem(StatusCode::FORBIDDEN);
        let anonymous = send(
            app.client
                .delete(format!("/api/alice/tasks/{id}"))
                .header("if-match", "\"9\""),
        )
        .await;
        anonymous.problem(StatusCode::UNAUTHORIZED);
    }
    for kind in ["put", "patch"] {
        let reply = write(&alice, kind, id, stale, json!({"title": ""})).await;
        assert_eq!(reply.invalid_fields(), ["title"], "{kind}");
    }
    assert_eq!(stored(&app, id).await, Some(("alice's".into(), false, 1)));
    assert_eq!(stored(&app, bobs).await, Some(("bob's".into(), false, 1)));
}

#[apply(both_backends)]
#[tokio::test]
async fn if_none_match_on_get_is_a_304_while_the_version_is_current(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "t"})).await);

    for tags in ["\"1\"", "W/\"1\"", "\"4\", \"1\"", "*"] {
        let reply = get_if_none_match(&alice, id, tags).await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{tags}");
        assert_eq!(reply.header("etag"), Some("\"1\""));
        assert_eq!(reply.body, Value::Null, "a 304 has no body");
    }
    alice.toggle(id).await.assert_success();
    let changed = get_if_none_match(&alice, id, "\"1\"").await;
    assert_version(&changed, 2);
    assert_eq!(changed.body["completed"], true);
    get_if_none_match(&alice, 999_999, "*")
        .await
        .problem(StatusCode::NOT_FOUND);
    let bob = app.user("bob");
    get_if_none_match(&bob, id, "\"2\"")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[apply(both_backends)]
#[tokio::test]
async fn require_if_match_refuses_writes_without_it_with_428(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| config.require_if_match = true);
    let alice = app.user("alice");
    let created = alice.post("/tasks", json!({"title": "t"})).await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "creating needs no version"
    );
    let id = id_of(&created.body);

    for kind in ["put", "patch", "delete", "toggle"] {
        let reply = write(&alice, kind, id, None, json!({"title": "blind"})).await;
        let problem = reply.problem(StatusCode::PRECONDITION_REQUIRED);
        assert!(problem["detail"].as_str().unwrap().contains("If-Match"));
    }
    assert_eq!(stored(&app, id).await, Some(("t".into(), false, 1)));
    let patched = write(&alice, "patch", id, Some("\"1\""), json!({"title": "seen"})).await;
    assert_version(&patched, 2);
    let starred = write(&alice, "toggle", id, Some("*"), Value::Null).await;
    assert_version(&starred, 3);
}

/// Two tabs read version 1 and both write: exactly one wins, whatever the
/// interleaving, because the version check is part of the write statement.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_20_concurrent_patches_with_the_same_if_match_exactly_one_succeeds(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "read by everyone"})).await);

    let replies = join_all((0..20).map(|n| {
        write(
            &alice,
            "patch",
            id,
            Some("\"1\""),
            json!({"title": format!("tab {n}")}),
        )
    }))
    .await;

    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "{replies:#?}");
    for loser in replies.iter().filter(|r| r.status != StatusCode::OK) {
        let problem = loser.problem_of_type(StatusCode::PRECONDITION_FAILED, PRECONDITION_FAILED);
        assert_eq!(problem["current_version"], 2);
    }
    let title = winners[0].body["title"].as_str().unwrap().to_owned();
    assert_eq!(stored(&app, id).await, Some((title, false, 2)));
}

/// The migration that adds versions gives every existing task version 1.
#[apply(both_backends)]
#[tokio::test]
async fn existing_tasks_start_at_version_1(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "from before"})).await);
    alice.toggle(id).await.assert_success();
    app.migrate_down_to_before("m20261205_000001_task_versions");
    app.migrate(&["up"]);
    assert_version(&alice.get(&format!("/tasks/{id}")).await, 1);
    assert_eq!(
        stored(&app, id).await,
        Some(("from before".into(), true, 1))
    );
}
