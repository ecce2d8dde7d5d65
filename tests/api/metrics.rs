//! Prometheus metrics (contract: "Limits and operations"): `GET /metrics` on
//! `METRICS_ADDR` only, counting what the service did, in a text format
//! `promtool` accepts.

use std::{collections::BTreeMap, io::Write, process::Stdio, time::Duration};

use jsonwebtoken::Algorithm;
use rstest_reuse::apply;
use serde_json::json;

use crate::helpers::{Backend, both_backends, free_port, hold_tasks_lock};
use crate::jwks_server::{AuthServer, SigningKey, better_auth_claims};
use crate::process::ServerProcess;
use crate::spawn_or_skip;

/// One scrape: the text, and each sample by its rendered name and labels
/// (`http_requests_total{operation="listTasks",status="200"}`).
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    async fn of(url: &str) -> Self {
        let response = reqwest::get(url).await.expect("scrape");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect();
        Self { text, samples }
    }

    fn value(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// The sample's value; 0 when the series is absent.
    fn count(&self, series: &str) -> f64 {
        self.value(series).unwrap_or(0.0)
    }
}

/// promtool (`PROMTOOL`, else from `PATH`); `None` when it is not installed,
/// outside CI, where that is an error.
fn promtool() -> Option<String> {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let found = std::process::Command::new(&promtool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return Some(promtool);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must check the metrics with promtool: install Debian's `prometheus` package"
    );
    eprintln!("skipped the promtool check: install Debian's `prometheus` package, or set PROMTOOL");
    None
}

