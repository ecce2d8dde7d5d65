//! Many requests at once: every one answered, none of their writes lost, and
//! users' data kept apart.

use std::collections::{BTreeSet, HashMap};

use entity::{tag, task, task_tag, user};
use futures::future::join_all;
use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, id_of};
use crate::spawn_or_skip;

/// Fails with every unexpected answer, so a 5xx is reported with its body.
#[track_caller]
fn assert_all(replies: &[Reply], status: StatusCode, what: &str) {
    let unexpected: Vec<String> = replies
        .iter()
        .filter(|r| r.status != status)
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{what}: {} of {} requests did not answer {status}: {unexpected:#?}",
        unexpected.len(),
        replies.len()
    );
}

fn tag_counts(tags: &Value) -> HashMap<String, i64> {
    tags.as_array()
        .expect("tag list")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_all_succeed_with_distinct_ids_and_one_row_per_shared_tag(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bodies: Vec<Value> = (0..50)
        .map(|i| {
            let mut tags = vec![format!("own-{i}")];
            if i % 2 == 0 {
                tags.push("shared".into());
            }
            if i % 3 == 0 {
                tags.push("also-shared".into());
            }
            json!({"title": format!("task {i}"), "tags": tags})
        })
        .collect();

    // Alice is new: her user row is created by these same requests.
    let replies = join_all(bodies.iter().map(|body| alice.post("/tasks", body.clone()))).await;

    assert_all(&replies, StatusCode::CREATED, "concurrent creates");
    let ids: BTreeSet<i64> = replies.iter().map(|r| id_of(&r.body)).collect();
    assert_eq!(ids.len(), 50, "50 distinct ids");
    for (reply, body) in replies.iter().zip(&bodies) {
        let id = id_of(&reply.body);
        assert_eq!(reply.body["title"], body["title"]);
        let mut sent: Vec<&str> = body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        sent.sort();
        assert_eq!(reply.body["tags"], json!(sent), "{}", reply.body);
        assert_eq!(
            reply.header("location"),
            Some(format!("/api/alice/tasks/{id}").as_str())
        );
    }

    let listed = alice.get("/tasks?limit=100").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["total"], 50);
    let listed_ids: BTreeSet<i64> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed_ids, ids);

    let tags = alice.get("/tags").await;
    assert_eq!(tags.status, StatusCode::OK, "{}", tags.body);
    let counts = tag_counts(&tags.body);
    assert_eq!(counts.get("shared"), Some(&25), "{}", tags.body);
    assert_eq!(counts.get("also-shared"), Some(&17), "{}", tags.body);
    assert_eq!(counts.len(), 52, "{}", tags.body);
    assert_eq!(tags.body[0], json!({"name": "shared", "count": 25}));
    assert_eq!(tags.body[1], json!({"name": "also-shared", "count": 17}));

    let tag_rows = tag::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(
        tag_rows.iter().filter(|t| t.name == "shared").count(),
        1,
        "the tag `shared` is stored once"
    );
    assert_eq!(tag_rows.len(), 52);
    assert_eq!(
        task_tag::Entity::find().all(&app.db).await.unwrap().len(),
        50 + 25 + 17
    );
    assert_eq!(task::Entity::find().all(&app.db).await.unwrap().len(), 50);
    let users = user::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(users.len(), 1, "one user row however many first requests");
    assert_eq!(users[0].email.as_deref(), Some("alice@example.com"));
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_toggles_each_take_effect_so_an_odd_number_flips_the_task_and_an_even_number_keeps_it(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(
        &alice
            .create(json!({"title": "Flip me", "tags": ["x"]}))
            .await,
    );

    let replies = join_all((0..21).map(|_| alice.toggle(id))).await;

    assert_all(&replies, StatusCode::OK, "21 concurrent toggles");
    let completed = replies
        .iter()
        .filter(|r| r.body["completed"] == true)
        .count();
    assert_eq!(
        completed, 11,
        "each toggle saw the previous one: 11 completed, 10 reopened"
    );
    for reply in &replies {
        assert_eq!(reply.body["tags"], json!(["x"]));
        assert_eq!(
            reply.body["completed_at"].is_string(),
            reply.body["completed"] == true,
            "{}",
            reply.body
        );
    }
    let task = alice.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["completed"], true, "{}", task.body);
    assert!(task.body["completed_at"].is_string(), "{}", task.body);
    let stored = app.stored_task(id).await.unwrap();
    assert!(stored.completed);
    assert!(stored.completed_at.is_some());

    // An even number of toggles leaves the task as it was.
    let replies = join_all((0..20).map(|_| alice.toggle(id))).await;

    assert_all(&replies, StatusCode::OK, "20 more concurrent toggles");
    let completed = replies
        .iter()
        .filter(|r| r.body["completed"] == true)
        .count();
    assert_eq!(completed, 10, "10 reopened, 10 completed");
    let task = alice.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["completed"], true, "{}", task.body);
    assert!(task.body["completed_at"].is_string(), "{}", task.body);

    // And an odd number reopens it.
    let replies = join_all((0..21).map(|_| alice.toggle(id))).await;

    assert_all(&replies, StatusCode::OK, "21 more concurrent toggles");
    let completed = replies
        .iter()
        .filter(|r| r.body["completed"] == true)
        .count();
    assert_eq!(completed, 10, "11 reopened, 10 completed");
    let task = alice.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["completed"], false, "{}", task.body);
    assert_eq!(task.body["completed_at"], json!(null));
    let stored = app.stored_task(id).await.unwrap();
    assert!(!stored.completed);
    assert_eq!(stored.completed_at, None);
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_different_fields_of_one_task_are_all_applied(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(
        &alice
            .create(json!({"title": "Original", "priority": "low", "description": "old"}))
            .await,
    );
    let path = format!("/tasks/{id}");

    for round in 0..6 {
        let priority = ["high", "medium", "low"][round % 3];
        let due = format!("2030-01-{:02}T12:00:00Z", round + 1);
        let (title, prio, description, due_date, tags, toggled) = futures::join!(
            alice.patch(&path, json!({"title": format!("Title {round}")})),
            alice.patch(&path, json!({"priority": priority})),
            alice.patch(
                &path,
                json!({"description": format!("Description {round}")})
            ),
            alice.patch(&path, json!({"due_date": due})),
            alice.patch(&path, json!({"tags": [format!("round-{round}")]})),
            alice.toggle(id),
        );
        let replies = [title, prio, description, due_date, tags, toggled];
        assert_all(&replies, StatusCode::OK, "concurrent patches");

        let task = alice.get(&path).await;
        assert_eq!(task.status, StatusCode::OK);
        let expected_completed = round % 2 == 0;
        let task = &task.body;
        assert_eq!(task["title"], format!("Title {round}"), "round {round}");
        assert_eq!(task["priority"], priority, "round {round}");
        assert_eq!(
            task["description"],
            format!("Description {round}"),
            "round {round}"
        );
        assert_eq!(task["due_date"], due, "round {round}");
        assert_eq!(
            task["tags"],
            json!([format!("round-{round}")]),
            "round {round}"
        );
        assert_eq!(task["completed"], expected_completed, "round {round}");
        assert_eq!(
            task["completed_at"].is_string(),
            expected_completed,
            "round {round}"
        );

        let stored = app.stored_task(id).await.unwrap();
        assert_eq!(stored.title, format!("Title {round}"));
        assert_eq!(stored.title_search, format!("title {round}"));
        assert_eq!(
            stored.description.as_deref(),
            Some(format!("Description {round}").as_str())
        );
        assert_eq!(stored.completed, expected_completed);
    }
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deletes_of_one_task_answer_one_204_and_404_for_the_rest(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["keep", "drop"]).await;
    let path = format!("/tasks/{}", ids[1]);

    let replies = join_all((0..10).map(|_| alice.delete(&path))).await;

    let deleted = replies
        .iter()
        .filter(|r| r.status == StatusCode::NO_CONTENT)
        .count();
    assert_eq!(deleted, 1, "{replies:#?}");
    for reply in replies
        .iter()
        .filter(|r| r.status != StatusCode::NO_CONTENT)
    {
        reply.problem(StatusCode::NOT_FOUND);
    }
    let remaining: Vec<i64> = alice.all_tasks().await.iter().map(id_of).collect();
    assert_eq!(remaining, [ids[0]]);
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_by_two_users_stay_with_their_owner(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");

    let replies = join_all((0..40).map(|i| {
        let (user, name) = if i % 2 == 0 {
            (&alice, "alice")
        } else {
            (&bob, "bob")
        };
        user.post(
            "/tasks",
            json!({"title": format!("{name} {i}"), "tags": ["work", name]}),
        )
    }))
    .await;

    assert_all(&replies, StatusCode::CREATED, "concurrent creates");
    for (user, name, other) in [(&alice, "alice", "bob"), (&bob, "bob", "alice")] {
        let tasks = user.all_tasks().await;
        assert_eq!(tasks.len(), 20, "{name}");
        let titles: BTreeSet<String> = tasks
            .iter()
            .map(|t| {
                assert_eq!(t["user_id"], name, "{t}");
                assert_eq!(t["tags"], json!([name, "work"]), "{t}");
                t["title"].as_str().unwrap().to_owned()
            })
            .collect();
        let expected: BTreeSet<String> = (0..40)
            .filter(|i| (i % 2 == 0) == (name == "alice"))
            .map(|i| format!("{name} {i}"))
            .collect();
        assert_eq!(titles, expected, "{name} sees exactly their own tasks");

        let tags = user.get("/tags").await;
        let counts = tag_counts(&tags.body);
        assert_eq!(counts.get("work"), Some(&20), "{name}: {}", tags.body);
        assert_eq!(counts.get(name), Some(&20), "{name}: {}", tags.body);
        assert_eq!(counts.get(other), None, "{name}: {}", tags.body);
        assert_eq!(counts.len(), 2, "{name}: {}", tags.body);
    }

    let rows = task::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows.iter().filter(|t| t.user_id == "alice").count(), 20);
    assert!(
        rows.iter()
            .all(|t| t.title.starts_with(&format!("{} ", t.user_id)))
    );
    let tag_rows = tag::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(tag_rows.len(), 4, "work and own name, per user");
    let task_owner: HashMap<i64, String> = rows.iter().map(|t| (t.id, t.user_id.clone())).collect();
    let tag_owner: HashMap<i64, String> =
        tag_rows.iter().map(|t| (t.id, t.user_id.clone())).collect();
    for link in task_tag::Entity::find().all(&app.db).await.unwrap() {
        assert_eq!(
            task_owner[&link.task_id], tag_owner[&link.tag_id],
            "a task is only linked to its owner's tags"
        );
    }
}

