use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use floe_core::{CleanupPolicy, SegmentId, SystemClock, TopicConfig};
use floe_sequencer::{Command, Outcome, Sequencer};
use floe_storage::{SegmentStore, StoreUrl, open_store};

use super::JobOptions;
use crate::tests::cache;
use crate::{Broker, BrokerError, BrokerOptions, FetchRequest, ProduceRecord};

/// A broker whose jobs the test runs by hand, compacting anything at once.
async fn broker() -> Broker {
    let sequencer = crate::tests::memory_sequencer().await;
    let (store, prefix) = open_store(&StoreUrl::Memory).expect("store");
    broker_over(sequencer, SegmentStore::new(store, prefix)).await
}

/// Such a broker on a given sequencer and store, with a cache of its own.
async fn broker_over(sequencer: Sequencer, store: SegmentStore) -> Broker {
    broker_with_jobs(sequencer, store, by_hand()).await
}

/// Jobs the test runs by hand, compacting anything at once into small objects.
fn by_hand() -> JobOptions {
    JobOptions {
        enabled: false,
        object_grace: Duration::ZERO,
        compaction_min_age: Duration::ZERO,
        compaction_batch_bytes: 2048,
        compaction_target_bytes: 32 * 1024,
        compaction_fan_in: 2,
        ..JobOptions::default()
    }
}

async fn broker_with_jobs(sequencer: Sequencer, store: SegmentStore, jobs: JobOptions) -> Broker {
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(1)),
        ..BrokerOptions::default()
    };
    Broker::builder(sequencer, store.clone(), cache(store).await)
        .options(options)
        .jobs(jobs)
        .build()
}

fn record(partition: u32, key: Option<&str>, value: Option<&str>, ts: i64) -> ProduceRecord {
    ProduceRecord {
        partition: Some(partition),
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: Vec::new(),
        timestamp_ms: Some(ts),
    }
}

/// Every record of a partition from its log start: (offset, key, value).
async fn read_all(
    broker: &Broker,
    topic: &str,
    partition: u32,
) -> Vec<(u64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    let mut offset = broker
        .lookup_offset(topic, partition, crate::OffsetSpec::Earliest)
        .await
        .expect("earliest")
        .offset;
    loop {
        let fetched = broker
            .fetch(FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_records: 37,
                max_bytes: 1 << 20,
                wait: Duration::ZERO,
                clamp: false,
            })
            .await
            .expect("fetch");
        out.extend(
            fetched
                .records
                .into_iter()
                .map(|r| (r.offset, r.record.key, r.record.value)),
        );
        if fetched.next_offset >= fetched.high_watermark {
            return out;
        }
        assert!(fetched.next_offset > offset, "fetch made no progress");
        offset = fetched.next_offset;
    }
}

async fn compact_until_settled(broker: &Broker) -> usize {
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    for round in 0..50 {
        let before = broker.job_stats();
        broker.compact_partitions(&stopped).await.expect("compact");
        let after = broker.job_stats();
        assert_eq!(after.job_errors, 0);
        assert_eq!(after.compaction_conflicts, 0);
        let ran = (after.compactions_flush + after.compactions_merge + after.compactions_clean)
            - (before.compactions_flush + before.compactions_merge + before.compactions_clean);
        if ran == 0 {
            return round;
        }
    }
    panic!("compaction never settles");
}

async fn stored_objects(broker: &Broker) -> usize {
    broker
        .inner
        .cache
        .store()
        .list_segments()
        .await
        .expect("list")
        .len()
}

