//! `/metrics` as Prometheus scrapes it: a valid OpenMetrics exposition (checked by a
//! strict parser), with every name dashboards and earlier releases relied on, and the
//! latency histograms counting real requests.

use floe_client::Encoding;
use floe_client::api::ProduceRecordJson;
use floe_tests::FloeProcess;
use serde_json::Value;

/// Every sample `/metrics` showed before the registry, with the labels it had.
const KEPT: &[&str] = &[
    "floe_buffered_bytes",
    "floe_sequencer_applied_index",
    "floe_retention_trims_total",
    "floe_objects_deleted_total{reason=\"dead\"}",
    "floe_objects_deleted_total{reason=\"orphan\"}",
    "floe_compactions_total{kind=\"flush\"}",
    "floe_compactions_total{kind=\"merge\"}",
    "floe_compactions_total{kind=\"clean\"}",
    "floe_compaction_conflicts_total",
    "floe_compaction_bytes_total{direction=\"read\"}",
    "floe_compaction_bytes_total{direction=\"written\"}",
    "floe_background_job_errors_total",
    "floe_background_throttled_seconds_total",
    "floe_objects{state=\"live\"}",
    "floe_objects{state=\"dead\"}",
    "floe_live_bytes",
    "floe_index_entries",
    "floe_cache_hits_total{tier=\"memory\"}",
    "floe_cache_hits_total{tier=\"disk\"}",
    "floe_cache_misses_total",
    "floe_store_get_requests_total{cause=\"fetch\"}",
    "floe_store_get_requests_total{cause=\"prefetch\"}",
    "floe_store_get_requests_total{cause=\"background\"}",
    "floe_store_get_bytes_total",
    "floe_store_put_requests_total",
    "floe_fetch_bytes_total{source=\"cache\"}",
    "floe_fetch_bytes_total{source=\"store\"}",
    "floe_cache_blocks_written_total",
    "floe_cache_corrupt_blocks_total",
    "floe_cache_memory_bytes",
    "floe_cache_memory_capacity_bytes",
    "kafka_topic_partitions{topic=\"orders\"}",
    "kafka_topic_partition_current_offset{topic=\"orders\",partition=\"0\"}",
    "kafka_topic_partition_current_offset{topic=\"orders\",partition=\"1\"}",
    "kafka_topic_partition_oldest_offset{topic=\"orders\",partition=\"1\"}",
];

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_keep_every_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A snapshot every 3 entries, so the snapshot stages have samples too.
    let server = FloeProcess::start(dir.path(), &["--snapshot-every", "3"]);
    let client = server.client();
    floe_tests::create_topic(&client, "orders", 2).await;
    for round in 0..3 {
        let records = (0..5)
            .map(|i| ProduceRecordJson {
                value: Some(Value::String(format!("r{round}-{i}"))),
                partition: Some(1),
                ..ProduceRecordJson::default()
            })
            .collect();
        client
            .produce("orders", records, Encoding::Text)
            .await
            .expect("produce");
    }
    floe_tests::read_partition(&client, "orders", 1).await;
    // A group with a committed offset, so the group families have samples to parse.
    client
        .commit_offsets(
            "audit",
            &floe_client::api::CommitRequest {
                offsets: vec![floe_client::api::OffsetToCommit {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 10,
                    metadata: None,
                }],
                ..Default::default()
            },
        )
        .await
        .expect("simple commit");

    let response = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("scrape");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|error| panic!("/metrics is not valid OpenMetrics: {error:?}\n{text}"));
    assert!(
        exposition
            .families
            .contains_key("floe_produce_latency_seconds")
    );

    for sample in KEPT {
        assert!(
            floe_tests::metric_at(&server.url, sample).await.is_some(),
            "{sample} is missing from /metrics:\n{text}"
        );
    }
    let current = floe_tests::metric_at(
        &server.url,
        "kafka_topic_partition_current_offset{topic=\"orders\",partition=\"1\"}",
    )
    .await;
    assert_eq!(current, Some(15.0));
    let puts = floe_tests::metric_at(&server.url, "floe_store_put_requests_total").await;
    assert!(
        puts.is_some_and(|puts| puts >= 1.0),
        "segment PUTs counted: {puts:?}"
    );
    // Uploads are not hedged on a local store, and both outcomes are exported anyway.
    for outcome in ["started", "won"] {
        let sample = format!("floe_store_upload_hedges_total{{outcome=\"{outcome}\"}}");
        let hedges = floe_tests::metric_at(&server.url, &sample).await;
        assert_eq!(hedges, Some(0.0), "{sample}");
    }
    // The background budget lies between `jobs.min_bytes_per_second` and
    // `jobs.bytes_per_second` (where in between depends on how quick the segments were).
    let budget = floe_tests::metric_at(&server.url, "floe_background_bytes_per_second").await;
    let (floor, ceiling) = (8.0 * 1024.0 * 1024.0, 64.0 * 1024.0 * 1024.0);
    assert!(
        budget.is_some_and(|budget| (floor..=ceiling).contains(&budget)),
        "{budget:?}"
    );
    let yields = floe_tests::metric_at(&server.url, "floe_background_yields_total").await;
    assert!(yields.is_some(), "floe_background_yields_total is exported");
    let lag = floe_tests::metric_at(
        &server.url,
        "kafka_consumergroup_lag{consumergroup=\"audit\",topic=\"orders\",partition=\"1\"}",
    )
    .await;
    assert_eq!(lag, Some(5.0));
    assert!(
        exposition
            .families
            .contains_key("kafka_consumergroup_current_offset")
    );

    // The histograms count the requests just made: three produces, each stage of at least
    // one segment, and the fetch that read the partition back.
    let count = |name: &str| {
        let name = name.to_owned();
        let url = server.url.clone();
        async move { floe_tests::metric_at(&url, &name).await.unwrap_or(0.0) }
    };
    assert_eq!(count("floe_produce_latency_seconds_count").await, 3.0);
    for stage in [
        "segment_wait",
        "upload_queue",
        "upload",
        "commit_order",
        "commit",
    ] {
        let sample = format!("floe_produce_stage_seconds_count{{stage=\"{stage}\"}}");
        assert!(count(&sample).await >= 1.0, "{sample}");
    }
    // And each of the three requests passed each of its own stages once.
    for stage in ["admit", "segment", "resume"] {
        let sample = format!("floe_produce_request_stage_seconds_count{{stage=\"{stage}\"}}");
        assert_eq!(count(&sample).await, 3.0, "{sample}");
    }
    // Each produce came to an idle pipeline, which sealed its segment at once.
    let sealed = |reason: &str| format!("floe_segments_sealed_total{{reason=\"{reason}\"}}");
    assert_eq!(count(&sealed("idle")).await, 3.0);
    assert_eq!(count(&sealed("linger")).await, 0.0);
    assert!(count("floe_fetch_latency_seconds_count").await >= 1.0);
    for stage in ["index", "read", "decode", "encode"] {
        let sample = format!("floe_fetch_stage_seconds_count{{stage=\"{stage}\"}}");
        assert!(count(&sample).await >= 1.0, "{sample}");
    }
    // Long-poll wake-ups are exported from the start, every cause and outcome.
    for cause in ["partition", "broadcast", "recheck"] {
        for found in ["records", "nothing"] {
            let sample = format!("floe_fetch_wakeups_total{{cause=\"{cause}\",found=\"{found}\"}}");
            let value = floe_tests::metric_at(&server.url, &sample).await;
            assert!(value.is_some(), "{sample}");
        }
    }
    // Every request by its route's template: the three produces, and the scrape that
    // asked for /metrics before this one.
    let produces =
        "floe_http_request_seconds_count{route=\"/v1/topics/{topic}/records\",method=\"POST\"}";
    assert_eq!(count(produces).await, 3.0, "{produces}");
    let scrapes = "floe_http_request_seconds_count{route=\"/metrics\",method=\"GET\"}";
    assert!(count(scrapes).await >= 1.0, "{scrapes}");
    // And every answer by its status and error code.
    let answered = "floe_http_responses_total{route=\"/v1/topics/{topic}/records\",\
                    method=\"POST\",status=\"200\",error_code=\"\"}";
    assert_eq!(count(answered).await, 3.0, "{answered}");
    // A client may invent methods; each one it makes up counts under one label, so a
    // flood of them cannot grow the registry.
    let http = reqwest::Client::new();
    for invented in ["FLOOD1", "FLOOD2"] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).expect("method");
        let answer = http
            .request(method, format!("{}/no/such/route", server.url))
            .send()
            .await
            .expect("invented method");
        assert_eq!(answer.status(), reqwest::StatusCode::NOT_FOUND);
    }
    let invented = "floe_http_responses_total{route=\"unmatched\",method=\"_OTHER\",\
                    status=\"404\",error_code=\"not_found\"}";
    assert_eq!(count(invented).await, 2.0, "{invented}");
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(!text.contains("FLOOD"), "an invented method became a label");

    // The runtime probe samples every 10 ms from the server's start.
    let probes = "floe_runtime_schedule_delay_seconds_count";
    assert!(count(probes).await >= 1.0, "{probes}");

    // The embedded sequencer's commit loop: the topic, three segments and the offset
    // commit were appended, and the state was copied for a snapshot after the third
    // entry (before the loop took the next one); encoding and installing it run beside
    // the loop, so they are waited for.
    assert!(count("floe_sequencer_append_seconds_count").await >= 5.0);
    assert!(count("floe_sequencer_group_commands_sum").await >= 5.0);
    let copied = "floe_sequencer_snapshot_stage_seconds_count{stage=\"copy\"}";
    assert!(count(copied).await >= 1.0, "{copied}");
    let installed = "floe_sequencer_snapshot_stage_seconds_count{stage=\"install\"}";
    let mut waited = 0;
    while count(installed).await < 1.0 {
        waited += 1;
        assert!(waited < 200, "no snapshot installed within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let encoded = "floe_sequencer_snapshot_stage_seconds_count{stage=\"encode\"}";
    assert!(count(encoded).await >= 1.0, "{encoded}");
    // Exported before the loop was ever held (its log stays far below four intervals).
    let held = "floe_sequencer_snapshot_stage_seconds_count{stage=\"held\"}";
    assert_eq!(
        floe_tests::metric_at(&server.url, held).await,
        Some(0.0),
        "{held}"
    );
    assert!(count("floe_sequencer_snapshot_bytes").await > 100.0);

    // A delete of a topic that does not exist is answered by the commit loop's judgement
    // of it, before the log.
    let refused = client
        .delete_topic("nope")
        .await
        .expect_err("unknown topic");
    assert!(refused.to_string().contains("unknown_topic"), "{refused}");
    let refused = "floe_http_responses_total{route=\"/v1/topics/{topic}\",\
                   method=\"DELETE\",status=\"404\",error_code=\"unknown_topic\"}";
    assert_eq!(count(refused).await, 1.0, "{refused}");
    assert!(count("floe_sequencer_refused_before_log_total").await >= 1.0);
}
