//! Cluster metadata, health, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use floe_api::{BrokerInfo, ClusterInfo, PartitionOwner};

use crate::error::ApiError;

use super::AppState;

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn cluster(State(state): State<AppState>) -> Json<ClusterInfo> {
    let sequencer = state.broker.sequencer();
    let membership = sequencer.membership();
    let brokers = membership
        .members()
        .into_iter()
        .map(|member| BrokerInfo {
            id: member.broker,
            address: member.advertise,
            started_ms: member.started_ms,
        })
        .collect();
    let (applied_index, owners) = sequencer.read(|s| {
        let owners = s
            .topics()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(index, partition)| PartitionOwner {
                        topic: topic.name.clone(),
                        partition: index as u32,
                        owner: membership
                            .owner_of(partition.owner.as_deref())
                            .unwrap_or_default(),
                        epoch: partition.owner_epoch,
                    })
            })
            .collect();
        (s.applied_index, owners)
    });
    Json(ClusterInfo {
        cluster: state.cluster_name.to_string(),
        sequencer: membership.mode().as_str().into(),
        broker: membership.broker().to_owned(),
        leader: membership.leader().map(|leader| leader.broker),
        applied_index,
        brokers,
        owners,
    })
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Alive unless this broker can never commit again without a restart (an embedded
/// sequencer whose log failed): then `503`, so a liveness probe restarts it.
pub async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match state.broker.sequencer().membership().failed() {
        Some(error) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            format!("the sequencer log failed; restart the broker: {error}"),
        )),
        None => Ok("ok"),
    }
}

/// Ready when this broker can commit: when embedded, unless its log failed; in a
/// cluster, while its session is live and a sequencer leader is known.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .broker
        .sequencer()
        .membership()
        .ready()
        .map_err(|error| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                error.to_string(),
            )
        })?;
    Ok("ready")
}

/// The metrics registry in the OpenMetrics text format, which Prometheus scrapes: floe's
/// own names and the kafka_exporter ones dashboards already use. Every metric is
/// registered where it is counted; gauges of the state are read at scrape time.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &state.metrics).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be encoded",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    ))
}
