//! The per-user rate limit (contract: "Limits and operations"): every `/api`
//! response to a verified user says where they stand; over the quota, a 429
//! problem with `Retry-After`, for that user only, until the quota refills.

use std::time::Duration;

use poem::http::{Method, StatusCode};
use rstest_reuse::apply;
use serde_json::json;
use todo_api::{config::RateLimitSetting, rate_limit::RateLimit};

use crate::helpers::{Backend, Reply, both_backends, id_of, send};
use crate::isolation::{every_endpoint, with_body};
use crate::process::{ServerProcess, UNSET};
use crate::spawn_or_skip;

fn limited_to(limit: &str) -> impl FnOnce(&mut todo_api::config::Config) {
    let limit: RateLimit = limit.parse().unwrap();
    move |config| config.rate_limit = RateLimitSetting(Some(limit))
}

/// `RateLimit`'s `r` and `t`.
fn standing(reply: &Reply) -> (u32, u64) {
    let value = reply
        .header("ratelimit")
        .unwrap_or_else(|| panic!("a RateLimit header on a {}", reply.status));
    let pattern = regex::Regex::new(r#"^"default";r=(\d+);t=(\d+)$"#).unwrap();
    let parts = pattern
        .captures(value)
        .unwrap_or_else(|| panic!("RateLimit: {value}"));
    (parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

#[apply(both_backends)]
#[tokio::test]
async fn every_response_to_a_verified_user_says_where_they_stand(backend: Backend) {
    // Refilling one request every 86 s: nothing refills during the test.
    let app = spawn_or_skip!(backend, limited_to("1000/24h"));
    let alice = app.user("alice");
    let task = id_of(&alice.create(json!({"title": "mine"})).await);
    let mut left = 999;
    let mut check = |reply: &Reply, what: &str| {
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some(r#""default";q=1000;w=86400"#),
            "{what}: {}",
            reply.status
        );
        left -= 1;
        let (remaining, reset) = standing(reply);
        assert_eq!(remaining, left, "{what}");
        assert!(reset <= 86_400, "{what}: t={reset}");
    };
    for (method, path, body) in every_endpoint(task) {
        let reply = send(with_body(alice.request(method.clone(), &path), &body)).await;
        check(&reply, &format!("{method} {path}"));
    }
    // Errors too: a 404, a 422, a 403 on another user's path.
    let missing = alice.get("/tasks/999999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    check(&missing, "404");
    let invalid = alice.post("/tasks", json!({"title": ""})).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    check(&invalid, "422");
    let foreign = send(alice.request_as(Method::GET, "bob", "/tasks")).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    check(&foreign, "403");
    // The event stream's response head.
    let stream = alice.request(Method::GET, "/events").send().await.0;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers().contains_key("ratelimit"));
    drop(stream);

    // No verified user, nothing to count; nor outside `/api`.
    let anonymous = send(app.client.get("/api/alice/tasks")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.header("ratelimit"), None);
    let health = send(
        app.client
            .get("/health")
            .header("authorization", format!("Bearer {}", alice.token)),
    )
    .await;
    assert_eq!(health.header("ratelimit"), None);
}

#[apply(both_backends)]
#[tokio::test]
async fn over_the_limit_is_a_429_for_that_user_only_until_the_quota_refills(backend: Backend) {
    let app = spawn_or_skip!(backend, limited_to("3/3s"));
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    for expected in [2, 1, 0] {
        let reply = alice.get("/tasks").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(standing(&reply).0, expected);
    }
    let refused = alice.post("/tasks", json!({"title": "one too many"})).await;
    let problem = refused.problem_of_type(StatusCode::TOO_MANY_REQUESTS, "/problems/rate-limited");
    assert_eq!(problem["status"], 429);
    assert!(
        problem["detail"].as_str().unwrap().contains("rate limit"),
        "{problem}"
    );
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    let (remaining, reset) = standing(&refused);
    assert_eq!(remaining, 0);
    assert!(
        (1..=3).contains(&retry_after) && retry_after >= reset,
        "Retry-After {retry_after}, t={reset}"
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some(r#""default";q=3;w=3"#)
    );
    assert!(
        app.stored_titles().await.is_empty(),
        "the refused create stored nothing"
    );

    // Another user has a quota of their own.
    let other = bob.get("/tasks").await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(standing(&other).0, 2);

    // After `Retry-After`, alice may go on.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = alice
        .post("/tasks", json!({"title": "after the wait"}))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    assert_eq!(app.stored_titles().await, ["after the wait"]);
}

#[apply(both_backends)]
#[tokio::test]
async fn off_means_no_limit_and_no_headers(backend: Backend) {
    let app = spawn_or_skip!(backend, |config| config.rate_limit = RateLimitSetting(None));
    let alice = app.user("alice");
    for _ in 0..20 {
        let reply = alice.get("/tasks").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("ratelimit"), None);
        assert_eq!(reply.header("ratelimit-policy"), None);
    }
}

/// The binary's default, with `RATE_LIMIT` unset: 600 a minute.
#[tokio::test]
async fn the_binary_limits_600_a_minute_by_default() {
    let app = spawn_or_skip!(Backend::Sqlite);
    let server = ServerProcess::start(&app.database_url, &[("RATE_LIMIT", UNSET)]).await;
    let reply =
        crate::process::send(server.request_as(reqwest::Method::GET, "alice", "/tasks")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some(r#""default";q=600;w=60"#)
    );
    assert_eq!(reply.header("ratelimit"), Some(r#""default";r=599;t=1"#));
    server.stop().await;
}
