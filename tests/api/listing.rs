//! `GET /api/{user_id}/tasks`: filters, sorts, the pagination envelope,
//! invalid query values, and that a list only ever holds the caller's tasks.

use poem::http::{Method, StatusCode};
use rstest_reuse::apply;

use crate::helpers::both_backends;

use serde_json::{Value, json};

use crate::helpers::{Backend, User, id_of, ids, send};
use crate::spawn_or_skip;

/// A query value percent-encoded as UTF-8 (`%` as `%25`, space as `%20`).
fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `GET /tasks?{query}`, asserting a 200; returns the page.
async fn page(user: &User<'_>, query: &str) -> Value {
    assert!(!query.starts_with('?'), "`{query}`: the `?` is added here");
    let reply = user.get(&format!("/tasks?{query}")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "GET /tasks?{query}: {}",
        reply.body
    );
    reply.body
}

/// The ids listed by `GET /tasks?{query}`, in order, and the page's `total`.
async fn listed(user: &User<'_>, query: &str) -> (Vec<i64>, u64) {
    let body = page(user, query).await;
    let total = body["total"].as_u64().expect("total");
    (ids(&body["items"]), total)
}

/// The ids of a page's items, in order.
fn ids_of_page(page: &Value) -> Vec<i64> {
    ids(&page["items"])
}

/// Reversed copy, for descending orders.
fn rev(ids: &[i64]) -> Vec<i64> {
    ids.iter().rev().copied().collect()
}

// ---------------------------------------------------------------- filters

