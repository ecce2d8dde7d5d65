//! The summary endpoints: `/tags`, `/stats` and `/me`.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use entity::user;
use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::{Value, json};
use todo_api::auth::{Claims, mint_token};

use crate::helpers::{Backend, Reply, SECRET, TestApp, id_of, send};
use crate::spawn_or_skip;

async fn user_row(db: &DatabaseConnection, id: &str) -> Option<user::Model> {
    user::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
        .unwrap()
}

/// `GET /api/{sub}/me` with a freshly minted token carrying these claims.
async fn me_with(app: &TestApp, claims: &Claims) -> Reply {
    let token = mint_token(SECRET.as_bytes(), claims, Duration::from_secs(3600));
    send(
        app.client
            .get(format!("/api/{}/me", claims.sub))
            .header("authorization", format!("Bearer {token}")),
    )
    .await
}

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[apply(both_backends)]
#[tokio::test]
async fn tags_lists_each_tag_with_its_count_most_used_first_then_by_name(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    for tags in [
        json!(["beta", "alpha"]),
        json!(["Beta", "gamma"]),
        json!(["beta", " ALPHA "]),
        json!(["delta"]),
        json!(["zulu", "epsilon"]),
        json!([]),
    ] {
        alice.create(json!({"title": "t", "tags": tags})).await;
    }

    let reply = alice.get("/tags").await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!([
            {"name": "beta", "count": 3},
            {"name": "alpha", "count": 2},
            {"name": "delta", "count": 1},
            {"name": "epsilon", "count": 1},
            {"name": "gamma", "count": 1},
            {"name": "zulu", "count": 1}
        ])
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn a_new_user_has_no_tags_and_all_zero_stats(backend: Backend) {
    let app = spawn_or_skip!(backend);
    // Someone else's tags and tasks must not show.
    app.user("bob")
        .create(json!({"title": "b", "tags": ["work"], "due_date": "2020-01-01T00:00:00Z"}))
        .await;
    let alice = app.user("alice");

    let tags = alice.get("/tags").await;
    assert_eq!(tags.status, StatusCode::OK, "{}", tags.body);
    assert_eq!(tags.body, json!([]));

    let stats = alice.get("/stats").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!(
        stats.body,
        json!({"total": 0, "completed": 0, "pending": 0, "overdue": 0})
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn tags_only_on_deleted_tasks_disappear_from_the_tag_list(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let keep = id_of(
        &alice
            .create(json!({"title": "keep", "tags": ["shared"]}))
            .await,
    );
    let drop = id_of(
        &alice
            .create(json!({"title": "drop", "tags": ["shared", "only-here"]}))
            .await,
    );
    assert_eq!(
        alice.get("/tags").await.body,
        json!([
            {"name": "shared", "count": 2},
            {"name": "only-here", "count": 1}
        ])
    );

    let deleted = alice.delete(&format!("/tasks/{drop}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    assert_eq!(
        alice.get("/tags").await.body,
        json!([{"name": "shared", "count": 1}])
    );
    let deleted = alice.delete(&format!("/tasks/{keep}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(alice.get("/tags").await.body, json!([]));
}

#[apply(both_backends)]
#[tokio::test]
async fn tags_removed_from_a_task_are_no_longer_counted(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let first = id_of(
        &alice
            .create(json!({"title": "one", "tags": ["work", "q4"]}))
            .await,
    );
    let second = id_of(
        &alice
            .create(json!({"title": "two", "tags": ["work", "home"]}))
            .await,
    );

    let patched = alice
        .patch(&format!("/tasks/{first}"), json!({"tags": ["q4"]}))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        alice.get("/tags").await.body,
        json!([
            {"name": "home", "count": 1},
            {"name": "q4", "count": 1},
            {"name": "work", "count": 1}
        ])
    );

    let patched = alice
        .patch(&format!("/tasks/{second}"), json!({"tags": []}))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        alice.get("/tags").await.body,
        json!([{"name": "q4", "count": 1}])
    );

    // A PUT without tags removes them too.
    let replaced = alice
        .put(&format!("/tasks/{first}"), json!({"title": "one"}))
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(alice.get("/tags").await.body, json!([]));
}

#[apply(both_backends)]
#[tokio::test]
async fn stats_counts_total_completed_pending_and_overdue_exactly(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let now = Utc::now();
    let just_past = rfc3339(now - chrono::Duration::minutes(2));
    let soon = rfc3339(now + chrono::Duration::hours(1));
    let alice_ref = &alice;
    let create = move |body: Value| async move { id_of(&alice_ref.create(body).await) };

    let completed = create(json!({"title": "completed, no due date"})).await;
    create(json!({"title": "pending, no due date"})).await;
    let overdue = create(json!({"title": "overdue", "due_date": "2020-01-01T00:00:00Z"})).await;
    create(json!({"title": "overdue by minutes", "due_date": just_past})).await;
    let completed_late =
        create(json!({"title": "completed late", "due_date": "2020-06-01T12:00:00+02:00"})).await;
    create(json!({"title": "due soon", "due_date": soon})).await;
    create(
        json!({"title": "due next year", "due_date": rfc3339(now + chrono::Duration::days(365))}),
    )
    .await;
    for id in [completed, completed_late] {
        let done = alice.toggle(id).await;
        assert_eq!(done.body["completed"], true, "{}", done.body);
    }
    // Another user's overdue and completed tasks do not count.
    let bob = app.user("bob");
    bob.create(json!({"title": "bob", "due_date": "2020-01-01T00:00:00Z"}))
        .await;
    bob.toggle(id_of(&bob.create(json!({"title": "bob done"})).await))
        .await
        .assert_success();

    let stats = alice.get("/stats").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!(
        stats.body,
        json!({"total": 7, "completed": 2, "pending": 5, "overdue": 2})
    );

    // Completing an overdue task, clearing a due date, reopening a late one.
    alice.toggle(overdue).await.assert_success();
    assert_eq!(
        alice.get("/stats").await.body,
        json!({"total": 7, "completed": 3, "pending": 4, "overdue": 1})
    );
    alice.toggle(completed_late).await.assert_success();
    assert_eq!(
        alice.get("/stats").await.body,
        json!({"total": 7, "completed": 2, "pending": 5, "overdue": 2})
    );
    alice
        .patch(
            &format!("/tasks/{completed_late}"),
            json!({"due_date": null}),
        )
        .await
        .assert_success();
    alice
        .delete(&format!("/tasks/{completed}"))
        .await
        .assert_success();
    assert_eq!(
        alice.get("/stats").await.body,
        json!({"total": 6, "completed": 1, "pending": 5, "overdue": 1})
    );
    assert_eq!(
        bob.get("/stats").await.body,
        json!({"total": 2, "completed": 1, "pending": 1, "overdue": 1})
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn me_returns_the_token_claims_and_creates_the_user_on_first_sight(backend: Backend) {
    let app = spawn_or_skip!(backend);
    assert_eq!(user_row(&app.db, "alice").await, None);
    let started = Utc::now();

    let reply = app.user("alice").get("/me").await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let keys: Vec<&str> = reply
        .body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["created_at", "email", "id", "name"]);
    assert_eq!(reply.body["id"], "alice");
    assert_eq!(reply.body["email"], "alice@example.com");
    assert_eq!(reply.body["name"], "User alice");

    let row = user_row(&app.db, "alice")
        .await
        .expect("the first request creates the user row");
    assert_eq!(row.email.as_deref(), Some("alice@example.com"));
    assert_eq!(row.name.as_deref(), Some("User alice"));
    let created_at = reply.body["created_at"].as_str().expect("created_at");
    assert!(created_at.ends_with('Z'), "{created_at}");
    let parsed = chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339");
    assert_eq!(parsed, row.created_at, "created_at is the stored one");
    assert!(
        row.created_at >= started - chrono::Duration::seconds(1)
            && row.created_at <= Utc::now() + chrono::Duration::seconds(1),
        "created_at {} is the time of the first request",
        row.created_at
    );
    assert_eq!(
        user::Entity::find().all(&app.db).await.unwrap().len(),
        1,
        "only Alice's row"
    );

    // Any first request creates the row, not only /me.
    assert_eq!(user_row(&app.db, "bob").await, None);
    let listed = app.user("bob").get("/tasks").await;
    assert_eq!(listed.status, StatusCode::OK);
    let bob = user_row(&app.db, "bob").await.expect("bob's row");
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
    assert_eq!(bob.name.as_deref(), Some("User bob"));
}

#[apply(both_backends)]
#[tokio::test]
async fn a_later_token_with_a_different_email_and_name_updates_the_stored_profile(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let first = app.user("alice").get("/me").await;
    assert_eq!(first.status, StatusCode::OK);
    let row_before = user_row(&app.db, "alice").await.unwrap();

    let reply = me_with(
        &app,
        &Claims {
            exp: None,
            sub: "alice".into(),
            email: Some("alice@new.example".into()),
            name: Some("Alice Liddell".into()),
        },
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "id": "alice",
            "email": "alice@new.example",
            "name": "Alice Liddell",
            "created_at": first.body["created_at"]
        })
    );
    let row = user_row(&app.db, "alice").await.unwrap();
    assert_eq!(row.email.as_deref(), Some("alice@new.example"));
    assert_eq!(row.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(row.created_at, row_before.created_at);
    assert!(row.updated_at >= row_before.updated_at);

    // The old token's claims are stored again when it comes back.
    let old = app.user("alice").get("/me").await;
    assert_eq!(old.body["email"], "alice@example.com");
    assert_eq!(
        user_row(&app.db, "alice").await.unwrap().email.as_deref(),
        Some("alice@example.com")
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn a_later_token_without_email_or_name_keeps_the_stored_ones(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let first = app.user("alice").get("/me").await;
    assert_eq!(first.status, StatusCode::OK);

    let bare = Claims {
        exp: None,
        sub: "alice".into(),
        email: None,
        name: None,
    };
    let reply = me_with(&app, &bare).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, first.body, "nothing is erased");
    let row = user_row(&app.db, "alice").await.unwrap();
    assert_eq!(row.email.as_deref(), Some("alice@example.com"));
    assert_eq!(row.name.as_deref(), Some("User alice"));

    // Only the name: the email is kept.
    let renamed = me_with(
        &app,
        &Claims {
            exp: None,
            sub: "alice".into(),
            email: None,
            name: Some("Al".into()),
        },
    )
    .await;
    assert_eq!(renamed.body["email"], "alice@example.com");
    assert_eq!(renamed.body["name"], "Al");

    // A user first seen without claims has nulls.
    let carol = me_with(
        &app,
        &Claims {
            exp: None,
            sub: "carol".into(),
            email: None,
            name: None,
        },
    )
    .await;
    assert_eq!(carol.status, StatusCode::OK, "{}", carol.body);
    assert_eq!(carol.body["id"], "carol");
    assert_eq!(carol.body["email"], json!(null));
    assert_eq!(carol.body["name"], json!(null));
}

#[apply(both_backends)]
#[tokio::test]
async fn repeated_requests_with_the_same_token_do_not_write_the_user_row(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    assert_eq!(alice.get("/me").await.status, StatusCode::OK);
    let row_before = user_row(&app.db, "alice").await.unwrap();

    for path in ["/me", "/tasks", "/tags", "/stats", "/me"] {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let reply = alice.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
    alice.create(json!({"title": "t"})).await;
    // A new token with the same claims is the same profile.
    let again = me_with(
        &app,
        &Claims {
            exp: None,
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            name: Some("User alice".into()),
        },
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);

    let row_after = user_row(&app.db, "alice").await.unwrap();
    assert_eq!(
        row_after, row_before,
        "updated_at unchanged: no write per request"
    );
}
