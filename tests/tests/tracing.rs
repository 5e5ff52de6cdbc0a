//! Traces reach an OpenTelemetry collector over OTLP/HTTP. The collector here is a real
//! HTTP server that decodes the OTLP protobuf bodies floe posts; floe runs with sampling
//! off, so only the request that carries a sampled W3C `traceparent` is exported, with its
//! produce, the segment it went into (which an unsampled request opened), and that
//! segment's upload and commit.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use floe_client::api::{Encoding, ProduceRecordJson};
use floe_tests::FloeProcess;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message;
use serde_json::{Value, json};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[derive(Default)]
struct Collector {
    spans: Mutex<Vec<Span>>,
    services: Mutex<Vec<String>>,
    content_types: Mutex<Vec<String>>,
}

async fn receive(
    State(collector): State<Arc<Collector>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    collector.content_types.lock().push(content_type.to_owned());
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    for resource_spans in request.resource_spans {
        for attribute in resource_spans.resource.iter().flat_map(|r| &r.attributes) {
            if attribute.key == "service.name" {
                collector
                    .services
                    .lock()
                    .push(text(attribute.value.as_ref()));
            }
        }
        for scope in resource_spans.scope_spans {
            collector.spans.lock().extend(scope.spans);
        }
    }
    StatusCode::OK
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(AnyValue::IntValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .map(|attribute| text(attribute.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|span| span.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span among {:?}", names(spans));
    found[0]
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|span| span.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_a_sampled_traceparent_is_traced_through_its_segment() {
    let collector = Arc::new(Collector::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(Arc::clone(&collector));
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{address}");
    // Segments gather for a second, so both requests below share one.
    let mut server = FloeProcess::start_with_env(
        dir.path(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--linger",
            "1s",
            "--flush-when-idle",
            "false",
        ],
        &[("FLOE_TRACING__SAMPLE_RATIO", "0".into())],
    );
    let client = server.client();
    floe_tests::create_topic(&client, "traced", 2).await;
    // Without a traceparent, sampling (off) decides: nothing of this one is exported. It
    // opens the segment the traced request joins.
    let record = ProduceRecordJson {
        value: Some(Value::String("untraced".into())),
        partition: Some(1),
        ..ProduceRecordJson::default()
    };
    let untraced = tokio::spawn(async move {
        client
            .produce("traced", vec![record], Encoding::Text)
            .await
            .expect("untraced produce")
    });
    while floe_tests::metric_at(&server.url, "floe_buffered_bytes")
        .await
        .unwrap_or(0.0)
        <= 0.0
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/topics/traced/records", server.url))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"records": [{"value": "traced", "partition": 0}]}))
        .send()
        .await
        .expect("traced produce");
    assert_eq!(answer.status(), 200);
    untraced.await.expect("untraced task");
    // A graceful stop sends the spans still queued.
    tokio::task::block_in_place(|| server.stop());
    serving.abort();

    let spans = collector.spans.lock().clone();
    assert!(
        collector
            .content_types
            .lock()
            .iter()
            .all(|content_type| content_type == "application/x-protobuf"),
        "{:?}",
        collector.content_types.lock()
    );
    assert!(
        collector.services.lock().iter().all(|name| name == "floe"),
        "{:?}",
        collector.services.lock()
    );
    assert!(
        spans.iter().all(|span| hex(&span.trace_id) == TRACE_ID),
        "only the caller's trace is sampled: {:?}",
        spans
            .iter()
            .map(|span| (span.name.as_str(), hex(&span.trace_id)))
            .collect::<Vec<_>>()
    );
    let request = named(&spans, "POST /v1/topics/{topic}/records");
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attribute(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    let produce = named(&spans, "produce");
    assert_eq!(produce.parent_span_id, request.span_id);
    assert_eq!(attribute(produce, "topic").as_deref(), Some("traced"));
    let segment_id = attribute(produce, "segment").expect("the produce names its segment");
    // The segment hangs under the sampled request, though the other one opened it.
    let segment = named(&spans, "segment");
    assert_eq!(segment.parent_span_id, produce.span_id);
    assert_eq!(attribute(segment, "segment"), Some(segment_id));
    assert_eq!(attribute(segment, "requests").as_deref(), Some("2"));
    assert_eq!(attribute(segment, "reason").as_deref(), Some("linger"));
    assert_eq!(segment.links.len(), 1, "linked to the untraced request");
    for stage in ["upload", "commit"] {
        let stage_span = named(&spans, stage);
        assert_eq!(stage_span.parent_span_id, segment.span_id, "{stage}");
        assert!(stage_span.end_time_unix_nano >= stage_span.start_time_unix_nano);
    }
}
