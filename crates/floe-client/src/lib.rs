//! The typed HTTP client of floe's `/v1` API, used by the CLI, the tests and the
//! benchmarks. The wire types live in `floe-api`; they are re-exported here so a client
//! needs one dependency. [`GroupConsumer`] is a member of a consumer group: it joins,
//! heartbeats in the background and applies the server's assignment between polls.
//! Produce is exactly-once by default: requests carry an idempotent producer's sequence and
//! are retried on errors whose outcome is unknown ([`FloeClient::without_idempotence`]
//! turns it off). [`FloeClient::with_token`] authenticates every request with a bearer token;
//! [`FloeClient::with_tls`] trusts a private CA for `https://` servers and presents a client
//! certificate ([`TlsOptions`]).

#[cfg(test)]
mod auth_tests;
mod client;
mod group;
mod idempotent;
mod sse;
mod tls;
#[cfg(test)]
mod tls_tests;

pub use client::{ClientError, EventStream, FetchOptions, FloeClient, GroupRecordsOptions};
pub use floe_api as api;
pub use floe_api::{Encoding, binary};
pub use group::{AutoOffsetReset, GroupConsumer, GroupOptions};
pub use idempotent::RetryPolicy;
pub use reqwest::StatusCode;
pub use tls::{ClientIdentity, TlsOptions};
