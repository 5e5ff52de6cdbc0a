//! The read cache against an in-memory store that counts its GETs.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::*;

const MIB: u64 = 1024 * 1024;

/// An in-memory store that counts GETs and can hold each one for a while, so concurrent
/// readers overlap.
#[derive(Debug, Default)]
struct CountingStore {
    inner: InMemory,
    gets: AtomicUsize,
    delay_ms: AtomicU64,
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountingStore")
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, options).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        options: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, options).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

impl CountingStore {
    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

/// Bytes that differ at every position, so a misplaced slice shows.
fn pattern(len: u64, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add((i >> 8) as u8) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

struct Fixture {
    counting: Arc<CountingStore>,
    segments: SegmentStore,
}

impl Fixture {
    fn new() -> Self {
        let counting = Arc::new(CountingStore::default());
        let segments = SegmentStore::new(counting.clone(), Path::from("t"));
        Self { counting, segments }
    }

    async fn segment(&self, bytes: &Bytes) -> SegmentId {
        let id = SegmentId::generate();
        self.segments
            .put_segment(id, bytes.clone())
            .await
            .expect("put");
        id
    }

    async fn cache(&self, options: &CacheOptions) -> ReadCache {
        ReadCache::open(options, self.segments.clone())
            .await
            .expect("open cache")
    }
}

fn small(memory: u64) -> CacheOptions {
    CacheOptions {
        memory_bytes: memory as usize,
        block_bytes: MIB,
        max_get_bytes: 8 * MIB,
        ..CacheOptions::default()
    }
}

#[tokio::test]
async fn ranges_across_blocks_and_the_short_last_block_read_back_exactly() {
    let fixture = Fixture::new();
    let data = pattern(3 * MIB + 12_345, 7);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&small(64 * MIB)).await;
    for range in [
        0..10,
        MIB - 5..MIB + 5,
        100..3 * MIB + 12_345,
        3 * MIB..3 * MIB + 12_345,
        2 * MIB + 1..2 * MIB + 2,
    ] {
        let read = cache
            .read(id, range.clone(), range.end, ReadCause::Fetch)
            .await
            .expect("read");
        assert_eq!(read, data.slice(range.start as usize..range.end as usize));
    }
    let past_end = cache
        .read(id, 3 * MIB..3 * MIB + 20_000, 0, ReadCause::Fetch)
        .await;
    assert!(
        matches!(past_end, Err(StorageError::ShortRead { .. })),
        "{past_end:?}"
    );
}

#[tokio::test]
async fn concurrent_misses_for_the_same_range_make_one_get() {
    let fixture = Fixture::new();
    let data = pattern(6 * MIB, 1);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&small(64 * MIB)).await;
    fixture.counting.delay_ms.store(100, Ordering::SeqCst);
    let readers = (0..8).map(|_| cache.read(id, 0..6 * MIB, 0, ReadCause::Fetch));
    for read in join_all(readers).await {
        assert_eq!(read.expect("read"), data);
    }
    assert_eq!(fixture.counting.gets(), 1, "one GET for eight readers");
    let stats = cache.stats();
    assert_eq!(stats.fetch_gets, 1);
    assert_eq!(stats.bytes_from_store, 6 * MIB);
    // A second round is served from memory.
    cache
        .read(id, MIB..2 * MIB, 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(fixture.counting.gets(), 1);
    assert!(cache.stats().memory_hits >= 1);
}

#[tokio::test]
async fn a_sequential_reader_with_read_ahead_makes_few_large_gets() {
    let fixture = Fixture::new();
    let len = 20 * MIB;
    let data = pattern(len, 2);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&small(64 * MIB)).await;
    let chunk = 100 * 1024;
    let mut position = 0;
    while position < len {
        let end = (position + chunk).min(len);
        let read = cache
            .read(id, position..end, len, ReadCause::Fetch)
            .await
            .expect("read");
        assert_eq!(read, data.slice(position as usize..end as usize));
        position = end;
    }
    // 20 MiB in GETs of at most 8 MiB.
    assert_eq!(fixture.counting.gets(), 3);
}

#[tokio::test]
async fn a_written_segment_is_read_without_a_get() {
    let fixture = Fixture::new();
    let data = pattern(2 * MIB + 77, 3);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&small(64 * MIB)).await;
    // As the pipeline gives it: parts that straddle the block boundaries.
    let len = data.len();
    let cuts = [
        0,
        16,
        100,
        MIB as usize + 5,
        MIB as usize + 5,
        2 * MIB as usize,
        len,
    ];
    let parts: Vec<Bytes> = cuts.windows(2).map(|w| data.slice(w[0]..w[1])).collect();
    cache.insert_segment(id, &parts);
    let read = cache
        .read(id, 10..2 * MIB + 77, 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(read, data.slice(10..));
    for (start, end) in [(0, MIB), (MIB - 3, MIB + 9), (2 * MIB, 2 * MIB + 77)] {
        let read = cache
            .read(id, start..end, 0, ReadCause::Fetch)
            .await
            .expect("read");
        assert_eq!(read, data.slice(start as usize..end as usize));
    }
    assert_eq!(fixture.counting.gets(), 0);
    assert_eq!(cache.stats().blocks_written, 3);
}

