//! Incremental sync (contract: "Incremental sync"): `/changes` pages
//! through every change to a user's tasks in sequence order, each task once
//! at its latest state, and a client that keeps syncing from its cursor
//! ends up with exactly the server's state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use poem::http::{Method, StatusCode};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rstest_reuse::apply;
use serde_json::{Value, json};
use todo_api::tasks::ChangeCursor;

use crate::helpers::{Backend, TestApp, User, both_backends, id_of, send};
use crate::spawn_or_skip;

/// A client's copy of its tasks, kept by applying the change feed.
#[derive(Default)]
struct Replica {
    tasks: BTreeMap<i64, Value>,
    cursor: Option<String>,
    last_seq: i64,
}

impl Replica {
    /// Syncs until `has_more` is false, `limit` changes per request;
    /// checks the feed's promises on every page.
    async fn sync(&mut self, user: &User<'_>, limit: u64) {
        loop {
            let path = match &self.cursor {
                Some(cursor) => format!("/changes?since={cursor}&limit={limit}"),
                None => format!("/changes?limit={limit}"),
            };
            let page = user.get(&path).await.assert_success();
            let changes = page["changes"].as_array().expect("changes");
            assert!(changes.len() as u64 <= limit, "{page}");
            let mut in_page = std::collections::HashSet::new();
            for change in changes {
                let seq = change["seq"].as_i64().expect("seq");
                assert!(
                    seq > self.last_seq,
                    "seq {seq} after {}: {page}",
                    self.last_seq
                );
                self.last_seq = seq;
                let id = change["task_id"].as_i64().expect("task_id");
                assert!(in_page.insert(id), "task {id} twice in one page: {page}");
                let task = &change["task"];
                match change["op"].as_str() {
                    Some("upsert") => {
                        assert_eq!(
                            (task["id"].as_i64(), &task["deleted_at"]),
                            (Some(id), &Value::Null)
                        );
                        self.tasks.insert(id, task.clone());
                    }
                    Some("trash") => {
                        assert!(task["deleted_at"].is_string(), "{change}");
                        self.tasks.insert(id, task.clone());
                    }
                    Some("delete") => {
                        assert_eq!(task, &Value::Null);
                        self.tasks.remove(&id);
                    }
                    other => panic!("unknown op {other:?}"),
                }
            }
            self.cursor = Some(page["cursor"].as_str().expect("cursor").to_owned());
            if page["has_more"] == false {
                return;
            }
            assert_eq!(
                changes.len() as u64,
                limit,
                "a short page has no more: {page}"
            );
        }
    }

    async fn full(user: &User<'_>, limit: u64) -> Self {
        let mut replica = Self::default();
        replica.sync(user, limit).await;
        replica
    }
}

fn op_of(change: &Value) -> (&str, i64) {
    (
        change["op"].as_str().expect("op"),
        change["task_id"].as_i64().expect("task_id"),
    )
}

#[apply(both_backends)]
#[tokio::test]
async fn a_full_sync_pages_through_every_live_and_trashed_task_once(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let ids = alice.create_titled(&["a", "b", "c", "d", "e"]).await;
    alice
        .delete(&format!("/tasks/{}", ids[1]))
        .await
        .assert_success();
    alice
        .patch(&format!("/tasks/{}", ids[0]), json!({"title": "A"}))
        .await
        .assert_success();
    bob.create_titled(&["bob's"]).await;

    let first = alice.get("/changes?limit=2").await.assert_success();
    assert_eq!(first["has_more"], true);
    // Oldest change first: c, d, e were created after b was, then b was
    // trashed and a edited.
    let ops: Vec<_> = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(op_of)
        .collect();
    assert_eq!(ops, [("upsert", ids[2]), ("upsert", ids[3])]);
    let replica = Replica::full(&alice, 2).await;
    assert_eq!(replica.tasks.keys().copied().collect::<Vec<_>>(), ids);
    assert_eq!(replica.tasks[&ids[0]]["title"], "A");
    assert!(replica.tasks[&ids[1]]["deleted_at"].is_string());
    // Each task as GET shows it.
    for id in [ids[0], ids[2]] {
        assert_eq!(
            alice.get(&format!("/tasks/{id}")).await.assert_success(),
            replica.tasks[&id]
        );
    }
    let everything = alice.get("/changes?limit=1000").await.assert_success();
    assert_eq!(everything["changes"].as_array().unwrap().len(), 5);
    assert_eq!(everything["has_more"], false);
    assert_eq!(everything["cursor"].as_str(), replica.cursor.as_deref());
}

