//! JSON bodies of the consumer group routes (`/v1/groups/...`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::HeaderJson;

/// `POST /v1/groups/{g}/members`: join a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Topics to consume; every partition of each is shared among the members.
    pub topics: Vec<String>,
    /// A member that misses heartbeats this long is removed (default 45 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms: Option<u64>,
    /// How long the member may take to give up a partition asked back (default 60 s);
    /// past it the member is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_timeout_ms: Option<u64>,
    /// `earliest` or `latest` (default): where a partition without a committed offset
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_offset_reset: Option<String>,
    /// The member's id when rejoining (a coordinator change, a fenced member): a member
    /// that rejoins under its id keeps what it still owns. New members leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
}

/// A topic's partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// A partition the member owns and where it starts reading: its committed offset, or the
/// reset position when none is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// The answer to a join: `201`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub member_id: String,
    pub member_epoch: u64,
    pub heartbeat_interval_ms: u64,
    pub assignment: Vec<AssignedPartition>,
}

/// `POST /v1/groups/{g}/members/{m}/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub member_epoch: u64,
    /// The partitions the member still holds. Leaving out one that was asked back
    /// acknowledges its release (after committing it).
    #[serde(default)]
    pub owned: Vec<TopicPartition>,
}

/// The answer to a heartbeat: the partitions the member owns now. A partition that
/// leaves this list must be committed and dropped, then the next heartbeat acknowledges
/// it; new partitions appear once their previous owner released them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub member_epoch: u64,
    pub heartbeat_interval_ms: u64,
    pub assignment: Vec<AssignedPartition>,
}

/// A record read through a group member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecordJson {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Value>,
    pub value: Option<Value>,
    pub headers: Vec<HeaderJson>,
}

/// `GET /v1/groups/{g}/members/{m}/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecordsResponse {
    pub records: Vec<GroupRecordJson>,
    /// The member's epoch when the records were read.
    pub member_epoch: u64,
    /// This answer's id: pass it as `ack` on the next call. An answer that is not
    /// acknowledged (lost on the way) is read again instead of being auto-committed.
    #[serde(default)]
    pub ack: u64,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// `POST /v1/groups/{g}/offsets`: a member's commit, or a simple commit (no member) to a
/// group without members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_epoch: Option<u64>,
    pub offsets: Vec<OffsetToCommit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResponse {
    pub committed: usize,
}

/// A partition of a group's topics: committed offset, end of log and lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// `high_watermark - committed_offset`, or from the log start when nothing is
    /// committed.
    pub lag: u64,
    /// The member that owns the partition now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
}

/// `GET /v1/groups/{g}/offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffsetsResponse {
    pub group: String,
    pub offsets: Vec<PartitionOffsets>,
}

/// `POST /v1/groups/{g}/offsets/reset`: `to` is `"earliest"`, `"latest"`, a timestamp in
/// ms (a number or a string of digits), or an object of partition to offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetOffsetsRequest {
    pub topic: String,
    pub to: Value,
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    /// `empty` (no members), `reconciling` (partitions moving) or `stable`.
    pub state: String,
    pub members: usize,
    pub generation: u64,
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

/// A member in a group's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    pub member_id: String,
    pub member_epoch: u64,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    /// What the member owns now.
    pub assignment: Vec<TopicPartition>,
    /// Partitions asked back and not yet released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoking: Vec<TopicPartition>,
}

/// `GET /v1/groups/{g}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub generation: u64,
    /// The broker coordinating the group.
    pub coordinator: String,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<PartitionOffsets>,
}
