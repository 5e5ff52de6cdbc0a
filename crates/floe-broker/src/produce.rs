//! Produce: validate a request, pick partitions, encode one batch per partition, and wait
//! for the segment holding them to commit.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use floe_core::partitioner::partition_for_key;
use floe_core::{CleanupPolicy, Header, Record, TimestampType, TopicConfig, TopicId, encode_batch};
use tokio::time::Instant;

use crate::Broker;
use crate::error::BrokerError;
use crate::pipeline::{Conditions, PendingBatch};

/// A record as a producer sends it.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecord {
    /// An explicit partition; otherwise the key decides, or the sticky partition for
    /// records without a key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// The producer's timestamp (ms); the broker's clock when absent.
    pub timestamp_ms: Option<i64>,
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAck {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
}

#[derive(Debug)]
struct TopicView {
    id: TopicId,
    partitions: u32,
    config: TopicConfig,
}

/// What a produce request commits under (ADR 0010).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceConditions {
    /// An idempotent producer's id, epoch and request number: a retry of a committed
    /// request is answered with its original offsets and writes nothing.
    pub producer: Option<floe_sequencer::ProducerTag>,
    /// Commit only if the partition's next offset is this (all records must go to one
    /// partition).
    pub expected_next_offset: Option<u64>,
    /// The authenticated principal: a producer serves only the principal that
    /// initialised it (`None` without authentication).
    pub principal: Option<String>,
}

impl Broker {
    /// Appends records to a topic, all or nothing, and returns each record's partition,
    /// offset and timestamp in request order once they are durable.
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<RecordAck>, BrokerError> {
        self.produce_with(topic, records, ProduceConditions::default())
            .await
    }

