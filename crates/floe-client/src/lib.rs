//! The typed HTTP client of floe's `/v1` API, and the API's wire types, shared by the
//! server, the CLI, the tests and the benchmarks.

pub mod api;
pub mod binary;
mod client;
mod sse;

pub use client::{ClientError, Encoding, EventStream, FetchOptions, FloeClient};
