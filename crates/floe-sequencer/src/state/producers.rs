//! Idempotent producers and conditional appends (ADR 0010).
//!
//! A producer gets an id and an epoch ([`Command::InitProducer`](super::Command)); each of
//! its produce requests carries the next sequence number, 0, 1, 2, … The state keeps, per
//! producer, the last [`PRODUCER_WINDOW`] requests' sequences and the offsets they got, so
//! a retry of a committed request is answered with the original offsets and writes
//! nothing. The window holds offsets, not batches: compaction, which merges batches but
//! keeps offsets, cannot lose what deduplication needs. A conditional append commits only
//! while its partition's next offset is the one the writer expects.

use std::collections::VecDeque;

use floe_core::TopicId;
use floe_core::segment::BatchEntry;
use serde::{Deserialize, Serialize};

use super::{ClusterState, Outcome};
use crate::error::ApplyError;

/// Requests remembered per producer (Kafka keeps 5 batches per partition).
pub const PRODUCER_WINDOW: usize = 5;
/// The most producers the cluster tracks at once; `InitProducer` beyond it is refused
/// until idle ones expire.
pub const MAX_PRODUCERS: usize = 100_000;
/// The most producers one principal may hold, so one cannot use up the cluster's.
pub const MAX_PRODUCERS_PER_PRINCIPAL: usize = 10_000;
/// The most batches (partitions) one idempotent request may write: as many as one
/// segment's commit carries.
pub const MAX_IDEMPOTENT_BATCHES: usize = 4096;
/// The most batches a producer's window remembers across its requests (each is kept in
/// every replica and snapshot): older requests leave the window early when recent ones
/// were wide. The newest request always stays.
pub const MAX_WINDOW_BATCHES: usize = 4096;

/// A produce request's producer: who, at which epoch, its request number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerTag {
    pub producer_id: u64,
    pub epoch: u16,
    pub sequence: u64,
}

/// The conditions on one request's batches in a [`Command::CommitSegment`](super::Command):
/// batches `first..first + count` of the segment, all or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestGuard {
    pub first: u32,
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerTag>,
    /// Commit only if the (single) partition's next offset is this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_next_offset: Option<u64>,
    /// The time (ms) the broker gave records that carried none: remembered with an
    /// idempotent request, so a retry is answered with the first attempt's timestamps.
    #[serde(default)]
    pub timestamp_ms: i64,
    /// The authenticated principal sending the request: a producer serves only the
    /// principal that initialised it (`None` without authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// One remembered request: its sequence and where each of its batches landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Produced {
    pub sequence: u64,
    /// The broker's time for the request's records that carried none.
    #[serde(default)]
    pub timestamp_ms: i64,
    /// Per batch, in request order: topic, partition, base offset, record count.
    pub batches: Vec<(TopicId, u32, u64, u32)>,
}

/// What the cluster remembers of one producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    pub epoch: u16,
    /// The principal that initialised it (`None` without authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The last time (ms) it was initialised or committed; idle producers expire.
    pub last_seen_ms: i64,
    pub window: VecDeque<Produced>,
}

impl ProducerState {
    /// The sequence its next request must carry.
    pub fn next_sequence(&self) -> u64 {
        self.window.back().map_or(0, |last| last.sequence + 1)
    }
}

impl ClusterState {
    pub fn producer(&self, id: u64) -> Option<&ProducerState> {
        self.producers.get(&id)
    }

    pub fn producers(&self) -> impl Iterator<Item = (&u64, &ProducerState)> {
        self.producers.iter()
    }

    /// A new producer id at epoch 0, or, for `existing` at its current epoch, the same id
    /// at the next epoch (its sequences start again at 0 and older epochs are fenced).
    pub(super) fn init_producer(
        &mut self,
        existing: Option<(u64, u16)>,
        principal: Option<&str>,
        at_ms: i64,
    ) -> Result<Outcome, ApplyError> {
        if let Some((producer_id, epoch)) = existing {
            // Another principal's producer is as good as unknown: it can neither be
            // fenced nor learnt about.
            let state = self
                .producers
                .get_mut(&producer_id)
                .filter(|state| state.principal.as_deref() == principal)
                .ok_or(ApplyError::UnknownProducer(producer_id))?;
            if epoch != state.epoch {
                return Err(ApplyError::ProducerFenced {
                    producer_id,
                    epoch,
                    current: state.epoch,
                });
            }
            let Some(next) = state.epoch.checked_add(1) else {
                return Err(ApplyError::ProducerEpochExhausted(producer_id));
            };
            *state = ProducerState {
                epoch: next,
                principal: principal.map(str::to_owned),
                last_seen_ms: at_ms,
                window: VecDeque::new(),
            };
            return Ok(Outcome::ProducerInitialized {
                producer_id,
                epoch: next,
            });
        }
        if self.producers.len() >= MAX_PRODUCERS {
            return Err(ApplyError::TooManyProducers {
                limit: MAX_PRODUCERS,
            });
        }
        let held = self
            .producers
            .values()
            .filter(|state| state.principal.as_deref() == principal)
            .count();
        if held >= MAX_PRODUCERS_PER_PRINCIPAL {
            return Err(ApplyError::TooManyProducers {
                limit: MAX_PRODUCERS_PER_PRINCIPAL,
            });
        }
        self.next_producer_id += 1;
        let producer_id = self.next_producer_id;
        self.producers.insert(
            producer_id,
            ProducerState {
                epoch: 0,
                principal: principal.map(str::to_owned),
                last_seen_ms: at_ms,
                window: VecDeque::new(),
            },
        );
        Ok(Outcome::ProducerInitialized {
            producer_id,
            epoch: 0,
        })
    }

