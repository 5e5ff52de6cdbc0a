//! The group operations the HTTP layer calls: membership, member reads, commits, lag,
//! resets, listing and deletion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use floe_core::{MemoryBudget, TopicId};
use floe_sequencer::{
    ApplyError, ClusterState, Command, GroupState, MemberFence, OffsetCommit, Outcome,
};
use futures::future::select_all;
use tokio::time::Instant;

use super::coordinator::{Event, start_offset};
use super::{
    GroupDescription, GroupFetch, GroupPhase, GroupRead, GroupRecord, GroupSummary, JoinSpec,
    MemberSummary, MemberView,
};
use crate::error::BrokerError;
use crate::{Broker, FetchRequest, OffsetSpec};

/// A partition of a group's topics: committed offset, log range, lag and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<(u64, String)>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub lag: u64,
    pub member: Option<String>,
}

/// Where a reset moves a topic's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// The first offset at or after a timestamp (ms); the high watermark when none is.
    Timestamp(i64),
    /// Explicit offsets by partition.
    Offsets(BTreeMap<u32, u64>),
}

/// Offsets to commit, by topic name.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

impl Broker {
    /// Joins `group` (or rejoins under a previous member id).
    pub async fn join_group(&self, group: &str, spec: JoinSpec) -> Result<MemberView, BrokerError> {
        if spec.topics.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "a member subscribes to at least one topic".into(),
            ));
        }
        for topic in &spec.topics {
            floe_core::validate_topic_name(topic)?;
            if self
                .inner
                .sequencer
                .read(|state| state.topic(topic).is_none())
            {
                return Err(BrokerError::UnknownTopic(topic.clone()));
            }
        }
        let view = self.group_event(group, Event::Join(spec)).await?;
        Ok(view.expect("a join answers its member"))
    }

    /// A member's heartbeat: `owned` is what it still holds.
    pub async fn heartbeat(
        &self,
        group: &str,
        member: &str,
        epoch: u64,
        owned: &[(String, u32)],
    ) -> Result<MemberView, BrokerError> {
        self.groups().arrive(group, member);
        let owned = self.inner.sequencer.read(|state| {
            owned
                .iter()
                .filter_map(|(topic, partition)| {
                    state.topic(topic).map(|topic| (topic.id, *partition))
                })
                .collect::<BTreeSet<_>>()
        });
        let event = Event::Heartbeat {
            member: member.to_owned(),
            epoch,
            owned,
        };
        let view = self.group_event(group, event).await?;
        Ok(view.expect("a heartbeat answers its member"))
    }

    /// Removes a member now; its partitions move at once.
    pub async fn leave_group(&self, group: &str, member: &str) -> Result<(), BrokerError> {
        let event = Event::Leave {
            member: member.to_owned(),
        };
        self.group_event(group, event).await.map(|_| ())
    }

    /// Reads records of every partition the member may read, from its positions, waiting
    /// up to `fetch.wait` for a commit to any of them. The records' bytes are reserved from
    /// `budget`; the reservations come back for the caller to hold while it answers.
    pub async fn group_records(
        &self,
        group: &str,
        member: &str,
        fetch: GroupFetch,
        budget: &Arc<MemoryBudget>,
    ) -> Result<GroupRead, BrokerError> {
        let lock = self.groups().group(group);
        let (epoch, readable, started) = {
            let mut soft = lock.lock().await;
            let Some(durable) = self
                .inner
                .sequencer
                .read(|state| state.group(group).cloned())
            else {
                return Err(BrokerError::UnknownGroup(group.to_owned()));
            };
            let Some(durable_member) = durable.members.get(member) else {
                return Err(soft.missing_member(group, member));
            };
            let Some(soft_member) = soft.members.get_mut(member) else {
                // The log names the member but this coordinator has not adopted it yet:
                // it heartbeats first.
                return Err(soft.missing_member(group, member));
            };
            let epoch = durable_member.epoch;
            let started = (soft_member.incarnation, soft_member.answers);
            if let (Some(ack), Some((last, before))) = (fetch.ack, soft_member.last_answer.take())
                && ack != last
            {
                // The member never got the last answer: read its records again.
                for (key, offset) in before {
                    if let Some(position) = soft_member.positions.get_mut(&key) {
                        *position = offset;
                    }
                }
            }
            let mut readable: Vec<((TopicId, u32), String, u64)> = Vec::new();
            self.inner.sequencer.read(|state| {
                for (topic, partitions) in &durable_member.partitions {
                    let Some(name) = state.topic_by_id(*topic).map(|t| t.name.clone()) else {
                        continue;
                    };
                    for (partition, since) in partitions {
                        let key = (*topic, *partition);
                        // Only partitions the member was told it owns, and (when it says
                        // which epoch it has applied) got by then: records of a partition
                        // it does not hold yet would be dropped by it and skipped.
                        if soft_member.revoking.contains_key(&key)
                            || !soft_member.announced.contains(&key)
                            || fetch.member_epoch.is_some_and(|applied| *since > applied)
                        {
                            continue;
                        }
                        let position = soft_member.positions.entry(key).or_insert_with(|| {
                            start_offset(
                                state,
                                Some(&durable),
                                key,
                                durable_member.auto_offset_reset,
                            )
                        });
                        // Retention may have passed the position: go on from the log
                        // start (so auto-commit never commits an offset it removed).
                        if let Some(log) = state
                            .topic_by_id(*topic)
                            .and_then(|t| t.partitions.get(*partition as usize))
                        {
                            *position = (*position).clamp(log.log_start_offset, log.high_watermark);
                        }
                        readable.push((key, name.clone(), *position));
                    }
                }
            });
            if fetch.commit_previous {
                let offsets: Vec<OffsetCommit> = readable
                    .iter()
                    .filter(|((topic, partition), _, position)| {
                        durable
                            .committed(*topic, *partition)
                            .is_none_or(|committed| committed.offset != *position)
                    })
                    .map(|((topic, partition), _, position)| OffsetCommit {
                        topic_id: *topic,
                        partition: *partition,
                        offset: *position,
                        metadata: String::new(),
                    })
                    .collect();
                if !offsets.is_empty() {
                    let fence = MemberFence {
                        member_id: member.to_owned(),
                        member_epoch: epoch,
                    };
                    self.submit_commit(group, Some(fence), offsets).await?;
                }
            }
            // Start at a different partition each call, so a partition with a backlog
            // cannot starve the ones after it.
            if !readable.is_empty() {
                let turn = (soft_member.answers as usize) % readable.len();
                readable.rotate_left(turn);
            }
            (epoch, readable, started)
        };

        let deadline = Instant::now() + fetch.wait;
        let mut waiters: Vec<crate::wakeups::Waiter> = readable
            .iter()
            .map(|((topic, partition), _, _)| self.inner.wakeups.subscribe(*topic, *partition))
            .collect();
        // Each record with its partition's key, to drop those of partitions lost meanwhile.
        let mut out: Vec<((TopicId, u32), GroupRecord)> = Vec::new();
        let mut reservations = Vec::new();
        let mut next: BTreeMap<(TopicId, u32), u64> = BTreeMap::new();
        // What ended the last wait, until the look after it says whether it found records.
        let mut woken = None;
        loop {
            for waiter in &mut waiters {
                waiter.mark_seen();
            }
            let mut bytes = 0usize;
            for (key, topic, position) in &readable {
                if out.len() >= fetch.max_records || bytes >= fetch.max_bytes {
                    break;
                }
                let from = next.get(key).copied().unwrap_or(*position);
                let request = FetchRequest {
                    topic: topic.clone(),
                    partition: key.1,
                    offset: from,
                    max_records: fetch.max_records - out.len(),
                    max_bytes: fetch.max_bytes - bytes,
                    wait: Duration::ZERO,
                    clamp: true,
                };
                let (result, reservation) = match self.fetch_within(request, budget).await {
                    Ok(read) => read,
                    // A partition deleted meanwhile has nothing to read.
                    Err(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. }) => {
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                reservations.extend(reservation);
                next.insert(*key, result.next_offset);
                for record in result.records {
                    bytes += record.record.value.as_ref().map_or(0, |v| v.len())
                        + record.record.key.as_ref().map_or(0, |k| k.len());
                    out.push((
                        *key,
                        GroupRecord {
                            topic: topic.clone(),
                            partition: key.1,
                            record,
                        },
                    ));
                }
            }
            if let Some(cause) = woken.take() {
                self.inner.latency.woken(cause, !out.is_empty()).inc();
            }
            if !out.is_empty() || waiters.is_empty() || Instant::now() >= deadline {
                break;
            }
            let waits = select_all(
                waiters
                    .iter_mut()
                    .map(|waiter| Box::pin(waiter.wait(deadline))),
            );
            (woken, _, _) = waits.await;
            if woken.is_none() && Instant::now() >= deadline {
                break;
            }
        }

        // Keep only what the member may still read (a revocation or a removal may have
        // come while reading) and move its positions past what it gets.
        let mut soft = lock.lock().await;
        let Some(soft_member) = soft.members.get_mut(member) else {
            return Err(soft.missing_member(group, member));
        };
        if (soft_member.incarnation, soft_member.answers) != started {
            // Another call answered meanwhile (this one outlived its client's patience,
            // or the member rejoined): its positions win, and this read is discarded.
            return Ok(GroupRead {
                records: Vec::new(),
                member_epoch: epoch,
                answer: soft_member.last_answer.as_ref().map_or(0, |(id, _)| *id),
                reservations: Vec::new(),
            });
        }
        let still: BTreeSet<(TopicId, u32)> = readable
            .iter()
            .map(|(key, _, _)| *key)
            .filter(|key| {
                soft_member.positions.contains_key(key) && !soft_member.revoking.contains_key(key)
            })
            .collect();
        let records: Vec<GroupRecord> = out
            .into_iter()
            .filter(|(key, _)| still.contains(key))
            .map(|(_, record)| record)
            .collect();
        // What an unacknowledged answer rolls back to: the positions this call read from.
        let mut before = HashMap::new();
        for (key, _, position) in &readable {
            let Some(offset) = next.get(key) else {
                continue;
            };
            if still.contains(key) && offset != position {
                soft_member.positions.insert(*key, *offset);
                before.insert(*key, *position);
            }
        }
        soft_member.answers += 1;
        let answer = self.groups().next_answer_id();
        soft_member.last_answer = Some((answer, before));
        Ok(GroupRead {
            records,
            member_epoch: epoch,
            answer,
            reservations,
        })
    }

    /// Commits offsets: by a member (`member` with its epoch), or a simple commit.
    pub async fn commit_offsets(
        &self,
        group: &str,
        member: Option<(String, u64)>,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<usize, BrokerError> {
        if offsets.is_empty() {
            return Ok(0);
        }
        let (commits, exists, groups) = self.inner.sequencer.read(|state| {
            let commits = offsets
                .iter()
                .map(|offset| {
                    let topic = state
                        .topic(&offset.topic)
                        .ok_or_else(|| BrokerError::UnknownTopic(offset.topic.clone()))?;
                    if offset.partition >= topic.partition_count() {
                        return Err(BrokerError::UnknownPartition {
                            topic: offset.topic.clone(),
                            partition: offset.partition,
                            partitions: topic.partition_count(),
                        });
                    }
                    Ok(OffsetCommit {
                        topic_id: topic.id,
                        partition: offset.partition,
                        offset: offset.offset,
                        metadata: offset.metadata.clone(),
                    })
                })
                .collect::<Result<Vec<_>, BrokerError>>();
            (
                commits,
                state.group(group).is_some(),
                state.groups().count(),
            )
        });
        let commits = commits?;
        if !exists && member.is_none() && groups >= self.group_options().max_groups {
            return Err(BrokerError::LimitReached(format!(
                "the cluster has {groups} groups; groups.max_groups is {}",
                self.group_options().max_groups
            )));
        }
        if let Some((id, _)) = &member
            && !exists
        {
            return Err(BrokerError::UnknownMember {
                group: group.to_owned(),
                member: id.clone(),
            });
        }
        let fence = member.map(|(member_id, member_epoch)| MemberFence {
            member_id,
            member_epoch,
        });
        self.submit_commit(group, fence, commits).await
    }

    async fn submit_commit(
        &self,
        group: &str,
        member: Option<MemberFence>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<usize, BrokerError> {
        let started = Instant::now();
        let command = Command::CommitOffsets {
            group: group.to_owned(),
            member,
            offsets,
            at_ms: self.inner.clock.now_ms(),
        };
        let outcome = self.inner.sequencer.submit(command).await;
        crate::metrics::observe(&self.groups().commit_latency, started.elapsed());
        match outcome? {
            Outcome::OffsetsCommitted(count) => Ok(count),
            other => Err(BrokerError::Corrupt(format!(
                "an offset commit answered {other:?}"
            ))),
        }
    }

    /// Committed offset, log range and lag of every partition of the topics the group
    /// consumes (subscribed or committed to).
    pub fn group_offsets(&self, group: &str) -> Result<Vec<GroupPartition>, BrokerError> {
        self.inner.sequencer.read(|state| {
            let durable = state
                .group(group)
                .ok_or_else(|| BrokerError::UnknownGroup(group.to_owned()))?;
            Ok(partitions_of(state, durable))
        })
    }

    /// Moves a topic's committed offsets (empty group only).
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        target: ResetTarget,
    ) -> Result<Vec<GroupPartition>, BrokerError> {
        floe_core::validate_topic_name(topic)?;
        let (partitions, members) = self.inner.sequencer.read(|state| {
            (
                state.topic(topic).map(|t| t.partition_count()),
                state.group(group).map_or(0, |group| group.members.len()),
            )
        });
        let partitions = partitions.ok_or_else(|| BrokerError::UnknownTopic(topic.to_owned()))?;
        if members > 0 {
            return Err(BrokerError::from(ApplyError::GroupNotEmpty {
                group: group.to_owned(),
                members,
            }));
        }
        let mut offsets = Vec::new();
        match target {
            ResetTarget::Offsets(explicit) => {
                for (partition, offset) in explicit {
                    offsets.push(OffsetToCommit {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        metadata: String::new(),
                    });
                }
            }
            ResetTarget::Earliest | ResetTarget::Latest | ResetTarget::Timestamp(_) => {
                let spec = match target {
                    ResetTarget::Earliest => OffsetSpec::Earliest,
                    ResetTarget::Latest => OffsetSpec::Latest,
                    ResetTarget::Timestamp(ms) => OffsetSpec::Timestamp(ms),
                    ResetTarget::Offsets(_) => unreachable!("handled above"),
                };
                for partition in 0..partitions {
                    let found = self.lookup_offset(topic, partition, spec).await?;
                    offsets.push(OffsetToCommit {
                        topic: topic.to_owned(),
                        partition,
                        offset: found.offset,
                        metadata: String::new(),
                    });
                }
            }
        }
        self.commit_offsets(group, None, offsets).await?;
        self.group_offsets(group)
    }

    /// Every group, by name.
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        self.inner.sequencer.read(|state| {
            state
                .groups()
                .map(|(name, group)| summary(name, group, false))
                .collect()
        })
    }

    /// A group's members, assignment and lag. On its coordinator, members show the
    /// partitions being asked back.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, BrokerError> {
        let revoking: BTreeMap<String, BTreeSet<(TopicId, u32)>> = {
            let lock = self.groups().group(group);
            let soft = lock.lock().await;
            soft.members
                .iter()
                .map(|(id, member)| (id.clone(), member.revoking.keys().copied().collect()))
                .collect()
        };
        let coordinator = self
            .group_coordinator(group)
            .map(|member| member.broker)
            .unwrap_or_default();
        self.inner.sequencer.read(|state| {
            let durable = state
                .group(group)
                .ok_or_else(|| BrokerError::UnknownGroup(group.to_owned()))?;
            let name_of = |topic: &TopicId| state.topic_by_id(*topic).map(|t| t.name.clone());
            let members = durable
                .members
                .iter()
                .map(|(id, member)| {
                    let asked = revoking.get(id).cloned().unwrap_or_default();
                    let mut owned = Vec::new();
                    let mut back = Vec::new();
                    for (topic, partitions) in &member.partitions {
                        let Some(name) = name_of(topic) else { continue };
                        for partition in partitions.keys() {
                            if asked.contains(&(*topic, *partition)) {
                                back.push((name.clone(), *partition));
                            } else {
                                owned.push((name.clone(), *partition));
                            }
                        }
                    }
                    MemberSummary {
                        member_id: id.clone(),
                        member_epoch: member.epoch,
                        topics: member.topics.clone(),
                        session_timeout_ms: member.session_timeout_ms,
                        owned,
                        revoking: back,
                    }
                })
                .collect();
            let any_revoking = revoking.values().any(|set| !set.is_empty());
            Ok(GroupDescription {
                summary: summary(group, durable, any_revoking),
                coordinator,
                members,
                offsets: partitions_of(state, durable),
            })
        })
    }

    /// Deletes a group without members, and its offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), BrokerError> {
        let command = Command::DeleteGroup {
            group: group.to_owned(),
            idle_before_ms: None,
        };
        self.inner.sequencer.submit(command).await?;
        self.groups().forget(group);
        Ok(())
    }
}

