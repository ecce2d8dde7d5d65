//! Idempotent retries (contract: "Idempotent retries"): a POST `/tasks` or a
//! toggle sent with an `Idempotency-Key` runs once per user and key; its
//! retries get the same response with `Idempotent-Replayed: true`.

use std::time::Duration;

use futures::future::join_all;
use poem::http::{HeaderValue, Method, StatusCode};
use rstest_reuse::apply;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, User, both_backends, id_of, send};
use crate::process::{self, ServerProcess};
use crate::spawn_or_skip;

const REUSED: &str = "/problems/idempotency-key-reused";

async fn create_with_key(user: &User<'_>, key: &str, body: Value) -> Reply {
    send(
        user.request(Method::POST, "/tasks")
            .header("idempotency-key", key)
            .body_json(&body),
    )
    .await
}

async fn toggle_with_key(user: &User<'_>, id: i64, key: &str) -> Reply {
    send(
        user.request(Method::PATCH, &format!("/tasks/{id}/complete"))
            .header("idempotency-key", key),
    )
    .await
}

async fn stored_tasks(app: &TestApp) -> u64 {
    entity::task::Entity::find().count(&app.db).await.unwrap()
}

async fn stored_keys(app: &TestApp) -> u64 {
    entity::idempotency_key::Entity::find()
        .count(&app.db)
        .await
        .unwrap()
}

#[track_caller]
fn assert_replay_of(replay: &Reply, first: &Reply) {
    assert_eq!(replay.status, first.status, "{}", replay.body);
    assert_eq!(replay.body, first.body);
    for header in ["location", "etag"] {
        assert_eq!(replay.header(header), first.header(header), "{header}");
    }
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
}

