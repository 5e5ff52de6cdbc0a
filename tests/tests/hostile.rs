//! Hostile bodies against a real server, with its memory read from /proc: decoding is
//! counted and reserved before it allocates, so the server's peak resident size stays
//! bounded by its configuration while well-behaved producers keep being answered.

use std::time::Duration;

use floe_client::Encoding;
use floe_client::api::ProduceRecordJson;
use floe_tests::FloeProcess;
use serde_json::Value;

/// The process's peak resident set (VmHWM) in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmHWM")
}

/// `{"records":[{},{},…]}` of about `bytes` bytes: ~`bytes / 3` empty records.
fn empty_json_records(bytes: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes + 16);
    body.extend_from_slice(b"{\"records\":[{}");
    while body.len() + 5 < bytes {
        body.extend_from_slice(b",{}");
    }
    body.extend_from_slice(b"]}");
    body
}

/// A binary-framed body that declares `count` records and carries as many minimal ones
/// as fit in `bytes`.
fn tiny_binary_records(bytes: usize, count: u32) -> Vec<u8> {
    let mut body = count.to_be_bytes().to_vec();
    while body.len() + 22 <= bytes {
        body.extend_from_slice(&(-1i32).to_be_bytes()); // any partition
        body.extend_from_slice(&(-1i64).to_be_bytes()); // broker time
        body.extend_from_slice(&(-1i32).to_be_bytes()); // null key
        body.extend_from_slice(&(-1i32).to_be_bytes()); // null value
        body.extend_from_slice(&0u16.to_be_bytes()); // no headers
    }
    body
}

