//! The batch index: committing a segment's batches, retention's trims, compaction's
//! swaps, and the live-bytes accounting of the objects they refer to.

use std::collections::BTreeMap;

use floe_core::segment::BatchEntry;
use floe_core::{SegmentId, TopicId};
use serde::{Deserialize, Serialize};

use super::{
    BatchLocation, ClusterState, FLUSH_LEVEL, OrdMap, Outcome, PartitionState, Replacement,
    SegmentInfo, TopicState, Trim,
};
use crate::error::ApplyError;

impl ClusterState {
    /// A topic by id, for commands that name topics by id (a produce racing a deletion
    /// finds it gone).
    pub(super) fn topic_mut_by_id(&mut self, id: TopicId) -> Result<&mut TopicState, ApplyError> {
        topic_by_id(&self.names_by_id, &mut self.topics, id)
    }

    /// Counts a new index entry against its object.
    pub(super) fn add_live(&mut self, segment: SegmentId, length: u32, level: u8) {
        let info = self.segments.entry(segment).or_insert(SegmentInfo {
            live_bytes: 0,
            live_batches: 0,
            level,
        });
        info.live_bytes += u64::from(length);
        info.live_batches += 1;
    }

    /// Takes an index entry off its object; an object with no entries left becomes garbage.
    pub(super) fn release(
        segments: &mut OrdMap<SegmentId, SegmentInfo>,
        garbage: &mut OrdMap<SegmentId, i64>,
        location: &BatchLocation,
        at_ms: i64,
    ) {
        let Some(info) = segments.get_mut(&location.segment) else {
            return;
        };
        info.live_bytes = info.live_bytes.saturating_sub(u64::from(location.length));
        info.live_batches = info.live_batches.saturating_sub(1);
        if info.live_batches == 0 {
            segments.remove(&location.segment);
            garbage.insert(location.segment, at_ms);
        }
    }

