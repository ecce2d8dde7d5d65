//! Live updates (contract: "Live updates (Server-Sent Events)"): a stream of
//! `change` events per user, resumable with `Last-Event-ID`, fanned out to
//! every instance by PostgreSQL `LISTEN`/`NOTIFY`.

use std::{pin::Pin, time::Duration};

use futures::{Stream, StreamExt};
use poem::http::{Method, StatusCode};
use rstest_reuse::apply;
use serde_json::{Value, json};
use todo_api::tasks::ChangeCursor;

use crate::helpers::{Backend, SECRET, User, both_backends, id_of, send};
use crate::process::ServerProcess;
use crate::spawn_or_skip;

/// One event of a stream.
#[derive(Debug, Clone)]
struct SseEvent {
    id: String,
    event: String,
    data: Value,
}

type Chunks = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, String>> + Send>>;

/// Reads `text/event-stream` events off a response body as they arrive.
struct EventReader {
    chunks: Chunks,
    buffer: String,
    comments: usize,
}

/// Longest wait for an event that must come.
const PATIENCE: Duration = Duration::from_secs(10);

impl EventReader {
    fn new(chunks: Chunks) -> Self {
        Self {
            chunks,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The events of an in-process response.
    fn of(response: poem::Response) -> Self {
        Self::new(
            response
                .into_body()
                .into_bytes_stream()
                .map(|chunk| chunk.map_err(|err| err.to_string()))
                .boxed(),
        )
    }

    /// The next event within `wait`; `None` if the stream ended or nothing
    /// came in time.
    async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id: ") {
                        id = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("event: ") {
                        event = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if data.is_empty() {
                    self.comments += 1;
                    continue;
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(SseEvent { id, event, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.chunks.next())
                .await
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("stream chunk")).unwrap());
        }
    }

    async fn next(&mut self) -> SseEvent {
        self.next_within(PATIENCE)
            .await
            .expect("an event within 10 s")
    }

    /// Asserts that no event arrives for a while.
    async fn assert_quiet(&mut self, wait: Duration) {
        if let Some(event) = self.next_within(wait).await {
            panic!("unexpected event: {event:?}");
        }
    }
}

/// Opens the user's stream in-process; the response's status and reader.
async fn open(
    user: &User<'_>,
    headers: &[(&str, &str)],
    query: &str,
) -> (StatusCode, Value, Option<EventReader>) {
    let mut request = user.request(Method::GET, &format!("/events{query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.0;
    let status = response.status();
    if status != StatusCode::OK {
        let body = response.into_body().into_bytes().await.unwrap();
        return (
            status,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
            None,
        );
    }
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    (status, Value::Null, Some(EventReader::of(response)))
}

async fn stream_of(user: &User<'_>) -> EventReader {
    let (status, body, reader) = open(user, &[], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    reader.unwrap()
}

fn op_of(event: &SseEvent) -> (&str, i64) {
    assert_eq!(event.event, "change");
    assert_eq!(
        event.id,
        ChangeCursor(event.data["seq"].as_i64().unwrap()).to_string()
    );
    (
        event.data["op"].as_str().unwrap(),
        event.data["task_id"].as_i64().unwrap(),
    )
}

#[apply(both_backends)]
#[tokio::test]
async fn every_kind_of_change_arrives_as_an_event(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let mut events = stream_of(&alice).await;

    let id = id_of(&alice.create(json!({"title": "Live", "tags": ["t"]})).await);
    let created = events.next().await;
    assert_eq!(op_of(&created), ("upsert", id));
    assert_eq!(
        created.data["task"],
        alice.get(&format!("/tasks/{id}")).await.assert_success()
    );
    alice
        .patch(&format!("/tasks/{id}"), json!({"title": "Edited"}))
        .await
        .assert_success();
    let edited = events.next().await;
    assert_eq!(
        (op_of(&edited), edited.data["task"]["title"].clone()),
        (("upsert", id), json!("Edited"))
    );
    alice.toggle(id).await.assert_success();
    assert_eq!(events.next().await.data["task"]["completed"], true);
    alice.delete(&format!("/tasks/{id}")).await.assert_success();
    assert_eq!(op_of(&events.next().await), ("trash", id));
    send(alice.request(Method::POST, &format!("/trash/{id}/restore")))
        .await
        .assert_success();
    assert_eq!(op_of(&events.next().await), ("upsert", id));
    alice.delete(&format!("/tasks/{id}")).await.assert_success();
    assert_eq!(op_of(&events.next().await), ("trash", id));
    alice.delete(&format!("/trash/{id}")).await.assert_success();
    let deleted = events.next().await;
    assert_eq!(
        (op_of(&deleted), deleted.data["task"].clone()),
        (("delete", id), Value::Null)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn a_stream_carries_only_its_users_changes(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let mut alices = stream_of(&alice).await;
    bob.create_titled(&["bob's"]).await;
    let mine = alice.create_titled(&["alice's"]).await;
    assert_eq!(op_of(&alices.next().await), ("upsert", mine[0]));
    alices.assert_quiet(Duration::from_millis(300)).await;

    let (status, problem, _) = open(&bob, &[], "").await;
    assert_eq!(status, StatusCode::OK, "{problem}");
    let foreign = send(bob.request_as(Method::GET, "alice", "/events")).await;
    foreign.problem(StatusCode::FORBIDDEN);
    let anonymous = send(
        app.client
            .get("/api/alice/events")
            .header("authorization", "Bearer nope"),
    )
    .await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
}

#[apply(both_backends)]
#[tokio::test]
async fn resuming_replays_exactly_the_missed_changes_then_goes_live(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["seen"]).await;
    let mut first = stream_of(&alice).await;
    alice
        .patch(
            &format!("/tasks/{}", ids[0]),
            json!({"title": "seen twice"}),
        )
        .await
        .assert_success();
    let last_seen = first.next().await.id;
    drop(first);

    // Missed while disconnected: a new task, a deletion and an edit.
    let missed = alice.create_titled(&["missed"]).await;
    alice
        .delete(&format!("/tasks/{}", ids[0]))
        .await
        .assert_success();
    alice
        .patch(
            &format!("/tasks/{}", missed[0]),
            json!({"title": "missed, edited"}),
        )
        .await
        .assert_success();

    for resume in [vec![("last-event-id", last_seen.as_str())], vec![]] {
        let query = if resume.is_empty() {
            format!("?since={last_seen}")
        } else {
            String::new()
        };
        let (status, body, reader) = open(&alice, &resume, &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut resumed = reader.unwrap();
        // Each task at its latest change, in order: no gap, no duplicate.
        assert_eq!(op_of(&resumed.next().await), ("trash", ids[0]));
        let edited = resumed.next().await;
        assert_eq!(
            (op_of(&edited), edited.data["task"]["title"].clone()),
            (("upsert", missed[0]), json!("missed, edited"))
        );
        resumed.assert_quiet(Duration::from_millis(200)).await;
    }
    // And then live.
    let (_, _, reader) = open(&alice, &[("last-event-id", last_seen.as_str())], "").await;
    let mut resumed = reader.unwrap();
    resumed.next().await;
    resumed.next().await;
    let live = alice.create_titled(&["live"]).await;
    assert_eq!(op_of(&resumed.next().await), ("upsert", live[0]));
}

#[apply(both_backends)]
#[tokio::test]
async fn bad_cursors_and_too_many_streams_are_problems_before_any_stream(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| config.max_streams_per_user = 2);
    let alice = app.user("alice");
    alice.create_titled(&["one"]).await;
    let never_given = ChangeCursor(1_000).to_string();
    let (status, problem, _) = open(&alice, &[("last-event-id", never_given.as_str())], "").await;
    assert_eq!(
        (status, problem["type"].clone()),
        (StatusCode::GONE, json!("/problems/cursor-expired"))
    );
    let (status, problem, _) = open(&alice, &[], "?since=nonsense").await;
    assert_eq!(
        (status, problem["errors"][0]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("since"))
    );

    let first = stream_of(&alice).await;
    let _second = stream_of(&alice).await;
    let (status, problem, _) = open(&alice, &[], "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(problem["status"], 429);
    // Another user has streams of their own.
    stream_of(&app.user("bob")).await;
    // A closed stream frees its place.
    drop(first);
    stream_of(&alice).await;
}

#[apply(both_backends)]
#[tokio::test]
async fn a_stream_ends_when_its_token_expires(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let claims = todo_api::auth::Claims {
        exp: None,
        sub: "alice".into(),
        email: None,
        name: None,
    };
    let token = todo_api::auth::mint_token(SECRET.as_bytes(), &claims, Duration::from_secs(2));
    let response = app
        .client
        .get("/api/alice/events")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .0;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = EventReader::of(response);
    let started = std::time::Instant::now();
    assert!(
        events.next_within(Duration::from_secs(10)).await.is_none(),
        "no event, then the end"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "ended at expiry, not at the wait's end"
    );
}

/// A quiet stream writes the `: keep-alive` comment every
/// `STREAM_KEEP_ALIVE`; the clock restarts with each event.
#[apply(both_backends)]
#[tokio::test]
async fn a_quiet_stream_writes_a_keep_alive_comment(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| {
        config.stream_keep_alive = Duration::from_millis(500)
    });
    let alice = app.user("alice");
    let response = alice.request(Method::GET, "/events").send().await.0;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("x-accel-buffering")
            .and_then(|v| v.to_str().ok()),
        Some("no")
    );
    let mut chunks = response.into_body().into_bytes_stream();
    let mut next_chunk = async || {
        let chunk = tokio::time::timeout(PATIENCE, chunks.next())
            .await
            .expect("a chunk within 10 s")
            .expect("the stream goes on")
            .unwrap();
        String::from_utf8(chunk.to_vec()).unwrap()
    };
    let opened = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(next_chunk().await, ": keep-alive\n\n");
    }
    let quiet = opened.elapsed();
    assert!(
        quiet >= Duration::from_millis(900) && quiet < Duration::from_secs(5),
        "two comments in {quiet:?}"
    );
    let id = id_of(&alice.create(json!({"title": "Live"})).await);
    let event = next_chunk().await;
    assert!(event.starts_with("id: "), "{event}");
    assert!(event.contains("event: change\n"), "{event}");
    assert!(event.contains(&format!("\"task_id\":{id}")), "{event}");
    assert_eq!(next_chunk().await, ": keep-alive\n\n");
}

/// A write through one instance reaches a stream open on another, and keeps
/// doing so after the listener's connection is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_instance_reaches_a_stream_on_another() {
    let app = spawn_or_skip!(Backend::Postgres);
    let writer = ServerProcess::start(&app.database_url, &[]).await;
    let reader = ServerProcess::start(&app.database_url, &[]).await;
    let token = crate::helpers::token_for("alice");
    let http = reqwest::Client::new();
    let response = http
        .get(reader.url("/api/alice/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let chunks = futures::stream::unfold(response, |mut response| async move {
        let chunk = response
            .chunk()
            .await
            .map_err(|err| err.to_string())
            .transpose()?;
        Some((chunk, response))
    })
    .boxed();
    let mut events = EventReader::new(chunks);
    let create = |title: &'static str| {
        let (http, token, url) = (http.clone(), token.clone(), writer.url("/api/alice/tasks"));
        async move {
            let reply = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"title": title}))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 201);
            reply.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
        }
    };
    let first = create("through the writer").await;
    let sent = std::time::Instant::now();
    assert_eq!(op_of(&events.next().await), ("upsert", first));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "delivered within a second: {:?}",
        sent.elapsed()
    );

    // The listeners' sessions die (a failover, a restart of a pooler).
    let killed = sea_orm::Statement::from_string(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'todo-api change listener'",
    );
    use sea_orm::ConnectionTrait;
    let row = app.db.query_one_raw(killed).await.unwrap().unwrap();
    assert!(
        row.try_get_by_index::<i64>(0).unwrap() >= 2,
        "both instances listen"
    );
    // Written while the listener may be down: caught up once it is back.
    let during = create("while reconnecting").await;
    assert_eq!(op_of(&events.next().await), ("upsert", during));
    let after = create("after").await;
    assert_eq!(op_of(&events.next().await), ("upsert", after));
}