#[apply(both_backends)]
#[tokio::test]
async fn a_retried_create_gets_the_same_response_and_makes_one_task(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let body = json!({"title": "Pay rent", "tags": ["home"]});

    let first = create_with_key(&alice, "7c1b8f0e-rent", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    assert!(first.header("location").is_some() && first.header("etag").is_some());

    // The same key, bare or quoted as a structured-field string.
    for key in ["7c1b8f0e-rent", "\"7c1b8f0e-rent\""] {
        let retry = create_with_key(&alice, key, body.clone()).await;
        assert_replay_of(&retry, &first);
    }
    assert_eq!(stored_tasks(&app).await, 1);
    assert_eq!(alice.all_tasks().await.len(), 1);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_key_used_for_another_request_is_a_422_and_writes_nothing(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let first = create_with_key(&alice, "k", json!({"title": "one"})).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let id = id_of(&first.body);

    let other_body = create_with_key(&alice, "k", json!({"title": "two"})).await;
    other_body.problem_of_type(StatusCode::UNPROCESSABLE_ENTITY, REUSED);
    // The same key on another operation is another request too.
    let other_operation = toggle_with_key(&alice, id, "k").await;
    other_operation.problem_of_type(StatusCode::UNPROCESSABLE_ENTITY, REUSED);

    assert_eq!(stored_tasks(&app).await, 1);
    assert!(!app.stored_task(id).await.unwrap().completed);
}

#[apply(both_backends)]
#[tokio::test]
async fn keys_belong_to_their_user(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let body = json!({"title": "same text"});
    let alices = create_with_key(&alice, "shared-key", body.clone()).await;
    let bobs = create_with_key(&bob, "shared-key", body).await;
    assert_eq!(alices.status, StatusCode::CREATED);
    assert_eq!(bobs.status, StatusCode::CREATED, "{}", bobs.body);
    assert_eq!(bobs.header("idempotent-replayed"), None);
    assert_eq!(bobs.body["user_id"], "bob");
    assert_ne!(id_of(&alices.body), id_of(&bobs.body));
    assert_eq!(alice.all_tasks().await.len(), 1);
    assert_eq!(bob.all_tasks().await.len(), 1);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_retried_toggle_flips_the_task_once(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "t"})).await);

    let first = toggle_with_key(&alice, id, "toggle-1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["completed"], true);
    let retry = toggle_with_key(&alice, id, "toggle-1").await;
    assert_replay_of(&retry, &first);
    let stored = app.stored_task(id).await.unwrap();
    assert_eq!((stored.completed, stored.version), (true, 2));

    // A new key is a new toggle.
    let second = toggle_with_key(&alice, id, "toggle-2").await;
    assert_eq!(second.body["completed"], false);
    assert_eq!(app.stored_task(id).await.unwrap().version, 3);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_404_and_a_422_are_remembered_too(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");

    let missing = toggle_with_key(&alice, 999_999, "toggle-missing").await;
    missing.problem(StatusCode::NOT_FOUND);
    let again = toggle_with_key(&alice, 999_999, "toggle-missing").await;
    again.problem(StatusCode::NOT_FOUND);
    assert_eq!(again.body, missing.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let invalid = create_with_key(&alice, "bad-body", json!({"title": ""})).await;
    assert_eq!(invalid.invalid_fields(), ["title"]);
    let retried = create_with_key(&alice, "bad-body", json!({"title": ""})).await;
    assert_eq!(retried.invalid_fields(), ["title"]);
    assert_eq!(retried.body, invalid.body);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(stored_tasks(&app).await, 0);
}

/// A 503 describes a moment, not the request: the retry runs again.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_not_remembered_so_the_retry_writes(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.database_statement_timeout = Duration::from_millis(300);
    });
    let alice = app.user("alice");
    alice.create(json!({"title": "makes the user"})).await;
    let lock = crate::helpers::hold_tasks_lock(backend, &app.database_url).await;
    let body = json!({"title": "during the outage"});
    let refused = create_with_key(&alice, "outage", body.clone()).await;
    refused.problem(StatusCode::SERVICE_UNAVAILABLE);
    drop(lock);

    let retried = create_with_key(&alice, "outage", body).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_eq!(stored_tasks(&app).await, 2);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_malformed_key_is_a_400_and_writes_nothing(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(&alice.create(json!({"title": "t"})).await);
    let too_long = "k".repeat(256);
    let bad: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_static("\"\""),
        HeaderValue::from_str(&too_long).unwrap(),
        HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        HeaderValue::from_bytes(b"tab\tinside").unwrap(),
        HeaderValue::from_static("\"unterminated"),
    ];
    for key in &bad {
        let create = send(
            alice
                .request(Method::POST, "/tasks")
                .header("idempotency-key", key.clone())
                .body_json(&json!({"title": "x"})),
        )
        .await;
        let problem = create.problem(StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{key:?}: {problem}"
        );
        send(
            alice
                .request(Method::PATCH, &format!("/tasks/{id}/complete"))
                .header("idempotency-key", key.clone()),
        )
        .await
        .problem(StatusCode::BAD_REQUEST);
    }
    let two_lines = send(
        alice
            .request(Method::POST, "/tasks")
            .header("idempotency-key", "one")
            .header("idempotency-key", "two")
            .body_json(&json!({"title": "x"})),
    )
    .await;
    two_lines.problem(StatusCode::BAD_REQUEST);
    assert_eq!(stored_tasks(&app).await, 1);
    assert!(!app.stored_task(id).await.unwrap().completed);
    assert_eq!(stored_keys(&app).await, 0);

    // The longest key is fine.
    let longest = "k".repeat(255);
    let created = create_with_key(&alice, &longest, json!({"title": "x"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

/// A retry that arrives while the first request is still being worked on is
/// told to come back, and then gets the first one's response.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_first_is_in_progress_is_a_409_with_retry_after(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.database_statement_timeout = Duration::from_secs(20);
    });
    let alice = app.user("alice");
    alice.create(json!({"title": "makes the user"})).await;
    let lock = crate::helpers::hold_tasks_lock(backend, &app.database_url).await;
    let body = json!({"title": "slow"});

    // Sent together while the tasks are locked: whichever takes the key
    // waits for the lock, so the one that finishes first is the other.
    let mut one = std::pin::pin!(create_with_key(&alice, "slow-key", body.clone()));
    let mut two = std::pin::pin!(create_with_key(&alice, "slow-key", body.clone()));
    let (retry, first) = tokio::select! {
        early = &mut one => (early, two),
        early = &mut two => (early, one),
    };
    drop(lock);
    let first = first.await;

    let problem = retry.problem(StatusCode::CONFLICT);
    assert!(problem["detail"].as_str().unwrap().contains("in progress"));
    assert_eq!(retry.header("retry-after"), Some("1"));
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let later = create_with_key(&alice, "slow-key", body).await;
    assert_replay_of(&later, &first);
    assert_eq!(stored_tasks(&app).await, 2);
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_20_concurrent_creates_with_one_key_exactly_one_writes(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    alice.create(json!({"title": "makes the user"})).await;
    let body = json!({"title": "double-clicked"});

    let replies = join_all((0..20).map(|_| create_with_key(&alice, "click", body.clone()))).await;

    let created: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert!(!created.is_empty(), "{replies:#?}");
    for reply in &replies {
        match reply.status {
            StatusCode::CREATED => assert_eq!(reply.body, created[0].body),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let fresh = created
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one request wrote");
    assert_eq!(stored_tasks(&app).await, 2);
}

#[apply(both_backends)]
#[tokio::test]
async fn keys_expire_after_the_ttl_and_are_deleted(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.idempotency_ttl = Duration::from_secs(1);
    });
    let alice = app.user("alice");
    let first = create_with_key(&alice, "short-lived", json!({"title": "one"})).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(stored_keys(&app).await, 1);

    // Deleted by the service once expired (it sweeps as often as keys expire).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored_keys(&app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired key stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Forgotten: the key is free for a new request.
    let reused = create_with_key(&alice, "short-lived", json!({"title": "two"})).await;
    assert_eq!(reused.status, StatusCode::CREATED, "{}", reused.body);
    assert_eq!(reused.header("idempotent-replayed"), None);
    assert_eq!(stored_tasks(&app).await, 2);
}

/// Keys are in the database: a retry after a restart, or through another
/// instance, still gets the first response.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_survive_a_restart_and_are_shared_by_every_instance(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let token = crate::helpers::token_for("alice");
    let http = reqwest::Client::new();
    let create = |server: &ServerProcess, key: &str| {
        process::send(
            http.post(server.url("/api/alice/tasks"))
                .bearer_auth(&token)
                .header("Idempotency-Key", key)
                .json(&json!({"title": "from the phone"})),
        )
    };

    let server = ServerProcess::start(&app.database_url, &[]).await;
    let first = create(&server, "across-restarts").await;
    assert_eq!(first.status, 201, "{}", first.body);
    server.stop().await;
    let restarted = ServerProcess::start(&app.database_url, &[]).await;
    let retry = create(&restarted, "across-restarts").await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));

    if backend == Backend::Postgres {
        // Two instances behind a load balancer, a burst of retries on both.
        let second = ServerProcess::start(&app.database_url, &[]).await;
        let burst = join_all((0..20).map(|n| {
            let server = if n % 2 == 0 { &restarted } else { &second };
            create(server, "double-tap")
        }))
        .await;
        let fresh: Vec<_> = burst
            .iter()
            .filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none())
            .collect();
        assert_eq!(fresh.len(), 1, "exactly one instance wrote");
        for reply in &burst {
            assert!(
                reply.status == 409 || (reply.status == 201 && reply.body == fresh[0].body),
                "{} {}",
                reply.status,
                reply.body
            );
        }
    }
    let titles = app.stored_titles().await;
    let expected = if backend == Backend::Postgres { 2 } else { 1 };
    assert_eq!(titles.len(), expected, "{titles:?}");
}
