//! The read cache's metrics: counted here, registered here, on the registry the server
//! hands in. Each labelled series keeps a handle of its own, so counting is one atomic add.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{CORRUPT_BLOCKS, ReadCache, ReadCause};

type Labelled = Family<[(&'static str, &'static str); 1], Counter>;

/// Counters of one read cache.
#[derive(Debug, Clone, Default)]
pub(super) struct CacheMetrics {
    hits: Labelled,
    pub(super) memory_hits: Counter,
    pub(super) disk_hits: Counter,
    pub(super) misses: Counter,
    gets: Labelled,
    pub(super) fetch_gets: Counter,
    pub(super) prefetch_gets: Counter,
    pub(super) background_gets: Counter,
    pub(super) bytes_from_store: Counter,
    served: Labelled,
    pub(super) bytes_served_cache: Counter,
    pub(super) bytes_served_store: Counter,
    pub(super) blocks_written: Counter,
}

impl CacheMetrics {
    pub(super) fn new() -> Self {
        let hits = Labelled::default();
        let gets = Labelled::default();
        let served = Labelled::default();
        let series =
            |family: &Labelled, name, value| family.get_or_create(&[(name, value)]).clone();
        Self {
            memory_hits: series(&hits, "tier", "memory"),
            disk_hits: series(&hits, "tier", "disk"),
            fetch_gets: series(&gets, "cause", "fetch"),
            prefetch_gets: series(&gets, "cause", "prefetch"),
            background_gets: series(&gets, "cause", "background"),
            bytes_served_cache: series(&served, "source", "cache"),
            bytes_served_store: series(&served, "source", "store"),
            hits,
            gets,
            served,
            misses: Counter::default(),
            bytes_from_store: Counter::default(),
            blocks_written: Counter::default(),
        }
    }

    pub(super) fn get_made(&self, cause: ReadCause) {
        match cause {
            ReadCause::Fetch => self.fetch_gets.inc(),
            ReadCause::Prefetch => self.prefetch_gets.inc(),
            ReadCause::Background => self.background_gets.inc(),
        };
    }
}

impl ReadCache {
    /// Registers this cache's counters and gauges on `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let metrics = &self.inner.metrics;
        registry.register(
            "floe_cache_hits",
            "Block lookups answered by the read cache, by tier",
            metrics.hits.clone(),
        );
        registry.register(
            "floe_cache_misses",
            "Block lookups that waited for the object store",
            metrics.misses.clone(),
        );
        registry.register(
            "floe_store_get_requests",
            "Ranged GETs made to the object store, by cause",
            metrics.gets.clone(),
        );
        registry.register(
            "floe_store_get_bytes",
            "Bytes received from the object store",
            metrics.bytes_from_store.clone(),
        );
        registry.register(
            "floe_fetch_bytes",
            "Segment bytes handed to fetches, by where they came from",
            metrics.served.clone(),
        );
        registry.register(
            "floe_cache_blocks_written",
            "Blocks put in the cache by this broker's uploads",
            metrics.blocks_written.clone(),
        );
        registry.register_collector(Box::new(CacheGauges {
            cache: self.clone(),
        }));
    }
}

/// What is read at scrape time: the memory tier's fill, and the disk tier's corrupt
/// blocks (counted by the block decoder, which has no handle on a cache instance).
#[derive(Debug)]
struct CacheGauges {
    cache: ReadCache,
}

impl Collector for CacheGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let corrupt = ConstCounter::new(CORRUPT_BLOCKS.load(Ordering::Relaxed));
        corrupt.encode(encoder.encode_descriptor(
            "floe_cache_corrupt_blocks",
            "Disk-tier blocks dropped for a bad CRC",
            None,
            corrupt.metric_type(),
        )?)?;
        let memory = self.cache.inner.cache.memory();
        let usage = ConstGauge::new(memory.usage() as u64);
        usage.encode(encoder.encode_descriptor(
            "floe_cache_memory_bytes",
            "Bytes of block data the memory tier holds",
            None,
            usage.metric_type(),
        )?)?;
        let capacity = ConstGauge::new(memory.capacity() as u64);
        capacity.encode(encoder.encode_descriptor(
            "floe_cache_memory_capacity_bytes",
            "The memory tier's capacity",
            None,
            capacity.metric_type(),
        )?)
    }
}
