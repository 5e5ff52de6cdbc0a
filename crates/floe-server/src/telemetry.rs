//! Logs and traces. Logs: `tracing` to stderr, as text or JSON, filtered by `RUST_LOG`
//! (default `info`). Traces: when `tracing.otlp_endpoint` is set, the spans of requests,
//! produce (with its segment's upload and commit), and fetch are exported to an
//! OpenTelemetry collector over OTLP/HTTP. A request carrying a W3C `traceparent` joins
//! the caller's trace and follows its sampling decision (unless
//! `tracing.trust_remote_parent` is off); others are sampled at `tracing.sample_ratio`.

use std::time::Duration;

use floe_core::InvalidSetting;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

/// Trace export: the `[tracing]` section of `floe.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingOptions {
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver, e.g.
    /// `http://otel-collector:4318`; spans are posted to `<url>/v1/traces`. Unset: no
    /// spans are exported.
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces started here that are exported, 0 to 1. A request with a
    /// `traceparent` follows its caller's decision instead, while
    /// [`trust_remote_parent`](Self::trust_remote_parent) is on.
    pub sample_ratio: f64,
    /// Whether a caller's `traceparent` decides if its request is exported (the W3C
    /// default). Off, the caller's trace is still joined, but `sample_ratio` decides by a
    /// keyed hash of its trace id, so no client can raise the export rate.
    pub trust_remote_parent: bool,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TracingOptions {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 0.01,
            trust_remote_parent: true,
            service_name: "floe".into(),
        }
    }
}

impl TracingOptions {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(InvalidSetting::new(
                "sample_ratio",
                format!("{} must be between 0 and 1", self.sample_ratio),
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(InvalidSetting::new(
                "otlp_endpoint",
                format!("{endpoint:?} must be an http:// or https:// URL"),
            ));
        }
        if self.service_name.is_empty() {
            return Err(InvalidSetting::new(
                "service_name",
                "must not be empty".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Exports spans until [`Tracing::shutdown`], which sends what is still queued.
#[derive(Debug)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Sends the spans still queued (at most a few seconds) and stops exporting.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(Duration::from_secs(10), flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("floe: exporting the last spans failed: {error}"),
            _ => eprintln!("floe: exporting the last spans did not finish"),
        }
    }
}

/// Decides which traces are exported: trusting a caller's flag, the W3C way, or not.
fn sampler(options: &TracingOptions) -> Box<dyn opentelemetry_sdk::trace::ShouldSample> {
    if options.trust_remote_parent {
        Box::new(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            options.sample_ratio,
        ))))
    } else {
        Box::new(OwnDecision::new(options.sample_ratio))
    }
}

/// Samples a trace started here or joined from a caller at `ratio`, by a keyed hash of
/// its trace id: the caller chooses the id, and the SDK's ratio sampler reads its bits
/// directly, so a crafted id (low half zero) would always be sampled. The key is this
/// process's, so the spans of one trace here all decide alike; a span under a local
/// parent follows the parent.
#[derive(Debug, Clone)]
struct OwnDecision {
    threshold: u64,
    always: bool,
    key: std::hash::RandomState,
}

