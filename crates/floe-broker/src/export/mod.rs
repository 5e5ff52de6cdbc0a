//! Continuous Parquet export (ADR 0008).
//!
//! The broker that runs a partition's jobs exports it: from the partition's export cursor
//! it reads committed batches, cuts them into files (at `export.parquet.target.file.bytes`
//! of records, at each change of UTC hour, and at the high watermark once the oldest record
//! waiting is `export.parquet.max.delay.ms` old), and writes each file in three steps:
//! `BeginExport` records its offset range in the sequencer, the file is PUT under a key
//! made of that range, `CommitExport` moves the cursor past it. A broker that dies between
//! the steps leaves the range recorded, so the next exporter writes exactly that range to
//! exactly that key: no offset is lost and none lands in two files.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use floe_core::{JsonSchema, Record, TopicConfig, TopicId, ValueFormat};
use floe_export::{FileSpec, JsonColumns, file_key, hour_of, write_file};
use floe_sequencer::{
    BatchLocation, Command, ExportRange, ExportWritten, PartitionState, SequencerError,
};
use floe_storage::{ReadCause, S3Options, StoreUrl, open_store_with};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::Broker;
use crate::error::BrokerError;

/// Files one partition writes per pass before the next partition gets its turn.
const FILES_PER_PASS: usize = 16;
/// Batches looked at for one file (a file of tiny batches is cut here).
const MAX_BATCHES_PER_FILE: usize = 100_000;
/// What one decoded record costs beyond its payload, for the memory bound.
const RECORD_OVERHEAD: usize = 96;
/// Batches read ahead of the one being cut into files.
const READ_AHEAD: usize = 8;
/// Bound on one PUT of a file.
const PUT_TIMEOUT: Duration = Duration::from_secs(120);

type TopicCounters = Family<[(&'static str, String); 1], Counter>;

/// The exporter's shared parts: destinations opened so far and the counters.
#[derive(Debug, Default)]
pub(crate) struct Exporter {
    /// S3 settings for `s3://` destinations.
    s3: S3Options,
    destinations: parking_lot::Mutex<HashMap<String, Destination>>,
    files: TopicCounters,
    bytes: TopicCounters,
}

#[derive(Debug, Clone)]
struct Destination {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl Exporter {
    pub(crate) fn new(s3: S3Options) -> Self {
        Self {
            s3,
            ..Self::default()
        }
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_export_files",
            "Parquet files exported, by topic",
            self.files.clone(),
        );
        registry.register(
            "floe_export_bytes",
            "Parquet bytes exported, by topic",
            self.bytes.clone(),
        );
    }
}

/// What one export step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A file was written (or a range without records passed).
    Wrote,
    /// Records wait for more data or for `max.delay.ms`.
    Waiting,
    /// Nothing to export, or the partition is not this broker's to export.
    Idle,
}

/// A partition's export as one broker's replica sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionExport {
    pub partition: u32,
    /// Every offset below this is exported.
    pub cursor: u64,
    pub high_watermark: u64,
    pub lag_records: u64,
    /// How long the oldest record not yet exported has been in the log (by its object's
    /// creation), in seconds.
    pub lag_seconds: f64,
    /// A file begun and not yet committed: `[from, end)`.
    pub pending: Option<[u64; 2]>,
    pub files: u64,
    pub bytes: u64,
    pub records: u64,
    /// The broker exporting it.
    pub owner: Option<String>,
    pub last_error: Option<ExportErrorNote>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportErrorNote {
    pub at_ms: i64,
    pub message: String,
}

/// A topic's export: its settings and each partition's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportStatus {
    pub topic: String,
    pub enabled: bool,
    /// Where files go.
    pub path: String,
    pub value_format: ValueFormat,
    /// The JSON columns: the configured schema, or the one inferred so far.
    pub schema: Option<JsonSchema>,
    pub partitions: Vec<PartitionExport>,
}

