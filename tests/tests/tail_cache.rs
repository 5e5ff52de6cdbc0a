//! The read path on three brokers over S3 (moto), shown by the brokers' own GET counters:
//! a consumer following a partition at its owner makes no GETs, a catch-up read makes few
//! large ones, and eight concurrent readers on one broker fetch each range once.

use std::collections::BTreeMap;
use std::time::Duration;

use floe_client::api::{CreateTopicRequest, ProduceRecordJson};
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

async fn produce(client: &FloeClient, topic: &str, values: Vec<String>) {
    let records = values
        .into_iter()
        .map(|value| ProduceRecordJson {
            value: Some(Value::String(value)),
            partition: Some(0),
            ..Default::default()
        })
        .collect();
    client
        .produce(topic, records, Encoding::Text)
        .await
        .expect("produce");
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

/// Reads the partition from offset 0 to `end` and returns the values.
async fn read_all(client: &FloeClient, topic: &str, end: u64) -> Vec<String> {
    let options = FetchOptions {
        max_bytes: Some(1 << 20),
        max_records: Some(10_000),
        ..FetchOptions::default()
    };
    let mut offset = 0;
    let mut values = Vec::new();
    while offset < end {
        let fetched = client
            .fetch(topic, 0, offset, &options)
            .await
            .expect("fetch");
        for record in &fetched.records {
            values.push(
                record
                    .value
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        offset = fetched.next_offset;
    }
    values
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
    produce(&cluster.client(other), "tail", vec!["warm".into()]).await;
    let warm = consumer
        .fetch("tail", 0, 0, &FetchOptions::default())
        .await
        .expect("warm-up fetch");
    assert_eq!(
        warm.owner.as_ref().map(|o| o.broker.clone()),
        Some(format!("b{owner}"))
    );
    assert_eq!(consumer.fetch_target("tail", 0), cluster.broker(owner).url);

    let before = counters(cluster.broker(owner)).await;
    let requests = 60;
    let producer = {
        let clients: Vec<FloeClient> = (0..3).map(|i| cluster.client(i)).collect();
        tokio::spawn(async move {
            for request in 0..requests {
                let values = (0..10).map(|i| format!("t{request}-{i}")).collect();
                produce(&clients[request % 3], "tail", values).await;
            }
        })
    };
    let follow = FetchOptions {
        wait: Some(Duration::from_secs(5)),
        ..FetchOptions::default()
    };
    let mut offset = warm.next_offset;
    let mut received = 0;
    while received < requests * 10 {
        let fetched = consumer
            .fetch("tail", 0, offset, &follow)
            .await
            .expect("tail fetch");
        received += fetched.records.len();
        offset = fetched.next_offset;
    }
    producer.await.expect("producer");
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
                for request in 0..16 {
                    let values = (0..8)
                        .map(|i| format!("{producer}-{request}-{i}-{value}"))
                        .collect();
                    produce(&client, "history", values).await;
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("history producer");
    }
    let records = 4 * 16 * 8;
    let (segments_after, bytes_after) = cluster.s3.objects(BUCKET, "cluster/segments/").await;
    let segments = segments_after - segments_before;
    let stored_bytes = bytes_after - bytes_before;
    let history_bytes = stored_bytes as f64;

    let before = counters(cluster.broker(single)).await;
    let read = read_all(&cluster.client(single), "history", records as u64).await;
    assert_eq!(read.len(), records);
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
    for reader in readers {
        assert_eq!(
            reader.await.expect("reader"),
            read,
            "every reader sees the same log"
        );
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
    for request in 0..16 {
        let values = (0..16).map(|i| format!("{request}-{i}-{value}")).collect();
        produce(&server.client(), "kept", values).await;
    }
    let records = 16 * 16;
    let before = read_all(&server.client(), "kept", records).await;
    // A graceful stop flushes the memory tier to disk.
    server.stop();

    let server = FloeProcess::start(dir.path(), &flags);
    let after = read_all(&server.client(), "kept", records).await;
    assert_eq!(after, before);
    let disk_hits = server.metric(r#"floe_cache_hits_total{tier="disk"}"#).await;
    let gets = server.metric(FETCH_GETS).await;
    println!("after the restart: {disk_hits} disk-tier hits, {gets} GETs");
    assert!(disk_hits > 0.0, "the disk tier was not reused");
    assert_eq!(gets, 0.0, "every block came from the disk tier");
}
