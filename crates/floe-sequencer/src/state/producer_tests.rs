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

fn guard(first: u32, count: u32, producer: Option<ProducerTag>) -> RequestGuard {
    RequestGuard {
        first,
        count,
        producer,
        expected_next_offset: None,
        timestamp_ms: 9_000 + i64::from(first),
        principal: None,
    }
}

fn commit(
    state: &mut ClusterState,
    index: u64,
    batches: Vec<BatchEntry>,
    guards: Vec<RequestGuard>,
) -> SegmentResults {
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches,
        guards,
        at_ms: 2_000,
    };
    match state.apply(index, &command) {
        Ok(Outcome::SegmentCommitted(results)) => results,
        other => panic!("commit: {other:?}"),
    }
}

/// A segment carries many requests: guarded ones (each its own producer) between
/// unguarded batches. Each guard covers exactly its batches; a retried request among them
/// is reported at its own position; malformed guards (empty, or out of order) are
/// skipped and their batches committed as unguarded ones.
#[test]
fn a_segment_mixes_guarded_requests_unguarded_batches_and_retries() {
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 4);
    let (a, _) = init(&mut state, 2, None);
    let (b, _) = init(&mut state, 3, None);
    // Producer b's first request, committed alone.
    assert_eq!(
        produce(&mut state, 4, topic, &[0, 0, 2], tag(b, 0, 0), None),
        vec![Ok(0), Ok(0), Ok(0)]
    );
    let batches = vec![
        batch(topic, 0, 1), // unguarded
        batch(topic, 1, 2), // a, sequence 0: batches 1..3
        batch(topic, 2, 3),
        batch(topic, 3, 1), // unguarded
        batch(topic, 0, 0), // b's retry of sequence 0: batches 4..7
        batch(topic, 1, 0),
        batch(topic, 2, 2),
        batch(topic, 3, 4), // unguarded
    ];
    let results = commit(
        &mut state,
        5,
        batches,
        vec![guard(1, 2, tag(a, 0, 0)), guard(4, 3, tag(b, 0, 0))],
    );
    assert_eq!(
        results.results,
        vec![Ok(0), Ok(0), Ok(2), Ok(0), Ok(0), Ok(0), Ok(0), Ok(1)],
        "b's retry answers its first offsets (partition 2 at 0) and writes nothing"
    );
    assert_eq!(results.repeated, vec![(4, 3, 7_004)]);
    assert_eq!(high_watermarks(&state), vec![1, 2, 5, 5]);

    // Malformed guards are skipped: an empty one before a's valid request, and b's, which
    // starts behind the batch it would cover. a's request still counts as its sequence 1.
    let results = commit(
        &mut state,
        6,
        vec![batch(topic, 0, 1), batch(topic, 1, 1), batch(topic, 2, 1)],
        vec![
            guard(0, 0, tag(a, 0, 1)),
            guard(1, 1, tag(a, 0, 1)),
            guard(1, 1, tag(b, 0, 1)),
        ],
    );
    assert_eq!(results.results, vec![Ok(1), Ok(2), Ok(5)]);
    assert!(results.repeated.is_empty());
    assert_eq!(high_watermarks(&state), vec![2, 3, 6, 5]);
    let retry = commit(
        &mut state,
        7,
        vec![batch(topic, 1, 1)],
        vec![guard(0, 1, tag(a, 0, 1))],
    );
    assert_eq!(
        (retry.results, retry.repeated.len()),
        (vec![Ok(2)], 1),
        "a's sequence 1 was recorded with its offset: this is a retry"
    );
    assert_eq!(
        high_watermarks(&state),
        vec![2, 3, 6, 5],
        "the retry wrote nothing"
    );
    assert_eq!(
        produce(&mut state, 8, topic, &[0, 0, 1], tag(b, 0, 1), None),
        vec![Ok(2), Ok(3), Ok(6)],
        "b's skipped guard recorded nothing: its sequence 1 is new"
    );
}

/// One guarded request of `batches` one-record batches on partition 0, as `sequence`.
fn wide(
    state: &mut ClusterState,
    index: u64,
    topic: TopicId,
    batches: usize,
    producer: u64,
    sequence: u64,
) -> SegmentResults {
    commit(
        state,
        index,
        vec![batch(topic, 0, 1); batches],
        vec![guard(0, batches as u32, tag(producer, 0, sequence))],
    )
}

