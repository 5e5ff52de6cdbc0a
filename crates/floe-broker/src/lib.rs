//! The engine of a floe broker: the produce pipeline (validate, encode, buffer, flush into
//! one segment, upload, commit, acknowledge), fetch (index lookup, ranged read, CRC check,
//! absolute offsets, long-poll) and topic administration.
//!
//! No HTTP here: the server crate maps requests onto [`Broker`] calls and [`BrokerError`]s
//! onto responses.

mod error;
mod export;
mod fetch;
mod groups;
mod jobs;
mod metrics;
mod pipeline;
mod prefetch;
mod produce;
mod reader;
mod topics;
mod wakeups;

use std::sync::Arc;
use std::time::Duration;

use floe_core::Clock;
use floe_core::settings::{self, InvalidSetting};
use floe_sequencer::Sequencer;
use floe_storage::{ReadCache, SegmentStore};
use serde::{Deserialize, Serialize};

pub use error::BrokerError;
pub use export::{ExportErrorNote, ExportStatus, PartitionExport};
pub use fetch::{FetchRequest, FetchResult, FetchedRecord, OffsetLookup, OffsetSpec};
pub use groups::{
    AssignedPartition, GroupDescription, GroupFetch, GroupOptions, GroupPartition, GroupPhase,
    GroupRead, GroupRecord, GroupSummary, JoinSpec, MemberSummary, MemberView, OffsetToCommit,
    ResetTarget,
};
pub use jobs::{JobOptions, JobStats, StoreFootprint};
pub use produce::{MAX_RECORDS_PER_REQUEST, ProduceConditions, ProduceRecord, RecordAck};
pub use topics::{PartitionInfo, TopicDescription};

use crate::pipeline::Pipeline;

/// Tuning of one broker's produce path: the `[broker]` section of `floe.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerOptions {
    /// This broker's id, unique among the live brokers of a cluster.
    pub id: String,
    /// Flush the open segment once it holds this many bytes.
    pub segment_max_bytes: usize,
    /// How long the open segment waits for more data before it is flushed. When unset:
    /// 2 ms on a local (`file://`, `memory://`) store, 100 ms on S3, where every flush is a
    /// billed PUT. Under load it is also the longest a segment gathers while an earlier one
    /// is still in flight, so it decides when uploads overlap (ADR 0011).
    #[serde(with = "humantime_serde")]
    pub linger: Option<Duration>,
    /// Seal the open segment as soon as no earlier segment is uploading or committing,
    /// instead of waiting out the linger (group commit: the batch grows with the load, and
    /// the linger stays the longest wait). See ADR 0011.
    pub flush_when_idle: bool,
    /// The shortest time between a seal and the next seal made because the pipeline went
    /// idle. When unset: 0 on a local store, the linger on S3, which keeps the linger's
    /// bound of one flush PUT per linger.
    #[serde(with = "humantime_serde")]
    pub min_flush_interval: Option<Duration>,
    /// Bytes accepted but not yet committed, across all segments, before produce is
    /// refused with `429` and `Retry-After`.
    pub max_buffered_bytes: usize,
    /// Segments uploading at once.
    pub max_inflight_uploads: usize,
    /// Topics the cluster may hold; creating one more answers `409 limit_reached`.
    pub max_topics: u64,
    /// Partitions the cluster may hold across its topics (each costs index and state
    /// memory on every broker); more answer `409 limit_reached`.
    pub max_partitions: u64,
    /// An idempotent producer idle this long is forgotten (Kafka's
    /// `producer.id.expiration.ms`); its next request gets `404 unknown_producer_id`.
    #[serde(with = "humantime_serde")]
    pub producer_id_expiration: Duration,
}

/// The linger of a local store when none is set: short enough that under load a second
/// upload starts before a slow one ends (ADR 0011, amendment of 2026-12-05).
const LOCAL_LINGER: Duration = Duration::from_millis(2);
/// The linger of a remote store when none is set: long enough that PUTs are counted per
/// broker and second rather than per request.
const REMOTE_LINGER: Duration = Duration::from_millis(100);

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            id: "broker-0".into(),
            segment_max_bytes: 8 * 1024 * 1024,
            linger: None,
            flush_when_idle: true,
            min_flush_interval: None,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_inflight_uploads: 4,
            max_topics: 10_000,
            max_partitions: 100_000,
            producer_id_expiration: Duration::from_secs(24 * 3600),
        }
    }
}

/// A request becomes one batch per partition, and a batch's length is a u32 in the
/// segment index: a segment stays far below that.
const MAX_SEGMENT_BYTES: usize = 1 << 30;

impl BrokerOptions {
    /// The flush window, with its default resolved for the store kind.
    pub fn linger_for(&self, store_is_local: bool) -> Duration {
        self.linger.unwrap_or(if store_is_local {
            LOCAL_LINGER
        } else {
            REMOTE_LINGER
        })
    }

