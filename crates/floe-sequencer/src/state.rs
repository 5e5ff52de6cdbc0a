//! The deterministic metadata state machine.

use std::collections::BTreeMap;

use floe_core::segment::BatchEntry;
use floe_core::{Acl, JsonSchema, SegmentId, TopicConfig, TopicId};
pub use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;

mod acls;
mod export;
mod groups;
mod index;
mod producers;

pub use acls::MAX_ACLS;
pub use index::SegmentResults;
pub use producers::{
    MAX_IDEMPOTENT_BATCHES, MAX_PRODUCERS, MAX_PRODUCERS_PER_PRINCIPAL, MAX_WINDOW_BATCHES,
    PRODUCER_WINDOW, Produced, ProducerState, ProducerTag, RequestGuard,
};

pub use export::{ExportCursor, ExportRange, ExportWritten};

pub use groups::{
    CommittedOffset, GroupMember, GroupState, MAX_OFFSET_METADATA, MemberFence, OffsetCommit,
    OffsetReset, PartitionMap,
};

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

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

/// Retention's move of one partition's log start offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trim {
    pub topic_id: TopicId,
    pub partition: u32,
    pub log_start_offset: u64,
}

/// A batch of a compaction's new object, by the base offset it takes in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    pub base_offset: u64,
    pub byte_offset: u64,
    /// Zero for a run whose records compaction dropped entirely.
    pub length: u32,
    /// The offsets covered, records or gaps.
    pub offset_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub crc32c: u32,
}

/// The level of objects a broker flushes, holding many partitions.
pub const FLUSH_LEVEL: u8 = 0;
/// The level of objects written by a full keyed clean of a compacted partition.
pub const CLEANED_LEVEL: u8 = u8::MAX;

/// An object the index refers to, and how much of it is still live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Bytes of the object's batches that the index still refers to.
    pub live_bytes: u64,
    /// Index entries that refer to the object.
    pub live_batches: u32,
    /// [`FLUSH_LEVEL`] for a broker's flush; 1 and up for per-partition objects written by
    /// compaction (merging objects of one level yields the next); [`CLEANED_LEVEL`] for the
    /// output of a keyed clean.
    pub level: u8,
}
/// One partition's new owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerChange {
    pub topic_id: TopicId,
    pub partition: u32,
    /// `None` releases the partition (no live broker).
    pub owner: Option<String>,
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

/// The result of applying a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    TopicCreated(TopicId),
    TopicDeleted(TopicId),
    PartitionsAdded {
        from: u32,
        to: u32,
    },
    /// Per batch, in the order of the command: its base offset, or why it was refused.
    SegmentCommitted(SegmentResults),
    /// How many partitions changed owner.
    OwnersAssigned(usize),
    /// How many partitions' log start offsets moved.
    Trimmed(usize),
    /// How many index entries the swap removed and added.
    BatchesReplaced {
        removed: usize,
        added: usize,
    },
    HorizonRaised,
    /// How many objects were forgotten.
    ObjectsForgotten(usize),
    /// The group's new generation.
    GroupWritten(u64),
    /// How many offsets were committed.
    OffsetsCommitted(usize),
    GroupDeleted,
    ConfigAltered,
    ExportBegun,
    ExportErrorNoted,
    /// The partition's new export cursor.
    ExportCommitted(u64),
    /// How many ACLs were new.
    AclsCreated(usize),
    /// How many ACLs were removed.
    AclsDeleted(usize),
    ProducerInitialized {
        producer_id: u64,
        epoch: u16,
    },
    /// How many idle producers were forgotten.
    ProducersExpired(usize),
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Where a committed batch lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLocation {
    pub segment: SegmentId,
    pub byte_offset: u64,
    pub length: u32,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub crc32c: u32,
}

/// One partition's log: its retained offset range and the index from base offset to batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// Committed batches by base offset; consecutive entries tile `[log_start, hwm)`.
    pub batches: OrdMap<u64, BatchLocation>,
    /// Bytes of batches currently indexed.
    pub size_bytes: u64,
    /// The broker that runs this partition's background jobs and keeps its tail warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Bumped each time the owner changes.
    #[serde(default)]
    pub owner_epoch: u64,
    /// Where the partition's Parquet export stands; `None` until it first runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportCursor>,
}

impl PartitionState {
    /// Returns the batch holding `offset` and every later one, in order.
    pub fn batches_from(&self, offset: u64) -> impl Iterator<Item = (u64, &BatchLocation)> {
        let start = self
            .batches
            .range(..=offset)
            .next_back()
            .map_or(offset, |(base, _)| *base);
        self.batches
            .range(start..)
            .map(|(base, location)| (*base, location))
    }

    /// The offset one past the batch at `base`.
    pub fn batch_end(base: u64, location: &BatchLocation) -> u64 {
        base + u64::from(location.record_count)
    }

