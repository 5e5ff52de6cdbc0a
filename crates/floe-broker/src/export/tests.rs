use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use bytes::Bytes;
use floe_core::{Clock, Header, TopicConfig};
use floe_sequencer::{Command, ExportRange};
use floe_storage::{SegmentStore, StoreUrl, open_store};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Step;
use crate::jobs::JobOptions;
use crate::tests::{cache, memory_sequencer};
use crate::{Broker, BrokerOptions, ProduceRecord};

const HOUR: i64 = 3_600_000;

async fn broker() -> (Broker, SegmentStore) {
    let (store, prefix) = open_store(&StoreUrl::Memory).expect("store");
    let store = SegmentStore::new(store, prefix);
    let broker = Broker::builder(
        memory_sequencer().await,
        store.clone(),
        cache(store.clone()).await,
    )
    .options(BrokerOptions {
        linger: Some(Duration::from_millis(1)),
        ..BrokerOptions::default()
    })
    .jobs(JobOptions {
        enabled: false,
        ..JobOptions::default()
    })
    .build();
    (broker, store)
}

fn export_config(extra: &[(&str, &str)]) -> TopicConfig {
    let mut pairs: BTreeMap<String, String> = [
        ("export.parquet.enabled", "true"),
        ("export.parquet.max.delay.ms", "100"),
        ("export.parquet.target.file.bytes", "4096"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in extra {
        pairs.insert((*key).to_owned(), (*value).to_owned());
    }
    TopicConfig::from_pairs(&pairs).expect("config")
}

/// Records over three UTC hours, a few batches per hour, on two partitions.
async fn produce_hours(broker: &Broker, topic: &str) -> BTreeMap<(u32, u64), (i64, String)> {
    let start = (floe_core::SystemClock.now_ms() / HOUR - 4) * HOUR;
    let mut produced = BTreeMap::new();
    for hour in 0..3 {
        for batch in 0..3 {
            let records: Vec<ProduceRecord> = (0..40)
                .map(|i| {
                    let partition = i % 2;
                    ProduceRecord {
                        partition: Some(partition),
                        key: Some(Bytes::from(format!("k{i}"))),
                        value: Some(Bytes::from(format!(
                            "h{hour}-b{batch}-r{i}-{}",
                            "x".repeat(50)
                        ))),
                        headers: vec![Header {
                            name: "n".into(),
                            value: Some(Bytes::from_static(b"v")),
                        }],
                        timestamp_ms: Some(start + hour * HOUR + batch * 1000 + i64::from(i)),
                    }
                })
                .collect();
            let values: Vec<(u32, i64, String)> = records
                .iter()
                .map(|r| {
                    (
                        r.partition.expect("partition"),
                        r.timestamp_ms.expect("ts"),
                        String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf8"),
                    )
                })
                .collect();
            let acks = broker.produce(topic, records).await.expect("produce");
            for (ack, (partition, ts, value)) in acks.iter().zip(values) {
                produced.insert((partition, ack.offset), (ts, value));
            }
        }
    }
    produced
}

/// Runs export passes until every partition is idle, waiting out `max.delay.ms`.
async fn export_all(broker: &Broker) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    for _ in 0..5 {
        broker.export_partitions(&stopped).await;
    }
}

/// Every exported row: (partition, offset) → (timestamp, value), with the key it is in.
async fn exported(store: &SegmentStore) -> Vec<(String, (u32, u64, i64, String))> {
    let objects: Vec<_> = store
        .object_store()
        .list(Some(&Path::from("export")))
        .try_collect()
        .await
        .expect("list");
    let mut rows = Vec::new();
    for object in objects {
        let bytes = store
            .object_store()
            .get(&object.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let partitions = batch.column(0).as_primitive::<Int32Type>();
            let offsets = batch.column(1).as_primitive::<Int64Type>();
            let timestamps = batch.column(2).as_primitive::<TimestampMillisecondType>();
            let values = batch.column(4).as_binary::<i32>();
            for row in 0..batch.num_rows() {
                rows.push((
                    object.location.to_string(),
                    (
                        partitions.value(row) as u32,
                        offsets.value(row) as u64,
                        timestamps.value(row),
                        String::from_utf8(values.value(row).to_vec()).expect("utf8"),
                    ),
                ));
            }
        }
    }
    rows
}

#[tokio::test]
async fn every_record_lands_in_exactly_one_file_of_its_hour() {
    let (broker, store) = broker().await;
    broker
        .create_topic("t", 2, export_config(&[]))
        .await
        .expect("create");
    let produced = produce_hours(&broker, "t").await;
    export_all(&broker).await;
    let rows = exported(&store).await;
    let mut seen = BTreeSet::new();
    for (key, (partition, offset, timestamp, value)) in &rows {
        assert!(
            seen.insert((*partition, *offset)),
            "{partition}/{offset} twice"
        );
        let (want_ts, want_value) = &produced[&(*partition, *offset)];
        assert_eq!((timestamp, value), (want_ts, want_value));
        let hour = timestamp.div_euclid(HOUR);
        let expected_dir = floe_export::file_key("t", *partition, hour * HOUR, 0, 0);
        let dir = expected_dir.rsplit_once('/').expect("dir").0;
        assert!(
            key.starts_with(&format!("export/{dir}/")),
            "{key} for ts {timestamp}"
        );
    }
    assert_eq!(seen.len(), produced.len());
    let status = broker.export_status("t").expect("status");
    for partition in &status.partitions {
        assert_eq!(partition.cursor, partition.high_watermark);
        assert_eq!(partition.lag_records, 0);
        assert!(partition.files >= 3, "at least one file per hour");
        assert_eq!(partition.last_error, None);
    }
    // A file never spans two hours, and its name is its first and last offsets.
    let mut by_key: BTreeMap<&str, Vec<(u64, i64)>> = BTreeMap::new();
    for (key, (_, offset, timestamp, _)) in &rows {
        by_key.entry(key).or_default().push((*offset, *timestamp));
    }
    for (key, rows) in by_key {
        let hours: BTreeSet<i64> = rows.iter().map(|(_, ts)| ts.div_euclid(HOUR)).collect();
        assert_eq!(hours.len(), 1, "{key}");
        let first = rows.iter().map(|(o, _)| *o).min().expect("rows");
        let last = rows.iter().map(|(o, _)| *o).max().expect("rows");
        assert!(
            key.ends_with(&format!("/{first:020}-{last:020}.parquet")),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_begun_file_is_written_again_exactly() {
    let (broker, store) = broker().await;
    broker
        .create_topic("t", 2, export_config(&[]))
        .await
        .expect("create");
    let produced = produce_hours(&broker, "t").await;
    let topic_id = broker.describe_topic("t").expect("topic").id;
    // An exporter that died after recording offsets 0..7 and before its PUT landed.
    broker
        .sequencer()
        .submit(Command::BeginExport {
            topic_id,
            partition: 1,
            range: ExportRange { from: 0, end: 7 },
            schema: None,
            at_ms: 0,
        })
        .await
        .expect("begin");
    let step = broker.export_step(topic_id, 1).await.expect("step");
    assert_eq!(step, Step::Wrote);
    let rows = exported(&store).await;
    let keys: BTreeSet<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys.len(), 1);
    assert!(
        keys.iter()
            .all(|key| key.ends_with("/00000000000000000000-00000000000000000006.parquet"))
    );
    export_all(&broker).await;
    let rows = exported(&store).await;
    let offsets: BTreeSet<(u32, u64)> = rows.iter().map(|(_, row)| (row.0, row.1)).collect();
    assert_eq!(offsets.len(), rows.len(), "no offset in two files");
    assert_eq!(offsets, produced.keys().copied().collect());
}

#[tokio::test]
async fn an_unwritable_destination_is_reported_and_the_cursor_stays() {
    let (broker, _store) = broker().await;
    let config = export_config(&[("export.parquet.path", "file:///proc/floe-export-test")]);
    broker.create_topic("t", 1, config).await.expect("create");
    broker
        .produce(
            "t",
            vec![ProduceRecord {
                partition: Some(0),
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
                timestamp_ms: None,
            }],
        )
        .await
        .expect("produce");
    export_all(&broker).await;
    let status = broker.export_status("t").expect("status");
    let partition = &status.partitions[0];
    assert_eq!(partition.cursor, 0);
    assert_eq!(partition.lag_records, 1);
    assert_eq!(partition.files, 0);
    let error = partition.last_error.as_ref().expect("error noted");
    assert!(
        error.message.contains("floe-export-test"),
        "{}",
        error.message
    );
    // Pointed somewhere writable, the same records go out.
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("file://{}", dir.path().display());
    broker
        .alter_topic_config(
            "t",
            [("export.parquet.path".to_owned(), url)].into(),
            Vec::new(),
        )
        .await
        .expect("alter");
    export_all(&broker).await;
    let status = broker.export_status("t").expect("status");
    assert_eq!(status.partitions[0].cursor, 1);
    assert_eq!(status.partitions[0].last_error, None);
    let files: Vec<_> = walk(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("/topic=t/date="), "{}", files[0]);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn retention_waits_for_the_export() {
    let (broker, _store) = broker().await;
    let config = export_config(&[("retention.ms", "1000")]);
    broker.create_topic("t", 2, config).await.expect("create");
    produce_hours(&broker, "t").await;
    broker.enforce_retention().await.expect("retention");
    let topic = broker.describe_topic("t").expect("topic");
    assert!(topic.partitions.iter().all(|p| p.log_start_offset == 0));
    export_all(&broker).await;
    broker.enforce_retention().await.expect("retention");
    let topic = broker.describe_topic("t").expect("topic");
    assert!(
        topic
            .partitions
            .iter()
            .all(|p| p.log_start_offset == p.high_watermark),
        "{topic:?}"
    );
}

#[tokio::test]
async fn a_topic_whose_export_holds_its_records_can_still_be_deleted() {
    let (broker, _store) = broker().await;
    broker
        .create_topic("t", 2, export_config(&[]))
        .await
        .expect("create");
    produce_hours(&broker, "t").await;
    // The delete's trim steps move nothing past the export's hold; the delete itself
    // releases everything.
    broker.delete_topic("t").await.expect("delete");
    assert!(broker.describe_topic("t").is_err());
    let footprint = broker.store_footprint();
    assert_eq!(footprint.live_objects, 0, "{footprint:?}");
    assert!(footprint.dead_objects > 0, "{footprint:?}");
}

#[tokio::test]
async fn a_begun_file_is_finished_after_export_is_disabled() {
    let (broker, store) = broker().await;
    broker
        .create_topic("t", 2, export_config(&[]))
        .await
        .expect("create");
    produce_hours(&broker, "t").await;
    let topic_id = broker.describe_topic("t").expect("topic").id;
    broker
        .sequencer()
        .submit(Command::BeginExport {
            topic_id,
            partition: 0,
            range: ExportRange { from: 0, end: 5 },
            schema: None,
            at_ms: 0,
        })
        .await
        .expect("begin");
    broker
        .alter_topic_config("t", BTreeMap::new(), vec!["export.parquet.enabled".into()])
        .await
        .expect("disable");
    export_all(&broker).await;
    let rows = exported(&store).await;
    let offsets: BTreeSet<(u32, u64)> = rows.iter().map(|(_, row)| (row.0, row.1)).collect();
    assert_eq!(offsets, (0..5).map(|offset| (0, offset)).collect());
    let status = broker.export_status("t").expect("status");
    assert_eq!(status.partitions[0].cursor, 5);
    assert_eq!(status.partitions[0].pending, None);
    assert_eq!(status.partitions[1].cursor, 0, "disabled: nothing new");
}