/// Every stored tag name of a user.
async fn stored_tag_names(app: &crate::helpers::TestApp, user_id: &str) -> BTreeSet<String> {
    tag::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|tag| tag.user_id == user_id)
        .map(|tag| tag.name)
        .collect()
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_tags_no_task_carries_and_keeps_every_tag_in_use(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let kept = id_of(&alice.create(json!({"title": "kept", "tags": ["a"]})).await);
    let patched = id_of(
        &alice
            .create(json!({"title": "patched", "tags": ["a"]}))
            .await,
    );
    for round in 0..10 {
        let tags: Vec<String> = (0..5).map(|i| format!("round-{round}-{i}")).collect();
        let reply = alice
            .patch(&format!("/tasks/{patched}"), json!({ "tags": tags }))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let deleted = id_of(
        &alice
            .create(json!({"title": "deleted", "tags": ["gone"]}))
            .await,
    );
    for path in [format!("/tasks/{deleted}"), format!("/trash/{deleted}")] {
        assert_eq!(alice.delete(&path).await.status, StatusCode::NO_CONTENT);
    }
    bob.create(json!({"title": "bob's", "tags": ["gone", "a"]}))
        .await;
    let tags_before = alice.get("/tags").await.body;
    assert_eq!(stored_tag_names(&app, "alice").await.len(), 1 + 50 + 1);

    let swept = todo_api::tasks::sweep_orphan_tags(&app.db, 1000)
        .await
        .unwrap();
    assert_eq!(
        swept,
        45 + 1,
        "the orphans of nine replaced rounds and of the deleted task"
    );

    let expected: BTreeSet<String> = std::iter::once("a".to_owned())
        .chain((0..5).map(|i| format!("round-9-{i}")))
        .collect();
    assert_eq!(stored_tag_names(&app, "alice").await, expected);
    assert_eq!(
        stored_tag_names(&app, "bob").await,
        BTreeSet::from(["a".to_owned(), "gone".to_owned()])
    );
    assert_eq!(alice.get("/tags").await.body, tags_before);
    assert_eq!(
        alice.get(&format!("/tasks/{kept}")).await.body["tags"],
        json!(["a"])
    );
    assert_eq!(
        todo_api::tasks::sweep_orphan_tags(&app.db, 1000)
            .await
            .unwrap(),
        0
    );
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_never_unlinks_a_tag_that_a_concurrent_write_attaches(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| config.database_max_connections = 20);
    let alice = app.user("alice");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sweeper = async {
        let mut swept = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // A sweep that meets a link committed under it fails; never unlinks.
            if let Ok(n) = todo_api::tasks::sweep_orphan_tags(&app.db, 1000).await {
                swept += n;
            }
        }
        swept
    };
    let writers = async {
        let mut replies = Vec::new();
        for round in 0..15 {
            // Each round's tags were orphaned by the round before: the sweep
            // is deleting exactly the tags these writes attach again.
            let creates = (0..6).map(|i| {
                alice.post(
                    "/tasks",
                    json!({"title": format!("{round}-{i}"), "tags": ["x", "y"]}),
                )
            });
            let created = join_all(creates).await;
            for reply in &created {
                let id = id_of(&reply.body);
                let stored = alice.get(&format!("/tasks/{id}")).await;
                assert_eq!(
                    stored.body["tags"],
                    json!(["x", "y"]),
                    "task {id} lost a tag"
                );
                replies.push(alice.delete(&format!("/tasks/{id}")).await);
                replies.push(alice.delete(&format!("/trash/{id}")).await);
            }
            replies.extend(created);
        }
        let last = alice
            .create(json!({"title": "last", "tags": ["x", "y"]}))
            .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (replies, last)
    };
    let (swept, (replies, last)) = tokio::join!(sweeper, writers);
    let failures: Vec<String> = replies
        .iter()
        .filter(|r| !r.status.is_success())
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(swept > 0, "the sweep ran against the writes");
    let stored = alice.get(&format!("/tasks/{}", id_of(&last))).await;
    assert_eq!(stored.body["tags"], json!(["x", "y"]));
    let links = task_tag::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(links.len(), 2, "the last task keeps both links");
}
