//! The `floe` binary: `floe serve` runs a broker; the other subcommands are a kcat-style
//! client of a running one. `floe bench` runs the separate `floe-bench` tool, so this
//! binary never links the benchmark's peers, proxy or sink.

mod admin;
mod bench;
mod consume;
mod produce;
mod topics;

use clap::{Args, Parser, Subcommand};
use floe_client::FloeClient;

#[derive(Debug, Parser)]
#[command(
    name = "floe",
    version,
    about = "floe: Kafka-style event streaming on object storage",
    long_about = None,
    args_override_self = true
)]
struct Cli {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: Command,
}

/// The server the client commands talk to; accepted before or after the subcommand.
#[derive(Debug, Args)]
struct ServerArg {
    /// Server URL.
    #[arg(
        long,
        short = 's',
        env = "FLOE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker. With no options: 127.0.0.1:8080, data under ./floe-data.
    Serve(Box<floe_server::ServeArgs>),
    /// List, create, describe, grow and delete topics.
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// Produce records, one per line, from stdin or a file.
    Produce(produce::ProduceArgs),
    /// Print records of a topic from an offset, earliest or latest; follow the tail with -f.
    Consume(consume::ConsumeArgs),
    /// The benchmark tool (runs `floe-bench`, installed beside `floe`): load runs against
    /// floe, s2-lite or a loopback sink, the disk limit, and helper servers
    /// (`floe bench run --help`).
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments passed to `floe-bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Operator tasks.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

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
        Ok(code) => code,
        Err(error) => {
            eprintln!("floe: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let client = || FloeClient::new(&cli.server.server);
    match cli.command {
        Command::Serve(args) => floe_server::serve(*args).await?,
        Command::Topics { command } => topics::run(&client(), command).await?,
        Command::Produce(args) => produce::run(&client(), args).await?,
        Command::Consume(args) => return consume::run(&cli.server.server, args).await,
        Command::Bench { args } => return bench::run(args),
        Command::Admin { command } => admin::run(command).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}