impl OwnDecision {
    fn new(ratio: f64) -> Self {
        Self {
            threshold: (ratio.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            always: ratio >= 1.0,
            key: std::hash::RandomState::new(),
        }
    }
}

impl opentelemetry_sdk::trace::ShouldSample for OwnDecision {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        _name: &str,
        _span_kind: &opentelemetry::trace::SpanKind,
        _attributes: &[opentelemetry::KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        use opentelemetry::trace::TraceContextExt;
        use opentelemetry_sdk::trace::SamplingDecision;
        use std::hash::BuildHasher;
        let parent = parent_context
            .map(|context| context.span().span_context().clone())
            .filter(|parent| parent.is_valid());
        let sampled = match &parent {
            Some(parent) if !parent.is_remote() => parent.is_sampled(),
            _ => self.always || self.key.hash_one(trace_id.to_bytes()) < self.threshold,
        };
        opentelemetry_sdk::trace::SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: parent
                .map(|parent| parent.trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

/// The spans exported: the server's and the broker's, at `info` and above.
fn exported_targets() -> Targets {
    Targets::new()
        .with_target("floe_server", tracing::Level::INFO)
        .with_target("floe_broker", tracing::Level::INFO)
}

/// Installs the global subscriber (logs, and traces when configured); call once, before
/// the server starts.
pub fn init(format: LogFormat, options: &TracingOptions) -> anyhow::Result<Tracing> {
    // Logs are events only: spans are for the trace export, so without it no span is
    // ever built (each costs an allocation per request) and log lines stay as they were.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Keep the level hint, so that disabled `debug!` and `trace!` sites stay free.
    let hint = filter.max_level_hint();
    let filter = filter.and(
        filter_fn(|metadata| metadata.is_event())
            .with_max_level_hint(hint.unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE)),
    );
    // Colour only for a terminal: a container's or a service manager's log collector
    // would store the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let Some(endpoint) = &options.otlp_endpoint else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Tracing { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(10))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(options))
        .with_resource(
            Resource::builder()
                .with_service_name(options.service_name.clone())
                .build(),
        )
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("floe"))
        .with_filter(exported_targets());
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Ok(Tracing {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_sdk::trace::SamplingDecision;

    use super::*;

    /// What the sampler decides for a span under a caller's `traceparent` with the
    /// sampled flag, and for one with no parent.
    fn decisions(ratio: f64, trust: bool) -> (SamplingDecision, SamplingDecision) {
        let options = TracingOptions {
            sample_ratio: ratio,
            trust_remote_parent: trust,
            ..TracingOptions::default()
        };
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id");
        let remote = SpanContext::new(
            trace_id,
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let parent = Context::new().with_remote_span_context(remote);
        let attributes: [KeyValue; 0] = [];
        let decide = |parent: Option<&Context>| {
            sampler(&options)
                .should_sample(
                    parent,
                    trace_id,
                    "POST /route",
                    &SpanKind::Server,
                    &attributes,
                    &[],
                )
                .decision
        };
        (decide(Some(&parent)), decide(None))
    }

    #[test]
    fn an_untrusted_callers_trace_id_does_not_choose_its_sampling() {
        // The SDK's ratio sampler samples any id whose low half is zero; ours hashes it.
        let sampler = sampler(&TracingOptions {
            sample_ratio: 0.5,
            trust_remote_parent: false,
            ..TracingOptions::default()
        });
        let attributes: [KeyValue; 0] = [];
        let sampled = (0..1000u64)
            .filter(|high| {
                let id = TraceId::from_bytes(((u128::from(*high) + 1) << 64).to_be_bytes());
                let decision = sampler
                    .should_sample(None, id, "GET /route", &SpanKind::Server, &attributes, &[])
                    .decision;
                decision == SamplingDecision::RecordAndSample
            })
            .count();
        assert!(
            (350..650).contains(&sampled),
            "{sampled} of 1000 crafted ids sampled"
        );
        // A span under a local parent follows it, whatever its id.
        let local = SpanContext::new(
            TraceId::from_bytes(1u128.to_be_bytes()),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let parent = Context::new().with_remote_span_context(local.clone());
        let child = |parent: &Context| {
            sampler
                .should_sample(
                    Some(parent),
                    local.trace_id(),
                    "segment",
                    &SpanKind::Internal,
                    &attributes,
                    &[],
                )
                .decision
        };
        assert_eq!(child(&parent), SamplingDecision::RecordAndSample);
        let unsampled = SpanContext::new(
            local.trace_id(),
            local.span_id(),
            TraceFlags::default(),
            false,
            TraceState::default(),
        );
        let parent = Context::new().with_remote_span_context(unsampled);
        assert_eq!(child(&parent), SamplingDecision::Drop);
    }

    #[test]
    fn a_callers_sampled_flag_decides_only_while_trusted() {
        use SamplingDecision::{Drop, RecordAndSample};
        assert_eq!(decisions(0.0, true), (RecordAndSample, Drop));
        assert_eq!(decisions(0.0, false), (Drop, Drop));
        // Untrusted, the caller's trace is still sampled at the ratio, like any other.
        assert_eq!(decisions(1.0, false), (RecordAndSample, RecordAndSample));
    }
}
