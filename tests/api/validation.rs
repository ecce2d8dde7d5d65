//! Validation of task bodies: every rule of the contract at and just past its
//! boundary, on POST, PUT and PATCH wherever the field applies. A rejected
//! write is a 422 naming each bad field once, and changes nothing.

use entity::{tag, task, user};
use poem::http::{Method, StatusCode};
use rstest_reuse::apply;

use crate::helpers::both_backends;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, User, id_of, send};
use crate::spawn_or_skip;

/// Code points of one, two, three and four UTF-8 bytes: lengths are counted
/// in code points, never in bytes.
const UNITS: [&str; 4] = ["a", "é", "日", "🦀"];

/// A task with every field set: the target of the PUTs and PATCHes below.
async fn seed(alice: &User<'_>) -> Value {
    alice
        .create(json!({
            "title": "Seed",
            "description": "seed text",
            "priority": "low",
            "due_date": "2026-12-01T17:00:00Z",
            "tags": ["keep", "seed"]
        }))
        .await
}

async fn task_count(app: &TestApp) -> u64 {
    task::Entity::find()
        .count(&app.db)
        .await
        .expect("count tasks")
}

async fn tag_count(app: &TestApp) -> u64 {
    tag::Entity::find()
        .count(&app.db)
        .await
        .expect("count tags")
}

fn path_of(method: &Method, seeded: &Value) -> String {
    if *method == Method::POST {
        "/tasks".to_owned()
    } else {
        format!("/tasks/{}", id_of(seeded))
    }
}

/// The body that sets `field` to `value` with `method`: POST and PUT need a
/// valid title besides the field under test.
fn body_setting(method: &Method, field: &str, value: &Value) -> Value {
    let mut body = serde_json::Map::new();
    if *method != Method::PATCH && field != "title" {
        body.insert("title".into(), json!("Valid title"));
    }
    body.insert(field.into(), value.clone());
    Value::Object(body)
}

/// Sends `body` with `method` and checks the answer is a 422 naming exactly
/// `fields` (each once, in any order), and that nothing changed: the seeded
/// task reads back as before and no task was added.
async fn assert_rejected_body(
    alice: &User<'_>,
    seeded: &Value,
    method: Method,
    body: &Value,
    fields: &[&str],
    case: &str,
) {
    let before = task_count(alice.app).await;
    let reply = send(
        alice
            .request(method.clone(), &path_of(&method, seeded))
            .body_json(body),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{case}: {method} {body} answered {}",
        reply.body
    );
    let mut named = reply.invalid_fields();
    named.sort();
    let mut expected: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(
        named, expected,
        "{case}: {method} {body} names the wrong fields: {}",
        reply.body
    );

    let after = alice.get(&format!("/tasks/{}", id_of(seeded))).await;
    assert_eq!(after.status, StatusCode::OK, "{case}: {}", after.body);
    assert_eq!(
        &after.body, seeded,
        "{case}: a rejected {method} left the task changed"
    );
    assert_eq!(
        task_count(alice.app).await,
        before,
        "{case}: a rejected {method} changed the number of tasks"
    );
}

/// `field` set to `value` is a 422 naming only `field` on POST (unless the
/// field is not part of a new task), PUT and PATCH.
async fn assert_rejected(alice: &User<'_>, seeded: &Value, field: &str, value: Value, case: &str) {
    let methods: &[Method] = if field == "completed" {
        &[Method::PUT, Method::PATCH]
    } else {
        &[Method::POST, Method::PUT, Method::PATCH]
    };
    for method in methods {
        let body = body_setting(method, field, &value);
        assert_rejected_body(alice, seeded, method.clone(), &body, &[field], case).await;
    }
}

