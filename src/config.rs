//! Runtime configuration, read from the environment (and `.env`) by clap, so a
//! bad value fails at startup with a message naming the variable.

use std::{net::IpAddr, time::Duration};

use clap::{ArgAction, Args, ValueEnum, builder::BoolishValueParser};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::rate_limit::RateLimit;

/// Default database: a SQLite file next to the binary's working directory,
/// created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://todo.db?mode=rwc";

/// Largest accepted request body (64 KiB); larger ones get 413. Fixed, not
/// configurable: the published OpenAPI document states it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `sqlite://FILE?mode=rwc` or `postgres://USER:PASS@HOST/DB` (add `?sslmode=require` for Neon).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = parse_database_url)]
    pub database_url: String,

    /// Maximum open database connections (PostgreSQL; SQLite uses one writer and
    /// up to this many readers, at most two per core).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// How long a request waits for a database connection before answering 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Duration,

    /// Longest a database statement may run (PostgreSQL `statement_timeout`,
    /// lock waits included) or wait for SQLite's write lock (`busy_timeout`);
    /// then the request gets 503. `0` means no limit on PostgreSQL.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_statement_timeout: Duration,

    /// Shared secret for HS256 tokens (at least 32 bytes). Unset with no JWKS
    /// configured: a random one per run, for a demo.
    #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub better_auth_secret: Option<SecretString>,

    /// Base URL of the Better Auth server, e.g. `https://app.example.com`: enables
    /// its JWKS (`{url}/api/auth/jwks`) and is the expected `iss` and `aud`.
    #[arg(long, env = "BETTER_AUTH_URL", value_parser = parse_http_url)]
    pub better_auth_url: Option<Url>,

    /// JWKS location, when it is not `{BETTER_AUTH_URL}/api/auth/jwks`.
    #[arg(long, env = "JWKS_URL", value_parser = parse_http_url)]
    pub jwks_url: Option<Url>,

    /// Expected `iss` claim (default: BETTER_AUTH_URL, for JWKS tokens).
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Comma-separated accepted `aud` values (default: BETTER_AUTH_URL, for JWKS tokens).
    #[arg(long, env = "JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// Clock skew tolerated when checking a token's `exp`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 60)]
    pub jwt_leeway_secs: u64,

    /// How often the JWKS is fetched again, so removed keys stop working.
    #[arg(long, env = "JWKS_REFRESH_INTERVAL", default_value = "5m", value_parser = parse_jwks_interval)]
    pub jwks_refresh_interval: Duration,

    /// Least time between two JWKS fetches caused by tokens with an unknown `kid`.
    #[arg(long, env = "JWKS_UNKNOWN_KID_COOLDOWN", default_value = "30s", value_parser = parse_jwks_interval)]
    pub jwks_unknown_kid_cooldown: Duration,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// A request's headers must arrive within this (from its first byte, or
    /// from connecting for a connection's first request).
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,

    /// An idle keep-alive connection is closed after this.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub keep_alive_timeout: Duration,

    /// A request body must arrive within this; else 408.
    #[arg(long, env = "BODY_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub body_timeout: Duration,

    /// A response the client stops reading (no byte taken) is abandoned
    /// after this and its connection closed: a stuck event-stream reader
    /// frees its place.
    #[arg(long, env = "SEND_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub send_timeout: Duration,

    /// Longest the service works on one request once its body has arrived; else 503.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub request_timeout: Duration,

    /// Connections served at once; more wait to be accepted. Lowered to fit
    /// the open-files limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Requests worked on at once once their body has arrived; more wait
    /// their turn (FIFO, within `REQUEST_TIMEOUT`). A waiting request costs
    /// its connection and head only, not the kilobytes of handler and database
    /// futures a running one holds, so memory stays flat under load.
    #[arg(long, env = "MAX_REQUESTS_IN_FLIGHT", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_requests_in_flight: u32,

    /// Comma-separated browser origins allowed to call the API.
    #[arg(long, env = "CORS_ORIGINS", default_value = "http://localhost:3000",
          value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Refuse PUT, PATCH, DELETE and toggle without `If-Match` (428), so no
    /// client can overwrite a change it has not seen.
    #[arg(long, env = "REQUIRE_IF_MATCH", default_value = "false", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub require_if_match: bool,

    /// How long a response is remembered for retries with its
    /// `Idempotency-Key`; expired keys are deleted.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value = "24h", value_parser = parse_ttl)]
    pub idempotency_ttl: Duration,

    /// How long a task stays in the trash before it is deleted for good.
    #[arg(long, env = "TRASH_RETENTION", default_value = "30d", value_parser = parse_ttl)]
    pub trash_retention: Duration,

    /// How long the change feed remembers a deletion; a sync cursor older
    /// than that answers 410. At least `TRASH_RETENTION`.
    #[arg(long, env = "CHANGES_RETENTION", default_value = "30d", value_parser = parse_ttl)]
    pub changes_retention: Duration,

    /// Requests one user may make to this instance (`600/min`, `10/s`,
    /// `5000/h`), or `off`; more are 429 until the quota refills.
    #[arg(long, env = "RATE_LIMIT", default_value = "600/min", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimitSetting,

    /// Most event streams (`GET /api/{user_id}/events`) one user may have
    /// open on this instance at once; one more is 429.
    #[arg(long, env = "MAX_STREAMS_PER_USER", default_value = "10",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_streams_per_user: u32,

    /// How often an event stream with nothing to send writes a `: keep-alive`
    /// comment, so proxies and browsers keep it open. At most 15s.
    #[arg(long, env = "STREAM_KEEP_ALIVE", default_value = "15s", value_parser = parse_keep_alive)]
    pub stream_keep_alive: Duration,

    /// Where this instance listens for other instances' changes on
    /// PostgreSQL (`LISTEN` needs a session: a direct URL, not a
    /// transaction-mode pooler such as Neon's `-pooler` host). Default:
    /// `DATABASE_URL`.
    #[arg(long, env = "DATABASE_LISTEN_URL", value_parser = parse_database_url)]
    pub database_listen_url: Option<String>,

    /// Apply pending migrations at startup.
    #[arg(long, env = "RUN_MIGRATIONS", default_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub run_migrations: bool,

    /// `pretty` for people, `json` for log collectors. Filter with `RUST_LOG`.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics at `GET /metrics` on this address (e.g.
    /// `0.0.0.0:9090`), a listener of its own apart from the API's port.
    /// Unset: no metrics are kept.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    /// Defaults for everything but the database, as a test or tool needs them.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            database_max_connections: 10,
            database_acquire_timeout: Duration::from_secs(5),
            database_statement_timeout: Duration::from_secs(5),
            better_auth_secret: None,
            better_auth_url: None,
            jwks_url: None,
            jwt_issuer: None,
            jwt_audience: Vec::new(),
            jwt_leeway_secs: 60,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_unknown_kid_cooldown: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_requests_in_flight: 32,
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            cors_origins: vec!["http://localhost:3000".into()],
            require_if_match: false,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            trash_retention: Duration::from_secs(30 * 24 * 3600),
            changes_retention: Duration::from_secs(30 * 24 * 3600),
            rate_limit: RateLimitSetting(Some(RateLimit::DEFAULT)),
            max_streams_per_user: 10,
            stream_keep_alive: Duration::from_secs(15),
            database_listen_url: None,
            run_migrations: true,
            log_format: LogFormat::Pretty,
            metrics_addr: None,
        }
    }

    /// Where Better Auth publishes its public keys, if JWKS tokens are enabled.
    pub fn jwks_location(&self) -> Option<Url> {
        self.jwks_url.clone().or_else(|| {
            let base = self.better_auth_url.as_ref()?;
            let path = format!("{}/api/auth/jwks", base.path().trim_end_matches('/'));
            let mut url = base.clone();
            url.set_path(&path);
            Some(url)
        })
    }

    /// Accepted `iss` values for JWKS tokens: JWT_ISSUER, else Better Auth's base
    /// URL (with and without a trailing slash, as it may be written either way).
    pub fn jwks_issuers(&self) -> Vec<String> {
        match (&self.jwt_issuer, &self.better_auth_url) {
            (Some(issuer), _) => vec![issuer.clone()],
            (None, Some(base)) => base_url_spellings(base),
            (None, None) => Vec::new(),
        }
    }

    /// Accepted `aud` values for JWKS tokens: JWT_AUDIENCE, else Better Auth's base URL.
    pub fn jwks_audiences(&self) -> Vec<String> {
        match (&self.jwt_audience[..], &self.better_auth_url) {
            ([], Some(base)) => base_url_spellings(base),
            (audiences, _) => audiences.to_vec(),
        }
    }

    pub fn secret_bytes(&self) -> Option<&[u8]> {
        self.better_auth_secret
            .as_ref()
            .map(|secret| secret.expose_secret().as_bytes())
    }
}

