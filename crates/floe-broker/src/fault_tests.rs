//! Store faults injected under the write path: failed puts, hung puts, puts that landed but
//! whose response was lost, hung puts that land late while their retry races them, and
//! torn objects left under a segment's key. Many segments are in flight at once. No
//! acknowledgement without a durable object, no record committed twice, and once the store
//! heals the broker holds nothing back.
//!
//! Submodules: `vanished` (an object deleted under a fetch), `log` (sequencer log faults
//! through the log backend seam) and `cluster` (forwarding, catch-up and etcd faults on a
//! real etcd).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_core::TopicConfig;
use floe_storage::SegmentStore;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

use super::*;
use crate::tests::cache;

mod cluster;
mod hedging;
mod linger;
mod log;
mod vanished;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The put fails and nothing is stored.
    Error,
    /// The put never answers and never lands.
    Hang,
    /// The put is stored, but the caller gets an error.
    LostResponse,
    /// The put never answers, but its request reaches the store and lands this long after
    /// it was sent: before the retry when shorter than the attempt timeout plus backoff,
    /// after it when longer.
    LandsLate(Duration),
    /// Half the object is stored under the key and the put fails: a store that committed
    /// a torn upload.
    Torn,
    /// The put is refused as existing while nothing is stored: S3's `409
    /// ConditionalRequestConflict` to a create-only put racing another write of the key.
    Conflict,
    /// The put answers this long after it was sent, and is stored.
    Slow(Duration),
}

/// Which fault each put meets.
#[derive(Debug)]
enum Plan {
    /// Each put, whatever its object, takes the next entry.
    InTurn(VecDeque<Option<Fault>>),
    /// Each object's attempts follow one script, scripts handed out in turn to objects
    /// as they are first seen; attempts past the script's end succeed.
    PerObject {
        scripts: Vec<Vec<Fault>>,
        seen: HashMap<Path, (usize, usize)>,
    },
}

impl Plan {
    fn next(&mut self, location: &Path) -> Option<Fault> {
        match self {
            Self::InTurn(queue) => queue.pop_front().flatten(),
            Self::PerObject { scripts, seen } => {
                let objects = seen.len();
                let (script, attempt) = seen
                    .entry(location.clone())
                    .or_insert((objects % scripts.len(), 0));
                let fault = scripts[*script].get(*attempt).copied();
                *attempt += 1;
                fault
            }
        }
    }
}

/// What a late-landing put's write did once it reached the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LateWrite {
    Landed,
    RefusedAsExisting,
    Failed(String),
}

/// An in-memory store that injects planned faults into puts and counts what happened.
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<InMemory>,
    plan: Mutex<Plan>,
    /// Every put fails while set.
    down: AtomicBool,
    injected: Mutex<Vec<Fault>>,
    late_writes: Arc<Mutex<Vec<(Path, LateWrite)>>>,
    /// Puts in progress now, and the most there ever were.
    puts_in_flight: Arc<AtomicUsize>,
    most_puts_in_flight: AtomicUsize,
}

