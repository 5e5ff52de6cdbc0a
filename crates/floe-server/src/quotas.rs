//! Quotas per principal: produce bytes, fetch bytes and requests per second, as token
//! buckets on each broker. A quota is cluster-wide: each broker enforces its share, the
//! quota divided by the live brokers. Over quota answers `429 quota_exceeded` with
//! `Retry-After`; a connection is never dropped.
//!
//! Requests take one token before they run. Produce bytes are taken before the request
//! runs (its `Content-Length`), fetch bytes after the answer is built (its length): a
//! principal whose bucket is in debt is refused until it refills, as Kafka throttles after
//! the fact.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Body as _;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::AppState;

/// Principals tracked at once; beyond, idle buckets are forgotten (they start full again).
const MAX_BUCKETS: usize = 100_000;

/// One principal's limits (cluster-wide); `0` is unlimited, an absent one the default's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub produce_bytes_per_second: Option<u64>,
    pub fetch_bytes_per_second: Option<u64>,
    pub requests_per_second: Option<u64>,
}

/// A principal's limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Effective {
    produce_bytes_per_second: u64,
    fetch_bytes_per_second: u64,
    requests_per_second: u64,
}

/// Quotas: the `[quotas]` section of `floe.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaOptions {
    /// Produce bytes per second a principal may send, cluster-wide; `0`: unlimited.
    pub produce_bytes_per_second: u64,
    /// Fetch bytes per second a principal may receive, cluster-wide; `0`: unlimited.
    pub fetch_bytes_per_second: u64,
    /// Requests per second a principal may make, cluster-wide; `0`: unlimited.
    pub requests_per_second: u64,
    /// Limits of named principals, in place of the ones above.
    pub principals: BTreeMap<String, Limits>,
}

impl QuotaOptions {
    fn limits(&self, principal: &str) -> Effective {
        let named = self.principals.get(principal).copied().unwrap_or_default();
        Effective {
            produce_bytes_per_second: named
                .produce_bytes_per_second
                .unwrap_or(self.produce_bytes_per_second),
            fetch_bytes_per_second: named
                .fetch_bytes_per_second
                .unwrap_or(self.fetch_bytes_per_second),
            requests_per_second: named
                .requests_per_second
                .unwrap_or(self.requests_per_second),
        }
    }

