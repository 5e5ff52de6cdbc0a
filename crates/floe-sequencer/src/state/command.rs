//! The commands of the state machine: what the log carries, and the most each may take
//! in it.

use serde::{Deserialize, Serialize};

use super::*;

/// A change to the cluster's metadata. Commands are applied in log order; applying is a
/// pure function of the state and the command, so replay rebuilds the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        created_ms: i64,
    },
    /// Removes a topic. Its objects' bytes stop being live; objects left with nothing live
    /// are deleted after the grace period, counted from `at_ms`.
    DeleteTopic {
        name: String,
        #[serde(default)]
        at_ms: i64,
    },
    AddPartitions {
        name: String,
        count: u32,
    },
    /// Makes a segment's batches part of their partitions' logs. Each batch gets the next
    /// offsets of its partition in list order; batches whose topic is gone are refused one
    /// by one (a produce request targets one topic, so it stays all-or-nothing).
    CommitSegment {
        segment: SegmentId,
        batches: Vec<BatchEntry>,
        /// Requests whose batches commit under conditions (an idempotent producer's
        /// sequence, an expected next offset), each all or none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        guards: Vec<RequestGuard>,
        /// When the segment was sealed (ms): producers' last activity.
        #[serde(default, skip_serializing_if = "is_zero")]
        at_ms: i64,
    },
    /// A new idempotent producer id at epoch 0, or for `existing` (id and its current
    /// epoch) the next epoch, which fences the older one.
    InitProducer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        existing: Option<(u64, u16)>,
        /// The authenticated principal asking (`None` without authentication): the
        /// producer serves it only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
        at_ms: i64,
    },
    /// Forgets producers idle since before `idle_before_ms` (`producer.id.expiration.ms`).
    ExpireProducers {
        idle_before_ms: i64,
    },
    /// Hands partitions to brokers (issued by the sequencer leader as brokers come and go).
    /// A partition whose owner changes gets the next ownership epoch; changes naming a
    /// topic or partition that no longer exists are skipped.
    AssignOwners {
        changes: Vec<OwnerChange>,
    },
    /// Advances partitions' log start offsets (retention). Batches wholly below a new start
    /// leave the index; a start never moves back and never passes the high watermark.
    TrimPartitions {
        at_ms: i64,
        trims: Vec<Trim>,
    },
    /// Swaps a run of one partition's batches for the batches of one new object
    /// (compaction). Applies only while the run is still exactly `replaced`, so a swap
    /// racing retention or another swap is refused whole and changes nothing.
    ReplaceBatches {
        at_ms: i64,
        topic_id: TopicId,
        partition: u32,
        segment: SegmentId,
        /// The new object's compaction level (see [`SegmentInfo::level`]).
        level: u8,
        /// The run being replaced: each batch's base offset and object, in offset order.
        replaced: Vec<(u64, SegmentId)>,
        /// The new batches, tiling exactly the offsets of the replaced run.
        batches: Vec<Replacement>,
    },
    /// Raises the orphan horizon: from now on, commits and swaps of objects created at or
    /// before `horizon_ms` are refused, so an unindexed object that old can be deleted.
    RaiseOrphanHorizon {
        horizon_ms: i64,
    },
    /// Objects that were deleted from the store after their grace period.
    ForgetObjects {
        segments: Vec<SegmentId>,
    },
    /// Replaces a consumer group's members and their partitions (written by the group's
    /// coordinator at joins, leaves, expiries and each step of a rebalance, never on a
    /// heartbeat). Applies only while the group is still at `expected_generation` (0 for
    /// a group that does not exist yet, which this creates).
    WriteGroup {
        group: String,
        expected_generation: u64,
        members: BTreeMap<String, GroupMember>,
        at_ms: i64,
    },
    /// Commits consumer offsets, all or none: by a member that owns every partition named
    /// (at an epoch no older than the one it got each at), or without a member while the
    /// group has none.
    CommitOffsets {
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<MemberFence>,
        offsets: Vec<OffsetCommit>,
        at_ms: i64,
    },
    /// Removes a group without members and its offsets; with `idle_before_ms` (expiry),
    /// only if the group has not changed since then.
    DeleteGroup {
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_before_ms: Option<i64>,
    },
    /// Changes a topic's configuration: each key of `set` to its value, then each key of
    /// `reset` back to its default; all or nothing.
    AlterTopicConfig {
        name: String,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        reset: Vec<String>,
    },
    /// Records the offsets of a Parquet file about to be written (see [`ExportCursor`]),
    /// with the JSON columns it uses, which widen the topic's.
    BeginExport {
        topic_id: TopicId,
        partition: u32,
        range: ExportRange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<JsonSchema>,
        at_ms: i64,
    },
    /// Notes why a partition's export last failed (cleared by its next commit); the
    /// cursor does not move.
    ExportFailed {
        topic_id: TopicId,
        partition: u32,
        error: String,
        at_ms: i64,
    },
    /// Adds access control lists (all or none).
    CreateAcls {
        acls: Vec<Acl>,
    },
    /// Removes access control lists (exact matches).
    DeleteAcls {
        acls: Vec<Acl>,
    },
    /// Moves a partition's export cursor past a written file (or a range without records).
    CommitExport {
        topic_id: TopicId,
        partition: u32,
        range: ExportRange,
        written: ExportWritten,
        at_ms: i64,
    },
}