/// A client that stops reading is disconnected after `SEND_TIMEOUT` instead
/// of holding its stream (and its place under `MAX_STREAMS_PER_USER`) for
/// good; it would resume from its last id. A pause shorter than that, or a
/// quiet stream, is not a stall.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_disconnected_and_frees_its_place(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    alice.get("/tasks").await.assert_success();
    // Megabytes of changes: more than the socket buffers on both ends hold.
    let add_filler = async || {
        for _ in 0..4 {
            app.insert_filler_tasks("alice", 1000, &"x".repeat(1000))
                .await;
        }
    };
    add_filler().await;
    let server = ServerProcess::start(
        &app.database_url,
        &[("SEND_TIMEOUT", "1s"), ("MAX_STREAMS_PER_USER", "1")],
    )
    .await;
    let token = crate::helpers::token_for("alice");
    let http = reqwest::Client::new();
    let open_another = || {
        http.get(server.url("/api/alice/events"))
            .bearer_auth(&token)
            .send()
    };
    let create = |title: &'static str| {
        let request = http
            .post(server.url("/api/alice/tasks"))
            .bearer_auth(&token)
            .json(&json!({ "title": title }));
        async move {
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), 201);
            reply.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
        }
    };

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut reader = socket
        .connect(([127, 0, 0, 1], server.port).into())
        .await
        .unwrap();
    reader
        .write_all(
            format!(
                "GET /api/alice/events?since={} HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer {token}\r\n\r\n",
                ChangeCursor(0)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut read_until = async |needle: &str| {
        while !String::from_utf8_lossy(&received[received.len().saturating_sub(64 * 1024)..])
            .contains(needle)
        {
            let mut chunk = [0; 64 * 1024];
            let read = tokio::time::timeout(PATIENCE, reader.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("{needle:?} within 10 s"))
                .unwrap();
            assert!(read > 0, "the stream ended before {needle:?}");
            received.extend_from_slice(&chunk[..read]);
        }
    };
    read_until("HTTP/1.1 200").await;
    // A pause shorter than the timeout while the server has plenty to send.
    tokio::time::sleep(Duration::from_millis(500)).await;
    read_until(&format!("id: {}\n", ChangeCursor(4000))).await;
    // Nothing to send for longer than the timeout is not a stall either.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(open_another().await.unwrap().status(), 429, "still open");
    let live = create("live").await;
    read_until(&format!("\"task_id\":{live},")).await;

    // Then the client stops reading while megabytes more are on their way.
    add_filler().await;
    create("wakes the stream on SQLite too").await;
    let stalled = std::time::Instant::now();
    loop {
        let response = open_another().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 429);
        assert!(
            stalled.elapsed() < PATIENCE,
            "the stuck stream still holds its place"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What was sent before the stall can still be read, then the end.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut rest))
        .await
        .expect("the stuck connection was closed");
    assert!(
        ended.is_ok() || ended.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "closed"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains(&format!("id: {}\n", ChangeCursor(8002))),
        "closed before it sent everything"
    );
}