    pub(super) fn trim_partitions(&mut self, at_ms: i64, trims: &[Trim]) -> Outcome {
        let mut moved = 0;
        // What goes, released per object once the whole command is applied.
        let mut released = Released::default();
        for trim in trims {
            let Some(name) = self.names_by_id.get(&trim.topic_id) else {
                continue;
            };
            let Some(topic) = self.topics.get_mut(name) else {
                continue;
            };
            let export_enabled = topic.config.export_enabled;
            let Some(partition) = topic.partitions.get_mut(trim.partition as usize) else {
                continue;
            };
            let mut start = trim.log_start_offset.min(partition.high_watermark);
            // Retention never deletes what an enabled export has not written, nor a
            // begun file's records.
            if let Some(hold) = partition.export_hold(export_enabled) {
                start = start.min(hold);
            }
            if start <= partition.log_start_offset {
                continue;
            }
            partition.log_start_offset = start;
            moved += 1;
            // One pass over what goes; the index then loses its prefix, rebuilt from
            // what stays when that is the smaller part.
            let (bytes_before, batches_before) = (released.bytes, released.batches);
            let mut first_kept = None;
            for (base, location) in partition.batches.iter() {
                if PartitionState::batch_end(*base, location) > start {
                    first_kept = Some(*base);
                    break;
                }
                released.add(location);
            }
            partition.size_bytes -= released.bytes - bytes_before;
            let gone = released.batches - batches_before;
            let kept = partition.batches.len() - gone;
            match first_kept {
                None => partition.batches = OrdMap::new(),
                Some(first) if kept < gone => {
                    partition.batches = partition
                        .batches
                        .range(first..)
                        .map(|(base, location)| (*base, *location))
                        .collect();
                }
                Some(_) => {
                    for _ in 0..gone {
                        let Some(&(base, _)) = partition.batches.get_min() else {
                            break;
                        };
                        partition.batches.remove(&base);
                    }
                }
            }
        }
        released.apply(&mut self.segments, &mut self.garbage, at_ms);
        Outcome::Trimmed(moved)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn replace_batches(
        &mut self,
        at_ms: i64,
        topic_id: TopicId,
        partition_index: u32,
        segment: SegmentId,
        level: u8,
        replaced: &[(u64, SegmentId)],
        batches: &[Replacement],
    ) -> Result<Outcome, ApplyError> {
        self.check_horizon(segment)?;
        if self.knows_object(segment) {
            return Err(ApplyError::BadReplacement(format!(
                "object {segment} is already indexed"
            )));
        }
        // Field by field: the swap below also updates the object table.
        let topic = topic_by_id(&self.names_by_id, &mut self.topics, topic_id)?;
        let (export_enabled, keyed) = (
            topic.config.export_enabled,
            topic.config.cleanup_policy == floe_core::CleanupPolicy::Compact,
        );
        let partition = topic.partition_mut(partition_index)?;
        let (Some((from, _)), Some((last, _))) = (replaced.first(), replaced.last()) else {
            return Err(ApplyError::BadReplacement("nothing to replace".into()));
        };
        let current: Vec<(u64, BatchLocation)> = partition
            .batches
            .range(*from..=*last)
            .map(|(base, location)| (*base, *location))
            .collect();
        let unchanged = current.len() == replaced.len()
            && current
                .iter()
                .zip(replaced)
                .all(|((base, location), (want_base, want_segment))| {
                    base == want_base && location.segment == *want_segment
                });
        if !unchanged {
            return Err(ApplyError::StaleReplacement(format!(
                "batches {from}..={last} changed since the compaction read them"
            )));
        }
        let to =
            PartitionState::batch_end(current[current.len() - 1].0, &current[current.len() - 1].1);
        if keyed
            && partition
                .export_hold(export_enabled)
                .is_some_and(|hold| to > hold)
        {
            return Err(ApplyError::StaleReplacement(format!(
                "batches {from}..{to} are not exported yet; keyed compaction waits for the export"
            )));
        }
        let mut next = *from;
        for batch in batches {
            if batch.base_offset != next || batch.offset_count == 0 {
                return Err(ApplyError::BadReplacement(format!(
                    "new batches must tile {from}..{to}; found one at {} after {next}",
                    batch.base_offset
                )));
            }
            next += u64::from(batch.offset_count);
        }
        if next != to {
            return Err(ApplyError::BadReplacement(format!(
                "new batches cover {from}..{next}, not {from}..{to}"
            )));
        }
        for (base, location) in &current {
            partition.batches.remove(base);
            partition.size_bytes -= u64::from(location.length);
            Self::release(&mut self.segments, &mut self.garbage, location, at_ms);
        }
        for batch in batches {
            partition.batches.insert(
                batch.base_offset,
                BatchLocation {
                    segment,
                    byte_offset: batch.byte_offset,
                    length: batch.length,
                    record_count: batch.offset_count,
                    first_timestamp: batch.first_timestamp,
                    max_timestamp: batch.max_timestamp,
                    crc32c: batch.crc32c,
                },
            );
            partition.size_bytes += u64::from(batch.length);
        }
        for batch in batches {
            self.add_live(segment, batch.length, level);
        }
        Ok(Outcome::BatchesReplaced {
            removed: current.len(),
            added: batches.len(),
        })
    }

    /// Refuses objects created at or before the orphan horizon: the sweep may delete them.
    pub(super) fn check_horizon(&self, segment: SegmentId) -> Result<(), ApplyError> {
        if segment.created_ms() <= self.orphan_horizon_ms {
            return Err(ApplyError::ObjectTooOld {
                segment: segment.to_string(),
                horizon_ms: self.orphan_horizon_ms,
            });
        }
        Ok(())
    }

    pub(super) fn commit_segment(
        &mut self,
        segment: SegmentId,
        batches: &[BatchEntry],
        guards: &[super::RequestGuard],
        at_ms: i64,
    ) -> Outcome {
        if let Err(error) = self.check_horizon(segment) {
            return Outcome::SegmentCommitted(vec![Err(error); batches.len()].into());
        }
        let mut results = Vec::with_capacity(batches.len());
        let mut repeated = Vec::new();
        let mut guards = guards.iter().peekable();
        let mut index = 0;
        while index < batches.len() {
            match guards.peek() {
                Some(guard) if guard.first as usize == index && guard.count > 0 => {
                    let end = (index + guard.count as usize).min(batches.len());
                    let (guarded, repeat) =
                        self.commit_guarded(segment, &batches[index..end], guard, at_ms);
                    results.extend(guarded);
                    if let Some(timestamp_ms) = repeat {
                        repeated.push((index as u32, (end - index) as u32, timestamp_ms));
                    }
                    index = end;
                    guards.next();
                }
                // A guard out of order or empty is malformed: skip it (the broker never
                // writes one).
                Some(guard) if (guard.first as usize) <= index => {
                    guards.next();
                }
                _ => {
                    results.push(self.commit_batch(segment, &batches[index]));
                    index += 1;
                }
            }
        }
        Outcome::SegmentCommitted(SegmentResults { results, repeated })
    }

    pub(super) fn commit_batch(
        &mut self,
        segment: SegmentId,
        batch: &BatchEntry,
    ) -> Result<u64, ApplyError> {
        let partition = self
            .topic_mut_by_id(batch.topic_id)?
            .partition_mut(batch.partition)?;
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
        self.add_live(segment, batch.length, FLUSH_LEVEL);
        Ok(base_offset)
    }
}

/// [`ClusterState::topic_mut_by_id`] on the two fields it needs, for callers that also
/// borrow other fields.
fn topic_by_id<'a>(
    names_by_id: &BTreeMap<TopicId, String>,
    topics: &'a mut BTreeMap<String, TopicState>,
    id: TopicId,
) -> Result<&'a mut TopicState, ApplyError> {
    let name = names_by_id.get(&id).ok_or(ApplyError::UnknownTopicId(id))?;
    Ok(topics.get_mut(name).expect("names_by_id mirrors topics"))
}

