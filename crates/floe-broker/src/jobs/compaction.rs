//! Compaction, run by a partition's owner, one run of neighbouring batches at a time:
//!
//! - **flushes**: the partition's batches in broker flushes (many partitions per object)
//!   older than `compaction_min_age` are rewritten into a per-partition object with batches
//!   merged up to `compaction_batch_bytes`, so flush objects die and index entries shrink;
//! - **merges**: `compaction_fan_in` neighbouring per-partition objects of one level become
//!   one of the next level (up to `compaction_target_bytes`), so a partition keeps a few
//!   objects per level and each byte is rewritten once per level;
//! - **keyed cleans** (`cleanup.policy=compact`): once the share of the log written since
//!   the last clean reaches `min.cleanable.dirty.ratio`, the partition from its log start is
//!   rewritten keeping only the newest record per key; tombstones older than
//!   `delete.retention.ms` go too. Flushes and merges of a compacted topic also keep only the
//!   newest record per key within their run.
//!
//! Records keep their offsets (compacted batches may have gaps) and the swap into the index
//! is one `ReplaceBatches` command, refused whole if the run changed meanwhile. A fetch
//! that read the old index entries still finds the old objects: they are deleted only after
//! the grace period.

use std::collections::HashMap;

use bytes::Bytes;
use floe_core::segment::SegmentBuilder;
use floe_core::{CleanupPolicy, Record, SegmentId, TopicConfig, TopicId, encode_batch_at};
use floe_sequencer::{
    BatchLocation, CLEANED_LEVEL, Command, FLUSH_LEVEL, OrdMap, PartitionState, Replacement,
    SegmentInfo, SequencerError,
};
use floe_storage::ReadCause;
use futures::StreamExt;
use object_store::PutPayload;
use tokio::sync::watch;

use super::JobOptions;
use crate::Broker;
use crate::error::BrokerError;

/// The most index entries one run replaces, which bounds the swap command's size.
const MAX_RUN_BATCHES: usize = 4096;

/// Compactions of one partition per pass, at most.
const RUNS_PER_PASS: usize = 3;

/// Batches read at once by a compaction.
const READ_CONCURRENCY: usize = 8;

/// What a decoded record costs beyond its key, value and headers.
const DECODED_RECORD_OVERHEAD: usize = 128;

/// Kinds of compaction (flush, merge, clean) of a partition that failed the same way
/// twice in a row: retrying would only repeat the failure, so planning skips them until
/// the broker restarts (the other kinds go on), and each parking is counted in
/// `floe_compactions_parked_total` and logged.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    failures: parking_lot::Mutex<HashMap<ParkKey, LastFailure>>,
}

/// A kind of compaction of one partition.
type ParkKey = (TopicId, u32, PlanKind);
/// The last failure's message, and whether it parked the key.
type LastFailure = (String, bool);

impl Parked {
    /// The kinds of compaction parked for a partition (planning skips them).
    pub(crate) fn kinds(&self, topic: TopicId, partition: u32) -> Vec<PlanKind> {
        self.failures
            .lock()
            .iter()
            .filter(|((t, p, _), (_, parked))| *t == topic && *p == partition && *parked)
            .map(|((_, _, kind), _)| *kind)
            .collect()
    }

    /// Records a failure; true when it parks this kind of compaction of the partition.
    pub(crate) fn failed(
        &self,
        topic: TopicId,
        partition: u32,
        kind: PlanKind,
        error: &str,
    ) -> bool {
        let mut failures = self.failures.lock();
        match failures.get_mut(&(topic, partition, kind)) {
            Some((last, parked)) if last == error && !*parked => {
                *parked = true;
                true
            }
            Some(entry) => {
                *entry = (error.to_owned(), false);
                false
            }
            None => {
                failures.insert((topic, partition, kind), (error.to_owned(), false));
                false
            }
        }
    }

