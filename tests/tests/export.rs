//! Parquet export as an analyst meets it: records produced through a cluster (etcd, an
//! S3-compatible store, three `floe` processes, one killed with SIGKILL while exporting)
//! are read back by DuckDB over the Hive layout in the store, each acknowledged record
//! exactly once and identical; retention waits for the export; pyarrow validates every
//! file (`tests/export_check.py` does the reading).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use floe_client::api::{CreateTopicRequest, HeaderJson, ProduceRecordJson};
use floe_client::{Encoding, FloeClient};
use floe_core::Clock;
use floe_tests::cluster::{BUCKET, FloeCluster};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 6;
const HOUR: i64 = 3_600_000;

/// One acknowledged record, as `export_check.py` reads it.
fn expected_line(partition: u32, offset: u64, record: &ProduceRecordJson, ts: i64) -> String {
    let text = |value: &Option<Value>| value.as_ref().and_then(Value::as_str).map(str::to_owned);
    json!({
        "partition": partition,
        "offset": offset,
        "key": text(&record.key),
        "value": text(&record.value),
        "headers": record.headers.iter().map(|h| json!([h.name, text(&h.value)])).collect::<Vec<_>>(),
        "timestamp_ms": ts,
    })
    .to_string()
}

/// Runs `export_check.py` with the test virtualenv's python (scripts/test.sh installs
/// DuckDB, its httpfs extension and pyarrow there) and fails the test on a mismatch.
pub fn export_check(args: &[&str]) {
    let python = std::env::var("FLOE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("export_check.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {python}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "export_check.py {args:?} failed (scripts/test.sh installs duckdb and pyarrow; \
         FLOE_PYTHON names its python):\n{stdout}{stderr}"
    );
}

fn jobs_config(dir: &Path) -> String {
    let path = dir.join("floe.toml");
    std::fs::write(
        &path,
        "[jobs]\nexport_interval = \"200ms\"\nretention_interval = \"1s\"\n\
         compaction_interval = \"1s\"\ncompaction_min_age = \"1s\"\n",
    )
    .expect("config file");
    path.display().to_string()
}

/// A batch of records with keys, headers and base64 values, timestamps rising from `ts`.
fn batch(
    rng: &mut rand::rngs::StdRng,
    first: usize,
    count: usize,
    start: i64,
    step: i64,
) -> Vec<ProduceRecordJson> {
    (first..first + count)
        .map(|i| {
            let mut value = vec![0u8; rng.random_range(20..200)];
            rng.fill(&mut value[..]);
            let key = (i % 7 != 0)
                .then(|| json!(STANDARD.encode(format!("customer-{}", rng.random_range(0..500)))));
            let headers = match i % 3 {
                0 => Vec::new(),
                1 => vec![HeaderJson {
                    name: "source".into(),
                    value: Some(json!(STANDARD.encode(b"web"))),
                }],
                _ => vec![
                    HeaderJson {
                        name: "trace".into(),
                        value: Some(json!(STANDARD.encode(i.to_be_bytes()))),
                    },
                    HeaderJson {
                        name: "empty".into(),
                        value: None,
                    },
                ],
            };
            ProduceRecordJson {
                key,
                value: (i % 97 != 0).then(|| json!(STANDARD.encode(&value))),
                headers,
                partition: None,
                timestamp: Some(start + i as i64 * step),
            }
        })
        .collect()
}

/// Produces `records` through `client` and appends what was acknowledged to `expected`.
async fn produce(client: &FloeClient, records: Vec<ProduceRecordJson>, expected: &mut Vec<String>) {
    let acks = client
        .produce(TOPIC, records.clone(), Encoding::Base64)
        .await
        .expect("produce");
    assert_eq!(acks.offsets.len(), records.len());
    for (ack, record) in acks.offsets.iter().zip(&records) {
        expected.push(expected_line(
            ack.partition,
            ack.offset,
            record,
            ack.timestamp,
        ));
    }
}