async fn post(url: String, content_type: &'static str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn four_bodies_of_ten_million_empty_records_stay_small_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let pid = server.pid().expect("running");
    let body = empty_json_records(30_000_000);
    let sends = (0..4).map(|_| {
        post(
            format!("{}/v1/topics/nowhere/records", server.url),
            "application/json",
            body.clone(),
        )
    });
    let statuses = futures::future::join_all(sends).await;
    for status in &statuses {
        assert!(
            (400..500).contains(status),
            "hostile bodies get a 4xx, got {statuses:?}"
        );
    }
    let peak = peak_rss(pid);
    eprintln!(
        "peak RSS after 4 × 30 MB of empty records: {} MiB",
        peak >> 20
    );
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_tiny_records_stays_inside_the_budget_and_good_producers_go_on() {
    const BUDGET: u64 = 96 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start_with_env(
        dir.path(),
        &["--cache-memory-bytes", "8388608"],
        &[("FLOE_SERVER__REQUEST_MEMORY_BYTES", BUDGET.to_string())],
    );
    let pid = server.pid().expect("running");
    let client = server.client();
    floe_tests::create_topic(&client, "t", 4).await;
    let baseline = peak_rss(pid);

    let good = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acked = 0u32;
            for round in 0..40 {
                let records = vec![ProduceRecordJson {
                    value: Some(Value::String(format!("good-{round}"))),
                    ..ProduceRecordJson::default()
                }];
                loop {
                    match client.produce("t", records.clone(), Encoding::Text).await {
                        Ok(_) => break,
                        Err(error) if error.status().is_some_and(|s| s.as_u16() == 429) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(error) => panic!("good producer failed: {error}"),
                    }
                }
                acked += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            acked
        })
    };

    let url = format!("{}/v1/topics/t/records", server.url);
    let json = empty_json_records(32 << 20);
    let binary = tiny_binary_records(32 << 20, 1_500_000);
    for _ in 0..3 {
        let sends = (0..8).map(|i| {
            if i % 2 == 0 {
                post(url.clone(), "application/json", json.clone())
            } else {
                post(
                    url.clone(),
                    "application/vnd.floe.records.v1",
                    binary.clone(),
                )
            }
        });
        let statuses = futures::future::join_all(sends).await;
        for status in &statuses {
            assert!(
                *status == 422 || *status == 429 || *status == 413,
                "hostile bodies get 413/422/429, got {statuses:?}"
            );
        }
    }
    assert_eq!(
        good.await.expect("good producer"),
        40,
        "every good request acked"
    );
    let peak = peak_rss(pid);
    eprintln!(
        "baseline {} MiB, peak {} MiB with a {} MiB request budget",
        baseline >> 20,
        peak >> 20,
        BUDGET >> 20
    );
    // The budget, plus the process's own footprint before the flood, plus a margin for
    // allocator slack and the good producer's buffers.
    assert!(
        peak < baseline + BUDGET + (64 << 20),
        "peak RSS {} MiB over baseline {} MiB + budget",
        peak >> 20,
        baseline >> 20
    );
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("error body is JSON");
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_rules_are_enforced_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start_with_env(
        dir.path(),
        &["--retention-check-interval", "200ms"],
        &[("FLOE_BROKER__MAX_TOPICS", "3".into())],
    );
    let http = reqwest::Client::new();
    let create = |name: &str, config: Value| {
        http.post(format!("{}/v1/topics", server.url))
            .json(&serde_json::json!({"name": name, "partitions": 1, "config": config}))
            .send()
    };
    let produce = |topic: &str, records: Value| {
        http.post(format!("{}/v1/topics/{topic}/records", server.url))
            .json(&serde_json::json!({ "records": records }))
            .send()
    };
    assert_eq!(
        create("short", serde_json::json!({"retention.ms": 1000}))
            .await
            .expect("create")
            .status()
            .as_u16(),
        201
    );

    // A far-future timestamp is refused: it would keep the partition from ever expiring.
    let (status, body) = error_of(
        produce(
            "short",
            serde_json::json!([{"value": "x", "timestamp": i64::MAX}]),
        )
        .await
        .expect("produce"),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (422, Some("invalid_timestamp"))
    );

    // Records from a few seconds ago are accepted and retention trims them.
    let now_ms = |offset: i64| {
        use floe_core::Clock;
        floe_core::SystemClock.now_ms() + offset
    };
    let accepted = produce(
        "short",
        serde_json::json!([{"value": "old", "timestamp": now_ms(-5_000)}]),
    )
    .await
    .expect("produce");
    assert_eq!(accepted.status().as_u16(), 200);
    let client = server.client();
    let mut trimmed = false;
    for _ in 0..100 {
        let described = client.describe_topic("short").await.expect("describe");
        if described.partitions[0].log_start_offset == 1 {
            trimmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trimmed, "retention trims the partition");

    // Below the log start: a 416 that names where to resume, as fields.
    let (status, body) = error_of(
        http.get(format!(
            "{}/v1/topics/short/partitions/0/records?offset=0",
            server.url
        ))
        .send()
        .await
        .expect("fetch"),
    )
    .await;
    assert_eq!(status, 416);
    assert_eq!(body["error_code"], "offset_out_of_range");
    assert_eq!(body["log_start_offset"], 1);
    assert_eq!(body["high_watermark"], 1);

    // A compacted topic keeps the newest record per key; a keyless record has no place.
    assert_eq!(
        create("keyed", serde_json::json!({"cleanup.policy": "compact"}))
            .await
            .expect("create")
            .status()
            .as_u16(),
        201
    );
    let (status, body) = error_of(
        produce(
            "keyed",
            serde_json::json!([{"key": "k", "value": "1"}, {"value": "2"}]),
        )
        .await
        .expect("produce"),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (422, Some("invalid_record"))
    );
    let described = client.describe_topic("keyed").await.expect("describe");
    assert_eq!(
        described.partitions[0].high_watermark, 0,
        "nothing was written"
    );

    // The cluster's topic limit.
    assert_eq!(
        create("third", serde_json::json!({}))
            .await
            .expect("create")
            .status()
            .as_u16(),
        201
    );
    let (status, body) = error_of(
        create("fourth", serde_json::json!({}))
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (409, Some("limit_reached"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_thousands_of_partitions_is_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    floe_tests::create_topic(&client, "wide", 5000).await;
    let records: Vec<ProduceRecordJson> = (0..5000)
        .map(|partition| ProduceRecordJson {
            value: Some(Value::String("x".into())),
            partition: Some(partition),
            ..ProduceRecordJson::default()
        })
        .collect();
    let refused = client
        .produce("wide", records.clone(), Encoding::Text)
        .await
        .expect_err("one commit cannot carry 5,000 batches");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(422));
    assert_eq!(refused.error_code(), Some("too_many_partitions"));
    // Split, the same records go through, and the sequencer kept working throughout.
    for half in records.chunks(2500) {
        client
            .produce("wide", half.to_vec(), Encoding::Text)
            .await
            .expect("half of them");
    }
    let described = client.describe_topic("wide").await.expect("describe");
    let written: u64 = described.partitions.iter().map(|p| p.high_watermark).sum();
    assert_eq!(written, 5000);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_keys_are_one_key_however_they_are_spaced_and_headers_are_bounded_early() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    floe_tests::create_topic(&client, "j", 8).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/topics/j/records?encoding=json", server.url);
    let mut partitions = Vec::new();
    for body in [
        r#"{"records":[{"key":{"b":1,"a":2},"value":{"v": 1}}]}"#,
        r#"{"records":[{"key":{ "a" : 2, "b" : 1 },"value":{"v":2}}]}"#,
    ] {
        let answer: Value = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("produce")
            .json()
            .await
            .expect("ack");
        partitions.push(answer["offsets"][0]["partition"].clone());
    }
    assert_eq!(partitions[0], partitions[1], "one key, one partition");

    // 2,000 headers on one record: refused while decoding, whatever the rest holds.
    let headers: Vec<Value> = (0..2000)
        .map(|i| serde_json::json!({"name": format!("h{i}"), "value": "x"}))
        .collect();
    let body = serde_json::json!({"records": [{"value": "x", "headers": headers}]});
    let refused = http
        .post(format!("{}/v1/topics/j/records", server.url))
        .json(&body)
        .send()
        .await
        .expect("produce");
    assert_eq!(refused.status().as_u16(), 422);
    let described = client.describe_topic("j").await.expect("describe");
    let total: u64 = described.partitions.iter().map(|p| p.high_watermark).sum();
    assert_eq!(total, 2, "nothing more was written");
}
