//! Fetch: find the batches holding an offset, read and verify them, and return records
//! with absolute offsets; wait at the tail until a commit arrives.

use std::sync::Arc;
use std::time::Duration;

use floe_core::{MemoryBudget, Record, Reservation};
use floe_sequencer::{ClusterState, PartitionState};
use floe_storage::{ReadCause, StorageError};
use tokio::time::Instant;
use tracing::Instrument;

use crate::Broker;
use crate::error::BrokerError;
use crate::reader::{Wanted, decode_verified};

/// The most batches one fetch reads.
const MAX_BATCHES_PER_FETCH: usize = 64;

/// How far past its selection a fetch looks for more of the partition in the same segments,
/// so a miss reads ahead what the consumer's next fetch will want.
const READ_AHEAD_BATCHES: usize = 256;

/// How often a fetch waiting at the tail looks at the state even without a wake-up.
const RECHECK_WHILE_WAITING: Duration = Duration::from_secs(1);

/// How long a fetch waits for the state to stop naming an object that is gone from the
/// store before it gives up with the storage error.
const VANISHED_OBJECT_WAIT: Duration = Duration::from_secs(5);

/// A fetch of one partition from an offset.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The most records returned (at least one is returned when any is available).
    pub max_records: usize,
    /// Stop adding records once their payload reaches this many bytes; the first record is
    /// returned whatever its size, so a consumer can always make progress.
    pub max_bytes: usize,
    /// How long to wait at the tail for new records.
    pub wait: Duration,
    /// Move an out-of-range offset to the nearest end instead of failing.
    pub clamp: bool,
}

/// A record with its absolute offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: u64,
    pub record: Record,
}

#[derive(Debug, Clone)]
pub struct FetchResult {
    pub records: Vec<FetchedRecord>,
    /// The offset to fetch next.
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// The broker that owns the partition (keeps its tail warm), when one is assigned.
    pub owner: Option<String>,
}