    fn any(&self) -> bool {
        self.produce_bytes_per_second > 0
            || self.fetch_bytes_per_second > 0
            || self.requests_per_second > 0
            || !self.principals.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Produce,
    Fetch,
    Requests,
}

/// A token bucket: up to one second of the rate, refilled continuously; may go into
/// debt by what an answer turned out to cost.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Every principal's buckets on this broker.
#[derive(Debug)]
pub struct Quotas {
    options: QuotaOptions,
    buckets: parking_lot::Mutex<HashMap<(Arc<str>, Kind), Bucket>>,
}

impl Quotas {
    pub fn new(options: QuotaOptions) -> Self {
        Self {
            options,
            buckets: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Refills the bucket, then takes `cost` if it is not in debt (or, with `strict`, if
    /// it holds `cost`). `Err` is how long until it would be allowed.
    fn take(
        &self,
        principal: &Arc<str>,
        kind: Kind,
        rate: f64,
        cost: f64,
        strict: bool,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS {
            buckets
                .retain(|_, bucket| now.duration_since(bucket.updated) < Duration::from_secs(10));
        }
        // A bucket holds a second of the rate (a request bucket at least one request).
        let capacity = if strict { rate.max(cost) } else { rate };
        let bucket = buckets
            .entry((Arc::clone(principal), kind))
            .or_insert(Bucket {
                tokens: capacity,
                updated: now,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now;
        let needed = if strict { cost } else { 0.0 };
        if bucket.tokens < needed || (!strict && bucket.tokens < 0.0) {
            let missing = needed.max(0.0) - bucket.tokens;
            return Err(Duration::from_secs_f64((missing / rate).max(0.001)));
        }
        bucket.tokens -= cost;
        Ok(())
    }

    /// Takes what an answer cost after the fact (the bucket may go into debt).
    fn charge(&self, principal: &Arc<str>, kind: Kind, cost: f64) {
        if let Some(bucket) = self.buckets.lock().get_mut(&(Arc::clone(principal), kind)) {
            bucket.tokens -= cost;
        }
    }
}

impl Quotas {
    /// For an event stream, before each read: how long `principal` must wait until its
    /// fetch bucket is out of debt on this broker (`None`: it may read now). A stream is
    /// paced rather than refused, as Kafka throttles a consumer.
    pub fn fetch_wait(&self, principal: &Arc<str>, brokers: usize) -> Option<Duration> {
        let limits = self.options.limits(principal);
        if limits.fetch_bytes_per_second == 0 {
            return None;
        }
        let rate = limits.fetch_bytes_per_second as f64 / brokers.max(1) as f64;
        self.take(principal, Kind::Fetch, rate, 0.0, false).err()
    }

    /// Charges an event stream's `bytes` to `principal`'s fetch bucket.
    pub fn charge_fetch(&self, principal: &Arc<str>, bytes: usize) {
        self.charge(principal, Kind::Fetch, bytes as f64);
    }
}

/// Whether a route moves records: produce (write) or fetch (read).
fn route_kind(method: &Method, path: &str) -> Option<Kind> {
    if !path.ends_with("/records") {
        return None;
    }
    if method == Method::POST && path.starts_with("/v1/topics/") {
        Some(Kind::Produce)
    } else if method == Method::GET {
        Some(Kind::Fetch)
    } else {
        None
    }
}

fn over_quota(kind: &str, retry: Duration) -> Response {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
        format!("the {kind} quota of this principal is used up; retry after the Retry-After delay"),
    )
    .with_retry_after(retry)
    .into_response()
}

/// Enforces the caller's quotas on this broker (its share of each cluster-wide quota).
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let quotas = &state.quotas;
    if !quotas.options.any() {
        return next.run(request).await;
    }
    let Some(principal) = request
        .extensions()
        .get::<Principal>()
        .map(|p| Arc::clone(&p.0))
    else {
        return next.run(request).await;
    };
    let limits = quotas.options.limits(&principal);
    let brokers = state.broker.sequencer().membership().members().len().max(1) as f64;
    let share = |per_second: u64| per_second as f64 / brokers;
    if limits.requests_per_second > 0
        && let Err(retry) = quotas.take(
            &principal,
            Kind::Requests,
            share(limits.requests_per_second),
            1.0,
            true,
        )
    {
        return over_quota("request", retry);
    }
    let kind = route_kind(request.method(), request.uri().path());
    if kind == Some(Kind::Produce) && limits.produce_bytes_per_second > 0 {
        let Some(length) = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
        else {
            // A body of unknown length cannot be charged before it is read.
            return ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "a produce quota applies to this principal: send Content-Length",
            )
            .into_response();
        };
        if let Err(retry) = quotas.take(
            &principal,
            Kind::Produce,
            share(limits.produce_bytes_per_second),
            length as f64,
            false,
        ) {
            return over_quota("produce", retry);
        }
    }
    let fetch = kind == Some(Kind::Fetch) && limits.fetch_bytes_per_second > 0;
    if fetch
        && let Err(retry) = quotas.take(
            &principal,
            Kind::Fetch,
            share(limits.fetch_bytes_per_second),
            0.0,
            false,
        )
    {
        return over_quota("fetch", retry);
    }
    let response = next.run(request).await;
    if fetch && let Some(length) = response.body().size_hint().exact() {
        quotas.charge(&principal, Kind::Fetch, length as f64);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_paced_by_what_they_were_charged() {
        let quotas = Quotas::new(QuotaOptions {
            fetch_bytes_per_second: 2000,
            ..QuotaOptions::default()
        });
        let alice: Arc<str> = "alice".into();
        assert_eq!(quotas.fetch_wait(&alice, 2), None, "a fresh bucket");
        // Two brokers: this one's share is 1000 B/s; 4000 bytes sent put it ~3 s in debt.
        quotas.charge_fetch(&alice, 4000);
        let wait = quotas.fetch_wait(&alice, 2).expect("in debt");
        assert!(
            wait > Duration::from_millis(2500) && wait <= Duration::from_secs(3),
            "{wait:?}"
        );
        let unlimited = Quotas::new(QuotaOptions::default());
        unlimited.charge_fetch(&alice, 1 << 30);
        assert_eq!(unlimited.fetch_wait(&alice, 1), None);
    }

    #[test]
    fn buckets_allow_a_second_of_rate_then_refuse_until_refilled() {
        let quotas = Quotas::new(QuotaOptions::default());
        let alice: Arc<str> = "alice".into();
        assert!(quotas.take(&alice, Kind::Requests, 10.0, 1.0, true).is_ok());
        for _ in 0..9 {
            assert!(quotas.take(&alice, Kind::Requests, 10.0, 1.0, true).is_ok());
        }
        let retry = quotas
            .take(&alice, Kind::Requests, 10.0, 1.0, true)
            .expect_err("the eleventh within a second");
        assert!(retry <= Duration::from_millis(110), "{retry:?}");
        // Bytes go into debt by what was sent; the next request waits for the debt.
        let bob: Arc<str> = "bob".into();
        assert!(
            quotas
                .take(&bob, Kind::Produce, 1000.0, 5000.0, false)
                .is_ok()
        );
        let retry = quotas
            .take(&bob, Kind::Produce, 1000.0, 10.0, false)
            .expect_err("in debt");
        assert!(retry >= Duration::from_secs(3), "{retry:?}");
        // A rate below one request a second still lets one through.
        let dave: Arc<str> = "dave".into();
        assert!(quotas.take(&dave, Kind::Requests, 0.5, 1.0, true).is_ok());
        // Another principal is unaffected.
        let carol: Arc<str> = "carol".into();
        assert!(
            quotas
                .take(&carol, Kind::Produce, 1000.0, 10.0, false)
                .is_ok()
        );
    }

    #[test]
    fn named_principals_have_their_own_limits() {
        let options = QuotaOptions {
            produce_bytes_per_second: 100,
            fetch_bytes_per_second: 50,
            principals: [(
                "etl".to_owned(),
                Limits {
                    produce_bytes_per_second: Some(0),
                    ..Limits::default()
                },
            )]
            .into(),
            ..QuotaOptions::default()
        };
        assert_eq!(options.limits("anyone").produce_bytes_per_second, 100);
        assert_eq!(options.limits("etl").produce_bytes_per_second, 0);
        assert_eq!(
            options.limits("etl").fetch_bytes_per_second,
            50,
            "a named principal keeps the defaults it does not override"
        );
        assert_eq!(
            route_kind(&Method::POST, "/v1/topics/t/records"),
            Some(Kind::Produce)
        );
        assert_eq!(
            route_kind(&Method::GET, "/v1/topics/t/partitions/0/records"),
            Some(Kind::Fetch)
        );
        assert_eq!(
            route_kind(&Method::GET, "/v1/groups/g/members/m/records"),
            Some(Kind::Fetch)
        );
        assert_eq!(route_kind(&Method::GET, "/v1/topics/t"), None);
    }
}