#[tokio::test]
async fn a_prefetched_range_is_read_without_another_get() {
    let fixture = Fixture::new();
    let data = pattern(3 * MIB, 4);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&small(64 * MIB)).await;
    fixture.counting.delay_ms.store(50, Ordering::SeqCst);
    cache.prefetch(id, 0..3 * MIB);
    // The read arrives while the prefetch is still in flight and joins it.
    let read = cache
        .read(id, 0..3 * MIB, 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(read, data);
    let stats = cache.stats();
    assert_eq!((stats.prefetch_gets, stats.fetch_gets), (1, 0));
    assert_eq!(fixture.counting.gets(), 1);
}

#[tokio::test]
async fn a_background_read_takes_only_its_bytes_and_caches_nothing() {
    let fixture = Fixture::new();
    let data = pattern(3 * MIB, 5);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&small(64 * MIB)).await;
    let batch = MIB + 100..MIB + 100 + 100 * 1024;
    let slice = |range: &Range<u64>| data.slice(range.start as usize..range.end as usize);
    let read = cache
        .read(id, batch.clone(), 3 * MIB, ReadCause::Background)
        .await
        .expect("read");
    assert_eq!(read, slice(&batch));
    let stats = cache.stats();
    assert_eq!(
        (stats.background_gets, stats.bytes_from_store),
        (1, 100 * 1024),
        "exactly the range, no block around it and no read-ahead"
    );
    // Nothing was cached: a client's read of the same bytes makes its own GET.
    cache
        .read(id, batch.clone(), 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(cache.stats().fetch_gets, 1);
    assert_eq!(fixture.counting.gets(), 2);
    // Now block 1 is in memory, and background reads inside it need no GET.
    for range in [batch.clone(), MIB..2 * MIB] {
        let read = cache
            .read(id, range.clone(), 0, ReadCause::Background)
            .await
            .expect("read");
        assert_eq!(read, slice(&range));
    }
    assert_eq!(fixture.counting.gets(), 2);
    // A range reaching an uncached block is read whole, and one past the end fails.
    let across = 2 * MIB - 10..2 * MIB + 10;
    let read = cache
        .read(id, across.clone(), 0, ReadCause::Background)
        .await
        .expect("read");
    assert_eq!(read, slice(&across));
    assert_eq!(cache.stats().bytes_from_store, 100 * 1024 + MIB + 20);
    let past_end = cache
        .read(id, 3 * MIB - 10..3 * MIB + 10, 0, ReadCause::Background)
        .await;
    assert!(
        matches!(past_end, Err(StorageError::ShortRead { .. })),
        "{past_end:?}"
    );
}

#[tokio::test]
async fn memory_stays_within_its_capacity_while_reading_ten_times_more() {
    let fixture = Fixture::new();
    let capacity = 8 * MIB;
    let cache = fixture.cache(&small(capacity)).await;
    let mut segments = Vec::new();
    for seed in 0..10 {
        let data = pattern(8 * MIB, seed);
        segments.push((fixture.segment(&data).await, data));
    }
    for (id, data) in &segments {
        for block in 0..8 {
            let range = block * MIB..(block + 1) * MIB;
            let read = cache
                .read(*id, range.clone(), 8 * MIB, ReadCause::Fetch)
                .await
                .expect("read");
            assert_eq!(read, data.slice(range.start as usize..range.end as usize));
            let stats = cache.stats();
            assert!(
                stats.memory_usage <= stats.memory_capacity,
                "{} bytes cached in a {} byte tier",
                stats.memory_usage,
                stats.memory_capacity
            );
        }
    }
    assert_eq!(cache.stats().bytes_from_store, 80 * MIB);
}

fn with_disk(dir: &std::path::Path) -> CacheOptions {
    CacheOptions {
        disk_bytes: Some(256 * MIB as usize),
        dir: Some(dir.to_path_buf()),
        ..small(64 * MIB)
    }
}

#[tokio::test]
async fn the_disk_tier_is_reused_after_a_restart() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(3 * MIB, 5);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&with_disk(dir.path())).await;
    cache
        .read(id, 0..3 * MIB, 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(fixture.counting.gets(), 1);
    cache.close().await;
    drop(cache);

    let reopened = fixture.cache(&with_disk(dir.path())).await;
    let read = reopened
        .read(id, 0..3 * MIB, 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(read, data);
    assert_eq!(fixture.counting.gets(), 1, "no GET after the restart");
    assert_eq!(reopened.stats().disk_hits, 3);
}

#[tokio::test]
async fn a_corrupt_disk_entry_is_dropped_and_refetched() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(MIB, 6);
    let id = fixture.segment(&data).await;
    let cache = fixture.cache(&with_disk(dir.path())).await;
    cache
        .read(id, 0..MIB, 0, ReadCause::Fetch)
        .await
        .expect("read");
    cache.close().await;
    drop(cache);

    // Flip a byte in the middle of the block's bytes on disk.
    let needle = &data[1000..1064];
    let mut corrupted = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        let mut file = std::fs::read(&path).expect("read file");
        if let Some(at) = file
            .windows(needle.len())
            .position(|window| window == needle)
        {
            file[at + 10] ^= 0xff;
            std::fs::write(&path, &file).expect("write file");
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 1, "the block is on disk exactly once");

    let reopened = fixture.cache(&with_disk(dir.path())).await;
    let read = reopened
        .read(id, 0..MIB, 0, ReadCause::Fetch)
        .await
        .expect("read");
    assert_eq!(read, data, "the reader gets the store's bytes");
    assert_eq!(
        fixture.counting.gets(),
        2,
        "the corrupt block was fetched again"
    );
    let stats = reopened.stats();
    assert_eq!((stats.disk_hits, stats.fetch_gets), (0, 1));
}