    /// [`Broker::produce`] under `conditions`. Traced as `produce`, whose `segment` names
    /// the segment its batches went into (that segment's span, with its upload and commit,
    /// is a child of the first request in it).
    #[tracing::instrument(
        name = "produce",
        skip_all,
        fields(topic = topic, records = records.len(), segment = tracing::field::Empty)
    )]
    pub async fn produce_with(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        conditions: ProduceConditions,
    ) -> Result<Vec<RecordAck>, BrokerError> {
        let started = tokio::time::Instant::now();
        let result = self.produce_records(topic, records, conditions).await;
        crate::metrics::observe(&self.inner.latency.produce, started.elapsed());
        result
    }

    /// A new idempotent producer id at epoch 0, or, for `existing` (an id and its current
    /// epoch), the next epoch, which fences the previous one.
    pub async fn init_producer(
        &self,
        existing: Option<(u64, u16)>,
        principal: Option<String>,
    ) -> Result<(u64, u16), BrokerError> {
        self.check_guards_supported()?;
        let command = floe_sequencer::Command::InitProducer {
            existing,
            principal,
            at_ms: self.inner.clock.now_ms(),
        };
        match self.inner.sequencer.submit(command).await? {
            floe_sequencer::Outcome::ProducerInitialized { producer_id, epoch } => {
                Ok((producer_id, epoch))
            }
            other => Err(BrokerError::Corrupt(format!(
                "init producer answered {other:?}"
            ))),
        }
    }

    /// Guarded commits only once every live broker checks them: an older replica would
    /// index a retry's batches that the others skip.
    fn check_guards_supported(&self) -> Result<(), BrokerError> {
        let members = self.inner.sequencer.membership().members();
        if floe_sequencer::all_have(&members, "guards") {
            return Ok(());
        }
        Err(BrokerError::Unavailable(
            "idempotent producers and conditional appends wait until every broker of the \
             cluster runs a version that checks them (a rolling upgrade is in progress)"
                .into(),
        ))
    }

    async fn produce_records(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        conditions: ProduceConditions,
    ) -> Result<Vec<RecordAck>, BrokerError> {
        let arrived = Instant::now();
        if conditions.producer.is_some() || conditions.expected_next_offset.is_some() {
            self.check_guards_supported()?;
        }
        if records.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "a produce request needs at least one record".into(),
            ));
        }
        if records.len() > MAX_RECORDS_PER_REQUEST {
            return Err(BrokerError::InvalidRequest(format!(
                "a produce request carries at most {MAX_RECORDS_PER_REQUEST} records, not {}",
                records.len()
            )));
        }
        let view = self
            .inner
            .sequencer
            .read(|state| {
                state.topic(topic).map(|t| TopicView {
                    id: t.id,
                    partitions: t.partition_count(),
                    config: t.config.clone(),
                })
            })
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_owned()))?;

        let now = self.inner.clock.now_ms();
        let mut by_partition: BTreeMap<u32, Vec<(usize, bool, Record)>> = BTreeMap::new();
        // An idempotent request's keyless records go where its retries' will: to a
        // partition chosen by the producer and sequence, not by this broker's rotation.
        let mut sticky = conditions.producer.map(|tag| {
            let mixed = tag
                .producer_id
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(tag.sequence)
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((mixed >> 32) % u64::from(view.partitions)) as u32
        });
        for (index, record) in records.into_iter().enumerate() {
            let partition = self.choose_partition(topic, &view, &record, &mut sticky)?;
            // Whether this broker gives the record its time (a retry of an idempotent
            // request answers the first attempt's time instead).
            let assigned = matches!(
                (view.config.message_timestamp_type, record.timestamp_ms),
                (TimestampType::LogAppendTime, _) | (TimestampType::CreateTime, None)
            );
            let timestamp_ms = match (view.config.message_timestamp_type, record.timestamp_ms) {
                (TimestampType::LogAppendTime, _) | (TimestampType::CreateTime, None) => now,
                (TimestampType::CreateTime, Some(timestamp)) if timestamp >= 0 => {
                    view.config
                        .check_create_time(timestamp, now)
                        .map_err(|reason| BrokerError::InvalidTimestamp { index, reason })?;
                    timestamp
                }
                (TimestampType::CreateTime, Some(timestamp)) => {
                    return Err(BrokerError::InvalidRequest(format!(
                        "record {index} has negative timestamp {timestamp}"
                    )));
                }
            };
            if view.config.cleanup_policy == CleanupPolicy::Compact && record.key.is_none() {
                // Compaction keeps the newest record per key; a record without one has no
                // place in that log (Kafka refuses it too).
                return Err(BrokerError::InvalidRecord {
                    index,
                    reason: "has no key, and the topic's cleanup.policy is compact".into(),
                });
            }
            check_headers(index, &record.headers)?;
            let record = Record {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_ms,
            };
            let size = record.payload_size();
            if size > view.config.max_message_bytes as usize {
                return Err(BrokerError::RecordTooLarge {
                    index,
                    size,
                    limit: view.config.max_message_bytes,
                });
            }
            by_partition
                .entry(partition)
                .or_default()
                .push((index, assigned, record));
        }

        if by_partition.len() > crate::pipeline::MAX_SEGMENT_BATCHES {
            // One batch per partition, all committed together: a request must fit one
            // commit.
            return Err(BrokerError::TooManyPartitions {
                partitions: by_partition.len(),
                limit: crate::pipeline::MAX_SEGMENT_BATCHES,
            });
        }
        if conditions.producer.is_some()
            && by_partition.len() > floe_sequencer::MAX_IDEMPOTENT_BATCHES
        {
            return Err(BrokerError::TooManyPartitions {
                partitions: by_partition.len(),
                limit: floe_sequencer::MAX_IDEMPOTENT_BATCHES,
            });
        }
        if conditions.expected_next_offset.is_some() && by_partition.len() != 1 {
            return Err(BrokerError::InvalidRequest(
                "expected_next_offset needs every record in one partition: use the \
                 partition's produce route"
                    .into(),
            ));
        }
        let (batches, placements) = encode_batches(&view, by_partition)?;
        let fence = self.inner.sequencer.fence()?;
        let receiver = self.inner.pipeline.append(
            batches,
            fence,
            Conditions {
                producer: conditions.producer,
                expected_next_offset: conditions.expected_next_offset,
                timestamp_ms: now,
                principal: conditions.principal,
            },
        )?;
        let latency = &self.inner.latency;
        let joined = Instant::now();
        crate::metrics::observe(&latency.admit, joined.saturating_duration_since(arrived));
        let (reply, answered) = receiver.await.map_err(|_| BrokerError::ShuttingDown)?;
        crate::metrics::observe(
            &latency.in_segment,
            answered.saturating_duration_since(joined),
        );
        crate::metrics::observe(&latency.resume, answered.elapsed());
        let (base_offsets, repeated) = reply?;

        let total = placements.iter().map(|p| p.indexes.len()).sum();
        let mut acks = vec![
            RecordAck {
                partition: 0,
                offset: 0,
                timestamp_ms: 0
            };
            total
        ];
        for (placement, base_offset) in placements.iter().zip(base_offsets) {
            for (position, (index, assigned, timestamp_ms)) in placement.indexes.iter().enumerate()
            {
                acks[*index] = RecordAck {
                    partition: placement.partition,
                    offset: base_offset + position as u64,
                    timestamp_ms: match repeated {
                        Some(original) if *assigned => original,
                        _ => *timestamp_ms,
                    },
                };
            }
        }
        Ok(acks)
    }

    fn choose_partition(
        &self,
        topic: &str,
        view: &TopicView,
        record: &ProduceRecord,
        sticky: &mut Option<u32>,
    ) -> Result<u32, BrokerError> {
        if let Some(partition) = record.partition {
            if partition >= view.partitions {
                return Err(BrokerError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                    partitions: view.partitions,
                });
            }
            return Ok(partition);
        }
        if let Some(key) = &record.key {
            return Ok(partition_for_key(key, view.partitions));
        }
        // Records without key or partition stick to one partition per request, and
        // successive requests rotate through the partitions, as Kafka's sticky partitioner
        // rotates per batch.
        Ok(*sticky.get_or_insert_with(|| {
            self.inner.sticky_partition.fetch_add(1, Ordering::Relaxed) % view.partitions
        }))
    }
}