/// Which offset an offsets lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose record has a timestamp at or after this one (ms).
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetLookup {
    pub offset: u64,
    /// The timestamp of the record at `offset`, for timestamp lookups that found one.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug)]
struct PartitionView {
    topic_id: floe_core::TopicId,
    log_start_offset: u64,
    high_watermark: u64,
    owner: Option<String>,
    batches: Vec<Wanted>,
}

impl Broker {
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResult, BrokerError> {
        self.fetch_reserving(request, None)
            .await
            .map(|(result, _)| result)
    }

    /// [`Broker::fetch`], with the bytes it reads reserved from `budget` (`max_bytes`)
    /// once there is something to read, so a fetch waiting at the tail holds none; the
    /// reservation comes back with the result, for the caller to hold while it encodes.
    pub async fn fetch_within(
        &self,
        request: FetchRequest,
        budget: &Arc<MemoryBudget>,
    ) -> Result<(FetchResult, Option<Reservation>), BrokerError> {
        self.fetch_reserving(request, Some(budget)).await
    }

    #[tracing::instrument(
        name = "fetch",
        skip_all,
        fields(
            topic = %request.topic,
            partition = request.partition,
            offset = request.offset,
            records = tracing::field::Empty,
        )
    )]
    async fn fetch_reserving(
        &self,
        request: FetchRequest,
        budget: Option<&Arc<MemoryBudget>>,
    ) -> Result<(FetchResult, Option<Reservation>), BrokerError> {
        let deadline = Instant::now() + request.wait;
        let mut applied = self.inner.sequencer.subscribe();
        // Waiting at the tail listens to this partition's commits only (subscribed once
        // the topic's id is known).
        let mut waiter: Option<crate::wakeups::Waiter> = None;
        let mut offset = request.offset;
        // The object a read found gone from the store, and until when to wait for the
        // state to move past it.
        let mut vanished: Option<(floe_core::SegmentId, Instant)> = None;
        // What ended the last wait, until the look after it says whether it found records.
        let mut woken: Option<crate::wakeups::Woken> = None;
        loop {
            // Mark the current version seen before reading, so a commit landing between the
            // read and the wait still wakes us.
            applied.borrow_and_update();
            if let Some(waiter) = waiter.as_mut() {
                waiter.mark_seen();
            }
            let looking = Instant::now();
            let view = self.inner.sequencer.read(|state| {
                let topic_id = state
                    .topic(&request.topic)
                    .map_or(floe_core::TopicId(0), |topic| topic.id);
                partition_of(state, &request.topic, request.partition).map(|partition| {
                    PartitionView {
                        topic_id,
                        log_start_offset: partition.log_start_offset,
                        high_watermark: partition.high_watermark,
                        owner: partition.owner.clone(),
                        batches: select_batches(
                            partition,
                            offset,
                            request.max_records,
                            request.max_bytes,
                        ),
                    }
                })
            })?;
            crate::metrics::observe(&self.inner.latency.fetch_index, looking.elapsed());
            if offset < view.log_start_offset || offset > view.high_watermark {
                if !request.clamp {
                    return Err(BrokerError::OffsetOutOfRange {
                        offset,
                        log_start_offset: view.log_start_offset,
                        high_watermark: view.high_watermark,
                    });
                }
                offset = offset.clamp(view.log_start_offset, view.high_watermark);
                continue;
            }
            if let Some((segment, until)) = vanished
                && view.batches.iter().any(|b| b.location.segment == segment)
            {
                // Compaction or retention replaced the object and the lifecycle deleted it
                // once its grace ran out, but this view (or this lagging replica) still
                // names it. Wait for the state to move on, then resolve the offset again:
                // to the replacement, or to a 416 below the new log start. Reading again
                // before that would only repeat the miss.
                match tokio::time::timeout_at(until, applied.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => return Err(BrokerError::Storage(StorageError::Missing { segment })),
                }
            }
            if offset < view.high_watermark {
                if let Some(cause) = woken.take() {
                    self.inner.latency.woken(cause, true).inc();
                }
                let reservation = budget
                    .map(|budget| budget.try_reserve(request.max_bytes))
                    .transpose()
                    .map_err(BrokerError::MemorySpent)?;
                let reading = Instant::now();
                let read = self
                    .read_records(
                        &view.batches,
                        offset,
                        request.max_records,
                        request.max_bytes,
                    )
                    .await;
                crate::metrics::observe(&self.inner.latency.fetch, reading.elapsed());
                let records = match read {
                    Ok(records) => records,
                    Err(BrokerError::Storage(error)) => {
                        let Some(segment) = error.missing_segment() else {
                            return Err(BrokerError::Storage(error));
                        };
                        let until = vanished.map_or_else(
                            || Instant::now() + VANISHED_OBJECT_WAIT,
                            |(_, until)| until,
                        );
                        tracing::debug!(
                            topic = %request.topic,
                            partition = request.partition,
                            offset,
                            segment = %segment,
                            "selected object vanished; waiting for the state to move on"
                        );
                        vanished = Some((segment, until));
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                // Compaction may leave offsets without records; a fetch that found none in
                // the batches it read moves past them.
                let next_offset = match (records.last(), view.batches.last()) {
                    (Some(record), _) => record.offset + 1,
                    (None, Some(last)) => PartitionState::batch_end(last.base, &last.location),
                    (None, None) => offset,
                };
                tracing::Span::current().record("records", records.len());
                let result = FetchResult {
                    records,
                    next_offset,
                    high_watermark: view.high_watermark,
                    log_start_offset: view.log_start_offset,
                    owner: view.owner,
                };
                return Ok((result, reservation));
            }
            // Nothing to read: the answer once the wait is over.
            let nothing = |view: PartitionView| {
                let result = FetchResult {
                    records: Vec::new(),
                    next_offset: offset,
                    high_watermark: view.high_watermark,
                    log_start_offset: view.log_start_offset,
                    owner: view.owner,
                };
                Ok((result, None))
            };
            if let Some(cause) = woken.take() {
                self.inner.latency.woken(cause, false).inc();
            }
            if Instant::now() >= deadline {
                return nothing(view);
            }
            let Some(waiter) = waiter
                .as_mut()
                .filter(|waiter| waiter.topic() == view.topic_id)
            else {
                // Listen first, then look again: a commit between the read above and the
                // subscription is not missed. (A topic deleted and created again under the
                // same name has a new id: listen to that one.)
                waiter = Some(
                    self.inner
                        .wakeups
                        .subscribe(view.topic_id, request.partition),
                );
                continue;
            };
            // Commits to this partition wake the wait; a look every second also covers a
            // replica that jumped ahead by installing a snapshot, which no commit announces.
            let next_look = deadline.min(Instant::now() + RECHECK_WHILE_WAITING);
            woken = match waiter.wait(next_look).await {
                Some(cause) => Some(cause),
                None if Instant::now() >= deadline => return nothing(view),
                None => Some(crate::wakeups::Woken::Recheck),
            };
        }
    }

    async fn read_records(
        &self,
        batches: &[Wanted],
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<FetchedRecord>, BrokerError> {
        let reading = Instant::now();
        let fetched = self
            .inner
            .reader
            .read_verified(batches, ReadCause::Fetch)
            .instrument(tracing::info_span!("read", batches = batches.len()))
            .await?;
        let latency = &self.inner.latency;
        crate::metrics::observe(&latency.fetch_read, reading.elapsed());
        let _decoding = crate::metrics::Timer::start(&latency.fetch_decode);
        let mut records = Vec::new();
        let mut bytes = 0usize;
        for (base, location, raw) in fetched {
            for (record_offset, record) in decode_verified(base, location, &raw)? {
                if record_offset < offset {
                    continue;
                }
                let size = record.payload_size();
                if records.len() >= max_records || (!records.is_empty() && bytes + size > max_bytes)
                {
                    return Ok(records);
                }
                bytes += size;
                records.push(FetchedRecord {
                    offset: record_offset,
                    record,
                });
            }
        }
        Ok(records)
    }

    /// Resolves earliest, latest or a timestamp to an offset. A lookup whose batch's
    /// object vanished under it (replaced by compaction or retention and deleted) waits
    /// for the state to move on and resolves again, as a fetch does; if the state never
    /// does within the bound, the answer is retryable, never an internal error.
    pub async fn lookup_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<OffsetLookup, BrokerError> {
        let until = Instant::now() + VANISHED_OBJECT_WAIT;
        let mut applied = self.inner.sequencer.subscribe();
        loop {
            applied.borrow_and_update();
            let error = match self.lookup_offset_once(topic, partition, spec).await {
                Err(BrokerError::Storage(error)) if error.missing_segment().is_some() => error,
                other => return other,
            };
            if tokio::time::timeout_at(until, applied.changed())
                .await
                .is_err()
            {
                tracing::warn!(%error, "offset lookup kept finding a deleted object");
                return Err(BrokerError::Unavailable(
                    "the partition is being rewritten; retry the lookup".into(),
                ));
            }
        }
    }

    async fn lookup_offset_once(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<OffsetLookup, BrokerError> {
        let (log_start, high_watermark, candidate) = self.inner.sequencer.read(|state| {
            partition_of(state, topic, partition).map(|p| {
                let candidate = match spec {
                    OffsetSpec::Timestamp(timestamp) => p
                        .first_batch_at_or_after(timestamp)
                        .map(|(base, loc)| (base, *loc)),
                    _ => None,
                };
                (p.log_start_offset, p.high_watermark, candidate)
            })
        })?;
        let timestamp = match spec {
            OffsetSpec::Earliest => {
                return Ok(OffsetLookup {
                    offset: log_start,
                    timestamp_ms: None,
                });
            }
            OffsetSpec::Latest => {
                return Ok(OffsetLookup {
                    offset: high_watermark,
                    timestamp_ms: None,
                });
            }
            OffsetSpec::Timestamp(timestamp) => timestamp,
        };
        let Some((base, location)) = candidate else {
            // No record that late yet: the answer is where the next record will go.
            return Ok(OffsetLookup {
                offset: high_watermark,
                timestamp_ms: None,
            });
        };
        let records = self
            .inner
            .reader
            .read_batch(base, location, ReadCause::Fetch)
            .await?;
        let found = records.iter().find(|(record_offset, record)| {
            record.timestamp_ms >= timestamp && *record_offset >= log_start
        });
        Ok(match found {
            Some((record_offset, record)) => OffsetLookup {
                offset: *record_offset,
                timestamp_ms: Some(record.timestamp_ms),
            },
            None => OffsetLookup {
                offset: PartitionState::batch_end(base, &location),
                timestamp_ms: None,
            },
        })
    }
}

fn partition_of<'a>(
    state: &'a ClusterState,
    topic: &str,
    partition: u32,
) -> Result<&'a PartitionState, BrokerError> {
    let topic_state = state
        .topic(topic)
        .ok_or_else(|| BrokerError::UnknownTopic(topic.to_owned()))?;
    topic_state
        .partitions
        .get(partition as usize)
        .ok_or_else(|| BrokerError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
            partitions: topic_state.partition_count(),
        })
}