fn base_url_spellings(base: &Url) -> Vec<String> {
    let bare = base.as_str().trim_end_matches('/').to_owned();
    vec![format!("{bare}/"), bare]
}

fn parse_http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{value}` is not an http(s) URL"));
    }
    Ok(url)
}

/// A JWKS timing of at least a second: zero would refetch the key set in a
/// loop (refresh) or on every forged `kid` (cool-down), hammering the auth server.
fn parse_jwks_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(interval)
}

/// How long idempotency keys, trashed tasks or deletions are kept: at least
/// a second, at most a year and a day.
fn parse_ttl(value: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if !(Duration::from_secs(1)..=Duration::from_secs(366 * 24 * 3600)).contains(&ttl) {
        return Err("must be from 1s to 366d".into());
    }
    Ok(ttl)
}

/// A timeout: zero would refuse every request.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if timeout.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(timeout)
}

/// `RATE_LIMIT`: `None` when `off`. (A newtype: clap would read a bare
/// `Option` as an optional flag.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSetting(pub Option<RateLimit>);

fn parse_rate_limit(value: &str) -> Result<RateLimitSetting, String> {
    match value.trim() {
        "off" => Ok(RateLimitSetting(None)),
        limit => limit.parse().map(|limit| RateLimitSetting(Some(limit))),
    }
}

fn parse_keep_alive(value: &str) -> Result<Duration, String> {
    let interval = parse_timeout(value)?;
    // The contract promises a comment at least every 15 s.
    if interval > Duration::from_secs(15) {
        return Err("must be at most 15s".into());
    }
    Ok(interval)
}

fn parse_database_url(value: &str) -> Result<String, String> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|scheme| value.starts_with(scheme)) {
        Ok(value.to_owned())
    } else {
        Err("expected a `sqlite:` or `postgres://` URL".into())
    }
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
    if value.len() < 32 {
        return Err("must be at least 32 bytes (generate one with `openssl rand -hex 32`)".into());
    }
    Ok(SecretString::from(value))
}