/// The most headers one record may carry, and the longest header name; both fit the
/// binary framing's 16-bit counts with room to spare.
const MAX_HEADERS: usize = 1024;
const MAX_HEADER_NAME_BYTES: usize = 1024;
/// The most records one produce request may carry.
pub const MAX_RECORDS_PER_REQUEST: usize = 100_000;

fn check_headers(index: usize, headers: &[Header]) -> Result<(), BrokerError> {
    if headers.len() > MAX_HEADERS {
        return Err(BrokerError::InvalidRequest(format!(
            "record {index} has {} headers; the limit is {MAX_HEADERS}",
            headers.len()
        )));
    }
    if let Some(header) = headers
        .iter()
        .find(|header| header.name.len() > MAX_HEADER_NAME_BYTES)
    {
        return Err(BrokerError::InvalidRequest(format!(
            "record {index} has a header name of {} bytes; the limit is {MAX_HEADER_NAME_BYTES}",
            header.name.len()
        )));
    }
    Ok(())
}

#[derive(Debug)]
struct Placement {
    partition: u32,
    /// Request index, whether this broker gave its time, and timestamp of each record, in
    /// batch order.
    indexes: Vec<(usize, bool, i64)>,
}

fn encode_batches(
    view: &TopicView,
    by_partition: BTreeMap<u32, Vec<(usize, bool, Record)>>,
) -> Result<(Vec<PendingBatch>, Vec<Placement>), BrokerError> {
    let mut batches = Vec::with_capacity(by_partition.len());
    let mut placements = Vec::with_capacity(by_partition.len());
    for (partition, indexed) in by_partition {
        let (indexes, records): (Vec<(usize, bool, i64)>, Vec<Record>) = indexed
            .into_iter()
            .map(|(index, assigned, record)| ((index, assigned, record.timestamp_ms), record))
            .unzip();
        let bytes = encode_batch(
            &records,
            view.config.compression,
            view.config.message_timestamp_type,
        )
        .map_err(|error| BrokerError::InvalidRequest(error.to_string()))?;
        let first_timestamp = records[0].timestamp_ms;
        let max_timestamp = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(first_timestamp);
        batches.push(PendingBatch {
            topic_id: view.id,
            partition,
            bytes,
            record_count: records.len() as u32,
            first_timestamp,
            max_timestamp,
        });
        placements.push(Placement { partition, indexes });
    }
    Ok((batches, placements))
}
