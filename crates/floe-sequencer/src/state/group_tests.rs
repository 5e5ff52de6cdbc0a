//! Consumer groups in the state machine: members, assignments, offsets and fences.

use std::collections::BTreeMap;

use super::tests::{batch, create};
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