    /// Returns the first batch that may hold a record with timestamp `>= timestamp_ms`.
    pub fn first_batch_at_or_after(&self, timestamp_ms: i64) -> Option<(u64, &BatchLocation)> {
        self.batches
            .iter()
            .find(|(_, location)| location.max_timestamp >= timestamp_ms)
            .map(|(base, location)| (*base, location))
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicState {
    pub id: TopicId,
    pub name: String,
    pub config: TopicConfig,
    pub created_ms: i64,
    pub partitions: Vec<PartitionState>,
    /// The JSON columns of the topic's export, as inferred and widened so far (when the
    /// config gives no schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_schema: Option<JsonSchema>,
}

impl TopicState {
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }
}

/// The whole metadata state: what a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The index of the last log entry applied.
    pub applied_index: u64,
    next_topic_id: u64,
    topics: BTreeMap<String, TopicState>,
    /// Every object the index refers to.
    #[serde(default)]
    segments: OrdMap<SegmentId, SegmentInfo>,
    /// Objects with nothing live left, and since when (ms): they are deleted from the store
    /// after the grace period, then forgotten.
    #[serde(default)]
    garbage: OrdMap<SegmentId, i64>,
    /// Objects created at or before this time (ms) are never committed any more.
    #[serde(default)]
    orphan_horizon_ms: i64,
    /// Consumer groups by name.
    #[serde(default)]
    groups: OrdMap<String, GroupState>,
    /// Access control lists.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    acls: std::collections::BTreeSet<Acl>,
    /// Idempotent producers by id.
    #[serde(default, skip_serializing_if = "OrdMap::is_empty")]
    producers: OrdMap<u64, ProducerState>,
    /// The last producer id handed out (ids are never reused).
    #[serde(default)]
    next_producer_id: u64,
    #[serde(skip)]
    names_by_id: BTreeMap<TopicId, String>,
}