/// The batches a fetch from `offset` needs: the one holding it and later ones until they
/// hold `max_records` records from `offset` on or their bytes cover `max_bytes`. Each
/// carries the end of the partition's bytes in its segment among the next few batches,
/// which a miss may read ahead to.
fn select_batches(
    partition: &PartitionState,
    offset: u64,
    max_records: usize,
    max_bytes: usize,
) -> Vec<Wanted> {
    let mut selected: Vec<Wanted> = Vec::new();
    let mut bytes = 0usize;
    let mut records = 0u64;
    let mut batches = partition.batches_from(offset);
    for (base, location) in batches.by_ref() {
        bytes += location.length as usize;
        records += (base + u64::from(location.record_count)).saturating_sub(offset.max(base));
        selected.push(Wanted {
            base,
            location: *location,
            read_ahead_to: location.byte_offset + u64::from(location.length),
        });
        let enough = records >= max_records as u64 || bytes >= max_bytes;
        if selected.len() >= MAX_BATCHES_PER_FETCH || enough {
            break;
        }
    }
    for (_, location) in batches.take(READ_AHEAD_BATCHES) {
        let end = location.byte_offset + u64::from(location.length);
        for batch in selected
            .iter_mut()
            .filter(|batch| batch.location.segment == location.segment)
        {
            batch.read_ahead_to = batch.read_ahead_to.max(end);
        }
    }
    selected
}
