//! Exactly-once appends against a real `floe serve` (issue 19, ADR 0010): an idempotent
//! producer's retry is answered with the original offsets and writes nothing; gaps, stale
//! epochs, unknown producers and wrong expected offsets get their 4xx and write nothing;
//! conditional appends racing for one partition leave a log without gaps or duplicates;
//! and behind a proxy that cuts answers after the broker handled the request, a client
//! that retries without idempotence writes duplicates while `FloeClient`'s default
//! (idempotent) writes each record exactly once.

use std::time::Duration;

use floe_client::api::ProduceRecordJson;
use floe_client::{Encoding, FloeClient, StatusCode};
use floe_tests::FloeProcess;
use floe_tests::chaos::{self, Faults, FaultyProxy};
use serde_json::{Value, json};

async fn call(http: &reqwest::Client, url: &str, body: Value) -> (StatusCode, Value) {
    let response = http.post(url).json(&body).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn high_watermarks(client: &FloeClient, topic: &str) -> Value {
    let described = client.describe_topic(topic).await.expect("describe");
    json!(
        described
            .partitions
            .iter()
            .map(|p| p.high_watermark)
            .collect::<Vec<_>>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_get_the_original_offsets_and_refusals_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    floe_tests::create_topic(&client, "t", 3).await;
    let http = reqwest::Client::new();
    let producers = format!("{}/v1/producers", server.url);
    let (status, producer) = call(&http, &producers, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{producer}");
    let (id, epoch) = (
        producer["producer_id"].clone(),
        producer["producer_epoch"].clone(),
    );
    assert_eq!(epoch, 0);
    let produce = format!("{}/v1/topics/t/records", server.url);
    let body = |sequence: u64, epoch: Value| {
        json!({"producer_id": id, "producer_epoch": epoch, "sequence": sequence,
               "records": [{"value": "a"}, {"key": "k", "value": "b"}, {"value": "c"}]})
    };
    let (status, first) = call(&http, &produce, body(0, json!(0))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // Another writer in between, then the retry.
    client
        .clone()
        .without_idempotence()
        .produce(
            "t",
            (0..3)
                .map(|p| ProduceRecordJson {
                    value: Some(json!("other")),
                    partition: Some(p),
                    ..Default::default()
                })
                .collect(),
            Encoding::Text,
        )
        .await
        .expect("other writer");
    let before = high_watermarks(&client, "t").await;
    let (status, retry) = call(&http, &produce, body(0, json!(0))).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry, first, "a retry answers the original offsets");
    assert_eq!(
        high_watermarks(&client, "t").await,
        before,
        "and writes nothing"
    );

    // Each refusal has its code and writes nothing.
    let (status, gap) = call(&http, &produce, body(2, json!(0))).await;
    assert_eq!(
        (status, gap["error_code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_order_sequence")),
        "{gap}"
    );
    let unknown = json!({"producer_id": 999_999, "producer_epoch": 0, "sequence": 0,
        "records": [{"value": "x"}]});
    let (status, answer) = call(&http, &produce, unknown).await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_producer_id")),
        "{answer}"
    );
    let (status, bumped) = call(
        &http,
        &producers,
        json!({"producer_id": id, "producer_epoch": 0}),
    )
    .await;
    assert_eq!(
        (status, bumped["producer_epoch"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{bumped}"
    );
    let (status, answer) = call(&http, &produce, body(1, json!(0))).await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (StatusCode::CONFLICT, Some("producer_fenced")),
        "{answer}"
    );
    let (status, answer) = call(
        &http,
        &producers,
        json!({"producer_id": id, "producer_epoch": 0}),
    )
    .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (StatusCode::CONFLICT, Some("producer_fenced")),
        "{answer}"
    );
    let partial = json!({"producer_id": id, "records": [{"value": "x"}]});
    let (status, _) = call(&http, &produce, partial).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let conditional = format!(
        "{}/v1/topics/t/partitions/0/records?expected_next_offset=0",
        server.url
    );
    let (status, answer) = call(&http, &conditional, json!({"records": [{"value": "x"}]})).await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("offset_mismatch")),
        "{answer}"
    );
    let actual = before[0].as_u64().expect("hw");
    assert_eq!(
        answer["high_watermark"].as_u64(),
        Some(actual),
        "the actual next offset"
    );
    assert_eq!(
        high_watermarks(&client, "t").await,
        before,
        "no refusal wrote anything"
    );

    // The new epoch starts at sequence 0; the binary framing carries the producer in the
    // query, and its retry is deduplicated too.
    let (status, _) = call(&http, &produce, body(0, json!(1))).await;
    assert_eq!(status, StatusCode::OK);
    let framed = floe_client::binary::encode_produce(&[floe_client::binary::BinaryRecord {
        value: Some("framed".into()),
        ..Default::default()
    }]);
    let url = format!("{produce}?producer_id={id}&producer_epoch=1&sequence=1");
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = http
            .post(&url)
            .header("content-type", floe_client::binary::CONTENT_TYPE)
            .body(framed.clone())
            .send()
            .await
            .expect("binary");
        assert_eq!(response.status(), StatusCode::OK);
        answers.push(response.json::<Value>().await.expect("acks"));
    }
    assert_eq!(answers[0], answers[1]);
    // A conditional append at the right offset commits.
    let conditional = format!(
        "{}/v1/topics/t/partitions/1/records?expected_next_offset={}",
        server.url,
        high_watermarks(&client, "t").await[1]
    );
    let (status, answer) = call(&http, &conditional, json!({"records": [{"value": "x"}]})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Eight writers append to one partition, each at the offset it last saw as the end: each
/// offset has exactly one winner, and the log has no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_appends_race_with_one_winner_per_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    floe_tests::create_topic(&client, "log", 1).await;
    const WRITERS: usize = 8;
    const TARGET: u64 = 200;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (Vec::new(), 0u64);
            let mut next = 0;
            while next < TARGET {
                let value = format!("w{writer}-{next}");
                match client
                    .produce_if_next_offset(
                        "log",
                        0,
                        next,
                        vec![ProduceRecordJson {
                            value: Some(json!(value)),
                            ..Default::default()
                        }],
                        Encoding::Text,
                    )
                    .await
                {
                    Ok(acks) => {
                        assert_eq!(acks.offsets[0].offset, next, "committed where expected");
                        won.push(next);
                        next += 1;
                    }
                    Err(floe_client::ClientError::Api { status, body, .. })
                        if status == StatusCode::PRECONDITION_FAILED =>
                    {
                        lost += 1;
                        next = body.high_watermark.expect("the actual next offset");
                    }
                    Err(error) => panic!("writer {writer}: {error}"),
                }
            }
            (won, lost)
        }));
    }
    let mut winners = std::collections::BTreeMap::new();
    let mut refusals = 0;
    for (writer, task) in tasks.into_iter().enumerate() {
        let (won, lost) = task.await.expect("writer");
        refusals += lost;
        for offset in won {
            assert!(
                winners.insert(offset, writer).is_none(),
                "offset {offset} won twice"
            );
        }
    }
    let log = chaos::read_log(&client, "log", 1).await.remove(0);
    assert_eq!(log.len() as u64, TARGET, "no gap, nothing extra");
    for (offset, value) in &log {
        let writer = winners[offset];
        assert_eq!(
            value,
            &format!("w{writer}-{offset}"),
            "the winner's record at {offset}"
        );
    }
    assert!(refusals > 0, "the writers did race");
    eprintln!("{TARGET} offsets, {refusals} conditional appends refused with 412");
}

