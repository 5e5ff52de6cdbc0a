//! Consumer groups' durable part: who owns which partition at which member epoch (what
//! fencing needs) and the committed offsets. Sessions, heartbeats and read positions are
//! soft state on the group's coordinator and never reach the log (ADR 0006).

use std::collections::BTreeMap;

use floe_core::TopicId;
use serde::{Deserialize, Serialize};

use super::ClusterState;
use crate::error::ApplyError;

/// Per topic, per partition.
pub type PartitionMap<T> = BTreeMap<TopicId, BTreeMap<u32, T>>;

/// The longest metadata string a committed offset may carry, in bytes (Kafka's
/// `offset.metadata.max.bytes`).
pub const MAX_OFFSET_METADATA: usize = 4096;

/// A consumer group as the log knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Bumped by every change to `members`. A coordinator's write names the generation it
    /// was computed from and is refused if another write (another coordinator, a topic's
    /// deletion) came first.
    pub generation: u64,
    pub members: BTreeMap<String, GroupMember>,
    /// Committed offsets: the next offset to consume, and the committer's metadata.
    #[serde(with = "as_list")]
    pub offsets: PartitionMap<CommittedOffset>,
    /// When the group last changed (a commit, a member joining or leaving), in ms: an
    /// empty group's offsets expire `offsets.retention.ms` after it.
    pub updated_ms: i64,
}

impl GroupState {
    /// The member that owns a partition, if any.
    pub fn owner_of(&self, topic: TopicId, partition: u32) -> Option<(&str, &GroupMember)> {
        self.members
            .iter()
            .find(|(_, member)| member.owns(topic, partition))
            .map(|(id, member)| (id.as_str(), member))
    }

    /// The committed offset of a partition.
    pub fn committed(&self, topic: TopicId, partition: u32) -> Option<&CommittedOffset> {
        self.offsets.get(&topic)?.get(&partition)
    }
}

/// Where a member with no committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    Earliest,
    #[default]
    Latest,
}

/// A member of a group: what it subscribed with and what it owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    /// Bumped whenever the member's partitions change; commits must name an epoch at
    /// least the one at which the partition was given and at most this.
    pub epoch: u64,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Partitions the member owns, each with the member epoch at which it got it.
    #[serde(default, with = "as_list")]
    pub partitions: PartitionMap<u64>,
}

impl GroupMember {
    pub fn owns(&self, topic: TopicId, partition: u32) -> bool {
        self.partitions
            .get(&topic)
            .is_some_and(|owned| owned.contains_key(&partition))
    }

    /// How many partitions the member owns.
    pub fn partition_count(&self) -> usize {
        self.partitions.values().map(BTreeMap::len).sum()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    pub committed_ms: i64,
}

/// One partition's offset in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub topic_id: TopicId,
    pub partition: u32,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
}

/// Who commits: a member at an epoch. A commit without one is a "simple" commit, allowed
/// only while the group has no members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFence {
    pub member_id: String,
    pub member_epoch: u64,
}

impl ClusterState {
    /// A consumer group's durable state.
    pub fn group(&self, name: &str) -> Option<&GroupState> {
        self.groups.get(name)
    }

