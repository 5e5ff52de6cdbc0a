//! The deterministic metadata state machine.

use std::collections::BTreeMap;

use floe_core::segment::BatchEntry;
use floe_core::{Acl, JsonSchema, SegmentId, TopicConfig, TopicId};
pub use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;

mod acls;
mod command;
mod export;
mod groups;
mod index;
mod producers;

pub use acls::MAX_ACLS;
pub use command::Command;
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
