//! Bearer-token authentication: every way a token can be wrong is a 401
//! problem with a `WWW-Authenticate` challenge, and never reaches the data.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::http::StatusCode;
use rstest_reuse::apply;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, SECRET, TestApp, both_backends, send};
use crate::spawn_or_skip;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: &Value, algorithm: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn hs256(claims: Value) -> String {
    sign(&claims, Algorithm::HS256, SECRET)
}

/// `alg: none`: a header and payload with an empty signature.
fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

async fn list_with(app: &TestApp, authorization: Option<&str>) -> Reply {
    let mut request = app.client.get("/api/alice/tasks");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    send(request).await
}

/// Asserts the 401 shape and returns the problem's detail.
#[track_caller]
fn rejected(reply: &Reply, token: Option<&str>) -> String {
    let body = reply.problem(StatusCode::UNAUTHORIZED);
    let challenge = reply
        .header("www-authenticate")
        .expect("WWW-Authenticate on 401");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    if let Some(token) = token.filter(|t| t.len() > 10) {
        assert!(
            !challenge.contains(token),
            "the challenge must not echo the token"
        );
        assert!(
            !body.to_string().contains(token),
            "the body must not echo the token"
        );
    }
    body["detail"].as_str().unwrap().to_owned()
}

#[apply(both_backends)]
#[tokio::test]
async fn a_valid_token_is_accepted_even_with_an_audience(backend: Backend) {
    let app = spawn_or_skip!(backend);
    // Better Auth sets `iss` and `aud` to its base URL.
    let token = hs256(json!({"sub": "alice", "exp": now() + 600, "iat": now(),
                             "iss": "http://localhost:3000", "aud": "http://localhost:3000"}));
    let reply = list_with(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["total"], 0);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_missing_or_non_bearer_authorization_is_401(backend: Backend) {
    let app = spawn_or_skip!(backend);
    for authorization in [
        None,
        Some("Basic YWxpY2U6cHc="),
        Some("Bearer"),
        Some("token abc"),
    ] {
        let reply = list_with(&app, authorization).await;
        rejected(&reply, None);
    }
}

#[apply(both_backends)]
#[tokio::test]
async fn every_kind_of_bad_token_is_401_saying_what_is_wrong(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let exp = now() + 600;
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not-a-jwt".into(), "malformed"),
        ("three garbage parts", "a.b.c".into(), "malformed"),
        (
            "bad signature",
            {
                let token = hs256(json!({"sub": "alice", "exp": exp}));
                let (unsigned_part, _) = token.rsplit_once('.').unwrap();
                format!("{unsigned_part}.{}", URL_SAFE_NO_PAD.encode([7u8; 32]))
            },
            "signature",
        ),
        (
            "wrong secret",
            sign(
                &json!({"sub": "alice", "exp": exp}),
                Algorithm::HS256,
                "another-secret-0123456789abcdef0123",
            ),
            "signature",
        ),
        (
            "expired",
            hs256(json!({"sub": "alice", "exp": now() - 600})),
            "expired",
        ),
        ("no sub", hs256(json!({"exp": exp})), "sub"),
        ("empty sub", hs256(json!({"sub": "", "exp": exp})), "sub"),
        (
            "overlong sub",
            hs256(json!({"sub": "a".repeat(129), "exp": exp})),
            "sub",
        ),
        (
            "non-string sub",
            hs256(json!({"sub": 42, "exp": exp})),
            "claims",
        ),
        (
            "nbf a year ahead",
            hs256(json!({"sub": "alice", "exp": exp + 366 * 86400, "nbf": now() + 365 * 86400})),
            "not valid yet",
        ),
        (
            "crit header",
            jsonwebtoken::encode(
                &Header {
                    crit: Some(vec!["http://example.com/unknown-extension".into()]),
                    ..Header::new(Algorithm::HS256)
                },
                &json!({"sub": "alice", "exp": exp}),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap(),
            "crit",
        ),
        (
            "right-to-left override in sub",
            hs256(json!({"sub": "alice\u{202E}gnp.exe", "exp": exp})),
            "printable",
        ),
        (
            "zero-width space in sub",
            hs256(json!({"sub": "ali\u{200B}ce", "exp": exp})),
            "printable",
        ),
        (
            "blank sub",
            hs256(json!({"sub": " ", "exp": exp})),
            "not only spaces",
        ),
        ("no exp", hs256(json!({"sub": "alice"})), "exp"),
        (
            "string exp",
            hs256(json!({"sub": "alice", "exp": "soon"})),
            "exp",
        ),
        (
            "alg none",
            unsigned(&json!({"sub": "alice", "exp": exp})),
            "alg",
        ),
        (
            "HS512 with the right secret",
            sign(
                &json!({"sub": "alice", "exp": exp}),
                Algorithm::HS512,
                SECRET,
            ),
            "algorithm",
        ),
        (
            "payload swapped after signing",
            {
                let token = hs256(json!({"sub": "bob", "exp": exp}));
                let parts: Vec<&str> = token.split('.').collect();
                let forged =
                    URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": exp}).to_string());
                format!("{}.{forged}.{}", parts[0], parts[2])
            },
            "signature",
        ),
    ];
    for (case, token, expected) in cases {
        let reply = list_with(&app, Some(&format!("Bearer {token}"))).await;
        let detail = rejected(&reply, Some(&token));
        assert!(
            detail.contains(expected),
            "{case}: detail {detail:?} should mention {expected:?}"
        );
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{case}: {challenge}"
        );
    }
    assert!(
        entity::user::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .is_empty(),
        "no rejected token may create a user"
    );

    // `nbf` within the clock-skew leeway (60 s) is accepted.
    let token = hs256(json!({"sub": "alice", "exp": exp, "nbf": now() + 30}));
    let reply = list_with(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[apply(both_backends)]
#[tokio::test]
async fn every_api_endpoint_requires_a_token(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let id = crate::helpers::id_of(&alice.create(json!({"title": "secret"})).await);
    let requests = [
        app.client.get("/api/alice/tasks"),
        app.client
            .post("/api/alice/tasks")
            .body_json(&json!({"title": "x"})),
        app.client.get(format!("/api/alice/tasks/{id}")),
        app.client
            .put(format!("/api/alice/tasks/{id}"))
            .body_json(&json!({"title": "x"})),
        app.client
            .patch(format!("/api/alice/tasks/{id}"))
            .body_json(&json!({"title": "x"})),
        app.client.delete(format!("/api/alice/tasks/{id}")),
        app.client.patch(format!("/api/alice/tasks/{id}/complete")),
        app.client.get("/api/alice/tags"),
        app.client.get("/api/alice/stats"),
        app.client.get("/api/alice/me"),
        app.client.get("/api/alice/trash"),
        app.client.post(format!("/api/alice/trash/{id}/restore")),
        app.client.delete(format!("/api/alice/trash/{id}")),
        app.client.delete("/api/alice/trash"),
        app.client.get("/api/alice/changes"),
    ];
    for request in requests {
        rejected(&send(request).await, None);
    }
    let tasks = alice.all_tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["title"], "secret");
    assert_eq!(tasks[0]["completed"], false);
}

/// `getMe` declares 404 for a user whose record is gone between the token
/// check and the read (here: deleted behind the running app's back).
#[apply(both_backends)]
#[tokio::test]
async fn me_is_a_404_problem_once_the_users_record_is_gone(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let alice = app.user("alice");
    let bob = app.user("bob");
    assert_eq!(alice.get("/me").await.status, StatusCode::OK);
    assert_eq!(bob.get("/me").await.status, StatusCode::OK);
    entity::user::Entity::delete_by_id("alice")
        .exec(&app.db)
        .await
        .expect("delete alice's row");

    let gone = alice.get("/me").await;
    assert_eq!(
        gone.problem(StatusCode::NOT_FOUND)["detail"],
        "no such user"
    );
    let still_there = bob.get("/me").await;
    assert_eq!(still_there.status, StatusCode::OK, "{}", still_there.body);
    assert_eq!(still_there.body["id"], "bob");
}