#[apply(both_backends)]
#[tokio::test]
async fn status_filter_lists_all_pending_or_completed_tasks(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["a", "b", "c", "d"]).await;
    for id in [ids[1], ids[3]] {
        assert_eq!(alice.toggle(id).await.status, StatusCode::OK);
    }
    let asc = "sort=created_at&order=asc";

    assert_eq!(
        listed(&alice, asc).await,
        (ids.clone(), 4),
        "default is all"
    );
    assert_eq!(
        listed(&alice, &format!("status=all&{asc}")).await,
        (ids.clone(), 4)
    );
    assert_eq!(
        listed(&alice, &format!("status=pending&{asc}")).await,
        (vec![ids[0], ids[2]], 2)
    );
    assert_eq!(
        listed(&alice, &format!("status=completed&{asc}")).await,
        (vec![ids[1], ids[3]], 2)
    );

    // Reopening moves a task back.
    alice.toggle(ids[1]).await.assert_success();
    assert_eq!(
        listed(&alice, &format!("status=pending&{asc}")).await,
        (vec![ids[0], ids[1], ids[2]], 3)
    );
    assert_eq!(
        listed(&alice, &format!("status=completed&{asc}")).await,
        (vec![ids[3]], 1)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn priority_filter_lists_only_tasks_of_that_priority(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let low = id_of(&alice.create(json!({"title": "l", "priority": "low"})).await);
    let default = id_of(&alice.create(json!({"title": "m"})).await);
    let high1 = id_of(
        &alice
            .create(json!({"title": "h1", "priority": "high"}))
            .await,
    );
    let medium = id_of(
        &alice
            .create(json!({"title": "m2", "priority": "medium"}))
            .await,
    );
    let high2 = id_of(
        &alice
            .create(json!({"title": "h2", "priority": "high"}))
            .await,
    );
    let asc = "sort=created_at&order=asc";

    assert_eq!(
        listed(&alice, &format!("priority=high&{asc}")).await,
        (vec![high1, high2], 2)
    );
    assert_eq!(
        listed(&alice, &format!("priority=medium&{asc}")).await,
        (vec![default, medium], 2),
        "medium includes tasks created without a priority"
    );
    assert_eq!(
        listed(&alice, &format!("priority=low&{asc}")).await,
        (vec![low], 1)
    );

    // A changed priority is filtered by its new value.
    alice
        .patch(&format!("/tasks/{low}"), json!({"priority": "high"}))
        .await
        .assert_success();
    assert_eq!(
        listed(&alice, &format!("priority=high&{asc}")).await,
        (vec![low, high1, high2], 3)
    );
    assert_eq!(
        listed(&alice, &format!("priority=low&{asc}")).await,
        (vec![], 0)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn tag_filter_matches_the_trimmed_lower_cased_tag(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let work = id_of(
        &alice
            .create(json!({"title": "a", "tags": ["work", "q4"]}))
            .await,
    );
    let home = id_of(&alice.create(json!({"title": "b", "tags": ["home"]})).await);
    let work_too = id_of(
        &alice
            .create(json!({"title": "c", "tags": [" Work "]}))
            .await,
    );
    let untagged = id_of(&alice.create(json!({"title": "d"})).await);
    let asc = "sort=created_at&order=asc";

    for tag in ["work", "%20Work%20", "WORK", "Work"] {
        assert_eq!(
            listed(&alice, &format!("tag={tag}&{asc}")).await,
            (vec![work, work_too], 2),
            "tag={tag}"
        );
    }
    assert_eq!(
        listed(&alice, &format!("tag=home&{asc}")).await,
        (vec![home], 1)
    );
    assert_eq!(
        listed(&alice, &format!("tag=q4&{asc}")).await,
        (vec![work], 1)
    );
    assert_eq!(
        listed(&alice, &format!("tag=wor&{asc}")).await,
        (vec![], 0),
        "a tag matches whole, not as a prefix"
    );
    assert_eq!(
        listed(&alice, &format!("tag=nothing&{asc}")).await,
        (vec![], 0)
    );

    // Retagging a task moves it between tag filters.
    alice
        .patch(&format!("/tasks/{untagged}"), json!({"tags": ["WORK"]}))
        .await
        .assert_success();
    alice
        .patch(&format!("/tasks/{work}"), json!({"tags": ["q4"]}))
        .await
        .assert_success();
    assert_eq!(
        listed(&alice, &format!("tag=work&{asc}")).await,
        (vec![work_too, untagged], 2)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn q_matches_title_or_description_case_insensitively(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let in_title = id_of(&alice.create(json!({"title": "Write Report"})).await);
    let in_description = id_of(
        &alice
            .create(json!({"title": "Groceries", "description": "print the REPORT first"}))
            .await,
    );
    let elsewhere = id_of(
        &alice
            .create(json!({"title": "Other", "description": "nothing here"}))
            .await,
    );
    let asc = "sort=created_at&order=asc";

    for q in ["report", "REPORT", "RePoRt", "port", "e%20rep"] {
        assert_eq!(
            listed(&alice, &format!("q={q}&{asc}")).await,
            (vec![in_title, in_description], 2),
            "q={q}"
        );
    }
    assert_eq!(
        listed(&alice, &format!("q=GROCER&{asc}")).await,
        (vec![in_description], 1)
    );
    assert_eq!(
        listed(&alice, &format!("q=here&{asc}")).await,
        (vec![elsewhere], 1),
        "a match in the description alone is enough"
    );
    assert_eq!(
        listed(&alice, &format!("q=missing&{asc}")).await,
        (vec![], 0)
    );

    // The search follows edits of title and description.
    alice
        .patch(
            &format!("/tasks/{elsewhere}"),
            json!({"title": "Report card", "description": null}),
        )
        .await
        .assert_success();
    alice
        .patch(
            &format!("/tasks/{in_description}"),
            json!({"description": null}),
        )
        .await
        .assert_success();
    assert_eq!(
        listed(&alice, &format!("q=report&{asc}")).await,
        (vec![in_title, elsewhere], 2)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn q_is_unicode_aware(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let brulee = id_of(&alice.create(json!({"title": "CRÈME BRÛLÉE"})).await);
    let russian = id_of(
        &alice
            .create(json!({"title": "Letter", "description": "ПРИВЕТ, Мир"}))
            .await,
    );
    let _tatin = alice.create_titled(&["Tarte Tatin"]).await;
    let asc = "sort=created_at&order=asc";

    for q in ["brûlée", "BRÛLÉE", "Brûlée", "crème brû", "è"] {
        assert_eq!(
            listed(&alice, &format!("q={}&{asc}", enc(q))).await,
            (vec![brulee], 1),
            "q={q}"
        );
    }
    for q in ["привет", "МИР", "привет, мир"] {
        assert_eq!(
            listed(&alice, &format!("q={}&{asc}", enc(q))).await,
            (vec![russian], 1),
            "q={q}"
        );
    }

    // Full case folding and compatibility forms, not just lower case.
    let greek = id_of(&alice.create(json!({"title": "ΟΔΟΣ"})).await);
    let ligature = id_of(&alice.create(json!({"title": "ﬁnance review"})).await);
    let turkish = id_of(&alice.create(json!({"title": "İstanbul trip"})).await);
    let german = id_of(&alice.create(json!({"title": "Straße"})).await);
    for (q, expected) in [
        ("σ", greek),
        ("οδος", greek),
        ("fi", ligature),
        ("FINANCE", ligature),
        ("istanbul", turkish),
        ("İSTANBUL", turkish),
        ("strasse", german),
        ("STRASSE", german),
    ] {
        assert_eq!(
            listed(&alice, &format!("q={}&{asc}", enc(q))).await,
            (vec![expected], 1),
            "q={q}"
        );
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn the_search_key_migration_recomputes_stored_keys_both_ways(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = id_of(
        &alice
            .create(json!({"title": "ΟΔΟΣ", "description": "ﬁnance"}))
            .await,
    );
    // Back to before the search-key migration.
    app.migrate_down_to_before("m20261203_000003_recompute_search_keys");
    // Read as the columns of that time: later ones (`version`) are gone.
    let search_keys = || async {
        use entity::task::{Column, Entity};
        use sea_orm::{EntityTrait, QueryFilter, QuerySelect, prelude::*};
        Entity::find()
            .select_only()
            .columns([Column::TitleSearch, Column::DescriptionSearch])
            .filter(Column::Id.eq(id))
            .into_tuple::<(String, Option<String>)>()
            .one(&app.db)
            .await
            .unwrap()
            .unwrap()
    };
    let (title_search, description_search) = search_keys().await;
    assert_eq!(
        (title_search.as_str(), description_search.as_deref()),
        ("οδος", Some("ﬁnance")),
        "down: the previous release's lower-cased keys"
    );
    app.migrate(&["up"]);
    let stored = app.stored_task(id).await.unwrap();
    assert_eq!(
        (
            stored.title_search.as_str(),
            stored.description_search.as_deref()
        ),
        ("οδοσ", Some("finance"))
    );
    assert_eq!(listed(&alice, "q=%CF%83").await, (vec![id], 1));
    // Long enough for SQLite's trigram index, built on the way up from the
    // existing task's keys.
    assert_eq!(
        listed(&alice, &format!("q={}", enc("ΟΔΟΣ"))).await,
        (vec![id], 1)
    );
    assert_eq!(listed(&alice, "q=FINANCE").await, (vec![id], 1));
    // The task counts, created on the way up, counted the existing task.
    assert_eq!(listed(&alice, "").await, (vec![id], 1));
    assert_eq!(listed(&alice, "status=pending").await, (vec![id], 1));
    let past_the_end = page(&alice, "offset=5").await;
    assert_eq!(past_the_end["total"], 1);
}

#[apply(both_backends)]
#[tokio::test]
async fn q_matches_percent_underscore_and_backslash_literally(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice
        .create_titled(&[
            "50% off",
            "500 off",
            "a_b",
            "axb",
            r"back\slash",
            "backslash",
        ])
        .await;
    let [
        percent,
        no_percent,
        underscore,
        no_underscore,
        backslash,
        no_backslash,
    ] = ids[..]
    else {
        unreachable!()
    };
    let asc = "sort=created_at&order=asc";

    let cases: [(&str, Vec<i64>); 8] = [
        ("50%", vec![percent]),
        ("%", vec![percent]),
        ("0% o", vec![percent]),
        ("a_b", vec![underscore]),
        ("_", vec![underscore]),
        (r"\", vec![backslash]),
        (r"k\s", vec![backslash]),
        ("off", vec![percent, no_percent]),
    ];
    for (q, expected) in cases {
        let total = expected.len() as u64;
        assert_eq!(
            listed(&alice, &format!("q={}&{asc}", enc(q))).await,
            (expected, total),
            "q={q}"
        );
    }
    assert_eq!(
        listed(&alice, &format!("q=axb&{asc}")).await,
        (vec![no_underscore], 1)
    );
    assert_eq!(
        listed(&alice, &format!("q=backslash&{asc}")).await,
        (vec![no_backslash], 1)
    );
    assert_eq!(
        listed(&alice, &format!("q={}&{asc}", enc("5%0"))).await,
        (vec![], 0),
        "`%` is not a wildcard"
    );
}

/// Quotes, backslashes and control characters in `q` are text to find, on
/// PostgreSQL too, where the pattern is written into the statement.
#[apply(both_backends)]
#[tokio::test]
async fn q_with_quotes_and_control_characters_finds_exactly_that_text(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let titles = [
        "it's done",
        "its done",
        "say \"hi\"",
        "tab\there",
        "sub\u{1a}z",
        "subzz",
        "back\\'; DROP TABLE tasks; --",
    ];
    let ids = alice.create_titled(&titles).await;
    let asc = "sort=created_at&order=asc";
    for (id, title) in ids.iter().zip(titles) {
        assert_eq!(
            listed(&alice, &format!("q={}&{asc}", enc(title))).await,
            (vec![*id], 1),
            "q={title:?}"
        );
    }
    assert_eq!(
        listed(&alice, &format!("q={}&{asc}", enc("\u{1a}"))).await,
        (vec![ids[4]], 1),
        "U+001A is not z"
    );
    assert_eq!(
        listed(&alice, &format!("q={}&{asc}", enc("'"))).await,
        (vec![ids[0], ids[6]], 2)
    );
    assert_eq!(alice.all_tasks().await.len(), titles.len());
}

#[apply(both_backends)]
#[tokio::test]
async fn a_search_follows_edits_and_deletes_and_stays_within_the_user(
    backend: Backend,
    // Another user's tasks holding the searched words: with more than this
    // many, SQLite searches the user's rows instead of its trigram index.
    #[values(0, todo_api::tasks::SEARCH_INDEX_MAX_MATCHES + 1)] others: u64,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let carol = app.user("carol");
    let report = json!({"title": "Quarterly report", "description": "draft for the board"});
    let id = id_of(&alice.create(report.clone()).await);
    let bobs = id_of(&bob.create(report).await);
    assert_eq!(carol.get("/tasks").await.status, StatusCode::OK);
    app.insert_filler_tasks(
        "carol",
        others,
        "quarterly report, annual summary for the board",
    )
    .await;
    assert_eq!(found(&carol, "summary").await.1, others);
    async fn found(user: &User<'_>, text: &str) -> (Vec<i64>, u64) {
        listed(user, &format!("q={}", enc(text))).await
    }
    assert_eq!(found(&alice, "report").await, (vec![id], 1));
    assert_eq!(found(&alice, "BOARD").await, (vec![id], 1));

    let renamed = alice
        .patch(&format!("/tasks/{id}"), json!({"title": "Annual summary"}))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(found(&alice, "report").await, (vec![], 0));
    assert_eq!(found(&alice, "summary").await, (vec![id], 1));
    assert_eq!(found(&alice, "board").await, (vec![id], 1));

    let cleared = alice
        .patch(&format!("/tasks/{id}"), json!({"description": null}))
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert_eq!(found(&alice, "board").await, (vec![], 0));

    let deleted = alice.delete(&format!("/tasks/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(found(&alice, "summary").await, (vec![], 0));
    // Bob's copy was never touched and is found by its original text.
    assert_eq!(found(&bob, "report").await, (vec![bobs], 1));
    assert_eq!(found(&bob, "board").await, (vec![bobs], 1));
}

#[apply(both_backends)]
#[tokio::test]
async fn a_search_total_is_exact_on_every_page_and_past_the_end(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice
        .create_titled(&["alpha 1", "alpha 2", "beta", "alpha 3"])
        .await;
    let alphas = [ids[0], ids[1], ids[3]];
    let asc = "q=alpha&sort=created_at&order=asc";
    for (query, expected) in [
        ("limit=3", &alphas[..]),
        ("limit=4", &alphas[..]),
        ("limit=2", &alphas[..2]),
        ("limit=2&offset=2", &alphas[2..]),
        ("limit=1&offset=2", &alphas[2..]),
        ("limit=2&offset=3", &[]),
        ("limit=2&offset=50", &[]),
    ] {
        assert_eq!(
            listed(&alice, &format!("{asc}&{query}")).await,
            (expected.to_vec(), 3),
            "{query}"
        );
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn due_before_is_strict_due_after_is_inclusive_and_both_skip_undated_tasks(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let due = |title: &str, at: Option<&str>| json!({"title": title, "due_date": at});
    let dec1 = id_of(
        &alice
            .create(due("dec1", Some("2026-12-01T10:00:00Z")))
            .await,
    );
    let undated = id_of(&alice.create(due("undated", None)).await);
    // Stored as 2026-12-02T10:00:00Z.
    let dec2 = id_of(
        &alice
            .create(due("dec2", Some("2026-12-02T12:00:00+02:00")))
            .await,
    );
    let dec3 = id_of(
        &alice
            .create(due("dec3", Some("2026-12-03T10:00:00Z")))
            .await,
    );
    let dec4 = id_of(
        &alice
            .create(due("dec4", Some("2026-12-04T10:00:00.25Z")))
            .await,
    );
    let asc = "sort=created_at&order=asc";

    let cases: [(&str, Vec<i64>); 14] = [
        ("due_before=2026-12-02T10:00:00Z", vec![dec1]),
        ("due_before=2026-12-02T10:00:00.000001Z", vec![dec1, dec2]),
        ("due_after=2026-12-02T10:00:00Z", vec![dec2, dec3, dec4]),
        ("due_after=2026-12-02T10:00:00.000001Z", vec![dec3, dec4]),
        // The same instants written with an offset (`+` sent as `%2B`).
        ("due_before=2026-12-02T12:00:00%2B02:00", vec![dec1]),
        (
            "due_after=2026-12-02T05:00:00-05:00",
            vec![dec2, dec3, dec4],
        ),
        // Fractional seconds count.
        ("due_after=2026-12-04T10:00:00.25Z", vec![dec4]),
        ("due_after=2026-12-04T10:00:00.250001Z", vec![]),
        ("due_before=2026-12-04T10:00:00.25Z", vec![dec1, dec2, dec3]),
        // Both: a half-open range [after, before).
        (
            "due_after=2026-12-01T10:00:00Z&due_before=2026-12-03T10:00:00Z",
            vec![dec1, dec2],
        ),
        (
            "due_after=2026-12-03T10:00:00Z&due_before=2026-12-03T10:00:00Z",
            vec![],
        ),
        // Undated tasks are never in a date range, however wide.
        (
            "due_before=9999-12-31T23:59:59Z",
            vec![dec1, dec2, dec3, dec4],
        ),
        (
            "due_after=1970-01-01T00:00:00Z",
            vec![dec1, dec2, dec3, dec4],
        ),
        ("due_before=1970-01-01T00:00:00Z", vec![]),
    ];
    for (query, expected) in cases {
        let total = expected.len() as u64;
        assert_eq!(
            listed(&alice, &format!("{query}&{asc}")).await,
            (expected, total),
            "{query}"
        );
    }
    assert_eq!(
        listed(&alice, asc).await,
        (vec![dec1, undated, dec2, dec3, dec4], 5),
        "without a date filter undated tasks are listed"
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn combined_filters_list_only_tasks_matching_all_of_them(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let base = json!({
        "title": "Quarterly report",
        "priority": "high",
        "tags": ["work"],
        "due_date": "2026-12-02T10:00:00Z",
    });
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let matching1 = id_of(&alice.create(base.clone()).await);
    // Each of these fails exactly one filter.
    let completed = id_of(&alice.create(with("title", json!("Report (done)"))).await);
    alice.toggle(completed).await.assert_success();
    alice.create(with("priority", json!("medium"))).await;
    alice.create(with("tags", json!(["home"]))).await;
    alice.create(with("title", json!("Budget"))).await;
    alice
        .create(with("due_date", json!("2026-12-10T10:00:00Z")))
        .await;
    alice.create(with("due_date", json!(null))).await;
    let matching2 = id_of(
        &alice
            .create(with("description", json!("needs the REPORT template")))
            .await,
    );
    let query = "status=pending&priority=high&tag=Work&q=report\
                 &due_after=2026-12-01T00:00:00Z&due_before=2026-12-05T00:00:00Z";

    assert_eq!(
        listed(&alice, &format!("{query}&sort=created_at&order=asc")).await,
        (vec![matching1, matching2], 2)
    );
    assert_eq!(
        listed(&alice, &format!("{query}&sort=created_at&order=desc")).await,
        (vec![matching2, matching1], 2)
    );
    assert_eq!(
        listed(&alice, "status=completed&priority=high&tag=work&q=report").await,
        (vec![completed], 1)
    );
    assert_eq!(
        listed(&alice, "status=completed&priority=low").await,
        (vec![], 0)
    );
}

// ---------------------------------------------------------------- sorting

#[apply(both_backends)]
#[tokio::test]
async fn sorting_by_created_at_lists_newest_first_by_default_and_oldest_first_ascending(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["one", "two", "three", "four"]).await;
    // Updating the oldest does not move it in creation order.
    alice
        .patch(&format!("/tasks/{}", ids[0]), json!({"title": "one!"}))
        .await
        .assert_success();

    assert_eq!(listed(&alice, "").await, (rev(&ids), 4));
    assert_eq!(listed(&alice, "sort=created_at").await, (rev(&ids), 4));
    assert_eq!(listed(&alice, "order=desc").await, (rev(&ids), 4));
    assert_eq!(
        listed(&alice, "sort=created_at&order=desc").await,
        (rev(&ids), 4)
    );
    assert_eq!(listed(&alice, "order=asc").await, (ids.clone(), 4));
    assert_eq!(
        listed(&alice, "sort=created_at&order=asc").await,
        (ids.clone(), 4)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn sorting_by_updated_at_follows_the_order_of_the_last_changes(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["a", "b", "c", "d"]).await;
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    // Changed in this order, by PATCH, PUT and toggle.
    alice
        .patch(&format!("/tasks/{c}"), json!({"priority": "high"}))
        .await
        .assert_success();
    alice
        .put(&format!("/tasks/{a}"), json!({"title": "A"}))
        .await
        .assert_success();
    alice.toggle(d).await.assert_success();
    alice
        .patch(&format!("/tasks/{b}"), json!({"tags": ["x"]}))
        .await
        .assert_success();
    let expected = vec![c, a, d, b];

    assert_eq!(
        listed(&alice, "sort=updated_at&order=asc").await,
        (expected.clone(), 4)
    );
    assert_eq!(
        listed(&alice, "sort=updated_at&order=desc").await,
        (rev(&expected), 4)
    );
    assert_eq!(
        listed(&alice, "sort=updated_at").await,
        (rev(&expected), 4),
        "descending by default"
    );

    // Touching `a` again makes it the most recently updated.
    alice.toggle(a).await.assert_success();
    assert_eq!(
        listed(&alice, "sort=updated_at&order=asc").await,
        (vec![c, d, b, a], 4)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn sorting_by_title_ignores_case_and_breaks_ties_by_id(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice
        .create_titled(&["cherry", "apple", "Banana", "APPLE", "banana split"])
        .await;
    let (cherry, apple, banana, apple_upper, split) = (ids[0], ids[1], ids[2], ids[3], ids[4]);

    let asc = vec![apple, apple_upper, banana, split, cherry];
    assert_eq!(
        listed(&alice, "sort=title&order=asc").await,
        (asc.clone(), 5)
    );
    assert_eq!(
        listed(&alice, "sort=title&order=desc").await,
        (rev(&asc), 5)
    );
    assert_eq!(listed(&alice, "sort=title").await, (rev(&asc), 5));

    let titles: Vec<Value> = page(&alice, "sort=title&order=asc").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["title"].clone())
        .collect();
    assert_eq!(
        titles,
        ["apple", "APPLE", "Banana", "banana split", "cherry"],
        "titles are listed as written"
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn sorting_by_due_date_lists_undated_tasks_last_in_both_directions(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let due = |at: Option<&str>| json!({"title": "t", "due_date": at});
    let undated1 = id_of(&alice.create(due(None)).await);
    let dec2 = id_of(&alice.create(due(Some("2026-12-02T10:00:00Z"))).await);
    let dec1 = id_of(&alice.create(due(Some("2026-12-01T10:00:00Z"))).await);
    let undated2 = id_of(&alice.create(due(None)).await);
    let dec3 = id_of(&alice.create(due(Some("2026-12-03T10:00:00Z"))).await);
    // Same instant as `dec2`, written with an offset.
    let dec2_too = id_of(&alice.create(due(Some("2026-12-02T11:00:00+01:00"))).await);
    // Half a second after `dec3`.
    let dec3_later = id_of(&alice.create(due(Some("2026-12-03T10:00:00.5Z"))).await);

    assert_eq!(
        listed(&alice, "sort=due_date&order=asc").await,
        (
            vec![dec1, dec2, dec2_too, dec3, dec3_later, undated1, undated2],
            7
        )
    );
    assert_eq!(
        listed(&alice, "sort=due_date&order=desc").await,
        (
            vec![dec3_later, dec3, dec2_too, dec2, dec1, undated2, undated1],
            7
        )
    );
    assert_eq!(
        listed(&alice, "sort=due_date").await,
        (
            vec![dec3_later, dec3, dec2_too, dec2, dec1, undated2, undated1],
            7
        ),
        "descending by default"
    );
    // Undated tasks are last on the last page too.
    assert_eq!(
        listed(&alice, "sort=due_date&order=desc&limit=3&offset=4").await,
        (vec![dec1, undated2, undated1], 7)
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn sorting_by_priority_ranks_low_medium_high_and_breaks_ties_by_id_in_the_same_direction(
    backend: Backend,
) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let mut created = Vec::new();
    for priority in [
        "medium", "high", "low", "medium", "high", "low", "medium", "low",
    ] {
        created.push(id_of(
            &alice
                .create(json!({"title": "t", "priority": priority}))
                .await,
        ));
    }
    let [m1, h1, l1, m2, h2, l2, m3, l3] = created[..] else {
        unreachable!()
    };
    let asc = vec![l1, l2, l3, m1, m2, m3, h1, h2];

    assert_eq!(
        listed(&alice, "sort=priority&order=asc").await,
        (asc.clone(), 8)
    );
    assert_eq!(
        listed(&alice, "sort=priority&order=desc").await,
        (rev(&asc), 8)
    );
    assert_eq!(listed(&alice, "sort=priority").await, (rev(&asc), 8));
}

// ------------------------------------------------------------- pagination

#[apply(both_backends)]
#[tokio::test]
async fn a_page_reports_items_total_limit_and_offset_defaulting_to_20_and_0(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let titles: Vec<String> = (1..=25).map(|n| format!("task {n}")).collect();
    let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
    let ids = alice.create_titled(&titles).await;
    let newest_first = rev(&ids);

    let first = page(&alice, "").await;
    let mut keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["items", "limit", "offset", "total"]);
    assert_eq!(first["total"], 25, "total counts all matches, not the page");
    assert_eq!(first["limit"], 20);
    assert_eq!(first["offset"], 0);
    assert_eq!(ids_of_page(&first), newest_first[..20]);

    let second = page(&alice, "offset=20").await;
    assert_eq!(second["total"], 25);
    assert_eq!(second["limit"], 20);
    assert_eq!(second["offset"], 20);
    assert_eq!(ids_of_page(&second), newest_first[20..]);

    let middle = page(&alice, "limit=5&offset=10&order=asc").await;
    assert_eq!(middle["total"], 25);
    assert_eq!(middle["limit"], 5);
    assert_eq!(middle["offset"], 10);
    assert_eq!(ids_of_page(&middle), ids[10..15]);

    let filtered = page(&alice, &format!("q={}&limit=2", enc("task 1"))).await;
    // "task 1" and "task 10" ..= "task 19".
    assert_eq!(filtered["total"], 11, "total counts the filtered matches");
    assert_eq!(filtered["limit"], 2);
    assert_eq!(ids_of_page(&filtered), [ids[18], ids[17]]);
}

#[apply(both_backends)]
#[tokio::test]
async fn listed_items_are_the_full_tasks_as_a_get_returns_them(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let full = alice
        .create(json!({
            "title": "Write report",
            "description": "Quarterly numbers",
            "priority": "high",
            "due_date": "2026-12-01T17:00:00.123456Z",
            "tags": ["work", "q4"],
        }))
        .await;
    let bare = alice.create(json!({"title": "Bare"})).await;
    let done = id_of(&alice.create(json!({"title": "Done", "tags": ["x"]})).await);
    let done = alice.toggle(done).await.body;

    let listed = page(&alice, "order=asc").await;
    assert_eq!(listed["items"], json!([full, bare, done]));
    for task in listed["items"].as_array().unwrap() {
        let fetched = alice.get(&format!("/tasks/{}", id_of(task))).await;
        assert_eq!(&fetched.body, task);
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn walking_pages_of_three_sees_every_task_exactly_once(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let titles: Vec<String> = (0..10).map(|n| format!("task {n}")).collect();
    let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
    let ids = alice.create_titled(&titles).await;

    for (order, expected) in [("desc", rev(&ids)), ("asc", ids.clone())] {
        let mut seen = Vec::new();
        for (offset, size) in [(0, 3), (3, 3), (6, 3), (9, 1)] {
            let body = page(&alice, &format!("limit=3&offset={offset}&order={order}")).await;
            assert_eq!(body["total"], 10);
            assert_eq!(body["limit"], 3);
            assert_eq!(body["offset"], offset);
            let items = ids_of_page(&body);
            assert_eq!(items.len(), size, "page at offset {offset}");
            seen.extend(items);
        }
        assert_eq!(seen, expected, "order={order}");
        let after = page(&alice, &format!("limit=3&offset=12&order={order}")).await;
        assert_eq!(after["items"], json!([]));
        assert_eq!(after["total"], 10);
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn walking_pages_under_a_filter_sees_every_matching_task_exactly_once(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    // 13 tasks, 3 of them completed; priorities cycle so the sort has ties.
    let priorities = ["low", "medium", "high"];
    let mut pending = Vec::new();
    for n in 0..13 {
        let task = alice
            .create(json!({"title": format!("task {n}"), "priority": priorities[n % 3]}))
            .await;
        if n % 4 == 1 {
            alice.toggle(id_of(&task)).await.assert_success();
        } else {
            pending.push((n % 3, id_of(&task)));
        }
    }
    assert_eq!(pending.len(), 10);
    pending.sort();
    let expected: Vec<i64> = pending.iter().map(|(_, id)| *id).collect();

    for (order, expected) in [("asc", expected.clone()), ("desc", rev(&expected))] {
        let mut seen = Vec::new();
        for offset in [0, 3, 6, 9] {
            let body = page(
                &alice,
                &format!("status=pending&sort=priority&order={order}&limit=3&offset={offset}"),
            )
            .await;
            assert_eq!(body["total"], 10, "total counts the pending tasks only");
            assert_eq!(body["limit"], 3);
            assert_eq!(body["offset"], offset);
            seen.extend(ids_of_page(&body));
        }
        assert_eq!(seen, expected, "order={order}");
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn an_offset_past_the_end_gives_no_items_and_the_full_total(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["a", "b", "c"]).await;

    let last = page(&alice, "offset=2").await;
    assert_eq!(ids_of_page(&last), [ids[0]]);
    assert_eq!(last["total"], 3);

    for offset in ["3", "100", "9007199254740991"] {
        let body = page(&alice, &format!("offset={offset}")).await;
        assert_eq!(
            body,
            json!({"items": [], "total": 3, "limit": 20,
                   "offset": offset.parse::<u64>().unwrap()}),
            "offset={offset}"
        );
    }
    let filtered = page(&alice, "status=pending&offset=5&limit=2").await;
    assert_eq!(
        filtered,
        json!({"items": [], "total": 3, "limit": 2, "offset": 5})
    );

    // A user with no tasks gets an empty first page.
    let empty = page(&app.user("bob"), "").await;
    assert_eq!(
        empty,
        json!({"items": [], "total": 0, "limit": 20, "offset": 0})
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn limits_of_1_and_100_are_accepted(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let ids = alice.create_titled(&["a", "b", "c"]).await;

    let one = page(&alice, "limit=1").await;
    assert_eq!(
        one,
        json!({"items": [one["items"][0].clone()], "total": 3, "limit": 1, "offset": 0})
    );
    assert_eq!(ids_of_page(&one), [ids[2]]);

    let hundred = page(&alice, "limit=100").await;
    assert_eq!(hundred["limit"], 100);
    assert_eq!(hundred["total"], 3);
    assert_eq!(ids_of_page(&hundred), rev(&ids));
}

// ------------------------------------------------------- invalid queries

#[apply(both_backends)]
#[tokio::test]
async fn invalid_query_values_are_422_problems_naming_the_field(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    alice.create_titled(&["a"]).await;

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("status=bogus", "status"),
        ("status=PENDING", "status"),
        ("sort=bogus", "sort"),
        ("sort=id", "sort"),
        ("order=up", "order"),
        ("priority=urgent", "priority"),
        ("due_before=tomorrow", "due_before"),
        ("due_before=2026-12-01", "due_before"),
        ("due_after=tomorrow", "due_after"),
        ("due_after=2026-13-01T00:00:00Z", "due_after"),
        ("tag=a%00b", "tag"),
        (&format!("tag={}", "x".repeat(51)), "tag"),
        ("q=%00", "q"),
        ("status=pending&limit=0", "limit"),
    ] {
        let reply = alice.get(&format!("/tasks?{query}")).await;
        assert_eq!(reply.invalid_fields(), [field], "{query}: {}", reply.body);
        // Said for people: no framework type names or regular expressions.
        let message = reply.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with("must "), "{query}: {message}");
        assert!(
            !message.contains('\\') && !message.contains("parse"),
            "{query}: {message}"
        );
    }
}

// -------------------------------------------------------------- isolation

#[apply(both_backends)]
#[tokio::test]
async fn the_list_shows_only_the_callers_own_tasks(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let task = json!({"title": "Shared report", "priority": "high", "tags": ["work"],
                      "due_date": "2026-12-01T10:00:00Z"});
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for _ in 0..3 {
        alices.push(id_of(&alice.create(task.clone()).await));
        bobs.push(id_of(&bob.create(task.clone()).await));
    }
    alices.push(id_of(&alice.create(task.clone()).await));
    bob.toggle(bobs[0]).await.assert_success();

    for query in [
        "",
        "tag=work",
        "q=report",
        "priority=high",
        "sort=priority",
        "sort=due_date",
        "due_before=2027-01-01T00:00:00Z",
    ] {
        assert_eq!(
            listed(&alice, query).await,
            (rev(&alices), 4),
            "alice: {query}"
        );
        assert_eq!(listed(&bob, query).await, (rev(&bobs), 3), "bob: {query}");
    }
    assert_eq!(listed(&alice, "status=completed").await, (vec![], 0));
    assert_eq!(listed(&bob, "status=completed").await, (vec![bobs[0]], 1));
    assert_eq!(
        listed(&app.user("carol"), "tag=work").await,
        (vec![], 0),
        "a tag of other users is no tag of yours"
    );

    let reply = send(alice.request_as(Method::GET, "bob", "/tasks")).await;
    reply.problem(StatusCode::FORBIDDEN);
    assert!(reply.body.get("items").is_none());
}

#[apply(both_backends)]
#[tokio::test]
async fn empty_tag_and_q_filter_nothing(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let untagged = id_of(&alice.create(json!({"title": "untagged"})).await);
    let tagged = id_of(
        &alice
            .create(json!({"title": "tagged", "tags": ["work"]}))
            .await,
    );

    for query in ["tag=", "q=", "tag=&q=", "tag=%20%20"] {
        let (ids, total) = listed(&alice, query).await;
        assert_eq!(ids, [tagged, untagged], "{query}");
        assert_eq!(total, 2, "{query}");
    }
}

/// Counts the statements the app sends to the database (`todo_api::db`
/// events) while a future runs.
#[derive(Clone, Default)]
struct QueryCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QueryCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "todo_api::db" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

async fn queries_for_one_page(user: &User<'_>, query: &str) -> usize {
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::layer::SubscriberExt;
    let counter = QueryCounter::default();
    let subscriber = tracing_subscriber::registry().with(counter.clone());
    let body = page(user, query).with_subscriber(subscriber).await;
    assert!(body["items"].is_array());

    counter.0.load(std::sync::atomic::Ordering::SeqCst)
}

#[apply(both_backends)]
#[tokio::test]
async fn a_page_is_one_statement_whatever_its_size(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    alice
        .create(json!({"title": "first", "tags": ["a", "b"]}))
        .await;
    page(&alice, "").await;

    let one_task = queries_for_one_page(&alice, "limit=100").await;
    for n in 0..99 {
        alice
            .create(json!({"title": format!("task {n}"), "tags": ["a", format!("t{n}")]}))
            .await;
    }
    let hundred_tasks = queries_for_one_page(&alice, "limit=100").await;
    let filtered = queries_for_one_page(&alice, "limit=100&tag=t5&sort=priority").await;
    let filtered_full_page = queries_for_one_page(&alice, "limit=10&tag=a&sort=priority").await;
    let searched = queries_for_one_page(&alice, "limit=100&tag=a&q=task").await;
    // The 99 matches fill the page exactly: it is still the last one.
    let searched_exactly = queries_for_one_page(&alice, "limit=99&tag=a&q=task").await;

    assert!(one_task > 0, "the counter sees the app's queries");
    assert_eq!(hundred_tasks, one_task, "no query per task or per tag");
    assert_eq!(one_task, 1, "page, tags and total in one statement");
    // A page shorter than the limit is the last one: it tells the total.
    assert_eq!(filtered, 1);
    if backend == Backend::Postgres {
        assert_eq!(filtered_full_page, 1, "page and window count");
        assert_eq!(searched, 1, "a short page tells the total");
        assert_eq!(searched_exactly, 1);
    } else {
        // SQLite counts with a second statement (no round trip in process)
        // rather than a window count, and asks its trigram index how common
        // the text is to choose how to search.
        assert_eq!(filtered_full_page, 2, "page, then count");
        assert_eq!(searched, 2, "matches in the trigram index, then page");
        assert_eq!(searched_exactly, 2);
    }
}

/// The totals of lists filtered by status at most come from per-user counts
/// the database keeps on every write; they must equal a real count after any
/// mix of writes, concurrent ones and rows written around the API included,
/// and another user's writes must not move them.
#[apply(both_backends)]
#[tokio::test]
async fn status_only_totals_follow_every_kind_of_write(backend: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let bobs = id_of(&bob.create(json!({"title": "bob's"})).await);
    assert_eq!(bob.toggle(bobs).await.status, StatusCode::OK);

    let check = |label: &'static str| {
        let (alice, db) = (&alice, &app.db);
        async move {
            use entity::task::Column as C;
            let stored = |completed: Option<bool>| async move {
                let mut query = entity::task::Entity::find()
                    .filter(C::UserId.eq("alice"))
                    .filter(C::DeletedAt.is_null());
                if let Some(completed) = completed {
                    query = query.filter(C::Completed.eq(completed));
                }
                query.count(db).await.unwrap()
            };
            for (status, completed) in [
                ("all", None),
                ("pending", Some(false)),
                ("completed", Some(true)),
            ] {
                let counted = stored(completed).await;
                // The first page and a page past the end carry the total.
                for offset in [0, 10_000] {
                    let listed = page(alice, &format!("status={status}&offset={offset}")).await;
                    assert_eq!(
                        listed["total"], counted,
                        "{label}: status={status} offset={offset}"
                    );
                }
                // A filter the counts cannot answer is counted in the query.
                let searched = page(alice, &format!("status={status}&q=task")).await;
                assert_eq!(
                    searched["total"], counted,
                    "{label}: status={status}&q=task"
                );
            }
        }
    };

    check("no tasks yet").await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(id_of(
            &alice.create(json!({"title": format!("task {n}")})).await,
        ));
    }
    check("created").await;
    for id in [ids[0], ids[3]] {
        assert_eq!(alice.toggle(id).await.status, StatusCode::OK);
    }
    check("some completed").await;
    assert_eq!(alice.toggle(ids[1]).await.status, StatusCode::OK);
    assert_eq!(alice.toggle(ids[0]).await.status, StatusCode::OK);
    check("toggled both ways").await;
    let path = |id: i64| format!("/tasks/{id}");
    // Completing a completed task changes nothing.
    for _ in 0..2 {
        let completing = json!({"completed": true});
        assert_eq!(
            alice.patch(&path(ids[2]), completing).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        alice
            .patch(&path(ids[3]), json!({"title": "task 3 renamed"}))
            .await
            .status,
        StatusCode::OK
    );
    let replaced = json!({"title": "task 4 replaced", "completed": false});
    assert_eq!(
        alice.put(&path(ids[4]), replaced).await.status,
        StatusCode::OK
    );
    check("patched and replaced").await;
    assert_eq!(
        alice.delete(&path(ids[2])).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        alice.delete(&path(ids[5])).await.status,
        StatusCode::NO_CONTENT
    );
    check("deleted a completed and a pending task").await;
    let restored = send(alice.request(Method::POST, &format!("/trash/{}/restore", ids[2]))).await;
    assert_eq!(restored.status, StatusCode::OK);
    check("restored a completed task").await;
    assert_eq!(
        alice.delete(&format!("/trash/{}", ids[5])).await.status,
        StatusCode::NO_CONTENT
    );
    check("deleted a trashed task for good").await;
    assert_eq!(
        alice.delete(&path(ids[2])).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(alice.delete("/trash").await.status, StatusCode::NO_CONTENT);
    check("emptied the trash").await;

    let creates = (0..10).map(|n| {
        let alice = &alice;
        async move {
            let task = alice
                .create(json!({"title": format!("task concurrent {n}")}))
                .await;
            if n % 2 == 0 {
                assert_eq!(alice.toggle(id_of(&task)).await.status, StatusCode::OK);
            }
        }
    });
    let toggles = (0..10).map(|_| alice.toggle(ids[1]));
    let (created, toggled) = futures::join!(
        futures::future::join_all(creates),
        futures::future::join_all(toggles)
    );
    assert_eq!(created.len(), 10);
    assert!(toggled.iter().all(|reply| reply.status == StatusCode::OK));
    check("concurrent creates and toggles").await;

    // Rows written around the API (an import, a manual fix) are counted too.
    let backend_name = app.db.get_database_backend();
    let raw = match backend_name {
        sea_orm::DbBackend::Postgres => {
            "UPDATE tasks SET completed = NOT completed WHERE user_id = 'alice' AND title LIKE 'task concurrent%'"
        }
        _ => {
            "UPDATE tasks SET completed = 1 - completed WHERE user_id = 'alice' AND title LIKE 'task concurrent%'"
        }
    };
    sea_orm::ConnectionTrait::execute_unprepared(&app.db, raw)
        .await
        .unwrap();
    check("updated by SQL").await;

    let bobs = page(&bob, "status=completed").await;
    assert_eq!(bobs["total"], 1, "bob's count is his own");
}