/// The database `LISTEN`s of the test itself, to see what is notified.
async fn notifications(app: &crate::helpers::TestApp) -> sea_orm::sqlx::postgres::PgListener {
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(&app.database_url)
        .await
        .unwrap();
    listener.listen(todo_api::events::CHANNEL).await.unwrap();
    listener
}

/// The users notified within a short while.
async fn notified(listener: &mut sea_orm::sqlx::postgres::PgListener) -> Vec<String> {
    let mut users = Vec::new();
    while let Ok(Ok(notification)) =
        tokio::time::timeout(Duration::from_millis(500), listener.recv()).await
    {
        users.push(notification.payload().to_owned());
    }
    users
}

async fn listened_for(app: &crate::helpers::TestApp) -> Vec<String> {
    use sea_orm::{EntityTrait, QueryOrder};
    entity::event_listener::Entity::find()
        .order_by_asc(entity::event_listener::Column::UserId)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.user_id)
        .collect()
}

/// An instance shutting down (SIGTERM) removes its registrations, rather
/// than leaving writes to notify its ended session until another instance
/// reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_leaves_no_registration_behind() {
    let app = spawn_or_skip!(Backend::Postgres);
    let server = ServerProcess::start(&app.database_url, &[]).await;
    let stream = server
        .request_as(reqwest::Method::GET, "alice", "/events")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // Registered by the handler, or by the listener once it is connected.
    for _ in 0..100 {
        if listened_for(&app).await == ["alice"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listened_for(&app).await, ["alice"]);

    server.stop().await;
    drop(stream);
    assert_eq!(listened_for(&app).await, Vec::<String>::new());
}

