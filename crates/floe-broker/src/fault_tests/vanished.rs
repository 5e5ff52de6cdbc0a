//! A fetch whose object vanishes under it: compaction or retention replaced the object and
//! the lifecycle deleted it while the fetch was reading. The fetch resolves its offset
//! again: to the replacement, or to an out-of-range answer below the new log start. (The
//! bounded failure, when the state never moves on, is in `jobs/tests.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_core::{SegmentId, SystemClock, TopicConfig};
use floe_sequencer::Sequencer;
use floe_storage::SegmentStore;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::jobs::JobOptions;
use crate::tests::cache;
use crate::{Broker, BrokerError, BrokerOptions, FetchRequest, ProduceRecord};

/// An in-memory store that holds GETs of one object at a gate until the test opens it,
/// then answers them from what the store holds by then.
#[derive(Debug)]
struct GatedStore {
    inner: InMemory,
    gated: Mutex<Option<Path>>,
    /// GETs that reached the gate.
    arrived: watch::Sender<usize>,
    open: watch::Sender<bool>,
    /// Gated GETs that found the object gone once the gate opened.
    missed: AtomicUsize,
}

impl GatedStore {
    fn new() -> Self {
        Self {
            inner: InMemory::new(),
            gated: Mutex::new(None),
            arrived: watch::channel(0).0,
            open: watch::channel(false).0,
            missed: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for GatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatedStore")
    }
}

#[async_trait]
impl ObjectStore for GatedStore {
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
        let gated = self.gated.lock().as_ref() == Some(location);
        if !gated {
            return self.inner.get_opts(location, options).await;
        }
        let mut open = self.open.subscribe();
        self.arrived.send_modify(|arrived| *arrived += 1);
        let _ = open.wait_for(|open| *open).await;
        let answer = self.inner.get_opts(location, options).await;
        if matches!(answer, Err(object_store::Error::NotFound { .. })) {
            self.missed.fetch_add(1, Ordering::AcqRel);
        }
        answer
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

/// A writer that runs its jobs by hand (compacting anything at once, deleting dead
/// objects without grace) and a reader with a cold cache, on one sequencer and one store.
struct Pair {
    store: std::sync::Arc<GatedStore>,
    segments: SegmentStore,
    writer: Broker,
    reader: Broker,
}

async fn pair() -> Pair {
    let store = std::sync::Arc::new(GatedStore::new());
    let segments = SegmentStore::new(store.clone(), Path::default());
    let sequencer = crate::tests::memory_sequencer().await;
    let jobs = JobOptions {
        enabled: false,
        object_grace: Duration::ZERO,
        compaction_min_age: Duration::ZERO,
        compaction_batch_bytes: 2048,
        compaction_target_bytes: 32 * 1024,
        compaction_fan_in: 2,
        ..JobOptions::default()
    };
    let writer = broker_on(sequencer.clone(), segments.clone(), jobs.clone()).await;
    let reader = broker_on(sequencer, segments.clone(), jobs).await;
    Pair {
        store,
        segments,
        writer,
        reader,
    }
}

async fn broker_on(sequencer: Sequencer, store: SegmentStore, jobs: JobOptions) -> Broker {
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(1)),
        ..BrokerOptions::default()
    };
    Broker::builder(sequencer, store.clone(), cache(store).await)
        .options(options)
        .jobs(jobs)
        .build()
}

fn record(value: &str, timestamp_ms: i64) -> ProduceRecord {
    ProduceRecord {
        partition: Some(0),
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
        timestamp_ms: Some(timestamp_ms),
    }
}

fn from(offset: u64) -> FetchRequest {
    FetchRequest {
        topic: "v".into(),
        partition: 0,
        offset,
        max_records: 100,
        max_bytes: 1 << 20,
        wait: Duration::ZERO,
        clamp: false,
    }
}

fn values(records: &[crate::FetchedRecord]) -> Vec<(u64, Bytes)> {
    records
        .iter()
        .map(|r| (r.offset, r.record.value.clone().unwrap_or_default()))
        .collect()
}

/// Four flushes of three records each, the first two with `old` timestamps; returns the
/// object holding offset 0.
async fn four_flushes(writer: &Broker, old: i64, now: i64) -> SegmentId {
    for flush in 0..4 {
        let timestamp = if flush < 2 { old } else { now };
        let records = (0..3)
            .map(|i| record(&format!("f{flush}-{i}"), timestamp))
            .collect();
        writer.produce("v", records).await.expect("produce");
    }
    let batches = writer
        .inner
        .sequencer
        .read(|state| state.topic("v").map(|t| t.partitions[0].batches.len()));
    assert_eq!(batches, Some(4), "one batch per flush");
    writer.inner.sequencer.read(|state| {
        let topic = state.topic("v").expect("topic");
        topic.partitions[0]
            .batches
            .get_min()
            .map(|(_, location)| location.segment)
            .expect("a batch")
    })
}

/// Starts a fetch from `offset` on the reader, holds its GET of `object` at the gate, and
/// returns the running fetch once the GET has arrived there.
async fn fetch_held_at(
    pair: &Pair,
    object: SegmentId,
    offset: u64,
) -> tokio::task::JoinHandle<Result<crate::FetchResult, BrokerError>> {
    *pair.store.gated.lock() = Some(floe_storage::keys::segment(&Path::default(), object));
    let fetch = tokio::spawn({
        let reader = pair.reader.clone();
        async move { reader.fetch(from(offset)).await }
    });
    let mut arrived = pair.store.arrived.subscribe();
    arrived
        .wait_for(|arrived| *arrived >= 1)
        .await
        .expect("the fetch reaches the store");
    fetch
}

