//! The one error type of the HTTP edge, and the RFC 9457 problem document
//! every error is answered with. Handlers return `Result<_, ApiError>`; the
//! framework's own errors are classified into it by `api::problems`, so every
//! error a client sees has the same shape.

use poem::{
    IntoResponse, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{Object, types::Example};
use sea_orm::DbErr;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Marks a response answered again for a retried `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// An RFC 9457 problem document: the body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct Problem {
    /// `about:blank` when the HTTP status says what kind of problem this is;
    /// otherwise a URI reference naming it, such as
    /// `/problems/precondition-failed`.
    #[oai(rename = "type")]
    pub kind: String,
    /// The HTTP status phrase, e.g. `Unprocessable Entity`.
    pub title: String,
    /// The HTTP status code, repeated for clients that only see the body.
    pub status: u16,
    /// What went wrong with this request, for a human.
    pub detail: String,
    /// One entry per invalid field; present on 422 responses only.
    pub errors: Option<Vec<FieldError>>,
    /// On a 412: the task's version now stored (its `ETag` unquoted). Read
    /// the task again, merge, and retry with `If-Match` set to it.
    pub current_version: Option<i64>,
}

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(example)]
pub struct FieldError {
    /// The field's name in the request body or query string, e.g. `title`.
    pub field: String,
    /// Why the value was rejected.
    pub message: String,
}

impl Example for Problem {
    fn example() -> Self {
        Self {
            kind: "about:blank".into(),
            title: "Unprocessable Entity".into(),
            status: 422,
            detail: "the request has invalid fields".into(),
            errors: Some(vec![FieldError::example()]),
            current_version: None,
        }
    }
}

impl Example for FieldError {
    fn example() -> Self {
        Self::new("title", "must not be blank")
    }
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("this token may not access another user's resources")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    BodyTimeout(std::time::Duration),
    #[error("the request took longer than {} s; retry later", .0.as_secs_f64())]
    DeadlineExceeded(std::time::Duration),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// `If-Match` named none of the task's current version; nothing changed.
    #[error(
        "`If-Match` does not name the task's current version, {current_version} \
         (send its ETag, quotes included: `\"{current_version}\"`); nothing was changed"
    )]
    PreconditionFailed { current_version: i64 },
    /// `REQUIRE_IF_MATCH` is on and the write did not send `If-Match`.
    #[error("this server requires `If-Match` with the version you read (its `ETag`)")]
    PreconditionRequired,
    /// The `Idempotency-Key` was used for a different request.
    #[error(
        "this Idempotency-Key was used for a different request (method, path or body); \
         use a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// A request with this `Idempotency-Key` is still being worked on.
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    IdempotencyKeyInFlight,
    /// The problem an earlier request with the same `Idempotency-Key` got,
    /// answered again.
    #[error("{}", .problem.detail)]
    Replayed {
        status: StatusCode,
        problem: Box<Problem>,
    },
    /// A change feed cursor from before changes the feed has forgotten.
    #[error(
        "this cursor is older than the changes this server still remembers; \
         sync again from the start (without `since`)"
    )]
    CursorExpired,
    /// The user has `MAX_STREAMS_PER_USER` event streams open already.
    #[error(
        "too many event streams open for this user on this server; close one (another tab?) \
         or retry later"
    )]
    TooManyStreams,
    /// The user spent their `RATE_LIMIT` quota on this instance.
    #[error(
        "too many requests: you are over this server's rate limit; retry after `Retry-After` seconds"
    )]
    RateLimited { retry_after_secs: u64 },
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    /// No key set has been fetched from the auth server yet, so no token can be checked.
    #[error("the auth server's keys (JWKS) cannot be fetched, so the token cannot be checked yet")]
    AuthUnavailable,
    /// Any other client error the framework raised, with its own status.
    #[error("{1}")]
    Http(StatusCode, String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn task_not_found() -> Self {
        Self::NotFound("no task with this id for this user".into())
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            Self::CursorExpired => StatusCode::GONE,
            Self::TooManyStreams | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Replayed { status, .. } => *status,
            Self::Unavailable(_) | Self::AuthUnavailable | Self::DeadlineExceeded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Http(status, _) => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document this error is answered with.
    pub fn problem(&self) -> Problem {
        if let Self::Replayed { problem, .. } = self {
            return (**problem).clone();
        }
        let status = self.status();
        let kind = match self {
            Self::PreconditionFailed { .. } => "/problems/precondition-failed",
            Self::IdempotencyKeyReused => "/problems/idempotency-key-reused",
            Self::CursorExpired => "/problems/cursor-expired",
            Self::RateLimited { .. } => "/problems/rate-limited",
            _ => "about:blank",
        };
        Problem {
            kind: kind.into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            current_version: match self {
                Self::PreconditionFailed { current_version } => Some(*current_version),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // The cause chain on one line; no backtrace, which would cost
            // its capture on every error and bury the line in frames.
            Self::Internal(source) => {
                tracing::error!(error = %format!("{source:#}"), "request failed")
            }
            Self::Unavailable(source) => tracing::warn!(error = %source, "database unavailable"),
            _ => {}
        }
        let body = poem_openapi::types::ToJSON::to_json_string(&self.problem());
        let mut response = Response::builder()
            .status(self.status())
            .content_type(PROBLEM_JSON)
            .body(body);
        match self {
            Self::Unauthorized(detail) => {
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    detail.replace(['"', '\\'], "'")
                );
                if let Ok(value) = challenge.parse() {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::Unavailable(_) | Self::AuthUnavailable | Self::DeadlineExceeded(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::IdempotencyKeyInFlight | Self::TooManyStreams => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Replayed { .. } => {
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            }
            // The rest of the body was not read: the connection cannot carry
            // another request, and the client must know before it sends one.
            Self::PayloadTooLarge { .. } | Self::BodyTimeout(_) => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<ApiError> for poem::Error {
    fn from(err: ApiError) -> Self {
        poem::Error::from_response(err.into_response())
    }
}