    /// The shortest time between idle flushes, with its default resolved for the store
    /// kind: none locally, one linger on S3 (a flush there is a billed PUT).
    pub fn min_flush_interval_for(&self, store_is_local: bool) -> Duration {
        self.min_flush_interval.unwrap_or(if store_is_local {
            Duration::ZERO
        } else {
            self.linger_for(false)
        })
    }

    /// Refuses values the produce path cannot work with, naming the setting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let expiration = self.producer_id_expiration;
        if expiration < Duration::from_secs(60) || expiration > Duration::from_secs(365 * 86_400) {
            return Err(InvalidSetting::new(
                "producer_id_expiration",
                "must be between 1m and 365days: shorter forgets producers whose retries are \
                 still coming"
                    .to_owned(),
            ));
        }
        if self.id.is_empty() || self.id.contains('/') {
            return Err(InvalidSetting::new(
                "id",
                format!("{:?} must be non-empty and without '/'", self.id),
            ));
        }
        settings::within(
            "segment_max_bytes",
            self.segment_max_bytes,
            1,
            MAX_SEGMENT_BYTES,
        )?;
        settings::at_least("max_buffered_bytes", self.max_buffered_bytes, 1)?;
        settings::at_least("max_inflight_uploads", self.max_inflight_uploads, 1)?;
        settings::at_least("max_topics", self.max_topics, 1)?;
        settings::at_least("max_partitions", self.max_partitions, 1)
    }
}

/// A broker: stateless apart from buffers in flight; all durable state is in the sequencer
/// and the object store.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

#[derive(Debug)]
struct BrokerInner {
    options: BrokerOptions,
    job_options: JobOptions,
    group_options: GroupOptions,
    /// Soft state of the consumer groups this broker coordinates.
    groups: groups::Coordinator,
    sequencer: Sequencer,
    /// Where this broker's uploads go; reads go through `cache`.
    store: SegmentStore,
    cache: ReadCache,
    /// Reads batches back for fetch and compaction.
    reader: reader::SegmentReader,
    clock: Arc<dyn Clock>,
    pipeline: Pipeline,
    latency: metrics::LatencyMetrics,
    /// Wakes fetches waiting at a partition's tail when it is committed to.
    wakeups: Arc<wakeups::Wakeups>,
    sticky_partition: std::sync::atomic::AtomicU32,
    job_counters: Arc<jobs::JobCounters>,
    /// Partitions whose compaction is stopped after repeated identical failures.
    parked: jobs::compaction::Parked,
    /// Compaction's and export's byte budget, which yields to produce.
    background_pacer: jobs::Pacer,
    /// Produce's seal-to-answer delay, which sets that budget (and is exported with it).
    produce_delay: Arc<jobs::ProduceDelay>,
    /// Continuous Parquet export: destinations and counters.
    exporter: export::Exporter,
    jobs: parking_lot::Mutex<Option<BackgroundJobs>>,
    /// Exports the partitions this broker runs jobs for.
    export_task: parking_lot::Mutex<Option<BackgroundJobs>>,
    /// Expires group members and empty groups' offsets.
    group_ticker: parking_lot::Mutex<Option<BackgroundJobs>>,
}

