//! The read path on three brokers over S3 (moto), shown by the brokers' own GET counters:
//! a consumer following a partition at its owner makes no GETs, a catch-up read makes few
//! large ones, and eight concurrent readers on one broker fetch each range once.

use std::collections::BTreeMap;
use std::time::Duration;

use floe_client::api::{CreateTopicRequest, FetchedRecordJson, ProduceRecordJson};
use floe_client::{Encoding, FetchOptions, FloeClient};
use floe_tests::FloeProcess;
use floe_tests::cluster::{BUCKET, FloeCluster};
use serde_json::Value;

const FETCH_GETS: &str = r#"floe_store_get_requests_total{cause="fetch"}"#;
const PREFETCH_GETS: &str = r#"floe_store_get_requests_total{cause="prefetch"}"#;
const STORE_BYTES: &str = "floe_store_get_bytes_total";
const MEMORY_HITS: &str = r#"floe_cache_hits_total{tier="memory"}"#;

/// Small cache blocks and GETs, so a few MiB of history shows the GET arithmetic.
const BLOCK: u64 = 256 * 1024;
const MAX_GET: u64 = 1024 * 1024;

async fn create(client: &FloeClient, name: &str) {
    client
        .create_topic(&CreateTopicRequest {
            name: name.into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await
        .expect("create topic");
}

/// A record as the log holds it: the oracle the readers are checked against is what the
/// producers sent, at the offsets the brokers acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Logged {
    offset: u64,
    key: Option<String>,
    value: Option<String>,
}

/// Produces `(key, value)` pairs to partition 0 and returns them at their acknowledged
/// offsets.
async fn produce(client: &FloeClient, topic: &str, pairs: Vec<(String, String)>) -> Vec<Logged> {
    let records = pairs
        .iter()
        .map(|(key, value)| ProduceRecordJson {
            key: Some(Value::String(key.clone())),
            value: Some(Value::String(value.clone())),
            partition: Some(0),
            ..Default::default()
        })
        .collect();
    let response = client
        .produce(topic, records, Encoding::Text)
        .await
        .expect("produce");
    assert_eq!(response.offsets.len(), pairs.len(), "one offset per record");
    response
        .offsets
        .iter()
        .zip(pairs)
        .map(|(acked, (key, value))| {
            assert_eq!(acked.partition, 0);
            Logged {
                offset: acked.offset,
                key: Some(key),
                value: Some(value),
            }
        })
        .collect()
}

/// A fetched record as the log holds it (keys and values were produced as text).
fn logged(record: &FetchedRecordJson) -> Logged {
    let text = |field: Option<&Value>| field.and_then(Value::as_str).map(str::to_owned);
    Logged {
        offset: record.offset,
        key: text(record.key.as_ref()),
        value: text(record.value.as_ref()),
    }
}

/// Checks a reader saw exactly the produced records, naming the first difference (values
/// are up to 16 KiB, too long to print whole).
fn assert_same_log(read: &[Logged], produced: &[Logged], reader: &str) {
    let short = |record: &Logged| {
        let value = record.value.as_deref().map(|value| {
            let head: String = value.chars().take(24).collect();
            format!("{} bytes {head:?}…", value.len())
        });
        format!(
            "offset {} key {:?} value {value:?}",
            record.offset, record.key
        )
    };
    for (index, (got, want)) in read.iter().zip(produced).enumerate() {
        assert!(
            got == want,
            "{reader}: record {index} is {}, produced {}",
            short(got),
            short(want)
        );
    }
    assert_eq!(read.len(), produced.len(), "{reader}: record count");
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    fetch_gets: f64,
    prefetch_gets: f64,
    store_bytes: f64,
    memory_hits: f64,
}

async fn counters(broker: &FloeProcess) -> Counters {
    Counters {
        fetch_gets: broker.metric(FETCH_GETS).await,
        prefetch_gets: broker.metric(PREFETCH_GETS).await,
        store_bytes: broker.metric(STORE_BYTES).await,
        memory_hits: broker.metric(MEMORY_HITS).await,
    }
}

/// Reads the partition from offset 0 to `end`.
async fn read_all(client: &FloeClient, topic: &str, end: u64) -> Vec<Logged> {
    let options = FetchOptions {
        max_bytes: Some(1 << 20),
        max_records: Some(10_000),
        ..FetchOptions::default()
    };
    let mut offset = 0;
    let mut records = Vec::new();
    while offset < end {
        let fetched = client
            .fetch(topic, 0, offset, &options)
            .await
            .expect("fetch");
        records.extend(fetched.records.iter().map(logged));
        offset = fetched.next_offset;
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reads_at_the_owner_cost_no_gets_and_history_reads_few() {
    let block = BLOCK.to_string();
    let max_get = MAX_GET.to_string();
    let cluster = FloeCluster::start(
        3,
        1,
        &[
            "--linger",
            "20ms",
            "--lease-ttl",
            "3s",
            "--cache-block-bytes",
            &block,
            "--cache-max-get-bytes",
            &max_get,
        ],
    );
    cluster.wait_settled(3, Duration::from_secs(30)).await;

    // --- Tail: producers on every broker, one consumer following at the owner. ---
    create(&cluster.client(0), "tail").await;
    let owner = cluster.owner_of("tail", 0, Duration::from_secs(30)).await;
    let other = (owner + 1) % 3;
    // The consumer starts at another broker; the first answer names the owner.
    let consumer = cluster.broker(other).routing_client();
    let warm_record = produce(
        &cluster.client(other),
        "tail",
        vec![("warm-key".into(), "warm".into())],
    )
    .await;
    let warm = consumer
        .fetch("tail", 0, 0, &FetchOptions::default())
        .await
        .expect("warm-up fetch");
    assert_eq!(
        warm.owner.as_ref().map(|o| o.broker.clone()),
        Some(format!("b{owner}"))
    );
    assert_eq!(consumer.fetch_target("tail", 0), cluster.broker(owner).url);
    let warm_read: Vec<Logged> = warm.records.iter().map(logged).collect();
    assert_same_log(&warm_read, &warm_record, "warm-up fetch");

    let before = counters(cluster.broker(owner)).await;
    let requests = 60;
    let producer = {
        let clients: Vec<FloeClient> = (0..3).map(|i| cluster.client(i)).collect();
        tokio::spawn(async move {
            let mut produced = Vec::new();
            for request in 0..requests {
                let pairs = (0..10)
                    .map(|i| (format!("k{request}-{i}"), format!("t{request}-{i}")))
                    .collect();
                produced.extend(produce(&clients[request % 3], "tail", pairs).await);
            }
            produced
        })
    };
    let follow = FetchOptions {
        wait: Some(Duration::from_secs(5)),
        ..FetchOptions::default()
    };
    let mut offset = warm.next_offset;
    let mut followed = Vec::new();
    while followed.len() < requests * 10 {
        let fetched = consumer
            .fetch("tail", 0, offset, &follow)
            .await
            .expect("tail fetch");
        followed.extend(fetched.records.iter().map(logged));
        offset = fetched.next_offset;
    }
    let received = followed.len();
    // One producer sends its requests in turn, so the acknowledged offsets are its order.
    let produced = producer.await.expect("producer");
    assert_same_log(&followed, &produced, "tail consumer");
    let after = counters(cluster.broker(owner)).await;
    println!(
        "owner b{owner} while following {received} records: fetch GETs {} -> {}, \
         prefetch GETs {} -> {}, memory hits {} -> {}",
        before.fetch_gets,
        after.fetch_gets,
        before.prefetch_gets,
        after.prefetch_gets,
        before.memory_hits,
        after.memory_hits
    );
    assert_eq!(
        after.fetch_gets, before.fetch_gets,
        "the tail consumer at the owner made GETs"
    );
    assert!(
        after.prefetch_gets > before.prefetch_gets,
        "segments written by the other brokers are prefetched by the owner"
    );
    assert!(after.memory_hits > before.memory_hits);

    // --- History: written through the owner, read cold on the two other brokers. ---
    create(&cluster.client(0), "history").await;
    let writer = cluster
        .owner_of("history", 0, Duration::from_secs(30))
        .await;
    let single = (writer + 1) % 3;
    let many = (writer + 2) % 3;
    let (segments_before, bytes_before) = cluster.s3.objects(BUCKET, "cluster/segments/").await;
    let value = "x".repeat(16 * 1024);
    let producers: Vec<_> = (0..4)
        .map(|producer| {
            let client = cluster.client(writer);
            let value = value.clone();
            tokio::spawn(async move {
                let mut produced = Vec::new();
                for request in 0..16 {
                    let pairs = (0..8)
                        .map(|i| {
                            let key = format!("{producer}-{request}-{i}");
                            (key.clone(), format!("{key}-{value}"))
                        })
                        .collect();
                    produced.extend(produce(&client, "history", pairs).await);
                }
                produced
            })
        })
        .collect();
    let mut history = Vec::new();
    for producer in producers {
        history.extend(producer.await.expect("history producer"));
    }
    // Four producers interleave: the acknowledged offsets give the log's order.
    history.sort();
    let records = 4 * 16 * 8;
    assert_eq!(
        history
            .iter()
            .map(|record| record.offset)
            .collect::<Vec<_>>(),
        (0..records as u64).collect::<Vec<_>>(),
        "the acknowledged offsets are dense from 0"
    );
    let (segments_after, bytes_after) = cluster.s3.objects(BUCKET, "cluster/segments/").await;
    let segments = segments_after - segments_before;
    let stored_bytes = bytes_after - bytes_before;
    let history_bytes = stored_bytes as f64;

    let before = counters(cluster.broker(single)).await;
    let read = read_all(&cluster.client(single), "history", records as u64).await;
    assert_same_log(&read, &history, "one cold reader");
    let after = counters(cluster.broker(single)).await;
    let gets = after.fetch_gets - before.fetch_gets;
    let ideal = (history_bytes / MAX_GET as f64).ceil();
    println!(
        "one cold reader of {:.1} MiB: {gets} GETs ({ideal} at {} KiB per GET; {segments} \
         segment objects in the bucket), {:.1} MiB from the store",
        history_bytes / 1048576.0,
        MAX_GET / 1024,
        (after.store_bytes - before.store_bytes) / 1048576.0
    );
    // Runs of blocks are cut at segment ends, so the floor is one GET per segment touched
    // beyond the byte arithmetic.
    assert!(
        gets <= ideal + segments as f64,
        "{gets} GETs for {history_bytes} bytes"
    );

    // Eight concurrent readers on a cold broker: each range is fetched once.
    let before = counters(cluster.broker(many)).await;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let client = cluster.client(many);
            tokio::spawn(async move { read_all(&client, "history", records as u64).await })
        })
        .collect();
    for (index, reader) in readers.into_iter().enumerate() {
        let read = reader.await.expect("reader");
        assert_same_log(&read, &history, &format!("concurrent cold reader {index}"));
    }
    let after = counters(cluster.broker(many)).await;
    let fetched = after.store_bytes - before.store_bytes;
    println!(
        "eight concurrent cold readers: {} GETs, {:.1} MiB from the store",
        after.fetch_gets - before.fetch_gets,
        fetched / 1048576.0
    );
    assert!(
        fetched <= stored_bytes as f64,
        "{fetched} bytes fetched for {stored_bytes} bytes stored: some range was fetched twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_tier_serves_reads_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = [
        "--cache-disk-bytes",
        "268435456",
        "--cache-block-bytes",
        "262144",
    ];
    let mut server = FloeProcess::start(dir.path(), &flags);
    create(&server.client(), "kept").await;
    let value = "y".repeat(8 * 1024);
    let mut produced = Vec::new();
    for request in 0..16 {
        let pairs = (0..16)
            .map(|i| (format!("{request}-{i}"), format!("{request}-{i}-{value}")))
            .collect();
        produced.extend(produce(&server.client(), "kept", pairs).await);
    }
    let records = 16 * 16;
    let before = read_all(&server.client(), "kept", records).await;
    assert_same_log(&before, &produced, "before the restart");
    // A graceful stop flushes the memory tier to disk.
    server.stop();

    let server = FloeProcess::start(dir.path(), &flags);
    let after = read_all(&server.client(), "kept", records).await;
    assert_same_log(&after, &produced, "after the restart");
    let disk_hits = server.metric(r#"floe_cache_hits_total{tier="disk"}"#).await;
    let gets = server.metric(FETCH_GETS).await;
    println!("after the restart: {disk_hits} disk-tier hits, {gets} GETs");
    assert!(disk_hits > 0.0, "the disk tier was not reused");
    assert_eq!(gets, 0.0, "every block came from the disk tier");
}
