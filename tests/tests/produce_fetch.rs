//! The core data path over real HTTP against a real `floe serve` process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_client::api::{CreateTopicRequest, HeaderJson, ProduceRecordJson};
use floe_client::binary::BinaryRecord;
use floe_client::{Encoding, FetchOptions, FloeClient};
use floe_core::Clock;
use floe_tests::FloeProcess;
use serde_json::{Value, json};

async fn create(client: &FloeClient, name: &str, partitions: u32) {
    let request = CreateTopicRequest {
        name: name.into(),
        partitions,
        config: BTreeMap::new(),
    };
    client.create_topic(&request).await.expect("create topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_round_trip_in_order_json_and_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create(&client, "orders", 3).await;

    // Producer timestamps from an hour ago: within the default 7-day retention, which
    // would otherwise trim the records while the test reads them.
    let first_timestamp = floe_core::SystemClock.now_ms() - 3_600_000;
    // Expected records per partition, in produce order: (key, value, header, timestamp).
    let mut expected: BTreeMap<u32, Vec<(String, String, String, i64)>> = BTreeMap::new();
    let total = 100_000u64;
    let per_request = 500u64;
    for request in 0..total / per_request {
        let base = request * per_request;
        let records: Vec<(String, String, String, i64, u32)> = (base..base + per_request)
            .map(|i| {
                (
                    format!("key-{}", i % 97),
                    format!("value-{i}"),
                    format!("h{i}"),
                    first_timestamp + i as i64,
                    (i % 3) as u32,
                )
            })
            .collect();
        let acks = if request % 2 == 0 {
            let json_records = records
                .iter()
                .map(
                    |(key, value, header, timestamp, partition)| ProduceRecordJson {
                        key: Some(Value::String(key.clone())),
                        value: Some(Value::String(value.clone())),
                        headers: vec![HeaderJson {
                            name: "trace".into(),
                            value: Some(Value::String(header.clone())),
                        }],
                        partition: Some(*partition),
                        timestamp: Some(*timestamp),
                    },
                )
                .collect();
            client
                .produce("orders", json_records, Encoding::Text)
                .await
                .expect("produce json")
        } else {
            let binary_records: Vec<BinaryRecord> = records
                .iter()
                .map(|(key, value, header, timestamp, partition)| BinaryRecord {
                    partition: Some(*partition),
                    timestamp: Some(*timestamp),
                    key: Some(Bytes::from(key.clone())),
                    value: Some(Bytes::from(value.clone())),
                    headers: vec![("trace".into(), Some(Bytes::from(header.clone())))],
                    ..BinaryRecord::default()
                })
                .collect();
            client
                .produce_binary("orders", &binary_records)
                .await
                .expect("produce binary")
        };
        assert_eq!(acks.offsets.len(), records.len());
        for ((key, value, header, timestamp, partition), ack) in
            records.into_iter().zip(acks.offsets)
        {
            assert_eq!(ack.partition, partition);
            assert_eq!(ack.timestamp, timestamp);
            let list = expected.entry(partition).or_default();
            assert_eq!(
                ack.offset,
                list.len() as u64,
                "offsets are dense from 0 in produce order"
            );
            list.push((key, value, header, timestamp));
        }
    }

    for (partition, wanted) in &expected {
        let records = floe_tests::read_partition(&client, "orders", *partition).await;
        assert_eq!(records.len(), wanted.len());
        for (offset, (record, (key, value, header, timestamp))) in
            records.iter().zip(wanted).enumerate()
        {
            assert_eq!(record.offset, offset as u64);
            assert_eq!(record.key, Some(Value::String(key.clone())));
            assert_eq!(record.value, Some(Value::String(value.clone())));
            assert_eq!(
                record.headers,
                vec![HeaderJson {
                    name: "trace".into(),
                    value: Some(Value::String(header.clone()))
                }]
            );
            assert_eq!(record.timestamp, *timestamp);
        }
    }
    let binary = client
        .fetch_binary("orders", 1, 10, &FetchOptions::default())
        .await
        .expect("binary fetch");
    assert_eq!(binary.records[0].offset, 10);
    assert_eq!(
        binary.records[0].value.as_deref(),
        Some(expected[&1][10].1.as_bytes())
    );
}

#[tokio::test]
async fn fetch_inside_a_batch_offsets_by_time_and_encodings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create(&client, "events", 1).await;
    let records = (0..10)
        .map(|i| ProduceRecordJson {
            value: Some(json!({ "n": i })),
            timestamp: Some(1_000 + i * 10),
            ..ProduceRecordJson::default()
        })
        .collect();
    client
        .produce("events", records, Encoding::Json)
        .await
        .expect("produce");

    let options = FetchOptions {
        encoding: Encoding::Json,
        ..FetchOptions::default()
    };
    let fetched = client.fetch("events", 0, 4, &options).await.expect("fetch");
    assert_eq!(fetched.records.first().map(|r| r.offset), Some(4));
    assert_eq!(
        fetched.records.first().and_then(|r| r.value.clone()),
        Some(json!({ "n": 4 }))
    );
    assert_eq!(fetched.records.len(), 6);
    assert_eq!(fetched.next_offset, 10);

    assert_eq!(
        client
            .offset("events", 0, "1035")
            .await
            .expect("by time")
            .offset,
        4
    );
    assert_eq!(
        client
            .offset("events", 0, "earliest")
            .await
            .expect("earliest")
            .offset,
        0
    );
    assert_eq!(
        client
            .offset("events", 0, "latest")
            .await
            .expect("latest")
            .offset,
        10
    );
    assert_eq!(
        client
            .offset("events", 0, "999999")
            .await
            .expect("future")
            .offset,
        10
    );

    let base64 = FetchOptions {
        encoding: Encoding::Base64,
        max_records: Some(1),
        ..FetchOptions::default()
    };
    let fetched = client
        .fetch("events", 0, 0, &base64)
        .await
        .expect("fetch base64");
    assert_eq!(
        fetched.records[0].value,
        Some(Value::String("eyJuIjowfQ==".into()))
    );
}

