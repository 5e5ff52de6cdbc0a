//! The read cache: segment bytes in fixed-size blocks, held in foyer's hybrid cache (memory
//! first, then a local disk tier that survives restarts).
//!
//! Segments are immutable and never reuse a key, so a cached block never goes stale and is
//! never invalidated; it only ages out. Every read of the store goes through here:
//!
//! - a block is the unit of caching and of alignment: block `k` of a segment covers bytes
//!   `[k·B, (k+1)·B)`, so every reader of the same bytes asks for the same keys;
//! - concurrent misses for the same block make one GET (single-flight): a miss first joins
//!   a GET already in flight for that block, and only blocks nobody is fetching start one;
//! - neighbouring missing blocks are fetched by one ranged GET of up to `max_get_bytes`, and
//!   a reader may ask for read-ahead up to a byte position it expects to need next;
//! - a block read back from the disk tier carries its CRC32C and is checked; a corrupt
//!   entry is dropped and the block refetched, never served.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use floe_core::SegmentId;
use floe_core::settings::{self, InvalidSetting};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, RecoverMode, Source,
};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::segments::{SegmentStore, StorageError};

mod metrics;
use metrics::CacheMetrics;

/// Blocks that failed their CRC when read back from the disk tier, process-wide (the
/// decoder has no handle on a cache instance).
static CORRUPT_BLOCKS: AtomicU64 = AtomicU64::new(0);

/// Sizing of the read cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheOptions {
    /// Bytes of segment data the read cache holds in memory.
    pub memory_bytes: usize,
    /// Bytes of local disk for the second tier; 0 turns it off. When unset: off for a
    /// local (`file://`, `memory://`) store, 4 GiB for S3.
    pub disk_bytes: Option<usize>,
    /// Directory of the disk tier; `<data_dir>/cache` when unset.
    pub dir: Option<PathBuf>,
    /// The read cache's block: its unit of caching and of GET alignment (4 KiB to 64 MiB).
    pub block_bytes: u64,
    /// The largest ranged GET the read cache makes to fill missing blocks.
    pub max_get_bytes: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            memory_bytes: 256 * 1024 * 1024,
            disk_bytes: None,
            dir: None,
            block_bytes: 1024 * 1024,
            max_get_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The disk tier a remote store gets when `disk_bytes` is unset.
const DEFAULT_REMOTE_DISK_BYTES: usize = 4 << 30;
const MIN_BLOCK_BYTES: u64 = 4096;
const MAX_BLOCK_BYTES: u64 = 64 * 1024 * 1024;

impl CacheOptions {
    /// Fills what depends on the deployment: the disk tier's size by store kind (a local
    /// store is already on disk) and its directory under `data_dir`.
    pub fn resolve(mut self, store_is_local: bool, data_dir: &std::path::Path) -> Self {
        self.disk_bytes.get_or_insert(if store_is_local {
            0
        } else {
            DEFAULT_REMOTE_DISK_BYTES
        });
        self.dir.get_or_insert_with(|| data_dir.join("cache"));
        self
    }

    /// Refuses values the cache cannot work with, naming the setting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        settings::within(
            "block_bytes",
            self.block_bytes,
            MIN_BLOCK_BYTES,
            MAX_BLOCK_BYTES,
        )?;
        settings::at_least("max_get_bytes", self.max_get_bytes, self.block_bytes)?;
        settings::at_least("memory_bytes", self.memory_bytes as u64, self.block_bytes)
    }
}

/// Why a read went to the store; GETs are counted by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCause {
    /// A client fetch (or an offset lookup) missed.
    Fetch,
    /// The broker warmed blocks it expects to be read (the tail of partitions it owns).
    Prefetch,
    /// A background job (compaction) read data to rewrite it.
    Background,
}

/// Counters of the read cache since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Block lookups answered from memory.
    pub memory_hits: u64,
    /// Block lookups answered from the disk tier.
    pub disk_hits: u64,
    /// Block lookups that had to wait for the store (their own GET or one in flight).
    pub misses: u64,
    /// Ranged GETs made for client reads.
    pub fetch_gets: u64,
    /// Ranged GETs made to warm the tail.
    pub prefetch_gets: u64,
    /// Ranged GETs made by background jobs.
    pub background_gets: u64,
    /// Bytes received from the store.
    pub bytes_from_store: u64,
    /// Bytes handed to readers that came from the cache.
    pub bytes_served_cache: u64,
    /// Bytes handed to readers that had to come from the store.
    pub bytes_served_store: u64,
    /// Blocks inserted by writers (segments this broker uploaded).
    pub blocks_written: u64,
    /// Disk-tier entries dropped because their CRC did not match.
    pub corrupt_blocks: u64,
    /// Bytes of block data in memory now.
    pub memory_usage: u64,
    /// The memory tier's capacity.
    pub memory_capacity: u64,
}

