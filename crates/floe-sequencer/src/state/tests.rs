use super::*;

fn batch(topic_id: TopicId, partition: u32, record_count: u32) -> BatchEntry {
    BatchEntry {
        topic_id,
        partition,
        byte_offset: 16,
        length: 100,
        record_count,
        first_timestamp: 1,
        max_timestamp: 2,
        crc32c: 0,
    }
}

fn create(state: &mut ClusterState, index: u64, name: &str, partitions: u32) -> TopicId {
    let command = Command::CreateTopic {
        name: name.into(),
        partitions,
        config: TopicConfig::default(),
        created_ms: 0,
    };
    match state.apply(index, &command) {
        Ok(Outcome::TopicCreated(id)) => id,
        other => panic!("create failed: {other:?}"),
    }
}

#[test]
fn commits_assign_dense_offsets_per_partition() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 2);
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(id, 0, 3), batch(id, 1, 2), batch(id, 0, 4)],
    };
    let outcome = state.apply(2, &command).expect("commit");
    assert_eq!(
        outcome,
        Outcome::SegmentCommitted(vec![Ok(0), Ok(0), Ok(3)])
    );
    let partition = &state.topic("t").expect("topic").partitions[0];
    assert_eq!(partition.high_watermark, 7);
    assert_eq!(
        partition
            .batches_from(5)
            .map(|(base, _)| base)
            .collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(partition.batches_from(0).count(), 2);
}

#[test]
fn refuses_batches_of_deleted_topics_and_recreated_names_get_new_ids() {
    let mut state = ClusterState::default();
    let old = create(&mut state, 1, "t", 1);
    state
        .apply(
            2,
            &Command::DeleteTopic {
                name: "t".into(),
                at_ms: 0,
            },
        )
        .expect("delete");
    let new = create(&mut state, 3, "t", 1);
    assert_ne!(old, new);
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(old, 0, 1), batch(new, 0, 1), batch(new, 5, 1)],
    };
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(4, &command) else {
        panic!("commit segment always yields per-batch results");
    };
    assert_eq!(results[0], Err(ApplyError::UnknownTopicId(old)));
    assert_eq!(results[1], Ok(0));
    assert!(matches!(
        results[2],
        Err(ApplyError::UnknownPartition { .. })
    ));
}

#[test]
fn topic_rules() {
    let mut state = ClusterState::default();
    create(&mut state, 1, "t", 3);
    let duplicate = Command::CreateTopic {
        name: "t".into(),
        partitions: 1,
        config: TopicConfig::default(),
        created_ms: 0,
    };
    assert_eq!(
        state.apply(2, &duplicate),
        Err(ApplyError::TopicExists("t".into()))
    );
    let shrink = Command::AddPartitions {
        name: "t".into(),
        count: 2,
    };
    assert!(matches!(
        state.apply(3, &shrink),
        Err(ApplyError::PartitionsCannotShrink { .. })
    ));
    let grow = Command::AddPartitions {
        name: "t".into(),
        count: 5,
    };
    assert_eq!(
        state.apply(4, &grow),
        Ok(Outcome::PartitionsAdded { from: 3, to: 5 })
    );
    let zero = Command::CreateTopic {
        name: "z".into(),
        partitions: 0,
        config: TopicConfig::default(),
        created_ms: 0,
    };
    assert!(matches!(
        state.apply(5, &zero),
        Err(ApplyError::BadPartitionCount { .. })
    ));
}

fn commit(state: &mut ClusterState, index: u64, segment: SegmentId, batches: Vec<BatchEntry>) {
    let command = Command::CommitSegment { segment, batches };
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(index, &command) else {
        panic!("commit segment always yields per-batch results");
    };
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn trims_release_objects_once_nothing_in_them_is_live() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 2);
    let (first, second) = (SegmentId::generate(), SegmentId::generate());
    commit(&mut state, 2, first, vec![batch(id, 0, 3), batch(id, 1, 2)]);
    commit(&mut state, 3, second, vec![batch(id, 0, 4)]);
    assert_eq!(state.segments()[&first].live_batches, 2);
    assert_eq!(state.segments()[&first].live_bytes, 200);

    // Inside the first batch: the start moves, the batch stays.
    let trim = |offset| Command::TrimPartitions {
        at_ms: 50,
        trims: vec![Trim {
            topic_id: id,
            partition: 0,
            log_start_offset: offset,
        }],
    };
    assert_eq!(state.apply(4, &trim(2)), Ok(Outcome::Trimmed(1)));
    assert_eq!(state.segments()[&first].live_batches, 2);
    // Past it: partition 0's batch leaves, partition 1 still holds the object.
    assert_eq!(state.apply(5, &trim(3)), Ok(Outcome::Trimmed(1)));
    let partition = &state.topic("t").expect("topic").partitions[0];
    assert_eq!((partition.log_start_offset, partition.size_bytes), (3, 100));
    assert_eq!(state.segments()[&first].live_batches, 1);
    assert!(state.garbage().is_empty());
    // Backwards is a no-op; beyond the high watermark clamps.
    assert_eq!(state.apply(6, &trim(1)), Ok(Outcome::Trimmed(0)));
    assert_eq!(state.apply(7, &trim(100)), Ok(Outcome::Trimmed(1)));
    let partition = &state.topic("t").expect("topic").partitions[0];
    assert_eq!(partition.log_start_offset, 7);
    assert!(partition.batches.is_empty());
    assert_eq!(state.garbage().get(&second), Some(&50));

    // Deleting the topic frees the rest.
    let delete = Command::DeleteTopic {
        name: "t".into(),
        at_ms: 60,
    };
    state.apply(8, &delete).expect("delete");
    assert!(state.segments().is_empty());
    assert_eq!(state.garbage().get(&first), Some(&60));
    let forget = Command::ForgetObjects {
        segments: vec![first, second, SegmentId::generate()],
    };
    assert_eq!(state.apply(9, &forget), Ok(Outcome::ObjectsForgotten(2)));
    assert!(state.garbage().is_empty());
}

