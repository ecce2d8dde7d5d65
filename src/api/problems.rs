//! How the framework's own errors and the documented error statuses meet
//! the one error type: parameter, body and routing failures classified into
//! [`ApiError`], and each status's problem response described once for the
//! OpenAPI document.

use std::sync::Arc;

use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, OperationId,
    error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    },
    registry::{
        MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
    },
    types::{Example, Type},
};
use sea_orm::DbErr;

use super::query_rule;
use crate::{
    config::MAX_BODY_BYTES,
    error::{ApiError, FieldError, PROBLEM_JSON, Problem},
};

/// An error status the API documents, with what it means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorStatus {
    BadRequest = 400,
    Unauthorized = 401,
    Forbidden = 403,
    NotFound = 404,
    RequestTimeout = 408,
    Conflict = 409,
    Gone = 410,
    PreconditionFailed = 412,
    PayloadTooLarge = 413,
    Unprocessable = 422,
    PreconditionRequired = 428,
    TooManyRequests = 429,
    Unavailable = 503,
}

use ErrorStatus::*;

/// Every error each operation can answer with, besides its success: the one
/// declaration the OpenAPI document's responses are built from, and that
/// every answered error is checked against ([`is_declared`]). 400, 408 and
/// 413 come with a JSON body; 401 and 403 with the bearer token and the
/// `user_id` path; 429 with the rate limit, on every operation that takes a
/// token; 503 can answer anything (database, JWKS, `REQUEST_TIMEOUT`).
const DECLARED_ERRORS: &[(&str, &[ErrorStatus])] = &[
    (
        "listTasks",
        &[
            Unauthorized,
            Forbidden,
            Unprocessable,
            TooManyRequests,
            Unavailable,
        ],
    ),
    // 409: a request with the same `Idempotency-Key` is in progress.
    ("createTask", WRITES_WITH_BODY),
    (
        "getTask",
        &[
            Unauthorized,
            Forbidden,
            NotFound,
            TooManyRequests,
            Unavailable,
        ],
    ),
    ("replaceTask", CONDITIONAL_WRITES_WITH_BODY),
    ("updateTask", CONDITIONAL_WRITES_WITH_BODY),
    (
        "deleteTask",
        &[
            Unauthorized,
            Forbidden,
            NotFound,
            PreconditionFailed,
            PreconditionRequired,
            TooManyRequests,
            Unavailable,
        ],
    ),
    // 409 and 422: its `Idempotency-Key` is in progress, or was used for
    // another request.
    (
        "toggleTask",
        &[
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PreconditionFailed,
            Unprocessable,
            PreconditionRequired,
            TooManyRequests,
            Unavailable,
        ],
    ),
    (
        "getStats",
        &[Unauthorized, Forbidden, TooManyRequests, Unavailable],
    ),
    (
        "listTrash",
        &[
            Unauthorized,
            Forbidden,
            Unprocessable,
            TooManyRequests,
            Unavailable,
        ],
    ),
    (
        "restoreTask",
        &[
            Unauthorized,
            Forbidden,
            NotFound,
            PreconditionFailed,
            TooManyRequests,
            Unavailable,
        ],
    ),
    (
        "deleteTrashedTask",
        &[
            Unauthorized,
            Forbidden,
            NotFound,
            TooManyRequests,
            Unavailable,
        ],
    ),
    (
        "emptyTrash",
        &[Unauthorized, Forbidden, TooManyRequests, Unavailable],
    ),
    // 410: the cursor is older than what the feed remembers.
    (
        "listChanges",
        &[
            Unauthorized,
            Forbidden,
            Gone,
            Unprocessable,
            TooManyRequests,
            Unavailable,
        ],
    ),
    // 429 also: MAX_STREAMS_PER_USER streams are open already.
    (
        "streamChanges",
        &[
            Unauthorized,
            Forbidden,
            Gone,
            Unprocessable,
            TooManyRequests,
            Unavailable,
        ],
    ),
    (
        "listTags",
        &[Unauthorized, Forbidden, TooManyRequests, Unavailable],
    ),
    // 404: the user row can be gone by the time it is read (deleted
    // between provisioning and the read).
    (
        "getMe",
        &[
            Unauthorized,
            Forbidden,
            NotFound,
            TooManyRequests,
            Unavailable,
        ],
    ),
    ("health", &[Unavailable]),
];

/// A write with a JSON body (which can be malformed, slow or too large, and
/// carry invalid fields) and an `Idempotency-Key`.
const WRITES_WITH_BODY: &[ErrorStatus] = &[
    BadRequest,
    RequestTimeout,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    Conflict,
    Unprocessable,
    TooManyRequests,
    Unavailable,
];

/// A conditional write with a JSON body to one task named in the path.
const CONDITIONAL_WRITES_WITH_BODY: &[ErrorStatus] = &[
    BadRequest,
    RequestTimeout,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    PreconditionRequired,
    TooManyRequests,
    Unavailable,
];