#[apply(both_backends)]
#[tokio::test]
async fn an_incremental_sync_returns_each_changed_task_once_at_its_latest_state(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let ids = alice
        .create_titled(&["edited", "toggled", "trashed", "purged", "quiet"])
        .await;
    let mut replica = Replica::full(&alice, 100).await;
    let since = replica.cursor.clone().unwrap();

    let edited = format!("/tasks/{}", ids[0]);
    alice
        .patch(&edited, json!({"title": "once"}))
        .await
        .assert_success();
    alice
        .patch(&edited, json!({"title": "twice"}))
        .await
        .assert_success();
    alice.toggle(ids[1]).await.assert_success();
    alice
        .delete(&format!("/tasks/{}", ids[2]))
        .await
        .assert_success();
    alice
        .delete(&format!("/tasks/{}", ids[3]))
        .await
        .assert_success();
    alice
        .delete(&format!("/trash/{}", ids[3]))
        .await
        .assert_success();
    let new = id_of(&alice.create(json!({"title": "new"})).await);
    bob.create_titled(&["not alice's"]).await;

    let page = alice
        .get(&format!("/changes?since={since}"))
        .await
        .assert_success();
    let changes = page["changes"].as_array().unwrap();
    let ops: Vec<_> = changes.iter().map(op_of).collect();
    assert_eq!(
        ops,
        [
            ("upsert", ids[0]),
            ("upsert", ids[1]),
            ("trash", ids[2]),
            ("delete", ids[3]),
            ("upsert", new)
        ]
    );
    assert_eq!(changes[0]["task"]["title"], "twice");
    assert_eq!(changes[0]["task"]["version"], 3);
    assert_eq!(changes[1]["task"]["completed"], true);
    assert_eq!(page["has_more"], false);

    replica.sync(&alice, 100).await;
    assert_eq!(replica.tasks, Replica::full(&alice, 100).await.tasks);
    // Nothing changed since: the same cursor back, no changes.
    let cursor = replica.cursor.clone().unwrap();
    let idle = alice
        .get(&format!("/changes?since={cursor}"))
        .await
        .assert_success();
    assert_eq!(
        idle,
        json!({"changes": [], "cursor": cursor, "has_more": false})
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn cursors_and_limits_are_checked_and_feeds_are_private(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    bob.create_titled(&["bob's"]).await;
    let empty = alice.get("/changes").await.assert_success();
    assert_eq!(
        (empty["changes"].clone(), empty["has_more"].clone()),
        (json!([]), json!(false))
    );

    for bad in ["not-a-cursor", "42", "AAAAAAAAAAAAAAAA", "%00"] {
        let reply = alice.get(&format!("/changes?since={bad}")).await;
        assert_eq!(reply.invalid_fields(), ["since"], "{bad}");
    }
    for bad in ["0", "1001", "x"] {
        let reply = alice.get(&format!("/changes?limit={bad}")).await;
        assert_eq!(reply.invalid_fields(), ["limit"], "{bad}");
        assert!(
            reply.body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("1000"),
            "{}",
            reply.body
        );
    }
    // A well-formed cursor this server never gave out (its feed is not
    // that far): the client must start over.
    let future = ChangeCursor(1_000).to_string();
    alice
        .get(&format!("/changes?since={future}"))
        .await
        .problem_of_type(StatusCode::GONE, "/problems/cursor-expired");
    send(bob.request_as(Method::GET, "alice", "/changes"))
        .await
        .problem(StatusCode::FORBIDDEN);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_cursor_from_before_a_forgotten_deletion_is_gone(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.trash_retention = Duration::from_secs(1);
        config.changes_retention = Duration::from_secs(1);
    });
    let alice = app.user("alice");
    let ids = alice.create_titled(&["kept", "deleted"]).await;
    let old = alice.get("/changes").await.assert_success()["cursor"].clone();
    let old = old.as_str().unwrap();
    alice
        .delete(&format!("/tasks/{}", ids[1]))
        .await
        .assert_success();
    alice
        .delete(&format!("/trash/{}", ids[1]))
        .await
        .assert_success();
    let recent = alice
        .get(&format!("/changes?since={old}"))
        .await
        .assert_success();
    assert_eq!(op_of(&recent["changes"][0]), ("delete", ids[1]));
    let recent = recent["cursor"].as_str().unwrap().to_owned();

    // The deletion is forgotten after a second; the sweep runs every second.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remembered_deletions(&app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not forgotten within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = alice.get(&format!("/changes?since={old}")).await;
    let problem = expired.problem_of_type(StatusCode::GONE, "/problems/cursor-expired");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("without `since`"),
        "{problem}"
    );
    // A cursor from after the deletion lost nothing; a full sync works.
    let after = alice
        .get(&format!("/changes?since={recent}"))
        .await
        .assert_success();
    assert_eq!(after["changes"], json!([]));
    let full = Replica::full(&alice, 10).await;
    assert_eq!(full.tasks.keys().copied().collect::<Vec<_>>(), [ids[0]]);
}

