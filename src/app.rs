//! Building the whole app from configuration. `main` and every test call
//! [`build_app`](crate::app::build_app), so tests exercise the real wiring.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use http_body_util::{BodyExt, combinators::BoxBody};
use metrics::Gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
    endpoint::BoxEndpoint,
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Cors,
    web::headers::HeaderMapExt,
};
use poem_openapi::OperationId;
use tokio::sync::Semaphore;

use crate::{
    api,
    api::problems::{check_declared_status, problem_for},
    auth::{TokenVerifier, VerifiedClaims},
    config::{Config, MAX_BODY_BYTES},
    db,
    error::{ApiError, IDEMPOTENT_REPLAYED},
    events::{self, ChangeHub, FanOut},
    idempotency::{self, Idempotency},
    rate_limit::RateLimiter,
    server,
    state::AppState,
    telemetry::{self, metrics::Counted},
    users::KnownUsers,
};

/// The ready-to-serve app and the state inside it.
pub struct App {
    pub state: AppState,
    pub endpoint: BoxEndpoint<'static>,
    /// `GET /metrics`, to be served on `METRICS_ADDR` (`None` when unset).
    pub metrics: Option<BoxEndpoint<'static>>,
}

/// Connects to the database, applies pending migrations (unless
/// `RUN_MIGRATIONS=false`), and assembles routes and middleware.
pub async fn build_app(config: &Config) -> anyhow::Result<App> {
    // First, so that everything registered from here on is recorded.
    let metrics = match config.metrics_addr {
        Some(_) => Some(
            telemetry::metrics::install()
                .map_err(|err| anyhow::anyhow!("cannot install the metrics recorder: {err}"))?,
        ),
        None => None,
    };
    let Some(verifier) = TokenVerifier::from_config(config) else {
        anyhow::bail!(
            "no way to verify tokens: set BETTER_AUTH_URL (or JWKS_URL) for Better Auth's \
             JWT plugin, and/or BETTER_AUTH_SECRET for HS256 tokens"
        );
    };
    let db = db::connect(config).await.with_context(|| {
        format!(
            "cannot connect to DATABASE_URL ({})",
            telemetry::redact(&config.database_url)
        )
    })?;
    if config.run_migrations {
        db::migrate(&db.writer)
            .await
            .context("database migration failed")?;
    }
    if config.changes_retention < config.trash_retention {
        anyhow::bail!(
            "CHANGES_RETENTION ({}) must be at least TRASH_RETENTION ({}): a client syncing \
             within CHANGES_RETENTION must learn of every purge",
            humantime::format_duration(config.changes_retention),
            humantime::format_duration(config.trash_retention)
        );
    }
    let db_is_sqlite = db.writer.get_database_backend() == sea_orm::DbBackend::Sqlite;
    let fan_out = if db_is_sqlite {
        FanOut::InProcess
    } else {
        FanOut::Notifications(db.writer.clone())
    };
    let state = AppState {
        db,
        verifier: Arc::new(verifier),
        users: Arc::new(KnownUsers::default()),
        write_health: Arc::default(),
        require_if_match: config.require_if_match,
        idempotency: Arc::new(Idempotency::new(config.idempotency_ttl)),
        changes: Arc::new(ChangeHub::new(
            config.max_streams_per_user as usize,
            config.stream_keep_alive,
            fan_out,
        )),
    };
    // Other instances' changes (and this one's) arrive as notifications on
    // PostgreSQL; on SQLite this process makes every change and wakes the
    // streams itself (`record_write_outcome`, the purge).
    if !db_is_sqlite {
        let url = config
            .database_listen_url
            .clone()
            .unwrap_or_else(|| config.database_url.clone());
        tokio::spawn(events::listen_forever(url, state.changes.clone()));
    }
    // Tags no task carries any more (a PATCH that replaced them, a task deleted for good):
    // swept here rather than in the write's own transaction, where deleting
    // a tag would race concurrent writes linking it.
    tokio::spawn(sweep_forever(
        "orphan tags",
        SWEEP_INTERVAL,
        state.db.writer.clone(),
        |db, batch| async move { crate::tasks::sweep_orphan_tags(&db, batch).await },
    ));
    // Expired idempotency keys, as often as they expire (at most every 10
    // minutes): a remembered response is kept no longer than promised.
    tokio::spawn(sweep_forever(
        "expired idempotency keys",
        config.idempotency_ttl.min(SWEEP_INTERVAL),
        state.db.writer.clone(),
        |db, batch| async move { idempotency::forget_expired(&db, batch).await },
    ));
    // Tasks trashed longer than TRASH_RETENTION, and deletions the change
    // feed remembers longer than CHANGES_RETENTION, as often as they expire
    // (at most every 10 minutes).
    let trash_retention = config.trash_retention;
    let purged = state.changes.clone();
    tokio::spawn(sweep_forever(
        "expired trash",
        trash_retention.min(SWEEP_INTERVAL),
        state.db.writer.clone(),
        move |db, batch| {
            let purged = purged.clone();
            async move {
                let cutoff = chrono::Utc::now() - trash_retention;
                let deleted = crate::tasks::purge_trash(&db, cutoff, batch).await?;
                if deleted > 0 {
                    purged.written_by_many();
                }
                Ok(deleted)
            }
        },
    ));
    let changes_retention = config.changes_retention;
    tokio::spawn(sweep_forever(
        "forgotten deletions",
        changes_retention.min(SWEEP_INTERVAL),
        state.db.writer.clone(),
        move |db, batch| async move {
            let cutoff = chrono::Utc::now().timestamp()
                - i64::try_from(changes_retention.as_secs()).unwrap_or(i64::MAX);
            crate::tasks::forget_deletions(&db, cutoff, batch).await
        },
    ));
    let rate_limiter = config
        .rate_limit
        .0
        .map(|limit| Arc::new(RateLimiter::new(limit)));
    if let Some(limiter) = rate_limiter.clone() {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                every.tick().await;
                limiter.forget_idle();
            }
        });
    }
    let in_flight = Arc::new(Semaphore::new(config.max_requests_in_flight as usize));
    let limits = RequestLimits {
        body_timeout: config.body_timeout,
        request_timeout: config.request_timeout,
        in_flight: in_flight.clone(),
        waiting: telemetry::metrics::waiting_requests(),
        rate: rate_limiter,
    };
    let endpoint = routes(state.clone(), &config.cors_origins, limits);
    let metrics = metrics.map(|handle| {
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(telemetry::metrics::UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let slots = config.max_requests_in_flight as usize;
        metrics_endpoint(handle, state.clone(), in_flight, slots)
    });
    Ok(App {
        state,
        endpoint,
        metrics,
    })
}

