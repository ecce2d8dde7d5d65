//! Better Auth's real tokens: asymmetric JWTs checked against its JWKS, with
//! key rotation, a rate-limited refetch on unknown kids, and every forged or
//! mismatched token a 401.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;

use serde_json::{Value, json};
use todo_api::config::Config;

use crate::helpers::{Backend, Reply, SECRET, TestApp, User};
use crate::jwks_server::{AuthServer, SigningKey, better_auth_claims, now};
use crate::spawn_or_skip;

/// Configures the app as a Better Auth deployment would (BETTER_AUTH_URL
/// only), then as `adjust` says.
fn trusting(server: &AuthServer, adjust: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    let base_url = server.base_url.parse().unwrap();
    move |config| {
        config.better_auth_secret = None;
        config.better_auth_url = Some(base_url);
        adjust(config);
    }
}

fn as_user<'a>(app: &'a TestApp, id: &str, token: String) -> User<'a> {
    User {
        app,
        id: id.into(),
        token,
    }
}

/// Asserts a 401 problem with a challenge; returns the problem's detail.
#[track_caller]
fn unauthorized(reply: &Reply) -> String {
    let body = reply.problem(StatusCode::UNAUTHORIZED);
    let challenge = reply.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
    body["detail"].as_str().unwrap().to_owned()
}

async fn user_rows(app: &TestApp) -> Vec<entity::user::Model> {
    use sea_orm::EntityTrait;
    entity::user::Entity::find().all(&app.db).await.unwrap()
}

#[apply(both_backends)]
#[tokio::test]
async fn tokens_of_every_better_auth_algorithm_are_accepted(
    backend: Backend,
    #[values(Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256, Algorithm::PS256)]
    alg: Algorithm,
) {
    let key = SigningKey::generate(alg);
    let server = AuthServer::start(&[&key]).await;
    let app = spawn_or_skip!(backend, trusting(&server, |_| {}));
    let token = key.sign(&better_auth_claims(&server.base_url, "ba-user-1"));
    let user = as_user(&app, "ba-user-1", token);

    let created = user.create(json!({"title": "From Better Auth"})).await;
    assert_eq!(created["user_id"], "ba-user-1");
    let me = user.get("/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["email"], "ba-user-1@example.com");
    assert_eq!(me.body["name"], "User ba-user-1");
    let rows = user_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].email.as_deref(), Some("ba-user-1@example.com"));
}

