//! Commands refused for a stale broker session, and what is judged after them.

use floe_core::SegmentId;
use floe_core::segment::BatchEntry;

use super::tests::{delete, index_and_error, one_group, run_group};
use super::*;
use crate::conformance::create;
use crate::memory::MemoryLog;
use crate::state::{ClusterState, OffsetCommit};

/// A log that refuses every append carrying one stale broker session.
#[derive(Debug)]
struct Fencing {
    log: MemoryLog,
    stale: Fence,
}

#[async_trait::async_trait]
impl LogBackend for Fencing {
    async fn recover(&self) -> Result<crate::log::Recovery, LogError> {
        self.log.recover().await
    }

    async fn append(&self, entries: &[LogEntry], fences: &[Fence]) -> Result<(), LogError> {
        if fences.contains(&self.stale) {
            return Err(LogError::Fenced(vec![self.stale.clone()]));
        }
        self.log.append(entries, fences).await
    }

    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
        self.log.install_snapshot(snapshot).await
    }
}

/// Broker b1's session 7, and a log that refuses it.
fn fencing() -> (Fence, Arc<Fencing>) {
    let stale = Fence {
        broker: "b1".into(),
        session: 7,
    };
    let log = Arc::new(Fencing {
        log: MemoryLog::new(),
        stale: stale.clone(),
    });
    (stale, log)
}

/// A command judged fine after a fenced one it depends on is judged again once the
/// fenced one is refused: here the delete of a topic that only the fenced create would
/// have made, refused then, without an entry.
#[tokio::test]
async fn what_is_left_after_a_fenced_command_is_judged_again() {
    let (stale, log) = fencing();
    let replica = Arc::new(Replica::new(ClusterState::default()));
    let commands = vec![
        (create("x"), Some(stale)),
        (delete("x"), None),
        (create("y"), None),
    ];
    let (ended, answers) = run_group(log.clone(), &replica, commands).await;
    ended.expect("the loop");
    let fenced = &answers[0];
    assert!(
        matches!(fenced, Err(SequencerError::Fenced(b)) if b == "b1"),
        "{fenced:?}"
    );
    let rest: Vec<_> = answers[1..].iter().map(index_and_error).collect();
    assert_eq!(
        rest,
        vec![(0, Some(ApplyError::UnknownTopic("x".into()))), (1, None)]
    );
    assert_eq!(log.log.retained_entries(), 1, "the create of y alone");
}

/// The same for a command that is never judged itself: an offset commit judged after a
/// fenced segment commit would have been within the end that segment makes; once the
/// segment is refused it is judged again, beyond the end, and answered so without an
/// entry (judged only once, it would have taken an entry that the state then refused).
#[tokio::test]
async fn an_offset_commit_after_a_fenced_segment_is_judged_without_it() {
    let (stale, log) = fencing();
    let replica = Arc::new(Replica::new(ClusterState::default()));
    let created = one_group(log.clone(), &replica, vec![create("t")]).await;
    let Ok(Committed {
        outcome: Ok(Outcome::TopicCreated(topic)),
        ..
    }) = created[0]
    else {
        panic!("create answered {created:?}");
    };
    let segment = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![BatchEntry {
            topic_id: topic,
            partition: 0,
            byte_offset: 16,
            length: 100,
            record_count: 10,
            first_timestamp: 1,
            max_timestamp: 2,
            crc32c: 0,
        }],
        guards: Vec::new(),
        at_ms: 0,
    };
    let commit_offset = |offset| Command::CommitOffsets {
        group: "g".into(),
        member: None,
        offsets: vec![OffsetCommit {
            topic_id: topic,
            partition: 0,
            offset,
            metadata: String::new(),
        }],
        at_ms: 0,
    };
    let commands = vec![
        (segment, Some(stale)),
        (commit_offset(10), None),
        (commit_offset(0), None),
    ];
    let (ended, answers) = run_group(log.clone(), &replica, commands).await;
    ended.expect("the loop");
    assert!(
        matches!(&answers[0], Err(SequencerError::Fenced(b)) if b == "b1"),
        "{:?}",
        answers[0]
    );
    let rest: Vec<_> = answers[1..].iter().map(index_and_error).collect();
    let beyond = ApplyError::OffsetBeyondEnd {
        partition: 0,
        offset: 10,
        high_watermark: 0,
    };
    assert_eq!(rest, vec![(1, Some(beyond)), (2, None)]);
    assert_eq!(
        log.log.retained_entries(),
        2,
        "the create and the commit of offset 0"
    );
    assert_eq!(
        replica.read(|s| s.topic("t").map(|t| t.partitions[0].high_watermark)),
        Some(0)
    );
}
