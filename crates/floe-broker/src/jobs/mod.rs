//! Background jobs: retention, object lifecycle (deleting dead and orphaned objects) and
//! compaction (small flushes into per-partition objects; keyed compaction).
//!
//! A partition's retention and compaction run on its owner (every partition in the embedded
//! mode; in a cluster, unowned partitions fall to the sequencer leader's broker). The
//! object lifecycle runs on the leader's broker. Jobs run one at a time, paced by a byte
//! and a delete budget; the byte budget shrinks while produce's segments are slowed
//! (`pacer.rs`), and compaction waits while produce has a backlog, so background work
//! never starves produce. Every change goes through the sequencer, so a job that dies
//! half-way leaves at worst an object the orphan sweep deletes.

pub(crate) mod compaction;
pub(crate) mod cpu;
mod lifecycle;
mod pacer;
pub(crate) mod retention;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use floe_core::settings::{self, InvalidSetting};
use floe_sequencer::{ClusterState, PartitionState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub(crate) use pacer::{BudgetGauges, Pacer, ProduceDelay};

use crate::Broker;

/// Tuning of the background jobs.
/// Background jobs: retention, the object lifecycle and compaction. The `[jobs]`
/// section of `floe.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Run retention, the object lifecycle and compaction.
    pub enabled: bool,
    /// How often owners check their partitions for data past `retention.ms` /
    /// `retention.bytes`.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// How often dead objects are deleted and the store is swept for orphans.
    #[serde(with = "humantime_serde")]
    pub lifecycle_interval: Duration,
    /// How long a dead object stays in the store (reads in flight finish), and how old an
    /// uncommitted object must be before the sweep deletes it.
    #[serde(with = "humantime_serde")]
    pub object_grace: Duration,
    /// How often owners look for compaction work.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// How old a flushed object must be before its batches are compacted.
    #[serde(with = "humantime_serde")]
    pub compaction_min_age: Duration,
    /// The largest object compaction writes.
    pub compaction_target_bytes: u64,
    /// Decoded records one compaction may hold: a run is cut where its decoded records
    /// reach this (a compressible topic decodes to many times its stored size).
    pub compaction_memory_bytes: usize,
    /// The batch size compaction merges small batches up to.
    pub compaction_batch_bytes: usize,
    /// How many neighbouring compacted objects of one level are merged into one.
    pub compaction_fan_in: usize,
    /// How often owners look for records to export to Parquet (topics with
    /// `export.parquet.enabled`).
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Bytes per second compaction and export may read plus write while produce is quick.
    pub bytes_per_second: u64,
    /// The least bytes per second they keep while produce is slowed, so their work still
    /// progresses under sustained load (capped at `bytes_per_second`).
    pub min_bytes_per_second: u64,
    /// How much longer than the quickest recent segment a sealed segment may take from
    /// seal to answer before background work halves its budget (see `jobs/pacer.rs`).
    /// Unset: resolved for the store kind ([`JobOptions::yield_delay_for`]).
    #[serde(with = "humantime_serde")]
    pub yield_delay: Option<Duration>,
    /// Object deletions per second.
    pub deletes_per_second: u32,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_interval: Duration::from_secs(30),
            lifecycle_interval: Duration::from_secs(60),
            object_grace: Duration::from_secs(300),
            compaction_interval: Duration::from_secs(10),
            compaction_min_age: Duration::from_secs(10),
            compaction_target_bytes: 64 * 1024 * 1024,
            compaction_memory_bytes: 128 * 1024 * 1024,
            compaction_batch_bytes: 1024 * 1024,
            compaction_fan_in: 4,
            export_interval: Duration::from_secs(1),
            bytes_per_second: 64 * 1024 * 1024,
            min_bytes_per_second: 8 * 1024 * 1024,
            yield_delay: None,
            deletes_per_second: 200,
        }
    }
}

/// The yield delay on a local disk: a produce segment there takes a few ms, and one 10 ms
/// slower is one compaction's I/O in its way (docs/benchmarks.md, "Sustained load").
const LOCAL_YIELD_DELAY: Duration = Duration::from_millis(10);
/// On S3 an upload's own time varies by tens to hundreds of ms, so only a slowdown of about
/// a second (throttling, a saturated link) yields. Not measured yet: compaction there was
/// never seen to slow produce.
const REMOTE_YIELD_DELAY: Duration = Duration::from_secs(1);

impl JobOptions {
    /// The yield delay, with its default resolved for the store kind.
    pub fn yield_delay_for(&self, store_is_local: bool) -> Duration {
        self.yield_delay.unwrap_or(if store_is_local {
            LOCAL_YIELD_DELAY
        } else {
            REMOTE_YIELD_DELAY
        })
    }

