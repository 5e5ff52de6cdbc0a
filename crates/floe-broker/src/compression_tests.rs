//! A topic's `compression.type` reaches the stored bytes: every batch in the segment objects
//! carries the codec in its attributes, read from the RecordBatch v2 header as Kafka defines
//! it (bits 0–2 of the attributes at byte 21), not through floe's decoder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use floe_core::{Compression, TopicConfig};
use floe_storage::{SegmentStore, StoreUrl, open_store};
use object_store::ObjectStoreExt;

use super::tests::{cache, memory_sequencer, record};
use super::*;

/// Byte position of the attributes in a RecordBatch v2: base offset (8), batch length (4),
/// partition leader epoch (4), magic (1), CRC (4).
const ATTRIBUTES_AT: usize = 21;

/// Kafka's codec numbers in the attributes' low three bits.
fn kafka_codec(compression: Compression) -> u16 {
    match compression {
        Compression::None => 0,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

#[tokio::test]
async fn each_topic_stores_its_batches_with_its_compression_type() {
    let (store, prefix) = open_store(&StoreUrl::Memory).expect("store");
    let store = SegmentStore::new(Arc::clone(&store), prefix);
    let broker = Broker::builder(
        memory_sequencer().await,
        store.clone(),
        cache(store.clone()).await,
    )
    .options(BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        ..BrokerOptions::default()
    })
    .build();
    let codecs = [
        ("plain", Compression::None),
        ("small", Compression::Zstd),
        ("fast", Compression::Lz4),
    ];
    for (topic, compression) in codecs {
        let config = TopicConfig {
            compression,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, 1, config).await.expect("create");
        // Compressible values, so a codec that is applied also shrinks the batch.
        let records = (0..50)
            .map(|i| {
                record(
                    Some(0),
                    None,
                    &format!("{topic}-{i:04}-{}", "x".repeat(200)),
                )
            })
            .collect();
        broker.produce(topic, records).await.expect("produce");
    }
    let topic_ids: HashMap<_, _> = codecs
        .iter()
        .map(|&(topic, compression)| {
            let id = broker
                .sequencer()
                .read(|state| state.topic(topic).expect("topic").id);
            (id, (topic, compression))
        })
        .collect();

    let mut seen = HashMap::new();
    for (segment, _) in store.list_segments().await.expect("list") {
        let object = store
            .object_store()
            .get(&floe_storage::keys::segment(store.prefix(), segment))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        for entry in floe_core::segment::decode_footer(&object).expect("footer") {
            let batch = &object[entry.byte_offset as usize..][..entry.length as usize];
            let attributes = u16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
            let (topic, compression) = topic_ids[&entry.topic_id];
            assert_eq!(
                attributes & 0b111,
                kafka_codec(compression),
                "a {compression:?} topic's batch has attributes {attributes:#06x}"
            );
            seen.insert(topic, entry.length);
        }
    }
    assert_eq!(seen.len(), 3, "a batch of every topic is stored: {seen:?}");
    for topic in ["small", "fast"] {
        assert!(
            seen[topic] < seen["plain"] / 2,
            "{topic}'s batches are compressed: {seen:?}"
        );
    }
    broker.shutdown().await;
}
