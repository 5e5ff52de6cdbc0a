//! The benchmark tool against real servers: a fixed-rate tail run whose consumers see every
//! acknowledged record, a catch-up run that reads back exactly what the partitions hold,
//! the counting S3 proxy in front of moto, and the sink. Figures are checked for
//! consistency, never for speed.

use std::time::Duration;

use floe_bench::target::{Body, System};
use floe_bench::workload::{self, Mode, RunArgs};
use floe_tests::FloeProcess;
use floe_tests::s3::S3Server;

fn args(system: System, url: &str, topic: &str) -> RunArgs {
    RunArgs {
        system,
        url: url.to_owned(),
        mode: Mode::Produce,
        topic: Some(topic.to_owned()),
        basin: "floe-bench".into(),
        existing: false,
        label: None,
        partitions: 4,
        record_size: 200,
        batch: 10,
        body: Body::Binary,
        producers: 4,
        idempotent: false,
        readers: 2,
        rate: None,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        total_bytes: None,
        server_pids: Vec::new(),
        store_counts: None,
        json: None,
    }
}

/// `--body json` sends what a curl user would: JSON bodies whose values are text of the
/// record size, each acknowledged request written whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_run_writes_text_values_of_the_record_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let floe = FloeProcess::start(dir.path(), &[]);
    let report = workload::run(RunArgs {
        body: Body::Json,
        partitions: 1,
        ..args(System::Floe, &floe.url, "json")
    })
    .await
    .expect("json run");
    assert_eq!(report.errors, 0);
    assert!(report.records > 0, "nothing acknowledged in the window");
    // A closed loop has no schedule to be late on; its round trips are its acks.
    assert!(report.late_ms.is_none());
    let (ack, service) = (
        report.ack_ms.expect("acks"),
        report.service_ms.expect("trips"),
    );
    assert_eq!(service.count, ack.count);
    assert!(report.client_delay_ms.expect("the generator's delay").count > 0);
    let client = floe.client();
    let fetched = client
        .fetch_binary("json", 0, 0, &Default::default())
        .await
        .expect("fetch");
    assert!(fetched.high_watermark >= report.records);
    assert_eq!(fetched.high_watermark % 10, 0, "whole requests only");
    for record in &fetched.records {
        let value = record.value.as_ref().expect("a value");
        assert_eq!(value.len(), 200);
        let text = std::str::from_utf8(value).expect("text");
        let mut parts = text.splitn(3, '.');
        let stamp: u64 = parts.next().unwrap_or_default().parse().expect("a stamp");
        assert!(stamp > 0);
        let sequence: u64 = parts
            .next()
            .unwrap_or_default()
            .parse()
            .expect("a sequence");
        assert!(sequence > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_run_sees_every_acknowledged_record_and_catch_up_reads_the_whole_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let floe = FloeProcess::start(dir.path(), &[]);
    let pid = floe.pid().expect("running");

    let json = dir.path().join("results.jsonl");
    let tail = workload::run(RunArgs {
        mode: Mode::Tail,
        rate: Some(400.0),
        server_pids: vec![pid],
        json: Some(json.clone()),
        ..args(System::Floe, &floe.url, "tail")
    })
    .await
    .expect("tail run");
    assert_eq!(tail.errors, 0);
    assert!(tail.records > 0, "nothing acknowledged in the window");
    assert_eq!(tail.records % 10, 0, "whole requests only");
    assert_eq!(tail.bytes, tail.records * 200);
    let ack = tail.ack_ms.expect("acknowledgement latencies");
    assert_eq!(ack.count * 10, tail.records, "one latency per request");
    // At a fixed rate each ack splits into its wait to be sent and its round trip.
    let (late, service) = (tail.late_ms.expect("late"), tail.service_ms.expect("trips"));
    assert_eq!((late.count, service.count), (ack.count, ack.count));
    assert!(late.max <= ack.max && service.max <= ack.max);
    let e2e = tail.e2e_ms.expect("end-to-end latencies");
    assert_eq!(
        e2e.count, tail.records,
        "consumers saw every record produced in the window, and only those"
    );
    assert!(e2e.p50 <= e2e.p99 && e2e.p99 <= e2e.max);
    assert!(tail.cpu_seconds.expect("server pid given") >= 0.0);
    let written = std::fs::read_to_string(&json).expect("json line");
    let line: serde_json::Value = serde_json::from_str(written.trim()).expect("one JSON line");
    assert_eq!(line["records"], tail.records);
    assert_eq!(line["system"], "floe");

    // Catch-up: every record of the topic (warm-up and window alike), exactly once.
    let client = floe.client();
    let mut total = 0;
    for partition in 0..4 {
        let fetched = client
            .fetch_binary("tail", partition, 0, &Default::default())
            .await
            .expect("fetch");
        total += fetched.high_watermark;
    }
    let catch_up = workload::run(RunArgs {
        mode: Mode::CatchUp,
        existing: true,
        ..args(System::Floe, &floe.url, "tail")
    })
    .await
    .expect("catch-up run");
    assert_eq!(catch_up.records, total);
    assert_eq!(catch_up.bytes, total * 200);

    // A run that stops at its byte budget acknowledges exactly that much.
    let budget = workload::run(RunArgs {
        total_bytes: Some(200 * 10 * 25),
        warmup: Duration::ZERO,
        duration: Duration::from_secs(60),
        ..args(System::Floe, &floe.url, "budget")
    })
    .await
    .expect("budget run");
    assert_eq!(budget.records, 250);
    assert!(
        budget.seconds < 60.0,
        "stopped at the budget, not the duration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let floe = FloeProcess::start(dir.path(), &[]);
    let error = workload::run(RunArgs {
        mode: Mode::CatchUp,
        existing: true,
        ..args(System::Floe, &floe.url, "missing")
    })
    .await
    .expect_err("no such topic");
    assert!(format!("{error:#}").contains("404"), "{error:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_proxy_counts_the_puts_floe_makes() {
    let s3 = S3Server::start("bench");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_url = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = s3.endpoint.clone();
    let proxy =
        tokio::spawn(async move { floe_bench::proxy::serve_on(listener, &upstream, None).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = s3.env();
    for (name, value) in &mut env {
        if *name == "AWS_ENDPOINT_URL" {
            *value = proxy_url.clone();
        }
    }
    let floe = FloeProcess::start_with_env(dir.path(), &["--store", "s3://bench/p"], &env);
    let report = workload::run(RunArgs {
        store_counts: Some(proxy_url.clone()),
        ..args(System::Floe, &floe.url, "counted")
    })
    .await
    .expect("run through the proxy");
    assert_eq!(report.errors, 0);
    let store = report.store.expect("counts read");
    assert!(store.put > 0, "segment uploads pass the proxy: {store:?}");
    // Everything acknowledged was PUT before its acknowledgement.
    let total = floe_bench::probe::store_counts(&proxy_url)
        .await
        .expect("counts");
    assert!(
        total.put_bytes >= report.bytes,
        "every acknowledged byte was PUT: {total:?} vs {} B",
        report.bytes
    );
    assert!(report.puts_per_gib.is_some());
    // What the proxy counted is what reached moto.
    let (objects, bytes) = s3.objects("bench", "p/").await;
    assert!(objects > 0 && bytes > 0);
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_takes_produce_runs_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sink = tokio::spawn(floe_bench::limit::sink_on(listener));
    let report = workload::run(args(System::Sink, &url, "sink"))
        .await
        .expect("sink run");
    assert_eq!(report.errors, 0);
    assert!(report.records > 0);
    let refused = workload::run(RunArgs {
        mode: Mode::Tail,
        ..args(System::Sink, &url, "sink")
    })
    .await;
    assert!(refused.is_err());
    sink.abort();
}

/// `--idempotent`: every producer is an idempotent producer whose requests are numbered;
/// the server saw four producers (the next id is the fifth) and every request committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_run_produces_as_idempotent_producers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let floe = FloeProcess::start(dir.path(), &[]);
    let report = workload::run(RunArgs {
        idempotent: true,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        ..args(System::Floe, &floe.url, "once")
    })
    .await
    .expect("idempotent run");
    assert_eq!(report.errors, 0);
    assert!(report.records > 0);
    let next: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/producers", floe.url))
        .send()
        .await
        .expect("init")
        .json()
        .await
        .expect("json");
    assert_eq!(
        next["producer_id"], 5,
        "the run's four producers came first"
    );
    // Producer 1's request 0 was committed as such: another body under that number is
    // refused, not written.
    let reused = reqwest::Client::new()
        .post(format!(
            "{}/v1/topics/once/records?producer_id=1&producer_epoch=0&sequence=0",
            floe.url
        ))
        .json(&serde_json::json!({"records": [{"value": "not the first request"}]}))
        .send()
        .await
        .expect("produce");
    assert_eq!(
        reused.status(),
        409,
        "{}",
        reused.text().await.unwrap_or_default()
    );
    let described = floe
        .client()
        .describe_topic("once")
        .await
        .expect("describe");
    let stored: u64 = described.partitions.iter().map(|p| p.high_watermark).sum();
    assert!(
        stored >= report.records,
        "{stored} stored, {} acknowledged",
        report.records
    );
}