/// Waits until `server`'s `/metrics` sample `sample` satisfies `good`, for up to 20 s.
async fn wait_for_metric(server: &FloeProcess, sample: &str, good: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = floe_tests::metric_at(&server.url, sample).await;
        if value.is_some_and(&good) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sample} is still {value:?} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn long_poll_returns_when_a_record_commits_not_when_the_wait_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create(&client, "tail", 1).await;
    // The longest wait the server grants (60 s): within the 30 s the test allows, only the
    // record's commit can answer it.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            let options = FetchOptions {
                wait: Some(Duration::from_secs(60)),
                ..FetchOptions::default()
            };
            client
                .fetch("tail", 0, 0, &options)
                .await
                .expect("long poll")
        })
    };
    // The fetch waits at the empty tail before anything is produced.
    wait_for_metric(&server, "floe_waiting_fetches", |waiting| waiting == 1.0).await;
    assert!(
        !waiter.is_finished(),
        "an empty tail keeps the fetch waiting"
    );
    let record = ProduceRecordJson {
        value: Some(Value::String("wake".into())),
        ..ProduceRecordJson::default()
    };
    client
        .produce("tail", vec![record], Encoding::Text)
        .await
        .expect("produce");
    let fetched = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the commit answers the waiting fetch, not its 60 s deadline")
        .expect("waiter");
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value, Some(Value::String("wake".into())));
    wait_for_metric(&server, "floe_waiting_fetches", |waiting| waiting == 0.0).await;

    // With nothing to wake it, the poll ends empty at its deadline.
    let options = FetchOptions {
        wait: Some(Duration::from_millis(200)),
        ..FetchOptions::default()
    };
    let empty = client
        .fetch("tail", 0, 1, &options)
        .await
        .expect("empty poll");
    assert!(empty.records.is_empty());
    assert_eq!(empty.next_offset, 1);
}

#[tokio::test]
async fn keys_land_where_the_kafka_java_client_puts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create(&client, "keyed", 7).await;
    // murmur2 values from Kafka's UtilsTest; partition = (hash & 0x7fffffff) % 7.
    let cases = [
        ("21", -973_932_308i32),
        ("foobar", -790_332_482),
        ("abc", 479_470_107),
    ];
    for (key, hash) in cases {
        let record = ProduceRecordJson {
            key: Some(Value::String(key.into())),
            value: Some(Value::String("v".into())),
            ..Default::default()
        };
        let acks = client
            .produce("keyed", vec![record], Encoding::Text)
            .await
            .expect("produce");
        assert_eq!(
            acks.offsets[0].partition,
            ((hash & 0x7fff_ffff) as u32) % 7,
            "key {key}"
        );
    }
    // Records with neither key nor partition stick together within one request.
    let records = (0..20)
        .map(|_| ProduceRecordJson {
            value: Some(Value::String("v".into())),
            ..Default::default()
        })
        .collect();
    let acks = client
        .produce("keyed", records, Encoding::Text)
        .await
        .expect("produce");
    assert!(
        acks.offsets
            .windows(2)
            .all(|pair| pair[0].partition == pair[1].partition)
    );
}

