//! Idempotent producers and conditional appends in the state machine.

use floe_core::{SegmentId, TopicId};

use super::tests::{batch, create};
use super::*;

fn init(state: &mut ClusterState, index: u64, existing: Option<(u64, u16)>) -> (u64, u16) {
    match state.apply(
        index,
        &Command::InitProducer {
            existing,
            principal: None,
            at_ms: 1_000,
        },
    ) {
        Ok(Outcome::ProducerInitialized { producer_id, epoch }) => (producer_id, epoch),
        other => panic!("init: {other:?}"),
    }
}

/// Commits one request of `counts` records per partition (0, 1, …) under a guard.
fn produce(
    state: &mut ClusterState,
    index: u64,
    topic: TopicId,
    counts: &[u32],
    producer: Option<ProducerTag>,
    expected_next_offset: Option<u64>,
) -> Vec<Result<u64, ApplyError>> {
    let batches: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(partition, count)| batch(topic, partition as u32, *count))
        .collect();
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        guards: vec![RequestGuard {
            first: 0,
            count: batches.len() as u32,
            producer,
            expected_next_offset,
            timestamp_ms: 7_000 + index as i64,
            principal: None,
        }],
        batches,
        at_ms: 2_000 + index as i64,
    };
    match state.apply(index, &command) {
        Ok(Outcome::SegmentCommitted(results)) => results.results,
        other => panic!("commit: {other:?}"),
    }
}

fn tag(producer_id: u64, epoch: u16, sequence: u64) -> Option<ProducerTag> {
    Some(ProducerTag {
        producer_id,
        epoch,
        sequence,
    })
}

fn high_watermarks(state: &ClusterState) -> Vec<u64> {
    state
        .topic("t")
        .expect("t")
        .partitions
        .iter()
        .map(|p| p.high_watermark)
        .collect()
}

#[test]
fn a_retried_request_gets_its_original_offsets_and_writes_nothing() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 2);
    let (id, epoch) = init(&mut state, 2, None);
    assert_eq!((id, epoch), (1, 0));
    assert_eq!(init(&mut state, 3, None).0, 2, "ids are never reused");
    let first = produce(&mut state, 4, topic, &[3, 2], tag(id, 0, 0), None);
    assert_eq!(first, vec![Ok(0), Ok(0)]);
    // Someone else writes in between.
    produce(&mut state, 5, topic, &[1, 1], None, None);
    assert_eq!(high_watermarks(&state), [4, 3]);
    let retry = produce(&mut state, 6, topic, &[3, 2], tag(id, 0, 0), None);
    assert_eq!(retry, first, "the original offsets");
    let again = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(topic, 0, 3), batch(topic, 1, 2)],
        guards: vec![RequestGuard {
            first: 0,
            count: 2,
            producer: tag(id, 0, 0),
            expected_next_offset: None,
            timestamp_ms: 99,
            principal: None,
        }],
        at_ms: 0,
    };
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(7, &again) else {
        panic!("commit");
    };
    assert_eq!(
        results.repeated,
        vec![(0, 2, 7_004)],
        "the first attempt's broker time, not this one's"
    );
    assert_eq!(
        results.written().collect::<Vec<_>>(),
        [None, None],
        "a retry writes nothing"
    );
    assert_eq!(high_watermarks(&state), [4, 3], "nothing written");
    // The next request goes on; a retry with other records is refused.
    assert_eq!(
        produce(&mut state, 8, topic, &[1, 0], tag(id, 0, 1), None)[0],
        Ok(4)
    );
    let mismatch = produce(&mut state, 9, topic, &[2, 0], tag(id, 0, 1), None);
    assert!(matches!(
        mismatch[0],
        Err(ApplyError::DuplicateMismatch { .. })
    ));
    assert_eq!(high_watermarks(&state), [5, 3]);
}