    pub(crate) fn succeeded(&self, topic: TopicId, partition: u32, kind: PlanKind) {
        self.failures.lock().remove(&(topic, partition, kind));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PlanKind {
    Flush,
    Merge,
    Clean,
}

/// One compaction: the run of batches to rewrite and how.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub kind: PlanKind,
    pub run: Vec<(u64, BatchLocation)>,
    /// The level of the object written.
    pub level: u8,
    /// Keep only the newest record per key within the run.
    pub dedupe: bool,
    /// Drop tombstones older than this (ms); only when the run starts at the log start.
    pub drop_tombstones_before: Option<i64>,
}

/// Neighbouring batches of the partition in one object.
#[derive(Debug)]
struct Piece {
    start: usize,
    end: usize,
    level: u8,
    bytes: u64,
    /// Old enough to compact (always, for compaction's own objects).
    ripe: bool,
}

/// Chooses the next compaction of a partition, if any.
pub(crate) fn plan(
    partition: &PartitionState,
    segments: &OrdMap<SegmentId, SegmentInfo>,
    config: &TopicConfig,
    now_ms: i64,
    options: &JobOptions,
    parked: &[PlanKind],
) -> Option<Plan> {
    // On a compacted topic, compaction drops records: it stays below an enabled export's
    // cursor, so the export sees every record first.
    let export_floor = (config.cleanup_policy == CleanupPolicy::Compact)
        .then(|| partition.export_hold(config.export_enabled))
        .flatten();
    let batches: Vec<(u64, BatchLocation)> = partition
        .batches
        .iter()
        .take_while(|(base, location)| {
            export_floor.is_none_or(|floor| PartitionState::batch_end(**base, location) <= floor)
        })
        .map(|(base, location)| (*base, *location))
        .collect();
    let ripe_before = now_ms - options.compaction_min_age.as_millis() as i64;
    let mut pieces: Vec<Piece> = Vec::new();
    for (index, (_, location)) in batches.iter().enumerate() {
        match pieces.last_mut() {
            Some(piece) if batches[piece.start].1.segment == location.segment => {
                piece.end = index + 1;
                piece.bytes += u64::from(location.length);
            }
            _ => {
                let level = segments
                    .get(&location.segment)
                    .map_or(FLUSH_LEVEL, |info| info.level);
                pieces.push(Piece {
                    start: index,
                    end: index + 1,
                    level,
                    bytes: u64::from(location.length),
                    ripe: level != FLUSH_LEVEL || location.segment.created_ms() <= ripe_before,
                });
            }
        }
    }
    let target = options.compaction_target_bytes;
    // From piece `first`, the pieces that satisfy `fits`, within the size and entry caps.
    let take = |first: usize, fits: &dyn Fn(&Piece) -> bool| -> usize {
        let (mut bytes, mut entries, mut end) = (0u64, 0usize, first);
        for piece in pieces[first..].iter().take_while(|piece| fits(piece)) {
            let batches = piece.end - piece.start;
            if end > first && (bytes + piece.bytes > target || entries + batches > MAX_RUN_BATCHES)
            {
                break;
            }
            bytes += piece.bytes;
            entries += batches;
            end += 1;
        }
        end
    };
    let compact = config.cleanup_policy == CleanupPolicy::Compact;
    let make = |kind, pieces_range: std::ops::Range<usize>, level| {
        let (first, last) = (&pieces[pieces_range.start], &pieces[pieces_range.end - 1]);
        let from_log_start = first.start == 0;
        Plan {
            kind,
            run: batches[first.start..last.end].to_vec(),
            level,
            dedupe: compact,
            drop_tombstones_before: (compact && from_log_start)
                .then(|| now_ms.saturating_sub(config.delete_retention_ms)),
        }
    };

    if compact && !parked.contains(&PlanKind::Clean) {
        let end = take(0, &|piece| piece.ripe);
        let total: u64 = pieces[..end].iter().map(|piece| piece.bytes).sum();
        let dirty: u64 = pieces[..end]
            .iter()
            .filter(|piece| piece.level != CLEANED_LEVEL)
            .map(|piece| piece.bytes)
            .sum();
        let any_dirty = pieces[..end]
            .iter()
            .any(|piece| piece.level != CLEANED_LEVEL);
        if any_dirty && dirty as f64 >= config.min_cleanable_dirty_ratio * total as f64 {
            return Some(make(PlanKind::Clean, 0..end, CLEANED_LEVEL));
        }
    }
    let mut first = 0;
    while first < pieces.len() && !parked.contains(&PlanKind::Merge) {
        let level = pieces[first].level;
        let small = |piece: &Piece| piece.level == level && piece.bytes < target / 2;
        if level == FLUSH_LEVEL || level == CLEANED_LEVEL || !small(&pieces[first]) {
            first += 1;
            continue;
        }
        let end = take(first, &small);
        if end - first >= options.compaction_fan_in.max(2) {
            let next = level.saturating_add(1).min(CLEANED_LEVEL - 1);
            return Some(make(PlanKind::Merge, first..end, next));
        }
        first = end.max(first + 1);
    }
    // Flushes last: with data arriving there is always one, and merges must not starve.
    if parked.contains(&PlanKind::Flush) {
        return None;
    }
    let flush = |piece: &Piece| piece.level == FLUSH_LEVEL && piece.ripe;
    let first = pieces.iter().position(flush)?;
    let end = take(first, &flush);
    Some(make(PlanKind::Flush, first..end, FLUSH_LEVEL + 1))
}

/// The new object, as its parts, and its index entries, tiling `from..to` exactly.
pub(crate) fn rewrite(
    records: Vec<(u64, Record)>,
    span: std::ops::Range<u64>,
    place: (TopicId, u32),
    config: &TopicConfig,
    plan: &Plan,
    batch_bytes: usize,
) -> Result<(PutPayload, Vec<Replacement>), BrokerError> {
    let kept: Vec<(u64, Record)> = if plan.dedupe {
        let mut newest: HashMap<Bytes, u64> = HashMap::new();
        for (offset, record) in &records {
            if let Some(key) = &record.key {
                newest.insert(key.clone(), *offset);
            }
        }
        records
            .into_iter()
            .filter(|(offset, record)| match &record.key {
                None => true,
                Some(key) => {
                    let expired_tombstone = record.value.is_none()
                        && plan
                            .drop_tombstones_before
                            .is_some_and(|before| record.timestamp_ms < before);
                    newest.get(key) == Some(offset) && !expired_tombstone
                }
            })
            .collect()
    } else {
        records
    };

    // Cut the kept records into batches; each batch covers the offsets from its first
    // record (the run's start, for the first) up to the next batch's.
    let mut chunks: Vec<(u64, Vec<(u32, Record)>)> = vec![(span.start, Vec::new())];
    let mut chunk_bytes = 0usize;
    for (offset, record) in kept {
        let size = record.payload_size() + 24;
        let (start, members) = chunks.last().expect("one chunk at least");
        let too_far = offset - start >= u64::from(u32::MAX / 2);
        if !members.is_empty() && (chunk_bytes + size > batch_bytes || too_far) {
            chunks.push((offset, Vec::new()));
            chunk_bytes = 0;
        }
        let (start, members) = chunks.last_mut().expect("one chunk at least");
        let relative = u32::try_from(offset - *start)
            .map_err(|_| BrokerError::Corrupt("compaction run spans too many offsets".into()))?;
        members.push((relative, record));
        chunk_bytes += size;
    }
    let newest_timestamp = plan
        .run
        .iter()
        .map(|(_, location)| location.max_timestamp)
        .max()
        .unwrap_or_default();
    let mut builder = SegmentBuilder::new();
    let mut replacements = Vec::with_capacity(chunks.len());
    for (index, (start, members)) in chunks.iter().enumerate() {
        let end = chunks.get(index + 1).map_or(span.end, |(next, _)| *next);
        let offset_count = u32::try_from(end - start)
            .map_err(|_| BrokerError::Corrupt("compacted batch spans too many offsets".into()))?;
        if members.is_empty() {
            // Every record of the run was dropped: an entry with no bytes keeps the
            // offsets tiled.
            replacements.push(Replacement {
                base_offset: *start,
                byte_offset: 0,
                length: 0,
                offset_count,
                first_timestamp: newest_timestamp,
                max_timestamp: newest_timestamp,
                crc32c: 0,
            });
            continue;
        }
        let encoded =
            encode_batch_at(members, config.compression, config.message_timestamp_type)
                .map_err(|error| BrokerError::Corrupt(format!("compaction encode: {error}")))?;
        let first_timestamp = members[0].1.timestamp_ms;
        let max_timestamp = members
            .iter()
            .map(|(_, record)| record.timestamp_ms)
            .max()
            .unwrap_or(first_timestamp);
        let entry = builder.append_batch(
            place.0,
            place.1,
            encoded,
            offset_count,
            first_timestamp,
            max_timestamp,
        );
        replacements.push(Replacement {
            base_offset: *start,
            byte_offset: entry.byte_offset,
            length: entry.length,
            offset_count,
            first_timestamp,
            max_timestamp,
            crc32c: entry.crc32c,
        });
    }
    let (parts, _) = builder.finish_parts();
    Ok((PutPayload::from_iter(parts), replacements))
}

impl Broker {
    /// Runs at most one compaction for each partition this broker runs jobs for.
    pub(crate) async fn compact_partitions(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), BrokerError> {
        let work: Vec<(TopicId, u32)> = self.inner.sequencer.read(|state| {
            self.job_partitions(state)
                .filter(|(_, _, partition)| !partition.batches.is_empty())
                .map(|(topic, index, _)| (topic.id, index))
                .collect()
        });
        let options = &self.inner.job_options;
        // A few runs per partition per pass: a merge and the flushes behind it, say.
        let passes = work
            .iter()
            .flat_map(|job| std::iter::repeat_n(*job, RUNS_PER_PASS));
        for (topic_id, partition) in passes {
            if *stop.borrow() {
                break;
            }
            self.yield_to_produce().await;
            let now = self.inner.clock.now_ms();
            let parked = self.inner.parked.kinds(topic_id, partition);
            let planned = self.inner.sequencer.read(|state| {
                let topic = state.topic_by_id(topic_id)?;
                let partition_state = topic.partitions.get(partition as usize)?;
                if !self.runs_jobs_for(partition_state) {
                    return None;
                }
                plan(
                    partition_state,
                    state.segments(),
                    &topic.config,
                    now,
                    options,
                    &parked,
                )
                .map(|plan| (plan, topic.config.clone()))
            });
            let Some((plan, config)) = planned else {
                continue;
            };
            let kind = plan.kind;
            match self.compact(topic_id, partition, &config, plan).await {
                Ok(()) => self.inner.parked.succeeded(topic_id, partition, kind),
                Err(error) => {
                    self.inner.job_counters.job_errors.inc();
                    tracing::warn!(%topic_id, partition, %error, "compaction failed");
                    // Only failures that would repeat as they are park: a transient one
                    // (no leader during an election, a store timeout) is simply retried.
                    let deterministic =
                        matches!(error, BrokerError::RunTooLarge(_) | BrokerError::Corrupt(_));
                    if deterministic
                        && self
                            .inner
                            .parked
                            .failed(topic_id, partition, kind, &error.to_string())
                    {
                        self.inner.job_counters.compactions_parked.inc();
                        tracing::error!(
                            %topic_id, partition, ?kind, %error,
                            "compaction failed the same way twice; this kind is parked for the partition until the broker restarts"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Where a run whose first `read` batches reached the memory limit may end and still
    /// make progress, or `None` when it cannot: a flush may end at any batch (the rest
    /// is the next flush's); a merge only after whole pieces, at least two.
    fn cut_run(&self, plan: &Plan, read: usize) -> Option<usize> {
        let read = read.max(1);
        match plan.kind {
            PlanKind::Flush => Some(read),
            PlanKind::Merge => {
                let segment_at = |index: usize| plan.run[index].1.segment;
                // A piece ends where the next batch lives in another object.
                let mut whole_pieces = 0;
                let mut end = 0;
                for index in 0..read {
                    let piece_ends =
                        index + 1 == plan.run.len() || segment_at(index + 1) != segment_at(index);
                    if piece_ends {
                        whole_pieces += 1;
                        end = index + 1;
                    }
                }
                (whole_pieces >= 2).then_some(end)
            }
            // Never cut (see `compact`).
            PlanKind::Clean => Some(plan.run.len()),
        }
    }

    async fn compact(
        &self,
        topic_id: TopicId,
        partition: u32,
        config: &TopicConfig,
        plan: Plan,
    ) -> Result<(), BrokerError> {
        let counters = &self.inner.job_counters;
        let mut plan = plan;
        // Decoded records are what a compaction holds in memory, and a compressible topic
        // decodes to many times its stored size: stop reading once the decoded run reaches
        // the limit and compact the prefix read so far (a valid run of its own; the rest
        // is the next pass's).
        let limit = self.inner.job_options.compaction_memory_bytes;
        let mut inputs: Vec<Vec<(u64, Record)>> = Vec::with_capacity(plan.run.len());
        let mut decoded = 0usize;
        {
            // Each batch is paced as it is read: a run cut at the memory limit pays only for
            // what it read (the whole plan was paid for up front before), and the reads
            // spread over the run's share of `jobs.bytes_per_second` rather than following
            // one wait for all of it.
            let mut reads = futures::stream::iter(plan.run.iter().copied())
                .map(|(base, location)| async move {
                    self.pace(u64::from(location.length)).await;
                    self.inner
                        .reader
                        .read_batch(base, location, ReadCause::Background)
                        .await
                })
                .buffered(READ_CONCURRENCY);
            while let Some(batch) = reads.next().await {
                let batch = batch?;
                decoded += batch
                    .iter()
                    .map(|(_, record)| record.payload_size() + DECODED_RECORD_OVERHEAD)
                    .sum::<usize>();
                inputs.push(batch);
                // A keyed clean is not cut: its run starts at the log start and a cut
                // inside the cleaned head would stop cleaning for good (ADR 0003).
                if decoded >= limit && plan.kind != PlanKind::Clean {
                    break;
                }
            }
        }
        if inputs.len() < plan.run.len() {
            let keep = self.cut_run(&plan, inputs.len());
            let Some(keep) = keep else {
                return Err(BrokerError::RunTooLarge(format!(
                    "a {:?} run of {} batches decodes past jobs.compaction_memory_bytes = \
                     {limit} before it can make progress",
                    plan.kind,
                    plan.run.len()
                )));
            };
            tracing::debug!(
                %topic_id, partition, decoded, limit,
                batches = keep, of = plan.run.len(),
                "compaction run cut at the memory limit"
            );
            plan.run.truncate(keep);
            inputs.truncate(keep);
        }
        let bytes_in: u64 = plan.run.iter().map(|(_, l)| u64::from(l.length)).sum();
        counters.compaction_bytes_read.inc_by(bytes_in);
        let (first_base, _) = plan.run[0];
        let (last_base, last) = plan.run[plan.run.len() - 1];
        let span = first_base..PartitionState::batch_end(last_base, &last);
        let batch_bytes = self.inner.job_options.compaction_batch_bytes;
        let (config_owned, plan_owned) = (config.clone(), plan.clone());
        let (payload, batches) = super::cpu::run(move || {
            let records = inputs.into_iter().flatten().collect();
            rewrite(
                records,
                span,
                (topic_id, partition),
                &config_owned,
                &plan_owned,
                batch_bytes,
            )
        })
        .await
        .map_err(|error| BrokerError::Corrupt(format!("compaction task: {error}")))??;
        let written = payload.content_length() as u64;
        self.pace(written).await;
        let segment = SegmentId::generate();
        self.inner.store.upload(segment, &payload).await?;
        counters.compaction_bytes_written.inc_by(written);
        let command = Command::ReplaceBatches {
            at_ms: self.inner.clock.now_ms(),
            topic_id,
            partition,
            segment,
            level: plan.level,
            replaced: plan
                .run
                .iter()
                .map(|(base, location)| (*base, location.segment))
                .collect(),
            batches,
        };
        match self.inner.sequencer.submit(command).await {
            Ok(_) => {
                let counter = match plan.kind {
                    PlanKind::Flush => &counters.compactions_flush,
                    PlanKind::Merge => &counters.compactions_merge,
                    PlanKind::Clean => &counters.compactions_clean,
                };
                counter.inc();
                tracing::debug!(
                    %topic_id, partition, %segment, kind = ?plan.kind,
                    replaced = plan.run.len(), bytes_in, bytes_out = written,
                    "compacted"
                );
                Ok(())
            }
            Err(SequencerError::Rejected(error)) => {
                // Refused for good: the object can never be indexed, so it goes now.
                counters.compaction_conflicts.inc();
                tracing::debug!(%topic_id, partition, %error, "compaction swap refused");
                self.inner.store.delete_segment(segment).await?;
                Ok(())
            }
            // The outcome is unknown: the orphan sweep deletes the object if it did not land.
            Err(error) => Err(error.into()),
        }
    }
}