#[tokio::test]
async fn compaction_merges_flushes_and_keeps_every_record_at_its_offset() {
    let broker = broker().await;
    broker
        .create_topic("t", 3, TopicConfig::default())
        .await
        .expect("create");
    for i in 0..120 {
        let records = (0..(i % 4 + 1))
            .map(|j| {
                record(
                    i % 3,
                    Some(&format!("k{i}")),
                    Some(&format!("v{i}-{j}-{}", "x".repeat(40))),
                    1_000 + i as i64,
                )
            })
            .collect();
        broker.produce("t", records).await.expect("produce");
    }
    let mut before = BTreeMap::new();
    for partition in 0..3 {
        before.insert(partition, read_all(&broker, "t", partition).await);
    }
    let footprint = broker.store_footprint();
    assert_eq!(footprint.index_entries, 120);
    assert_eq!(footprint.live_objects, 120);

    let rounds = compact_until_settled(&broker).await;
    assert!(rounds >= 1);
    let stats = broker.job_stats();
    assert!(stats.compactions_flush >= 3, "{stats:?}");
    for partition in 0..3 {
        assert_eq!(read_all(&broker, "t", partition).await, before[&partition]);
    }
    let after = broker.store_footprint();
    assert!(after.index_entries < 40, "{after:?}");
    assert!(after.live_objects <= 6, "{after:?}");
    assert_eq!(after.dead_objects, 120);

    // With no grace, the lifecycle deletes every dead object at once.
    assert_eq!(
        stored_objects(&broker).await as u64,
        120 + stats.compactions_flush + stats.compactions_merge
    );
    broker.run_lifecycle().await.expect("lifecycle");
    assert_eq!(stored_objects(&broker).await as u64, after.live_objects);
    assert_eq!(broker.store_footprint().dead_objects, 0);
    for partition in 0..3 {
        assert_eq!(read_all(&broker, "t", partition).await, before[&partition]);
    }
}

#[tokio::test]
async fn keyed_compaction_keeps_the_newest_value_per_key_at_its_offset() {
    let broker = broker().await;
    let config = TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..TopicConfig::default()
    };
    broker.create_topic("c", 1, config).await.expect("create");
    let now = floe_core::Clock::now_ms(&SystemClock);
    let mut newest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for round in 0..6 {
        for key in 0..10 {
            let key = format!("k{key}");
            // k3's last word is a tombstone; it stays (delete.retention.ms is a day).
            let value = (!(round == 5 && key == "k3")).then(|| format!("{key}-r{round}"));
            let acks = broker
                .produce("c", vec![record(0, Some(&key), value.as_deref(), now)])
                .await
                .expect("produce");
            newest.insert(key, (acks[0].offset, value));
        }
    }
    compact_until_settled(&broker).await;
    assert!(broker.job_stats().compactions_clean >= 1);
    let read: Vec<_> = read_all(&broker, "c", 0).await;
    let expected: Vec<_> = {
        let mut rows: Vec<_> = newest
            .iter()
            .map(|(key, (offset, value))| {
                (
                    *offset,
                    Some(Bytes::from(key.clone())),
                    value.clone().map(Bytes::from),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(read, expected);
    let partition = broker.describe_topic("c").expect("describe").partitions[0].clone();
    assert_eq!(
        (partition.log_start_offset, partition.high_watermark),
        (0, 60)
    );

    // An expired tombstone goes at the next clean, with the key it deleted.
    let config = TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 0,
        ..TopicConfig::default()
    };
    broker.create_topic("d", 1, config).await.expect("create");
    for (key, value) in [
        ("a", Some("1")),
        ("b", Some("2")),
        ("a", None),
        ("b", Some("3")),
    ] {
        broker
            .produce("d", vec![record(0, Some(key), value, 5_000)])
            .await
            .expect("produce");
    }
    compact_until_settled(&broker).await;
    let read = read_all(&broker, "d", 0).await;
    assert_eq!(
        read,
        vec![(3, Some(Bytes::from("b")), Some(Bytes::from("3")))]
    );
    // Reading from an offset inside a gap starts at the next record.
    let fetched = broker
        .fetch(FetchRequest {
            topic: "d".into(),
            partition: 0,
            offset: 1,
            max_records: 10,
            max_bytes: 1 << 20,
            wait: Duration::ZERO,
            clamp: false,
        })
        .await
        .expect("fetch");
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].offset, 3);
}