/// What `promtool check metrics` says of `text`: `Ok` when it is valid and
/// follows Prometheus' naming rules.
fn promtool_check(promtool: &str, text: &str) -> Result<(), String> {
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Scrapes until `ready` holds (gauges read at scrape time, fetches made in
/// the background), or fails with the last scrape.
async fn scrape_until(url: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let scrape = Scrape::of(url).await;
        if ready(&scrape) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}:\n{}", Scrape::of(url).await.text);
}

#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_service_did(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let key = SigningKey::generate(Algorithm::EdDSA);
    let auth = AuthServer::start(&[&key]).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = ServerProcess::start(
        &app.database_url,
        &[
            ("METRICS_ADDR", &metrics_addr),
            ("BETTER_AUTH_URL", &auth.base_url),
            ("RATE_LIMIT", "4/1h"),
        ],
    )
    .await;
    let metrics = format!("http://{metrics_addr}/metrics");
    let http = reqwest::Client::new();
    let token = |user: &str| key.sign(&better_auth_claims(&auth.base_url, user));
    let call = |method: reqwest::Method, user: &str, path: &str| {
        http.request(method, server.url(&format!("/api/{user}{path}")))
            .bearer_auth(token(user))
    };

    // The key set is fetched at startup.
    let started = scrape_until(&metrics, "the startup JWKS fetch", |s| {
        s.count(r#"jwks_fetches_total{outcome="ok"}"#) >= 1.0
    })
    .await;
    assert_eq!(
        started.value(r#"todo_api_build_info{version="0.1.0"}"#),
        Some(1.0)
    );

    // alice: three lists and a create use her quota of 4; one more is 429.
    for _ in 0..3 {
        let reply = call(reqwest::Method::GET, "alice", "/tasks")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    let created = call(reqwest::Method::POST, "alice", "/tasks")
        .json(&json!({"title": "counted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let refused = call(reqwest::Method::GET, "alice", "/tasks")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    // bob: a task that does not exist.
    let missing = call(reqwest::Method::GET, "bob", "/tasks/999999")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // A path outside the API; and the metrics are not served on the API port.
    let public = crate::process::send(http.get(server.url("/metrics"))).await;
    assert_eq!(public.status, 404);
    assert_eq!(
        public.body["status"], 404,
        "a problem document: {}",
        public.body
    );

    // carol's event stream, open while scraped.
    let stream = call(reqwest::Method::GET, "carol", "/events")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let during = scrape_until(&metrics, "one stream open", |s| {
        s.value("event_streams_open") == Some(1.0)
    })
    .await;
    assert!(
        during.count("http_connections_open") >= 1.0,
        "the stream's connection is open"
    );
    drop(stream);
    scrape_until(&metrics, "the stream closed", |s| {
        s.value("event_streams_open") == Some(0.0)
    })
    .await;

    // A token naming a key the auth server no longer serves: the set is
    // fetched again, and the fetch fails.
    auth.set_failing(true);
    let unknown = key.with_kid("rotated-away");
    let rejected = http
        .get(server.url("/api/dave/tasks"))
        .bearer_auth(unknown.sign(&better_auth_claims(&auth.base_url, "dave")))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 401);

    let scrape = Scrape::of(&metrics).await;
    let requests = |operation: &str, status: u16| {
        scrape.count(&format!(
            r#"http_requests_total{{operation="{operation}",status="{status}"}}"#
        ))
    };
    assert_eq!(requests("listTasks", 200), 3.0, "{}", scrape.text);
    assert_eq!(requests("createTask", 201), 1.0);
    // Refused before it reached the operation, and still named after it.
    assert_eq!(requests("listTasks", 429), 1.0);
    assert_eq!(requests("getTask", 404), 1.0);
    assert_eq!(requests("streamChanges", 200), 1.0);
    assert_eq!(requests("listTasks", 401), 1.0);
    assert_eq!(requests("none", 404), 1.0);
    assert_eq!(scrape.count("rate_limited_requests_total"), 1.0);

    // alice's and dave's five lists, in the latency histogram's buckets.
    let buckets: Vec<(f64, f64)> = scrape
        .samples
        .iter()
        .filter_map(|(series, &count)| {
            let bound = series
                .strip_prefix(r#"http_request_duration_seconds_bucket{operation="listTasks",le=""#)?
                .strip_suffix(r#""}"#)?;
            Some((bound.parse::<f64>().unwrap(), count))
        })
        .collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        sorted.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "{sorted:?}"
    );
    assert_eq!(sorted.last().map(|b| b.1), Some(5.0));
    assert_eq!(
        scrape.value(r#"http_request_duration_seconds_count{operation="listTasks"}"#),
        Some(5.0)
    );
    let smallest = sorted.first().unwrap();
    assert!(
        smallest.0 <= 0.001,
        "millisecond resolution: the first bucket is {}",
        smallest.0
    );

    assert!(scrape.count("db_query_duration_seconds_count") >= 2.0);
    assert_eq!(
        scrape.count(r#"jwks_fetches_total{outcome="failed"}"#),
        1.0,
        "{}",
        scrape.text
    );
    let pools: &[&str] = match backend {
        Backend::Sqlite => &["reader", "writer"],
        Backend::Postgres => &["writer"],
    };
    for pool in pools {
        let max = scrape
            .value(&format!(r#"db_pool_max_connections{{pool="{pool}"}}"#))
            .unwrap_or_else(|| panic!("{pool}: {}", scrape.text));
        let in_use = scrape.count(&format!(
            r#"db_pool_connections{{pool="{pool}",state="in_use"}}"#
        ));
        let idle = scrape.count(&format!(
            r#"db_pool_connections{{pool="{pool}",state="idle"}}"#
        ));
        assert!(
            idle >= 1.0,
            "{pool}: a connection stays open between requests"
        );
        assert!(in_use + idle <= max, "{pool}: {in_use} + {idle} > {max}");
    }
    if backend == Backend::Sqlite {
        assert_eq!(
            scrape.value(r#"db_pool_max_connections{pool="writer"}"#),
            Some(1.0),
            "SQLite has one writer"
        );
    }
    assert_eq!(scrape.value("http_requests_waiting"), Some(0.0));
    assert_eq!(scrape.value("http_requests_in_flight"), Some(0.0));
    assert!(scrape.count("process_resident_memory_bytes") > 1e6);

    if let Some(promtool) = promtool() {
        promtool_check(&promtool, &scrape.text)
            .unwrap_or_else(|problems| panic!("promtool: {problems}"));
    }
    server.stop().await;
}

/// The check is only worth something if promtool refuses what is wrong.
#[test]
fn promtool_refuses_a_malformed_exposition() {
    let Some(promtool) = promtool() else { return };
    let wrong = "# TYPE requests counter\nrequests{status=\"200\" 1\n";
    assert!(promtool_check(&promtool, wrong).is_err());
    let misnamed = "# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n";
    assert!(
        promtool_check(&promtool, misnamed).is_err(),
        "a counter without _total"
    );
}

/// A request held up in the database is in flight and holds the writer's
/// connection, the next one waits for its slot; both gauges return to zero
/// once the database lets go.
#[apply(both_backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_by_the_database_is_in_flight_and_the_next_waits(backend: Backend) {
    let app = spawn_or_skip!(backend);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(
        &app.database_url,
        &[
            ("METRICS_ADDR", &metrics_addr),
            ("MAX_REQUESTS_IN_FLIGHT", "1"),
        ],
    )
    .await;
    let metrics = format!("http://{metrics_addr}/metrics");
    let create = |title: &str| {
        let request = server
            .request_as(reqwest::Method::POST, "alice", "/tasks")
            .json(&json!({ "title": title }));
        tokio::spawn(request.send())
    };

    let lock = hold_tasks_lock(backend, &app.database_url).await;
    let first = create("held by the lock");
    scrape_until(&metrics, "the first create in flight", |s| {
        s.value("http_requests_in_flight") == Some(1.0)
    })
    .await;
    let second = create("waiting for a slot");
    let held = scrape_until(&metrics, "the second create waiting", |s| {
        s.value("http_requests_waiting") == Some(1.0)
    })
    .await;
    assert_eq!(held.value("http_requests_in_flight"), Some(1.0));
    assert!(
        held.count(r#"db_pool_connections{pool="writer",state="in_use"}"#) >= 1.0,
        "{}",
        held.text
    );
    drop(lock);

    assert_eq!(first.await.unwrap().unwrap().status(), 201);
    assert_eq!(second.await.unwrap().unwrap().status(), 201);
    let after = Scrape::of(&metrics).await;
    assert_eq!(after.value("http_requests_in_flight"), Some(0.0));
    assert_eq!(after.value("http_requests_waiting"), Some(0.0));
    assert_eq!(
        after.count(r#"http_requests_total{operation="createTask",status="201"}"#),
        2.0
    );
    assert_eq!(
        app.stored_titles().await,
        ["held by the lock", "waiting for a slot"]
    );
    server.stop().await;
}