/// Producers sending unique values one record at a time, through `url`; each keeps what
/// it was told. `retry` resends a request whose answer was lost (a naive client does that
/// without idempotence; an idempotent `FloeClient` does it itself).
async fn run_producers(
    client: FloeClient,
    producers: usize,
    each: u64,
    naive: bool,
) -> Vec<chaos::Acks> {
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 0..each {
                let value = format!("p{producer}-{n}");
                let record = || {
                    vec![ProduceRecordJson {
                        value: Some(json!(value)),
                        ..Default::default()
                    }]
                };
                let mut attempts = 0;
                let answer = loop {
                    attempts += 1;
                    match client.produce("t", record(), Encoding::Text).await {
                        Ok(answer) => break Some(answer),
                        Err(_) if naive && attempts < 50 => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(error) if naive => panic!("{value}: {error}"),
                        // The idempotent client ran out of retries: not acknowledged.
                        Err(_) => break None,
                    }
                };
                if let Some(answer) = answer {
                    let offset = &answer.offsets[0];
                    acks.push((value, offset.partition, offset.offset));
                }
            }
            acks
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.expect("producer"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_answers_duplicate_naive_retries_but_not_idempotent_ones() {
    let seed = floe_tests::seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let admin = server.client();
    floe_tests::create_topic(&admin, "t", 3).await;
    let upstream = server.url.trim_start_matches("http://").to_owned();
    let faults = Faults {
        cut: 0.15,
        delay: 0.1,
        max_delay: Duration::from_millis(30),
    };

    // Without idempotence, a retried request whose answer was cut is written twice.
    let proxy = FaultyProxy::start(vec![upstream.clone()], faults, seed).await;
    let naive = FloeClient::with_timeout(&proxy.url, Duration::from_secs(10))
        .without_owner_routing()
        .without_idempotence();
    let acks = run_producers(naive, 4, 100, true).await;
    let verdict = chaos::check(&[chaos::read_log(&admin, "t", 3).await], &acks);
    eprintln!(
        "without idempotence: {verdict:?}; {}",
        proxy.counts.summary()
    );
    assert!(
        verdict.duplicated > 0,
        "the checker sees the duplicates: {verdict:?}"
    );
    assert_eq!(verdict.lost, 0);
    drop(proxy);

    // With it (FloeClient's default), each record is written once, at the acknowledged
    // offset, in each producer's order.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let server2 = FloeProcess::start(dir2.path(), &[]);
    let admin2 = server2.client();
    floe_tests::create_topic(&admin2, "t", 3).await;
    let proxy = FaultyProxy::start(
        vec![server2.url.trim_start_matches("http://").to_owned()],
        faults,
        seed,
    )
    .await;
    let idempotent = FloeClient::with_timeout(&proxy.url, Duration::from_secs(10))
        .without_owner_routing()
        .with_retry(floe_client::RetryPolicy {
            attempts: 50,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
        });
    let acks = run_producers(idempotent, 4, 100, false).await;
    let verdict = chaos::check(&[chaos::read_log(&admin2, "t", 3).await], &acks);
    eprintln!("with idempotence: {verdict:?}; {}", proxy.counts.summary());
    assert!(verdict.clean(), "{verdict:?} (seed {seed})");
    assert_eq!(verdict.acknowledged, 400, "every record acknowledged");
    assert_eq!(verdict.records, 400, "and written once");
    assert!(proxy.counts.cut.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// A produce whose caller gives up mid-request (its future dropped while the answer is
/// delayed) leaves its sequence's outcome unknown: the client's next request must not
/// reuse that sequence, or a same-shaped record would be "deduplicated" away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_produce_never_swallows_the_next_one() {
    let seed = floe_tests::seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let admin = server.client();
    floe_tests::create_topic(&admin, "t", 1).await;
    // Every answer is held back 200–300 ms; the caller waits 50 ms.
    let proxy = FaultyProxy::start(
        vec![server.url.trim_start_matches("http://").to_owned()],
        Faults {
            cut: 0.0,
            delay: 1.0,
            max_delay: Duration::from_millis(300),
        },
        seed,
    )
    .await;
    let client = FloeClient::new(&proxy.url).without_owner_routing();
    let record = |value: &str| {
        vec![ProduceRecordJson {
            value: Some(json!(value)),
            ..Default::default()
        }]
    };
    // A first request to get a producer (its answer is delayed, but awaited).
    client
        .produce("t", record("first"), Encoding::Text)
        .await
        .expect("first");
    let mut dropped = 0;
    for attempt in 0..5 {
        let value = format!("dropped-{attempt}");
        if tokio::time::timeout(
            Duration::from_millis(50),
            client.produce("t", record(&value), Encoding::Text),
        )
        .await
        .is_err()
        {
            dropped += 1;
        }
        let value = format!("kept-{attempt}");
        let acks = client
            .produce("t", record(&value), Encoding::Text)
            .await
            .expect("kept");
        let log = chaos::read_log(&admin, "t", 1).await.remove(0);
        assert_eq!(
            log.get(&acks.offsets[0].offset),
            Some(&value),
            "the record acknowledged is the one sent, not an earlier one's offsets"
        );
    }
    assert!(dropped > 0, "no produce was dropped mid-request");
}
