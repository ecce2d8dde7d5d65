//! The trash (contract: "Trash"): DELETE moves a task to the trash, where
//! it is hidden from everything but `/trash`, can be restored, and is
//! deleted for good on request or after `TRASH_RETENTION`.

use std::time::Duration;

use poem::http::{Method, StatusCode};
use rstest_reuse::apply;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, User, both_backends, id_of, ids, send};
use crate::spawn_or_skip;

async fn restore(user: &User<'_>, id: i64) -> Reply {
    send(user.request(Method::POST, &format!("/trash/{id}/restore"))).await
}

async fn trash_page(user: &User<'_>, query: &str) -> Value {
    user.get(&format!("/trash{query}")).await.assert_success()
}

/// Every way a live task is reached answers 404 for `id`.
async fn assert_gone_from_task_routes(user: &User<'_>, id: i64) {
    let path = format!("/tasks/{id}");
    user.get(&path).await.problem(StatusCode::NOT_FOUND);
    user.put(&path, json!({"title": "x"}))
        .await
        .problem(StatusCode::NOT_FOUND);
    user.patch(&path, json!({"title": "x"}))
        .await
        .problem(StatusCode::NOT_FOUND);
    user.toggle(id).await.problem(StatusCode::NOT_FOUND);
    user.delete(&path).await.problem(StatusCode::NOT_FOUND);
}

async fn stored_deleted_at(
    app: &TestApp,
    id: i64,
) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
    app.stored_task(id).await.map(|task| task.deleted_at)
}