/// `GET /metrics`: Prometheus' text format, with the gauges that are read
/// rather than counted (pools, requests in flight, streams) read now.
fn metrics_endpoint(
    handle: PrometheusHandle,
    state: AppState,
    in_flight: Arc<Semaphore>,
    slots: usize,
) -> BoxEndpoint<'static> {
    let scrape = poem::endpoint::make_sync(move |_| {
        let snapshot = telemetry::metrics::Snapshot {
            pools: db::pool_stats(&state.db),
            requests_in_flight: slots.saturating_sub(in_flight.available_permits()),
            event_streams_open: state.changes.open_streams(),
        };
        Response::builder()
            .content_type(telemetry::metrics::CONTENT_TYPE)
            .body(telemetry::metrics::render(&handle, &snapshot))
    });
    Route::new().at("/metrics", poem::get(scrape)).boxed()
}

fn routes(state: AppState, cors_origins: &[String], limits: RequestLimits) -> BoxEndpoint<'static> {
    let RequestLimits {
        body_timeout,
        request_timeout,
        in_flight,
        waiting,
        rate,
    } = limits;
    let verifier = state.verifier.clone();
    let api = api::service();
    let spec = api::document::document_endpoint();
    let docs = api::document::swagger_ui();
    Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .around(record_write_outcome)
        .data(state)
        .around(limit_request)
        .catch_all_error(problem_for)
        .around(check_declared_status)
        .around(advertise_allowed_methods)
        .with(cors(cors_origins))
        .around(same_origin_is_not_cross_origin)
        .around(move |next, req| {
            admit(
                next,
                req,
                in_flight.clone(),
                waiting.clone(),
                request_timeout,
            )
        })
        // Outside admission: a user over their quota does not wait for a slot.
        .around(move |next, req| limit_rate(next, req, rate.clone(), verifier.clone()))
        .around(move |next, req| receive_body(next, req, body_timeout))
        // The inner catch-all sits inside CORS so that error responses get
        // CORS headers; what CORS itself refuses is converted by the log.
        .around(|next, req| telemetry::log_request(next, req, problem_for))
        .boxed()
}