#[tokio::test]
async fn retention_advances_the_log_start_and_frees_objects() {
    let broker = broker().await;
    let config = TopicConfig {
        retention_ms: 60_000,
        ..TopicConfig::default()
    };
    broker.create_topic("r", 2, config).await.expect("create");
    let now = floe_core::Clock::now_ms(&SystemClock);
    for i in 0..10 {
        // The first six are an hour old; the rest are fresh.
        let ts = if i < 6 { now - 3_600_000 } else { now };
        broker
            .produce(
                "r",
                vec![
                    record(0, None, Some("old-or-new"), ts),
                    record(1, None, Some("p1"), now),
                ],
            )
            .await
            .expect("produce");
    }
    broker.enforce_retention().await.expect("retention");
    let described = broker.describe_topic("r").expect("describe");
    assert_eq!(described.partitions[0].log_start_offset, 6);
    assert_eq!(described.partitions[1].log_start_offset, 0);
    let below = broker
        .fetch(FetchRequest {
            topic: "r".into(),
            partition: 0,
            offset: 2,
            max_records: 10,
            max_bytes: 1 << 20,
            wait: Duration::ZERO,
            clamp: false,
        })
        .await;
    assert!(matches!(
        below,
        Err(BrokerError::OffsetOutOfRange {
            log_start_offset: 6,
            ..
        })
    ));
    assert_eq!(read_all(&broker, "r", 0).await.len(), 4);
    // Partition 1 still holds every flush, so no object is dead yet.
    assert_eq!(broker.store_footprint().dead_objects, 0);

    // Deleting the topic frees everything; the lifecycle empties the store.
    broker.delete_topic("r").await.expect("delete");
    assert_eq!(broker.store_footprint().dead_objects, 10);
    broker.run_lifecycle().await.expect("lifecycle");
    assert_eq!(stored_objects(&broker).await, 0);
}

/// Creates `name` with two partitions and commits six objects of 4,000 hour-old batches
/// each, half in each partition: 24,000 index entries, more than one step may remove.
async fn commit_backlog(broker: &Broker, name: &str, config: TopicConfig) {
    let topic = broker.create_topic(name, 2, config).await.expect("create");
    let old = floe_core::Clock::now_ms(&SystemClock) - 3_600_000;
    for _ in 0..6 {
        let batches = (0..4_000u32)
            .map(|i| floe_core::segment::BatchEntry {
                topic_id: topic.id,
                partition: i % 2,
                byte_offset: 16 + u64::from(i) * 100,
                length: 100,
                record_count: 5,
                first_timestamp: old,
                max_timestamp: old,
                crc32c: 0,
            })
            .collect();
        let command = Command::CommitSegment {
            segment: SegmentId::generate(),
            batches,
            guards: Vec::new(),
            at_ms: old,
        };
        broker.sequencer().submit(command).await.expect("commit");
    }
    const { assert!(24_000 > super::retention::MAX_TRIM_BATCHES) };
}

#[tokio::test]
async fn a_large_topic_is_deleted_in_bounded_steps() {
    let broker = broker().await;
    commit_backlog(&broker, "large", TopicConfig::default()).await;
    broker
        .create_topic("kept", 1, TopicConfig::default())
        .await
        .expect("create");
    broker
        .produce("kept", vec![record(0, None, Some("stays"), 1)])
        .await
        .expect("produce");
    let applied = || broker.sequencer().read(|state| state.applied_index);
    let before = applied();
    broker.delete_topic("large").await.expect("delete");
    // Two trims (16,384 entries, then the other 7,616), then the delete, which has
    // nothing left to release.
    assert_eq!(applied() - before, 3, "two steps and the delete");
    assert!(broker.describe_topic("large").is_err());
    let footprint = broker.store_footprint();
    assert_eq!(footprint.dead_objects, 6, "{footprint:?}");
    assert_eq!(footprint.live_objects, 1, "the other topic's object");
    // Deleting it again is an unknown topic (the leader's answer: this broker's replica
    // may not know a topic yet), with no step, and the refusal takes no log entry.
    let again = broker.delete_topic("large").await;
    assert!(
        matches!(again, Err(BrokerError::UnknownTopic(_))),
        "{again:?}"
    );
    assert_eq!(applied() - before, 3, "nothing more was logged");
    let kept = read_all(&broker, "kept", 0).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].2.as_deref(), Some(&b"stays"[..]));
}