fn summary(name: &str, group: &GroupState, revoking: bool) -> GroupSummary {
    let phase = if group.members.is_empty() {
        GroupPhase::Empty
    } else if revoking {
        GroupPhase::Reconciling
    } else {
        GroupPhase::Stable
    };
    GroupSummary {
        name: name.to_owned(),
        state: phase,
        members: group.members.len(),
        generation: group.generation,
    }
}

/// The partitions of every topic a group subscribes to or has offsets in.
fn partitions_of(state: &ClusterState, group: &GroupState) -> Vec<GroupPartition> {
    let mut topics: BTreeSet<String> = group
        .members
        .values()
        .flat_map(|member| member.topics.iter().cloned())
        .collect();
    topics.extend(
        group
            .offsets
            .keys()
            .filter_map(|id| state.topic_by_id(*id).map(|t| t.name.clone())),
    );
    let mut out = Vec::new();
    for name in topics {
        let Some(topic) = state.topic(&name) else {
            continue;
        };
        for (index, log) in topic.partitions.iter().enumerate() {
            let partition = index as u32;
            let committed = group.committed(topic.id, partition);
            let from = committed.map_or(log.log_start_offset, |c| c.offset);
            out.push(GroupPartition {
                topic: name.clone(),
                partition,
                committed: committed.map(|c| (c.offset, c.metadata.clone())),
                log_start_offset: log.log_start_offset,
                high_watermark: log.high_watermark,
                lag: log.high_watermark.saturating_sub(from),
                member: group
                    .owner_of(topic.id, partition)
                    .map(|(id, _)| id.to_owned()),
            });
        }
    }
    out
}