/// The rate limit headers every `/api` response to a verified user carries.
const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
const RATE_LIMIT: &str = "ratelimit";

/// `RATE_LIMIT`: counts each `/api` request against its verified user's
/// quota, refuses it (429) when the quota is spent, and tells the user where
/// they stand on every response. A request without a valid token passes
/// untouched: it has no user to count, and its handler answers 401.
async fn limit_rate<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    limiter: Option<Arc<RateLimiter>>,
    verifier: Arc<TokenVerifier>,
) -> poem::Result<Response> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let (Some(limiter), Some(token)) = (limiter, token) else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    if !req.uri().path().starts_with("/api/") {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let Ok(claims) = verifier.verify(&token).await else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    let (mut response, standing) = match limiter.check(&claims.sub) {
        Ok(standing) => {
            req.extensions_mut()
                .insert(VerifiedClaims { token, claims });
            let response = match next.call(req).await {
                Ok(response) => response.into_response(),
                Err(err) => problem_for(err).await,
            };
            (response, standing)
        }
        Err(standing) => {
            telemetry::metrics::rate_limited();
            let refused = ApiError::RateLimited {
                retry_after_secs: standing.reset_secs,
            };
            let mut response = refused.into_response();
            // Named for the request log and the metrics, as if the
            // operation had answered.
            if let Some(id) = api::document::operation_id(req.method().as_str(), req.uri().path()) {
                response.set_data(OperationId(id));
            }
            (response, standing)
        }
    };
    let headers = response.headers_mut();
    headers.insert(RATE_LIMIT_POLICY, limiter.policy().clone());
    headers.insert(RATE_LIMIT, standing.header());
    Ok(response)
}

/// The request header that makes a create or a toggle safe to retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request header an event stream resumes after.
const LAST_EVENT_ID: &str = "last-event-id";

/// What the browser frontend may send and read: besides the token and JSON,
/// the headers of concurrent edits and retries.
fn cors(origins: &[String]) -> Cors {
    let cors = Cors::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
        ])
        .allow_header(telemetry::REQUEST_ID)
        .allow_header(IDEMPOTENCY_KEY)
        // A fetch-based EventSource resuming an event stream.
        .allow_header(LAST_EVENT_ID)
        .expose_headers([
            header::LOCATION,
            header::WWW_AUTHENTICATE,
            header::ETAG,
            header::RETRY_AFTER,
        ])
        .expose_header(telemetry::REQUEST_ID)
        .expose_header(IDEMPOTENT_REPLAYED)
        .expose_header(RATE_LIMIT_POLICY)
        .expose_header(RATE_LIMIT)
        .max_age(600);
    // No origins configured means any origin: only `*` does that.
    if origins.iter().any(|origin| origin == "*") {
        cors
    } else {
        cors.allow_origins(origins.iter().map(String::as_str))
    }
}

/// How often the background sweeps delete what is no longer needed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Rows a sweep deletes per statement, so that no statement holds the write
/// lock for long.
const SWEEP_BATCH: u64 = 1000;

