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

mod groups {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::{GroupMember, MemberFence, OffsetCommit, OffsetReset};

    fn member(epoch: u64, owned: &[(TopicId, u32, u64)]) -> GroupMember {
        let mut partitions: PartitionMap<u64> = BTreeMap::new();
        for (topic, partition, since) in owned {
            partitions
                .entry(*topic)
                .or_default()
                .insert(*partition, *since);
        }
        GroupMember {
            epoch,
            topics: vec!["t".into()],
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 60_000,
            auto_offset_reset: OffsetReset::Latest,
            partitions,
        }
    }

    fn write(
        state: &mut ClusterState,
        index: u64,
        expected: u64,
        members: &[(&str, GroupMember)],
    ) -> Result<Outcome, ApplyError> {
        let command = Command::WriteGroup {
            group: "g".into(),
            expected_generation: expected,
            members: members
                .iter()
                .map(|(id, member)| ((*id).to_owned(), member.clone()))
                .collect(),
            at_ms: 1_000,
        };
        state.apply(index, &command)
    }

    fn commit(
        state: &mut ClusterState,
        index: u64,
        member: Option<(&str, u64)>,
        offsets: &[(TopicId, u32, u64)],
    ) -> Result<Outcome, ApplyError> {
        let command = Command::CommitOffsets {
            group: "g".into(),
            member: member.map(|(id, epoch)| MemberFence {
                member_id: id.into(),
                member_epoch: epoch,
            }),
            offsets: offsets
                .iter()
                .map(|(topic_id, partition, offset)| OffsetCommit {
                    topic_id: *topic_id,
                    partition: *partition,
                    offset: *offset,
                    metadata: String::new(),
                })
                .collect(),
            at_ms: 2_000,
        };
        state.apply(index, &command)
    }

    /// A member owns exactly the partitions written for it; partitions past the topic's
    /// count are dropped from a write; every group is listed.
    #[test]
    fn members_own_what_the_write_gave_them_and_no_more() {
        let mut state = ClusterState::default();
        let t = topic_with_records(&mut state);
        let other = create(&mut state, 3, "u", 1);
        write(
            &mut state,
            4,
            0,
            &[("a", member(1, &[(t, 0, 1), (t, 2, 1), (other, 0, 1)]))],
        )
        .expect("write");
        let group = state.group("g").expect("group");
        let a = &group.members["a"];
        assert!(a.owns(t, 0));
        assert!(!a.owns(t, 1), "never given");
        assert!(!a.owns(t, 2), "t has 2 partitions: dropped");
        assert!(a.owns(other, 0));
        assert!(!a.owns(TopicId(99), 0));
        assert_eq!(a.partition_count(), 2);
        assert_eq!(
            state
                .groups()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>(),
            vec!["g"]
        );
    }

    /// Offset commits: metadata up to `MAX_OFFSET_METADATA` bytes, offsets from the log
    /// start to the high watermark inclusive; anything else is refused whole.
    #[test]
    fn commits_at_the_bounds_of_metadata_and_the_log() {
        let mut state = ClusterState::default();
        let t = topic_with_records(&mut state);
        let trim = Command::TrimPartitions {
            at_ms: 0,
            trims: vec![Trim {
                topic_id: t,
                partition: 0,
                log_start_offset: 5,
            }],
        };
        state.apply(3, &trim).expect("trim");
        let with_metadata = |state: &mut ClusterState, index: u64, bytes: usize| {
            let command = Command::CommitOffsets {
                group: "g".into(),
                member: None,
                offsets: vec![OffsetCommit {
                    topic_id: t,
                    partition: 1,
                    offset: 2,
                    metadata: "m".repeat(bytes),
                }],
                at_ms: 2_000,
            };
            state.apply(index, &command)
        };
        let limit = crate::state::MAX_OFFSET_METADATA;
        assert_eq!(
            with_metadata(&mut state, 4, limit),
            Ok(Outcome::OffsetsCommitted(1))
        );
        assert!(matches!(
            with_metadata(&mut state, 5, limit + 1),
            Err(ApplyError::BadGroupWrite(_))
        ));
        assert_eq!(
            commit(&mut state, 6, None, &[(t, 0, 5)]),
            Ok(Outcome::OffsetsCommitted(1))
        );
        assert!(matches!(
            commit(&mut state, 7, None, &[(t, 1, 3), (t, 0, 4)]),
            Err(ApplyError::OffsetBeforeStart {
                offset: 4,
                log_start_offset: 5,
                ..
            })
        ));
        assert!(matches!(
            commit(&mut state, 8, None, &[(t, 1, 6)]),
            Err(ApplyError::OffsetBeyondEnd {
                offset: 6,
                high_watermark: 5,
                ..
            })
        ));
        let offsets = &state.group("g").expect("group").offsets[&t];
        assert_eq!(offsets[&0].offset, 5);
        assert_eq!((offsets[&1].offset, offsets[&1].metadata.len()), (2, limit));
    }