impl FaultyStore {
    fn new(plan: Plan) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(InMemory::new()),
            plan: Mutex::new(plan),
            down: AtomicBool::new(false),
            injected: Mutex::new(Vec::new()),
            late_writes: Arc::default(),
            puts_in_flight: Arc::default(),
            most_puts_in_flight: AtomicUsize::new(0),
        })
    }

    fn in_turn(faults: impl IntoIterator<Item = Option<Fault>>) -> Arc<Self> {
        Self::new(Plan::InTurn(faults.into_iter().collect()))
    }

    fn injected(&self, fault: Fault) -> usize {
        self.injected.lock().iter().filter(|f| **f == fault).count()
    }

    /// Waits until every late-landing put has reached the store, and returns what each did.
    async fn settled_late_writes(&self) -> Vec<LateWrite> {
        let expected = self
            .injected
            .lock()
            .iter()
            .filter(|f| matches!(f, Fault::LandsLate(_)))
            .count();
        loop {
            let writes = self.late_writes.lock().clone();
            if writes.len() >= expected {
                return writes.into_iter().map(|(_, write)| write).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every object in the store with its bytes.
    async fn objects(&self) -> BTreeMap<Path, Bytes> {
        use futures::TryStreamExt;
        let metas: Vec<ObjectMeta> = self.inner.list(None).try_collect().await.expect("list");
        let mut objects = BTreeMap::new();
        for meta in metas {
            let bytes = self
                .inner
                .get_opts(&meta.location, GetOptions::default())
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            objects.insert(meta.location, bytes);
        }
        objects
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore")
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: what.to_owned().into(),
    }
}

/// Counts a put as in flight until it is answered or dropped (a timed-out attempt).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> object_store::Result<PutResult> {
        let now = self.puts_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let _in_flight = InFlight(Arc::clone(&self.puts_in_flight));
        self.most_puts_in_flight.fetch_max(now, Ordering::AcqRel);
        if self.down.load(Ordering::Acquire) {
            // An outage answers, slowly, with an error.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return Err(injected("store down"));
        }
        let fault = self.plan.lock().next(location);
        if let Some(fault) = fault {
            self.injected.lock().push(fault);
        }
        match fault {
            None => self.inner.put_opts(location, payload, options).await,
            Some(Fault::Error) => Err(injected("503 SlowDown")),
            Some(Fault::Hang) => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Err(injected("hung"))
            }
            Some(Fault::LostResponse) => {
                self.inner.put_opts(location, payload, options).await?;
                Err(injected("connection reset after the put landed"))
            }
            Some(Fault::LandsLate(delay)) => {
                let inner = Arc::clone(&self.inner);
                let late_writes = Arc::clone(&self.late_writes);
                let location = location.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let write = match inner.put_opts(&location, payload, options).await {
                        Ok(_) => LateWrite::Landed,
                        Err(object_store::Error::AlreadyExists { .. }) => {
                            LateWrite::RefusedAsExisting
                        }
                        Err(error) => LateWrite::Failed(error.to_string()),
                    };
                    late_writes.lock().push((location, write));
                });
                std::future::pending().await
            }
            Some(Fault::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                self.inner.put_opts(location, payload, options).await
            }
            Some(Fault::Conflict) => Err(object_store::Error::AlreadyExists {
                path: location.to_string(),
                source: "409 ConditionalRequestConflict".into(),
            }),
            Some(Fault::Torn) => {
                let whole = Bytes::from(payload);
                let half = whole.slice(..whole.len() / 2);
                self.inner
                    .put_opts(location, PutPayload::from(half), options)
                    .await?;
                Err(injected("connection reset mid-upload"))
            }
        }
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

/// The attempt timeout of the brokers here: a hung put is given up after this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// A late write landing this long after its put was sent lands before the retry (sent
/// after the attempt timeout and a 50 ms backoff).
const LANDS_BEFORE_RETRY: Duration = Duration::from_millis(100);
/// A late write landing this long after its put was sent lands after the retry did.
const LANDS_AFTER_RETRY: Duration = Duration::from_secs(2);

async fn broker_with(store: Arc<FaultyStore>, options: BrokerOptions, partitions: u32) -> Broker {
    let store = SegmentStore::new(store, Path::default()).with_attempt_timeout(ATTEMPT_TIMEOUT);
    broker_on_segments(store, options, partitions).await
}

async fn broker_on_segments(
    store: SegmentStore,
    options: BrokerOptions,
    partitions: u32,
) -> Broker {
    let sequencer = crate::tests::memory_sequencer().await;
    let broker = Broker::builder(sequencer, store.clone(), cache(store).await)
        .options(options)
        .build();
    broker
        .create_topic("t", partitions, TopicConfig::default())
        .await
        .expect("create");
    broker
}

async fn broker_on(store: Arc<FaultyStore>) -> Broker {
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        ..BrokerOptions::default()
    };
    broker_with(store, options, 1).await
}

fn records(request: usize) -> Vec<ProduceRecord> {
    (0..10)
        .map(|i| ProduceRecord {
            partition: Some(0),
            key: None,
            value: Some(Bytes::from(format!("r{request}-{i}"))),
            headers: Vec::new(),
            timestamp_ms: None,
        })
        .collect()
}

fn valued(partition: u32, value: String) -> ProduceRecord {
    ProduceRecord {
        partition: Some(partition),
        key: None,
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
        timestamp_ms: None,
    }
}

/// Every record of a partition of "t", from offset 0: (offset, value).
async fn read_partition(broker: &Broker, partition: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = broker
            .fetch(FetchRequest {
                topic: "t".into(),
                partition,
                offset,
                max_records: 1000,
                max_bytes: 1 << 20,
                wait: Duration::ZERO,
                clamp: false,
            })
            .await
            .expect("fetch");
        out.extend(fetched.records.iter().map(|r| {
            let value = r.record.value.as_deref().unwrap_or_default();
            (r.offset, String::from_utf8_lossy(value).into_owned())
        }));
        if fetched.next_offset >= fetched.high_watermark {
            return out;
        }
        assert!(fetched.next_offset > offset, "fetch made no progress");
        offset = fetched.next_offset;
    }
}