async fn remembered_deletions(app: &TestApp) -> u64 {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    entity::task_change::Entity::find()
        .filter(entity::task_change::Column::DeletedAt.is_not_null())
        .count(&app.db)
        .await
        .unwrap()
}

/// The user's tasks as stored: id → (version, trashed).
async fn stored_state(app: &TestApp, user_id: &str) -> BTreeMap<i64, (i64, bool)> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::task::Entity::find()
        .filter(entity::task::Column::UserId.eq(user_id))
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|task| (task.id, (task.version, task.deleted_at.is_some())))
        .collect()
}

fn replica_state(replica: &Replica) -> BTreeMap<i64, (i64, bool)> {
    replica
        .tasks
        .iter()
        .map(|(id, task)| {
            (
                *id,
                (
                    task["version"].as_i64().unwrap(),
                    task["deleted_at"].is_string(),
                ),
            )
        })
        .collect()
}

/// Writers change, trash, restore and delete tasks while a client syncs
/// over and over in small pages; once they stop and it syncs once more, its
/// copy is exactly a fresh full sync and exactly the database. A change
/// numbered before another but committed after it would be skipped by a
/// cursor already past it, and show here.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_syncing_during_concurrent_writes_ends_with_the_servers_state(backend: Backend) {
    const WRITERS: u64 = 6;
    const WRITES: usize = 40;
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let pool = Mutex::new(
        alice
            .create_titled(&["1", "2", "3", "4", "5", "6", "7", "8"])
            .await,
    );
    let bobs = bob.create_titled(&["bob's"]).await;
    let writing = AtomicBool::new(true);

    let writer = |seed: u64| {
        let (alice, pool) = (&alice, &pool);
        async move {
            let mut rng = StdRng::seed_from_u64(seed);
            for n in 0..WRITES {
                let id = {
                    let ids = pool.lock().unwrap();
                    ids[rng.random_range(0..ids.len())]
                };
                let reply = match rng.random_range(0..100) {
                    0..20 => {
                        let reply = alice.post("/tasks", json!({"title": format!("w{seed}-{n}")})).await;
                        pool.lock().unwrap().push(id_of(&reply.body));
                        reply
                    }
                    20..45 => alice.patch(&format!("/tasks/{id}"), json!({"title": format!("p{seed}-{n}"), "tags": [format!("t{}", n % 3)]})).await,
                    45..65 => alice.toggle(id).await,
                    65..80 => alice.delete(&format!("/tasks/{id}")).await,
                    80..92 => send(alice.request(Method::POST, &format!("/trash/{id}/restore"))).await,
                    _ => alice.delete(&format!("/trash/{id}")).await,
                };
                // A task can be in the trash, or gone, when its turn comes.
                assert!(
                    reply.status.is_success() || reply.status == StatusCode::NOT_FOUND,
                    "{} {}",
                    reply.status,
                    reply.body
                );
            }
        }
    };
    let reader = async {
        let mut replica = Replica::default();
        let mut syncs = 0;
        while writing.load(Ordering::Relaxed) {
            replica.sync(&alice, 3).await;
            syncs += 1;
        }
        (replica, syncs)
    };
    let writers = async {
        join_all((0..WRITERS).map(writer)).await;
        writing.store(false, Ordering::Relaxed);
    };
    let ((mut replica, syncs), ()) = tokio::join!(reader, writers);
    assert!(syncs > 1, "the client synced while the writers wrote");
    replica.sync(&alice, 3).await;

    let fresh = Replica::full(&alice, 1000).await;
    assert_eq!(replica.tasks, fresh.tasks);
    assert_eq!(replica_state(&replica), stored_state(&app, "alice").await);
    assert!(!replica.tasks.is_empty());
    // Bob's feed holds Bob's task only.
    let bobs_copy = Replica::full(&bob, 1000).await;
    assert_eq!(bobs_copy.tasks.keys().copied().collect::<Vec<_>>(), bobs);
}

