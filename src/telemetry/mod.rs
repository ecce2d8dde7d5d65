//! Everything the service logs, in one place: the subscriber, one line per
//! request under a span carrying its request id, and slow statements; and
//! the Prometheus [`metrics`] counted beside them.

pub mod metrics;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use poem::{Endpoint, IntoResponse, Request, Response, http::HeaderValue};
use poem_openapi::OperationId;
use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// The header a request may name itself with, echoed in every response.
pub const REQUEST_ID: &str = "x-request-id";

/// Statements at least this slow are logged at `warn`; the rest at `trace`.
/// They are logged under the `todo_api::db` target, so
/// `RUST_LOG=todo_api::db=trace` shows every statement.
const SLOW_QUERY: Duration = Duration::from_millis(200);

/// Installs the global subscriber. Without `RUST_LOG`, the service logs at
/// `info` and its dependencies at `warn`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,todo_api=info,migration=info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests, embedding) keeps the first subscriber.
    drop(installed);
}

/// One log line per request, with the request id (the client's
/// `X-Request-Id` if it sent a sane one) echoed in the response. Everything
/// logged while the request runs is inside its `request` span. An error
/// that reaches this far is answered with `to_response`'s response.
pub async fn log_request<E, F, R>(
    next: Arc<E>,
    req: Request,
    to_response: F,
) -> poem::Result<Response>
where
    E: Endpoint,
    F: FnOnce(poem::Error) -> R,
    R: Future<Output = Response>,
{
    let request_id = req
        .header(REQUEST_ID)
        .filter(|id| is_sane_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", %request_id);
    let started = Instant::now();
    let mut response = match next.call(req).instrument(span.clone()).await {
        Ok(response) => response.into_response(),
        Err(err) => to_response(err).await,
    };
    let elapsed = started.elapsed();
    let operation = response.data::<OperationId>().map(|id| id.0);
    let status = response.status().as_u16();
    metrics::request_answered(operation, status, elapsed);
    tracing::info!(
        parent: &span,
        %method,
        path,
        operation = operation.unwrap_or("-"),
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Accepts ids that are safe to log and echo: short, printable ASCII.
fn is_sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// SeaORM's per-statement callback: the statement latency metric, and the
/// statement log. It runs inside the statement's future, so a slow
/// statement's line carries the spans of the request and of the task
/// operation (`user_id`, `task_id`) that sent it.
pub fn log_query(info: &sea_orm::metric::Info<'_>) {
    metrics::statement_finished(info.elapsed, info.failed);
    let elapsed_ms = info.elapsed.as_secs_f64() * 1000.0;
    let sql = &info.statement.sql;
    if info.elapsed >= SLOW_QUERY {
        tracing::warn!(target: "todo_api::db", elapsed_ms, failed = info.failed, %sql, "slow query");
    } else {
        tracing::trace!(target: "todo_api::db", elapsed_ms, failed = info.failed, %sql, "query");
    }
}

/// A database URL fit for a log line: the password replaced.
pub fn redact(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => database_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example/todo?sslmode=require"),
            "postgres://app:***@db.example/todo?sslmode=require"
        );
        assert_eq!(
            redact("sqlite://todo.db?mode=rwc"),
            "sqlite://todo.db?mode=rwc"
        );
    }

    #[test]
    fn request_ids_must_be_short_printable_ascii() {
        assert!(is_sane_request_id("req-123_abc"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id(&"x".repeat(129)));
    }
}