/// The value of `floe_buffered_bytes` as a scrape shows it.
fn scraped_buffered_bytes(broker: &Broker) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    broker.register_metrics(&mut registry);
    scraped(&registry, "floe_buffered_bytes")
}

/// The value of one sample (a metric's name with its labels, as the text format writes
/// them) in a scrape of `registry`.
fn scraped(registry: &prometheus_client::registry::Registry, sample: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    let prefix = format!("{sample} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {sample} in {text}"))
        .trim()
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn transient_faults_are_retried_and_nothing_commits_twice() {
    // Faults before most puts; never five in a row, so every upload finally lands.
    let pattern = [
        Some(Fault::Error),
        Some(Fault::LostResponse),
        None,
        Some(Fault::Hang),
        None,
        Some(Fault::LostResponse),
        Some(Fault::Error),
        Some(Fault::Error),
        None,
    ];
    let store = FaultyStore::in_turn(pattern.iter().copied().cycle().take(400));
    let broker = broker_on(store.clone()).await;
    let mut expected = Vec::new();
    for request in 0..30 {
        let acks = broker
            .produce("t", records(request))
            .await
            .expect("acknowledged");
        assert_eq!(acks.len(), 10);
        for (i, ack) in acks.iter().enumerate() {
            assert_eq!(ack.offset, expected.len() as u64, "dense, in order");
            expected.push(format!("r{request}-{i}"));
        }
    }
    let values: Vec<String> = read_partition(&broker, 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(
        values, expected,
        "each acknowledged record once, nothing else"
    );
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(described.partitions[0].high_watermark, 300);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_store_that_keeps_failing_acknowledges_nothing() {
    let store = FaultyStore::in_turn([]);
    store.down.store(true, Ordering::Release);
    let broker = broker_on(store).await;
    let error = broker
        .produce("t", records(0))
        .await
        .expect_err("no durable object, no acknowledgement");
    assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable);
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(described.partitions[0].high_watermark, 0);
    broker.shutdown().await;
}

/// Many produces in flight at once over several partitions, each request to one to three
/// of them, several requests to a segment and several segments uploading at once, while
/// each object's upload meets its own script of faults: errors, hangs, lost answers, and
/// hung puts that land late, before or after their retry. Every upload lands in the end,
/// so every request is acknowledged; every acknowledged record is read back exactly once,
/// at its offset, and nothing else is.
#[tokio::test(start_paused = true)]
async fn concurrent_segments_under_store_faults_commit_each_acknowledged_record_once() {
    const PARTITIONS: u32 = 4;
    const PRODUCERS: usize = 16;
    const REQUESTS: usize = 6;
    let scripts = vec![
        vec![],
        vec![Fault::Error],
        vec![Fault::LostResponse],
        vec![Fault::Hang],
        vec![Fault::LandsLate(LANDS_BEFORE_RETRY)],
        vec![Fault::Error, Fault::Error, Fault::LostResponse],
        vec![Fault::LandsLate(LANDS_AFTER_RETRY)],
        vec![Fault::Hang, Fault::Error],
        vec![Fault::Error, Fault::LandsLate(LANDS_BEFORE_RETRY)],
    ];
    let store = FaultyStore::new(Plan::PerObject {
        scripts,
        seen: HashMap::new(),
    });
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        // A few requests fill a segment, so segments are sealed while others upload.
        segment_max_bytes: 400,
        max_inflight_uploads: 4,
        ..BrokerOptions::default()
    };
    let broker = broker_with(store.clone(), options, PARTITIONS).await;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for request in 0..REQUESTS {
                    // Staggered, so requests meet different segments and different faults.
                    tokio::time::sleep(Duration::from_millis((producer % 5) as u64)).await;
                    let width = 1 + (producer + request) % 3;
                    let records: Vec<ProduceRecord> = (0..width)
                        .map(|i| {
                            let partition = ((producer + request + i) as u32) % PARTITIONS;
                            valued(partition, format!("p{producer}-r{request}-{i}"))
                        })
                        .collect();
                    let values: Vec<Bytes> = records
                        .iter()
                        .map(|r| r.value.clone().expect("value"))
                        .collect();
                    let acks = broker
                        .produce("t", records)
                        .await
                        .expect("every upload lands in the end, so every request is acknowledged");
                    for (ack, value) in acks.into_iter().zip(values) {
                        let value = String::from_utf8_lossy(&value).into_owned();
                        acked.push(((ack.partition, ack.offset), value));
                    }
                }
                acked
            })
        })
        .collect();
    let mut acknowledged: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for producer in producers {
        for (place, value) in producer.await.expect("producer task") {
            if let Some(other) = acknowledged.insert(place, value.clone()) {
                panic!("{place:?} acknowledged to both {other} and {value}");
            }
        }
    }
    let requests: usize = PRODUCERS * REQUESTS;
    assert_eq!(
        acknowledged.len(),
        (0..PRODUCERS)
            .flat_map(|p| (0..REQUESTS).map(move |r| 1 + (p + r) % 3))
            .sum::<usize>()
    );

    let mut stored: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        for (offset, value) in read_partition(&broker, partition).await {
            assert!(
                stored.insert((partition, offset), value).is_none(),
                "offset {offset} of partition {partition} read twice"
            );
        }
    }
    assert_eq!(
        stored, acknowledged,
        "each acknowledged record exactly once at its offset, nothing else"
    );

    // The run really had what it claims: segments uploading side by side, segments
    // shared by several requests, and every kind of fault.
    assert!(
        store.most_puts_in_flight.load(Ordering::Acquire) >= 3,
        "at most {} puts were in flight at once",
        store.most_puts_in_flight.load(Ordering::Acquire)
    );
    let late = store.settled_late_writes().await;
    let objects = store.objects().await;
    assert!(
        objects.len() < requests,
        "{} objects for {requests} requests: no segment held two",
        objects.len()
    );
    for fault in [Fault::Error, Fault::Hang, Fault::LostResponse] {
        assert!(store.injected(fault) > 0, "no {fault:?} was injected");
    }
    let landed = late.iter().filter(|w| **w == LateWrite::Landed).count();
    let refused = late
        .iter()
        .filter(|w| **w == LateWrite::RefusedAsExisting)
        .count();
    assert_eq!(landed, store.injected(Fault::LandsLate(LANDS_BEFORE_RETRY)));
    assert_eq!(refused, store.injected(Fault::LandsLate(LANDS_AFTER_RETRY)));
    assert!(landed > 0 && refused > 0, "{late:?}");
    assert_eq!(broker.buffered_bytes(), 0);
    broker.shutdown().await;
}

