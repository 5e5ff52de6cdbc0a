//! Request latency by route: from the request reaching the router to its answer's head,
//! so it holds what the broker's own histograms do not — reading and decoding the body,
//! authentication, quotas, encoding the answer. A produce's time outside the pipeline is
//! this minus `floe_produce_latency_seconds`. Event streams and long-polls count their
//! whole wait. Each request is also a span (`request`, named `METHOD /route` in traces),
//! the parent of the broker's: a `traceparent` header makes it part of the caller's trace.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::AppState;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    /// The route's template (`/v1/topics/{topic}/records`), never the path itself, so
    /// the label set stays as small as the API; `unmatched` for the fallback.
    route: String,
    method: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(floe_core::metrics::latency_buckets())
}

/// The request histograms, shared by every connection.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RequestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_http_request_seconds",
            "HTTP requests from reaching the router to the answer's head, by route template \
             and method",
            self.latency.clone(),
        );
    }
}

/// Times one request.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    state
        .requests
        .latency
        .get_or_create(&RouteLabels { route, method })
        .observe(started.elapsed().as_secs_f64());
    response
}
