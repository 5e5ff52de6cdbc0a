//! The deterministic metadata state machine.

use std::collections::BTreeMap;

use floe_core::segment::BatchEntry;
use floe_core::{SegmentId, TopicConfig, TopicId};
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;

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
    DeleteTopic {
        name: String,
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
    },
    /// Hands partitions to brokers (issued by the sequencer leader as brokers come and go).
    /// A partition whose owner changes gets the next ownership epoch; changes naming a
    /// topic or partition that no longer exists are skipped.
    AssignOwners {
        changes: Vec<OwnerChange>,
    },
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
            Self::CommitSegment { batches, .. } => 96 + 220 * batches.len(),
            Self::AssignOwners { changes } => 48 + 96 * changes.len(),
            Self::CreateTopic { .. } | Self::DeleteTopic { .. } | Self::AddPartitions { .. } => {
                1024
            }
        }
    }
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
    SegmentCommitted(Vec<Result<u64, ApplyError>>),
    /// How many partitions changed owner.
    OwnersAssigned(usize),
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
    pub batches: BTreeMap<u64, BatchLocation>,
    /// Bytes of batches currently indexed.
    pub size_bytes: u64,
    /// The broker that runs this partition's background jobs and keeps its tail warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Bumped each time the owner changes.
    #[serde(default)]
    pub owner_epoch: u64,
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

    /// Rebuilds derived lookups after deserializing a snapshot.
    pub fn rebuild_derived(&mut self) {
        self.names_by_id = self
            .topics
            .values()
            .map(|topic| (topic.id, topic.name.clone()))
            .collect();
    }

    /// Applies the log entry at `index`. Rejections leave the state unchanged except for
    /// `applied_index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<Outcome, ApplyError> {
        debug_assert!(index > self.applied_index, "log entries apply in order");
        self.applied_index = index;
        match command {
            Command::CreateTopic {
                name,
                partitions,
                config,
                created_ms,
            } => self.create_topic(name, *partitions, config, *created_ms),
            Command::DeleteTopic { name } => self.delete_topic(name),
            Command::AddPartitions { name, count } => self.add_partitions(name, *count),
            Command::CommitSegment { segment, batches } => {
                Ok(self.commit_segment(*segment, batches))
            }
            Command::AssignOwners { changes } => Ok(self.assign_owners(changes)),
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
        };
        self.topics.insert(name.to_owned(), topic);
        self.names_by_id.insert(id, name.to_owned());
        Ok(Outcome::TopicCreated(id))
    }

    fn delete_topic(&mut self, name: &str) -> Result<Outcome, ApplyError> {
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.to_owned()))?;
        self.names_by_id.remove(&topic.id);
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

    fn commit_segment(&mut self, segment: SegmentId, batches: &[BatchEntry]) -> Outcome {
        let results = batches
            .iter()
            .map(|batch| self.commit_batch(segment, batch))
            .collect();
        Outcome::SegmentCommitted(results)
    }

    fn commit_batch(&mut self, segment: SegmentId, batch: &BatchEntry) -> Result<u64, ApplyError> {
        let name = self
            .names_by_id
            .get(&batch.topic_id)
            .ok_or(ApplyError::UnknownTopicId(batch.topic_id))?;
        let topic = self
            .topics
            .get_mut(name)
            .expect("names_by_id mirrors topics");
        let partitions = topic.partition_count();
        let partition = topic.partitions.get_mut(batch.partition as usize).ok_or(
            ApplyError::UnknownPartition {
                partition: batch.partition,
                partitions,
            },
        )?;
        let base_offset = partition.high_watermark;
        partition.batches.insert(
            base_offset,
            BatchLocation {
                segment,
                byte_offset: batch.byte_offset,
                length: batch.length,
                record_count: batch.record_count,
                first_timestamp: batch.first_timestamp,
                max_timestamp: batch.max_timestamp,
                crc32c: batch.crc32c,
            },
        );
        partition.high_watermark += u64::from(batch.record_count);
        partition.size_bytes += u64::from(batch.length);
        Ok(base_offset)
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
mod tests {
    use super::*;

    fn batch(topic_id: TopicId, partition: u32, record_count: u32) -> BatchEntry {
        BatchEntry {
            topic_id,
            partition,
            byte_offset: 16,
            length: 100,
            record_count,
            first_timestamp: 1,
            max_timestamp: 2,
            crc32c: 0,
        }
    }

    fn create(state: &mut ClusterState, index: u64, name: &str, partitions: u32) -> TopicId {
        let command = Command::CreateTopic {
            name: name.into(),
            partitions,
            config: TopicConfig::default(),
            created_ms: 0,
        };
        match state.apply(index, &command) {
            Ok(Outcome::TopicCreated(id)) => id,
            other => panic!("create failed: {other:?}"),
        }
    }

    #[test]
    fn commits_assign_dense_offsets_per_partition() {
        let mut state = ClusterState::default();
        let id = create(&mut state, 1, "t", 2);
        let command = Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(id, 0, 3), batch(id, 1, 2), batch(id, 0, 4)],
        };
        let outcome = state.apply(2, &command).expect("commit");
        assert_eq!(
            outcome,
            Outcome::SegmentCommitted(vec![Ok(0), Ok(0), Ok(3)])
        );
        let partition = &state.topic("t").expect("topic").partitions[0];
        assert_eq!(partition.high_watermark, 7);
        assert_eq!(
            partition
                .batches_from(5)
                .map(|(base, _)| base)
                .collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(partition.batches_from(0).count(), 2);
    }

    #[test]
    fn refuses_batches_of_deleted_topics_and_recreated_names_get_new_ids() {
        let mut state = ClusterState::default();
        let old = create(&mut state, 1, "t", 1);
        state
            .apply(2, &Command::DeleteTopic { name: "t".into() })
            .expect("delete");
        let new = create(&mut state, 3, "t", 1);
        assert_ne!(old, new);
        let command = Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(old, 0, 1), batch(new, 0, 1), batch(new, 5, 1)],
        };
        let Ok(Outcome::SegmentCommitted(results)) = state.apply(4, &command) else {
            panic!("commit segment always yields per-batch results");
        };
        assert_eq!(results[0], Err(ApplyError::UnknownTopicId(old)));
        assert_eq!(results[1], Ok(0));
        assert!(matches!(
            results[2],
            Err(ApplyError::UnknownPartition { .. })
        ));
    }

    #[test]
    fn topic_rules() {
        let mut state = ClusterState::default();
        create(&mut state, 1, "t", 3);
        let duplicate = Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            config: TopicConfig::default(),
            created_ms: 0,
        };
        assert_eq!(
            state.apply(2, &duplicate),
            Err(ApplyError::TopicExists("t".into()))
        );
        let shrink = Command::AddPartitions {
            name: "t".into(),
            count: 2,
        };
        assert!(matches!(
            state.apply(3, &shrink),
            Err(ApplyError::PartitionsCannotShrink { .. })
        ));
        let grow = Command::AddPartitions {
            name: "t".into(),
            count: 5,
        };
        assert_eq!(
            state.apply(4, &grow),
            Ok(Outcome::PartitionsAdded { from: 3, to: 5 })
        );
        let zero = Command::CreateTopic {
            name: "z".into(),
            partitions: 0,
            config: TopicConfig::default(),
            created_ms: 0,
        };
        assert!(matches!(
            state.apply(5, &zero),
            Err(ApplyError::BadPartitionCount { .. })
        ));
    }

    #[test]
    fn snapshot_round_trip_preserves_state() {
        let mut state = ClusterState::default();
        let id = create(&mut state, 1, "t", 1);
        let command = Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(id, 0, 3)],
        };
        state.apply(2, &command).expect("commit");
        let bytes = serde_json::to_vec(&state).expect("serialize");
        let mut restored: ClusterState = serde_json::from_slice(&bytes).expect("deserialize");
        restored.rebuild_derived();
        assert_eq!(restored, state);
    }
}
