//! The engine of a floe broker: the produce pipeline (validate, encode, buffer, flush into
//! one segment, upload, commit, acknowledge), fetch (index lookup, ranged read, CRC check,
//! absolute offsets, long-poll) and topic administration.
//!
//! No HTTP here: the server crate maps requests onto [`Broker`] calls and [`BrokerError`]s
//! onto responses.

mod error;
mod fetch;
mod jobs;
mod pipeline;
mod prefetch;
mod produce;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use floe_core::Clock;
use floe_sequencer::Sequencer;
use floe_storage::{CacheStats, ReadCache};

pub use error::BrokerError;
pub use fetch::{FetchRequest, FetchResult, FetchedRecord, OffsetLookup, OffsetSpec};
pub use jobs::{JobOptions, JobStats, StoreFootprint};
pub use produce::{ProduceRecord, RecordAck};
pub use topics::{PartitionInfo, TopicDescription};

use crate::pipeline::Pipeline;

/// Tuning of one broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// This broker's identity in cluster metadata.
    pub broker_id: String,
    /// Seal the open segment once it holds this many bytes.
    pub segment_max_bytes: usize,
    /// Seal the open segment this long after its first batch arrived.
    pub linger: Duration,
    /// Bytes accepted but not yet committed, across all segments, before produce is refused
    /// with a retryable error.
    pub max_buffered_bytes: usize,
    /// Segments uploading at once.
    pub max_inflight_uploads: usize,
    /// Bound on one segment upload attempt; a slower attempt is abandoned and retried.
    pub upload_timeout: Duration,
    /// Background jobs: retention, object lifecycle, compaction.
    pub jobs: JobOptions,
    /// Testing only: abort the process after a segment is uploaded and before it is
    /// committed, leaving an orphan object behind.
    pub crash_after_upload: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            broker_id: "broker-0".into(),
            segment_max_bytes: 8 * 1024 * 1024,
            linger: Duration::from_millis(5),
            max_buffered_bytes: 256 * 1024 * 1024,
            max_inflight_uploads: 4,
            upload_timeout: Duration::from_secs(30),
            jobs: JobOptions::default(),
            crash_after_upload: false,
        }
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
    sequencer: Sequencer,
    cache: ReadCache,
    clock: Arc<dyn Clock>,
    pipeline: Pipeline,
    sticky_partition: std::sync::atomic::AtomicU32,
    job_counters: Arc<jobs::JobCounters>,
    background_pacer: jobs::Pacer,
    jobs: parking_lot::Mutex<Option<BackgroundJobs>>,
}

#[derive(Debug)]
struct BackgroundJobs {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// A broker reading and writing segments through `cache` (and the store behind it).
    /// It keeps the tail of the partitions it owns warm: as their commits are applied, it
    /// fetches the new ranges it did not write itself.
    pub fn new(
        options: BrokerOptions,
        sequencer: Sequencer,
        cache: ReadCache,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let pipeline = Pipeline::start(&options, sequencer.clone(), cache.clone());
        sequencer.observe(Arc::new(prefetch::TailPrefetcher::new(
            options.broker_id.clone(),
            cache.clone(),
        )));
        let broker = Self {
            inner: Arc::new(BrokerInner {
                background_pacer: jobs::Pacer::new(options.jobs.bytes_per_second),
                options,
                sequencer,
                cache,
                clock,
                pipeline,
                sticky_partition: std::sync::atomic::AtomicU32::new(rand::random()),
                job_counters: Arc::default(),
                jobs: parking_lot::Mutex::new(None),
            }),
        };
        if broker.inner.options.jobs.enabled {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(jobs::run(broker.clone(), stopped));
            *broker.inner.jobs.lock() = Some(BackgroundJobs { stop, task });
        }
        broker
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

    /// Counters of the read cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Stops accepting produce, flushes and commits what is buffered, stops the sequencer
    /// and flushes the read cache to its disk tier.
    pub async fn shutdown(&self) {
        let jobs = self.inner.jobs.lock().take();
        if let Some(jobs) = jobs {
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
mod fault_tests;
#[cfg(test)]
mod tests;
