//! The `floe-bench` binary; the same commands are `floe bench …`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "floe-bench", version, about = "floe's benchmark tool")]
struct Cli {
    #[command(subcommand)]
    command: floe_bench::BenchCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match floe_bench::execute(Cli::parse().command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floe-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
