use super::*;

pub(super) fn batch(topic_id: TopicId, partition: u32, record_count: u32) -> BatchEntry {
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

pub(super) fn create(state: &mut ClusterState, index: u64, name: &str, partitions: u32) -> TopicId {
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
        guards: Vec::new(),
        at_ms: 0,
    };
    let outcome = state.apply(2, &command).expect("commit");
    assert_eq!(
        outcome,
        Outcome::SegmentCommitted(vec![Ok(0), Ok(0), Ok(3)].into())
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
        guards: Vec::new(),
        at_ms: 0,
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
    let command = Command::CommitSegment {
        segment,
        batches,
        guards: Vec::new(),
        at_ms: 0,
    };
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
fn a_trim_of_most_of_a_partition_keeps_the_rest_and_releases_each_object_once() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 2);
    let objects: Vec<SegmentId> = (0..5).map(|_| SegmentId::generate()).collect();
    for (i, object) in objects.iter().enumerate() {
        commit(
            &mut state,
            2 + i as u64,
            *object,
            vec![batch(id, 0, 2), batch(id, 1, 3)],
        );
    }
    let copy = state.clone();
    // Partition 0's batches start at 0, 2, 4, 6, 8 and partition 1's at 0, 3, 6, 9, 12.
    let command = Command::TrimPartitions {
        at_ms: 70,
        trims: vec![
            // Four of five go: the index is rebuilt from what stays.
            Trim {
                topic_id: id,
                partition: 0,
                log_start_offset: 8,
            },
            // Two go; the start falls inside the third, which stays.
            Trim {
                topic_id: id,
                partition: 1,
                log_start_offset: 7,
            },
        ],
    };
    assert_eq!(state.apply(7, &command), Ok(Outcome::Trimmed(2)));
    let topic = state.topic("t").expect("topic");
    let (p0, p1) = (&topic.partitions[0], &topic.partitions[1]);
    assert_eq!(p0.batches.keys().copied().collect::<Vec<_>>(), vec![8]);
    assert_eq!((p0.log_start_offset, p0.size_bytes), (8, 100));
    assert_eq!(
        p1.batches.keys().copied().collect::<Vec<_>>(),
        vec![6, 9, 12]
    );
    assert_eq!((p1.log_start_offset, p1.size_bytes), (7, 300));
    // The first two objects lost both their batches in this one command (objects made
    // in the same millisecond are not ordered by when they were made).
    let mut dead = vec![(objects[0], 70), (objects[1], 70)];
    dead.sort();
    let garbage: Vec<_> = state.garbage().iter().map(|(o, at)| (*o, *at)).collect();
    assert_eq!(garbage, dead);
    let live: Vec<(u32, u64)> = objects[2..]
        .iter()
        .map(|o| {
            (
                state.segments()[o].live_batches,
                state.segments()[o].live_bytes,
            )
        })
        .collect();
    assert_eq!(live, vec![(1, 100), (1, 100), (2, 200)]);
    // A copy taken before (a snapshot's) is untouched.
    assert_eq!(
        copy.topic("t").expect("topic").partitions[0].batches.len(),
        5
    );
    assert_eq!(copy.segments().len(), 5);

    // A trim past the high watermark empties the partition.
    let all = Command::TrimPartitions {
        at_ms: 80,
        trims: vec![Trim {
            topic_id: id,
            partition: 0,
            log_start_offset: 1_000,
        }],
    };
    assert_eq!(state.apply(8, &all), Ok(Outcome::Trimmed(1)));
    let p0 = &state.topic("t").expect("topic").partitions[0];
    assert!(p0.batches.is_empty());
    assert_eq!((p0.log_start_offset, p0.size_bytes), (10, 0));
    assert_eq!(state.segments()[&objects[4]].live_batches, 1);
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
    // Malformed: a batch covering no offsets, and batches with a gap that add up.
    for (index, batches) in [
        (
            6,
            vec![replacement(0, 3), replacement(3, 0), replacement(3, 3)],
        ),
        (7, vec![replacement(0, 3), replacement(4, 3)]),
    ] {
        assert!(matches!(
            state.apply(index, &swap(run.clone(), batches)),
            Err(ApplyError::BadReplacement(_))
        ));
    }
    // Stale: the run names the wrong object for offset 2.
    let stale = vec![(0, flushes[0]), (2, flushes[2]), (4, flushes[2])];
    assert!(matches!(
        state.apply(8, &swap(stale, vec![replacement(0, 6)])),
        Err(ApplyError::StaleReplacement(_))
    ));
    let before = state.topic("t").expect("topic").partitions[0].clone();
    assert_eq!(before.batches.len(), 3);
    assert_eq!(
        state.apply(9, &swap(run, vec![replacement(0, 4), replacement(4, 2)])),
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
    // Part of partition 1's log: its size loses the replaced batches and gains the new.
    let partial = Command::ReplaceBatches {
        at_ms: 80,
        topic_id: id,
        partition: 1,
        segment: SegmentId::generate(),
        level: 1,
        replaced: vec![(0, flushes[0]), (1, flushes[1])],
        batches: vec![replacement(0, 2)],
    };
    state
        .apply(10, &partial)
        .expect("replace part of partition 1");
    let partition = &state.topic("t").expect("topic").partitions[1];
    assert_eq!(partition.size_bytes, 300 - 2 * 100 + 150);
    assert_eq!(
        partition.batches.keys().copied().collect::<Vec<_>>(),
        vec![0, 2]
    );
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
        guards: Vec::new(),
        at_ms: 0,
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
        guards: Vec::new(),
        at_ms: 0,
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

pub(super) fn sample_acl(principal: &str) -> floe_core::Acl {
    floe_core::Acl {
        principal: principal.into(),
        resource: "topic:orders.*".parse().expect("resource"),
        operation: floe_core::Operation::Write,
        permission: floe_core::Permission::Allow,
    }
}

/// Offsets by time find the first batch whose newest record is at or after the time.
#[test]
fn the_first_batch_at_or_after_a_time() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 1);
    let timed = |max_timestamp: i64| BatchEntry {
        first_timestamp: max_timestamp - 5,
        max_timestamp,
        ..batch(id, 0, 2)
    };
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![timed(10), timed(20), timed(30)],
        guards: Vec::new(),
        at_ms: 0,
    };
    state.apply(2, &command).expect("commit");
    let partition = &state.topic("t").expect("topic").partitions[0];
    let base = |at: i64| partition.first_batch_at_or_after(at).map(|(base, _)| base);
    assert_eq!(base(0), Some(0));
    assert_eq!(base(10), Some(0));
    assert_eq!(base(11), Some(2));
    assert_eq!(base(20), Some(2));
    assert_eq!(base(29), Some(4));
    assert_eq!(base(30), Some(4));
    assert_eq!(base(31), None);
}