/// A block's cache key: the segment and the block's index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BlockKey {
    segment: u128,
    block: u32,
}

impl Code for BlockKey {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        writer
            .write_all(&self.segment.to_be_bytes())
            .and_then(|()| writer.write_all(&self.block.to_be_bytes()))
            .map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut segment = [0u8; 16];
        let mut block = [0u8; 4];
        reader
            .read_exact(&mut segment)
            .and_then(|()| reader.read_exact(&mut block))
            .map_err(foyer::Error::io_error)?;
        Ok(Self {
            segment: u128::from_be_bytes(segment),
            block: u32::from_be_bytes(block),
        })
    }

    fn estimated_size(&self) -> usize {
        20
    }
}

/// A block's bytes. On disk: CRC32C (4 bytes), length (4 bytes), then the bytes.
#[derive(Debug, Clone)]
struct Block(Bytes);

impl Code for Block {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        let length = u32::try_from(self.0.len()).map_err(|_| {
            foyer::Error::new(foyer::ErrorKind::OutOfRange, "cache block over 4 GiB")
        })?;
        writer
            .write_all(&crc32c::crc32c(&self.0).to_be_bytes())
            .and_then(|()| writer.write_all(&length.to_be_bytes()))
            .and_then(|()| writer.write_all(&self.0))
            .map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(foyer::Error::io_error)?;
        let crc = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; length];
        reader
            .read_exact(&mut data)
            .map_err(foyer::Error::io_error)?;
        if crc32c::crc32c(&data) != crc {
            CORRUPT_BLOCKS.fetch_add(1, Ordering::Relaxed);
            // foyer drops an entry whose decode reports a checksum mismatch and answers a
            // miss, so the block is fetched again from the store.
            return Err(foyer::Error::new(
                foyer::ErrorKind::ChecksumMismatch,
                "cached block failed its CRC32C",
            ));
        }
        Ok(Self(Bytes::from(data)))
    }

    fn estimated_size(&self) -> usize {
        8 + self.0.len()
    }
}

type BlockFetch = Shared<BoxFuture<'static, Result<Arc<Vec<Bytes>>, Arc<StorageError>>>>;

/// A GET in flight and the position of one block in its answer.
#[derive(Clone)]
struct Pending {
    id: u64,
    index: usize,
    fetch: BlockFetch,
}

/// Segment bytes by block, from memory, local disk, or the store.
#[derive(Debug, Clone)]
pub struct ReadCache {
    inner: Arc<Inner>,
}

struct Inner {
    cache: HybridCache<BlockKey, Block>,
    store: SegmentStore,
    block_bytes: u64,
    max_get_blocks: u64,
    inflight: Mutex<HashMap<BlockKey, Pending>>,
    next_get: AtomicU64,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("block_bytes", &self.block_bytes)
            .field("max_get_blocks", &self.max_get_blocks)
            .field("inflight", &self.inflight.lock().len())
            .finish_non_exhaustive()
    }
}

/// Where one block of a read comes from.
enum Part {
    Ready(Bytes),
    Waiting(Pending),
}

