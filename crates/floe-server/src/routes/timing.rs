//! Request latency by route: from the request reaching the router to its answer's head,
//! so it holds what the broker's own histograms do not — reading and decoding the body,
//! authentication, quotas, encoding the answer. A produce's time outside the pipeline is
//! this minus `floe_produce_latency_seconds`. Long-polls count their whole wait, event
//! streams only until their head is sent. Each answer is also counted by its status and
//! error code. Each request is also a span (`request`, named `METHOD /route` in traces),
//! the parent of the broker's: a `traceparent` header makes it part of the caller's trace.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::AppState;
use crate::error::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    /// The route's template (`/v1/topics/{topic}/records`), never the path itself, so
    /// the label set stays as small as the API; `unmatched` for the fallback.
    route: String,
    method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResponseLabels {
    route: String,
    method: &'static str,
    /// The answer's status code (`200`, `404`, `429`, …).
    status: u16,
    /// The error body's `error_code` (`busy`, `unknown_topic`, …); empty for an
    /// answer that is not an error, or one that did not come from floe's error mapping.
    error_code: &'static str,
}

const OTHER: &str = "_OTHER";

/// The method as a label: HTTP lets a client invent methods, so any outside the standard
/// ones counts as `_OTHER` (as OpenTelemetry names it), and a flood of made-up methods
/// cannot grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(floe_core::metrics::latency_buckets())
}

/// The request histograms, shared by every connection.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    responses: Family<ResponseLabels, Counter>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
            responses: Family::default(),
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
        registry.register(
            "floe_http_responses",
            "HTTP answers by route template, method, status and error code",
            self.responses.clone(),
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
    let method = method_label(request.method());
    // OpenTelemetry's HTTP conventions: an unknown method names the span `HTTP /route`
    // and keeps the original token beside `_OTHER`.
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{} {route}", if method == OTHER { "HTTP" } else { method }),
        otel.kind = "server",
        http.request.method = %method,
        http.request.method_original = tracing::field::Empty,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    if method == OTHER {
        span.record("http.request.method_original", request.method().as_str());
    }
    if !span.is_disabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let metrics = &state.requests;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
        })
        .observe(started.elapsed().as_secs_f64());
    let error_code = response
        .extensions()
        .get::<ErrorCode>()
        .map_or("", |code| code.0);
    metrics
        .responses
        .get_or_create(&ResponseLabels {
            route,
            method,
            status,
            error_code,
        })
        .inc();
    response
}