/// The window's batch bound is exact: requests totalling 4,096 batches are all
/// remembered, and when one more pushes it over, only as many of the oldest leave as bring
/// it back under (two here, one there).
#[test]
fn the_window_keeps_exactly_as_many_batches_as_its_bound() {
    assert_eq!(MAX_WINDOW_BATCHES, 4096);
    let retry_of = |state: &mut ClusterState, index, topic, batches, id, sequence| {
        let again = wide(state, index, topic, batches, id, sequence);
        again.repeated.len() == 1
    };
    // 2,048 + 2,048: both remembered.
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let (id, _) = init(&mut state, 2, None);
    wide(&mut state, 3, topic, 2048, id, 0);
    wide(&mut state, 4, topic, 2048, id, 1);
    assert!(
        retry_of(&mut state, 5, topic, 2048, id, 0),
        "4,096 batches fit"
    );
    // 2 + 2 + 4,094 = 4,098: the oldest leaves (4,096 remain), the second stays.
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let (id, _) = init(&mut state, 2, None);
    wide(&mut state, 3, topic, 2, id, 0);
    wide(&mut state, 4, topic, 2, id, 1);
    wide(&mut state, 5, topic, 4094, id, 2);
    assert_eq!(state.producer(id).expect("producer").window.len(), 2);
    assert!(retry_of(&mut state, 6, topic, 2, id, 1));
    // 2 + 2 + 4,095 = 4,099: both small ones leave.
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 1);
    let (id, _) = init(&mut state, 2, None);
    wide(&mut state, 3, topic, 2, id, 0);
    wide(&mut state, 4, topic, 2, id, 1);
    wide(&mut state, 5, topic, 4095, id, 2);
    assert_eq!(state.producer(id).expect("producer").window.len(), 1);
    let refused = wide(&mut state, 6, topic, 2, id, 1);
    assert!(matches!(
        refused.results[0],
        Err(ApplyError::OutOfOrderSequence { .. })
    ));
}

/// An idempotent request holds at most 4,096 batches, and all of them must exist: a batch
/// for a partition past the topic's last refuses the whole request, writing nothing.
#[test]
fn an_idempotent_request_is_bounded_and_all_or_nothing() {
    assert_eq!(MAX_IDEMPOTENT_BATCHES, 4096);
    let mut state = ClusterState::default();
    let topic = create(&mut state, 1, "t", 2);
    let (id, _) = init(&mut state, 2, None);
    let widest = wide(&mut state, 3, topic, 4096, id, 0);
    assert!(widest.results.iter().all(Result::is_ok));
    let too_wide = wide(&mut state, 4, topic, 4097, id, 1);
    assert!(matches!(
        too_wide.results[0],
        Err(ApplyError::TooManyIdempotentBatches { .. })
    ));
    let past_the_end = commit(
        &mut state,
        5,
        vec![batch(topic, 0, 1), batch(topic, 2, 1)],
        vec![guard(0, 2, tag(id, 0, 1))],
    );
    assert!(matches!(
        past_the_end.results[..],
        [
            Err(ApplyError::UnknownPartition {
                partition: 2,
                partitions: 2
            }),
            Err(ApplyError::UnknownPartition { .. })
        ]
    ));
    assert_eq!(
        high_watermarks(&state),
        [4096, 0],
        "nothing of them written"
    );
}

/// Each principal may hold 10,000 producers; another principal's count is its own.
#[test]
fn producers_are_counted_per_principal() {
    let mut state = ClusterState::default();
    let init_as = |state: &mut ClusterState, index: u64, principal: &str| {
        state.apply(
            index,
            &Command::InitProducer {
                existing: None,
                principal: Some(principal.to_owned()),
                at_ms: 1_000,
            },
        )
    };
    for index in 1..=MAX_PRODUCERS_PER_PRINCIPAL as u64 {
        init_as(&mut state, index, "alice").expect("alice's producers");
    }
    let index = MAX_PRODUCERS_PER_PRINCIPAL as u64;
    assert_eq!(
        init_as(&mut state, index + 1, "alice"),
        Err(ApplyError::TooManyProducers {
            limit: MAX_PRODUCERS_PER_PRINCIPAL
        })
    );
    assert!(matches!(
        init_as(&mut state, index + 2, "bob"),
        Ok(Outcome::ProducerInitialized { .. })
    ));
    assert_eq!(state.producers().count(), MAX_PRODUCERS_PER_PRINCIPAL + 1);
}