impl ReadCache {
    /// Opens the cache; with a disk tier, recovers the blocks a previous run left there.
    pub async fn open(options: &CacheOptions, store: SegmentStore) -> Result<Self, StorageError> {
        options
            .validate()
            .map_err(|error| StorageError::Setup(error.to_string()))?;
        let block_bytes = options.block_bytes;
        if block_bytes > MAX_BLOCK_BYTES {
            return Err(StorageError::Setup(format!(
                "cache block size {block_bytes} is over the 64 MiB limit"
            )));
        }
        let builder = HybridCacheBuilder::new()
            .with_name("floe-blocks")
            .with_policy(HybridCachePolicy::WriteOnEviction)
            .with_flush_on_close(true)
            .memory(options.memory_bytes)
            .with_shards(shards(options.memory_bytes, block_bytes))
            .with_weighter(|_key: &BlockKey, block: &Block| block.0.len() + 64)
            .storage();
        let disk_bytes = options.disk_bytes.unwrap_or(0);
        let cache = if disk_bytes > 0 {
            let dir = options.dir.as_ref().ok_or_else(|| {
                StorageError::Setup("the disk cache tier needs a directory".into())
            })?;
            let device = FsDeviceBuilder::new(dir)
                .with_capacity(disk_bytes)
                .build()
                .map_err(|error| {
                    StorageError::Setup(format!("disk cache at {}: {error}", dir.display()))
                })?;
            // A disk block must hold the largest entry: one cache block and its headers.
            let engine_block = (block_bytes as usize + 64 * 1024).max(16 * 1024 * 1024);
            builder
                .with_engine_config(BlockEngineConfig::new(device).with_block_size(engine_block))
                .with_recover_mode(RecoverMode::Quiet)
                .build()
                .await
        } else {
            builder.build().await
        }
        .map_err(|error| StorageError::Setup(format!("read cache: {error}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cache,
                store,
                block_bytes,
                max_get_blocks: (options.max_get_bytes / block_bytes).max(1),
                inflight: Mutex::new(HashMap::new()),
                next_get: AtomicU64::new(0),
                metrics: CacheMetrics::new(),
            }),
        })
    }

    pub fn store(&self) -> &SegmentStore {
        &self.inner.store
    }

    pub fn block_bytes(&self) -> u64 {
        self.inner.block_bytes
    }

    /// Reads `range` of a segment. On a miss, the GET may run on to `read_ahead_to` (a
    /// byte position the caller expects to read next) so a sequential reader needs few
    /// large GETs.
    pub async fn read(
        &self,
        segment: SegmentId,
        range: Range<u64>,
        read_ahead_to: u64,
        cause: ReadCause,
    ) -> Result<Bytes, StorageError> {
        let mut read = self
            .read_ranges(segment, std::slice::from_ref(&range), read_ahead_to, cause)
            .await?;
        Ok(read.pop().unwrap_or_default())
    }

    /// Reads several ranges of one segment (say, a partition's batches in it), answering
    /// them in order. Their missing blocks are fetched together: neighbouring ones in one
    /// GET, so a segment costs one request rather than one per range.
    pub async fn read_ranges(
        &self,
        segment: SegmentId,
        ranges: &[Range<u64>],
        read_ahead_to: u64,
        cause: ReadCause,
    ) -> Result<Vec<Bytes>, StorageError> {
        if cause == ReadCause::Background {
            return self.read_uncached(segment, ranges).await;
        }
        let inner = &self.inner;
        let mut blocks: Vec<u64> = ranges
            .iter()
            .filter(|range| !range.is_empty())
            .flat_map(|range| range.start / inner.block_bytes..=(range.end - 1) / inner.block_bytes)
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        let mut parts: HashMap<u64, Part> = HashMap::with_capacity(blocks.len());
        let mut missing = Vec::new();
        for &block in &blocks {
            match self.lookup(key(segment, block)).await {
                Some(bytes) => {
                    parts.insert(block, Part::Ready(bytes));
                }
                None => missing.push(block),
            }
        }
        let mut from_store: HashSet<u64> = HashSet::new();
        if !missing.is_empty() {
            let ahead_last = read_ahead_to.saturating_sub(1) / inner.block_bytes;
            for (block, part) in self.join_or_fetch(segment, &missing, ahead_last, cause) {
                if matches!(part, Part::Waiting(_)) {
                    from_store.insert(block);
                }
                parts.insert(block, part);
            }
        }
        let mut ready: HashMap<u64, Bytes> = HashMap::with_capacity(parts.len());
        for (block, part) in parts {
            let bytes = match part {
                Part::Ready(bytes) => bytes,
                Part::Waiting(pending) => {
                    let fetched = pending.fetch.await.map_err(StorageError::Shared)?;
                    fetched[pending.index].clone()
                }
            };
            ready.insert(block, bytes);
        }
        let mut answers = Vec::with_capacity(ranges.len());
        for range in ranges {
            if range.is_empty() {
                answers.push(Bytes::new());
                continue;
            }
            let first = range.start / inner.block_bytes;
            let last = (range.end - 1) / inner.block_bytes;
            let pieces: Vec<Bytes> = (first..=last)
                .map(|block| ready.get(&block).cloned().unwrap_or_default())
                .collect();
            let assembled = assemble(segment, range, first, inner.block_bytes, &pieces)?;
            let stored: u64 = (first..=last)
                .filter(|block| from_store.contains(block))
                .map(|block| overlap(range, block, inner.block_bytes))
                .sum();
            inner.metrics.bytes_served_store.inc_by(stored);
            inner
                .metrics
                .bytes_served_cache
                .inc_by(assembled.len() as u64 - stored);
            answers.push(assembled);
        }
        Ok(answers)
    }

    /// A background job's read (compaction, export): a range whose blocks are all cached is
    /// served from them, any other is read from the store exactly, and nothing is cached.
    /// A job reads each byte once, mostly data too old to be in memory, a batch of one
    /// partition at a time: whole-block GETs would read a block for each batch (nine times
    /// the bytes compaction needed under W2, docs/benchmarks.md) and push the blocks tail
    /// readers need out of memory (ADR 0002).
    async fn read_uncached(
        &self,
        segment: SegmentId,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, StorageError> {
        let inner = &self.inner;
        let mut answers = vec![Bytes::new(); ranges.len()];
        let mut missing = Vec::new();
        for (index, range) in ranges.iter().enumerate() {
            if range.is_empty() {
                continue;
            }
            let first = range.start / inner.block_bytes;
            let blocks = (range.end - 1) / inner.block_bytes - first + 1;
            let mut pieces = Vec::with_capacity(blocks as usize);
            for block in first..first + blocks {
                match self.lookup(key(segment, block)).await {
                    Some(bytes) => pieces.push(bytes),
                    None => break,
                }
            }
            if pieces.len() as u64 == blocks {
                let assembled = assemble(segment, range, first, inner.block_bytes, &pieces)?;
                inner
                    .metrics
                    .bytes_served_cache
                    .inc_by(assembled.len() as u64);
                answers[index] = assembled;
            } else {
                inner.metrics.misses.inc_by(blocks - pieces.len() as u64);
                missing.push(index);
            }
        }
        let reads = missing.iter().map(|&index| {
            inner.metrics.get_made(ReadCause::Background);
            inner.store.read_range(segment, ranges[index].clone())
        });
        let read = futures::future::try_join_all(reads).await?;
        for (index, bytes) in missing.into_iter().zip(read) {
            inner.metrics.bytes_from_store.inc_by(bytes.len() as u64);
            inner.metrics.bytes_served_store.inc_by(bytes.len() as u64);
            answers[index] = bytes;
        }
        Ok(answers)
    }

    /// Warms `range` of a segment without waiting for it; a failure is only logged (a
    /// later read retries).
    pub fn prefetch(&self, segment: SegmentId, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let inner = &self.inner;
        let first = range.start / inner.block_bytes;
        let last = (range.end - 1) / inner.block_bytes;
        let missing: Vec<u64> = (first..=last)
            .filter(|block| !inner.cache.contains(&key(segment, *block)))
            .collect();
        if !missing.is_empty() {
            // The GETs run in their own tasks; nobody needs to wait for them here.
            drop(self.join_or_fetch(segment, &missing, last, ReadCause::Prefetch));
        }
    }

    /// Puts a segment this broker just uploaded into the cache, so reads of it need no GET.
    /// Caches a whole segment, given as its parts in order (a segment the broker built is
    /// its header, its batches and its footer; one read back is a single part).
    pub fn insert_segment(&self, segment: SegmentId, parts: &[Bytes]) {
        let inner = &self.inner;
        let block_bytes = inner.block_bytes as usize;
        let mut remaining: usize = parts.iter().map(Bytes::len).sum();
        // Each block is a copy, so an evicted block frees its memory even while its
        // neighbours stay; a block may gather the ends of several parts.
        let mut block = BytesMut::with_capacity(block_bytes.min(remaining));
        let mut index = 0u64;
        for part in parts {
            let mut rest = &part[..];
            while !rest.is_empty() {
                let take = rest.len().min(block_bytes - block.len());
                block.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                remaining -= take;
                if block.len() == block_bytes {
                    let full = std::mem::replace(
                        &mut block,
                        BytesMut::with_capacity(block_bytes.min(remaining)),
                    );
                    inner
                        .cache
                        .insert(key(segment, index), Block(full.freeze()));
                    index += 1;
                }
            }
        }
        if !block.is_empty() {
            inner
                .cache
                .insert(key(segment, index), Block(block.freeze()));
            index += 1;
        }
        inner.metrics.blocks_written.inc_by(index);
    }

    pub fn stats(&self) -> CacheStats {
        let counters = &self.inner.metrics;
        let load = |counter: &prometheus_client::metrics::counter::Counter| counter.get();
        let memory = self.inner.cache.memory();
        CacheStats {
            memory_hits: load(&counters.memory_hits),
            disk_hits: load(&counters.disk_hits),
            misses: load(&counters.misses),
            fetch_gets: load(&counters.fetch_gets),
            prefetch_gets: load(&counters.prefetch_gets),
            background_gets: load(&counters.background_gets),
            bytes_from_store: load(&counters.bytes_from_store),
            bytes_served_cache: load(&counters.bytes_served_cache),
            bytes_served_store: load(&counters.bytes_served_store),
            blocks_written: load(&counters.blocks_written),
            corrupt_blocks: CORRUPT_BLOCKS.load(Ordering::Relaxed),
            memory_usage: memory.usage() as u64,
            memory_capacity: memory.capacity() as u64,
        }
    }

    /// Flushes the memory tier to disk (when there is one) so the next run starts warm.
    pub async fn close(&self) {
        if let Err(error) = self.inner.cache.close().await {
            tracing::warn!(%error, "closing the read cache failed");
        }
    }

    async fn lookup(&self, key: BlockKey) -> Option<Bytes> {
        let counters = &self.inner.metrics;
        match self.inner.cache.get(&key).await {
            Ok(Some(entry)) => {
                match entry.source() {
                    Source::Disk => counters.disk_hits.inc(),
                    Source::Memory | Source::Outer => counters.memory_hits.inc(),
                };
                Some(entry.value().0.clone())
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "read cache lookup failed; reading the store");
                self.inner.cache.remove(&key);
                None
            }
        }
    }

    /// Attaches each missing block to a GET: one already in flight for it, or a new one
    /// covering a run of neighbouring blocks nobody is fetching, extended by read-ahead up
    /// to block `ahead_last`. A block that landed in memory since the lookup is taken from
    /// there instead.
    fn join_or_fetch(
        &self,
        segment: SegmentId,
        missing: &[u64],
        ahead_last: u64,
        cause: ReadCause,
    ) -> Vec<(u64, Part)> {
        let inner = &self.inner;
        let mut attached = Vec::with_capacity(missing.len());
        let mut inflight = inner.inflight.lock();
        let mut run: Vec<u64> = Vec::new();
        let mut runs: Vec<Vec<u64>> = Vec::new();
        for &block in missing {
            let key = key(segment, block);
            if let Some(pending) = inflight.get(&key) {
                attached.push((block, Part::Waiting(pending.clone())));
                continue;
            }
            // A GET that finished after our lookup inserted the block before leaving the
            // table, so under the lock it is either in flight or in memory.
            if let Some(entry) = inner.cache.memory().get(&key) {
                inner.metrics.memory_hits.inc_by(1);
                attached.push((block, Part::Ready(entry.value().0.clone())));
                continue;
            }
            if run.last().is_some_and(|previous| previous + 1 != block) {
                runs.push(std::mem::take(&mut run));
            }
            run.push(block);
        }
        if let Some(&end) = run.last() {
            // Read-ahead: blocks after the last needed one, while nobody has or fetches them.
            let limit = ahead_last.min(end + 2 * inner.max_get_blocks);
            let mut next = end + 1;
            while next <= limit {
                let key = key(segment, next);
                if inflight.contains_key(&key) || inner.cache.memory().contains(&key) {
                    break;
                }
                run.push(next);
                next += 1;
            }
            runs.push(run);
        }
        let runs: Vec<Vec<u64>> = runs
            .into_iter()
            .flat_map(|run| split_run(run, inner.max_get_blocks))
            .collect();
        for run in runs {
            let id = inner.next_get.fetch_add(1, Ordering::Relaxed);
            let fetch = self.spawn_get(id, segment, run[0], run.len() as u64, cause);
            for (index, block) in run.into_iter().enumerate() {
                let pending = Pending {
                    id,
                    index,
                    fetch: fetch.clone(),
                };
                inflight.insert(key(segment, block), pending.clone());
                if missing.contains(&block) {
                    attached.push((block, Part::Waiting(pending)));
                }
            }
        }
        let waiting = attached
            .iter()
            .filter(|(_, part)| matches!(part, Part::Waiting(_)))
            .count();
        inner.metrics.misses.inc_by(waiting as u64);
        attached
    }

    /// Starts one ranged GET for `count` blocks from `first`. It runs in its own task so it
    /// finishes (and leaves the in-flight table) even if every reader waiting on it leaves.
    fn spawn_get(
        &self,
        id: u64,
        segment: SegmentId,
        first: u64,
        count: u64,
        cause: ReadCause,
    ) -> BlockFetch {
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move {
            let block_bytes = inner.block_bytes;
            let range = first * block_bytes..(first + count) * block_bytes;
            inner.metrics.get_made(cause);
            let result = inner.store.read_range_upto(segment, range).await;
            let blocks = result.map(|bytes| {
                inner.metrics.bytes_from_store.inc_by(bytes.len() as u64);
                let blocks: Vec<Bytes> = (0..count)
                    .map(|index| {
                        let start = (index * block_bytes).min(bytes.len() as u64) as usize;
                        let end = ((index + 1) * block_bytes).min(bytes.len() as u64) as usize;
                        Bytes::copy_from_slice(&bytes[start..end])
                    })
                    .collect();
                for (index, block) in blocks.iter().enumerate() {
                    if !block.is_empty() {
                        inner
                            .cache
                            .insert(key(segment, first + index as u64), Block(block.clone()));
                    }
                }
                Arc::new(blocks)
            });
            // Only after the blocks are in the cache: a reader that finds no GET in flight
            // then finds the block.
            let mut inflight = inner.inflight.lock();
            for block in first..first + count {
                let key = key(segment, block);
                if inflight.get(&key).is_some_and(|pending| pending.id == id) {
                    inflight.remove(&key);
                }
            }
            blocks.map_err(Arc::new)
        });
        async move {
            match task.await {
                Ok(result) => result,
                Err(join) => Err(Arc::new(StorageError::Setup(format!(
                    "read task failed: {join}"
                )))),
            }
        }
        .boxed()
        .shared()
    }
}