/// A `NOTIFY` serialises commits across the whole database, so only users
/// with an open stream somewhere are notified; a user whose streams have
/// closed, or whose instance is gone, stops being notified.
#[tokio::test]
async fn only_users_with_open_streams_are_notified() {
    let app = spawn_or_skip!(Backend::Postgres);
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let mut database = notifications(&app).await;
    alice.create(json!({"title": "unwatched"})).await;
    bob.create(json!({"title": "unwatched"})).await;
    assert_eq!(notified(&mut database).await, Vec::<String>::new());

    let mut events = stream_of(&alice).await;
    assert_eq!(listened_for(&app).await, ["alice"]);
    let watched = id_of(&alice.create(json!({"title": "watched"})).await);
    bob.create(json!({"title": "still unwatched"})).await;
    assert_eq!(notified(&mut database).await, ["alice"]);
    assert_eq!(op_of(&events.next().await), ("upsert", watched));

    // A stream closed and reopened before the periodic check keeps the
    // registration; once none is open, the check removes it.
    drop(events);
    let mut events = stream_of(&alice).await;
    app.change_hub().reconcile().await.unwrap();
    assert_eq!(listened_for(&app).await, ["alice"]);
    drop(events);
    app.change_hub().reconcile().await.unwrap();
    assert_eq!(listened_for(&app).await, Vec::<String>::new());
    alice.create(json!({"title": "unwatched again"})).await;
    assert_eq!(notified(&mut database).await, Vec::<String>::new());

    // The registration of an instance that died with its session goes.
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    entity::event_listener::ActiveModel {
        user_id: Set("bob".into()),
        listener: Set(i32::MAX),
    }
    .insert(&app.db)
    .await
    .unwrap();
    bob.create(json!({"title": "watched by a ghost"})).await;
    assert_eq!(notified(&mut database).await, ["bob"]);
    app.change_hub().reconcile().await.unwrap();
    assert_eq!(listened_for(&app).await, Vec::<String>::new());
    events = stream_of(&alice).await;
    drop(events);
}

