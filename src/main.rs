//! The `strata` binary: command line, configuration, wiring of the crates, the one HTTP
//! router, and the shutdown order (stop intake → flush the WAL → stop queries).
//! Only this crate names concrete types of every crate; see `DESIGN.md` for the map.

mod cli;
mod config;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::Router;
use axum::routing::get;
use clap::Parser;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use strata_engine::Engine;
use strata_engine::clock::SystemClock;
use strata_sql::QueryEngine;
use tokio::net::TcpListener;

use crate::config::{Cli, Command, ServeArgs, Settings};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps memory that was freed and not reused before it returns it to
/// the OS, in milliseconds (mimalloc's `purge_delay`; its default is 1000).
///
/// A write request frees megabytes (its body, its rows, its batch) that the next requests
/// need again, and memory returned to the OS is faulted in again, zeroed by the kernel.
/// In TSBS loads (1000 hosts × 24 h), the server had:
/// - with the default, 2.55 and 2.81 million page faults and 18.2 and 8.8 s of system time;
/// - with 10 s, 1.00 million and 4.6 s;
/// - never purging, 0.43 million and 3.5 s, and 6% more peak memory.
///
/// Memory left unused for 10 s still goes back.
const PURGE_DELAY: &str = "10000";

/// mimalloc reads its options from the environment when the process starts, before `main`,
/// and the workspace forbids the `unsafe` of `mi_option_set`. So when
/// `MIMALLOC_PURGE_DELAY` is not set, the process runs itself again, with the same
/// arguments and pid, with it set. If that fails, it goes on with mimalloc's default.
fn set_allocator_options() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    let e = again
        .args(args)
        .env("MIMALLOC_PURGE_DELAY", PURGE_DELAY)
        .exec();
    eprintln!("strata: could not restart with the allocator's options ({e}); going on without");
}

fn main() -> ExitCode {
    set_allocator_options();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Alert(args) => runtime.block_on(cli::alert(args)),
        Command::Agent(args) => runtime.block_on(cli::agent(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::resolve(&args)?;
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let (engine, report) = Engine::open(settings.engine.clone(), Arc::new(SystemClock)).await?;
    tracing::info!(
        data_dir = %settings.engine.data_dir.display(),
        catalog_version = report.catalog_version,
        wal_records = report.wal.records,
        replayed_rows = report.replayed_rows,
        skipped_persisted_rows = report.skipped_persisted_rows,
        "engine open"
    );
    for (db, changes) in &settings.retention {
        engine.set_retention(db, changes).await?;
    }
    let query = QueryEngine::new(Arc::clone(&engine), settings.query.clone())?;
    let kafka = match settings.kafka.clone() {
        Some(k) => {
            let consumer = strata_ingest::kafka::KafkaIngest::start(
                Arc::clone(&engine),
                k,
                tokio::runtime::Handle::current(),
            )?;
            engine.register_system_table(consumer.status());
            Some(consumer)
        }
        None => None,
    };

    // Always started, so `system.scrape_targets` exists (empty without jobs).
    let scraper = strata_ingest::scrape::Scraper::start(Arc::clone(&engine), &settings.scrape)?;
    engine.register_system_table(scraper.status());

    let alerting = strata_alerting::Alerting::new(
        engine.shared_catalog(),
        Arc::new(query.clone()),
        engine.clock(),
        engine.data_store(),
        &settings.alerting,
    )
    .await?;
    alerting.install(&query);
    let alerting_tasks = alerting.start();

    let grpc = strata_sql::flight::service(query.clone())?;

    let http = TcpListener::bind(settings.http_addr)
        .await
        .map_err(|e| bind_error("HTTP", settings.http_addr, e))?;
    let flight = TcpListener::bind(settings.flight_addr)
        .await
        .map_err(|e| bind_error("Flight SQL", settings.flight_addr, e))?;
    let pg = TcpListener::bind(settings.pg_addr)
        .await
        .map_err(|e| bind_error("PostgreSQL", settings.pg_addr, e))?;
    let app = GrpcOrHttp {
        http: router(
            Arc::clone(&engine),
            query.clone(),
            metrics,
            settings.ingest.clone(),
            Arc::clone(&alerting),
        ),
        grpc: grpc.clone(),
    };
    let flight_addr = flight.local_addr()?;

    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "strata listening http={} flight={} pg={}",
            http.local_addr()?,
            flight_addr,
            pg.local_addr()?
        )?;
        out.flush()?;
    }

    // Query servers stop last: after intake has stopped and the WAL is flushed.
    let (stop_queries, mut queries_stopped) = tokio::sync::watch::channel(false);
    let mut pg_stopped = queries_stopped.clone();
    let pg_server = tokio::spawn(strata_sql::pg::serve(pg, query, async move {
        let _ = pg_stopped.changed().await;
    }));
    let flight_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(grpc)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(flight).with_nodelay(Some(true)),
                async move {
                    let _ = queries_stopped.changed().await;
                },
            ),
    );

    axum::serve(http, axum::ServiceExt::into_make_service(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    drop(scraper);
    if let Some(k) = kafka {
        tracing::info!("stopping the Kafka consumer");
        if let Err(e) = tokio::task::spawn_blocking(move || k.stop()).await {
            tracing::error!(error = %e, "stopping the Kafka consumer failed");
        }
    }
    // Alerting reads through queries and saves its state after every step: stop it
    // before the engine closes.
    drop(alerting_tasks);
    tracing::info!("intake stopped; flushing the WAL");
    engine.shutdown().await;
    let _ = stop_queries.send(true);
    match flight_server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "Flight SQL server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "Flight SQL server task failed"),
    }
    if let Err(e) = pg_server.await {
        tracing::warn!(error = %e, "PostgreSQL server task failed");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

fn bind_error(what: &str, addr: SocketAddr, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!("could not bind the {what} listener on {addr}: {e}"),
    )
}

fn router(
    engine: Arc<Engine>,
    query: QueryEngine,
    metrics: PrometheusHandle,
    ingest: strata_ingest::http::IngestConfig,
    alerting: Arc<strata_alerting::Alerting>,
) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "pass"})) }),
        )
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        )
        .merge(strata_ingest::http::router(Arc::clone(&engine), ingest))
        .merge(strata_sql::http::router(query))
        .merge(strata_alerting::http::router(alerting))
        .layer(axum::middleware::from_fn(resolve_identity))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// The HTTP port also serves Flight SQL, as InfluxDB 3 does (its clients use one address
/// for writes and queries): requests with `content-type: application/grpc…` go to the
/// gRPC service (HTTP/2, cleartext with prior knowledge), everything else to the router.
#[derive(Clone)]
struct GrpcOrHttp {
    http: Router,
    grpc: FlightServiceServer<strata_sql::flight::Frontend>,
}

impl tower::Service<axum::extract::Request> for GrpcOrHttp {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let is_grpc = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if is_grpc {
            let mut grpc = self.grpc.clone();
            Box::pin(async move {
                let Ok(response) = tower::Service::call(&mut grpc, req).await;
                Ok(response.map(axum::body::Body::new))
            })
        } else {
            let mut http = self.http.clone();
            Box::pin(async move { tower::Service::call(&mut http, req).await })
        }
    }
}

/// The one place HTTP callers are resolved to an identity; handlers read it from the
/// request extensions. Authentication and roles are enforced here once they exist.
async fn resolve_identity(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let auth = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = strata_catalog::auth::Identity::from_authorization(auth);
    req.extensions_mut().insert(identity);
    next.run(req).await
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
