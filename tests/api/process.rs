//! The real `todo-api` binary as a child process on a loopback port, for
//! tests that need a real socket, real signals or real resource limits.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tokio::net::TcpStream;

use crate::helpers::{SECRET, free_port};

/// The binary under test: this build's, or `TODO_API_BIN` (to show that a
/// test fails on an older build).
pub fn binary() -> String {
    std::env::var("TODO_API_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_todo-api").to_owned())
}

/// As a variable's value for [`ServerProcess::start`]: leave it unset, so
/// that the binary's default applies.
pub const UNSET: &str = "\0unset";

pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts `todo-api serve` on `database_url` with HS256 tokens, a free
    /// port, no rate limit and these extra variables (a value of [`UNSET`]
    /// removes one), and waits until it accepts connections.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(Command::new(binary()), database_url, env).await
    }

    /// The same with a command of the caller's (e.g. a shell that sets limits
    /// first); the binary must be its last argument.
    pub async fn start_with(
        mut command: Command,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        command
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("BETTER_AUTH_SECRET", SECRET)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            // As in-process tests: only the rate limit's own tests limit.
            .env("RATE_LIMIT", "off")
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for &(name, value) in env {
            if value == UNSET {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        command.stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = command.spawn().expect("start todo-api");
        let mut server = Self { child, port };
        server.wait_until_listening().await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request to `/api/{user}{path}` with a valid HS256 token of `user`.
    pub fn request_as(
        &self,
        method: reqwest::Method,
        user: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.url(&format!("/api/{user}{path}")))
            .bearer_auth(crate::helpers::token_for(user))
    }

    async fn wait_until_listening(&mut self) {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited before listening: {status}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start listening");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::task::spawn_blocking(move || self.child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A status, headers and JSON body (`Null` when empty) from a real socket.
pub struct HttpReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> HttpReply {
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    HttpReply {
        status,
        headers,
        body,
    }
}

/// Waits until the server has read everything the client sent on one
/// connection (the receive queue of its socket, in `/proc/net/tcp`, is
/// empty): the request is in the server's hands.
pub async fn until_read_by_server(client: &tokio::net::TcpStream) {
    let server_port = client.peer_addr().unwrap().port();
    let client_port = client.local_addr().unwrap().port();
    let endpoint = |port: u16| format!(":{port:04X}");
    let (local, remote) = (endpoint(server_port), endpoint(client_port));
    for _ in 0..200 {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let unread = table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[1].ends_with(&local) && fields[2].ends_with(&remote))
                .then(|| fields[4].split(':').nth(1).unwrap_or("?").to_owned())
        });
        if unread.as_deref() == Some("00000000") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server did not read the request");
}