#[tokio::test]
async fn topics_admin_and_restart_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    let mut config = BTreeMap::new();
    config.insert("retention.ms".to_owned(), json!(60000));
    config.insert("compression.type".to_owned(), json!("zstd"));
    let created = client
        .create_topic(&CreateTopicRequest {
            name: "admin".into(),
            partitions: 2,
            config,
        })
        .await
        .expect("create");
    assert_eq!(created.config["retention.ms"], json!(60000));
    let grown = client.add_partitions("admin", 4).await.expect("grow");
    assert_eq!(grown.partitions.len(), 4);
    let record = ProduceRecordJson {
        value: Some(Value::String("kept".into())),
        partition: Some(3),
        ..Default::default()
    };
    client
        .produce("admin", vec![record], Encoding::Text)
        .await
        .expect("produce");
    create(&client, "doomed", 1).await;
    client.delete_topic("doomed").await.expect("delete");

    server.stop();
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    let names: Vec<String> = client
        .list_topics()
        .await
        .expect("list")
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["admin".to_owned()]);
    let described = client.describe_topic("admin").await.expect("describe");
    assert_eq!(described.partitions[3].high_watermark, 1);
    let fetched = client
        .fetch("admin", 3, 0, &FetchOptions::default())
        .await
        .expect("fetch");
    assert_eq!(fetched.records[0].value, Some(Value::String("kept".into())));
}

/// The fetch caps of docs/limits.md: `max_records` and `max_bytes` above their maxima are
/// read as the maxima, and 0 is refused with `400 invalid_query`; an answer holds at
/// most `max_records` records, at least one record whatever `max_bytes` says, and never
/// more than 64 batches, with `next_offset` where the next fetch goes on.
#[tokio::test]
async fn fetch_caps_bound_every_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create(&client, "caps", 1).await;
    // 100 requests of 3 records, one after another: 100 batches of 3 records each.
    for request in 0..100u64 {
        let records = (0..3)
            .map(|i| ProduceRecordJson {
                value: Some(json!(format!("request {request} record {i}"))),
                ..ProduceRecordJson::default()
            })
            .collect();
        let acks = client
            .produce("caps", records, Encoding::Json)
            .await
            .expect("produce");
        assert_eq!(acks.offsets[0].offset, request * 3, "request {request}");
    }
    let fetch = |max_records: Option<usize>, max_bytes: Option<usize>, offset: u64| {
        let client = client.clone();
        async move {
            let options = FetchOptions {
                encoding: Encoding::Json,
                max_records,
                max_bytes,
                ..FetchOptions::default()
            };
            client
                .fetch("caps", 0, offset, &options)
                .await
                .expect("fetch")
        }
    };
    let offsets = |fetched: &floe_client::api::FetchResponse| {
        fetched.records.iter().map(|r| r.offset).collect::<Vec<_>>()
    };

    // Batches per answer: 64 of them, however many records and bytes are allowed.
    let most = fetch(Some(10_000), Some(64 << 20), 0).await;
    assert_eq!(offsets(&most), (0..192).collect::<Vec<_>>());
    assert_eq!(most.next_offset, 192);
    assert_eq!(most.high_watermark, 300);
    // Going on from next_offset reads the rest.
    let rest = fetch(Some(10_000), None, most.next_offset).await;
    assert_eq!(offsets(&rest), (192..300).collect::<Vec<_>>());
    assert_eq!(rest.next_offset, 300);

    // Records per answer: exactly max_records, from inside a batch too.
    let five = fetch(Some(5), None, 1).await;
    assert_eq!(offsets(&five), (1..6).collect::<Vec<_>>());
    assert_eq!(five.next_offset, 6);

    // Bytes per answer: records stop before the one that would pass max_bytes, but an
    // answer holds at least one record, so one byte gets exactly the first.
    let one_byte = fetch(None, Some(1), 0).await;
    assert_eq!(offsets(&one_byte), vec![0]);
    assert_eq!(one_byte.next_offset, 1);

    // Above the maxima: read as the maxima; zero: refused, naming the parameter.
    let http = reqwest::Client::new();
    for (query, status) in [
        ("max_records=10001&max_bytes=67108865", 200),
        ("max_records=18446744073709551615", 200),
        ("max_records=0", 400),
        ("max_bytes=0", 400),
    ] {
        let response = http
            .get(format!(
                "{}/v1/topics/caps/partitions/0/records?offset=0&{query}",
                server.url
            ))
            .send()
            .await
            .expect("fetch");
        assert_eq!(response.status().as_u16(), status, "{query}");
        if status == 200 {
            let body: floe_client::api::FetchResponse = response.json().await.expect("answer");
            assert_eq!(offsets(&body), (0..192).collect::<Vec<_>>(), "{query}");
        } else {
            let body: Value = response.json().await.expect("error body");
            assert_eq!(body["error_code"], "invalid_query", "{query}");
            let parameter = query.split('=').next().expect("name");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(parameter)),
                "{query}: {body}"
            );
        }
    }
}
