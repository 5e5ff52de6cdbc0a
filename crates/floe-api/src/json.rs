//! JSON bodies of the `/v1` API (documented in `crates/floe-server/openapi.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one error shape every failing request gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: String,
    pub message: String,
    /// With `offset_out_of_range`: the partition's first kept offset, where a consumer
    /// that fell behind retention can resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    /// With `offset_out_of_range`: the partition's next offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicRequest {
    pub name: String,
    #[serde(default = "one")]
    pub partitions: u32,
    /// Kafka-style keys; values may be strings or numbers.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
    pub owner: String,
    #[serde(default)]
    pub owner_epoch: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    pub id: u64,
    pub created_ms: i64,
    pub config: Value,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPartitionsRequest {
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderJson {
    pub name: String,
    #[serde(default)]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecordJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    pub records: Vec<ProduceRecordJson>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordOffset {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProduceResponse {
    pub offsets: Vec<RecordOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchedRecordJson {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Value>,
    pub value: Option<Value>,
    pub headers: Vec<HeaderJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchResponse {
    pub records: Vec<FetchedRecordJson>,
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// The broker that owns the partition: fetching there is cheapest (its tail is warm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerRef>,
}

/// A partition's owner and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRef {
    pub broker: String,
    pub address: String,
}

/// The response header naming the owner's address on every fetch answer (JSON, binary
/// framing and event streams alike).
pub const OWNER_HEADER: &str = "floe-partition-owner";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OffsetResponse {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: String,
    pub address: String,
    /// Milliseconds since the epoch at which the broker registered (0 when embedded).
    #[serde(default)]
    pub started_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster: String,
    /// `embedded` or `etcd`.
    pub sequencer: String,
    /// The broker that answered.
    #[serde(default)]
    pub broker: String,
    /// The sequencer leader's broker id, when one is known.
    #[serde(default)]
    pub leader: Option<String>,
    /// The last log index this broker's replica has applied.
    #[serde(default)]
    pub applied_index: u64,
    /// Live brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Every partition's owner.
    #[serde(default)]
    pub owners: Vec<PartitionOwner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOwner {
    pub topic: String,
    pub partition: u32,
    pub owner: String,
    pub epoch: u64,
}

/// `POST /v1/producers`: an empty body (or `{}`) for a new idempotent producer; an id
/// with its current epoch for the next epoch of that producer, which fences the previous
/// instance (Kafka's `InitProducerId`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitProducerRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_epoch: Option<u16>,
}

/// An idempotent producer: its requests carry these and a sequence 0, 1, 2, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdentity {
    pub producer_id: u64,
    pub producer_epoch: u16,
}
