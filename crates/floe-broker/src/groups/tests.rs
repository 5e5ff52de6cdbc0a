use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use floe_core::{MemoryBudget, TopicConfig};
use floe_sequencer::OffsetReset;

use super::*;
use crate::tests::{broker, record};

fn join(topics: &[&str], session_ms: u64) -> JoinSpec {
    JoinSpec {
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        session_timeout: Some(Duration::from_millis(session_ms)),
        rebalance_timeout: Some(Duration::from_secs(60)),
        auto_offset_reset: OffsetReset::Earliest,
        member_id: None,
    }
}

fn owned(view: &MemberView) -> Vec<(String, u32)> {
    view.assignment
        .iter()
        .map(|a| (a.topic.clone(), a.partition))
        .collect()
}

/// Every partition of the group is owned by at most one member in the log.
fn assert_single_owners(broker: &Broker, group: &str) {
    broker.sequencer().read(|state| {
        let group = state.group(group).expect("group");
        let mut seen = BTreeSet::new();
        for member in group.members.values() {
            for (topic, partitions) in &member.partitions {
                for partition in partitions.keys() {
                    assert!(seen.insert((*topic, *partition)), "owned twice");
                }
            }
        }
    });
}

async fn topic(broker: &Broker, partitions: u32) {
    broker
        .create_topic("t", partitions, TopicConfig::default())
        .await
        .expect("topic");
}

/// Heartbeats every member once, each holding what its last answer gave it.
async fn round(broker: &Broker, views: &mut [MemberView]) {
    for view in views.iter_mut() {
        let held = owned(view);
        *view = broker
            .heartbeat("g", &view.member_id, view.member_epoch, &held)
            .await
            .expect("heartbeat");
        assert_single_owners(broker, "g");
    }
}

#[tokio::test]
async fn partitions_move_only_after_their_owner_lets_go() {
    let broker = broker().await;
    topic(&broker, 12).await;
    let a = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("a");
    assert_eq!(a.assignment.len(), 12, "a lone member owns everything");
    let b = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("b");
    assert!(b.assignment.is_empty(), "nothing is free until a releases");
    // a still heartbeats with all twelve: it is told to keep six, b still waits.
    let a_held: Vec<_> = owned(&a);
    let a2 = broker
        .heartbeat("g", &a.member_id, a.member_epoch, &a_held)
        .await
        .expect("a heartbeat");
    assert_eq!(a2.assignment.len(), 6);
    let b2 = broker
        .heartbeat("g", &b.member_id, b.member_epoch, &[])
        .await
        .expect("b heartbeat");
    assert!(b2.assignment.is_empty(), "a has not released yet");
    // a lets go of the six; b gets them on its next heartbeat, at a new epoch.
    let mut views = vec![a2, b2];
    round(&broker, &mut views).await;
    round(&broker, &mut views).await;
    assert_eq!(views[0].assignment.len(), 6);
    assert_eq!(views[1].assignment.len(), 6);
    assert!(views[1].member_epoch > b.member_epoch);
    let c = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("c");
    views.push(c);
    for _ in 0..3 {
        round(&broker, &mut views).await;
    }
    let counts: Vec<usize> = views.iter().map(|v| v.assignment.len()).collect();
    assert_eq!(counts, vec![4, 4, 4]);
    let description = broker.describe_group("g").await.expect("describe");
    assert_eq!(description.summary.state, GroupPhase::Stable);
    assert_eq!(description.members.len(), 3);
}