impl TopicState {
    /// One of the topic's partitions, or `unknown_partition`.
    pub(super) fn partition_mut(
        &mut self,
        partition: u32,
    ) -> Result<&mut PartitionState, ApplyError> {
        let partitions = self.partition_count();
        self.partitions
            .get_mut(partition as usize)
            .ok_or(ApplyError::UnknownPartition {
                partition,
                partitions,
            })
    }
}

/// What a segment's commit did, batch by batch. On the wire (a forwarded commit's
/// answer) it is the plain list of results, as brokers before it wrote and read, unless
/// a retry was answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentResults {
    /// Per batch, in the order of the command: its base offset, or why it was refused.
    pub results: Vec<Result<u64, ApplyError>>,
    /// Guarded requests answered as retries of committed ones (nothing written): their
    /// first batch, batch count and the timestamp (ms) the first attempt's broker gave.
    pub repeated: Vec<(u32, u32, i64)>,
}

impl Serialize for SegmentResults {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Full<'a> {
            results: &'a [Result<u64, ApplyError>],
            repeated: &'a [(u32, u32, i64)],
        }
        if self.repeated.is_empty() {
            self.results.serialize(serializer)
        } else {
            Full {
                results: &self.results,
                repeated: &self.repeated,
            }
            .serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for SegmentResults {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Plain(Vec<Result<u64, ApplyError>>),
            Full {
                results: Vec<Result<u64, ApplyError>>,
                #[serde(default)]
                repeated: Vec<(u32, u32, i64)>,
            },
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::Plain(results) => results.into(),
            Either::Full { results, repeated } => Self { results, repeated },
        })
    }
}

impl SegmentResults {
    /// Each batch with its outcome, `Ok` only for batches this commit wrote (not those
    /// of a retry answered with the offsets of an earlier commit).
    pub fn written(&self) -> impl Iterator<Item = Option<u64>> + '_ {
        self.results.iter().enumerate().map(|(index, result)| {
            let index = index as u32;
            let repeat = self
                .repeated
                .iter()
                .any(|(first, count, _)| (*first..first + count).contains(&index));
            result.as_ref().ok().copied().filter(|_| !repeat)
        })
    }
}

impl From<Vec<Result<u64, ApplyError>>> for SegmentResults {
    fn from(results: Vec<Result<u64, ApplyError>>) -> Self {
        Self {
            results,
            repeated: Vec::new(),
        }
    }
}

impl std::ops::Deref for SegmentResults {
    type Target = [Result<u64, ApplyError>];

    fn deref(&self) -> &Self::Target {
        &self.results
    }
}

/// Index entries leaving their objects in bulk (a trim, a deleted topic): counted per
/// object first, so each object's accounting is updated once, not once per entry. A trim
/// of a backlog can release hundreds of thousands of entries of a few thousand objects.
/// Objects are then visited in key order: the object table is a persistent map that a
/// snapshot's copy may share, and updates in order copy each shared node once, where
/// updates in random order would copy a path per object.
#[derive(Default)]
pub(super) struct Released {
    per_object: std::collections::HashMap<SegmentId, (u64, u32)>,
    pub(super) bytes: u64,
    pub(super) batches: usize,
}

impl Released {
    pub(super) fn add(&mut self, location: &BatchLocation) {
        let (bytes, batches) = self.per_object.entry(location.segment).or_default();
        *bytes += u64::from(location.length);
        *batches += 1;
        self.bytes += u64::from(location.length);
        self.batches += 1;
    }

    /// Takes the entries off their objects; an object with none left becomes garbage.
    pub(super) fn apply(
        self,
        segments: &mut OrdMap<SegmentId, SegmentInfo>,
        garbage: &mut OrdMap<SegmentId, i64>,
        at_ms: i64,
    ) {
        let mut per_object: Vec<_> = self.per_object.into_iter().collect();
        per_object.sort_unstable_by_key(|(segment, _)| *segment);
        for (segment, (bytes, batches)) in per_object {
            let Some(info) = segments.get_mut(&segment) else {
                continue;
            };
            info.live_bytes = info.live_bytes.saturating_sub(bytes);
            info.live_batches = info.live_batches.saturating_sub(batches);
            if info.live_batches == 0 {
                segments.remove(&segment);
                garbage.insert(segment, at_ms);
            }
        }
    }
}