    /// Refuses values the jobs cannot run with, naming the setting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        settings::positive("retention_interval", self.retention_interval)?;
        settings::positive("lifecycle_interval", self.lifecycle_interval)?;
        settings::positive("compaction_interval", self.compaction_interval)?;
        settings::positive("export_interval", self.export_interval)?;
        settings::at_least("compaction_target_bytes", self.compaction_target_bytes, 1)?;
        settings::at_least("compaction_memory_bytes", self.compaction_memory_bytes, 1)?;
        settings::at_least("compaction_batch_bytes", self.compaction_batch_bytes, 1)?;
        settings::at_least("compaction_fan_in", self.compaction_fan_in, 2)?;
        settings::at_least("bytes_per_second", self.bytes_per_second, 1)?;
        settings::at_least("min_bytes_per_second", self.min_bytes_per_second, 1)?;
        if let Some(delay) = self.yield_delay {
            settings::positive("yield_delay", delay)?;
        }
        settings::at_least("deletes_per_second", self.deletes_per_second, 1)
    }
}

/// Counters of the background jobs since start, registered on the broker's registry.
#[derive(Debug)]
pub(crate) struct JobCounters {
    pub retention_trims: Counter,
    deleted: Labelled,
    pub dead_objects_deleted: Counter,
    pub orphans_deleted: Counter,
    compactions: Labelled,
    pub compactions_flush: Counter,
    pub compactions_merge: Counter,
    pub compactions_clean: Counter,
    pub compaction_conflicts: Counter,
    pub compactions_parked: Counter,
    compaction_bytes: Labelled,
    pub compaction_bytes_read: Counter,
    pub compaction_bytes_written: Counter,
    pub job_errors: Counter,
    pub throttled_seconds: Counter<f64, AtomicU64>,
}

type Labelled = Family<[(&'static str, &'static str); 1], Counter>;

/// A snapshot of [`JobCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobStats {
    pub retention_trims: u64,
    pub compactions_parked: u64,
    pub dead_objects_deleted: u64,
    pub orphans_deleted: u64,
    pub compactions_flush: u64,
    pub compactions_merge: u64,
    pub compactions_clean: u64,
    pub compaction_conflicts: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    pub job_errors: u64,
    pub throttled_seconds: f64,
}

impl Default for JobCounters {
    fn default() -> Self {
        let deleted = Labelled::default();
        let compactions = Labelled::default();
        let compaction_bytes = Labelled::default();
        let series =
            |family: &Labelled, name, value| family.get_or_create(&[(name, value)]).clone();
        Self {
            retention_trims: Counter::default(),
            dead_objects_deleted: series(&deleted, "reason", "dead"),
            orphans_deleted: series(&deleted, "reason", "orphan"),
            compactions_flush: series(&compactions, "kind", "flush"),
            compactions_merge: series(&compactions, "kind", "merge"),
            compactions_clean: series(&compactions, "kind", "clean"),
            compaction_bytes_read: series(&compaction_bytes, "direction", "read"),
            compaction_bytes_written: series(&compaction_bytes, "direction", "written"),
            deleted,
            compactions,
            compaction_bytes,
            compaction_conflicts: Counter::default(),
            compactions_parked: Counter::default(),
            job_errors: Counter::default(),
            throttled_seconds: Counter::default(),
        }
    }
}

impl JobCounters {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_retention_trims",
            "Partition log starts advanced by retention",
            self.retention_trims.clone(),
        );
        registry.register(
            "floe_objects_deleted",
            "Objects deleted from the store, by why",
            self.deleted.clone(),
        );
        registry.register(
            "floe_compactions",
            "Compactions committed, by kind",
            self.compactions.clone(),
        );
        registry.register(
            "floe_compaction_conflicts",
            "Compaction swaps refused because the run changed",
            self.compaction_conflicts.clone(),
        );
        registry.register(
            "floe_compactions_parked",
            "Partitions whose compaction failed the same way twice and was stopped",
            self.compactions_parked.clone(),
        );
        registry.register(
            "floe_compaction_bytes",
            "Bytes compaction read and wrote",
            self.compaction_bytes.clone(),
        );
        registry.register(
            "floe_background_job_errors",
            "Background job runs that failed",
            self.job_errors.clone(),
        );
        registry.register(
            "floe_background_throttled_seconds",
            "Time background jobs waited for pacing or for produce",
            self.throttled_seconds.clone(),
        );
    }

    pub(crate) fn snapshot(&self) -> JobStats {
        JobStats {
            retention_trims: self.retention_trims.get(),
            compactions_parked: self.compactions_parked.get(),
            dead_objects_deleted: self.dead_objects_deleted.get(),
            orphans_deleted: self.orphans_deleted.get(),
            compactions_flush: self.compactions_flush.get(),
            compactions_merge: self.compactions_merge.get(),
            compactions_clean: self.compactions_clean.get(),
            compaction_conflicts: self.compaction_conflicts.get(),
            compaction_bytes_read: self.compaction_bytes_read.get(),
            compaction_bytes_written: self.compaction_bytes_written.get(),
            job_errors: self.job_errors.get(),
            throttled_seconds: self.throttled_seconds.get(),
        }
    }
}