/// Every `every`, deletes in batches what `sweep(db, batch)` finds (it
/// returns how many rows it deleted) until a batch comes back short.
async fn sweep_forever<F, Fut>(
    what: &'static str,
    every: Duration,
    db: sea_orm::DatabaseConnection,
    sweep: F,
) where
    F: Fn(sea_orm::DatabaseConnection, u64) -> Fut,
    Fut: Future<Output = Result<u64, sea_orm::DbErr>>,
{
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        loop {
            match sweep(db.clone(), SWEEP_BATCH).await {
                Ok(deleted) if deleted == SWEEP_BATCH => continue,
                Ok(deleted) => {
                    tracing::debug!(deleted, what, "swept");
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, what, "sweep failed; retrying later");
                    break;
                }
            }
        }
    }
}

/// Tells [`db::WriteHealth`] whether the last write request committed, so
/// that `/health` fails while writes cannot commit (disk full, read-only)
/// and recovers when they can; and the user's event streams that their
/// tasks may have changed (see [`events::ChangeHub::written`]).
async fn record_write_outcome<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let is_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Reads pass straight through: nothing to record.
    let Some(state) = req.data::<AppState>().filter(|_| is_write) else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    let (health, changes) = (state.write_health.clone(), state.changes.clone());
    let writer = api_user(req.uri().path());
    let result = next.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(response) => response.status(),
        Err(err) => err.status(),
    };
    if status.is_success() {
        health.record(true);
        if let Some(user_id) = writer {
            changes.written(&user_id);
        }
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        health.record(false);
    }
    result
}

/// A `405` says which methods the path does take (RFC 9110 §15.5.6).
async fn advertise_allowed_methods<E: Endpoint>(
    next: Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = next.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(value) = api::document::allowed_methods(&path)
            .and_then(|methods| HeaderValue::from_str(&methods).ok())
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Ok(response)
}

/// Swagger UI at `/docs` calls the API from the API's own origin, and browsers
/// send `Origin` on such same-origin writes too. They are not cross-origin, so
/// CORS (which only knows the configured frontend origins) must not refuse
/// them: the header is dropped when it names the host the request was sent to.
async fn same_origin_is_not_cross_origin<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
) -> poem::Result<E::Output> {
    let same_origin = match (req.header(header::ORIGIN), req.header(header::HOST)) {
        (Some(origin), Some(host)) => url::Url::parse(origin).is_ok_and(|origin| {
            let authority = match (origin.host_str(), origin.port()) {
                (Some(name), Some(port)) => format!("{name}:{port}"),
                (Some(name), None) => name.to_owned(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }),
        _ => false,
    };
    if same_origin {
        req.headers_mut().remove(header::ORIGIN);
    }
    next.call(req).await
}

/// How long a request's body may take to arrive, and the service to answer it.
struct RequestLimits {
    body_timeout: Duration,
    request_timeout: Duration,
    in_flight: Arc<Semaphore>,
    /// Requests waiting for an in-flight slot, for the metrics.
    waiting: Gauge,
    /// `RATE_LIMIT`; `None` when off.
    rate: Option<Arc<RateLimiter>>,
}

/// Reads the whole body before the rest of the app runs, within
/// [`MAX_BODY_BYTES`] (413: at once when `Content-Length` says so, otherwise
/// after reading just past it) and the body timeout (408). Unlike poem's
/// `SizeLimit`, a request without a body needs no length.
///
/// It sits outside everything but the request log, so a client that is slow
/// to send costs this layer, not the stack (see [`admit`]). A failure is left
/// on the request for [`limit_request`] to raise inside the CORS and problem
/// layers, so that it gets the same response as any error.
async fn receive_body<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    body_timeout: Duration,
) -> poem::Result<E::Output> {
    match read_body(&mut req, body_timeout).await {
        Ok(body) => {
            if let Some(progress) = req.extensions().get::<server::BodyProgress>() {
                progress.received();
            }
            req.set_body(body);
        }
        Err(unread) => {
            req.extensions_mut().insert(unread);
        }
    }
    next.call(req).await
}

/// When a request must be answered by, or get 503: `REQUEST_TIMEOUT` after
/// its body arrived.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

/// Lets at most `MAX_REQUESTS_IN_FLIGHT` requests into the app at once, in
/// arrival order; the request deadline starts here, so waiting counts.
///
/// Only an admitted request allocates the rest of the app's future: the
/// nested middleware, the handler and its database query hold tens of
/// kilobytes while they wait for a pooled connection. Without this bound a
/// thousand clients meant a thousand such futures queued in the pool
/// (over 60 KB each); now they queue here at the cost of a permit.
async fn admit<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    in_flight: Arc<Semaphore>,
    waiting: Gauge,
    request_timeout: Duration,
) -> poem::Result<E::Output> {
    let deadline = Deadline {
        at: Instant::now() + request_timeout,
        timeout: request_timeout,
    };
    // The semaphore is never closed; a timed-out wait is raised as 503 by
    // `limit_request`, inside the CORS and problem layers.
    let counted = Counted::new(waiting);
    let permit = tokio::time::timeout_at(deadline.at.into(), in_flight.acquire_owned())
        .await
        .ok()
        .and_then(Result::ok);
    drop(counted);
    req.extensions_mut().insert(deadline);
    let response = Box::pin(next.call(req)).await;
    drop(permit);
    response
}

