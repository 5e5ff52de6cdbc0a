//! `kill -9` in the middle of a produce load: every acknowledged record survives, offsets
//! continue densely, nothing half-written appears.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use floe_client::api::{CreateTopicRequest, ProduceRecordJson};
use floe_client::{Encoding, FetchOptions, FloeClient};
use floe_tests::FloeProcess;
use serde_json::Value;

/// (partition, offset) → value of every acknowledged record.
type Acked = std::sync::Mutex<BTreeMap<(u32, u64), String>>;

async fn producer(client: FloeClient, id: usize, acked: Arc<Acked>) {
    for request in 0u64.. {
        let records = (0..50)
            .map(|i| ProduceRecordJson {
                value: Some(Value::String(format!("p{id}-r{request}-{i}"))),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let values: Vec<String> = records
            .iter()
            .map(|r| {
                r.value
                    .clone()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        match client.produce("load", records, Encoding::Text).await {
            Ok(response) => {
                let mut map = acked.lock().expect("lock");
                for (ack, value) in response.offsets.iter().zip(values) {
                    let previous = map.insert((ack.partition, ack.offset), value);
                    assert!(
                        previous.is_none(),
                        "offset {}:{} acknowledged twice",
                        ack.partition,
                        ack.offset
                    );
                }
            }
            Err(_) => return, // the server died under us: unacknowledged, may be lost
        }
    }
}

async fn read_partition(client: &FloeClient, partition: u32) -> (Vec<(u64, String)>, u64) {
    let options = FetchOptions {
        max_records: Some(5000),
        max_bytes: Some(8 << 20),
        ..FetchOptions::default()
    };
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = client
            .fetch("load", partition, offset, &options)
            .await
            .expect("fetch after restart");
        for record in fetched.records {
            out.push((
                record.offset,
                record
                    .value
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ));
        }
        offset = fetched.next_offset;
        if offset >= fetched.high_watermark {
            return (out, fetched.high_watermark);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A small snapshot interval makes the crash land around snapshots and log rotation too.
    let mut server = FloeProcess::start(dir.path(), &["--linger", "2ms", "--snapshot-every", "20"]);
    let client = server.client();
    client
        .create_topic(&CreateTopicRequest {
            name: "load".into(),
            partitions: 3,
            config: BTreeMap::new(),
        })
        .await
        .expect("create");

    let acked = Arc::new(Acked::default());
    let producers: Vec<_> = (0..4)
        .map(|id| tokio::spawn(producer(client.clone(), id, acked.clone())))
        .collect();
    // Let the load run, then kill the server with no warning.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if acked.lock().expect("lock").len() >= 3000 {
            break;
        }
    }
    server.kill();
    for producer in producers {
        producer.await.expect("producer task");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(acked.len() >= 3000);

    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    let mut high_watermarks = Vec::new();
    for partition in 0..3 {
        let (records, high_watermark) = read_partition(&client, partition).await;
        // Dense: offsets 0..hwm, each exactly once, nothing torn.
        assert_eq!(
            records.len() as u64,
            high_watermark,
            "partition {partition} is dense"
        );
        for (index, (offset, _)) in records.iter().enumerate() {
            assert_eq!(*offset, index as u64);
        }
        let by_offset: BTreeMap<u64, String> = records.into_iter().collect();
        for ((p, offset), value) in acked.iter().filter(|((p, _), _)| *p == partition) {
            assert_eq!(
                by_offset.get(offset),
                Some(value),
                "acknowledged record {p}:{offset} survives with its value"
            );
        }
        high_watermarks.push(high_watermark);
    }

    // Offsets continue densely after the restart.
    let record = ProduceRecordJson {
        value: Some(Value::String("after".into())),
        partition: Some(0),
        ..Default::default()
    };
    let response = client
        .produce("load", vec![record], Encoding::Text)
        .await
        .expect("produce after restart");
    assert_eq!(response.offsets[0].offset, high_watermarks[0]);
}
