//! The floe server: configuration, the HTTP API over a broker, the one mapping from
//! errors to responses, telemetry, and `serve`. Nothing in the product depends on this
//! crate but the `floe` binary (crates/floe-cli); it never depends on the client.

pub mod app;
mod args;
pub mod auth;
pub mod cluster;
mod codec;
pub mod config;
mod error;
mod listener;
pub mod quotas;
pub(crate) mod routes;
pub mod runtime_probe;
pub mod telemetry;
pub mod tls;

pub use app::Server;
pub use args::ServeArgs;
pub use config::ServeConfig;

/// `floe serve`: loads the configuration (defaults < file < environment < flags), starts
/// logging (and trace export, when configured), serves until SIGINT or SIGTERM, then shuts
/// down gracefully and sends the spans still queued.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(args.config.as_deref(), &args.settings())?;
    let tracing = telemetry::init(config.server.log_format, &config.tracing)?;
    let server = Server::bind(&config).await?;
    tracing::info!(data_dir = %config.server.data_dir.display(), store = %config.store_url(), "floe starting");
    let served = server.run(app::shutdown_signal()).await;
    tracing.shutdown().await;
    served
}