impl ClusterState {
    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicState> {
        self.names_by_id
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicState> {
        self.topics.values()
    }

    /// Every object the index refers to, with its live bytes.
    pub fn segments(&self) -> &OrdMap<SegmentId, SegmentInfo> {
        &self.segments
    }

    /// Objects with nothing live left, and since when (ms).
    pub fn garbage(&self) -> &OrdMap<SegmentId, i64> {
        &self.garbage
    }

    pub fn orphan_horizon_ms(&self) -> i64 {
        self.orphan_horizon_ms
    }

    /// Whether an object is known: referred to by the index or awaiting deletion.
    pub fn knows_object(&self, segment: SegmentId) -> bool {
        self.segments.contains_key(&segment) || self.garbage.contains_key(&segment)
    }

    /// Rebuilds derived lookups after deserializing a snapshot. Objects referred to by the
    /// index but missing from the object table (a snapshot older than the table) are added
    /// as flushes.
    pub fn rebuild_derived(&mut self) {
        self.names_by_id = self
            .topics
            .values()
            .map(|topic| (topic.id, topic.name.clone()))
            .collect();
        if self.segments.is_empty() {
            for topic in self.topics.values() {
                for partition in &topic.partitions {
                    for location in partition.batches.values() {
                        let info = self
                            .segments
                            .entry(location.segment)
                            .or_insert(SegmentInfo {
                                live_bytes: 0,
                                live_batches: 0,
                                level: FLUSH_LEVEL,
                            });
                        info.live_bytes += u64::from(location.length);
                        info.live_batches += 1;
                    }
                }
            }
        }
    }

    /// Applies the log entry at `index`. Rejections leave the state unchanged except for
    /// `applied_index`, and only commands that [may be refused](Command::may_be_refused)
    /// are: the commit loop relies on both to answer refusals without a log entry (debug
    /// builds check them on every apply).
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<Outcome, ApplyError> {
        debug_assert!(index > self.applied_index, "log entries apply in order");
        #[cfg(debug_assertions)]
        let before = command.may_be_refused().then(|| self.clone());
        self.applied_index = index;
        let outcome = self.apply_command(command);
        #[cfg(debug_assertions)]
        if outcome.is_err() {
            let before = before.expect("only a command that may be refused is refused");
            debug_assert!(
                ClusterState {
                    applied_index: index,
                    ..before
                } == *self,
                "a refusal changed the state: {command:?}"
            );
        }
        outcome
    }

    fn apply_command(&mut self, command: &Command) -> Result<Outcome, ApplyError> {
        match command {
            Command::CreateTopic {
                name,
                partitions,
                config,
                created_ms,
            } => self.create_topic(name, *partitions, config, *created_ms),
            Command::DeleteTopic { name, at_ms } => self.delete_topic(name, *at_ms),
            Command::AddPartitions { name, count } => self.add_partitions(name, *count),
            Command::CommitSegment {
                segment,
                batches,
                guards,
                at_ms,
            } => Ok(self.commit_segment(*segment, batches, guards, *at_ms)),
            Command::InitProducer {
                existing,
                principal,
                at_ms,
            } => self.init_producer(*existing, principal.as_deref(), *at_ms),
            Command::ExpireProducers { idle_before_ms } => {
                Ok(self.expire_producers(*idle_before_ms))
            }
            Command::AssignOwners { changes } => Ok(self.assign_owners(changes)),
            Command::TrimPartitions { at_ms, trims } => Ok(self.trim_partitions(*at_ms, trims)),
            Command::ReplaceBatches {
                at_ms,
                topic_id,
                partition,
                segment,
                level,
                replaced,
                batches,
            } => self.replace_batches(
                *at_ms, *topic_id, *partition, *segment, *level, replaced, batches,
            ),
            Command::RaiseOrphanHorizon { horizon_ms } => {
                self.orphan_horizon_ms = self.orphan_horizon_ms.max(*horizon_ms);
                Ok(Outcome::HorizonRaised)
            }
            Command::ForgetObjects { segments } => {
                let forgotten = segments
                    .iter()
                    .filter(|segment| self.garbage.remove(*segment).is_some())
                    .count();
                Ok(Outcome::ObjectsForgotten(forgotten))
            }
            Command::WriteGroup {
                group,
                expected_generation,
                members,
                at_ms,
            } => self
                .write_group(group, *expected_generation, members, *at_ms)
                .map(Outcome::GroupWritten),
            Command::CommitOffsets {
                group,
                member,
                offsets,
                at_ms,
            } => self
                .commit_offsets(group, member.as_ref(), offsets, *at_ms)
                .map(Outcome::OffsetsCommitted),
            Command::DeleteGroup {
                group,
                idle_before_ms,
            } => self
                .delete_group(group, *idle_before_ms)
                .map(|()| Outcome::GroupDeleted),
            Command::AlterTopicConfig { name, set, reset } => self
                .alter_topic_config(name, set, reset)
                .map(|()| Outcome::ConfigAltered),
            Command::BeginExport {
                topic_id,
                partition,
                range,
                schema,
                at_ms,
            } => self
                .begin_export(*topic_id, *partition, *range, schema.as_ref(), *at_ms)
                .map(|()| Outcome::ExportBegun),
            Command::CommitExport {
                topic_id,
                partition,
                range,
                written,
                at_ms,
            } => self
                .commit_export(*topic_id, *partition, *range, *written, *at_ms)
                .map(Outcome::ExportCommitted),
            Command::CreateAcls { acls } => self.create_acls(acls).map(Outcome::AclsCreated),
            Command::DeleteAcls { acls } => Ok(Outcome::AclsDeleted(self.delete_acls(acls))),
            Command::ExportFailed {
                topic_id,
                partition,
                error,
                at_ms,
            } => self
                .export_failed(*topic_id, *partition, error, *at_ms)
                .map(|()| Outcome::ExportErrorNoted),
        }
    }

    fn assign_owners(&mut self, changes: &[OwnerChange]) -> Outcome {
        let mut changed = 0;
        for change in changes {
            let Some(name) = self.names_by_id.get(&change.topic_id) else {
                continue;
            };
            let Some(partition) = self
                .topics
                .get_mut(name)
                .and_then(|topic| topic.partitions.get_mut(change.partition as usize))
            else {
                continue;
            };
            if partition.owner != change.owner {
                partition.owner.clone_from(&change.owner);
                partition.owner_epoch += 1;
                changed += 1;
            }
        }
        Outcome::OwnersAssigned(changed)
    }

    fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
        created_ms: i64,
    ) -> Result<Outcome, ApplyError> {
        check_partition_count(partitions)?;
        if self.topics.contains_key(name) {
            return Err(ApplyError::TopicExists(name.to_owned()));
        }
        self.next_topic_id += 1;
        let id = TopicId(self.next_topic_id);
        let topic = TopicState {
            id,
            name: name.to_owned(),
            config: config.clone(),
            created_ms,
            partitions: vec![PartitionState::default(); partitions as usize],
            export_schema: None,
        };
        self.topics.insert(name.to_owned(), topic);
        self.names_by_id.insert(id, name.to_owned());
        Ok(Outcome::TopicCreated(id))
    }

    fn delete_topic(&mut self, name: &str, at_ms: i64) -> Result<Outcome, ApplyError> {
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.to_owned()))?;
        self.names_by_id.remove(&topic.id);
        self.forget_topic_in_groups(topic.id);
        let mut released = index::Released::default();
        for partition in &topic.partitions {
            for location in partition.batches.values() {
                released.add(location);
            }
        }
        released.apply(&mut self.segments, &mut self.garbage, at_ms);
        Ok(Outcome::TopicDeleted(topic.id))
    }

    fn add_partitions(&mut self, name: &str, count: u32) -> Result<Outcome, ApplyError> {
        check_partition_count(count)?;
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.to_owned()))?;
        let current = topic.partition_count();
        if count < current {
            return Err(ApplyError::PartitionsCannotShrink {
                name: name.to_owned(),
                current,
                requested: count,
            });
        }
        topic
            .partitions
            .resize_with(count as usize, PartitionState::default);
        Ok(Outcome::PartitionsAdded {
            from: current,
            to: count,
        })
    }
}

fn check_partition_count(count: u32) -> Result<(), ApplyError> {
    if count == 0 || count > MAX_PARTITIONS {
        return Err(ApplyError::BadPartitionCount {
            requested: count,
            max: MAX_PARTITIONS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod export_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod log_json_tests;
#[cfg(test)]
mod producer_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