#[tokio::test]
async fn a_leave_frees_partitions_at_once_and_commits_are_fenced() {
    let broker = broker().await;
    topic(&broker, 2).await;
    for partition in 0..2 {
        broker
            .produce("t", vec![record(Some(partition), None, "v"); 3])
            .await
            .expect("produce");
    }
    let a = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("a");
    let commit = |offset| {
        vec![OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset,
            metadata: "m".into(),
        }]
    };
    broker
        .commit_offsets("g", Some((a.member_id.clone(), a.member_epoch)), commit(2))
        .await
        .expect("owner commits");
    // A simple commit while a member exists, and a commit from the future, are refused.
    let simple = broker.commit_offsets("g", None, commit(1)).await;
    assert_eq!(simple.map_err(|e| e.code()), Err("group_not_empty"));
    let future = broker
        .commit_offsets(
            "g",
            Some((a.member_id.clone(), a.member_epoch + 1)),
            commit(1),
        )
        .await;
    assert_eq!(future.map_err(|e| e.code()), Err("stale_member_epoch"));
    let beyond = broker
        .commit_offsets("g", Some((a.member_id.clone(), a.member_epoch)), commit(4))
        .await;
    assert_eq!(
        beyond.map_err(|e| e.kind()),
        Err(floe_core::ErrorKind::Unprocessable)
    );

    let b = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("b");
    broker.leave_group("g", &a.member_id).await.expect("leave");
    let b = broker
        .heartbeat("g", &b.member_id, b.member_epoch, &[])
        .await
        .expect("b");
    assert_eq!(b.assignment.len(), 2, "a's partitions moved at once");
    let p0 = b.assignment.iter().find(|p| p.partition == 0).expect("p0");
    assert_eq!(p0.offset, 2, "b starts at a's committed offset");
    // a is gone: its heartbeat and commits are refused with a rejoin hint.
    let gone = broker
        .heartbeat("g", &a.member_id, a.member_epoch, &[])
        .await;
    assert_eq!(
        gone.map_err(|e| (e.kind(), e.code())),
        Err((floe_core::ErrorKind::Conflict, "unknown_member"))
    );
    let stranger = broker.heartbeat("g", "nobody", 1, &[]).await;
    assert_eq!(
        stranger.map_err(|e| e.kind()),
        Err(floe_core::ErrorKind::NotFound)
    );
    let late = broker
        .commit_offsets("g", Some((a.member_id.clone(), a.member_epoch)), commit(3))
        .await;
    assert_eq!(late.map_err(|e| e.code()), Err("unknown_member"));
    let offsets = broker.group_offsets("g").expect("offsets");
    assert_eq!(offsets[0].committed, Some((2, "m".to_owned())));
    assert_eq!(offsets[0].lag, 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_expires_and_its_partitions_move() {
    let broker = broker().await;
    topic(&broker, 4).await;
    let a = broker
        .join_group("g", join(&["t"], 3_000))
        .await
        .expect("a");
    let b = broker
        .join_group("g", join(&["t"], 3_000))
        .await
        .expect("b");
    let mut views = vec![a, b];
    round(&broker, &mut views).await;
    round(&broker, &mut views).await;
    assert_eq!(views[1].assignment.len(), 2);
    // b keeps heartbeating, a goes silent past its session.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let held = owned(&views[1]);
        views[1] = broker
            .heartbeat("g", &views[1].member_id, views[1].member_epoch, &held)
            .await
            .expect("b heartbeat");
    }
    broker.tick_groups().await;
    let held = owned(&views[1]);
    let b = broker
        .heartbeat("g", &views[1].member_id, views[1].member_epoch, &held)
        .await
        .expect("b");
    assert_eq!(b.assignment.len(), 4, "a's partitions moved to b");
    let resumed = broker
        .heartbeat(
            "g",
            &views[0].member_id,
            views[0].member_epoch,
            &owned(&views[0]),
        )
        .await;
    assert_eq!(resumed.map_err(|e| e.code()), Err("unknown_member"));
    // It rejoins under its id and gets a share back through the usual handover.
    let mut rejoin = join(&["t"], 3_000);
    rejoin.member_id = Some(views[0].member_id.clone());
    let again = broker.join_group("g", rejoin).await.expect("rejoin");
    assert!(again.assignment.is_empty());
}

