//! Test harness: a fresh database per test, the real app, and helpers that
//! read as the user's actions.

use std::time::Duration;

use poem::{
    endpoint::BoxEndpoint,
    http::{HeaderMap, Method, StatusCode},
    test::{TestClient, TestRequestBuilder},
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use todo_api::{
    app::build_app,
    auth::{Claims, mint_token},
    config::Config,
};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test once per database: `#[apply(both_backends)]` above
/// `#[tokio::test]`, with `backend: Backend` as its first argument.
#[rstest_reuse::template]
#[rstest::rstest]
pub fn both_backends(#[values(Backend::Sqlite, Backend::Postgres)] backend: Backend) {}

/// A database made for one test and removed after it.
enum TestDatabase {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let TestDatabase::Postgres { admin_url, name } = self else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                        ))
                        .await;
                }
            });
        })
        .join()
        .expect("drop test database");
    }
}

/// Says once per run, past the test harness's output capture, that the
/// PostgreSQL cases are passing without having run.
fn note_postgres_skipped() {
    static NOTED: std::sync::Once = std::sync::Once::new();
    NOTED.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "\nnote: every PostgreSQL case passes WITHOUT RUNNING: set TEST_DATABASE_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run them\n"
        );
    });
}

pub struct TestApp {
    pub client: TestClient<BoxEndpoint<'static>>,
    /// A connection of the test's own, to check what the API stored.
    pub db: DatabaseConnection,
    pub database_url: String,
    /// The app's own state, to see what its requests are doing.
    state: todo_api::state::AppState,
    database: TestDatabase,
}