impl Command {
    /// A cheap upper estimate of the command's encoded size, for sizing log groups.
    pub fn approximate_size(&self) -> usize {
        match self {
            Self::CommitSegment {
                batches, guards, ..
            } => {
                96 + 220 * batches.len()
                    + guards
                        .iter()
                        .map(|guard| 128 + escaped_len(guard.principal.as_deref()))
                        .sum::<usize>()
            }
            Self::InitProducer { principal, .. } => 128 + escaped_len(principal.as_deref()),
            Self::ExpireProducers { .. } => 96,
            Self::AssignOwners { changes } => 48 + 96 * changes.len(),
            Self::TrimPartitions { trims, .. } => 48 + 96 * trims.len(),
            Self::ReplaceBatches {
                replaced, batches, ..
            } => 256 + 64 * replaced.len() + 220 * batches.len(),
            Self::ForgetObjects { segments } => 48 + 40 * segments.len(),
            Self::WriteGroup { group, members, .. } => {
                128 + printable_len(group)
                    + members
                        .iter()
                        .map(|(id, member)| {
                            160 + printable_len(id)
                                + member.topics.iter().map(|t| t.len() + 4).sum::<usize>()
                                + 40 * member.partition_count()
                        })
                        .sum::<usize>()
            }
            Self::CommitOffsets {
                group,
                member,
                offsets,
                ..
            } => {
                160 + printable_len(group)
                    + member
                        .as_ref()
                        .map_or(0, |member| 48 + printable_len(&member.member_id))
                    + offsets
                        .iter()
                        .map(|offset| 96 + offset.metadata.len() * 6)
                        .sum::<usize>()
            }
            Self::DeleteGroup { group, .. } => 96 + printable_len(group),
            Self::AlterTopicConfig { name, set, reset } => {
                96 + name.len()
                    + set
                        .iter()
                        .map(|(k, v)| 8 + k.len() + v.len() * 6)
                        .sum::<usize>()
                    + reset.iter().map(|k| 4 + k.len()).sum::<usize>()
            }
            Self::BeginExport { schema, .. } => {
                256 + schema.as_ref().map_or(0, |schema| {
                    schema
                        .fields
                        .keys()
                        .map(|name| 16 + name.len() * 6)
                        .sum::<usize>()
                })
            }
            Self::CommitExport { .. } => 256,
            Self::CreateAcls { acls } | Self::DeleteAcls { acls } => {
                64 + acls
                    .iter()
                    .map(|acl| 96 + (acl.principal.len() + acl.resource.name.len()) * 6)
                    .sum::<usize>()
            }
            Self::ExportFailed { error, .. } => 128 + error.len() * 6,
            Self::CreateTopic { .. }
            | Self::DeleteTopic { .. }
            | Self::AddPartitions { .. }
            | Self::RaiseOrphanHorizon { .. } => 1024,
        }
    }

    /// Whether applying the command can end in a refusal (`Err`). The commit loop judges
    /// these on a copy of the state before it writes anything, so a refusal takes no log
    /// entry; the rest always apply (a segment's batches are refused one by one inside its
    /// `Ok`).
    pub fn may_be_refused(&self) -> bool {
        match self {
            Self::CreateTopic { .. }
            | Self::DeleteTopic { .. }
            | Self::AddPartitions { .. }
            | Self::InitProducer { .. }
            | Self::ReplaceBatches { .. }
            | Self::WriteGroup { .. }
            | Self::CommitOffsets { .. }
            | Self::DeleteGroup { .. }
            | Self::AlterTopicConfig { .. }
            | Self::BeginExport { .. }
            | Self::CommitExport { .. }
            | Self::CreateAcls { .. }
            | Self::ExportFailed { .. } => true,
            Self::CommitSegment { .. }
            | Self::ExpireProducers { .. }
            | Self::AssignOwners { .. }
            | Self::TrimPartitions { .. }
            | Self::RaiseOrphanHorizon { .. }
            | Self::ForgetObjects { .. }
            | Self::DeleteAcls { .. } => false,
        }
    }
}

/// The most JSON can take for a group name or member id beyond its quotes: printable
/// characters, of which `"` and `\` are escaped to two bytes.
fn printable_len(text: &str) -> usize {
    2 * text.len()
}

/// The most a string's JSON can take beyond its quotes: six bytes a byte (`\u0001`).
fn escaped_len(text: Option<&str>) -> usize {
    text.map_or(0, |text| text.len() * 6)
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}
