//! Prometheus metrics: every metric the service exports is named and
//! described here, and recorded through the functions below.
//!
//! Until [`install`] has run (`METRICS_ADDR` is set), nothing is recorded and
//! the request path pays only the check of a flag.

use std::{sync::OnceLock, time::Duration};

use metrics::{
    Gauge, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "http_requests_total";
const REQUEST_DURATION: &str = "http_request_duration_seconds";
const REQUESTS_WAITING: &str = "http_requests_waiting";
const REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
const CONNECTIONS_OPEN: &str = "http_connections_open";
const RATE_LIMITED: &str = "rate_limited_requests_total";
const POOL_CONNECTIONS: &str = "db_pool_connections";
const POOL_MAX_CONNECTIONS: &str = "db_pool_max_connections";
const QUERY_DURATION: &str = "db_query_duration_seconds";
const QUERIES_FAILED: &str = "db_queries_failed_total";
const JWKS_FETCHES: &str = "jwks_fetches_total";
const EVENT_STREAMS_OPEN: &str = "event_streams_open";
const BUILD_INFO: &str = "todo_api_build_info";

/// The media type of Prometheus' text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency buckets: the API answers in milliseconds (p99 of a list
/// is a few ms at 100 connections), so resolution is finest there; the top
/// buckets catch requests held up to the 30 s `REQUEST_TIMEOUT`.
const REQUEST_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Statement latency buckets: most statements take tens to hundreds of
/// microseconds; 200 ms is where a statement is logged as slow.
const QUERY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// The installed recorder's handle, or why it could not be installed; set
/// once per process.
static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// How often histogram samples are folded into their buckets. Between
/// scrapes they queue in memory, so this bounds that queue when nobody
/// scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder and describes every metric;
/// later calls return the same handle (tests build many apps in one process).
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let handle = build_recorder().map_err(|err| err.to_string())?;
            describe();
            process_collector().describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Ok(handle)
        })
        .clone()
}

fn build_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), REQUEST_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(QUERY_DURATION.into()), QUERY_BUCKETS)?
        .install_recorder()
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "Requests answered, by OpenAPI operationId (`none` for what no operation serves: \
         /docs, /openapi.json, unknown paths) and status."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its response head, by operationId (for an event \
         stream: until the stream starts)."
    );
    describe_gauge!(
        REQUESTS_WAITING,
        "Requests whose body has arrived, waiting for one of MAX_REQUESTS_IN_FLIGHT slots \
         (the queue in front of the database pool)."
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Requests being worked on (at most MAX_REQUESTS_IN_FLIGHT)."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open on the API port.");
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 because their user spent RATE_LIMIT."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        "Database connections by pool (`writer`; and `reader` on a SQLite file, whose reads \
         have a pool of their own) and state (`in_use`, `idle`)."
    );
    describe_gauge!(
        POOL_MAX_CONNECTIONS,
        "Most connections each database pool opens."
    );
    describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Time a database statement took, once it had a connection."
    );
    describe_counter!(QUERIES_FAILED, "Database statements that failed.");
    describe_counter!(
        JWKS_FETCHES,
        "Fetches of the JWKS (Better Auth's signing keys), by outcome (`ok`, `failed`)."
    );
    describe_gauge!(
        EVENT_STREAMS_OPEN,
        "Event streams (GET /api/{user_id}/events) open on this instance."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running build."
    );
}

/// CPU, memory, threads and file descriptors of this process, as
/// `process_*` in the same names as Prometheus' own client libraries.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

fn enabled() -> bool {
    HANDLE.get().is_some_and(Result::is_ok)
}

/// A request was answered.
pub fn request_answered(operation: Option<&'static str>, status: u16, elapsed: Duration) {
    if !enabled() {
        return;
    }
    let operation = operation.unwrap_or("none");
    counter!(REQUESTS, "operation" => operation, "status" => status_label(status)).increment(1);
    histogram!(REQUEST_DURATION, "operation" => operation).record(elapsed.as_secs_f64());
}

/// A status code as a label value, without allocating for the usual ones.
fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    const USUAL: [(u16, &str); 20] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (408, "408"),
        (409, "409"),
        (410, "410"),
        (412, "412"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (428, "428"),
        (429, "429"),
        (503, "503"),
    ];
    match USUAL.iter().find(|(code, _)| *code == status) {
        Some((_, label)) => (*label).into(),
        None => status.to_string().into(),
    }
}

/// A request was refused because its user spent their quota.
pub fn rate_limited() {
    if enabled() {
        counter!(RATE_LIMITED).increment(1);
    }
}

/// A database statement finished.
pub fn statement_finished(elapsed: Duration, failed: bool) {
    if !enabled() {
        return;
    }
    histogram!(QUERY_DURATION).record(elapsed.as_secs_f64());
    if failed {
        counter!(QUERIES_FAILED).increment(1);
    }
}

/// The JWKS was fetched, or could not be.
pub fn jwks_fetched(ok: bool) {
    if enabled() {
        let outcome = if ok { "ok" } else { "failed" };
        counter!(JWKS_FETCHES, "outcome" => outcome).increment(1);
    }
}

/// The gauge of client connections open on the API port.
pub fn open_connections() -> Gauge {
    gauge!(CONNECTIONS_OPEN)
}

/// The gauge of requests waiting for an in-flight slot.
pub fn waiting_requests() -> Gauge {
    gauge!(REQUESTS_WAITING)
}

/// A database pool as it stands.
pub struct PoolStats {
    /// `reader` or `writer`.
    pub name: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    pub idle: usize,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Counts one in a gauge for as long as it lives (a connection, a waiting
/// request), however its owner ends.
pub struct Counted(Gauge);

impl Counted {
    pub fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What is read rather than counted: set just before each scrape.
pub struct Snapshot {
    pub pools: Vec<PoolStats>,
    pub requests_in_flight: usize,
    pub event_streams_open: usize,
}

/// The metrics in Prometheus' text format, with `snapshot`'s gauges and the
/// process's own figures read now.
pub fn render(handle: &PrometheusHandle, snapshot: &Snapshot) -> String {
    for pool in &snapshot.pools {
        let open = pool.open as usize;
        let idle = pool.idle.min(open);
        gauge!(POOL_CONNECTIONS, "pool" => pool.name, "state" => "in_use")
            .set((open - idle) as f64);
        gauge!(POOL_CONNECTIONS, "pool" => pool.name, "state" => "idle").set(idle as f64);
        gauge!(POOL_MAX_CONNECTIONS, "pool" => pool.name).set(f64::from(pool.max));
    }
    gauge!(REQUESTS_IN_FLIGHT).set(snapshot.requests_in_flight as f64);
    gauge!(EVENT_STREAMS_OPEN).set(snapshot.event_streams_open as f64);
    process_collector().collect();
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_code() {
        for status in [200, 201, 204, 404, 418, 429, 500, 503, 599] {
            assert_eq!(status_label(status), status.to_string());
        }
    }

    #[test]
    fn buckets_ascend() {
        for buckets in [REQUEST_BUCKETS, QUERY_BUCKETS] {
            assert!(buckets.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
