//! Retention and the object lifecycle on real processes: expired data leaves the index and
//! the bucket (3 brokers on etcd + moto), an orphan left by a broker that died between
//! upload and commit is deleted after the grace period and never read, and under a steady
//! flood of small flushes the objects and index entries stay bounded while every record
//! stays readable. Readers running throughout see no errors but 416s for offsets that
//! really expired, and never torn data. On S3 the default linger bounds flush PUTs to about
//! one per 100 ms whatever the request rate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_client::api::{CreateTopicRequest, ProduceRecordJson};
use floe_client::{Encoding, FetchOptions, FloeClient};
use floe_tests::cluster::{BUCKET, FloeCluster};
use floe_tests::{FloeProcess, read_partition};
use serde_json::Value;

const SEGMENTS_PREFIX: &str = "cluster/segments/";
const LIVE_OBJECTS: &str = r#"floe_objects{state="live"}"#;

async fn create(client: &FloeClient, name: &str, partitions: u32, config: &[(&str, &str)]) {
    client
        .create_topic(&CreateTopicRequest {
            name: name.into(),
            partitions,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect::<BTreeMap<_, _>>(),
        })
        .await
        .expect("create topic");
}

/// Values name their partition and offset, so a reader can tell a torn or misplaced record.
fn value_for(partition: u32, offset: u64) -> String {
    format!("p{partition}-o{offset}-{}", "x".repeat(64))
}

/// Produces `rounds` requests, each with one record for every partition; records carry the
/// offsets they will get (one producer, so offsets are predictable).
async fn produce_rounds(
    client: &FloeClient,
    topic: &str,
    partitions: u32,
    first: u64,
    rounds: u64,
) {
    for round in first..first + rounds {
        let records = (0..partitions)
            .map(|partition| ProduceRecordJson {
                value: Some(Value::String(value_for(partition, round))),
                partition: Some(partition),
                ..Default::default()
            })
            .collect();
        let acks = client
            .produce(topic, records, Encoding::Text)
            .await
            .expect("produce");
        assert!(acks.offsets.iter().all(|ack| ack.offset == round));
    }
}

