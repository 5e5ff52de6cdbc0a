//! The `floe` binary.

use clap::Parser;
use floe_server::ServeConfig;
use floe_server::app::{Server, shutdown_signal};
use floe_server::cli::{Cli, Command};
use floe_server::config::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("floe: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floe: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::load(args.config.as_deref(), &*args)?;
            init_logging(config.log_format);
            let server = Server::bind(&config).await?;
            tracing::info!(data_dir = %config.data_dir.display(), store = %config.store_url(), "floe starting");
            server.run(shutdown_signal()).await
        }
        Command::Topics { server, command } => {
            floe_server::cli::run_topics(&server.server, command).await
        }
        Command::Produce(args) => floe_server::cli::run_produce(args).await,
        Command::Consume(args) => floe_server::cli::run_consume(args).await,
        Command::Bench { command } => floe_bench::execute(command).await,
        Command::Admin { command } => floe_server::cli::run_admin(command).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