/// The errors `operation` declares; `None` for an operation missing from
/// `DECLARED_ERRORS`, which the document refuses to render.
pub fn declared_errors(operation: &str) -> Option<&'static [ErrorStatus]> {
    DECLARED_ERRORS
        .iter()
        .find(|(id, _)| *id == operation)
        .map(|(_, errors)| *errors)
}

/// Logs, as the bug it is, an error answered with a status its operation
/// does not declare: the published document would be wrong about it.
pub async fn check_declared_status<E: Endpoint>(
    next: Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    let response = next.call(req).await?.into_response();
    let status = response.status();
    // A 500 is a bug of its own, logged where it happened.
    let is_answered_error = status.is_client_error()
        || (status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(OperationId(operation)) = response.data::<OperationId>().copied()
        && is_answered_error
        && !is_declared(operation, status)
    {
        tracing::error!(
            operation,
            status = status.as_u16(),
            "answered with an error status the OpenAPI document does not declare for this operation"
        );
    }
    Ok(response)
}

/// Whether `operation` declares that it can answer `status`.
pub fn is_declared(operation: &str, status: StatusCode) -> bool {
    declared_errors(operation)
        .is_some_and(|errors| errors.iter().any(|error| error.code() == status.as_u16()))
}

impl ErrorStatus {
    pub const ALL: [Self; 13] = [
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        RequestTimeout,
        Conflict,
        Gone,
        PreconditionFailed,
        PayloadTooLarge,
        Unprocessable,
        PreconditionRequired,
        TooManyRequests,
        Unavailable,
    ];

    /// The HTTP status code.
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }

    /// An error answered with this status, as the document's example.
    fn example(self) -> ApiError {
        match self {
            BadRequest => ApiError::BadRequest(
                "request body is not valid JSON: expected `,` or `}` at line 1 column 18".into(),
            ),
            Unauthorized => ApiError::Unauthorized("token has expired".into()),
            Forbidden => ApiError::Forbidden,
            NotFound => ApiError::task_not_found(),
            RequestTimeout => ApiError::BodyTimeout(std::time::Duration::from_secs(30)),
            PayloadTooLarge => ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            },
            Conflict => ApiError::IdempotencyKeyInFlight,
            Gone => ApiError::CursorExpired,
            PreconditionFailed => ApiError::PreconditionFailed { current_version: 8 },
            Unprocessable => ApiError::Validation(vec![FieldError::example()]),
            PreconditionRequired => ApiError::PreconditionRequired,
            TooManyRequests => ApiError::RateLimited {
                retry_after_secs: 1,
            },
            Unavailable => ApiError::Unavailable(DbErr::Custom("connection refused".into())),
        }
    }

    /// The problem document a client receives with this status, rendered by
    /// the same code as real errors.
    pub fn example_problem(self) -> Option<serde_json::Value> {
        poem_openapi::types::ToJSON::to_json(&self.example().problem())
    }

    fn description(self) -> &'static str {
        match self {
            BadRequest => {
                "Malformed request: the body is not valid JSON, `Content-Type` is not `application/json`, or `Idempotency-Key` is not one line of 1 to 255 printable ASCII characters."
            }
            Unauthorized => "Missing, malformed, expired or wrongly signed bearer token.",
            Forbidden => "The `user_id` in the path is not the token's subject.",
            NotFound => {
                "No such task for this user (another user's task is also 404; a trashed task is found only in the trash, a live one never there); from `getMe`, no record of the user."
            }
            RequestTimeout => {
                "The request body did not arrive within `BODY_TIMEOUT` (30 s by default); the connection is closed."
            }
            PayloadTooLarge => "The request body is over 64 KiB; the connection is closed.",
            Conflict => {
                "A request with the same `Idempotency-Key` is still being worked on; retry after `Retry-After` seconds to get its response."
            }
            Gone => {
                "The cursor (`since`) is older than what the server still remembers (deletions are kept for `CHANGES_RETENTION`), or was not given out by this server: sync again from the start, without `since`."
            }
            PreconditionFailed => {
                "`If-Match` did not name the task's current version (someone changed it since you read it, or the value was not a quoted `ETag`), and nothing was changed. `current_version` is the version stored; read the task again, merge, and retry with its `ETag`."
            }
            Unprocessable => {
                "Well-formed but invalid input; `errors` lists each bad field. Or the `Idempotency-Key` was used for another request (`type` `/problems/idempotency-key-reused`)."
            }
            PreconditionRequired => {
                "This server runs with `REQUIRE_IF_MATCH`: send `If-Match` with the `ETag` you read."
            }
            TooManyRequests => {
                "You are over the rate limit (`RATE_LIMIT`, 600 requests a minute per user and server by default): wait `Retry-After` seconds. From `streamChanges`, also: you have `MAX_STREAMS_PER_USER` (10 by default) event streams open on this server already; close one."
            }
            Unavailable => {
                "The database is unreachable or cannot store writes (disk full, read-only), the auth server's JWKS has not been fetched yet, or the request took longer than `REQUEST_TIMEOUT`; retry later."
            }
        }
    }

    fn headers(self) -> Vec<MetaHeader> {
        let header = |name: &str, description: &str| MetaHeader {
            name: name.into(),
            description: Some(description.into()),
            required: true,
            deprecated: false,
            schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
        };
        match self {
            Unauthorized => vec![header(
                "WWW-Authenticate",
                "A `Bearer` challenge saying why the token was rejected.",
            )],
            Unavailable | Conflict | TooManyRequests => {
                vec![header("Retry-After", "Seconds to wait before retrying.")]
            }
            _ => vec![],
        }
    }

    fn response(self) -> MetaResponse {
        MetaResponse {
            description: self.description(),
            status: Some(self.code()),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: PROBLEM_JSON,
                schema: Problem::schema_ref(),
            }],
            headers: self.headers(),
        }
    }
}