/// A put hangs, the broker gives up on it and retries, and the hung request lands while
/// the retry waits out its backoff: the retry finds the object there, with its length,
/// and counts it as the upload. One object, one commit, one acknowledgement.
#[tokio::test(start_paused = true)]
async fn a_hung_put_that_lands_before_its_retry_counts_as_the_upload() {
    let store = FaultyStore::in_turn([Some(Fault::LandsLate(LANDS_BEFORE_RETRY))]);
    let broker = broker_on(store.clone()).await;
    let acks = broker
        .produce("t", records(0))
        .await
        .expect("the late write is the upload");
    assert_eq!(
        acks.iter().map(|a| a.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(store.settled_late_writes().await, vec![LateWrite::Landed]);
    let objects = store.objects().await;
    assert_eq!(objects.len(), 1, "one object: {objects:?}");

    // The next request uploads normally, after it.
    let acks = broker.produce("t", records(1)).await.expect("produce");
    assert_eq!(acks[0].offset, 10);
    let values: Vec<String> = read_partition(&broker, 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    let expected: Vec<String> = (0..2)
        .flat_map(|request| (0..10).map(move |i| format!("r{request}-{i}")))
        .collect();
    assert_eq!(values, expected);
    broker.shutdown().await;
}

/// A put hangs, its retry lands and is committed, and only then does the hung request
/// reach the store: the create-only put refuses it, so the committed object is never
/// replaced and nothing is committed again.
#[tokio::test(start_paused = true)]
async fn a_hung_put_that_lands_after_its_retry_is_refused_and_changes_nothing() {
    let store = FaultyStore::in_turn([Some(Fault::LandsLate(LANDS_AFTER_RETRY))]);
    let broker = broker_on(store.clone()).await;
    let acks = broker
        .produce("t", records(0))
        .await
        .expect("the retry lands");
    assert_eq!(acks.len(), 10);
    let committed = store.objects().await;
    assert_eq!(committed.len(), 1);
    assert!(
        store.late_writes.lock().is_empty(),
        "the late write is still on its way when the retry is acknowledged"
    );
    assert_eq!(
        store.settled_late_writes().await,
        vec![LateWrite::RefusedAsExisting]
    );
    assert_eq!(
        store.objects().await,
        committed,
        "the committed object is unchanged"
    );
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(described.partitions[0].high_watermark, 10, "committed once");
    assert_eq!(read_partition(&broker, 0).await.len(), 10);
    broker.shutdown().await;
}

/// A put is refused as existing while another write of its key is in progress, and
/// nothing is there yet: the upload tries again rather than fail, and lands.
#[tokio::test(start_paused = true)]
async fn a_put_refused_by_a_write_in_progress_is_retried() {
    let store = FaultyStore::in_turn([Some(Fault::Conflict), Some(Fault::Conflict)]);
    let broker = broker_on(store.clone()).await;
    let acks = broker
        .produce("t", records(0))
        .await
        .expect("the third attempt lands");
    assert_eq!(acks.len(), 10);
    assert_eq!(store.injected(Fault::Conflict), 2);
    assert_eq!(store.objects().await.len(), 1);
    assert_eq!(read_partition(&broker, 0).await.len(), 10);
    broker.shutdown().await;
}

/// The first put leaves a torn object under the segment's key and fails; the retry finds
/// an object there whose length is not the segment's. The upload fails rather than
/// commit an index that points into the torn object, and the key is never overwritten.
#[tokio::test(start_paused = true)]
async fn an_object_already_there_with_another_length_is_never_acknowledged() {
    let store = FaultyStore::in_turn([Some(Fault::Torn)]);
    let broker = broker_on(store.clone()).await;
    let error = broker
        .produce("t", records(0))
        .await
        .expect_err("an object of the wrong length is not this segment");
    assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("already exists"), "{error}");
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(
        described.partitions[0].high_watermark, 0,
        "nothing committed"
    );
    assert_eq!(broker.buffered_bytes(), 0);
    let torn = store.objects().await;
    assert_eq!(torn.len(), 1);

    // The next segment has a key of its own and commits; the torn object is an orphan
    // for the lifecycle's sweep, never read.
    let acks = broker.produce("t", records(1)).await.expect("produce");
    assert_eq!(acks[0].offset, 0);
    let values: Vec<String> = read_partition(&broker, 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(
        values,
        (0..10).map(|i| format!("r1-{i}")).collect::<Vec<_>>()
    );
    let objects = store.objects().await;
    assert_eq!(objects.len(), 2);
    for (key, bytes) in &torn {
        assert_eq!(
            objects.get(key),
            Some(bytes),
            "the torn object is left alone"
        );
    }
    broker.shutdown().await;
}

/// While the store is down, every produce fails and gives its buffer back; once it heals,
/// the broker holds nothing back: the buffered-bytes gauge is 0, the upload slots are
/// free, and new produces, more of them than there are slots, all commit from offset 0.
#[tokio::test(start_paused = true)]
async fn after_the_store_heals_the_broker_recovers() {
    const PARTITIONS: u32 = 3;
    const REQUESTS: usize = 12;
    let store = FaultyStore::in_turn([]);
    store.down.store(true, Ordering::Release);
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        segment_max_bytes: 1,
        max_inflight_uploads: 2,
        ..BrokerOptions::default()
    };
    let broker = broker_with(store.clone(), options, PARTITIONS).await;
    let produce_all = |round: usize| {
        let broker = broker.clone();
        async move {
            let requests: Vec<_> = (0..REQUESTS)
                .map(|request| {
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        let partition = (request as u32) % PARTITIONS;
                        let records = (0..3)
                            .map(|i| valued(partition, format!("round{round}-{request}-{i}")))
                            .collect();
                        broker.produce("t", records).await
                    })
                })
                .collect();
            let mut results = Vec::new();
            for request in requests {
                results.push(request.await.expect("produce task"));
            }
            results
        }
    };

    for result in produce_all(0).await {
        let error = result.expect_err("the store is down");
        assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable, "{error}");
    }
    assert_eq!(
        broker.buffered_bytes(),
        0,
        "failed requests give their bytes back"
    );
    assert_eq!(scraped_buffered_bytes(&broker), 0);
    assert!(
        store.most_puts_in_flight.load(Ordering::Acquire) >= 2,
        "segments failed side by side"
    );

    store.down.store(false, Ordering::Release);
    let mut offsets: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for result in produce_all(1).await {
        let acks = result.expect("the store is back");
        for ack in acks {
            offsets.entry(ack.partition).or_default().push(ack.offset);
        }
    }
    for (partition, mut acked) in offsets {
        acked.sort_unstable();
        let expected: Vec<u64> = (0..acked.len() as u64).collect();
        assert_eq!(acked, expected, "partition {partition}: dense from 0");
        let stored = read_partition(&broker, partition).await;
        assert!(stored.iter().all(|(_, value)| value.starts_with("round1-")));
        assert_eq!(stored.len(), acked.len());
    }
    assert_eq!(broker.buffered_bytes(), 0);
    assert_eq!(scraped_buffered_bytes(&broker), 0);
    broker.shutdown().await;
}