#[test]
fn gaps_stale_epochs_and_unknown_producers_are_refused_and_write_nothing() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let (id, _) = init(&mut state, 2, None);
    produce(&mut state, 3, topic, &[1], tag(id, 0, 0), None);
    let before = high_watermarks(&state);
    let gap = produce(&mut state, 4, topic, &[1], tag(id, 0, 2), None);
    assert_eq!(
        gap,
        vec![Err(ApplyError::OutOfOrderSequence {
            producer_id: id,
            expected: 1,
            sequence: 2
        })]
    );
    assert_eq!(
        gap[0].as_ref().expect_err("refused").code(),
        "out_of_order_sequence"
    );
    let unknown = produce(&mut state, 5, topic, &[1], tag(99, 0, 0), None);
    assert_eq!(unknown, vec![Err(ApplyError::UnknownProducer(99))]);
    assert_eq!(
        unknown[0].as_ref().expect_err("refused").kind(),
        floe_core::ErrorKind::NotFound
    );
    // A new epoch fences the old one and starts sequences again at 0.
    assert_eq!(init(&mut state, 6, Some((id, 0))), (id, 1));
    let stale = produce(&mut state, 7, topic, &[1], tag(id, 0, 1), None);
    assert_eq!(
        stale[0].as_ref().expect_err("refused").code(),
        "producer_fenced"
    );
    assert!(matches!(
        state.apply(
            8,
            &Command::InitProducer {
                existing: Some((id, 0)),
                principal: None,
                at_ms: 0
            }
        ),
        Err(ApplyError::ProducerFenced { .. })
    ));
    assert_eq!(high_watermarks(&state), before, "nothing written");
    assert_eq!(
        produce(&mut state, 9, topic, &[1], tag(id, 1, 0), None),
        vec![Ok(1)]
    );
}

#[test]
fn the_window_holds_the_last_requests_and_old_sequences_are_refused() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let (id, _) = init(&mut state, 2, None);
    for sequence in 0..8u64 {
        let results = produce(
            &mut state,
            3 + sequence,
            topic,
            &[1],
            tag(id, 0, sequence),
            None,
        );
        assert_eq!(results, vec![Ok(sequence)]);
    }
    let producer = state.producer(id).expect("producer");
    assert_eq!(producer.window.len(), PRODUCER_WINDOW);
    assert_eq!(producer.next_sequence(), 8);
    // Sequence 3 is still remembered; 2 has left the window.
    assert_eq!(
        produce(&mut state, 20, topic, &[1], tag(id, 0, 3), None),
        vec![Ok(3)]
    );
    assert!(matches!(
        produce(&mut state, 21, topic, &[1], tag(id, 0, 2), None)[0],
        Err(ApplyError::OutOfOrderSequence { .. })
    ));
    assert_eq!(high_watermarks(&state), [8]);
}

#[test]
fn a_conditional_append_commits_only_at_the_expected_offset() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    assert_eq!(
        produce(&mut state, 2, topic, &[2], None, Some(0)),
        vec![Ok(0)]
    );
    let stale = produce(&mut state, 3, topic, &[2], None, Some(0));
    assert_eq!(
        stale,
        vec![Err(ApplyError::OffsetMismatch {
            partition: 0,
            expected: 0,
            actual: 2
        })]
    );
    assert_eq!(
        stale[0].as_ref().expect_err("refused").kind(),
        floe_core::ErrorKind::PreconditionFailed
    );
    assert_eq!(
        produce(&mut state, 4, topic, &[1], None, Some(2)),
        vec![Ok(2)]
    );
    assert_eq!(high_watermarks(&state), [3]);
    // Two requests in one segment: the second sees the first's offsets.
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(topic, 0, 1), batch(topic, 0, 1), batch(topic, 0, 1)],
        guards: vec![
            RequestGuard {
                first: 0,
                count: 1,
                producer: None,
                expected_next_offset: Some(3),
                timestamp_ms: 0,
                principal: None,
            },
            RequestGuard {
                first: 1,
                count: 1,
                producer: None,
                expected_next_offset: Some(3),
                timestamp_ms: 0,
                principal: None,
            },
        ],
        at_ms: 0,
    };
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(5, &command) else {
        panic!("commit");
    };
    let results = results.results;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], Ok(3));
    assert!(matches!(
        results[1],
        Err(ApplyError::OffsetMismatch { actual: 4, .. })
    ));
    assert_eq!(results[2], Ok(4), "an unguarded batch after them");
}