fn parse_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.into());
    }
    let url = url::Url::parse(value).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    let origin = url.origin();
    if !origin.is_tuple() || url.path() != "/" || value.ends_with('/') {
        return Err(format!(
            "`{value}` is not an origin like `https://app.example.com`"
        ));
    }
    Ok(origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_bare_scheme_host_port() {
        assert_eq!(
            parse_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            parse_origin(" https://a.example ").unwrap(),
            "https://a.example"
        );
        assert!(parse_origin("https://a.example/app").is_err());
        assert!(parse_origin("https://a.example/").is_err());
        assert!(parse_origin("localhost:3000").is_err());
    }

    #[test]
    fn better_auth_url_gives_jwks_location_issuer_and_audience() {
        let mut config = Config::new("sqlite::memory:");
        assert_eq!(config.jwks_location(), None);
        assert!(config.jwks_issuers().is_empty() && config.jwks_audiences().is_empty());

        config.better_auth_url = Some(parse_http_url("https://app.example.com").unwrap());
        assert_eq!(
            config.jwks_location().unwrap().as_str(),
            "https://app.example.com/api/auth/jwks"
        );
        assert_eq!(
            config.jwks_issuers(),
            ["https://app.example.com/", "https://app.example.com"]
        );
        assert_eq!(config.jwks_audiences(), config.jwks_issuers());

        config.better_auth_url = Some(parse_http_url("https://example.com/auth/").unwrap());
        assert_eq!(
            config.jwks_location().unwrap().as_str(),
            "https://example.com/auth/api/auth/jwks"
        );

        config.jwks_url = Some(parse_http_url("https://keys.example.com/jwks").unwrap());
        config.jwt_issuer = Some("issuer".into());
        config.jwt_audience = vec!["a".into(), "b".into()];
        assert_eq!(
            config.jwks_location().unwrap().as_str(),
            "https://keys.example.com/jwks"
        );
        assert_eq!(config.jwks_issuers(), ["issuer"]);
        assert_eq!(config.jwks_audiences(), ["a", "b"]);
        assert!(parse_http_url("ftp://example.com").is_err());
        assert!(parse_http_url("example.com").is_err());
    }

    #[test]
    fn the_rate_limit_is_a_quota_per_window_or_off() {
        assert_eq!(parse_rate_limit("off"), Ok(RateLimitSetting(None)));
        assert_eq!(
            parse_rate_limit("600/min"),
            Ok(RateLimitSetting(Some(RateLimit::DEFAULT)))
        );
        assert!(parse_rate_limit("600").is_err());
        assert!(parse_rate_limit("none").is_err());
    }

    #[test]
    fn short_secrets_are_rejected() {
        assert!(parse_secret("too-short").is_err());
        assert!(parse_secret(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn database_urls_must_name_a_supported_backend() {
        assert!(parse_database_url("sqlite::memory:").is_ok());
        assert!(parse_database_url("postgres://u@h/db?sslmode=require").is_ok());
        assert!(parse_database_url("mysql://u@h/db").is_err());
    }
}