#[tokio::test]
async fn member_reads_follow_positions_and_auto_commit_what_was_returned() {
    let broker = broker().await;
    topic(&broker, 2).await;
    for partition in 0..2 {
        broker
            .produce("t", vec![record(Some(partition), None, "v"); 5])
            .await
            .expect("produce");
    }
    let budget = Arc::new(MemoryBudget::new(64 << 20));
    let a = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("a");
    let fetch = |commit_previous, ack| GroupFetch {
        max_records: 4,
        max_bytes: 1 << 20,
        wait: Duration::ZERO,
        commit_previous,
        ack,
        member_epoch: None,
    };
    // A member that says it has applied an older epoch gets nothing of partitions given
    // since: it would not know where to put their records.
    let behind = GroupFetch {
        member_epoch: Some(a.member_epoch - 1),
        ..fetch(false, None)
    };
    let nothing = broker
        .group_records("g", &a.member_id, behind, &budget)
        .await
        .expect("read");
    assert!(nothing.records.is_empty());
    let read = broker
        .group_records(
            "g",
            &a.member_id,
            fetch(true, Some(nothing.answer)),
            &budget,
        )
        .await
        .expect("read");
    let (first, epoch) = (read.records, read.member_epoch);
    assert_eq!(epoch, a.member_epoch);
    assert_eq!(first.len(), 4);
    assert!(
        broker
            .group_offsets("g")
            .expect("offsets")
            .iter()
            .all(|p| p.committed.is_none()
                || p.committed.as_ref().is_some_and(|(offset, _)| *offset == 0))
    );
    // The second answer is lost on the way: the call after it acknowledges only the first,
    // so the second's records are read again, and not committed.
    let first_answer = read.answer;
    let lost = broker
        .group_records("g", &a.member_id, fetch(true, Some(first_answer)), &budget)
        .await
        .expect("read");
    assert_eq!(lost.records.len(), 4);
    let again = broker
        .group_records("g", &a.member_id, fetch(true, Some(first_answer)), &budget)
        .await
        .expect("read");
    let offsets = |records: &[GroupRecord]| {
        records
            .iter()
            .map(|r| (r.partition, r.record.offset))
            .collect::<BTreeSet<_>>()
    };
    // The call after the lost one committed what the first returned, nothing more.
    // (A partition nothing was read from yet has its start committed, or nothing.)
    let mut expected = [Some(0), Some(0)];
    for (partition, offset) in offsets(&first) {
        expected[partition as usize] = Some(offset + 1);
    }
    let committed: Vec<Option<u64>> = broker
        .group_offsets("g")
        .expect("offsets")
        .iter()
        .map(|p| Some(p.committed.as_ref().map_or(0, |c| c.0)))
        .collect();
    assert_eq!(committed, expected);
    let mut later = offsets(&again.records);
    let mut ack = again.answer;
    loop {
        let read = broker
            .group_records("g", &a.member_id, fetch(false, Some(ack)), &budget)
            .await
            .expect("read");
        if read.records.is_empty() {
            break;
        }
        ack = read.answer;
        later.extend(offsets(&read.records));
    }
    assert!(
        offsets(&lost.records).is_subset(&later),
        "the lost answer's records are read again"
    );
    let seen: BTreeSet<(u32, u64)> = offsets(&first).union(&later).copied().collect();
    assert_eq!(seen.len(), 10, "every record, none skipped");
    // A member's long-poll wakes for a commit to any of its partitions.
    let reader = {
        let broker = broker.clone();
        let budget = Arc::clone(&budget);
        let member = a.member_id.clone();
        tokio::spawn(async move {
            let wait = GroupFetch {
                max_records: 10,
                max_bytes: 1 << 20,
                wait: Duration::from_secs(30),
                commit_previous: false,
                ack: None,
                member_epoch: None,
            };
            broker.group_records("g", &member, wait, &budget).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker
        .produce("t", vec![record(Some(1), None, "late")])
        .await
        .expect("produce");
    let late = reader.await.expect("task").expect("read").records;
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].partition, late[0].record.offset), (1, 5));
    // The wake-up is counted as a plain fetch's is: its partition's commit, found.
    let woken = |cause, found| broker.inner.latency.woken(cause, found).get();
    assert_eq!(woken(crate::wakeups::Woken::Partition, true), 1);
}

