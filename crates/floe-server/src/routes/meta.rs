//! Cluster metadata, health, metrics and the OpenAPI document.

use std::fmt::Write;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use floe_client::api::{BrokerInfo, ClusterInfo};

use super::AppState;

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn cluster(State(state): State<AppState>) -> Json<ClusterInfo> {
    Json(ClusterInfo {
        cluster: state.cluster_name.to_string(),
        sequencer: "embedded".into(),
        brokers: vec![BrokerInfo {
            id: state.broker.options().broker_id.clone(),
            address: state.advertise.to_string(),
        }],
    })
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz() -> &'static str {
    "ready"
}

/// Prometheus text exposition: floe's own gauges and the kafka_exporter names dashboards
/// already use.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# TYPE floe_buffered_bytes gauge\nfloe_buffered_bytes {}",
        state.broker.buffered_bytes()
    );
    let applied = state.broker.sequencer().read(|s| s.applied_index);
    let _ = writeln!(
        out,
        "# TYPE floe_sequencer_applied_index gauge\nfloe_sequencer_applied_index {applied}"
    );
    let mut partitions = String::from("# TYPE kafka_topic_partitions gauge\n");
    let mut current = String::from("# TYPE kafka_topic_partition_current_offset gauge\n");
    let mut oldest = String::from("# TYPE kafka_topic_partition_oldest_offset gauge\n");
    state.broker.sequencer().read(|s| {
        for topic in s.topics() {
            let _ = writeln!(
                partitions,
                "kafka_topic_partitions{{topic=\"{}\"}} {}",
                topic.name,
                topic.partition_count()
            );
            for (index, partition) in topic.partitions.iter().enumerate() {
                let labels = format!("topic=\"{}\",partition=\"{index}\"", topic.name);
                let _ = writeln!(
                    current,
                    "kafka_topic_partition_current_offset{{{labels}}} {}",
                    partition.high_watermark
                );
                let _ = writeln!(
                    oldest,
                    "kafka_topic_partition_oldest_offset{{{labels}}} {}",
                    partition.log_start_offset
                );
            }
        }
    });
    out.push_str(&partitions);
    out.push_str(&current);
    out.push_str(&oldest);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