/// Live objects, dead objects awaiting deletion and index entries, from the replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFootprint {
    pub live_objects: u64,
    pub live_bytes: u64,
    pub dead_objects: u64,
    pub index_entries: u64,
}

impl StoreFootprint {
    pub fn of(state: &ClusterState) -> Self {
        Self {
            live_objects: state.segments().len() as u64,
            live_bytes: state.segments().values().map(|info| info.live_bytes).sum(),
            dead_objects: state.garbage().len() as u64,
            index_entries: state
                .topics()
                .flat_map(|topic| &topic.partitions)
                .map(|partition| partition.batches.len() as u64)
                .sum(),
        }
    }
}

impl Broker {
    /// Whether this broker runs the background jobs of a partition with this owner: its
    /// owner does, and the leader does those of partitions no one owns yet.
    pub(crate) fn runs_jobs_for(&self, partition: &PartitionState) -> bool {
        let membership = self.inner.sequencer.membership();
        match membership.owner_of(partition.owner.as_deref()) {
            Some(owner) => owner == membership.broker(),
            None => membership.is_leader(),
        }
    }

    /// The partitions (with their topics) whose jobs this broker runs.
    pub(crate) fn job_partitions<'a>(
        &'a self,
        state: &'a ClusterState,
    ) -> impl Iterator<Item = (&'a floe_sequencer::TopicState, u32, &'a PartitionState)> + 'a {
        state.topics().flat_map(move |topic| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, partition)| self.runs_jobs_for(partition))
                .map(move |(index, partition)| (topic, index as u32, partition))
        })
    }

    /// Whether this broker runs the object lifecycle (one broker in the cluster does).
    pub(crate) fn runs_lifecycle(&self) -> bool {
        self.inner.sequencer.membership().is_leader()
    }

    /// Counters of the background jobs.
    pub fn job_stats(&self) -> JobStats {
        self.inner.job_counters.snapshot()
    }

    /// Objects and index entries as this broker's replica sees them.
    pub fn store_footprint(&self) -> StoreFootprint {
        self.inner.sequencer.read(StoreFootprint::of)
    }

    /// Takes `bytes` from the background budget a MiB at a time, so that a large object's
    /// wait follows the budget as it changes (a 64 MiB write priced at the floor would
    /// otherwise wait 8 s even if produce were quick again after one).
    pub(crate) async fn pace(&self, bytes: u64) {
        const STEP: u64 = 1 << 20;
        let mut left = bytes;
        let mut waited = Duration::ZERO;
        while left > 0 {
            let step = left.min(STEP);
            waited += self.inner.background_pacer.take(step).await;
            left -= step;
        }
        self.inner
            .job_counters
            .throttled_seconds
            .inc_by(waited.as_secs_f64());
    }

    /// Waits while produce has a backlog: background work yields to it.
    pub(crate) async fn yield_to_produce(&self) {
        let limit = self.inner.options.max_buffered_bytes / 2;
        let started = tokio::time::Instant::now();
        while self.inner.pipeline.buffered_bytes() > limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waited = started.elapsed();
        if !waited.is_zero() {
            self.inner
                .job_counters
                .throttled_seconds
                .inc_by(waited.as_secs_f64());
        }
    }
}

/// Runs the jobs until `stop` turns true. Each kind of job runs on its own interval; one
/// job runs at a time.
pub(crate) async fn run(broker: Broker, mut stop: watch::Receiver<bool>) {
    let options = broker.inner.job_options.clone();
    // The first run of each job is one interval after start, not at once.
    let every = |period: Duration| {
        let period = period.max(Duration::from_millis(10));
        tokio::time::interval_at(tokio::time::Instant::now() + period, period)
    };
    let mut retention = every(options.retention_interval);
    let mut lifecycle = every(options.lifecycle_interval);
    let mut compaction = every(options.compaction_interval);
    for interval in [&mut retention, &mut lifecycle, &mut compaction] {
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let counters = Arc::clone(&broker.inner.job_counters);
    #[derive(Clone, Copy)]
    enum Job {
        Retention,
        Lifecycle,
        Compaction,
    }
    loop {
        let job = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = retention.tick() => Job::Retention,
            _ = lifecycle.tick() => Job::Lifecycle,
            _ = compaction.tick() => Job::Compaction,
        };
        let result = match job {
            Job::Retention => broker.enforce_retention().await,
            Job::Lifecycle => broker.run_lifecycle().await,
            Job::Compaction => broker.compact_partitions(&stop).await,
        };
        if let Err(error) = result {
            counters.job_errors.inc();
            tracing::warn!(%error, "background job failed; it runs again on its next tick");
        }
    }
}

#[cfg(test)]
mod tests;