impl TestApp {
    /// The app on a fresh, migrated database; `None` for PostgreSQL when
    /// `TEST_DATABASE_URL` is not set (outside CI, where that is an error).
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let (database_url, database) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/todo.db?mode=rwc", dir.path().display());
                (url, TestDatabase::Sqlite(dir))
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "CI must run the PostgreSQL tests: set TEST_DATABASE_URL"
                    );
                    note_postgres_skipped();
                    return None;
                };
                let name = format!("todo_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                (url.to_string(), TestDatabase::Postgres { admin_url, name })
            }
        };
        let mut config = Config::new(&database_url);
        config.better_auth_secret = Some(SECRET.into());
        config.database_acquire_timeout = Duration::from_secs(2);
        // Tests send one user's requests far faster than any person; the
        // rate limit's own tests turn it on.
        config.rate_limit = todo_api::config::RateLimitSetting(None);
        configure(&mut config);
        let app = build_app(&config).await.expect("build app");
        let db = Database::connect(&database_url)
            .await
            .expect("test connection");
        Some(Self {
            client: TestClient::new(app.endpoint),
            db,
            database_url,
            state: app.state,
            database,
        })
    }

    /// Runs `todo-api migrate <args>` on this app's database.
    pub fn migrate(&self, args: &[&str]) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
            .arg("migrate")
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }

    /// Rolls the schema back to before the migration `name` (it and every
    /// one after it), however many later migrations there are.
    pub fn migrate_down_to_before(&self, name: &str) {
        use migration::MigratorTrait;
        let migrations = migration::Migrator::migrations();
        let index = migrations
            .iter()
            .position(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no migration {name}"));
        self.migrate(&["down", "-n", &(migrations.len() - index).to_string()]);
    }

    /// Connections of the app's write pool that a request holds (or that
    /// are still being returned after one).
    fn writes_in_progress(&self) -> usize {
        let writer = &self.state.db.writer;
        match writer.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                let pool = writer.get_sqlite_connection_pool();
                pool.size() as usize - pool.num_idle()
            }
            _ => {
                let pool = writer.get_postgres_connection_pool();
                pool.size() as usize - pool.num_idle()
            }
        }
    }

    async fn until_writes_in_progress(&self, done: impl Fn(usize) -> bool, what: &str) {
        // A guard against waiting forever, generous for a loaded machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let in_progress = self.writes_in_progress();
            if done(in_progress) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} within 30 s ({in_progress} write connections in use)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Returns once every write connection is back in the pool, so that
    /// [`Self::until_a_write_waits`] sees only requests sent after it.
    pub async fn until_writes_are_done(&self) {
        self.until_writes_in_progress(|n| n == 0, "the write pool was not idle")
            .await;
    }

    /// Returns once a request waits for the tasks lock ([`hold_tasks_lock`]):
    /// on PostgreSQL a backend of this database waits for a lock; on SQLite,
    /// whose busy wait shows nowhere, a request holds the one write
    /// connection. A readiness signal for tests that order requests around it.
    pub async fn until_a_write_waits(&self) {
        if self.db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            self.until_writes_in_progress(|n| n > 0, "no request reached the database")
                .await;
            return;
        }
        let waiting = sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let row = self
                .db
                .query_one_raw(waiting.clone())
                .await
                .unwrap()
                .unwrap();
            if row.try_get_by_index::<i64>(0).unwrap() > 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no request waited for the tasks lock within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A signed-in user with a valid token for `id`.
    /// The app's event streams, to run its periodic work now.
    pub fn change_hub(&self) -> &todo_api::events::ChangeHub {
        &self.state.changes
    }

    pub fn user(&self, id: &str) -> User<'_> {
        let claims = Claims {
            exp: None,
            sub: id.into(),
            email: Some(format!("{id}@example.com")),
            name: Some(format!("User {id}")),
        };
        User {
            app: self,
            id: id.into(),
            token: mint_token(SECRET.as_bytes(), &claims, Duration::from_secs(3600)),
        }
    }

    /// The titles of every stored task, of all users, oldest first.
    pub async fn stored_titles(&self) -> Vec<String> {
        use sea_orm::{EntityTrait, QueryOrder};
        entity::task::Entity::find()
            .order_by_asc(entity::task::Column::Id)
            .all(&self.db)
            .await
            .expect("read task rows")
            .into_iter()
            .map(|task| task.title)
            .collect()
    }

    /// The task's row as stored, read with the test's own connection; `None`
    /// when it does not exist.
    pub async fn stored_task(&self, id: i64) -> Option<entity::task::Model> {
        use sea_orm::EntityTrait;
        entity::task::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .expect("read task row")
    }

    /// Inserts `count` pending tasks titled `filler {n}`, with the given
    /// description, for the user straight into the database, as an import
    /// would; the user must exist (any request of theirs creates them).
    pub async fn insert_filler_tasks(&self, user_id: &str, count: u64, description: &str) {
        use entity::task::search_key;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        let now = chrono::Utc::now();
        let rows = (0..count).map(|n| entity::task::ActiveModel {
            user_id: Set(user_id.into()),
            title: Set(format!("filler {n}")),
            title_search: Set(search_key(&format!("filler {n}"))),
            description: Set(Some(description.into())),
            description_search: Set(Some(search_key(description))),
            completed: Set(false),
            priority: Set(entity::Priority::Medium),
            due_date: Set(None),
            completed_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        });
        entity::task::Entity::insert_many(rows)
            .exec_without_returning(&self.db)
            .await
            .expect("insert filler tasks");
    }

    /// Name of the PostgreSQL database, for tests that take it away.
    pub fn postgres_database(&self) -> Option<(&str, &str)> {
        match &self.database {
            TestDatabase::Postgres { admin_url, name } => Some((admin_url, name)),
            TestDatabase::Sqlite(_) => None,
        }
    }
}

/// A user acting through the API with a valid token.
pub struct User<'a> {
    pub app: &'a TestApp,
    pub id: String,
    pub token: String,
}