/// Every problem response an `/api` operation may document; the document
/// keeps, for each operation, the ones `DECLARED_ERRORS` gives it.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: ErrorStatus::ALL
                .into_iter()
                .map(ErrorStatus::response)
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

/// The one failure of `/health`: the database did not answer (503).
#[derive(Debug)]
pub struct DatabaseUnavailable(pub DbErr);

impl ApiResponse for DatabaseUnavailable {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![Unavailable.response()],
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl IntoResponse for DatabaseUnavailable {
    fn into_response(self) -> Response {
        ApiError::Unavailable(self.0).into_response()
    }
}

impl From<DatabaseUnavailable> for poem::Error {
    fn from(err: DatabaseUnavailable) -> Self {
        poem::Error::from_response(err.into_response())
    }
}

/// The rule a header parameter breaks, for the 400 that names it; `None`
/// for any other parameter.
fn header_rule(name: &str) -> Option<&'static str> {
    match name {
        "Idempotency-Key" => Some(crate::idempotency::IdempotencyKey::RULE),
        _ => None,
    }
}

/// Turns any error that escaped a handler, including the framework's own,
/// into a problem document. Installed once, around the whole app.
pub async fn problem_for(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    // Which operation failed, for the request log and its check that the
    // status is one the operation declares.
    let operation = err.data::<OperationId>().copied();
    let mut response = ApiError::from(err).into_response();
    if let Some(operation) = operation {
        response.set_data(operation);
    }
    response
}

impl From<poem::Error> for ApiError {
    fn from(err: poem::Error) -> Self {
        if let Some(e) = err.downcast_ref::<ParseParamError>() {
            if let Some(rule) = header_rule(e.name) {
                return Self::BadRequest(format!("the `{}` header {rule}", e.name));
            }
            // A type that parses itself says its own rule, after the
            // framework's `failed to parse "<type>": `.
            let rule = query_rule(e.name).unwrap_or_else(|| {
                let own = e
                    .reason
                    .strip_prefix("failed to parse ")
                    .and_then(|rest| rest.split_once(": "));
                own.map_or_else(|| e.reason.clone(), |(_, rule)| rule.to_owned())
            });
            return Self::invalid(e.name, rule);
        }
        // The only typed path parameter is the task id: a path that cannot
        // name a task names no task of this user.
        if err.is::<ParsePathError>() {
            return Self::task_not_found();
        }
        if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
            return Self::BadRequest(format!("request body is not valid JSON: {}", e.reason));
        }
        if err.is::<ContentTypeError>() {
            return Self::BadRequest("request body must be sent as `application/json`".into());
        }
        if err.is::<AuthorizationError>() {
            return Self::Unauthorized("missing bearer token".into());
        }
        match err.status() {
            StatusCode::NOT_FOUND => Self::NotFound("no such route".into()),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            },
            status if status.is_client_error() => Self::Http(status, err.to_string()),
            _ => Self::Internal(anyhow::anyhow!("{err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_declares_its_errors_and_every_declaration_names_an_operation() {
        let spec: serde_json::Value = serde_json::from_str(&super::super::service().spec())
            .expect("poem-openapi renders valid JSON");
        let mut operations: Vec<&str> = spec["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.values())
            .filter_map(|methods| methods.as_object())
            .flat_map(|methods| methods.values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        operations.sort_unstable();
        let mut declared: Vec<&str> = DECLARED_ERRORS.iter().map(|(id, _)| *id).collect();
        declared.sort_unstable();
        assert_eq!(operations, declared);
    }

    #[test]
    fn every_operation_that_takes_a_token_can_be_rate_limited() {
        for (operation, errors) in DECLARED_ERRORS {
            assert_eq!(
                errors.contains(&TooManyRequests),
                errors.contains(&Unauthorized),
                "{operation}"
            );
        }
    }

    #[test]
    fn a_status_is_declared_only_for_the_operations_that_list_it() {
        assert!(is_declared("getTask", StatusCode::NOT_FOUND));
        assert!(is_declared("getMe", StatusCode::NOT_FOUND));
        assert!(!is_declared("listTasks", StatusCode::NOT_FOUND));
        assert!(!is_declared("health", StatusCode::UNAUTHORIZED));
        assert!(!is_declared(
            "noSuchOperation",
            StatusCode::SERVICE_UNAVAILABLE
        ));
        for status in ErrorStatus::ALL {
            assert_eq!(ErrorStatus::from_code(status.code()), Some(status));
        }
    }
}