/// Why a request's body was not read.
#[derive(Debug, Clone)]
enum UnreadBody {
    TooLarge,
    TimedOut(Duration),
    Broken(String),
}

impl From<UnreadBody> for ApiError {
    fn from(unread: UnreadBody) -> Self {
        match unread {
            UnreadBody::TooLarge => ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            },
            UnreadBody::TimedOut(timeout) => ApiError::BodyTimeout(timeout),
            UnreadBody::Broken(reason) => {
                ApiError::BadRequest(format!("cannot read request body: {reason}"))
            }
        }
    }
}

async fn read_body(req: &mut Request, body_timeout: Duration) -> Result<bytes::Bytes, UnreadBody> {
    if req
        .headers()
        .typed_get::<poem::web::headers::ContentLength>()
        .is_some_and(|length| length.0 > MAX_BODY_BYTES as u64)
    {
        return Err(UnreadBody::TooLarge);
    }
    let read = collect_body(req.take_body());
    tokio::time::timeout(body_timeout, read)
        .await
        .map_err(|_| UnreadBody::TimedOut(body_timeout))?
}

/// Copies the body out chunk by chunk: poem's `into_bytes_limit` keeps a
/// 4 KiB buffer in its future and a reference into hyper's read buffer
/// between chunks, which a slow client would hold for its whole upload.
async fn collect_body(body: poem::Body) -> Result<bytes::Bytes, UnreadBody> {
    let mut body: BoxBody<bytes::Bytes, std::io::Error> = body.into();
    let mut data = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| UnreadBody::Broken(err.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if data.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(UnreadBody::TooLarge);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

/// Raises what [`receive_body`] could not read, then holds the handler to the
/// deadline [`admit`] set (503).
async fn limit_request<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<E::Output> {
    if let Some(unread) = req.extensions().get::<UnreadBody>() {
        return Err(ApiError::from(unread.clone()).into());
    }
    // `admit`, which runs first, always sets one.
    let Some(deadline) = req.extensions().get::<Deadline>().copied() else {
        return next.call(req).await;
    };
    // Spent waiting for a slot: the handler must not start at all (a
    // timeout polls its future once before looking at the clock).
    if Instant::now() >= deadline.at {
        return Err(ApiError::DeadlineExceeded(deadline.timeout).into());
    }
    tokio::time::timeout_at(deadline.at.into(), next.call(req))
        .await
        .map_err(|_| ApiError::DeadlineExceeded(deadline.timeout))?
}

/// The user of an `/api/{user_id}/...` path, decoded.
fn api_user(path: &str) -> Option<String> {
    let segment = path.strip_prefix("/api/")?.split('/').next()?;
    let user_id = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    Some(user_id.into_owned()).filter(|user_id| !user_id.is_empty())
}
