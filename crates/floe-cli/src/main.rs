//! The `floe` binary: `floe serve` runs a broker; the other subcommands are a kcat-style
//! client of a running one. `floe bench` runs the separate `floe-bench` tool, so this
//! binary never links the benchmark's peers, proxy or sink.

mod admin;
mod bench;
mod consume;
mod consume_group;
mod groups;
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
    /// Print records of a topic from an offset, earliest or latest; follow the tail with -f;
    /// share the partitions with other consumers of a group with -g.
    Consume(consume::ConsumeArgs),
    /// List, describe and delete consumer groups; reset their committed offsets.
    Groups {
        #[command(subcommand)]
        command: groups::GroupsCommand,
    },
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
        Command::Groups { command } => groups::run(&client(), command).await?,
        Command::Bench { args } => return bench::run(args),
        Command::Admin { command } => admin::run(command).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_group_consume_parses_its_options() {
        let cli = Cli::try_parse_from([
            "floe",
            "consume",
            "orders",
            "-g",
            "order readers",
            "--commit-every",
            "0s",
            "--session-timeout",
            "10s",
            "-o",
            "latest",
        ])
        .expect("parses");
        let Command::Consume(args) = cli.command else {
            panic!("not a consume: {:?}", cli.command);
        };
        assert_eq!(args.group.as_deref(), Some("order readers"));
        assert_eq!(args.commit_every, std::time::Duration::ZERO);
        assert_eq!(args.session_timeout, std::time::Duration::from_secs(10));
        assert_eq!(args.offset, "latest");
    }

    #[test]
    fn groups_take_the_server_option_anywhere() {
        let cli = Cli::try_parse_from([
            "floe",
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to",
            "earliest",
            "-s",
            "http://127.0.0.1:9",
        ])
        .expect("parses");
        assert_eq!(cli.server.server, "http://127.0.0.1:9");
        assert!(matches!(cli.command, Command::Groups { .. }));
    }
}