    /// A topic with two partitions, each holding five records.
    fn topic_with_records(state: &mut ClusterState) -> TopicId {
        let id = create(state, 1, "t", 2);
        let command = Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(id, 0, 5), batch(id, 1, 5)],
            guards: Vec::new(),
            at_ms: 0,
        };
        state.apply(2, &command).expect("records");
        id
    }

    #[test]
    fn writes_are_conditional_on_the_generation() {
        let mut state = ClusterState::default();
        let t = topic_with_records(&mut state);
        assert_eq!(
            write(&mut state, 3, 0, &[("a", member(1, &[(t, 0, 1)]))]),
            Ok(Outcome::GroupWritten(1))
        );
        // A second coordinator that read generation 0 loses.
        let stale = write(&mut state, 4, 0, &[("b", member(1, &[(t, 0, 1)]))]);
        assert!(
            matches!(stale, Err(ApplyError::GroupChanged { actual: 1, .. })),
            "{stale:?}"
        );
        let group = state.group("g").expect("group");
        assert_eq!(group.owner_of(t, 0).map(|(id, _)| id), Some("a"));
        // One partition may not go to two members.
        let doubled = write(
            &mut state,
            5,
            1,
            &[
                ("a", member(2, &[(t, 1, 2)])),
                ("b", member(2, &[(t, 1, 2)])),
            ],
        );
        assert!(matches!(doubled, Err(ApplyError::BadGroupWrite(_))));
        assert_eq!(state.group("g").expect("group").generation, 1);
    }

    #[test]
    fn commits_are_fenced_by_ownership_and_epoch() {
        let mut state = ClusterState::default();
        let t = topic_with_records(&mut state);
        write(
            &mut state,
            3,
            0,
            &[
                ("a", member(3, &[(t, 0, 2)])),
                ("b", member(3, &[(t, 1, 3)])),
            ],
        )
        .expect("write");
        // A non-owner, an epoch older than the grant, an epoch from the future, a stranger.
        let cases = [
            (Some(("a", 3)), (t, 1, 1), "partition_not_owned"),
            (Some(("a", 1)), (t, 0, 1), "stale_member_epoch"),
            (Some(("a", 4)), (t, 0, 1), "stale_member_epoch"),
            (Some(("z", 3)), (t, 0, 1), "unknown_member"),
            (None, (t, 0, 1), "group_not_empty"),
            (Some(("a", 3)), (t, 0, 6), "offset_beyond_end"),
        ];
        for (index, (member, offset, code)) in cases.into_iter().enumerate() {
            let refused = commit(&mut state, 10 + index as u64, member, &[offset]);
            assert_eq!(refused.map_err(|e| e.code()), Err(code), "{member:?}");
        }
        assert!(state.group("g").expect("group").offsets.is_empty());
        // An epoch between the grant and the current one is accepted (a commit racing
        // a heartbeat that raised the epoch).
        assert_eq!(
            commit(&mut state, 20, Some(("a", 2)), &[(t, 0, 5)]),
            Ok(Outcome::OffsetsCommitted(1))
        );
        let committed = state.group("g").expect("group").committed(t, 0).cloned();
        assert_eq!(
            committed.map(|c| (c.offset, c.committed_ms)),
            Some((5, 2_000))
        );
    }

    #[test]
    fn simple_commits_need_an_empty_group_and_deleting_a_topic_forgets_it() {
        let mut state = ClusterState::default();
        let t = topic_with_records(&mut state);
        commit(&mut state, 3, None, &[(t, 0, 2), (t, 1, 4)]).expect("simple commit");
        let below = {
            let trim = Command::TrimPartitions {
                at_ms: 0,
                trims: vec![Trim {
                    topic_id: t,
                    partition: 0,
                    log_start_offset: 3,
                }],
            };
            state.apply(4, &trim).expect("trim");
            commit(&mut state, 5, None, &[(t, 0, 2)])
        };
        assert_eq!(below.map_err(|e| e.code()), Err("offset_out_of_range"));
        write(&mut state, 6, 0, &[("a", member(1, &[(t, 0, 1)]))]).expect("join");
        let refused = state.apply(
            7,
            &Command::DeleteGroup {
                group: "g".into(),
                idle_before_ms: None,
            },
        );
        assert_eq!(refused.map_err(|e| e.code()), Err("group_not_empty"));
        state
            .apply(
                8,
                &Command::DeleteTopic {
                    name: "t".into(),
                    at_ms: 0,
                },
            )
            .expect("delete topic");
        let group = state.group("g").expect("group");
        assert!(group.offsets.is_empty());
        assert_eq!(group.members["a"].partition_count(), 0);
        assert_eq!(group.generation, 2, "a coordinator must re-read");
        // Expiry deletes only a group idle since before the horizon.
        write(&mut state, 9, 2, &[]).expect("leave");
        let busy = state.apply(
            10,
            &Command::DeleteGroup {
                group: "g".into(),
                idle_before_ms: Some(500),
            },
        );
        assert_eq!(busy.map_err(|e| e.code()), Err("group_changed"));
        state
            .apply(
                11,
                &Command::DeleteGroup {
                    group: "g".into(),
                    idle_before_ms: Some(5_000),
                },
            )
            .expect("expired");
        assert!(state.group("g").is_none());
        // The state with groups survives a snapshot's round trip.
        let json = serde_json::to_vec(&state).expect("encode");
        let back: ClusterState = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back.groups().count(), 0);
    }

    #[test]
    fn groups_round_trip_through_a_snapshot() {
        let mut state = ClusterState::default();
        let t = topic_with_records(&mut state);
        write(
            &mut state,
            3,
            0,
            &[("a", member(1, &[(t, 0, 1), (t, 1, 1)]))],
        )
        .expect("write");
        commit(&mut state, 4, Some(("a", 1)), &[(t, 1, 3)]).expect("commit");
        let json = serde_json::to_vec(&state).expect("encode");
        let mut back: ClusterState = serde_json::from_slice(&json).expect("decode");
        back.rebuild_derived();
        assert_eq!(back.group("g"), state.group("g"));
        // Commands go through the log as JSON too (an internally tagged enum, which
        // cannot read integer map keys back).
        let command = Command::WriteGroup {
            group: "g".into(),
            expected_generation: 1,
            members: state.group("g").expect("group").members.clone(),
            at_ms: 5,
        };
        let json = serde_json::to_vec(&command).expect("encode");
        let back: Command = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back, command);
    }
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