#[tokio::test]
async fn resets_need_an_empty_group_and_deleting_a_topic_drops_its_offsets() {
    let broker = broker().await;
    topic(&broker, 2).await;
    broker
        .produce("t", vec![record(Some(0), None, "v"); 5])
        .await
        .expect("produce");
    let offsets = broker
        .reset_offsets("g", "t", ResetTarget::Latest)
        .await
        .expect("reset");
    assert_eq!(offsets[0].committed.as_ref().map(|c| c.0), Some(5));
    assert_eq!(offsets[0].lag, 0);
    let explicit = ResetTarget::Offsets([(0, 2)].into_iter().collect());
    let offsets = broker
        .reset_offsets("g", "t", explicit)
        .await
        .expect("reset");
    assert_eq!(offsets[0].lag, 3);
    let a = broker
        .join_group("g", join(&["t"], 30_000))
        .await
        .expect("a");
    let busy = broker.reset_offsets("g", "t", ResetTarget::Earliest).await;
    assert_eq!(busy.map_err(|e| e.code()), Err("group_not_empty"));
    let busy = broker.delete_group("g").await;
    assert_eq!(busy.map_err(|e| e.code()), Err("group_not_empty"));
    broker.leave_group("g", &a.member_id).await.expect("leave");
    broker.delete_topic("t").await.expect("delete topic");
    assert!(broker.group_offsets("g").expect("group").is_empty());
    broker.delete_group("g").await.expect("delete");
    assert!(broker.list_groups().is_empty());
    let gone = broker.delete_group("g").await;
    assert_eq!(gone.map_err(|e| e.code()), Err("unknown_group"));
}

#[tokio::test]
async fn an_empty_group_expires_after_the_offsets_retention_and_a_busy_one_does_not() {
    let sequencer = crate::tests::memory_sequencer().await;
    let (store, prefix) = floe_storage::open_store(&floe_storage::StoreUrl::Memory).expect("store");
    let store = floe_storage::SegmentStore::new(store, prefix);
    let broker = Broker::builder(sequencer, store.clone(), crate::tests::cache(store).await)
        .groups(GroupOptions {
            offsets_retention: Duration::from_millis(300),
            ..GroupOptions::default()
        })
        .build();
    topic(&broker, 1).await;
    let commit = vec![OffsetToCommit {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        metadata: String::new(),
    }];
    broker
        .commit_offsets("idle", None, commit.clone())
        .await
        .expect("simple commit");
    broker
        .commit_offsets("busy", None, commit)
        .await
        .expect("simple commit");
    let member = broker
        .join_group("busy", join(&["t"], 30_000))
        .await
        .expect("join");
    // The leader's tick deletes the idle group once its retention passed; the group with
    // a member stays however old its last change.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.group_offsets("idle").is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle group never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let names: Vec<String> = broker.list_groups().into_iter().map(|g| g.name).collect();
    assert_eq!(names, vec!["busy".to_owned()]);
    broker
        .leave_group("busy", &member.member_id)
        .await
        .expect("leave");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_queued_behind_a_slow_step_keeps_its_member() {
    let broker = broker().await;
    topic(&broker, 2).await;
    let a = broker
        .join_group("g", join(&["t"], 3_000))
        .await
        .expect("a");
    let b = broker
        .join_group("g", join(&["t"], 3_000))
        .await
        .expect("b");
    // The group's lock is held (as by a slow sequencer write) while both heartbeats
    // arrive and past both members' sessions.
    let lock = broker.groups().group("g");
    let held = lock.lock().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let beat = |view: &MemberView| {
        let broker = broker.clone();
        let (id, epoch, owned) = (view.member_id.clone(), view.member_epoch, owned(view));
        tokio::spawn(async move { broker.heartbeat("g", &id, epoch, &owned).await })
    };
    let first = beat(&a);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = beat(&b);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    drop(held);
    // a's step runs first and finds b past its deadline, but b's heartbeat is waiting.
    first.await.expect("task").expect("a stays");
    second.await.expect("task").expect("b stays");
    assert_eq!(
        broker
            .describe_group("g")
            .await
            .expect("group")
            .members
            .len(),
        2
    );
}
