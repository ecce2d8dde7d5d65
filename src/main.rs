//! The `todo-api` binary: serve the API, run migrations, print the OpenAPI
//! document, or mint a development token.

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use metrics::Gauge;
use migration::{Migrator, MigratorTrait};
use secrecy::SecretString;
use todo_api::{
    api,
    app::build_app,
    auth::{Claims, mint_token, mint_token_for},
    config::Config,
    db, server, telemetry,
};
use tokio_util::sync::CancellationToken;

// glibc's malloc took a fifth of a list's CPU once several SQLite and tokio
// threads shared it; mimalloc roughly doubles SQLite list throughput. Its
// `no_thp` feature keeps it from backing small heaps with 2 MiB huge pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Multi-user task API for Next.js + Better Auth frontends"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply or inspect database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the OpenAPI document (what `openapi/openapi.json` holds).
    Openapi,
    /// Mint an HS256 token signed with BETTER_AUTH_SECRET, for development.
    Token {
        /// User id: the token's `sub`.
        #[arg(long)]
        sub: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. `15m`, `1h`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back the last migration (or `-n` of them).
    Down {
        #[arg(short, default_value_t = 1)]
        n: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table and apply all migrations again.
    Fresh,
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("error: cannot read .env: {err}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate { action } => migrate(&config, action).await,
        Command::Openapi => {
            println!("{}", api::spec_json());
            Ok(())
        }
        Command::Token {
            sub,
            email,
            name,
            ttl,
        } => {
            let secret = config
                .secret_bytes()
                .context("set BETTER_AUTH_SECRET (env or .env) to the secret the server uses")?;
            let claims = Claims {
                exp: None,
                sub,
                email,
                name,
            };
            let issuer = config.jwt_issuer.as_deref();
            let audience = config.jwt_audience.first().map(String::as_str);
            println!("{}", mint_token_for(secret, &claims, ttl, issuer, audience));
            Ok(())
        }
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    let demo_secret = (config.better_auth_secret.is_none() && config.jwks_location().is_none())
        .then(random_secret);
    if let Some(secret) = &demo_secret {
        config.better_auth_secret = Some(SecretString::from(secret.clone()));
    }
    let app = build_app(&config).await?;
    // Startup (migrations, pools, the route table) leaves its freed memory
    // cached in the main thread's mimalloc heap, which mimalloc only purges
    // when that thread allocates again, and it mostly waits from here on:
    // about 7 MB of the idle footprint (anonymous RSS 12 MB -> 4.8 MB).
    // SAFETY: `mi_collect` takes no pointers; it only frees and returns
    // unused pages of the allocator this binary runs on.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let address = std::net::SocketAddr::new(config.host, config.port);
    tracing::info!(
        %address,
        database = %telemetry::redact(&config.database_url),
        "serving; Swagger UI at http://{address}/docs"
    );
    if let Some(secret) = demo_secret {
        print_demo_login(secret.as_bytes(), address);
    }
    let limits = server::Limits {
        header_timeout: config.header_timeout,
        keep_alive_timeout: config.keep_alive_timeout,
        send_timeout: config.send_timeout,
        max_connections: connection_cap(&config),
        shutdown_grace: SHUTDOWN_GRACE,
    };
    // Metrics are served on their own listener, never on the public port,
    // and stop with the API.
    let stopped = CancellationToken::new();
    let metrics = match (config.metrics_addr, app.metrics) {
        (Some(address), Some(endpoint)) => {
            let metrics_listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on METRICS_ADDR {address}"))?;
            tracing::info!(%address, "serving metrics at http://{address}/metrics");
            let limits = server::Limits {
                max_connections: METRICS_CONNECTIONS,
                ..limits.clone()
            };
            let stop = stopped.clone().cancelled_owned();
            Some(tokio::spawn(server::serve(
                metrics_listener,
                endpoint,
                limits,
                Gauge::noop(),
                stop,
            )))
        }
        _ => None,
    };
    // Bound last: once the API port accepts, everything is up.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    // Event streams would hold the shutdown for its whole grace period:
    // they end at once instead, and their clients resume elsewhere.
    let streams = app.state.changes.clone();
    let shutdown = async move {
        shutdown_signal().await;
        streams.close();
    };
    let open = telemetry::metrics::open_connections();
    server::serve(listener, app.endpoint, limits, open, shutdown).await;
    stopped.cancel();
    let unregistered = tokio::time::timeout(UNREGISTER_TIMEOUT, app.state.changes.unregister_all());
    match unregistered.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot unregister this instance's event streams")
        }
        Err(_) => tracing::warn!("unregistering this instance's event streams timed out"),
    }
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}

/// How long shutdown waits to unregister this instance's event streams
/// (another instance removes them within 30 s otherwise).
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Scrapers connected to `METRICS_ADDR` at once; more wait in the backlog.
const METRICS_CONNECTIONS: usize = 16;

/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// File descriptors kept for everything but client connections: database
/// connections, the JWKS client, log files, the binary's own.
const RESERVED_FILES: u64 = 64;

/// MAX_CONNECTIONS, lowered to what the open-files limit allows (raised
/// to its hard limit first), so that accept never fails for want of one.
fn connection_cap(config: &Config) -> usize {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read or raise the open-files limit");
            return config.max_connections as usize;
        }
    };
    let reserved = RESERVED_FILES + u64::from(config.database_max_connections);
    let fits = files.saturating_sub(reserved).max(1);
    let cap = u64::from(config.max_connections).min(fits);
    if cap < u64::from(config.max_connections) {
        tracing::warn!(
            open_files_limit = files,
            max_connections = cap,
            "MAX_CONNECTIONS lowered to fit the open-files limit (raise `ulimit -n` to serve more)"
        );
    } else {
        tracing::info!(
            open_files_limit = files,
            max_connections = cap,
            "connection limit"
        );
    }
    cap as usize
}

/// A fresh 256-bit secret for a run without BETTER_AUTH_SECRET.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_demo_login(secret: &[u8], address: std::net::SocketAddr) {
    let claims = Claims {
        exp: None,
        sub: "demo-user".into(),
        email: Some("demo@example.com".into()),
        name: Some("Demo User".into()),
    };
    let token = mint_token(secret, &claims, Duration::from_secs(24 * 3600));
    tracing::warn!(
        "neither BETTER_AUTH_URL nor BETTER_AUTH_SECRET is set: using a random HS256 secret \
         for this run only. Tokens from your Better Auth server will be rejected, and tokens \
         minted now stop working at restart. Set BETTER_AUTH_URL (Better Auth's jwt() plugin) \
         or BETTER_AUTH_SECRET for anything but a demo."
    );
    eprintln!(
        "\n  Demo token for user `demo-user` (valid 24h), for \"Authorize\" at http://{address}/docs:\n\n  {token}\n\n  Try: curl -H 'Authorization: Bearer {token}' http://{address}/api/demo-user/tasks\n"
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let db = db::connect(config)
        .await
        .context("cannot connect to DATABASE_URL")?
        .writer;
    match action {
        MigrateAction::Up => db::migrate(&db).await?,
        MigrateAction::Down { n } => Migrator::down(&db, Some(n)).await?,
        MigrateAction::Fresh => Migrator::fresh(&db).await?,
        MigrateAction::Status => {
            for migration in Migrator::get_migration_with_status(&db).await? {
                println!("{:?}\t{}", migration.status(), migration.name());
            }
        }
    }
    Ok(())
}