impl User<'_> {
    /// A request to `/api/{id}{path}` with this user's token.
    pub fn request(
        &self,
        method: Method,
        path: &str,
    ) -> TestRequestBuilder<'_, BoxEndpoint<'static>> {
        self.request_as(method, &self.id, path)
    }

    /// A request with this user's token to another user's path.
    pub fn request_as(
        &self,
        method: Method,
        path_user: &str,
        path: &str,
    ) -> TestRequestBuilder<'_, BoxEndpoint<'static>> {
        self.app
            .client
            .request(method, format!("/api/{path_user}{path}"))
            .header("authorization", format!("Bearer {}", self.token))
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        send(self.request(Method::POST, path).body_json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        send(self.request(Method::PUT, path).body_json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        send(self.request(Method::PATCH, path).body_json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        send(self.request(Method::DELETE, path)).await
    }

    pub async fn toggle(&self, task_id: i64) -> Reply {
        send(self.request(Method::PATCH, &format!("/tasks/{task_id}/complete"))).await
    }

    /// Creates a task and returns it, failing the test unless it is a 201.
    pub async fn create(&self, body: Value) -> Value {
        let reply = self.post("/tasks", body).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create failed: {}",
            reply.body
        );
        reply.body
    }

    /// Creates tasks with these titles, in order; returns their ids.
    pub async fn create_titled(&self, titles: &[&str]) -> Vec<i64> {
        let mut ids = Vec::new();
        for title in titles {
            ids.push(id_of(
                &self.create(serde_json::json!({ "title": title })).await,
            ));
        }
        ids
    }

    /// Every task of this user, all pages, via the API.
    pub async fn all_tasks(&self) -> Vec<Value> {
        let reply = self.get("/tasks?limit=100&sort=created_at&order=asc").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["items"].as_array().expect("items").clone()
    }
}

/// A response with its body parsed as JSON (`Value::Null` when empty).
#[derive(Debug)]
#[must_use = "assert the reply's status (and body), or an arrange step that failed goes unnoticed"]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a 2xx answer, as an arrange step that must have worked;
    /// returns the body.
    #[track_caller]
    pub fn assert_success(self) -> Value {
        assert!(
            self.status.is_success(),
            "unexpected status {}; body: {}",
            self.status,
            self.body
        );
        self.body
    }

    /// Asserts an RFC 9457 problem document with this status; returns it.
    #[track_caller]
    pub fn problem(&self, status: StatusCode) -> &Value {
        self.problem_of_type(status, "about:blank")
    }

    /// Asserts a problem document with this status and `type`; returns it.
    #[track_caller]
    pub fn problem_of_type(&self, status: StatusCode, kind: &str) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "problem content type"
        );
        assert_eq!(
            self.body["status"],
            status.as_u16(),
            "problem status: {}",
            self.body
        );
        assert_eq!(self.body["type"], kind, "problem type");
        assert!(
            self.body["title"].is_string(),
            "problem title: {}",
            self.body
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "problem detail: {}",
            self.body
        );
        &self.body
    }

    /// Asserts a 422 and returns the `field` names of its errors.
    #[track_caller]
    pub fn invalid_fields(&self) -> Vec<String> {
        let body = self.problem(StatusCode::UNPROCESSABLE_ENTITY);
        body["errors"]
            .as_array()
            .expect("422 carries errors")
            .iter()
            .map(|e| {
                assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
                e["field"].as_str().expect("field").to_owned()
            })
            .collect()
    }
}

pub async fn send(request: TestRequestBuilder<'_, BoxEndpoint<'static>>) -> Reply {
    let response = request.send().await.0;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().into_bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn id_of(task: &Value) -> i64 {
    task["id"].as_i64().expect("task id")
}

pub fn ids(tasks: &Value) -> Vec<i64> {
    tasks.as_array().expect("array").iter().map(id_of).collect()
}

/// Skips the rest of a test when its backend is not configured.
#[macro_export]
macro_rules! spawn_or_skip {
    ($backend:expr) => {
        $crate::spawn_or_skip!($backend, |_| {})
    };
    ($backend:expr, $configure:expr) => {
        match $crate::helpers::TestApp::spawn_with($backend, $configure).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// A loopback port that was free a moment ago, for a server run as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Holds the database's write lock (SQLite `BEGIN IMMEDIATE`) or an exclusive
/// lock on `tasks` (PostgreSQL) until dropped, so a write to tasks waits.
pub async fn hold_tasks_lock(
    backend: Backend,
    database_url: &str,
) -> Box<dyn std::any::Any + Send> {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait, sqlx::Connection};
    match backend {
        Backend::Sqlite => {
            let mut conn = sea_orm::sqlx::SqliteConnection::connect(database_url)
                .await
                .unwrap();
            sea_orm::sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn)
        }
        Backend::Postgres => {
            let db = Database::connect(database_url).await.unwrap();
            let txn = db.begin().await.unwrap();
            txn.execute_unprepared("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            Box::new((db, txn))
        }
    }
}

/// A valid HS256 token for `sub`, valid for an hour.
pub fn token_for(sub: &str) -> String {
    let claims = Claims {
        exp: None,
        sub: sub.into(),
        email: None,
        name: None,
    };
    mint_token(SECRET.as_bytes(), &claims, Duration::from_secs(3600))
}