/// A write that has numbered its change (and found nobody listening) but
/// not yet committed, while a stream opens: the stream's registration waits
/// for the write's commit, so its first read sees the change. Were the
/// registration not ordered against the write, the change would be neither
/// read nor notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opening_during_a_commit_misses_nothing() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, TransactionTrait};
    let app = spawn_or_skip!(Backend::Postgres);
    let alice = app.user("alice");
    let before = alice.create(json!({"title": "before"})).await;
    let write = app.db.begin().await.unwrap();
    // The deferred numbering trigger runs now instead of at the commit.
    write
        .execute_unprepared("SET CONSTRAINTS ALL IMMEDIATE")
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let held = entity::task::ActiveModel {
        user_id: Set("alice".into()),
        title: Set("held".into()),
        title_search: Set("held".into()),
        completed: Set(false),
        priority: Set(entity::Priority::Medium),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&write)
    .await
    .unwrap();

    let mut opening = Box::pin(
        alice
            .request(Method::GET, &format!("/events?since={}", ChangeCursor(0)))
            .send(),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut opening)
            .await
            .is_err(),
        "the stream waits for the commit"
    );
    write.commit().await.unwrap();
    let response = opening.await.0;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = EventReader::of(response);
    assert_eq!(op_of(&events.next().await), ("upsert", id_of(&before)));
    assert_eq!(op_of(&events.next().await), ("upsert", held.id));
}

/// SIGTERM ends open streams at once (their clients resume elsewhere)
/// rather than holding the shutdown for its grace period.
#[tokio::test]
async fn shutdown_ends_open_streams_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
    let server = ServerProcess::start(&database, &[]).await;
    let response = server
        .request_as(reqwest::Method::GET, "alice", "/events")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stopping = std::time::Instant::now();
    server.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped in {:?} with a stream open",
        stopping.elapsed()
    );
    drop(response);
}