/// An object is known while the index refers to it and while it awaits deletion; an
/// object nobody committed is not (the orphan sweep deletes those).
#[test]
fn objects_are_known_while_indexed_or_awaiting_deletion() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 1);
    let (first, second) = (SegmentId::generate(), SegmentId::generate());
    for (index, segment) in [(2, first), (3, second)] {
        let command = Command::CommitSegment {
            segment,
            batches: vec![batch(id, 0, 3)],
            guards: Vec::new(),
            at_ms: 0,
        };
        state.apply(index, &command).expect("commit");
    }
    let trim = Command::TrimPartitions {
        at_ms: 5,
        trims: vec![Trim {
            topic_id: id,
            partition: 0,
            log_start_offset: 3,
        }],
    };
    state.apply(4, &trim).expect("trim");
    assert!(state.garbage().contains_key(&first));
    assert!(!state.segments().contains_key(&first));
    assert!(state.knows_object(first), "awaiting deletion");
    assert!(state.knows_object(second), "indexed");
    assert!(
        !state.knows_object(SegmentId::generate()),
        "never committed"
    );
}

/// A snapshot written before the object table existed has none: reading it rebuilds the
/// table from the index, each object with the bytes and batches that refer to it.
#[test]
fn a_snapshot_without_an_object_table_rebuilds_it_from_the_index() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 2);
    let sized = |partition: u32, length: u32| BatchEntry {
        length,
        ..batch(id, partition, 1)
    };
    let (first, second) = (SegmentId::generate(), SegmentId::generate());
    let commits = [
        (first, vec![sized(0, 100), sized(1, 250), sized(0, 40)]),
        (second, vec![sized(1, 7)]),
    ];
    for (index, (segment, batches)) in (2..).zip(commits) {
        let command = Command::CommitSegment {
            segment,
            batches,
            guards: Vec::new(),
            at_ms: 0,
        };
        state.apply(index, &command).expect("commit");
    }
    let mut json = serde_json::to_value(&state).expect("encode");
    json.as_object_mut().expect("an object").remove("segments");
    let mut old: ClusterState = serde_json::from_value(json).expect("decode");
    assert!(old.segments().is_empty());
    old.rebuild_derived();
    assert_eq!(old, state);
    let info = |segment| old.segments()[&segment];
    assert_eq!((info(first).live_bytes, info(first).live_batches), (390, 3));
    assert_eq!((info(second).live_bytes, info(second).live_batches), (7, 1));
}