/// Reads partitions from their start over and over until `stop`, checking every record and
/// that every error is a 416 for an offset below the log start. Returns (records, 416s).
fn spawn_reader(
    client: FloeClient,
    topic: &'static str,
    partitions: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (mut records, mut expired) = (0u64, 0u64);
        let options = FetchOptions {
            max_records: Some(7),
            ..FetchOptions::default()
        };
        let mut offsets = vec![0u64; partitions as usize];
        while !stop.load(Ordering::Relaxed) {
            for partition in 0..partitions {
                let offset = &mut offsets[partition as usize];
                match client.fetch(topic, partition, *offset, &options).await {
                    Ok(fetched) => {
                        for record in &fetched.records {
                            assert_eq!(
                                record.value,
                                Some(Value::String(value_for(partition, record.offset))),
                                "record at {partition}/{} is not the one written there",
                                record.offset
                            );
                        }
                        records += fetched.records.len() as u64;
                        *offset = if fetched.next_offset >= fetched.high_watermark {
                            fetched.log_start_offset
                        } else {
                            fetched.next_offset
                        };
                    }
                    Err(error) => {
                        assert_eq!(error.error_code(), Some("offset_out_of_range"), "{error}");
                        let described = client.describe_topic(topic).await.expect("describe");
                        let start = described.partitions[partition as usize].log_start_offset;
                        assert!(
                            start > *offset,
                            "416 for {offset}, but the log starts at {start}"
                        );
                        expired += 1;
                        *offset = start;
                    }
                }
            }
        }
        (records, expired)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_data_leaves_the_index_and_the_bucket() {
    let cluster = FloeCluster::start(
        3,
        1,
        &[
            "--linger",
            "20ms",
            "--retention-check-interval",
            "300ms",
            "--lifecycle-interval",
            "500ms",
            "--object-grace",
            "2s",
            "--compaction-interval",
            "500ms",
            "--compaction-min-age",
            "1s",
        ],
    );
    cluster.wait_settled(3, Duration::from_secs(30)).await;
    let client = cluster.client(0);
    create(&client, "expiring", 4, &[("retention.ms", "2000")]).await;
    create(&client, "kept", 1, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(cluster.client(1), "expiring", 4, Arc::clone(&stop));

    produce_rounds(&client, "expiring", 4, 0, 60).await;
    produce_rounds(&client, "kept", 1, 0, 5).await;
    let (written_count, written_bytes) = cluster.s3.objects(BUCKET, SEGMENTS_PREFIX).await;
    assert!(written_count >= 10, "{written_count} objects");

    // Retention moves every partition's start to its end.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let described = client.describe_topic("expiring").await.expect("describe");
        if described
            .partitions
            .iter()
            .all(|p| p.log_start_offset == 60 && p.high_watermark == 60)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not expire the data: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A fetch of an expired offset is a 416; clamped, it starts at the log start.
    let below = client
        .fetch("expiring", 0, 3, &FetchOptions::default())
        .await
        .expect_err("expired offset");
    assert_eq!(below.status().map(|s| s.as_u16()), Some(416));
    let clamped = client
        .fetch(
            "expiring",
            0,
            3,
            &FetchOptions {
                clamp: true,
                ..FetchOptions::default()
            },
        )
        .await
        .expect("clamped fetch");
    assert_eq!((clamped.next_offset, clamped.records.len()), (60, 0));

    // The bucket falls back to the objects the live data needs: the one "kept" partition,
    // whose five flushes compaction rewrites into per-partition objects. Passes that find
    // them at different ages leave up to `compaction_fan_in - 1` (3) of one level, since a
    // fourth would merge them; how many depends on timing, so the bound is asserted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (count, bytes) = loop {
        let (count, bytes) = cluster.s3.objects(BUCKET, SEGMENTS_PREFIX).await;
        let live = cluster.broker(0).metric(LIVE_OBJECTS).await as usize;
        if count == live && count <= 3 {
            break (count, bytes);
        }
        assert!(
            Instant::now() < deadline,
            "bucket still holds {count} objects ({bytes} bytes), {live} live"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "bucket: {written_count} objects / {written_bytes} bytes written, \
         {count} / {bytes} after expiry"
    );
    assert!(bytes < written_bytes);
    let kept = read_partition(&client, "kept", 0).await;
    assert_eq!(kept.len(), 5);
    assert!(
        kept.iter()
            .all(|r| r.value == Some(Value::String(value_for(0, r.offset))))
    );

    stop.store(true, Ordering::Relaxed);
    let (records, expired) = reader.await.expect("reader");
    eprintln!("reader: {records} records, {expired} expired-offset answers");
    assert!(records > 0);
}

fn segment_files(data_dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(data_dir.join("objects").join("segments")) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".seg"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_of_a_crash_between_upload_and_commit_is_deleted_and_never_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--object-grace", "2s", "--lifecycle-interval", "500ms"];
    let mut doomed = FloeProcess::start_with_env(
        dir.path(),
        &flags,
        &[("FLOE_TEST_CRASH_AFTER_UPLOAD", "1".into())],
    );
    create(&doomed.client(), "o", 1, &[]).await;
    let lost = doomed
        .client()
        .produce(
            "o",
            vec![ProduceRecordJson {
                value: Some(Value::String("never acknowledged".into())),
                ..Default::default()
            }],
            Encoding::Text,
        )
        .await;
    assert!(lost.is_err(), "the broker dies before it acknowledges");
    doomed.kill();
    let orphans = segment_files(dir.path());
    assert_eq!(
        orphans.len(),
        1,
        "one uploaded, uncommitted object: {orphans:?}"
    );

    let broker = FloeProcess::start(dir.path(), &flags);
    let client = broker.client();
    let described = client.describe_topic("o").await.expect("describe");
    assert_eq!(described.partitions[0].high_watermark, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !segment_files(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "the orphan was not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        broker
            .metric(r#"floe_objects_deleted_total{reason="orphan"}"#)
            .await
            >= 1.0
    );
    // Produce works on, and the lost record never shows.
    produce_rounds(&client, "o", 1, 0, 3).await;
    let records = read_partition(&client, "o", 0).await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].value, Some(Value::String(value_for(0, 0))));
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Small flushes every ~10 ms across many partitions: compaction keeps objects and index
/// entries bounded, and every record stays readable. `FLOE_SOAK_SECONDS` and
/// `FLOE_SOAK_PARTITIONS` lengthen it (`docs/benchmarks.md` has a 10-minute, 100-partition
/// run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_flushes_stay_bounded_and_readable() {
    let seconds = env_or("FLOE_SOAK_SECONDS", 20);
    let partitions = env_or("FLOE_SOAK_PARTITIONS", 20) as u32;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = FloeProcess::start(
        dir.path(),
        &[
            "--linger",
            "10ms",
            "--compaction-interval",
            "1s",
            "--compaction-min-age",
            "2s",
            "--object-grace",
            "2s",
            "--lifecycle-interval",
            "1s",
        ],
    );
    let client = broker.client();
    create(&client, "flood", partitions, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(broker.client(), "flood", partitions, Arc::clone(&stop));
    let produced = Arc::new(AtomicU64::new(0));
    let producer = {
        let (client, produced) = (client.clone(), Arc::clone(&produced));
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut round = 0;
            while Instant::now() < end {
                produce_rounds(&client, "flood", partitions, round, 1).await;
                round += 1;
                produced.store(round, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            round
        })
    };
    let started = Instant::now();
    let mut peak = (0usize, 0f64);
    while !producer.is_finished() {
        tokio::time::sleep(Duration::from_secs(2).min(Duration::from_secs(seconds / 6 + 1))).await;
        let objects = segment_files(dir.path()).len();
        let entries = broker.metric("floe_index_entries").await;
        peak = (peak.0.max(objects), peak.1.max(entries));
        eprintln!(
            "soak t={:>4}s flushes≈{} objects={objects} index_entries={entries}",
            started.elapsed().as_secs(),
            produced.load(Ordering::Relaxed),
        );
    }
    let rounds = producer.await.expect("producer");
    // Bounded while it runs, not only once it settles. Live at any time: the flushes of
    // the last few seconds (minimum age, one interval, the grace period and a pass's time:
    // 10 s in all), plus per partition a few compacted objects and those of the last
    // passes waiting out the grace period. Without compaction every flush adds an object
    // and an entry per partition: the entries pass this bound within the default 20 s
    // (objects only in a longer run, as flush objects are few next to compacted ones).
    let flushes_per_second = rounds as f64 / seconds as f64;
    let recent_flushes = (flushes_per_second * 10.0) as usize;
    let live_objects = recent_flushes + partitions as usize * 16;
    let live_entries = (recent_flushes + 8) * partitions as usize;
    assert!(
        peak.0 <= live_objects && peak.1 as usize <= live_entries,
        "peak {} objects / {} entries while producing {flushes_per_second:.0} flushes/s; \
         bound {live_objects} / {live_entries}",
        peak.0,
        peak.1
    );
    // Let the last flushes age, compact and their objects pass the grace period.
    let deadline = Instant::now() + Duration::from_secs(60);
    let bound = partitions as usize * 8;
    let (objects, entries) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let objects = segment_files(dir.path()).len();
        let entries = broker.metric("floe_index_entries").await as usize;
        if objects <= bound && entries <= bound {
            break (objects, entries);
        }
        assert!(
            Instant::now() < deadline,
            "{objects} objects and {entries} index entries after {rounds} flushes; bound {bound}"
        );
    };
    eprintln!(
        "soak done: {rounds} requests × {partitions} partitions; peak {} objects / {} entries; \
         settled {objects} objects / {entries} entries; compactions flush={} merge={}",
        peak.0,
        peak.1,
        broker
            .metric(r#"floe_compactions_total{kind="flush"}"#)
            .await,
        broker
            .metric(r#"floe_compactions_total{kind="merge"}"#)
            .await,
    );
    for partition in 0..partitions {
        let records = read_partition(&client, "flood", partition).await;
        assert_eq!(records.len() as u64, rounds, "partition {partition}");
        for (offset, record) in records.iter().enumerate() {
            assert_eq!(record.offset, offset as u64);
            assert_eq!(
                record.value,
                Some(Value::String(value_for(partition, offset as u64)))
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (read, expired) = reader.await.expect("reader");
    assert_eq!(expired, 0, "nothing expires on this topic");
    assert!(read > 0);
}

/// On S3 the default linger (100 ms) is a cost bound: however many produce requests
/// arrive, a broker flushes at most once per linger (plus a segment sealed by size, which
/// these small records never fill), so PUTs stay near 10 a second while requests run to
/// hundreds. Compaction is held off so every PUT counted is a flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_linger_bounds_flush_puts_whatever_the_request_rate() {
    let s3 = floe_tests::s3::S3Server::start("linger");
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = FloeProcess::start_with_env(
        dir.path(),
        &["--store", "s3://linger/p", "--compaction-interval", "1h"],
        &s3.env(),
    );
    let client = broker.client();
    create(&client, "steady", 8, &[]).await;
    let puts = r"floe_store_put_requests_total";
    // A hedge (a second upload beside one slower than 1 s) is a PUT but not a flush.
    let hedges = r#"floe_store_upload_hedges_total{outcome="started"}"#;
    let before = broker.metric(puts).await - broker.metric(hedges).await;
    let started = Instant::now();
    let producers: Vec<_> = (0..16u32)
        .map(|producer| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut requests = 0u64;
                while started.elapsed() < Duration::from_secs(5) {
                    let record = ProduceRecordJson {
                        value: Some(Value::String(format!("{producer}-{requests}"))),
                        partition: Some(producer % 8),
                        ..Default::default()
                    };
                    client
                        .produce("steady", vec![record], Encoding::Text)
                        .await
                        .expect("produce");
                    requests += 1;
                }
                requests
            })
        })
        .collect();
    let mut requests = 0;
    for producer in producers {
        requests += producer.await.expect("producer");
    }
    let elapsed = started.elapsed();
    let flushes = broker.metric(puts).await - broker.metric(hedges).await - before;
    // One open segment at a time, each flushed a linger after its first record: at most
    // one flush per 100 ms of the run, and one for the segment open when it began.
    let bound = (elapsed.as_millis() / 100) as f64 + 1.0;
    eprintln!(
        "s3 linger: {requests} produce requests in {elapsed:?} made {flushes} flush PUTs \
         (bound {bound})"
    );
    assert!(flushes > 0.0, "nothing was flushed");
    assert!(
        flushes <= bound,
        "{flushes} PUTs in {elapsed:?}: more than one per linger"
    );
    assert!(
        requests as f64 >= 4.0 * flushes,
        "{requests} requests for {flushes} PUTs: the linger batched little"
    );
}
