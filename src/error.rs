//! The one error type of the HTTP edge, and its mapping to RFC 9457 problem
//! documents. Handlers return `Result<_, ApiError>`; framework errors (bad JSON,
//! unknown route, failed parameter parsing, missing token) are converted by
//! [`problem_for`], installed once with `catch_all_error`, so every error a
//! client sees has the same shape.

use poem::{
    IntoResponse, Response,
    http::{StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
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

use crate::db;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document: the body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct Problem {
    /// Always `about:blank`: the HTTP status says what kind of problem this is.
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
            Self::Unavailable(_) | Self::AuthUnavailable | Self::DeadlineExceeded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Http(status, _) => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

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
            limit: crate::app::MAX_BODY_BYTES,
        },
        422 => ApiError::Validation(vec![FieldError::example()]),
        503 => ApiError::Unavailable(DbErr::Custom("connection refused".into())),
        _ => return None,
    };
    poem_openapi::types::ToJSON::to_json(&error.problem())
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        if db::is_unavailable(&err) {
            Self::Unavailable(err)
        } else {
            Self::Internal(err.into())
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
        let body = serde_json::to_vec(&poem_openapi::types::ToJSON::to_json(&self.problem()))
            .expect("a problem document always serialises");
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
                    .insert(header::RETRY_AFTER, "5".parse().expect("valid header"));
            }
            // The rest of the body was not read: the connection cannot carry
            // another request, and the client must know before it sends one.
            Self::PayloadTooLarge { .. } | Self::BodyTimeout(_) => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, "close".parse().expect("valid header"));
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
            let rule = crate::api::query_rule(e.name).map(str::to_owned);
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
                limit: crate::app::MAX_BODY_BYTES,
            },
            status if status.is_client_error() => Self::Http(status, err.to_string()),
            _ => Self::Internal(anyhow::anyhow!("{err}")),
        }
    }
}