    /// Every group, by name.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &GroupState)> {
        self.groups.iter()
    }

    pub(super) fn write_group(
        &mut self,
        name: &str,
        expected_generation: u64,
        members: &BTreeMap<String, GroupMember>,
        at_ms: i64,
    ) -> Result<u64, ApplyError> {
        let current = self.groups.get(name).map_or(0, |group| group.generation);
        if current != expected_generation {
            return Err(ApplyError::GroupChanged {
                group: name.to_owned(),
                expected: expected_generation,
                actual: current,
            });
        }
        let mut owners: BTreeMap<(TopicId, u32), &str> = BTreeMap::new();
        for (id, member) in members {
            for (topic, partitions) in &member.partitions {
                for partition in partitions.keys() {
                    if let Some(other) = owners.insert((*topic, *partition), id) {
                        return Err(ApplyError::BadGroupWrite(format!(
                            "partition {partition} of topic id {topic} given to both {other:?} \
                             and {id:?}"
                        )));
                    }
                }
            }
        }
        // Partitions of topics deleted since the coordinator read the state are dropped.
        let mut members = members.clone();
        for member in members.values_mut() {
            member.partitions.retain(|topic, partitions| {
                let Some(state) = self.topic_by_id(*topic) else {
                    return false;
                };
                partitions.retain(|partition, _| *partition < state.partition_count());
                !partitions.is_empty()
            });
        }
        let group = self.groups.entry(name.to_owned()).or_default();
        group.members = members;
        group.generation += 1;
        group.updated_ms = group.updated_ms.max(at_ms);
        Ok(group.generation)
    }

    pub(super) fn commit_offsets(
        &mut self,
        name: &str,
        member: Option<&MemberFence>,
        offsets: &[OffsetCommit],
        at_ms: i64,
    ) -> Result<usize, ApplyError> {
        let group = self.groups.get(name);
        match (member, group) {
            (Some(fence), None) => {
                return Err(ApplyError::UnknownMember {
                    group: name.to_owned(),
                    member: fence.member_id.clone(),
                });
            }
            (Some(fence), Some(group)) => check_fence(name, group, fence, offsets)?,
            (None, Some(group)) if !group.members.is_empty() => {
                return Err(ApplyError::GroupNotEmpty {
                    group: name.to_owned(),
                    members: group.members.len(),
                });
            }
            (None, _) => {}
        }
        for commit in offsets {
            if commit.metadata.len() > MAX_OFFSET_METADATA {
                return Err(ApplyError::BadGroupWrite(format!(
                    "offset metadata is {} bytes; the limit is {MAX_OFFSET_METADATA}",
                    commit.metadata.len()
                )));
            }
            let topic = self
                .topic_by_id(commit.topic_id)
                .ok_or(ApplyError::UnknownTopicId(commit.topic_id))?;
            let partition = topic.partitions.get(commit.partition as usize).ok_or(
                ApplyError::UnknownPartition {
                    partition: commit.partition,
                    partitions: topic.partition_count(),
                },
            )?;
            if commit.offset > partition.high_watermark {
                return Err(ApplyError::OffsetBeyondEnd {
                    partition: commit.partition,
                    offset: commit.offset,
                    high_watermark: partition.high_watermark,
                });
            }
            if commit.offset < partition.log_start_offset {
                return Err(ApplyError::OffsetBeforeStart {
                    partition: commit.partition,
                    offset: commit.offset,
                    log_start_offset: partition.log_start_offset,
                });
            }
        }
        let group = self.groups.entry(name.to_owned()).or_default();
        for commit in offsets {
            group.offsets.entry(commit.topic_id).or_default().insert(
                commit.partition,
                CommittedOffset {
                    offset: commit.offset,
                    metadata: commit.metadata.clone(),
                    committed_ms: at_ms,
                },
            );
        }
        group.updated_ms = group.updated_ms.max(at_ms);
        Ok(offsets.len())
    }

    /// Removes an empty group; with `idle_before_ms`, only if it has not changed since.
    pub(super) fn delete_group(
        &mut self,
        name: &str,
        idle_before_ms: Option<i64>,
    ) -> Result<(), ApplyError> {
        let group = self
            .groups
            .get(name)
            .ok_or_else(|| ApplyError::UnknownGroup(name.to_owned()))?;
        if !group.members.is_empty() {
            return Err(ApplyError::GroupNotEmpty {
                group: name.to_owned(),
                members: group.members.len(),
            });
        }
        if let Some(before) = idle_before_ms
            && group.updated_ms >= before
        {
            return Err(ApplyError::GroupChanged {
                group: name.to_owned(),
                expected: group.generation,
                actual: group.generation,
            });
        }
        self.groups.remove(name);
        Ok(())
    }

    /// Forgets a deleted topic in every group: its offsets, and its partitions in members'
    /// assignments (those groups move to a new generation, so a coordinator that read
    /// them before re-reads).
    pub(super) fn forget_topic_in_groups(&mut self, topic: TopicId) {
        // Only the groups that know the topic are touched (each write copies what a
        // snapshot still shares).
        let knowing: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, group)| {
                group.offsets.contains_key(&topic)
                    || group
                        .members
                        .values()
                        .any(|member| member.partitions.contains_key(&topic))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &knowing {
            let Some(group) = self.groups.get_mut(name) else {
                continue;
            };
            group.offsets.remove(&topic);
            let mut changed = false;
            for member in group.members.values_mut() {
                if member.partitions.remove(&topic).is_some() {
                    changed = true;
                }
            }
            if changed {
                group.generation += 1;
            }
        }
    }
}

fn check_fence(
    name: &str,
    group: &GroupState,
    fence: &MemberFence,
    offsets: &[OffsetCommit],
) -> Result<(), ApplyError> {
    let member = group
        .members
        .get(&fence.member_id)
        .ok_or_else(|| ApplyError::UnknownMember {
            group: name.to_owned(),
            member: fence.member_id.clone(),
        })?;
    if fence.member_epoch > member.epoch {
        return Err(ApplyError::StaleMemberEpoch {
            member: fence.member_id.clone(),
            epoch: fence.member_epoch,
            current: member.epoch,
        });
    }
    for commit in offsets {
        let since = member
            .partitions
            .get(&commit.topic_id)
            .and_then(|owned| owned.get(&commit.partition));
        match since {
            None => {
                return Err(ApplyError::PartitionNotOwned {
                    member: fence.member_id.clone(),
                    topic_id: commit.topic_id,
                    partition: commit.partition,
                });
            }
            Some(since) if fence.member_epoch < *since => {
                return Err(ApplyError::StaleMemberEpoch {
                    member: fence.member_id.clone(),
                    epoch: fence.member_epoch,
                    current: member.epoch,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A [`PartitionMap`] as a list of `[topic id, partition, value]`: JSON map keys are
/// strings, and a command (an internally tagged enum) cannot read integer keys back.
mod as_list {
    use std::collections::BTreeMap;

    use floe_core::TopicId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::PartitionMap;

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        map: &PartitionMap<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<(TopicId, u32, &T)> = map
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |(partition, value)| (*topic, *partition, value))
            })
            .collect();
        list.serialize(serializer)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<PartitionMap<T>, D::Error> {
        let list: Vec<(TopicId, u32, T)> = Vec::deserialize(deserializer)?;
        let mut map: PartitionMap<T> = BTreeMap::new();
        for (topic, partition, value) in list {
            map.entry(topic).or_default().insert(partition, value);
        }
        Ok(map)
    }
}