#[tokio::test]
async fn a_delete_leaves_what_an_export_holds_to_the_delete_itself() {
    let broker = broker().await;
    let config = TopicConfig {
        export_enabled: true,
        ..TopicConfig::default()
    };
    commit_backlog(&broker, "exported", config).await;
    let applied = || broker.sequencer().read(|state| state.applied_index);
    let before = applied();
    broker.delete_topic("exported").await.expect("delete");
    // Nothing was exported: no step may trim, and the delete releases it all.
    assert_eq!(applied() - before, 1, "the delete alone");
    assert!(broker.describe_topic("exported").is_err());
    assert_eq!(broker.store_footprint().dead_objects, 6);
    assert_eq!(broker.store_footprint().live_objects, 0);
}

#[tokio::test]
async fn retention_of_a_backlog_goes_in_bounded_steps_and_misses_nothing() {
    let broker = broker().await;
    let config = TopicConfig {
        retention_ms: 60_000,
        ..TopicConfig::default()
    };
    commit_backlog(&broker, "backlog", config).await;
    let applied = || broker.sequencer().read(|state| state.applied_index);
    let before = applied();
    broker.enforce_retention().await.expect("retention");
    assert_eq!(applied() - before, 2, "two trim commands");
    let described = broker.describe_topic("backlog").expect("describe");
    for partition in &described.partitions {
        assert_eq!(partition.log_start_offset, 60_000, "{partition:?}");
    }
    // Partition 0's 12,000 and 4,384 of partition 1's in the first step, the rest of
    // partition 1 in the second: three log starts moved, in two commands.
    assert_eq!(broker.inner.job_counters.retention_trims.get(), 3);
    // Every entry of every object was released, each object once.
    assert_eq!(broker.store_footprint().dead_objects, 6);
    assert_eq!(broker.store_footprint().live_objects, 0);
    // A second pass finds nothing to do.
    broker.enforce_retention().await.expect("retention");
    assert_eq!(broker.inner.job_counters.retention_trims.get(), 3);
    assert_eq!(applied() - before, 2, "no command");
}

#[tokio::test]
async fn orphans_are_swept_and_can_never_be_committed_after() {
    let broker = broker().await;
    broker
        .create_topic("o", 1, TopicConfig::default())
        .await
        .expect("create");
    broker
        .produce("o", vec![record(0, None, Some("kept"), 1)])
        .await
        .expect("produce");
    // An object uploaded by a broker that died before committing it.
    let mut builder = floe_core::segment::SegmentBuilder::new();
    let batch = floe_core::encode_batch(
        &[floe_core::Record {
            key: None,
            value: Some(Bytes::from("never")),
            headers: Vec::new(),
            timestamp_ms: 1,
        }],
        floe_core::Compression::None,
        floe_core::TimestampType::CreateTime,
    )
    .expect("encode");
    let topic_id = broker.sequencer().read(|s| s.topic("o").expect("topic").id);
    builder.append_batch(topic_id, 0, batch, 1, 1, 1);
    let (bytes, entries) = builder.finish();
    let orphan = SegmentId::generate();
    broker
        .inner
        .cache
        .store()
        .put_segment(orphan, bytes)
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(stored_objects(&broker).await, 2);
    broker.run_lifecycle().await.expect("lifecycle");
    assert_eq!(stored_objects(&broker).await, 1);
    assert_eq!(broker.job_stats().orphans_deleted, 1);

    // Its late commit is refused, so nothing can point at the deleted object.
    let late = broker
        .sequencer()
        .submit(Command::CommitSegment {
            segment: orphan,
            batches: entries,
            guards: Vec::new(),
            at_ms: 0,
        })
        .await
        .expect("submit");
    let Outcome::SegmentCommitted(results) = late else {
        panic!("commit segment yields per-batch results");
    };
    assert!(matches!(
        results[0],
        Err(floe_sequencer::ApplyError::ObjectTooOld { .. })
    ));
    let values: Vec<_> = read_all(&broker, "o", 0).await;
    assert_eq!(values, vec![(0, None, Some(Bytes::from("kept")))]);
}

