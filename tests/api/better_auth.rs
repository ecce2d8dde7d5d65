//! End to end against a real Better Auth server (`tests/better-auth/`, npm
//! `better-auth` with its `jwt()` and `bearer()` plugins): sign up, fetch the
//! JWT the way `authClient.token()` does, and use it on this API.
//!
//! Needs `npm ci` in `tests/better-auth/` (`.ci/run` does it); without its
//! `node_modules` the test is skipped, except in CI where that is an error.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use poem::http::StatusCode;
use rstest_reuse::apply;

use crate::helpers::both_backends;
use serde_json::{Value, json};

use crate::helpers::{Backend, User, free_port};
use crate::spawn_or_skip;

/// A Better Auth server process, killed when dropped.
struct BetterAuth {
    url: String,
    process: Child,
    http: reqwest::Client,
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl BetterAuth {
    /// Starts it with `alg` (`None`: Better Auth's default, EdDSA); `None` when
    /// its npm packages are not installed outside CI.
    async fn start(alg: Option<&str>) -> Option<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/better-auth");
        if !dir.join("node_modules").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the Better Auth test: run `npm ci` in tests/better-auth"
            );
            eprintln!("skipped: run `npm ci` in tests/better-auth to test against Better Auth");
            return None;
        }
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", free_port().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(alg) = alg {
            command.env("JWT_ALG", alg);
        }
        let mut process = command.spawn().expect("node is installed");
        let stdout = process.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .expect("Better Auth started within 60 s")
            .unwrap()
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("Better Auth did not start: {line:?}"));
        let server = Self {
            url: ready["url"].as_str().unwrap().to_owned(),
            process,
            http: reqwest::Client::new(),
        };
        // Better Auth creates its key pair on first use, and concurrent first
        // uses can each create one; one call before anything else settles it.
        let jwks = server.get("/api/auth/jwks", None).await;
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
        Some(server)
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Value {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(session) = session {
            request = request.bearer_auth(session);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    /// Signs a user up with email and password; returns the session token the
    /// `bearer()` plugin hands out (what a browser would keep as a cookie).
    async fn sign_up(&self, email: &str, name: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/auth/sign-up/email", self.url))
            .header("content-type", "application/json")
            .body(
                json!({"email": email, "password": "correct horse battery", "name": name})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "sign-up");
        response.headers()["set-auth-token"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The JWT for a session: what `authClient.token()` returns to a frontend.
    async fn token(&self, session: &str) -> String {
        let body = self.get("/api/auth/token", Some(session)).await;
        body["token"].as_str().expect("a token").to_owned()
    }

    async fn rename(&self, session: &str, name: &str) {
        let response = self
            .http
            .post(format!("{}/api/auth/update-user", self.url))
            .bearer_auth(session)
            .header("content-type", "application/json")
            .body(json!({ "name": name }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "update-user");
    }
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_better_auth_jwt_works_on_the_api(
    backend: Backend,
    #[values(None, Some("RS256"), Some("ES256"))] alg: Option<&str>,
) {
    let Some(auth) = BetterAuth::start(alg).await else {
        return;
    };
    let app = spawn_or_skip!(backend, |config| {
        // Exactly what the README asks a Better Auth deployment to set.
        config.better_auth_secret = None;
        config.better_auth_url = Some(auth.url.parse().unwrap());
    });

    let session = auth.sign_up("ada@example.com", "Ada Lovelace").await;
    let token = auth.token(&session).await;
    assert_eq!(header_of(&token)["alg"], alg.unwrap_or("EdDSA"));
    let user_id = claims_of(&token)["sub"].as_str().unwrap().to_owned();
    let ada = User {
        app: &app,
        id: user_id.clone(),
        token: token.clone(),
    };

    let created = ada
        .create(json!({"title": "Ship it", "tags": ["e2e"]}))
        .await;
    assert_eq!(created["user_id"], user_id.as_str());
    let listed = ada.all_tasks().await;
    assert_eq!(listed, std::slice::from_ref(&created));
    let me = ada.get("/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(
        (&me.body["id"], &me.body["email"], &me.body["name"]),
        (
            &json!(user_id),
            &json!("ada@example.com"),
            &json!("Ada Lovelace")
        )
    );
    use sea_orm::EntityTrait;
    let row = entity::user::Entity::find_by_id(user_id.clone())
        .one(&app.db)
        .await
        .unwrap()
        .expect("the user row");
    assert_eq!(row.email.as_deref(), Some("ada@example.com"));
    assert_eq!(row.name.as_deref(), Some("Ada Lovelace"));

    // A second Better Auth user cannot reach Ada's tasks.
    let grace_session = auth.sign_up("grace@example.com", "Grace Hopper").await;
    let grace_token = auth.token(&grace_session).await;
    let grace = User {
        app: &app,
        id: claims_of(&grace_token)["sub"].as_str().unwrap().to_owned(),
        token: grace_token,
    };
    let reply =
        crate::helpers::send(grace.request_as(poem::http::Method::GET, &user_id, "/tasks")).await;
    reply.problem(StatusCode::FORBIDDEN);
    assert_eq!(grace.all_tasks().await, Vec::<Value>::new());

    // A tampered token (Ada's signature on a payload naming Grace) is refused.
    let [header, _, signature] = token.split('.').collect::<Vec<_>>()[..] else {
        unreachable!()
    };
    let mut forged_claims = claims_of(&token);
    forged_claims["sub"] = json!(grace.id);
    let forged = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(forged_claims.to_string())
    );
    let reply = crate::helpers::send(
        app.client
            .get(format!("/api/{}/tasks", grace.id))
            .header("authorization", format!("Bearer {forged}")),
    )
    .await;
    let problem = reply.problem(StatusCode::UNAUTHORIZED);
    assert!(
        problem["detail"].as_str().unwrap().contains("signature"),
        "{problem}"
    );

    // A renamed user's next token updates the stored profile.
    auth.rename(&session, "Ada King").await;
    let renamed = User {
        app: &app,
        id: user_id.clone(),
        token: auth.token(&session).await,
    };
    assert_eq!(renamed.get("/me").await.body["name"], "Ada King");
    assert_eq!(renamed.all_tasks().await, [created]);
}
