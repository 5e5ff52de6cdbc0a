//! The state as snapshots take it: a copy is independent of the state it was taken from,
//! the persistent maps write the JSON that `BTreeMap`s wrote, and snapshots are that JSON
//! compressed, while the plain JSON of earlier builds still loads.

use std::collections::BTreeMap;

use floe_core::{SegmentId, TopicId};
use serde::Serialize;

use super::tests::{batch, create};
use super::*;

/// A state with every large map filled: batches in two partitions, objects live and
/// dead, a producer with a window, a group with committed offsets.
fn filled() -> (ClusterState, TopicId) {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 2);
    let mut index = 1;
    let mut apply = |state: &mut ClusterState, command: Command| {
        index += 1;
        state.apply(index, &command).expect("apply");
    };
    for _ in 0..3 {
        apply(
            &mut state,
            Command::CommitSegment {
                segment: SegmentId::generate(),
                batches: vec![batch(topic, 0, 3), batch(topic, 1, 2)],
                guards: Vec::new(),
                at_ms: 10,
            },
        );
    }
    apply(
        &mut state,
        Command::InitProducer {
            existing: None,
            principal: None,
            at_ms: 20,
        },
    );
    let producer_id = state
        .producers()
        .next()
        .map(|(id, _)| *id)
        .expect("producer");
    apply(
        &mut state,
        Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(topic, 1, 4)],
            guards: vec![RequestGuard {
                first: 0,
                count: 1,
                producer: Some(ProducerTag {
                    producer_id,
                    epoch: 0,
                    sequence: 0,
                }),
                expected_next_offset: None,
                timestamp_ms: 30,
                principal: None,
            }],
            at_ms: 30,
        },
    );
    // The first object's batches are the first of both partitions: trimming both past
    // it leaves it dead.
    apply(
        &mut state,
        Command::TrimPartitions {
            at_ms: 40,
            trims: vec![
                Trim {
                    topic_id: topic,
                    partition: 0,
                    log_start_offset: 3,
                },
                Trim {
                    topic_id: topic,
                    partition: 1,
                    log_start_offset: 2,
                },
            ],
        },
    );
    apply(
        &mut state,
        Command::WriteGroup {
            group: "g".into(),
            expected_generation: 0,
            members: BTreeMap::new(),
            at_ms: 50,
        },
    );
    apply(
        &mut state,
        Command::CommitOffsets {
            group: "g".into(),
            member: None,
            offsets: vec![OffsetCommit {
                topic_id: topic,
                partition: 1,
                offset: 5,
                metadata: "m".into(),
            }],
            at_ms: 60,
        },
    );
    assert_eq!(state.garbage().len(), 1, "the first object is dead");
    assert_eq!(state.segments().len(), 3);
    (state, topic)
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("serialize")
}

#[test]
fn the_persistent_maps_write_what_ordered_maps_wrote() {
    let (state, _) = filled();
    let written = json(&state);
    let as_std = |map: Vec<(String, serde_json::Value)>| {
        serde_json::Value::Object(map.into_iter().collect())
    };
    let partition = &state.topic("t").expect("topic").partitions[1];
    let batches: BTreeMap<u64, BatchLocation> =
        partition.batches.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(partition.batches.len(), 3);
    assert_eq!(
        written["topics"]["t"]["partitions"][1]["batches"],
        json(&batches)
    );
    let segments: BTreeMap<SegmentId, SegmentInfo> =
        state.segments().iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(written["segments"], json(&segments));
    let garbage: BTreeMap<SegmentId, i64> = state.garbage().iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(written["garbage"], json(&garbage));
    let producers: BTreeMap<u64, ProducerState> =
        state.producers().map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(written["producers"], json(&producers));
    let groups = as_std(
        state
            .groups()
            .map(|(name, group)| (name.clone(), json(group)))
            .collect(),
    );
    assert_eq!(written["groups"], groups);
    // And a snapshot of that shape loads into the same state.
    let mut restored: ClusterState = serde_json::from_value(written).expect("deserialize");
    restored.rebuild_derived();
    assert_eq!(restored, state);
}

#[test]
fn a_copy_does_not_see_what_is_applied_after_it() {
    let (mut state, topic) = filled();
    let copy = state.clone();
    let before = json(&copy);
    let dead = *state.garbage().keys().next().expect("garbage");
    let commands = [
        Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(topic, 0, 1), batch(topic, 1, 1)],
            guards: Vec::new(),
            at_ms: 70,
        },
        Command::TrimPartitions {
            at_ms: 80,
            trims: vec![Trim {
                topic_id: topic,
                partition: 0,
                log_start_offset: 9,
            }],
        },
        Command::ForgetObjects {
            segments: vec![dead],
        },
        Command::ExpireProducers {
            idle_before_ms: 1_000,
        },
        Command::CommitOffsets {
            group: "g".into(),
            member: None,
            offsets: vec![OffsetCommit {
                topic_id: topic,
                partition: 0,
                offset: 9,
                metadata: String::new(),
            }],
            at_ms: 90,
        },
        Command::DeleteTopic {
            name: "t".into(),
            at_ms: 100,
        },
    ];
    for (index, command) in commands.iter().enumerate() {
        let outcome = state.apply(100 + index as u64, command);
        assert!(outcome.is_ok(), "{command:?}: {outcome:?}");
    }
    assert_eq!(state.producers().count(), 0);
    assert!(state.topic("t").is_none());
    assert_eq!(json(&copy), before, "the copy changed with the state");
    assert_eq!(copy.producers().count(), 1);
    assert_eq!(copy.garbage().len(), 1);
}

#[test]
fn snapshots_are_compressed_and_plain_json_ones_still_load() {
    use crate::replica::{decode_state, encode_state};

    let (state, _) = filled();
    let encoded = encode_state(&state).expect("encode");
    let plain = serde_json::to_vec(&state).expect("json");
    assert!(
        encoded.len() < plain.len(),
        "{} >= {}",
        encoded.len(),
        plain.len()
    );
    assert_eq!(decode_state(7, &encoded).expect("compressed"), state);
    // What builds before compression wrote.
    assert_eq!(decode_state(7, &plain).expect("plain"), state);
    let mut cut = encoded.to_vec();
    cut.truncate(cut.len() / 2);
    let error = decode_state(7, &cut).expect_err("a cut snapshot");
    assert!(error.to_string().contains("snapshot at index 7"), "{error}");
}
