//! Exactly-once produce by default (ADR 0010): each produce request carries an idempotent
//! producer's id, epoch and next sequence, and is retried with the same sequence on
//! connection errors, timeouts, `5xx` and `429`, so a retry of a request that was
//! committed (its answer lost) is answered with the original offsets and writes nothing.
//!
//! A producer sends one request at a time (its sequences must reach the cluster in order),
//! so a client keeps a few producers and concurrent produce calls spread over them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use floe_api::{InitProducerRequest, ProducerIdentity};
use reqwest::{Method, RequestBuilder, StatusCode};

use crate::client::{ClientError, FloeClient};

/// Producers one client keeps: concurrent produce calls beyond this wait for one.
const PRODUCERS: usize = 8;

/// How a produce is retried: attempts in all, and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// One producer: its identity once initialised, the sequence its next request carries,
/// and whether the outcome of its last request is unknown (retries ran out), in which case
/// it starts over as a new producer rather than guess.
#[derive(Debug, Default)]
struct Slot {
    identity: Option<ProducerIdentity>,
    next_sequence: u64,
}

#[derive(Debug)]
pub(crate) struct Producers {
    slots: Vec<tokio::sync::Mutex<Slot>>,
    next: AtomicUsize,
    /// The server has no idempotent producers (an older floe): produce without them, and
    /// without retries, which could then duplicate.
    unsupported: AtomicBool,
}

impl Default for Producers {
    fn default() -> Self {
        Self {
            slots: (0..PRODUCERS)
                .map(|_| tokio::sync::Mutex::default())
                .collect(),
            next: AtomicUsize::new(0),
            unsupported: AtomicBool::new(false),
        }
    }
}

/// Whether a failed attempt may be retried with the same sequence: its outcome is unknown
/// or the server asked to come back.
fn retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Http(error) => {
            error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
        }
        ClientError::Api { status, .. } => {
            status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
        }
        _ => false,
    }
}

fn error_code(error: &ClientError) -> Option<&str> {
    match error {
        ClientError::Api { body, .. } => Some(body.error_code.as_str()),
        _ => None,
    }
}

impl FloeClient {
    /// A new idempotent producer (`POST /v1/producers`), or the next epoch of `existing`.
    pub async fn init_producer(
        &self,
        existing: Option<ProducerIdentity>,
    ) -> Result<ProducerIdentity, ClientError> {
        let request = InitProducerRequest {
            producer_id: existing.map(|p| p.producer_id),
            producer_epoch: existing.map(|p| p.producer_epoch),
        };
        let response = self
            .request(Method::POST, "/v1/producers")
            .json(&request)
            .send()
            .await?;
        crate::client::json(response).await
    }

    /// Sends one produce request built by `build` (given the producer's id, epoch and
    /// sequence, or `None` without idempotence), exactly once: with the next sequence of
    /// one of this client's producers, retried on errors whose outcome is unknown.
    /// The body of the successful answer is read here, so an answer cut short is retried
    /// like any other lost answer.
    ///
    /// A sequence is used for one request only. Unless the request ends in success or in
    /// a refusal that certainly wrote nothing (no attempt's outcome was unknown), the
    /// producer is dropped and the next request goes out under a new one — also when the
    /// caller drops this future mid-request.
    pub(crate) async fn send_idempotent(
        &self,
        build: impl Fn(Option<(ProducerIdentity, u64)>) -> RequestBuilder,
    ) -> Result<bytes::Bytes, ClientError> {
        let producers = Arc::clone(&self.producers);
        if !self.idempotent || producers.unsupported.load(Ordering::Relaxed) {
            return read(build(None)).await;
        }
        let mut held = Held {
            slot: self.take_slot(&producers).await,
            settled: false,
        };
        let policy = self.retry;
        let mut backoff = policy.initial_backoff;
        let mut attempt = 0;
        // Whether an attempt of this request may have been committed.
        let mut uncertain = false;
        loop {
            attempt += 1;
            let identity = match held.slot.identity {
                Some(identity) => identity,
                None => match self.init_producer(None).await {
                    Ok(identity) => {
                        held.slot.identity = Some(identity);
                        held.slot.next_sequence = 0;
                        identity
                    }
                    Err(ClientError::Api { status, .. })
                        if status == StatusCode::NOT_FOUND
                            || status == StatusCode::METHOD_NOT_ALLOWED =>
                    {
                        producers.unsupported.store(true, Ordering::Relaxed);
                        held.settled = true;
                        return read(build(None)).await;
                    }
                    Err(error) if retryable(&error) && attempt < policy.attempts => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(policy.max_backoff);
                        continue;
                    }
                    Err(error) => {
                        held.settled = true;
                        return Err(error);
                    }
                },
            };
            let sequence = held.slot.next_sequence;
            let sent = read(build(Some((identity, sequence)))).await;
            match sent {
                Ok(answer) => {
                    held.slot.next_sequence += 1;
                    held.settled = true;
                    return Ok(answer);
                }
                // Expired while idle (nothing of this request can be in flight under it):
                // a new producer sends the request afresh.
                Err(error)
                    if error_code(&error) == Some("unknown_producer_id")
                        && !uncertain
                        && attempt < policy.attempts =>
                {
                    held.slot.identity = None;
                }
                Err(error) if retryable(&error) && attempt < policy.attempts => {
                    uncertain = true;
                    let wait = match &error {
                        ClientError::Api {
                            retry_after: Some(after),
                            ..
                        } => *after,
                        _ => backoff,
                    };
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
                Err(error) => {
                    // A refusal of a request none of whose attempts may have been written
                    // leaves the sequence unused, unless it says the producer itself is
                    // unusable; anything else starts a new producer.
                    let broken = matches!(
                        error_code(&error),
                        Some(
                            "producer_fenced"
                                | "out_of_order_sequence"
                                | "duplicate_sequence_mismatch"
                                | "unknown_producer_id"
                        )
                    );
                    held.settled = !uncertain && !retryable(&error) && !broken;
                    return Err(error);
                }
            }
        }
    }

    async fn take_slot<'a>(&self, producers: &'a Producers) -> tokio::sync::MutexGuard<'a, Slot> {
        // The first free producer: one caller at a time keeps using one producer id.
        for slot in &producers.slots {
            if let Ok(slot) = slot.try_lock() {
                return slot;
            }
        }
        let start = producers.next.fetch_add(1, Ordering::Relaxed);
        producers.slots[start % producers.slots.len()].lock().await
    }
}

/// A JSON produce body with an idempotent producer's fields.
#[derive(serde::Serialize)]
pub(crate) struct IdempotentProduce<'a> {
    pub records: &'a [floe_api::ProduceRecordJson],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_epoch: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// A producer held for one request: dropped (the slot forgets its identity) unless the
/// request settled, so a sequence whose outcome is unknown is never used again.
struct Held<'a> {
    slot: tokio::sync::MutexGuard<'a, Slot>,
    settled: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.slot.identity = None;
        }
    }
}

/// Sends a request and reads a successful answer's body whole.
async fn read(request: RequestBuilder) -> Result<bytes::Bytes, ClientError> {
    let response = crate::client::check(request.send().await?).await?;
    Ok(response.bytes().await?)
}