/// An owner change bumps the partition's owner epoch and counts; naming the owner it
/// already has changes nothing.
#[test]
fn owner_changes_bump_the_epoch_only_when_the_owner_changes() {
    let mut state = ClusterState::default();
    let id = create(&mut state, 1, "t", 3);
    let mut assign = |index: u64, owners: &[(u32, Option<&str>)]| {
        let command = Command::AssignOwners {
            changes: owners
                .iter()
                .map(|&(partition, owner)| OwnerChange {
                    topic_id: id,
                    partition,
                    owner: owner.map(str::to_owned),
                })
                .collect(),
        };
        state.apply(index, &command).expect("assign")
    };
    assert_eq!(
        assign(2, &[(0, Some("b1")), (1, Some("b1")), (2, None)]),
        Outcome::OwnersAssigned(2)
    );
    assert_eq!(
        assign(3, &[(0, Some("b1")), (1, Some("b2"))]),
        Outcome::OwnersAssigned(1)
    );
    assert_eq!(
        assign(4, &[(0, None), (7, Some("b1"))]),
        Outcome::OwnersAssigned(1)
    );
    let epochs: Vec<(Option<String>, u64)> = state
        .topic("t")
        .expect("topic")
        .partitions
        .iter()
        .map(|partition| (partition.owner.clone(), partition.owner_epoch))
        .collect();
    assert_eq!(
        epochs,
        vec![(None, 2), (Some("b2".to_owned()), 2), (None, 0),]
    );
}

/// Partition counts: 1 to `MAX_PARTITIONS` at creation; adding partitions to the count a
/// topic already has is a no-op (a retried request finds its work done), fewer is refused.
#[test]
fn partition_counts_at_their_bounds() {
    let mut state = ClusterState::default();
    let create_with = |state: &mut ClusterState, name: &str, partitions: u32| {
        state.apply(
            state.applied_index + 1,
            &Command::CreateTopic {
                name: name.into(),
                partitions,
                config: TopicConfig::default(),
                created_ms: 0,
            },
        )
    };
    assert!(matches!(
        create_with(&mut state, "none", 0),
        Err(ApplyError::BadPartitionCount { requested: 0, .. })
    ));
    assert!(matches!(
        create_with(&mut state, "over", MAX_PARTITIONS + 1),
        Err(ApplyError::BadPartitionCount { .. })
    ));
    create_with(&mut state, "most", MAX_PARTITIONS).expect("the most partitions");
    create_with(&mut state, "t", 2).expect("create");
    let add = |state: &mut ClusterState, count: u32| {
        state.apply(
            state.applied_index + 1,
            &Command::AddPartitions {
                name: "t".into(),
                count,
            },
        )
    };
    assert_eq!(
        add(&mut state, 2).expect("the same count"),
        Outcome::PartitionsAdded { from: 2, to: 2 }
    );
    assert!(matches!(
        add(&mut state, 1),
        Err(ApplyError::PartitionsCannotShrink {
            current: 2,
            requested: 1,
            ..
        })
    ));
    assert_eq!(
        add(&mut state, 5).expect("grow"),
        Outcome::PartitionsAdded { from: 2, to: 5 }
    );
    assert_eq!(state.topic("t").expect("topic").partition_count(), 5);
}

/// A cluster holds at most `MAX_ACLS` ACLs: exactly that many fit, one more is refused
/// and changes nothing, and ACLs already present do not count again.
#[test]
fn acls_fill_up_to_their_limit_exactly() {
    let mut state = ClusterState::default();
    let acls = |from: usize, to: usize| -> Vec<floe_core::Acl> {
        (from..to)
            .map(|i| sample_acl(&format!("user-{i}")))
            .collect()
    };
    let mut create_acls =
        |index: u64, acls: Vec<floe_core::Acl>| state.apply(index, &Command::CreateAcls { acls });
    assert_eq!(
        create_acls(1, acls(0, 5_000)),
        Ok(Outcome::AclsCreated(5_000))
    );
    assert_eq!(
        create_acls(2, acls(5_000, 5_003)),
        Ok(Outcome::AclsCreated(3))
    );
    assert_eq!(
        create_acls(3, acls(4_000, crate::state::MAX_ACLS)),
        Ok(Outcome::AclsCreated(crate::state::MAX_ACLS - 5_003))
    );
    assert_eq!(create_acls(4, acls(0, 10)), Ok(Outcome::AclsCreated(0)));
    assert!(matches!(
        create_acls(5, acls(9_990, crate::state::MAX_ACLS + 1)),
        Err(ApplyError::TooManyAcls { .. })
    ));
    assert_eq!(state.acls().count(), crate::state::MAX_ACLS);
}