/// Cuts a run of neighbouring blocks into GETs of at most `max` blocks, evenly, except that
/// a remainder under half a GET rides along with the others (GETs of up to 1.5 × `max`)
/// rather than costing a small request of its own.
fn split_run(run: Vec<u64>, max: u64) -> Vec<Vec<u64>> {
    let len = run.len() as u64;
    let mut pieces = len.div_ceil(max).max(1);
    if pieces > 1 && len <= (pieces - 1) * max + max / 2 {
        pieces -= 1;
    }
    let size = len.div_ceil(pieces) as usize;
    run.chunks(size.max(1)).map(<[u64]>::to_vec).collect()
}

/// Memory shards, each large enough for many blocks: a shard never holds more than its
/// share, and one block larger than the share would overflow it.
fn shards(memory_bytes: usize, block_bytes: u64) -> usize {
    (memory_bytes as u64 / (16 * block_bytes)).clamp(1, 64) as usize
}

fn key(segment: SegmentId, block: u64) -> BlockKey {
    BlockKey {
        segment: segment.0.0,
        block: u32::try_from(block).unwrap_or(u32::MAX),
    }
}

/// Bytes of `range` that fall in block `block`.
fn overlap(range: &Range<u64>, block: u64, block_bytes: u64) -> u64 {
    let start = range.start.max(block * block_bytes);
    let end = range.end.min((block + 1) * block_bytes);
    end.saturating_sub(start)
}