/// A fetch whose selected object is gone from the store waits for the state to stop naming
/// it, and fails with the storage error, bounded, when it never does: never a hang, never
/// other data, and commits to other partitions do not use up the wait.
#[tokio::test(start_paused = true)]
async fn a_fetch_of_a_vanished_object_fails_bounded_when_the_state_still_names_it() {
    let sequencer = crate::tests::memory_sequencer().await;
    let (store, prefix) = open_store(&StoreUrl::Memory).expect("store");
    let store = SegmentStore::new(store, prefix);
    let writer = broker_over(sequencer.clone(), store.clone()).await;
    writer
        .create_topic("v", 1, TopicConfig::default())
        .await
        .expect("create");
    writer
        .produce("v", vec![record(0, None, Some("gone"), 1_000)])
        .await
        .expect("produce");
    let objects = writer
        .inner
        .cache
        .store()
        .list_segments()
        .await
        .expect("list");
    assert_eq!(objects.len(), 1);
    writer
        .inner
        .cache
        .store()
        .delete_segment(objects[0].0)
        .await
        .expect("delete");

    // A reader with a cold cache, so the read goes to the store.
    let reader = broker_over(sequencer, store).await;
    writer
        .create_topic("busy", 1, TopicConfig::default())
        .await
        .expect("create");
    let busy = {
        let writer = writer.clone();
        tokio::spawn(async move {
            loop {
                writer
                    .produce("busy", vec![record(0, None, Some("tick"), 1_000)])
                    .await
                    .expect("produce");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = tokio::time::Instant::now();
    let fetched = reader
        .fetch(FetchRequest {
            topic: "v".into(),
            partition: 0,
            offset: 0,
            max_records: 10,
            max_bytes: 1 << 20,
            wait: Duration::ZERO,
            clamp: false,
        })
        .await;
    match fetched {
        Err(BrokerError::Storage(error)) => {
            assert_eq!(error.missing_segment(), Some(objects[0].0), "{error}");
        }
        other => panic!("expected the missing-object error, got {other:?}"),
    }
    let waited = started.elapsed();
    busy.abort();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "waited {waited:?} (virtual time) for the state to move on"
    );
}

/// A broker whose compactions may hold only `memory` bytes of decoded records.
async fn broker_with_compaction_memory(memory: usize) -> Broker {
    let (store, prefix) = open_store(&StoreUrl::Memory).expect("store");
    let jobs = JobOptions {
        compaction_batch_bytes: 256 * 1024,
        compaction_target_bytes: 8 << 20,
        compaction_memory_bytes: memory,
        ..by_hand()
    };
    broker_with_jobs(
        crate::tests::memory_sequencer().await,
        SegmentStore::new(store, prefix),
        jobs,
    )
    .await
}

/// Runs `passes` compaction passes, whatever they do.
async fn compact_passes(broker: &Broker, passes: usize) {
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    for _ in 0..passes {
        broker.compact_partitions(&stopped).await.expect("compact");
    }
}

/// Forty requests of five 20 KB values of one letter, zstd-compressed: each request
/// stores a few hundred bytes and decodes to 100 KB.
async fn compressible_topic(broker: &Broker, name: &str, policy: &str) {
    let config = TopicConfig::from_pairs(&BTreeMap::from([
        ("compression.type".to_owned(), "zstd".to_owned()),
        ("cleanup.policy".to_owned(), policy.to_owned()),
    ]))
    .expect("config");
    broker.create_topic(name, 1, config).await.expect("create");
    for i in 0..40 {
        let records = (0..5)
            .map(|j| {
                let value = format!("{i}-{j}-{}", "a".repeat(20_000));
                let key = format!("k{}", (i * 5 + j) % 150);
                record(0, Some(&key), Some(&value), 1_000 + i)
            })
            .collect();
        broker.produce(name, records).await.expect("produce");
    }
}

#[tokio::test]
async fn compressible_runs_are_cut_at_the_memory_limit_and_lose_nothing() {
    // Without the limit one run would decode all forty requests at once.
    let broker = broker_with_compaction_memory(64 * 1024).await;
    compressible_topic(&broker, "t", "delete").await;
    let before = read_all(&broker, "t", 0).await;
    compact_passes(&broker, 60).await;
    let stats = broker.job_stats();
    // Flushes cut into runs of about one request each: far more than the one run the
    // size cap alone allows.
    assert!(stats.compactions_flush >= 20, "{stats:?}");
    assert_eq!(read_all(&broker, "t", 0).await, before);
    // Two of the per-partition objects decode past the limit together: merging them
    // cannot fit, so merges failed twice the same way and were parked (flushes went on).
    assert_eq!(stats.compactions_merge, 0, "{stats:?}");
    assert_eq!(stats.compactions_parked, 1, "{stats:?}");
    assert_eq!(stats.job_errors, 2, "{stats:?}");
    let footprint = broker.store_footprint();
    assert!(footprint.index_entries <= 40, "{footprint:?}");
}

#[tokio::test]
async fn keyed_cleans_run_whole_and_keep_the_newest_value_of_every_key() {
    let broker = broker_with_compaction_memory(64 * 1024).await;
    compressible_topic(&broker, "keyed", "compact").await;
    let before = read_all(&broker, "keyed", 0).await;
    compact_passes(&broker, 30).await;
    let stats = broker.job_stats();
    let after = read_all(&broker, "keyed", 0).await;
    // 200 records over 150 keys: the newest record of every key is still there, and
    // nothing appeared that was not written.
    let newest: BTreeMap<_, _> = before
        .iter()
        .map(|(offset, key, value)| (key.clone(), (*offset, value.clone())))
        .collect();
    for (key, (offset, value)) in &newest {
        assert!(
            after.contains(&(*offset, key.clone(), value.clone())),
            "the newest record of {key:?} survives ({stats:?})"
        );
    }
    assert!(after.iter().all(|record| before.contains(record)));
    // Keyed cleans are never cut (their run starts at the log start: a cut inside the
    // cleaned head would stop cleaning for good), so this one ran whole, past the limit.
    assert!(stats.compactions_clean >= 1, "{stats:?}");
    assert_eq!(stats.compactions_parked, 0, "{stats:?}");
    assert_eq!(stats.job_errors, 0, "{stats:?}");
}

#[test]
fn a_partition_is_parked_after_the_same_failure_twice() {
    use crate::jobs::compaction::{Parked, PlanKind};
    let parked = Parked::default();
    let topic = floe_core::TopicId(7);
    assert!(!parked.failed(topic, 0, PlanKind::Merge, "out of memory"));
    assert!(parked.kinds(topic, 0).is_empty());
    assert!(
        !parked.failed(topic, 0, PlanKind::Merge, "store unavailable"),
        "a different failure"
    );
    assert!(parked.failed(topic, 0, PlanKind::Merge, "store unavailable"));
    assert_eq!(parked.kinds(topic, 0), vec![PlanKind::Merge]);
    assert!(parked.kinds(topic, 1).is_empty());
    assert!(!parked.failed(topic, 0, PlanKind::Flush, "store unavailable"));
    parked.succeeded(topic, 0, PlanKind::Merge);
    assert!(parked.kinds(topic, 0).is_empty());
}
