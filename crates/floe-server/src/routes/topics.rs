//! Topic administration routes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use floe_api::{
    AddPartitionsRequest, CreateTopicRequest, PartitionDescription, TopicDescription, TopicList,
    TopicSummary,
};
use floe_broker::TopicDescription as BrokerTopic;
use floe_core::TopicConfig;
use serde_json::Value;

use super::extract::{ApiPath, RawBody};
use super::{AppState, checked_topic, json_body};
use crate::error::{ApiError, ApiResult};

pub async fn list(State(state): State<AppState>) -> Json<TopicList> {
    let topics = state
        .broker
        .list_topics()
        .into_iter()
        .map(|(name, partitions)| TopicSummary { name, partitions })
        .collect();
    Json(TopicList { topics })
}

pub async fn create(
    State(state): State<AppState>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<(StatusCode, Json<TopicDescription>)> {
    let request: CreateTopicRequest = json_body(&body)?;
    checked_topic(&request.name)?;
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

fn topic_config(pairs: &BTreeMap<String, Value>) -> ApiResult<TopicConfig> {
    let mut strings = BTreeMap::new();
    for (key, value) in pairs {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_config",
                    format!("topic config {key:?} must be a string or a number"),
                ));
            }
        };
        strings.insert(key.clone(), text);
    }
    TopicConfig::from_pairs(&strings)
        .map_err(|error| ApiError::bad_request("invalid_config", error.to_string()))
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