#[test]
fn replacement_swaps_a_run_atomically_or_not_at_all() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 2);
    let flushes: Vec<SegmentId> = (0..3).map(|_| SegmentId::generate()).collect();
    for (i, segment) in flushes.iter().enumerate() {
        commit(
            &mut state,
            2 + i as u64,
            *segment,
            vec![batch(id, 0, 2), batch(id, 1, 1)],
        );
    }
    let merged = SegmentId::generate();
    let replacement = |base, count| Replacement {
        base_offset: base,
        byte_offset: 16,
        length: 150,
        offset_count: count,
        first_timestamp: 1,
        max_timestamp: 2,
        crc32c: 7,
    };
    let swap = |replaced: Vec<(u64, SegmentId)>, batches| Command::ReplaceBatches {
        at_ms: 70,
        topic_id: id,
        partition: 0,
        segment: merged,
        level: 1,
        replaced,
        batches,
    };
    // Malformed: the new batches must tile 0..6 exactly.
    let run = vec![(0, flushes[0]), (2, flushes[1]), (4, flushes[2])];
    assert!(matches!(
        state.apply(5, &swap(run.clone(), vec![replacement(0, 5)])),
        Err(ApplyError::BadReplacement(_))
    ));
    // Stale: the run names the wrong object for offset 2.
    let stale = vec![(0, flushes[0]), (2, flushes[2]), (4, flushes[2])];
    assert!(matches!(
        state.apply(6, &swap(stale, vec![replacement(0, 6)])),
        Err(ApplyError::StaleReplacement(_))
    ));
    let before = state.topic("t").expect("topic").partitions[0].clone();
    assert_eq!(before.batches.len(), 3);
    assert_eq!(
        state.apply(7, &swap(run, vec![replacement(0, 4), replacement(4, 2)])),
        Ok(Outcome::BatchesReplaced {
            removed: 3,
            added: 2
        })
    );
    let after = &state.topic("t").expect("topic").partitions[0];
    assert_eq!(
        after.batches.keys().copied().collect::<Vec<_>>(),
        vec![0, 4]
    );
    assert_eq!(after.high_watermark, 6);
    assert_eq!(after.size_bytes, 300);
    assert_eq!(state.segments()[&merged].level, 1);
    assert_eq!(state.segments()[&merged].live_batches, 2);
    // Partition 1 still holds every flush.
    assert!(
        flushes
            .iter()
            .all(|s| state.segments()[s].live_batches == 1)
    );
    assert!(state.garbage().is_empty());
}

#[test]
fn the_orphan_horizon_refuses_old_objects() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 1);
    let old = SegmentId::generate();
    let horizon = Command::RaiseOrphanHorizon {
        horizon_ms: old.created_ms(),
    };
    assert_eq!(state.apply(2, &horizon), Ok(Outcome::HorizonRaised));
    let command = Command::CommitSegment {
        segment: old,
        batches: vec![batch(id, 0, 1)],
    };
    let Ok(Outcome::SegmentCommitted(results)) = state.apply(3, &command) else {
        panic!("commit segment always yields per-batch results");
    };
    assert!(matches!(results[0], Err(ApplyError::ObjectTooOld { .. })));
    assert!(state.segments().is_empty());
    assert_eq!(
        state.topic("t").expect("topic").partitions[0].high_watermark,
        0
    );
    // The horizon never moves back.
    let back = Command::RaiseOrphanHorizon { horizon_ms: 0 };
    state.apply(4, &back).expect("raise");
    assert_eq!(state.orphan_horizon_ms(), old.created_ms());
}

#[test]
fn snapshot_round_trip_preserves_state() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 1);
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(id, 0, 3)],
    };
    state.apply(2, &command).expect("commit");
    let trim = Command::TrimPartitions {
        at_ms: 5,
        trims: vec![Trim {
            topic_id: id,
            partition: 0,
            log_start_offset: 3,
        }],
    };
    state.apply(3, &trim).expect("trim");
    assert_eq!(state.garbage().len(), 1);
    let bytes = serde_json::to_vec(&state).expect("serialize");
    let mut restored: ClusterState = serde_json::from_slice(&bytes).expect("deserialize");
    restored.rebuild_derived();
    assert_eq!(restored, state);
}
