//! floe's benchmark tool. `run` drives producers and consumers over HTTP against floe,
//! s2-lite or a loopback sink with identical shapes and one HTTP client; `disk` measures
//! the local disk; `sink` and `s3-proxy` are the helper servers a report run starts.
//! `scripts/bench.sh` runs the standard workloads (W1–W6) side by side.

pub mod groups;
pub mod limit;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod s2;
pub mod target;
pub mod values;
pub mod workload;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One benchmark run against one system; prints a report (and appends it as JSON).
    Run(Box<workload::RunArgs>),
    /// Measures fsync'd object-sized file writes on the local disk.
    Disk(limit::DiskArgs),
    /// An HTTP server that reads request bodies and answers at once (the loopback limit).
    Sink(limit::SinkArgs),
    /// A proxy in front of an S3-compatible server that counts requests by kind.
    S3Proxy(proxy::ProxyArgs),
    /// Consumer groups against a running floe: offset commits per second, a member's
    /// end-to-end latency, and a 3 → 4 member rebalance.
    Groups(groups::GroupArgs),
}

pub async fn execute(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Run(args) => workload::run(*args).await.map(drop),
        BenchCommand::Disk(args) => limit::disk(args).await.map(drop),
        BenchCommand::Sink(args) => limit::sink(args).await,
        BenchCommand::S3Proxy(args) => proxy::serve(args).await,
        BenchCommand::Groups(args) => groups::run(args).await,
    }
}