#[test]
fn idle_producers_expire_and_producer_state_survives_a_snapshot() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let (id, _) = init(&mut state, 2, None);
    produce(&mut state, 3, topic, &[1], tag(id, 0, 0), None);
    let json = serde_json::to_vec(&state).expect("snapshot");
    let mut restored: ClusterState = serde_json::from_slice(&json).expect("restore");
    restored.rebuild_derived();
    assert_eq!(restored.producer(id), state.producer(id));
    assert_eq!(
        produce(&mut restored, 4, topic, &[1], tag(id, 0, 0), None),
        vec![Ok(0)],
        "the restored state still knows the request"
    );
    // Last seen at 2003 (the commit): expiring before it keeps it, after it forgets it.
    assert_eq!(
        state.apply(
            5,
            &Command::ExpireProducers {
                idle_before_ms: 2_003
            }
        ),
        Ok(Outcome::ProducersExpired(0))
    );
    assert_eq!(
        state.apply(
            6,
            &Command::ExpireProducers {
                idle_before_ms: 2_004
            }
        ),
        Ok(Outcome::ProducersExpired(1))
    );
    assert!(state.producer(id).is_none());
}

#[test]
fn a_producer_serves_only_the_principal_that_initialised_it() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let init = |existing, principal: &str| Command::InitProducer {
        existing,
        principal: Some(principal.into()),
        at_ms: 0,
    };
    let Ok(Outcome::ProducerInitialized { producer_id, .. }) = state.apply(2, &init(None, "alice"))
    else {
        panic!("init");
    };
    // Mallory can neither fence alice's producer nor write under it.
    assert_eq!(
        state.apply(3, &init(Some((producer_id, 0)), "mallory")),
        Err(ApplyError::UnknownProducer(producer_id))
    );
    let command = |principal: &str, index: u64| Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(topic, 0, 1)],
        guards: vec![RequestGuard {
            first: 0,
            count: 1,
            producer: tag(producer_id, 0, 0),
            expected_next_offset: None,
            timestamp_ms: index as i64,
            principal: Some(principal.into()),
        }],
        at_ms: 0,
    };
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(4, &command("mallory", 4)) else {
        panic!("commit");
    };
    assert_eq!(
        results.results,
        vec![Err(ApplyError::UnknownProducer(producer_id))]
    );
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(5, &command("alice", 5)) else {
        panic!("commit");
    };
    assert_eq!(results.results, vec![Ok(0)]);
    assert_eq!(
        state.apply(6, &init(Some((producer_id, 0)), "alice")),
        Ok(Outcome::ProducerInitialized {
            producer_id,
            epoch: 1
        })
    );
}

#[test]
fn segment_results_read_and_write_the_shape_older_brokers_use() {
    let plain = SegmentResults::from(vec![Ok(3), Err(ApplyError::UnknownProducer(9))]);
    let json = serde_json::to_value(&plain).expect("encode");
    assert!(
        json.is_array(),
        "no retry answered: a plain list, as before: {json}"
    );
    let back: SegmentResults = serde_json::from_value(json).expect("decode");
    assert_eq!(back, plain);
    let full = SegmentResults {
        results: vec![Ok(3)],
        repeated: vec![(0, 1, 77)],
    };
    let back: SegmentResults =
        serde_json::from_value(serde_json::to_value(&full).expect("encode")).expect("decode");
    assert_eq!(back, full);
}

#[test]
fn wide_requests_leave_the_window_early_so_it_stays_bounded() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 3_000);
    let (id, _) = init(&mut state, 2, None);
    let wide = vec![1; 3_000];
    produce(&mut state, 3, topic, &[1], tag(id, 0, 0), None);
    produce(&mut state, 4, topic, &wide, tag(id, 0, 1), None);
    produce(&mut state, 5, topic, &wide, tag(id, 0, 2), None);
    let producer = state.producer(id).expect("producer");
    let remembered: usize = producer.window.iter().map(|p| p.batches.len()).sum();
    assert!(remembered <= MAX_WINDOW_BATCHES, "{remembered}");
    assert_eq!(producer.window.back().map(|p| p.sequence), Some(2));
    assert_eq!(
        producer.next_sequence(),
        3,
        "the next sequence is still known"
    );
}