#[apply(both_backends)]
#[tokio::test]
async fn existing_tasks_are_numbered_by_the_migration(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let ids = alice.create_titled(&["first", "second"]).await;
    alice.toggle(ids[0]).await.assert_success();
    let bobs = bob.create_titled(&["bob's"]).await;
    app.migrate_down_to_before("m20261205_000003_trash_and_changes");
    app.migrate(&["up"]);

    let replica = Replica::full(&alice, 100).await;
    assert_eq!(replica.tasks.keys().copied().collect::<Vec<_>>(), ids);
    assert_eq!(replica.tasks[&ids[0]]["completed"], true);
    assert_eq!(
        Replica::full(&bob, 100)
            .await
            .tasks
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        bobs
    );
    // Numbering goes on from the numbers the migration gave.
    let cursor = replica.cursor.clone().unwrap();
    alice
        .patch(&format!("/tasks/{}", ids[1]), json!({"title": "edited"}))
        .await
        .assert_success();
    let page = alice
        .get(&format!("/changes?since={cursor}"))
        .await
        .assert_success();
    assert_eq!(op_of(&page["changes"][0]), ("upsert", ids[1]));
    assert_eq!(page["changes"][0]["seq"], replica.last_seq + 1);
}

/// A write that is still open while another of the same user commits and a
/// client syncs past it: its change must still reach the client. (Had the
/// open write taken a number before the committed one, a cursor past the
/// committed one would skip it for good.)
#[apply(both_backends)]
#[tokio::test]
async fn a_change_committed_after_a_later_one_was_read_is_not_skipped(backend: Backend) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["held", "committed"]).await;
    let mut replica = Replica::full(&alice, 100).await;

    // A write of Alice's still in its transaction (a slow request, another
    // instance): it has changed the task and not committed.
    let held = app.db.begin().await.unwrap();
    held.execute_unprepared(&format!(
        "UPDATE tasks SET title = 'changed while held', title_search = 'changed while held', \
         version = version + 1 WHERE id = {}",
        ids[0]
    ))
    .await
    .unwrap();
    let path = format!("/tasks/{}", ids[1]);
    let committed = alice.patch(&path, json!({"title": "committed"}));
    if backend == Backend::Postgres {
        // Another user's row locks aside, nothing holds this write up.
        committed.await.assert_success();
        replica.sync(&alice, 100).await;
        assert_eq!(replica.tasks[&ids[1]]["title"], "committed");
        held.commit().await.unwrap();
    } else {
        // One writer at a time: the write waits for the held one.
        let other = async {
            app.until_a_write_waits().await;
            replica.sync(&alice, 100).await;
            held.commit().await.unwrap();
        };
        let (reply, ()) = tokio::join!(committed, other);
        reply.assert_success();
    }
    replica.sync(&alice, 100).await;
    assert_eq!(replica.tasks[&ids[0]]["title"], "changed while held");
    assert_eq!(replica.tasks[&ids[1]]["title"], "committed");
    assert_eq!(replica.tasks, Replica::full(&alice, 100).await.tasks);
}