/// What the state says about one partition, copied out under the read lock.
struct Planned {
    topic: String,
    config: TopicConfig,
    schema: Option<JsonSchema>,
    from: u64,
    /// Offsets up to here may be exported; a pending range must end exactly here.
    limit: u64,
    pending: bool,
    batches: Vec<(u64, BatchLocation)>,
}

/// The lag of a partition's export: records, and seconds since the oldest record waiting
/// was written (its object's creation).
fn lag(partition: &PartitionState, now_ms: i64) -> (u64, f64) {
    let next = partition.export_next();
    let records = partition.high_watermark.saturating_sub(next);
    let seconds = partition
        .batches_from(next)
        .next()
        .filter(|_| records > 0)
        .map_or(0.0, |(_, location)| {
            (now_ms - location.segment.created_ms()).max(0) as f64 / 1000.0
        });
    (records, seconds)
}

/// The destination's display form: the configured URL, or the cluster store's `export/`.
fn display_path(config: &TopicConfig) -> String {
    config
        .export_path
        .clone()
        .unwrap_or_else(|| "<cluster store>/export".to_owned())
}

impl Broker {
    /// The export settings and progress of a topic.
    pub fn export_status(&self, name: &str) -> Result<ExportStatus, BrokerError> {
        let now = self.inner.clock.now_ms();
        self.inner.sequencer.read(|state| {
            let topic = state
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))?;
            let partitions = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, partition)| {
                    let (lag_records, lag_seconds) = lag(partition, now);
                    let cursor = partition.export.clone().unwrap_or_default();
                    PartitionExport {
                        partition: index as u32,
                        cursor: partition.export_next(),
                        high_watermark: partition.high_watermark,
                        lag_records,
                        lag_seconds,
                        pending: cursor.pending.map(|range| [range.from, range.end]),
                        files: cursor.files,
                        bytes: cursor.bytes,
                        records: cursor.records,
                        owner: partition.owner.clone(),
                        last_error: cursor
                            .last_error
                            .map(|(at_ms, message)| ExportErrorNote { at_ms, message }),
                    }
                })
                .collect();
            Ok(ExportStatus {
                topic: topic.name.clone(),
                enabled: topic.config.export_enabled,
                path: display_path(&topic.config),
                value_format: topic.config.export_value_format,
                schema: topic
                    .config
                    .export_value_schema
                    .clone()
                    .or_else(|| topic.export_schema.clone()),
                partitions,
            })
        })
    }

    fn exporter(&self) -> &Exporter {
        &self.inner.exporter
    }

    /// The store and key prefix files of a topic go to.
    fn destination(&self, config: &TopicConfig) -> Result<Destination, BrokerError> {
        let Some(url) = &config.export_path else {
            return Ok(Destination {
                store: Arc::clone(self.inner.store.object_store()),
                prefix: self.inner.store.prefix().clone().join("export"),
            });
        };
        let exporter = self.exporter();
        if let Some(destination) = exporter.destinations.lock().get(url) {
            return Ok(destination.clone());
        }
        let parsed = StoreUrl::parse(url)?;
        let (store, prefix) = open_store_with(&parsed, &exporter.s3, false)?;
        let destination = Destination { store, prefix };
        exporter
            .destinations
            .lock()
            .insert(url.clone(), destination.clone());
        Ok(destination)
    }

    /// Exports the partitions this broker runs jobs for, a few files each per pass.
    async fn export_partitions(&self, stop: &watch::Receiver<bool>) {
        let work: Vec<(TopicId, u32)> = self.inner.sequencer.read(|state| {
            self.job_partitions(state)
                .filter(|(topic, _, partition)| topic.export_due(partition))
                .map(|(topic, index, _)| (topic.id, index))
                .collect()
        });
        for (topic_id, partition) in work {
            for _ in 0..FILES_PER_PASS {
                if *stop.borrow() {
                    return;
                }
                self.yield_to_produce().await;
                match self.export_step(topic_id, partition).await {
                    Ok(Step::Wrote) => continue,
                    Ok(Step::Waiting | Step::Idle) => break,
                    Err(error) => {
                        self.inner.job_counters.job_errors.inc();
                        tracing::warn!(%topic_id, partition, %error, "export failed; the cursor stays");
                        self.note_export_error(topic_id, partition, &error.to_string())
                            .await;
                        break;
                    }
                }
            }
        }
    }

    /// Records an export error in the state, once per distinct message.
    async fn note_export_error(&self, topic_id: TopicId, partition: u32, message: &str) {
        let known = self.inner.sequencer.read(|state| {
            state
                .topic_by_id(topic_id)
                .and_then(|topic| topic.partitions.get(partition as usize))
                .and_then(|partition| partition.export.as_ref())
                .and_then(|cursor| cursor.last_error.as_ref())
                .is_some_and(|(_, known)| message.starts_with(known.as_str()))
        });
        if known {
            return;
        }
        let command = Command::ExportFailed {
            topic_id,
            partition,
            error: message.to_owned(),
            at_ms: self.inner.clock.now_ms(),
        };
        if let Err(error) = self.inner.sequencer.submit(command).await {
            tracing::debug!(%error, "could not note the export error");
        }
    }

    fn plan_export(&self, topic_id: TopicId, partition: u32) -> Option<Planned> {
        self.inner.sequencer.read(|state| {
            let topic = state.topic_by_id(topic_id)?;
            let state_partition = topic.partitions.get(partition as usize)?;
            let pending = state_partition.export_pending();
            // A begun file is finished even after export was disabled: retention and
            // compaction wait for it.
            if !(topic.config.export_enabled || pending.is_some())
                || !self.runs_jobs_for(state_partition)
            {
                return None;
            }
            let (from, limit) = match pending {
                Some(range) => (range.from, range.end),
                None => (
                    state_partition.export_next(),
                    state_partition.high_watermark,
                ),
            };
            if from >= limit {
                return None;
            }
            let batches = state_partition
                .batches_from(from)
                .take_while(|(base, _)| *base < limit)
                // A begun range is read whole (it was cut within this bound).
                .take(if pending.is_some() {
                    usize::MAX
                } else {
                    MAX_BATCHES_PER_FILE
                })
                .map(|(base, location)| (base, *location))
                .collect();
            Some(Planned {
                topic: topic.name.clone(),
                config: topic.config.clone(),
                schema: topic.export_schema.clone(),
                from,
                limit,
                pending: pending.is_some(),
                batches,
            })
        })
    }

    /// Writes the partition's next file, if one is due.
    async fn export_step(&self, topic_id: TopicId, partition: u32) -> Result<Step, BrokerError> {
        let Some(plan) = self.plan_export(topic_id, partition) else {
            return Ok(Step::Idle);
        };
        let config = &plan.config;
        let now = self.inner.clock.now_ms();
        if !plan.pending && self.tail_can_wait(&plan, now) {
            return Ok(Step::Waiting);
        }
        // Records of one file: cut at the size target and at each change of UTC hour,
        // unless a begun range is being written again, which must be exactly that range.
        let target = usize::try_from(config.export_target_file_bytes).unwrap_or(usize::MAX);
        let mut records: Vec<(u64, Record)> = Vec::new();
        let mut held = 0usize;
        let mut read = 0u64;
        let mut cut = None;
        let mut hour = None;
        // Batches are read a few ahead (a cut may leave the last few unused).
        let mut reads = futures::stream::iter(plan.batches.iter().copied())
            .map(|(base, location)| async move {
                let batch = self
                    .inner
                    .reader
                    .read_batch(base, location, ReadCause::Background)
                    .await;
                (location.length, batch)
            })
            .buffered(READ_AHEAD);
        'batches: while let Some((length, batch)) = reads.next().await {
            let batch = batch?;
            read += u64::from(length);
            for (offset, record) in batch {
                if offset < plan.from {
                    continue;
                }
                if offset >= plan.limit {
                    break 'batches;
                }
                if !plan.pending {
                    let this_hour = hour_of(record.timestamp_ms);
                    if hour.is_some_and(|hour| hour != this_hour) {
                        cut = Some(offset);
                        break 'batches;
                    }
                    hour = Some(this_hour);
                }
                held += record.payload_size() + RECORD_OVERHEAD;
                records.push((offset, record));
                if !plan.pending && held >= target {
                    cut = Some(offset + 1);
                    break 'batches;
                }
            }
        }
        self.pace(read).await;
        let covered_end = plan
            .batches
            .last()
            .map_or(plan.from, |(base, location)| {
                PartitionState::batch_end(*base, location)
            })
            .min(plan.limit);
        let end = match cut {
            Some(end) => end,
            None if plan.pending => plan.limit,
            None => {
                // The tail: written once its oldest record has waited max.delay.ms.
                let oldest = plan
                    .batches
                    .first()
                    .map_or(now, |(_, location)| location.segment.created_ms());
                if covered_end >= plan.limit && now - oldest < config.export_max_delay_ms {
                    return Ok(Step::Waiting);
                }
                covered_end
            }
        };
        let range = ExportRange {
            from: plan.from,
            end,
        };
        if records.is_empty() {
            if plan.pending {
                return Err(BrokerError::Corrupt(format!(
                    "export of {}/{partition}: pending offsets {}..{} hold no records",
                    plan.topic, range.from, range.end
                )));
            }
            // Offsets compaction emptied: the cursor passes them without a file.
            let command = Command::CommitExport {
                topic_id,
                partition,
                range,
                written: ExportWritten::default(),
                at_ms: now,
            };
            return self.submit_export(command).await;
        }
        let json = match (&config.export_value_schema, config.export_value_format) {
            (Some(schema), ValueFormat::Json) => JsonColumns::Given(schema.clone()),
            _ => JsonColumns::Inferred(plan.schema.clone()),
        };
        let inferred = matches!(json, JsonColumns::Inferred(_))
            && config.export_value_format == ValueFormat::Json;
        let spec = FileSpec {
            topic: plan.topic.clone(),
            partition,
            value_format: config.export_value_format,
            json,
        };
        let first_timestamp = records[0].1.timestamp_ms;
        let file = crate::jobs::cpu::run(move || write_file(&spec, &records))
            .await
            .map_err(|error| BrokerError::Corrupt(format!("export task: {error}")))?
            .map_err(|error| BrokerError::Corrupt(format!("parquet: {error}")))?;
        if !plan.pending {
            let begin = Command::BeginExport {
                topic_id,
                partition,
                range,
                schema: if inferred { file.schema.clone() } else { None },
                at_ms: now,
            };
            if self.submit_export(begin).await? == Step::Idle {
                return Ok(Step::Idle);
            }
        }
        let destination = self.destination(config)?;
        let key = file_key(
            &plan.topic,
            partition,
            first_timestamp,
            file.first_offset,
            file.last_offset,
        );
        let path = Path::parse(format!("{}/{key}", destination.prefix))
            .or_else(|_| Path::parse(&key))
            .map_err(|error| BrokerError::InvalidRequest(error.to_string()))?;
        let length = file.bytes.len() as u64;
        self.pace(length).await;
        let put = destination
            .store
            .put(&path, PutPayload::from(file.bytes.clone()));
        match tokio::time::timeout(PUT_TIMEOUT, put).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                return Err(BrokerError::Unavailable(format!(
                    "writing {path} to {}: {error}",
                    display_path(config)
                )));
            }
            Err(_) => {
                return Err(BrokerError::Unavailable(format!(
                    "writing {path} to {} took over {PUT_TIMEOUT:?}",
                    display_path(config)
                )));
            }
        }
        let commit = Command::CommitExport {
            topic_id,
            partition,
            range,
            written: ExportWritten {
                files: 1,
                records: file.rows,
                bytes: length,
            },
            at_ms: self.inner.clock.now_ms(),
        };
        let step = self.submit_export(commit).await?;
        if step == Step::Wrote {
            let labels = [("topic", plan.topic.clone())];
            self.exporter().files.get_or_create(&labels).inc();
            self.exporter().bytes.get_or_create(&labels).inc_by(length);
            tracing::debug!(
                topic = %plan.topic, partition, from = range.from, end = range.end,
                rows = file.rows, bytes = length, %path, "exported"
            );
        }
        Ok(step)
    }

    /// Whether the index alone shows the partition's unexported records are a tail that
    /// may wait for `max.delay.ms`: all of it read, under the target size by stored bytes,
    /// in one hour by the batches' timestamps, and younger than the delay. Saves reading
    /// the tail on every pass; when it guesses wrong (compressed batches, out-of-order
    /// timestamps), the file is cut correctly once the delay has passed.
    fn tail_can_wait(&self, plan: &Planned, now: i64) -> bool {
        let Some((_, first)) = plan.batches.first() else {
            return false;
        };
        let (last_base, last) = plan.batches[plan.batches.len() - 1];
        if PartitionState::batch_end(last_base, &last) < plan.limit
            || now - first.segment.created_ms() >= plan.config.export_max_delay_ms
        {
            return false;
        }
        let hour = hour_of(first.first_timestamp);
        let stored: u64 = plan
            .batches
            .iter()
            .map(|(_, location)| u64::from(location.length))
            .sum();
        stored < plan.config.export_target_file_bytes
            && plan.batches.iter().all(|(_, location)| {
                hour_of(location.first_timestamp) == hour && hour_of(location.max_timestamp) == hour
            })
    }

    /// Submits an export step: refused means another broker moved the cursor (this one is
    /// no longer the partition's exporter, or it raced a re-run), which is not an error.
    async fn submit_export(&self, command: Command) -> Result<Step, BrokerError> {
        match self.inner.sequencer.submit(command).await {
            Ok(_) => Ok(Step::Wrote),
            Err(SequencerError::Rejected(error)) => {
                tracing::debug!(%error, "export step refused; the cursor moved elsewhere");
                Ok(Step::Idle)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Exports until `stop` turns true, a pass every `interval`.
pub(crate) async fn run(broker: Broker, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = ticks.tick() => {}
        }
        broker.export_partitions(&stop).await;
    }
}

/// `floe_export_lag_records` and `floe_export_lag_seconds` of the partitions this broker
/// exports (so a sum across brokers counts each partition once).
#[derive(Debug)]
pub(crate) struct ExportGauges {
    pub(crate) broker: Broker,
}

impl Collector for ExportGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.broker.inner.clock.now_ms();
        let lags: Vec<(String, String, u64, f64)> = self.broker.inner.sequencer.read(|state| {
            self.broker
                .job_partitions(state)
                .filter(|(topic, _, _)| topic.config.export_enabled)
                .map(|(topic, index, partition)| {
                    let (records, seconds) = lag(partition, now);
                    (topic.name.clone(), index.to_string(), records, seconds)
                })
                .collect()
        });
        // A family without samples is left out (see the group gauges).
        if lags.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "floe_export_lag_records",
            "Records of each exported partition not yet in Parquet",
            None,
            MetricType::Gauge,
        )?;
        for (topic, partition, records, _) in &lags {
            let labels = [("topic", topic.as_str()), ("partition", partition.as_str())];
            ConstGauge::new(*records).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "floe_export_lag_seconds",
            "Age of the oldest record of each exported partition not yet in Parquet",
            None,
            MetricType::Gauge,
        )?;
        for (topic, partition, _, seconds) in &lags {
            let labels = [("topic", topic.as_str()), ("partition", partition.as_str())];
            ConstGauge::new(*seconds).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
