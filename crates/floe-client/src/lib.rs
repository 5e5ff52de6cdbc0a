//! The typed HTTP client of floe's `/v1` API, used by the CLI, the tests and the
//! benchmarks. The wire types live in `floe-api`; they are re-exported here so a client
//! needs one dependency.

mod client;
mod sse;

pub use client::{ClientError, EventStream, FetchOptions, FloeClient};
pub use floe_api as api;
pub use floe_api::{Encoding, binary};
pub use reqwest::StatusCode;