    /// Forgets producers idle since before `idle_before_ms`.
    pub(super) fn expire_producers(&mut self, idle_before_ms: i64) -> Outcome {
        let idle: Vec<u64> = self
            .producers
            .iter()
            .filter(|(_, producer)| producer.last_seen_ms < idle_before_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.producers.remove(id);
        }
        Outcome::ProducersExpired(idle.len())
    }

    /// Commits one guarded request's batches, all or none, and returns each batch's base
    /// offset (the original ones for a retry of a committed request, with the first
    /// attempt's timestamp) or why not.
    pub(super) fn commit_guarded(
        &mut self,
        segment: floe_core::SegmentId,
        batches: &[BatchEntry],
        guard: &RequestGuard,
        at_ms: i64,
    ) -> (Vec<Result<u64, ApplyError>>, Option<i64>) {
        let refuse = |error: ApplyError| (vec![Err(error); batches.len()], None);
        if let Some(tag) = &guard.producer {
            let Some(producer) = self
                .producers
                .get(&tag.producer_id)
                .filter(|producer| producer.principal == guard.principal)
            else {
                return refuse(ApplyError::UnknownProducer(tag.producer_id));
            };
            if batches.len() > MAX_IDEMPOTENT_BATCHES {
                return refuse(ApplyError::TooManyIdempotentBatches {
                    batches: batches.len(),
                    limit: MAX_IDEMPOTENT_BATCHES,
                });
            }
            if tag.epoch != producer.epoch {
                return refuse(ApplyError::ProducerFenced {
                    producer_id: tag.producer_id,
                    epoch: tag.epoch,
                    current: producer.epoch,
                });
            }
            if let Some(original) = producer
                .window
                .iter()
                .find(|produced| produced.sequence == tag.sequence)
            {
                // A retry: the same batches (topic, partition, count) get the offsets the
                // first attempt got, and nothing is written again.
                let same = original.batches.len() == batches.len()
                    && original.batches.iter().zip(batches).all(
                        |((topic_id, partition, _, count), batch)| {
                            *topic_id == batch.topic_id
                                && *partition == batch.partition
                                && *count == batch.record_count
                        },
                    );
                if !same {
                    return refuse(ApplyError::DuplicateMismatch {
                        producer_id: tag.producer_id,
                        sequence: tag.sequence,
                    });
                }
                return (
                    original.batches.iter().map(|b| Ok(b.2)).collect(),
                    Some(original.timestamp_ms),
                );
            }
            let expected = producer.next_sequence();
            if tag.sequence != expected {
                return refuse(ApplyError::OutOfOrderSequence {
                    producer_id: tag.producer_id,
                    expected,
                    sequence: tag.sequence,
                });
            }
        }
        if let Some(expected) = guard.expected_next_offset {
            let [batch] = batches else {
                return refuse(ApplyError::BadConditionalAppend(batches.len()));
            };
            let actual = match self
                .topic_by_id(batch.topic_id)
                .and_then(|topic| topic.partitions.get(batch.partition as usize))
            {
                Some(partition) => partition.high_watermark,
                None => return (vec![self.commit_batch(segment, batch)], None),
            };
            if actual != expected {
                return refuse(ApplyError::OffsetMismatch {
                    partition: batch.partition,
                    expected,
                    actual,
                });
            }
        }
        // All or none: a batch whose topic or partition is gone refuses the request.
        for batch in batches {
            let exists = self
                .topic_by_id(batch.topic_id)
                .map(|topic| (batch.partition as usize) < topic.partitions.len());
            match exists {
                Some(true) => {}
                Some(false) => {
                    let partitions = self
                        .topic_by_id(batch.topic_id)
                        .map_or(0, |topic| topic.partitions.len() as u32);
                    return refuse(ApplyError::UnknownPartition {
                        partition: batch.partition,
                        partitions,
                    });
                }
                None => return refuse(ApplyError::UnknownTopicId(batch.topic_id)),
            }
        }
        let results: Vec<Result<u64, ApplyError>> = batches
            .iter()
            .map(|batch| self.commit_batch(segment, batch))
            .collect();
        if let Some(tag) = &guard.producer
            && results.iter().all(Result::is_ok)
        {
            let produced = Produced {
                sequence: tag.sequence,
                timestamp_ms: guard.timestamp_ms,
                batches: batches
                    .iter()
                    .zip(&results)
                    .map(|(batch, base)| {
                        (
                            batch.topic_id,
                            batch.partition,
                            *base.as_ref().expect("all committed"),
                            batch.record_count,
                        )
                    })
                    .collect(),
            };
            let producer = self
                .producers
                .get_mut(&tag.producer_id)
                .expect("checked above");
            producer.last_seen_ms = producer.last_seen_ms.max(at_ms);
            producer.window.push_back(produced);
            let mut remembered: usize = producer.window.iter().map(|p| p.batches.len()).sum();
            while producer.window.len() > PRODUCER_WINDOW
                || (producer.window.len() > 1 && remembered > MAX_WINDOW_BATCHES)
            {
                if let Some(dropped) = producer.window.pop_front() {
                    remembered -= dropped.batches.len();
                }
            }
        }
        (results, None)
    }
}