#[apply(both_backends)]
#[tokio::test]
async fn forged_and_mismatched_tokens_are_401_and_touch_nothing(backend: Backend) {
    let ed = SigningKey::generate(Algorithm::EdDSA);
    let es = SigningKey::generate(Algorithm::ES256);
    let rs = SigningKey::generate(Algorithm::RS256);
    let server = AuthServer::start(&[&ed, &es, &rs]).await;
    // The shared secret is on too, so the HS256 path is live for the confusion attack.
    let app = spawn_or_skip!(
        backend,
        trusting(&server, |config| {
            config.better_auth_secret = Some(SECRET.into());
        })
    );
    let base = server.base_url.as_str();
    let claims = better_auth_claims(base, "victim");
    let with = |changes: Value| {
        let mut claims = claims.clone();
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let without = |name: &str| {
        let mut claims = claims.clone();
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let b64 = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());

    let good = ed.sign(&claims);
    let [header, _, signature] = good.split('.').collect::<Vec<_>>()[..] else {
        unreachable!()
    };
    let tampered = format!(
        "{header}.{}.{signature}",
        b64(&with(json!({"sub": "attacker"})))
    );
    let impostor = SigningKey::generate(Algorithm::EdDSA).with_kid(&ed.kid);
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": ed.kid})),
        b64(&claims)
    );
    let es512 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "ES512", "kid": ed.kid})),
        b64(&claims),
        URL_SAFE_NO_PAD.encode([7u8; 132])
    );
    let hs256_with = |secret: &[u8], kid: &str| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let es_header_on_ed_key = {
        // An ES256 signature presented under the Ed25519 key's kid.
        es.with_kid(&ed.kid).sign(&claims)
    };

    let cases: Vec<(&str, String, &str)> = vec![
        ("tampered payload", tampered, "signature is invalid"),
        (
            "signed by another key under the same kid",
            impostor.sign(&claims),
            "signature is invalid",
        ),
        (
            "expired",
            ed.sign(&with(json!({"iat": now() - 3600, "exp": now() - 1800}))),
            "expired",
        ),
        (
            "not valid for a year",
            ed.sign(&with(
                json!({"nbf": now() + 365 * 86400, "exp": now() + 366 * 86400}),
            )),
            "not valid yet",
        ),
        (
            "wrong issuer",
            ed.sign(&with(json!({"iss": "https://evil.example"}))),
            "issuer",
        ),
        ("no issuer", ed.sign(&without("iss")), "no `iss`"),
        (
            "wrong audience",
            ed.sign(&with(json!({"aud": "https://other-app.example"}))),
            "audience",
        ),
        ("alg none", none, "malformed or its `alg` is not supported"),
        (
            // Better Auth can be set to ES512, which jsonwebtoken cannot verify.
            "ES512, which is not supported",
            es512,
            "malformed or its `alg` is not supported",
        ),
        (
            "HS256 signed with the RSA public key",
            hs256_with(&rs.public_bytes, &rs.kid),
            "signature is invalid",
        ),
        (
            "HS256 signed with the Ed25519 public key",
            hs256_with(&ed.public_bytes, &ed.kid),
            "signature is invalid",
        ),
        (
            "unknown kid",
            SigningKey::generate(Algorithm::EdDSA).sign(&claims),
            "not a key of the auth server",
        ),
        (
            "alg does not match the key",
            es_header_on_ed_key,
            "does not match its key",
        ),
    ];
    for (case, token, reason) in cases {
        let reply = as_user(&app, "victim", token.clone()).get("/tasks").await;
        let detail = unauthorized(&reply);
        assert!(detail.contains(reason), "{case}: {detail}");
        assert!(!detail.contains(&token), "{case}: token echoed");
    }
    // The real token still works afterwards, and nothing above created a user.
    assert!(user_rows(&app).await.is_empty());
    let reply = as_user(&app, "victim", good).get("/tasks").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_token_without_kid_is_401(backend: Backend) {
    let ed = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&ed]).await;
    let app = spawn_or_skip!(backend, trusting(&server, |_| {}));
    let token = {
        let signed = ed.sign(&better_auth_claims(&server.base_url, "u"));
        let [_, payload, signature] = signed.split('.').collect::<Vec<_>>()[..] else {
            unreachable!()
        };
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#);
        format!("{header}.{payload}.{signature}")
    };
    let detail = unauthorized(&as_user(&app, "u", token).get("/tasks").await);
    assert!(detail.contains("no `kid`"), "{detail}");
}

#[apply(both_backends)]
#[tokio::test]
async fn hs256_tokens_are_refused_when_only_the_jwks_is_configured(backend: Backend) {
    let ed = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&ed]).await;
    let app = spawn_or_skip!(backend, trusting(&server, |_| {}));
    // `app.user` mints HS256 tokens with the test secret, which is not configured here.
    let detail = unauthorized(&app.user("alice").get("/tasks").await);
    assert!(detail.contains("HS256 is not accepted"), "{detail}");
}

#[apply(both_backends)]
#[tokio::test]
async fn both_hs256_and_jwks_tokens_work_side_by_side(backend: Backend) {
    let ed = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&ed]).await;
    let app = spawn_or_skip!(
        backend,
        trusting(&server, |config| {
            config.better_auth_secret = Some(SECRET.into());
        })
    );
    let hs = app.user("alice");
    hs.create(json!({"title": "via HS256"})).await;
    let token = ed.sign(&better_auth_claims(&server.base_url, "alice"));
    let ba = as_user(&app, "alice", token);
    let titles: Vec<Value> = ba
        .all_tasks()
        .await
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("via HS256")]);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_rotated_in_key_works_without_restart_and_a_removed_one_stops(backend: Backend) {
    let old = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&old]).await;
    let app = spawn_or_skip!(
        backend,
        trusting(&server, |config| {
            config.jwks_unknown_kid_cooldown = Duration::ZERO;
        })
    );
    let claims = better_auth_claims(&server.base_url, "alice");
    let old_user = as_user(&app, "alice", old.sign(&claims));
    assert_eq!(old_user.get("/tasks").await.status, StatusCode::OK);

    // Better Auth rotates: the new key is published next to the old one.
    let new = SigningKey::generate(Algorithm::ES256);
    server.publish(&[&old, &new]);
    let new_user = as_user(&app, "alice", new.sign(&claims));
    let reply = new_user.get("/tasks").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(old_user.get("/tasks").await.status, StatusCode::OK);

    // The old key is withdrawn; the next fetch drops it.
    server.publish(&[&new]);
    let fetches = server.fetches();
    let unknown = SigningKey::generate(Algorithm::EdDSA).sign(&claims);
    unauthorized(&as_user(&app, "alice", unknown).get("/tasks").await);
    assert_eq!(server.fetches(), fetches + 1, "an unknown kid refetches");
    let detail = unauthorized(&old_user.get("/tasks").await);
    assert!(detail.contains("not a key of the auth server"), "{detail}");
    assert_eq!(new_user.get("/tasks").await.status, StatusCode::OK);
}