/// The reader's GET of the first object is in flight when compaction replaces the
/// partition's objects and the lifecycle deletes them: the GET finds the object gone, and
/// the fetch resolves the offset again, to the replacement, returning the same records at
/// the same offsets.
#[tokio::test(start_paused = true)]
async fn a_read_racing_compaction_and_deletion_resolves_to_the_replacement() {
    let pair = pair().await;
    pair.writer
        .create_topic("v", 1, TopicConfig::default())
        .await
        .expect("create");
    let now = floe_core::Clock::now_ms(&SystemClock);
    let first = four_flushes(&pair.writer, now, now).await;
    let before = pair.writer.fetch(from(0)).await.expect("fetch");
    assert_eq!(before.records.len(), 12);

    let fetch = fetch_held_at(&pair, first, 0).await;
    let (_stop, stopped) = watch::channel(false);
    pair.writer
        .compact_partitions(&stopped)
        .await
        .expect("compact");
    let stats = pair.writer.job_stats();
    assert!(
        stats.compactions_flush + stats.compactions_merge >= 1,
        "{stats:?}"
    );
    pair.writer.run_lifecycle().await.expect("lifecycle");
    let listed = pair.segments.list_segments().await.expect("list");
    assert!(
        listed.iter().all(|(segment, _)| *segment != first),
        "the first object is deleted"
    );
    let still_named = pair.writer.inner.sequencer.read(|state| {
        state.topic("v").expect("topic").partitions[0]
            .batches
            .values()
            .any(|location| location.segment == first)
    });
    assert!(!still_named, "the state names the replacement");

    pair.store.open.send_replace(true);
    let fetched = fetch
        .await
        .expect("fetch task")
        .expect("the fetch resolves to the replacement");
    assert_eq!(
        pair.store.missed.load(Ordering::Acquire),
        1,
        "the first read found the object gone"
    );
    assert_eq!(values(&fetched.records), values(&before.records));
    assert_eq!(fetched.next_offset, 12);
    pair.writer.shutdown().await;
    pair.reader.shutdown().await;
}

/// As above, but the object is gone from the store before the state stops naming it (a
/// replica behind the broker that deleted it): the fetch waits for the state to move on,
/// and resolves to the replacement once compaction's swap is applied.
#[tokio::test(start_paused = true)]
async fn a_read_of_an_object_deleted_before_the_swap_waits_for_the_replacement() {
    let pair = pair().await;
    pair.writer
        .create_topic("v", 1, TopicConfig::default())
        .await
        .expect("create");
    let now = floe_core::Clock::now_ms(&SystemClock);
    let first = four_flushes(&pair.writer, now, now).await;
    let before = pair.writer.fetch(from(0)).await.expect("fetch");

    let fetch = fetch_held_at(&pair, first, 0).await;
    pair.segments
        .delete_segment(first)
        .await
        .expect("delete the object under the reader");
    pair.store.open.send_replace(true);
    // Everything runnable runs before paused time moves: the fetch has met the miss and
    // is waiting for the state, which still names the object.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pair.store.missed.load(Ordering::Acquire), 1);
    assert!(
        !fetch.is_finished(),
        "the fetch waits for the state to move on"
    );

    // The writer still has the object in its cache, so compaction can rewrite it.
    let (_stop, stopped) = watch::channel(false);
    pair.writer
        .compact_partitions(&stopped)
        .await
        .expect("compact");
    let fetched = fetch
        .await
        .expect("fetch task")
        .expect("the fetch resolves to the replacement");
    assert_eq!(values(&fetched.records), values(&before.records));
    pair.writer.shutdown().await;
    pair.reader.shutdown().await;
}

/// The reader's GET of the first object is in flight when retention moves the log start
/// past it and the lifecycle deletes it: the fetch, resolving its offset again, is below
/// the new log start and gets the out-of-range answer (HTTP 416), never a storage error.
#[tokio::test(start_paused = true)]
async fn a_read_racing_retention_below_the_new_log_start_is_out_of_range() {
    let pair = pair().await;
    let config = TopicConfig {
        retention_ms: 60_000,
        ..TopicConfig::default()
    };
    pair.writer
        .create_topic("v", 1, config)
        .await
        .expect("create");
    let now = floe_core::Clock::now_ms(&SystemClock);
    let first = four_flushes(&pair.writer, now - 3_600_000, now).await;

    let fetch = fetch_held_at(&pair, first, 0).await;
    pair.writer.enforce_retention().await.expect("retention");
    let described = pair.writer.describe_topic("v").expect("describe");
    assert_eq!(described.partitions[0].log_start_offset, 6);
    pair.writer.run_lifecycle().await.expect("lifecycle");
    let listed = pair.segments.list_segments().await.expect("list");
    assert_eq!(listed.len(), 2, "the two expired objects are deleted");

    pair.store.open.send_replace(true);
    let answer = fetch.await.expect("fetch task");
    assert_eq!(pair.store.missed.load(Ordering::Acquire), 1);
    match answer {
        Err(error @ BrokerError::OffsetOutOfRange { .. }) => {
            assert_eq!(error.kind(), floe_core::ErrorKind::OutOfRange);
            assert!(matches!(
                error,
                BrokerError::OffsetOutOfRange {
                    offset: 0,
                    log_start_offset: 6,
                    high_watermark: 12,
                }
            ));
        }
        other => panic!("expected offset out of range, got {other:?}"),
    }
    // What is left is still read from the new log start.
    let kept = pair.reader.fetch(from(6)).await.expect("fetch");
    assert_eq!(
        kept.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (6..12).collect::<Vec<_>>()
    );
    pair.writer.shutdown().await;
    pair.reader.shutdown().await;
}
