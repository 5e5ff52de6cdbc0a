//! Topic administration routes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use floe_api::{
    AddPartitionsRequest, AlterConfigRequest, CreateTopicRequest, ExportError, ExportStatus,
    PartitionDescription, PartitionExport, TopicDescription, TopicList, TopicSummary,
};
use floe_broker::TopicDescription as BrokerTopic;
use floe_core::{Operation, ResourceKind, TopicConfig};
use serde_json::Value;

use super::extract::{ApiPath, RawBody};
use super::{AppState, checked_topic, json_body};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<TopicList> {
    let topics = state
        .broker
        .list_topics()
        .into_iter()
        .filter(|(name, _)| {
            state
                .auth
                .may(&principal, Operation::Describe, ResourceKind::Topic, name)
        })
        .map(|(name, partitions)| TopicSummary { name, partitions })
        .collect();
    Json(TopicList { topics })
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<(StatusCode, Json<TopicDescription>)> {
    let request: CreateTopicRequest = json_body(&body)?;
    checked_topic(&request.name)?;
    // Kafka's rule: CREATE on the cluster, or on the topic.
    if !state
        .auth
        .may(&principal, Operation::Create, ResourceKind::Cluster, "")
    {
        state.auth.check(
            &principal,
            Operation::Create,
            ResourceKind::Topic,
            &request.name,
        )?;
    }
    let config = topic_config(&request.config)?;
    let created = state
        .broker
        .create_topic(&request.name, request.partitions, config)
        .await?;
    Ok((StatusCode::CREATED, Json(describe_json(created))))
}

pub async fn describe(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<TopicDescription>> {
    checked_topic(&topic)?;
    Ok(Json(describe_json(state.broker.describe_topic(&topic)?)))
}

pub async fn delete(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<StatusCode> {
    checked_topic(&topic)?;
    state.broker.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_partitions(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<Json<TopicDescription>> {
    checked_topic(&topic)?;
    let request: AddPartitionsRequest = json_body(&body)?;
    Ok(Json(describe_json(
        state.broker.add_partitions(&topic, request.count).await?,
    )))
}

/// Changes a topic's configuration (Kafka's incremental alter: set and reset keys).
pub async fn alter_config(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<Json<TopicDescription>> {
    checked_topic(&topic)?;
    let request: AlterConfigRequest = json_body(&body)?;
    if request.set.is_empty() && request.reset.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "nothing to change: give keys in \"set\" or \"reset\"",
        ));
    }
    let set = config_strings(&request.set)?;
    Ok(Json(describe_json(
        state
            .broker
            .alter_topic_config(&topic, set, request.reset)
            .await?,
    )))
}

/// Where a topic's Parquet export stands, partition by partition.
pub async fn export_status(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<ExportStatus>> {
    checked_topic(&topic)?;
    let status = state.broker.export_status(&topic)?;
    Ok(Json(ExportStatus {
        topic: status.topic,
        enabled: status.enabled,
        path: status.path,
        value_format: status.value_format.to_string(),
        schema: status.schema.map(|schema| {
            schema
                .fields
                .into_iter()
                .map(|(name, kind)| {
                    let kind = serde_json::to_value(kind).expect("a type serializes");
                    (name, kind.as_str().unwrap_or_default().to_owned())
                })
                .collect()
        }),
        partitions: status
            .partitions
            .into_iter()
            .map(|p| PartitionExport {
                partition: p.partition,
                cursor: p.cursor,
                high_watermark: p.high_watermark,
                lag_records: p.lag_records,
                lag_seconds: p.lag_seconds,
                pending: p.pending,
                files: p.files,
                bytes: p.bytes,
                records: p.records,
                owner: p.owner,
                last_error: p.last_error.map(|note| ExportError {
                    at_ms: note.at_ms,
                    message: note.message,
                }),
            })
            .collect(),
    }))
}

fn topic_config(pairs: &BTreeMap<String, Value>) -> ApiResult<TopicConfig> {
    TopicConfig::from_pairs(&config_strings(pairs)?)
        .map_err(|error| ApiError::bad_request("invalid_config", error.to_string()))
}

/// Config values as Kafka's strings: strings, numbers and booleans are accepted.
fn config_strings(pairs: &BTreeMap<String, Value>) -> ApiResult<BTreeMap<String, String>> {
    let mut strings = BTreeMap::new();
    for (key, value) in pairs {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            // A JSON column schema may be given as an object.
            Value::Object(_) => value.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_config",
                    format!(
                        "topic config {key:?} must be a string, a number, a boolean or (for a schema) an object"
                    ),
                ));
            }
        };
        strings.insert(key.clone(), text);
    }
    Ok(strings)
}

fn describe_json(topic: BrokerTopic) -> TopicDescription {
    TopicDescription {
        name: topic.name,
        id: topic.id.0,
        created_ms: topic.created_ms,
        config: serde_json::to_value(&topic.config).expect("topic config serializes"),
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionDescription {
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                size_bytes: p.size_bytes,
                owner: p.owner,
                owner_epoch: p.owner_epoch,
            })
            .collect(),
    }
}