/// Polls until `done` holds, for state that changes in the background.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[apply(both_backends)]
#[tokio::test]
async fn the_periodic_refresh_drops_removed_keys(backend: Backend) {
    let old = SigningKey::generate(Algorithm::EdDSA);
    let new = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&old, &new]).await;
    let app = spawn_or_skip!(
        backend,
        trusting(&server, |config| {
            config.jwks_refresh_interval = Duration::from_millis(100);
            // Unknown kids cannot cause fetches here: only the refresh can.
            config.jwks_unknown_kid_cooldown = Duration::from_secs(3600);
        })
    );
    let claims = better_auth_claims(&server.base_url, "alice");
    let old_user = as_user(&app, "alice", old.sign(&claims));
    assert_eq!(old_user.get("/tasks").await.status, StatusCode::OK);

    server.publish(&[&new]);
    eventually("the removed key is rejected", async || {
        old_user.get("/tasks").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let reply = as_user(&app, "alice", new.sign(&claims))
        .get("/tasks")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[apply(both_backends)]
#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_cooldown(backend: Backend) {
    let key = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&key]).await;
    let app = spawn_or_skip!(backend, trusting(&server, |_| {}));
    let claims = better_auth_claims(&server.base_url, "alice");
    let user = as_user(&app, "alice", key.sign(&claims));
    assert_eq!(user.get("/tasks").await.status, StatusCode::OK);
    let before = server.fetches();

    let forged: Vec<String> = (0..200)
        .map(|i| key.with_kid(&format!("forged-{i}")).sign(&claims))
        .collect();
    let replies = futures::future::join_all(
        forged
            .iter()
            .map(|token| async { as_user(&app, "alice", token.clone()).get("/tasks").await }),
    )
    .await;
    for reply in &replies {
        let detail = unauthorized(reply);
        assert!(detail.contains("not a key of the auth server"), "{detail}");
    }
    let caused = server.fetches() - before;
    assert!(caused <= 1, "200 forged kids caused {caused} JWKS fetches");
    // The genuine key is unaffected.
    assert_eq!(user.get("/tasks").await.status, StatusCode::OK);
}

#[apply(both_backends)]
#[tokio::test]
async fn the_last_good_keys_keep_working_while_the_auth_server_fails(backend: Backend) {
    let key = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&key]).await;
    let app = spawn_or_skip!(
        backend,
        trusting(&server, |config| {
            config.jwks_refresh_interval = Duration::from_millis(50);
        })
    );
    let user = as_user(
        &app,
        "alice",
        key.sign(&better_auth_claims(&server.base_url, "alice")),
    );
    assert_eq!(user.get("/tasks").await.status, StatusCode::OK);

    server.set_failing(true);
    let failed_from = server.fetches();
    eventually("a few refreshes have failed", async || {
        server.fetches() >= failed_from + 3
    })
    .await;
    let reply = user.get("/tasks").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[apply(both_backends)]
#[tokio::test]
async fn startup_does_not_wait_for_the_auth_server_and_recovers_when_it_is_up(backend: Backend) {
    let key = SigningKey::generate(Algorithm::EdDSA);
    let server = AuthServer::start(&[&key]).await;
    server.set_failing(true);
    let app = spawn_or_skip!(
        backend,
        trusting(&server, |config| {
            config.jwks_unknown_kid_cooldown = Duration::ZERO;
        })
    );
    let user = as_user(
        &app,
        "alice",
        key.sign(&better_auth_claims(&server.base_url, "alice")),
    );
    // Without any key set the token cannot be judged: 503, not a 401 that
    // would sign the user out.
    let reply = user.get("/tasks").await;
    let problem = reply.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem["detail"].as_str().unwrap().contains("JWKS"),
        "{problem}"
    );
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(user_rows(&app).await.is_empty());

    server.set_failing(false);
    let reply = user.get("/tasks").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}