async fn wait_exported(
    client: &FloeClient,
    limit: Duration,
) -> Vec<floe_client::api::PartitionExport> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(status) = client.export_status(TOPIC).await
            && status
                .partitions
                .iter()
                .all(|p| p.cursor == p.high_watermark && p.pending.is_none())
        {
            return status.partitions;
        }
        assert!(
            Instant::now() < deadline,
            "export did not catch up: {:?}",
            client.export_status(TOPIC).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_exports_every_acknowledged_record_once_through_a_kill() {
    let seed = floe_tests::seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = jobs_config(dir.path());
    let flags = [
        "--linger",
        "20ms",
        "--lease-ttl",
        "3s",
        "--config",
        config.as_str(),
    ];
    let mut cluster = FloeCluster::start(3, 1, &flags);
    cluster.wait_settled(3, Duration::from_secs(60)).await;
    let config: BTreeMap<String, Value> = [
        ("export.parquet.enabled", json!(true)),
        ("export.parquet.target.file.bytes", json!(262_144)),
        ("export.parquet.max.delay.ms", json!(1000)),
        // Records from six hours ago on: retention wants the first half of them gone, and
        // must wait for the export.
        ("retention.ms", json!(3 * HOUR)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    cluster
        .client(0)
        .create_topic(&CreateTopicRequest {
            name: TOPIC.into(),
            partitions: PARTITIONS,
            config,
        })
        .await
        .expect("create");

    const TOTAL: usize = 100_000;
    const PER_REQUEST: usize = 1000;
    let now = floe_core::SystemClock.now_ms();
    let start = (now / HOUR - 6) * HOUR;
    let step = 5 * HOUR / TOTAL as i64;
    let mut expected = Vec::with_capacity(TOTAL);
    for request in 0..TOTAL / PER_REQUEST / 2 {
        let records = batch(&mut rng, request * PER_REQUEST, PER_REQUEST, start, step);
        produce(&cluster.client(request % 3), records, &mut expected).await;
    }
    // Kill a broker as soon as export is under way: it owns partitions whose files are
    // being written.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let status = cluster
            .client(0)
            .export_status(TOPIC)
            .await
            .expect("status");
        if let Some(busy) = status
            .partitions
            .iter()
            .find(|p| p.files > 0 && p.cursor < p.high_watermark)
        {
            break cluster
                .owner_of(TOPIC, busy.partition, Duration::from_secs(10))
                .await;
        }
        assert!(
            Instant::now() < deadline,
            "export never started: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.kill(victim);
    let survivor = (victim + 1) % 3;
    for request in TOTAL / PER_REQUEST / 2..TOTAL / PER_REQUEST {
        let records = batch(&mut rng, request * PER_REQUEST, PER_REQUEST, start, step);
        produce(&cluster.client(survivor), records, &mut expected).await;
    }
    let restarted = cluster.spawn(victim, &[]);
    cluster.brokers[victim] = Some(restarted);
    cluster.wait_settled(3, Duration::from_secs(60)).await;
    let partitions = wait_exported(&cluster.client(0), Duration::from_secs(180)).await;
    let records: u64 = partitions.iter().map(|p| p.records).sum();
    assert_eq!(records, TOTAL as u64, "{partitions:?}");
    assert!(
        partitions.iter().all(|p| p.last_error.is_none()),
        "{partitions:?}"
    );

    // Retention ran once the export had the records: log starts moved, the export kept all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topic = cluster
            .client(0)
            .describe_topic(TOPIC)
            .await
            .expect("describe");
        if topic.partitions.iter().all(|p| p.log_start_offset > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never trimmed: {topic:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut files = 0.0;
    for index in cluster.running() {
        let url = cluster.client(index).base_url().to_owned();
        files += floe_tests::metric_at(&url, "floe_export_files_total{topic=\"orders\"}")
            .await
            .unwrap_or(0.0);
    }
    assert!(files > 0.0, "no broker counted an exported file");

    let path = dir.path().join("expected.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("expected file"));
    for line in &expected {
        writeln!(out, "{line}").expect("write");
    }
    out.flush().expect("flush");
    drop(out);
    let root = format!("s3://{BUCKET}/cluster/export");
    export_check(&[
        "rows",
        "--root",
        &root,
        "--topic",
        TOPIC,
        "--expected",
        &path.display().to_string(),
        "--s3-endpoint",
        &cluster.s3.endpoint,
    ]);
}

/// Runs the `floe` CLI against `url`, returning its stdout; fails the test on a failure.
fn floe_cli(url: &str, args: &[&str]) -> String {
    let output = Command::new(floe_tests::floe_binary())
        .args(args)
        .args(["--server", url])
        .output()
        .expect("run floe");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "floe {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_values_become_typed_columns_and_a_one_shot_export_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = jobs_config(dir.path());
    let server = floe_tests::FloeProcess::start(dir.path(), &["--config", &config]);
    let client = server.client();
    let lake = dir.path().join("lake");
    let lake_url = format!("file://{}", lake.display());
    let config: BTreeMap<String, Value> = [
        ("export.parquet.enabled", json!(true)),
        ("export.parquet.value.format", json!("json")),
        ("export.parquet.path", json!(lake_url)),
        ("export.parquet.max.delay.ms", json!(300)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    client
        .create_topic(&CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 2,
            config,
        })
        .await
        .expect("create");
    // Orders with an integer or fractional total; values that are not JSON objects, and
    // objects whose customer is not a string, keep their whole value in `_raw`.
    let mut groups: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut raw = 0;
    let mut records = Vec::new();
    for i in 0..3000u64 {
        let value = match i % 100 {
            97 => {
                raw += 1;
                "not json".to_owned()
            }
            98 => {
                raw += 1;
                json!({"customer": 7, "total": 1}).to_string()
            }
            _ => {
                let customer = format!("c{}", i % 5);
                let total = if i % 2 == 0 {
                    json!(i)
                } else {
                    json!(i as f64 + 0.25)
                };
                let entry = groups.entry(customer.clone()).or_default();
                entry.0 += total.as_f64().expect("number");
                entry.1 += 1;
                json!({"customer": customer, "total": total, "items": [{"sku": i}], "paid": i % 3 == 0})
                    .to_string()
            }
        };
        records.push(ProduceRecordJson {
            key: Some(json!(format!("k{i}"))),
            value: Some(json!(value)),
            ..ProduceRecordJson::default()
        });
    }
    for chunk in records.chunks(500) {
        client
            .produce(TOPIC, chunk.to_vec(), Encoding::Text)
            .await
            .expect("produce");
    }
    wait_exported(&client, Duration::from_secs(60)).await;
    let expected = json!({
        "groups": groups
            .iter()
            .map(|(customer, (sum, count))| (customer.clone(), json!([sum / *count as f64, count])))
            .collect::<serde_json::Map<_, _>>(),
        "raw": raw,
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).expect("expected");
    let expected_arg = expected_path.display().to_string();
    export_check(&[
        "json",
        "--root",
        &lake.display().to_string(),
        "--topic",
        TOPIC,
        "--expected",
        &expected_arg,
    ]);
    let status = client.export_status(TOPIC).await.expect("status");
    let schema = status.schema.expect("inferred schema");
    assert_eq!(
        schema.get("total").map(String::as_str),
        Some("double"),
        "{schema:?}"
    );
    assert_eq!(
        schema.get("items").map(String::as_str),
        Some("json"),
        "{schema:?}"
    );

    // The one-shot export of the same range, through the CLI, reads the same.
    let once = dir.path().join("once");
    let once_url = format!("file://{}", once.display());
    let summary = floe_cli(
        client.base_url(),
        &[
            "export", TOPIC, "--from", "earliest", "--to", "latest", "--out", &once_url,
        ],
    );
    assert!(summary.contains("3000 records"), "{summary}");
    export_check(&[
        "json",
        "--root",
        &once.display().to_string(),
        "--topic",
        TOPIC,
        "--expected",
        &expected_arg,
    ]);

    // An unwritable destination: the error is reported and the cursor stays put; pointed
    // back, the export resumes from the cursor.
    client
        .alter_topic_config(
            TOPIC,
            [(
                "export.parquet.path".to_owned(),
                json!("file:///proc/floe-cannot-write"),
            )]
            .into(),
            Vec::new(),
        )
        .await
        .expect("alter");
    let before = client.export_status(TOPIC).await.expect("status");
    client
        .produce(
            TOPIC,
            vec![ProduceRecordJson {
                value: Some(json!("{\"customer\":\"late\",\"total\":1}")),
                partition: Some(0),
                ..ProduceRecordJson::default()
            }],
            Encoding::Text,
        )
        .await
        .expect("produce");
    let deadline = Instant::now() + Duration::from_secs(30);
    let stuck = loop {
        let status = client.export_status(TOPIC).await.expect("status");
        if status.partitions[0].last_error.is_some() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no export error reported: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stuck.partitions[0].cursor, before.partitions[0].cursor);
    assert_eq!(stuck.partitions[0].lag_records, 1);
    let table = floe_cli(client.base_url(), &["export", "status", TOPIC]);
    assert!(table.contains("floe-cannot-write"), "{table}");
    client
        .alter_topic_config(TOPIC, BTreeMap::new(), vec!["export.parquet.path".into()])
        .await
        .expect("alter");
    let partitions = wait_exported(&client, Duration::from_secs(30)).await;
    assert!(
        partitions.iter().all(|p| p.last_error.is_none()),
        "{partitions:?}"
    );
}
