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
mod telemetry;
pub mod tls;

pub use app::Server;
pub use args::ServeArgs;
pub use config::ServeConfig;

/// `floe serve`: loads the configuration (defaults < file < environment < flags), starts
/// logging, serves until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(args.config.as_deref(), &args.settings())?;
    telemetry::init_logging(config.server.log_format);
    let server = Server::bind(&config).await?;
    tracing::info!(data_dir = %config.server.data_dir.display(), store = %config.store_url(), "floe starting");
    server.run(app::shutdown_signal()).await
}