/// Cuts `range` out of consecutive blocks starting at block `first`.
fn assemble(
    segment: SegmentId,
    range: &Range<u64>,
    first: u64,
    block_bytes: u64,
    blocks: &[Bytes],
) -> Result<Bytes, StorageError> {
    let expected = (range.end - range.start) as usize;
    let short = |actual: usize| StorageError::ShortRead {
        segment,
        start: range.start,
        end: range.end,
        expected,
        actual,
    };
    let slice_of = |position: usize, block: &Bytes| {
        let base = (first + position as u64) * block_bytes;
        let start = (range.start.max(base) - base) as usize;
        let end = (range.end.min(base + block_bytes) - base) as usize;
        (start, end.min(block.len()), end)
    };
    if let [block] = blocks {
        let (start, end, wanted) = slice_of(0, block);
        if end < wanted || start > end {
            return Err(short(end.saturating_sub(start)));
        }
        return Ok(block.slice(start..end));
    }
    let mut out = BytesMut::with_capacity(expected);
    for (position, block) in blocks.iter().enumerate() {
        let (start, end, wanted) = slice_of(position, block);
        if end < wanted || start > end {
            return Err(short(out.len() + end.saturating_sub(start)));
        }
        out.extend_from_slice(&block[start..end]);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests;