#[derive(Debug)]
struct BackgroundJobs {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Assembles a [`Broker`] from its parts (SlateDB's builder style): the sequencer, the
/// store its uploads go to and the read cache its fetches read through are required;
/// options, background jobs and the clock have defaults.
#[derive(Debug)]
pub struct BrokerBuilder {
    options: BrokerOptions,
    jobs: JobOptions,
    groups: GroupOptions,
    sequencer: Sequencer,
    store: SegmentStore,
    cache: ReadCache,
    clock: Arc<dyn Clock>,
    failpoints: Failpoints,
    export_s3: floe_storage::S3Options,
}

impl BrokerBuilder {
    /// S3 settings for export destinations given as `s3://` URLs.
    pub fn export_s3(mut self, s3: floe_storage::S3Options) -> Self {
        self.export_s3 = s3;
        self
    }

    pub fn options(mut self, options: BrokerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn jobs(mut self, jobs: JobOptions) -> Self {
        self.jobs = jobs;
        self
    }

    pub fn groups(mut self, groups: GroupOptions) -> Self {
        self.groups = groups;
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Test-only faults (the `failpoints` feature; release builds leave it off).
    #[cfg(feature = "failpoints")]
    pub fn failpoints(mut self, failpoints: Failpoints) -> Self {
        self.failpoints = failpoints;
        self
    }

    /// Starts the produce pipeline and, when enabled, the background jobs. The broker
    /// keeps the tail of the partitions it owns warm: as their commits are applied, it
    /// fetches the new ranges it did not write itself.
    ///
    /// # Panics
    ///
    /// On options that fail [`BrokerOptions::validate`] or [`JobOptions::validate`]: the
    /// assembler validates configuration first, so this is a programming error.
    pub fn build(self) -> Broker {
        if let Err(invalid) = self
            .options
            .validate()
            .and(self.jobs.validate())
            .and(self.groups.validate())
        {
            panic!("broker built with invalid options: {invalid}");
        }
        let Self {
            options,
            jobs: job_options,
            groups: group_options,
            sequencer,
            store,
            cache,
            clock,
            failpoints,
            export_s3,
        } = self;
        let latency = metrics::LatencyMetrics::default();
        let produce_delay = Arc::new(jobs::ProduceDelay::new(
            job_options.bytes_per_second,
            job_options.min_bytes_per_second,
            // The assembler resolves it for the store kind; a broker built without it
            // (tests, embedders) gets the local store's.
            job_options.yield_delay_for(true),
        ));
        let pipeline = Pipeline::start(
            &options,
            sequencer.clone(),
            store.clone(),
            cache.clone(),
            failpoints,
            latency.clone(),
            Arc::clone(&produce_delay),
            Arc::clone(&clock),
        );
        let wakeups = wakeups::Wakeups::new();
        sequencer.observe(Arc::clone(&wakeups) as Arc<dyn floe_sequencer::ApplyObserver>);
        sequencer.observe(Arc::new(prefetch::TailPrefetcher::new(
            sequencer.membership().broker().to_owned(),
            cache.clone(),
        )));
        let broker = Broker {
            inner: Arc::new(BrokerInner {
                background_pacer: jobs::Pacer::yielding(Arc::clone(&produce_delay)),
                produce_delay,
                exporter: export::Exporter::new(export_s3),
                export_task: parking_lot::Mutex::new(None),
                options,
                job_options,
                group_options,
                groups: groups::Coordinator::new(clock.now_ms()),
                sequencer,
                store,
                reader: reader::SegmentReader::new(cache.clone()),
                cache,
                clock,
                pipeline,
                latency,
                wakeups,
                sticky_partition: std::sync::atomic::AtomicU32::new(rand::random()),
                job_counters: Arc::default(),
                parked: jobs::compaction::Parked::default(),
                jobs: parking_lot::Mutex::new(None),
                group_ticker: parking_lot::Mutex::new(None),
            }),
        };
        {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(groups::run_ticker(broker.clone(), stopped));
            *broker.inner.group_ticker.lock() = Some(BackgroundJobs { stop, task });
        }
        if broker.inner.job_options.enabled {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(jobs::run(broker.clone(), stopped));
            *broker.inner.jobs.lock() = Some(BackgroundJobs { stop, task });
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let interval = broker.inner.job_options.export_interval;
            let task = tokio::spawn(export::run(broker.clone(), interval, stopped));
            *broker.inner.export_task.lock() = Some(BackgroundJobs { stop, task });
        }
        broker
    }
}

/// Faults a test can ask a broker to commit; all off by default. Only the `failpoints`
/// feature lets anything turn them on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Failpoints {
    /// Abort the process after a segment is uploaded and before it is committed, leaving
    /// an orphan object behind.
    pub crash_after_upload: bool,
}

impl Broker {
    /// Starts assembling a broker that uploads to `store` and reads through `cache`.
    pub fn builder(sequencer: Sequencer, store: SegmentStore, cache: ReadCache) -> BrokerBuilder {
        BrokerBuilder {
            options: BrokerOptions::default(),
            jobs: JobOptions::default(),
            groups: GroupOptions::default(),
            sequencer,
            store,
            cache,
            clock: Arc::new(floe_core::SystemClock),
            failpoints: Failpoints::default(),
            export_s3: floe_storage::S3Options::default(),
        }
    }

    pub fn options(&self) -> &BrokerOptions {
        &self.inner.options
    }

    pub fn sequencer(&self) -> &Sequencer {
        &self.inner.sequencer
    }

    /// Bytes accepted and not yet committed.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.pipeline.buffered_bytes()
    }

    /// Stops accepting produce, flushes and commits what is buffered, stops the sequencer
    /// and flushes the read cache to its disk tier.
    pub async fn shutdown(&self) {
        let ticker = self.inner.group_ticker.lock().take();
        if let Some(ticker) = ticker {
            ticker.stop.send_replace(true);
            let _ = ticker.task.await;
        }
        let export = self.inner.export_task.lock().take();
        let jobs = self.inner.jobs.lock().take();
        for jobs in [export, jobs].into_iter().flatten() {
            jobs.stop.send_replace(true);
            let mut task = jobs.task;
            // A job stopped mid-way leaves at worst an object the orphan sweep deletes.
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        self.inner.pipeline.shutdown().await;
        self.inner.sequencer.shutdown().await;
        self.inner.cache.close().await;
    }
}

#[cfg(test)]
mod compression_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod tests;
