//! Tracing setup: one subscriber, filtered by `RUST_LOG`, pretty or JSON.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

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
