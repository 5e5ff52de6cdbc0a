//! The `floe` server and command line: configuration, the HTTP API over a broker, and the
//! client subcommands. Nothing depends on this crate.

pub mod app;
pub mod cli;
pub mod cluster;
mod codec;
pub mod config;
mod error;
mod routes;

pub use app::Server;
pub use config::ServeConfig;