/// `field` set to `value` is accepted by POST, PUT and PATCH; returns the
/// task each answered with, after checking it reads back the same.
async fn assert_accepted(
    alice: &User<'_>,
    seeded: &Value,
    field: &str,
    value: Value,
    case: &str,
) -> Vec<Value> {
    let mut tasks = Vec::new();
    for method in [Method::POST, Method::PUT, Method::PATCH] {
        let body = body_setting(&method, field, &value);
        let reply = send(
            alice
                .request(method.clone(), &path_of(&method, seeded))
                .body_json(&body),
        )
        .await;
        let expected = if method == Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        assert_eq!(
            reply.status, expected,
            "{case}: {method} {body} answered {}",
            reply.body
        );
        let read = alice.get(&format!("/tasks/{}", id_of(&reply.body))).await;
        assert_eq!(
            read.body, reply.body,
            "{case}: {method} reads back differently"
        );
        tasks.push(reply.body);
    }
    tasks
}

#[apply(both_backends)]
#[tokio::test]
async fn title_is_required_when_creating_and_replacing_but_not_when_patching(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for (method, body) in [
        (Method::POST, json!({})),
        (
            Method::POST,
            json!({"description": "no title", "priority": "high"}),
        ),
        (Method::PUT, json!({})),
        (Method::PUT, json!({"priority": "high", "completed": true})),
    ] {
        assert_rejected_body(
            &alice,
            &seeded,
            method.clone(),
            &body,
            &["title"],
            &format!("title absent from {method} {body}"),
        )
        .await;
    }

    let patched = alice
        .patch(
            &format!("/tasks/{}", id_of(&seeded)),
            json!({"priority": "high"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["title"], "Seed", "PATCH keeps the title");
}

#[apply(both_backends)]
#[tokio::test]
async fn title_of_200_code_points_is_accepted_and_201_rejected_in_any_script(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for unit in UNITS {
        let longest = unit.repeat(200);
        for written in assert_accepted(
            &alice,
            &seeded,
            "title",
            json!(longest),
            &format!("200 × {unit:?}"),
        )
        .await
        {
            assert_eq!(written["title"], longest, "200 × {unit:?} is kept whole");
            let stored = app.stored_task(id_of(&written)).await.unwrap();
            assert_eq!(stored.title, longest, "200 × {unit:?} is stored whole");
        }
    }
    let seeded = alice.get(&format!("/tasks/{}", id_of(&seeded))).await.body;
    for unit in UNITS {
        assert_rejected(
            &alice,
            &seeded,
            "title",
            json!(unit.repeat(201)),
            &format!("201 × {unit:?}"),
        )
        .await;
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn surrounding_whitespace_is_trimmed_from_the_title_and_not_counted(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for (sent, kept) in [
        (format!("  {}  ", "é".repeat(200)), "é".repeat(200)),
        (format!("\t\n{} \r\n", "a".repeat(200)), "a".repeat(200)),
        ("  Buy  milk  ".to_owned(), "Buy  milk".to_owned()),
    ] {
        for written in
            assert_accepted(&alice, &seeded, "title", json!(sent), &format!("{sent:?}")).await
        {
            assert_eq!(written["title"], json!(kept), "{sent:?} is stored trimmed");
            let stored = app.stored_task(id_of(&written)).await.unwrap();
            assert_eq!(stored.title, kept, "{sent:?} is stored trimmed");
        }
    }
    let seeded = alice.get(&format!("/tasks/{}", id_of(&seeded))).await.body;
    assert_rejected(
        &alice,
        &seeded,
        "title",
        json!(format!("  {}  ", "é".repeat(201))),
        "201 code points between spaces",
    )
    .await;
}

#[apply(both_backends)]
#[tokio::test]
async fn blank_and_non_string_titles_are_rejected(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for (case, value) in [
        ("empty", json!("")),
        ("one space", json!(" ")),
        ("mixed whitespace", json!(" \t\r\n ")),
        ("ideographic space", json!("\u{3000}")),
        ("null", json!(null)),
        ("number", json!(7)),
        ("boolean", json!(true)),
        ("array", json!(["title"])),
        ("object", json!({"text": "title"})),
    ] {
        assert_rejected(&alice, &seeded, "title", value, &format!("{case} title")).await;
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn description_of_1000_code_points_is_accepted_and_1001_rejected(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for unit in UNITS {
        let longest = unit.repeat(1000);
        for written in assert_accepted(
            &alice,
            &seeded,
            "description",
            json!(longest),
            &format!("1000 × {unit:?}"),
        )
        .await
        {
            assert_eq!(written["description"], longest);
            let stored = app.stored_task(id_of(&written)).await.unwrap();
            assert_eq!(stored.description.as_deref(), Some(longest.as_str()));
        }
    }
    let seeded = alice.get(&format!("/tasks/{}", id_of(&seeded))).await.body;
    for unit in UNITS {
        assert_rejected(
            &alice,
            &seeded,
            "description",
            json!(unit.repeat(1001)),
            &format!("1001 × {unit:?}"),
        )
        .await;
    }
    for (case, value) in [
        ("number", json!(5)),
        ("boolean", json!(false)),
        ("array", json!(["text"])),
    ] {
        assert_rejected(
            &alice,
            &seeded,
            "description",
            value,
            &format!("{case} description"),
        )
        .await;
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn a_null_description_is_accepted_and_clears_it(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for written in assert_accepted(&alice, &seeded, "description", json!(null), "null").await {
        assert_eq!(written["description"], json!(null));
        let stored = app.stored_task(id_of(&written)).await.unwrap();
        assert_eq!(stored.description, None);
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn priority_accepts_only_low_medium_and_high(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for priority in ["low", "medium", "high"] {
        for written in assert_accepted(&alice, &seeded, "priority", json!(priority), priority).await
        {
            assert_eq!(written["priority"], priority);
        }
    }
    let seeded = alice.get(&format!("/tasks/{}", id_of(&seeded))).await.body;
    for (case, value) in [
        ("upper case", json!("HIGH")),
        ("capitalised", json!("High")),
        ("unknown value", json!("urgent")),
        ("padded", json!(" high")),
        ("empty", json!("")),
        ("rank as number", json!(1)),
        ("null", json!(null)),
        ("boolean", json!(true)),
    ] {
        assert_rejected(
            &alice,
            &seeded,
            "priority",
            value,
            &format!("{case} priority"),
        )
        .await;
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn due_date_accepts_rfc3339_or_null_and_returns_it_in_utc(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for (sent, returned) in [
        (
            json!("2026-12-01T10:00:00+05:30"),
            json!("2026-12-01T04:30:00Z"),
        ),
        (
            json!("2026-12-01T17:00:00-08:00"),
            json!("2026-12-02T01:00:00Z"),
        ),
        (json!("2026-12-01T17:00:00Z"), json!("2026-12-01T17:00:00Z")),
        // The ends of the range RFC 3339 can write.
        (json!("9999-12-31T23:59:59Z"), json!("9999-12-31T23:59:59Z")),
        (
            json!("0001-01-01T00:00:00+00:00"),
            json!("0001-01-01T00:00:00Z"),
        ),
        // A leap second is the next second, on both databases.
        (json!("2016-12-31T23:59:60Z"), json!("2017-01-01T00:00:00Z")),
        (json!(null), json!(null)),
    ] {
        for written in
            assert_accepted(&alice, &seeded, "due_date", sent.clone(), &sent.to_string()).await
        {
            assert_eq!(written["due_date"], returned, "{sent} is returned in UTC");
        }
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn due_date_rejects_anything_but_an_rfc3339_date_time(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for (case, value) in [
        ("a word", json!("tomorrow")),
        ("month 13", json!("2026-13-01T00:00:00Z")),
        ("February 30", json!("2026-02-30T00:00:00Z")),
        ("a date without a time", json!("2026-12-01")),
        ("a time without an offset", json!("2026-12-01T17:00:00")),
        ("an empty string", json!("")),
        ("a number", json!(1_796_144_400)),
        ("a boolean", json!(true)),
        // Valid RFC 3339 whose UTC value is past year 9999 or before year 1:
        // it could not be written back as RFC 3339.
        ("past 9999 in UTC", json!("9999-12-31T23:59:59-23:59")),
        ("before year 1 in UTC", json!("0001-01-01T00:00:00+00:01")),
        ("year 0", json!("0000-01-01T00:00:00+23:59")),
    ] {
        assert_rejected(
            &alice,
            &seeded,
            "due_date",
            value,
            &format!("due_date as {case}"),
        )
        .await;
    }
    for filter in ["due_before", "due_after"] {
        let reply = send(
            alice
                .request(Method::GET, "/tasks")
                .query(filter, &"9999-12-31T23:59:59-23:59"),
        )
        .await;
        assert_eq!(reply.invalid_fields(), [filter], "{}", reply.body);
    }
}

fn distinct_tags(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tag{i:02}")).collect()
}

#[apply(both_backends)]
#[tokio::test]
async fn twenty_tags_are_accepted_and_twenty_one_rejected_even_with_duplicates(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;
    let twenty = distinct_tags(20);

    for written in assert_accepted(&alice, &seeded, "tags", json!(twenty), "20 distinct").await {
        assert_eq!(written["tags"], json!(twenty));
    }

    // 20 entries, 5 of them the same tags again in other spellings.
    let mut with_duplicates = distinct_tags(15);
    with_duplicates.extend(["TAG00", " tag01 ", "Tag02", "tag03", "\ttag14"].map(String::from));
    for written in assert_accepted(
        &alice,
        &seeded,
        "tags",
        json!(with_duplicates),
        "20 entries, 15 distinct",
    )
    .await
    {
        assert_eq!(
            written["tags"],
            json!(distinct_tags(15)),
            "duplicates collapse"
        );
    }

    // The limit counts entries as sent, as the schema's `maxItems` does, so a
    // client-side validator and the server agree.
    let seeded = alice.get(&format!("/tasks/{}", id_of(&seeded))).await.body;
    let tags_before = tag_count(&app).await;
    let mut twenty_one = twenty.clone();
    twenty_one.push("tag00".into());
    for (tags, case) in [
        (distinct_tags(21), "21 distinct tags"),
        (twenty_one, "21 entries, 20 distinct"),
    ] {
        assert_rejected(&alice, &seeded, "tags", json!(tags), case).await;
    }
    assert_eq!(
        tag_count(&app).await,
        tags_before,
        "no tag is stored from a rejected write"
    );
}

#[apply(both_backends)]
#[tokio::test]
async fn each_tag_is_trimmed_lower_cased_and_1_to_50_code_points(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    let mut accepted: Vec<(String, String)> = UNITS
        .iter()
        .map(|unit| (unit.repeat(50), unit.repeat(50)))
        .collect();
    accepted.push((format!("  {}  ", "b".repeat(50)), "b".repeat(50)));
    accepted.push(("É".repeat(50), "é".repeat(50)));
    accepted.push((" Work ".into(), "work".into()));
    // Counted once lower-cased: 25 × `İ` is 50 characters stored.
    accepted.push(("İ".repeat(25), "i\u{307}".repeat(25)));
    for (sent, kept) in accepted {
        for written in
            assert_accepted(&alice, &seeded, "tags", json!([sent]), &format!("{sent:?}")).await
        {
            assert_eq!(written["tags"], json!([kept]), "tag {sent:?}");
        }
    }

    let seeded = alice.get(&format!("/tasks/{}", id_of(&seeded))).await.body;
    for unit in UNITS {
        assert_rejected(
            &alice,
            &seeded,
            "tags",
            json!(["ok", unit.repeat(51)]),
            &format!("a tag of 51 × {unit:?}"),
        )
        .await;
    }
    for (case, value) in [
        // 50 as sent, 100 once lower-cased: it could never be sent back.
        ("50 × İ", json!(["ok", "İ".repeat(50)])),
        ("an empty tag", json!(["ok", ""])),
        ("a blank tag", json!(["ok", "   "])),
        ("a number as a tag", json!(["ok", 1])),
        ("null as a tag", json!(["ok", null])),
        ("an object as a tag", json!(["ok", {"name": "x"}])),
        ("a nested array", json!([["ok"]])),
        ("tags as a string", json!("work")),
        ("tags as an object", json!({"work": true})),
        ("tags as a number", json!(5)),
        ("tags as null", json!(null)),
    ] {
        assert_rejected(&alice, &seeded, "tags", value, case).await;
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn completed_must_be_a_boolean_on_put_and_patch(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;
    let path = format!("/tasks/{}", id_of(&seeded));

    let done = alice.patch(&path, json!({"completed": true})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["completed"], true);
    let reopened = alice
        .put(&path, json!({"title": "Seed", "completed": false}))
        .await;
    assert_eq!(reopened.status, StatusCode::OK, "{}", reopened.body);
    assert_eq!(reopened.body["completed"], false);

    let seeded = alice.get(&path).await.body;
    for (case, value) in [
        ("string \"true\"", json!("true")),
        ("string \"yes\"", json!("yes")),
        ("number 1", json!(1)),
        ("number 0", json!(0)),
        ("null", json!(null)),
    ] {
        assert_rejected(
            &alice,
            &seeded,
            "completed",
            value,
            &format!("completed as {case}"),
        )
        .await;
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn several_bad_fields_are_reported_in_one_422_each_named_once(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;
    let bad = json!({
        "title": "   ",
        "description": "d".repeat(1001),
        "priority": "urgent",
        "due_date": "tomorrow",
        // Two bad tags are still one bad field.
        "tags": ["", "x".repeat(51), 3],
    });
    let fields = ["title", "description", "priority", "due_date", "tags"];

    assert_rejected_body(
        &alice,
        &seeded,
        Method::POST,
        &bad,
        &fields,
        "every field bad on POST",
    )
    .await;

    let mut with_completed = bad.clone();
    with_completed["completed"] = json!("no");
    let all = [&fields[..], &["completed"]].concat();
    for method in [Method::PUT, Method::PATCH] {
        assert_rejected_body(
            &alice,
            &seeded,
            method.clone(),
            &with_completed,
            &all,
            &format!("every field bad on {method}"),
        )
        .await;
    }

    // The title missing and another field bad: both named.
    assert_rejected_body(
        &alice,
        &seeded,
        Method::POST,
        &json!({"priority": 3}),
        &["title", "priority"],
        "title absent and priority bad",
    )
    .await;
}

#[apply(both_backends)]
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_rejected(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for body in [
        json!([]),
        json!([{"title": "in an array"}]),
        json!("x"),
        json!(42),
        json!(true),
        json!(null),
    ] {
        for method in [Method::POST, Method::PUT, Method::PATCH] {
            assert_rejected_body(
                &alice,
                &seeded,
                method.clone(),
                &body,
                &["body"],
                &format!("{method} with body {body}"),
            )
            .await;
        }
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn strings_containing_nul_are_rejected_with_422(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;

    for (field, value) in [
        ("title", json!("Buy\u{0}milk")),
        ("title", json!("\u{0}")),
        ("description", json!("before\u{0}after")),
        ("tags", json!(["ok", "a\u{0}b"])),
        ("tags", json!(["\u{0}"])),
        ("due_date", json!("2026-12-01T17:00:00Z\u{0}")),
        ("priority", json!("high\u{0}")),
    ] {
        assert_rejected(
            &alice,
            &seeded,
            field,
            value.clone(),
            &format!("{field} = {value}"),
        )
        .await;
    }

    for (param, value) in [("q", "a\u{0}b"), ("q", "\u{0}"), ("tag", "a\u{0}b")] {
        let reply = send(alice.request(Method::GET, "/tasks").query(param, &value)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "GET /tasks?{param}={value:?} answered {}",
            reply.body
        );
        assert_eq!(
            reply.invalid_fields(),
            [param],
            "GET /tasks?{param}={value:?}"
        );
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn sql_and_markup_in_strings_are_stored_and_read_back_verbatim(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    let kept = alice.create_titled(&["Keep one", "Keep two"]).await;
    let bobs = bob.create_titled(&["Bob's task"]).await;

    let sql = alice
        .create(json!({
            "title": "'; DROP TABLE tasks; --",
            "description": "Robert'); DELETE FROM users;--",
            "tags": ["x' OR '1'='1", "<script>alert(1)</script>"],
        }))
        .await;
    assert_eq!(sql["title"], "'; DROP TABLE tasks; --");
    assert_eq!(sql["description"], "Robert'); DELETE FROM users;--");
    assert_eq!(
        sql["tags"],
        json!(["<script>alert(1)</script>", "x' or '1'='1"]),
        "tags are only trimmed and lower-cased"
    );

    let markup_id = kept[1];
    let markup = alice
        .patch(
            &format!("/tasks/{markup_id}"),
            json!({
                "title": "<script>alert(1)</script>",
                "description": "<img src=x onerror=\"alert('x')\"> & \\ %_ --",
                "tags": ["\" OR \"\"=\""],
            }),
        )
        .await;
    assert_eq!(markup.status, StatusCode::OK, "{}", markup.body);
    assert_eq!(markup.body["title"], "<script>alert(1)</script>");
    assert_eq!(
        markup.body["description"],
        "<img src=x onerror=\"alert('x')\"> & \\ %_ --"
    );
    assert_eq!(markup.body["tags"], json!(["\" or \"\"=\""]));

    let replaced = alice
        .put(
            &format!("/tasks/{}", kept[0]),
            json!({"title": "1; UPDATE tasks SET title = 'pwned'", "tags": ["a'--"]}),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(
        replaced.body["title"],
        "1; UPDATE tasks SET title = 'pwned'"
    );

    // Read back through the API and straight from the database.
    for written in [&sql, &markup.body, &replaced.body] {
        let id = id_of(written);
        assert_eq!(&alice.get(&format!("/tasks/{id}")).await.body, written);
        let stored = app.stored_task(id).await.unwrap();
        assert_eq!(stored.title, written["title"].as_str().unwrap());
        assert_eq!(
            stored.description.as_deref(),
            written["description"].as_str()
        );
    }

    // Searching with them finds exactly the task that holds them.
    for (param, value, expected) in [
        ("q", "'; DROP TABLE", vec![id_of(&sql)]),
        ("q", "Robert');", vec![id_of(&sql)]),
        ("q", "' OR '1'='1", vec![]),
        ("q", "<script>", vec![markup_id]),
        ("tag", "x' OR '1'='1", vec![id_of(&sql)]),
        ("tag", "' OR 1=1 --", vec![]),
    ] {
        let reply = send(alice.request(Method::GET, "/tasks").query(param, &value)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{param}={value:?}: {}",
            reply.body
        );
        let found: Vec<i64> = reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect();
        assert_eq!(found, expected, "GET /tasks?{param}={value:?}");
    }

    // Nothing else was touched: every task and user is still there.
    let mut ids: Vec<i64> = alice.all_tasks().await.iter().map(id_of).collect();
    ids.sort();
    let mut expected = vec![kept[0], kept[1], id_of(&sql)];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        bob.all_tasks().await.iter().map(id_of).collect::<Vec<_>>(),
        bobs
    );
    assert_eq!(user::Entity::find().count(&app.db).await.unwrap(), 2);
    assert_eq!(task_count(&app).await, 4);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_rejected_write_applies_none_of_its_valid_fields(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let seeded = seed(&alice).await;
    let tags_before = tag_count(&app).await;

    for (method, body, field) in [
        (
            Method::POST,
            json!({"title": "New", "tags": ["fresh", "x".repeat(51)]}),
            "tags",
        ),
        (
            Method::PUT,
            json!({"title": "New", "priority": "high", "tags": ["fresh", ""], "completed": true}),
            "tags",
        ),
        (
            Method::PATCH,
            json!({"title": "New", "description": null, "priority": "urgent"}),
            "priority",
        ),
        (
            Method::PATCH,
            json!({"completed": true, "tags": ["fresh"], "due_date": "tomorrow"}),
            "due_date",
        ),
    ] {
        assert_rejected_body(
            &alice,
            &seeded,
            method.clone(),
            &body,
            &[field],
            &format!("{method} {body}"),
        )
        .await;
    }

    assert_eq!(
        tag_count(&app).await,
        tags_before,
        "no tag is created by a rejected write"
    );
    let stored = app.stored_task(id_of(&seeded)).await.unwrap();
    assert_eq!(stored.title, "Seed");
    assert!(!stored.completed);
    assert_eq!(stored.completed_at, None);
}
