//! How the framework's own errors and the documented error statuses meet
//! the one error type: parameter, body and routing failures classified into
//! [`ApiError`], and each status's problem response described once for the
//! OpenAPI document.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse,
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

/// The problem document a client receives for a documented error status,
/// rendered by the same code as real errors; the OpenAPI document shows these
/// as the examples of each error response.
pub fn example_problem(status: u16) -> Option<serde_json::Value> {
    let error = match status {
        400 => ApiError::BadRequest(
            "request body is not valid JSON: expected `,` or `}` at line 1 column 18".into(),
        ),
        401 => ApiError::Unauthorized("token has expired".into()),
        403 => ApiError::Forbidden,
        404 => ApiError::task_not_found(),
        408 => ApiError::BodyTimeout(std::time::Duration::from_secs(30)),
        413 => ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        },
        422 => ApiError::Validation(vec![FieldError::example()]),
        503 => ApiError::Unavailable(DbErr::Custom("connection refused".into())),
        _ => return None,
    };
    poem_openapi::types::ToJSON::to_json(&error.problem())
}

fn problem_response(status: u16) -> MetaResponse {
    let header = |name: &str, description: &str| MetaHeader {
        name: name.into(),
        description: Some(description.into()),
        required: true,
        deprecated: false,
        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
    };
    let (description, headers) = match status {
        400 => (
            "Malformed request: the body is not valid JSON, or `Content-Type` is not `application/json`.",
            vec![],
        ),
        401 => (
            "Missing, malformed, expired or wrongly signed bearer token.",
            vec![header(
                "WWW-Authenticate",
                "A `Bearer` challenge saying why the token was rejected.",
            )],
        ),
        403 => (
            "The `user_id` in the path is not the token's subject.",
            vec![],
        ),
        404 => (
            "No such task for this user (another user's task is also 404).",
            vec![],
        ),
        408 => (
            "The request body did not arrive within `BODY_TIMEOUT` (30 s by default); the connection is closed.",
            vec![],
        ),
        413 => (
            "The request body is over 64 KiB; the connection is closed.",
            vec![],
        ),
        422 => (
            "Well-formed but invalid input; `errors` lists each bad field.",
            vec![],
        ),
        503 => (
            "The database is unreachable or cannot store writes (disk full, read-only), the auth server's JWKS has not been fetched yet, or the request took longer than `REQUEST_TIMEOUT`; retry later.",
            vec![header("Retry-After", "Seconds to wait before retrying.")],
        ),
        _ => unreachable!("undocumented problem status {status}"),
    };
    MetaResponse {
        description,
        status: Some(status),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: PROBLEM_JSON,
            schema: Problem::schema_ref(),
        }],
        headers,
    }
}

/// Every status an `/api` operation can answer with besides its success,
/// documented once so the published spec and the behaviour cannot disagree.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: [400, 401, 403, 404, 408, 413, 422, 503]
                .into_iter()
                .map(problem_response)
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
            responses: vec![problem_response(503)],
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

/// Turns any error that escaped a handler, including the framework's own,
/// into a problem document. Installed once, around the whole app.
pub async fn problem_for(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    ApiError::from(err).into_response()
}

impl From<poem::Error> for ApiError {
    fn from(err: poem::Error) -> Self {
        if let Some(e) = err.downcast_ref::<ParseParamError>() {
            let rule = query_rule(e.name).map(str::to_owned);
            return Self::invalid(e.name, rule.unwrap_or_else(|| e.reason.clone()));
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