#[apply(both_backends)]
#[tokio::test]
async fn a_deleted_task_is_hidden_everywhere_until_restored_with_its_tags(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let kept = id_of(
        &alice
            .create(json!({"title": "Keep", "tags": ["work"]}))
            .await,
    );
    let binned = id_of(
        &alice
            .create(json!({"title": "Bin", "tags": ["work", "later"]}))
            .await,
    );
    alice.toggle(binned).await.assert_success();

    let deleted = alice.delete(&format!("/tasks/{binned}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);

    assert_gone_from_task_routes(&alice, binned).await;
    let list = alice.get("/tasks").await.assert_success();
    assert_eq!(
        (ids(&list["items"]), list["total"].clone()),
        (vec![kept], json!(1))
    );
    let completed = alice.get("/tasks?status=completed").await.assert_success();
    assert_eq!(completed["total"], 0);
    assert_eq!(
        alice.get("/tags").await.assert_success(),
        json!([{"name": "work", "count": 1}])
    );
    let stats = alice.get("/stats").await.assert_success();
    assert_eq!(
        (stats["total"].clone(), stats["completed"].clone()),
        (json!(1), json!(0))
    );
    // Still stored, marked trashed.
    assert!(matches!(
        stored_deleted_at(&app, binned).await,
        Some(Some(_))
    ));

    let trash = trash_page(&alice, "").await;
    assert_eq!(trash["total"], 1);
    let trashed = &trash["items"][0];
    assert_eq!(trashed["id"], binned);
    assert_eq!(trashed["version"], 3, "trashing is a change: {trashed}");
    assert!(trashed["deleted_at"].is_string(), "{trashed}");
    assert_eq!(trashed["tags"], json!(["later", "work"]));

    let restored = restore(&alice, binned).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    assert_eq!(restored.header("etag"), Some("\"4\""));
    assert_eq!(restored.body["deleted_at"], Value::Null);
    assert_eq!(restored.body["version"], 4);
    assert_eq!(restored.body["tags"], json!(["later", "work"]));
    assert_eq!(restored.body["completed"], true);
    assert_eq!(
        alice
            .get(&format!("/tasks/{binned}"))
            .await
            .assert_success(),
        restored.body
    );
    assert_eq!(alice.get("/tasks").await.assert_success()["total"], 2);
    assert_eq!(
        alice.get("/tasks?status=completed").await.assert_success()["total"],
        1
    );
    assert_eq!(
        alice.get("/tags").await.assert_success(),
        json!([{"name": "work", "count": 2}, {"name": "later", "count": 1}])
    );
    assert_eq!(trash_page(&alice, "").await["total"], 0);
    assert_eq!(stored_deleted_at(&app, binned).await, Some(None));
}

#[apply(both_backends)]
#[tokio::test]
async fn restore_needs_a_task_in_this_users_trash_and_honours_if_match(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let live = id_of(&alice.create(json!({"title": "Live"})).await);
    let binned = id_of(&alice.create(json!({"title": "Binned"})).await);
    alice
        .delete(&format!("/tasks/{binned}"))
        .await
        .assert_success();
    let bobs = id_of(&bob.create(json!({"title": "Bob's"})).await);
    bob.delete(&format!("/tasks/{bobs}")).await.assert_success();

    restore(&alice, live).await.problem(StatusCode::NOT_FOUND);
    restore(&alice, bobs).await.problem(StatusCode::NOT_FOUND);
    restore(&alice, i64::MAX)
        .await
        .problem(StatusCode::NOT_FOUND);
    send(bob.request_as(Method::POST, "alice", &format!("/trash/{binned}/restore")))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(matches!(stored_deleted_at(&app, bobs).await, Some(Some(_))));

    let stale = send(
        alice
            .request(Method::POST, &format!("/trash/{binned}/restore"))
            .header("if-match", "\"1\""),
    )
    .await;
    let problem = stale.problem_of_type(
        StatusCode::PRECONDITION_FAILED,
        "/problems/precondition-failed",
    );
    assert_eq!(problem["current_version"], 2);
    assert!(matches!(
        stored_deleted_at(&app, binned).await,
        Some(Some(_))
    ));

    let current = send(
        alice
            .request(Method::POST, &format!("/trash/{binned}/restore"))
            .header("if-match", "\"2\""),
    )
    .await;
    assert_eq!(current.status, StatusCode::OK, "{}", current.body);
    // Restoring twice: the second finds nothing in the trash.
    restore(&alice, binned).await.problem(StatusCode::NOT_FOUND);
}

#[apply(both_backends)]
#[tokio::test]
async fn only_trashed_tasks_are_deleted_for_good_one_or_all(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let live = id_of(&alice.create(json!({"title": "Live", "tags": ["t"]})).await);
    let mut binned = Vec::new();
    for title in ["one", "two", "three"] {
        let id = id_of(&alice.create(json!({"title": title, "tags": ["t"]})).await);
        alice.delete(&format!("/tasks/{id}")).await.assert_success();
        binned.push(id);
    }
    let bobs = id_of(&bob.create(json!({"title": "Bob's"})).await);
    bob.delete(&format!("/tasks/{bobs}")).await.assert_success();

    // A live task is not in the trash; nor is another user's.
    alice
        .delete(&format!("/trash/{live}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    alice
        .delete(&format!("/trash/{bobs}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(app.stored_task(live).await.is_some());
    assert!(app.stored_task(bobs).await.is_some());

    let gone = alice.delete(&format!("/trash/{}", binned[0])).await;
    assert_eq!(
        (gone.status, gone.body.clone()),
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert!(app.stored_task(binned[0]).await.is_none());
    restore(&alice, binned[0])
        .await
        .problem(StatusCode::NOT_FOUND);
    alice
        .delete(&format!("/trash/{}", binned[0]))
        .await
        .problem(StatusCode::NOT_FOUND);

    let emptied = alice.delete("/trash").await;
    assert_eq!(emptied.status, StatusCode::NO_CONTENT);
    for id in &binned {
        assert!(app.stored_task(*id).await.is_none(), "task {id}");
    }
    assert_eq!(trash_page(&alice, "").await["total"], 0);
    // An empty trash empties fine.
    assert_eq!(alice.delete("/trash").await.status, StatusCode::NO_CONTENT);
    // Alice's live task and Bob's trash are untouched.
    assert_eq!(
        alice.get(&format!("/tasks/{live}")).await.assert_success()["tags"],
        json!(["t"])
    );
    assert_eq!(ids(&trash_page(&bob, "").await["items"]), vec![bobs]);
    assert_eq!(alice.get("/tasks").await.assert_success()["total"], 1);
}

#[apply(both_backends)]
#[tokio::test]
async fn the_trash_lists_the_most_recently_trashed_first_in_pages(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let created = alice.create_titled(&["a", "b", "c"]).await;
    // Trashed in the order c, a, b.
    for id in [created[2], created[0], created[1]] {
        alice.delete(&format!("/tasks/{id}")).await.assert_success();
    }
    let all = trash_page(&alice, "").await;
    assert_eq!(ids(&all["items"]), vec![created[1], created[0], created[2]]);
    let first = trash_page(&alice, "?limit=2").await;
    assert_eq!(
        (
            ids(&first["items"]),
            first["total"].clone(),
            first["limit"].clone()
        ),
        (vec![created[1], created[0]], json!(3), json!(2))
    );
    let rest = trash_page(&alice, "?limit=2&offset=2").await;
    assert_eq!(
        (ids(&rest["items"]), rest["total"].clone()),
        (vec![created[2]], json!(3))
    );
    let past = trash_page(&alice, "?offset=5").await;
    assert_eq!(
        (past["items"].clone(), past["total"].clone()),
        (json!([]), json!(3))
    );
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
    ] {
        let bad = alice.get(&format!("/trash?{query}")).await;
        assert_eq!(bad.invalid_fields(), [field], "{query}");
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn trashed_tasks_are_purged_after_the_retention(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.trash_retention = Duration::from_secs(1);
    });
    let alice = app.user("alice");
    let live = id_of(&alice.create(json!({"title": "Live", "tags": ["t"]})).await);
    let old = id_of(&alice.create(json!({"title": "Old", "tags": ["t"]})).await);
    let cursor = alice.get("/changes").await.assert_success()["cursor"].clone();
    alice
        .delete(&format!("/tasks/{old}"))
        .await
        .assert_success();

    // The purge runs every second here.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.stored_task(old).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "not purged within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(trash_page(&alice, "").await["total"], 0);
    assert_eq!(
        alice.get(&format!("/tasks/{live}")).await.assert_success()["title"],
        "Live"
    );
    assert_eq!(alice.get("/tasks").await.assert_success()["total"], 1);
    // The purge is a change like any other: the feed says the task is gone.
    let changes = alice
        .get(&format!("/changes?since={}", cursor.as_str().unwrap()))
        .await
        .assert_success();
    // Its trashing and its purge: one task, shown at its latest change.
    let only = match changes["changes"].as_array().unwrap().as_slice() {
        [only] => only.clone(),
        other => panic!("one change expected: {other:?}"),
    };
    assert_eq!(
        (
            only["op"].clone(),
            only["task_id"].clone(),
            only["task"].clone()
        ),
        (json!("delete"), json!(old), Value::Null)
    );
}

/// A user deleted from the database (by an operator: the API has no such
/// operation) takes their tasks, trash, feed and sequence along, and the
/// deletion triggers do not trip over the user being gone.
#[apply(both_backends)]
#[tokio::test]
async fn deleting_a_user_row_removes_their_tasks_trash_and_feed(backend: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let ids = alice.create_titled(&["live", "trashed", "purged"]).await;
    for path in [
        format!("/tasks/{}", ids[1]),
        format!("/tasks/{}", ids[2]),
        format!("/trash/{}", ids[2]),
    ] {
        alice.delete(&path).await.assert_success();
    }
    let bobs = bob.create_titled(&["bob's"]).await;
    bob.delete(&format!("/tasks/{}", bobs[0]))
        .await
        .assert_success();
    bob.delete(&format!("/trash/{}", bobs[0]))
        .await
        .assert_success();

    entity::user::Entity::delete_by_id("alice".to_owned())
        .exec(&app.db)
        .await
        .expect("the user and everything of theirs is deleted");
    let tasks = entity::task::Entity::find()
        .filter(entity::task::Column::UserId.eq("alice"))
        .count(&app.db);
    let changes = entity::task_change::Entity::find()
        .filter(entity::task_change::Column::UserId.eq("alice"))
        .count(&app.db);
    let sequences = entity::change_sequence::Entity::find()
        .filter(entity::change_sequence::Column::UserId.eq("alice"))
        .count(&app.db);
    let left = futures::try_join!(tasks, changes, sequences).unwrap();
    assert_eq!(left, (0, 0, 0), "alice's tasks, changes and sequence");
    // Bob's feed still tells of his deletion.
    let feed = bob.get("/changes").await.assert_success();
    assert_eq!(feed["changes"][0]["op"], "delete");
    assert_eq!(feed["changes"][0]["task_id"], bobs[0]);
}

/// Every change after `since` (all, without it), paged through to the end,
/// and the cursor at the end.
async fn changes_to_the_end(user: &User<'_>, since: Option<String>) -> (Vec<Value>, String) {
    let mut changes = Vec::new();
    let mut since = since;
    loop {
        let query = since
            .as_ref()
            .map_or(String::new(), |cursor| format!("&since={cursor}"));
        let page = user
            .get(&format!("/changes?limit=1000{query}"))
            .await
            .assert_success();
        changes.extend(page["changes"].as_array().unwrap().iter().cloned());
        let cursor = page["cursor"].as_str().unwrap().to_owned();
        if page["has_more"] == false {
            return (changes, cursor);
        }
        since = Some(cursor);
    }
}

/// A trash larger than one delete batch empties completely, and the feed
/// reports each task gone.
#[apply(both_backends)]
#[tokio::test]
async fn a_large_trash_empties_completely(backend: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let live = id_of(&alice.create(json!({"title": "Live"})).await);
    app.insert_filler_tasks("alice", 2_500, "binned").await;
    entity::task::Entity::update_many()
        .col_expr(
            entity::task::Column::DeletedAt,
            Expr::val(chrono::Utc::now()),
        )
        .filter(entity::task::Column::Id.ne(live))
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(trash_page(&alice, "").await["total"], 2_500);
    let (_, cursor) = changes_to_the_end(&alice, None).await;

    assert_eq!(alice.delete("/trash").await.status, StatusCode::NO_CONTENT);
    let left = entity::task::Entity::find()
        .filter(entity::task::Column::UserId.eq("alice"))
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 1, "only the live task is left");
    assert_eq!(
        alice.get(&format!("/tasks/{live}")).await.assert_success()["title"],
        "Live"
    );
    let (gone, _) = changes_to_the_end(&alice, Some(cursor)).await;
    assert_eq!(gone.len(), 2_500);
    assert!(
        gone.iter()
            .all(|change| change["op"] == "delete" && change["task_id"] != live)
    );
}
