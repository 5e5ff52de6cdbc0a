//! Faults of the sequencer's log under the produce path, through the one seam every log
//! backend sits behind ([`LogBackend`]): an append whose outcome is unknown (written, but
//! the answer lost and the check failed: what the etcd log reports as poisoned), an append
//! that fails and writes nothing, and a group commit mixing stale and live fences. The
//! commit loop driving the backend is the one both modes run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_core::TopicConfig;
use floe_core::segment::BatchEntry;
use floe_sequencer::{
    Command, Fence, Identity, LogBackend, LogEntry, LogError, MemoryLog, Recovery, Sequencer,
    SequencerError, SequencerOptions, Snapshot,
};
use floe_storage::SegmentStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::tests::cache;
use crate::{Broker, BrokerOptions, FetchRequest, ProduceRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFault {
    /// The group is written, but the answer is lost and the check of what landed fails:
    /// the backend can only say the outcome is unknown.
    LandedUnknown,
    /// The request fails and nothing is written.
    Failed,
}

/// One call of `append`, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    first_index: u64,
    commands: usize,
    fences: Vec<Fence>,
    /// The stale fences it was refused for; empty when it was not refused for fences.
    refused_for: Vec<Fence>,
}

/// A [`MemoryLog`] with planned faults, sessions declared stale, and a gate appends wait
/// at while it is closed (so submissions pile up into one group behind it).
#[derive(Debug)]
struct FaultyLog {
    inner: MemoryLog,
    plan: Mutex<VecDeque<LogFault>>,
    stale: Mutex<Vec<Fence>>,
    open: watch::Sender<bool>,
    /// Appends that have started (waiting at the gate or past it).
    entered: watch::Sender<usize>,
    attempts: Mutex<Vec<Attempt>>,
}

impl FaultyLog {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryLog::new(),
            plan: Mutex::new(VecDeque::new()),
            stale: Mutex::new(Vec::new()),
            open: watch::channel(true).0,
            entered: watch::channel(0).0,
            attempts: Mutex::new(Vec::new()),
        })
    }

    /// The indexes of every durable entry, in log order.
    async fn indexes(&self) -> Vec<u64> {
        let recovery = self.inner.recover().await.expect("recover");
        recovery.entries.iter().map(|entry| entry.index).collect()
    }
}

#[async_trait]
impl LogBackend for FaultyLog {
    async fn recover(&self) -> Result<Recovery, LogError> {
        self.inner.recover().await
    }

    async fn append(&self, entries: &[LogEntry], fences: &[Fence]) -> Result<(), LogError> {
        self.entered.send_modify(|entered| *entered += 1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        let first_index = entries.first().map_or(0, |entry| entry.index);
        let stale: Vec<Fence> = {
            let declared = self.stale.lock();
            fences
                .iter()
                .filter(|fence| declared.contains(fence))
                .cloned()
                .collect()
        };
        self.attempts.lock().push(Attempt {
            first_index,
            commands: entries.len(),
            fences: fences.to_vec(),
            refused_for: stale.clone(),
        });
        // As a backend with membership does: any stale fence refuses the whole write.
        if !stale.is_empty() {
            return Err(LogError::Fenced(stale));
        }
        let fault = self.plan.lock().pop_front();
        match fault {
            None => self.inner.append(entries, fences).await,
            Some(LogFault::LandedUnknown) => {
                self.inner.append(entries, fences).await?;
                Err(LogError::Poisoned(format!(
                    "append of log index {first_index} has an unknown outcome: connection reset"
                )))
            }
            Some(LogFault::Failed) => Err(LogError::Etcd("append: unavailable".into())),
        }
    }

    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
        self.inner.install_snapshot(snapshot).await
    }
}

async fn broker_on(log: Arc<FaultyLog>, store: SegmentStore, options: BrokerOptions) -> Broker {
    let sequencer = Sequencer::open(
        log,
        SequencerOptions::default(),
        Identity::new("broker-0", "127.0.0.1:0"),
    )
    .await
    .expect("sequencer");
    Broker::builder(sequencer, store.clone(), cache(store).await)
        .options(options)
        .build()
}

fn options() -> BrokerOptions {
    BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        ..BrokerOptions::default()
    }
}

fn memory_store() -> SegmentStore {
    SegmentStore::new(Arc::new(InMemory::new()), Path::default())
}

fn batch(name: &str, partition: u32) -> Vec<ProduceRecord> {
    (0..10)
        .map(|i| ProduceRecord {
            partition: Some(partition),
            key: None,
            value: Some(Bytes::from(format!("{name}-{i}"))),
            headers: Vec::new(),
            timestamp_ms: None,
        })
        .collect()
}

/// Every record of a partition of "t" from offset 0: (offset, value).
async fn read_partition(broker: &Broker, partition: u32) -> Vec<(u64, String)> {
    let fetched = broker
        .fetch(FetchRequest {
            topic: "t".into(),
            partition,
            offset: 0,
            max_records: 10_000,
            max_bytes: 1 << 24,
            wait: Duration::ZERO,
            clamp: false,
        })
        .await
        .expect("fetch");
    assert_eq!(
        fetched.next_offset, fetched.high_watermark,
        "read to the end"
    );
    fetched
        .records
        .iter()
        .map(|r| {
            let value = r.record.value.as_deref().unwrap_or_default();
            (r.offset, String::from_utf8_lossy(value).into_owned())
        })
        .collect()
}

fn expected(batches: &[&str]) -> Vec<(u64, String)> {
    batches
        .iter()
        .flat_map(|name| (0..10).map(move |i| format!("{name}-{i}")))
        .enumerate()
        .map(|(offset, value)| (offset as u64, value))
        .collect()
}

/// A segment's commit is written but its answer is lost and cannot be checked. Its
/// producers get an error, never an acknowledgement; the process stops trusting its log
/// and refuses what follows rather than write over the unknown entry. Restarted on the
/// same log, the broker finds the commit exactly once, right after what was acknowledged
/// before it, and carries on after it.
#[tokio::test(start_paused = true)]
async fn an_append_with_an_unknown_outcome_acknowledges_nothing_and_is_found_once_on_restart() {
    let log = FaultyLog::new();
    let store = memory_store();
    let broker = broker_on(log.clone(), store.clone(), options()).await;
    broker
        .create_topic("t", 1, TopicConfig::default())
        .await
        .expect("create");
    broker.produce("t", batch("a", 0)).await.expect("produce a");

    log.plan.lock().push_back(LogFault::LandedUnknown);
    let unknown = broker
        .produce("t", batch("b", 0))
        .await
        .expect_err("an unknown outcome is not an acknowledgement");
    assert_eq!(
        unknown.kind(),
        floe_core::ErrorKind::Unavailable,
        "{unknown}"
    );
    let after = broker
        .produce("t", batch("c", 0))
        .await
        .expect_err("nothing is written after an entry whose outcome is unknown");
    assert_eq!(after.kind(), floe_core::ErrorKind::Unavailable, "{after}");
    assert_eq!(broker.buffered_bytes(), 0);
    broker.shutdown().await;

    let restarted = broker_on(log.clone(), store, options()).await;
    assert_eq!(
        read_partition(&restarted, 0).await,
        expected(&["a", "b"]),
        "the unknown commit landed: once, after a; c never did"
    );
    let acks = restarted
        .produce("t", batch("d", 0))
        .await
        .expect("produce d");
    assert_eq!(acks[0].offset, 20);
    assert_eq!(
        read_partition(&restarted, 0).await,
        expected(&["a", "b", "d"])
    );
    let indexes = log.indexes().await;
    assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
    restarted.shutdown().await;
}

/// An append fails and writes nothing: its producers get an error, the log keeps no gap
/// and no entry for it, and the next segment commits at the offsets the failed one
/// would have had.
#[tokio::test(start_paused = true)]
async fn a_failed_append_fails_its_producers_and_the_next_segment_commits() {
    let log = FaultyLog::new();
    let broker = broker_on(log.clone(), memory_store(), options()).await;
    broker
        .create_topic("t", 1, TopicConfig::default())
        .await
        .expect("create");
    broker.produce("t", batch("a", 0)).await.expect("produce a");
    log.plan.lock().push_back(LogFault::Failed);
    let failed = broker
        .produce("t", batch("b", 0))
        .await
        .expect_err("nothing was written");
    assert_eq!(failed.kind(), floe_core::ErrorKind::Unavailable, "{failed}");
    assert_eq!(broker.buffered_bytes(), 0);
    let acks = broker.produce("t", batch("c", 0)).await.expect("produce c");
    assert_eq!(acks[0].offset, 10);
    assert_eq!(read_partition(&broker, 0).await, expected(&["a", "c"]));
    let indexes = log.indexes().await;
    assert_eq!(
        indexes,
        (1..=indexes.len() as u64).collect::<Vec<_>>(),
        "dense log indexes"
    );
    broker.shutdown().await;
}

/// A commit of a segment nobody uploaded, for a direct submission.
fn phantom_commit(topic_id: floe_core::TopicId) -> Command {
    Command::CommitSegment {
        segment: floe_core::SegmentId::generate(),
        batches: vec![BatchEntry {
            topic_id,
            partition: 0,
            byte_offset: 16,
            length: 100,
            record_count: 5,
            first_timestamp: 0,
            max_timestamp: 0,
            crc32c: 0,
        }],
        guards: Vec::new(),
        at_ms: 0,
    }
}

/// One group holds the broker's own segment commits, a command under a live session and
/// commands under a stale one. The backend refuses the group for the stale fence; the
/// commit loop refuses exactly the stale submissions and writes the rest, at the same log
/// index, in one more append. The stale commands change nothing: no topic, no offsets.
#[tokio::test(start_paused = true)]
async fn a_group_mixing_stale_and_live_fences_commits_the_live_and_refuses_only_the_stale() {
    let log = FaultyLog::new();
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        // One request, one segment, one commit.
        segment_max_bytes: 1,
        ..BrokerOptions::default()
    };
    let broker = broker_on(log.clone(), memory_store(), options).await;
    broker
        .create_topic("t", 2, TopicConfig::default())
        .await
        .expect("create");
    let topic_id = broker
        .sequencer()
        .read(|state| state.topic("t").map(|t| t.id))
        .expect("topic");
    let stale = Fence {
        broker: "ghost".into(),
        session: 7,
    };
    let live = Fence {
        broker: "b1".into(),
        session: 9,
    };
    log.stale.lock().push(stale.clone());

    // The first commit holds the log while the rest queue up behind it.
    let before = *log.entered.borrow();
    log.open.send_replace(false);
    let first = tokio::spawn({
        let broker = broker.clone();
        async move { broker.produce("t", batch("p0", 0)).await }
    });
    log.entered
        .subscribe()
        .wait_for(|entered| *entered > before)
        .await
        .expect("the first append starts");
    let submit = |command: Command, fence: Fence| {
        let sequencer = broker.sequencer().clone();
        tokio::spawn(async move {
            sequencer
                .submit_ordered(command, Some(fence))
                .await
                .expect("enqueue")
                .await
        })
    };
    let produce = |name: &'static str, partition: u32| {
        let broker = broker.clone();
        tokio::spawn(async move { broker.produce("t", batch(name, partition)).await })
    };
    let p1 = produce("p1", 0);
    let ghost_commit = submit(phantom_commit(topic_id), stale.clone());
    let p2 = produce("p2", 1);
    let ghost_topic = submit(
        Command::CreateTopic {
            name: "ghost-topic".into(),
            partitions: 1,
            config: TopicConfig::default(),
            created_ms: 0,
        },
        stale.clone(),
    );
    let live_topic = submit(
        Command::CreateTopic {
            name: "live-topic".into(),
            partitions: 1,
            config: TopicConfig::default(),
            created_ms: 0,
        },
        live.clone(),
    );
    let p3 = produce("p3", 0);
    // Paused time moves only when nothing can run: every request has been sealed,
    // uploaded and queued behind the held append by then.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*log.entered.borrow(), before + 1, "still one append, held");
    log.open.send_replace(true);

    let offsets = |acks: Vec<crate::RecordAck>| acks[0].offset;
    assert_eq!(offsets(first.await.expect("task").expect("p0")), 0);
    let p1 = offsets(p1.await.expect("task").expect("p1 commits"));
    let p3 = offsets(p3.await.expect("task").expect("p3 commits"));
    let p2 = offsets(p2.await.expect("task").expect("p2 commits"));
    let mut partition0 = vec![p1, p3];
    partition0.sort_unstable();
    assert_eq!(partition0, vec![10, 20], "stale commits took no offsets");
    assert_eq!(p2, 0);
    for refused in [ghost_commit, ghost_topic] {
        match refused.await.expect("task") {
            Err(SequencerError::Fenced(broker)) => assert_eq!(broker, "ghost"),
            other => panic!("expected the stale session's refusal, got {other:?}"),
        }
    }
    live_topic
        .await
        .expect("task")
        .expect("the live session's command commits");

    let attempts = log.attempts.lock().clone();
    let mixed = attempts
        .iter()
        .position(|a| !a.refused_for.is_empty())
        .expect("a group was refused for a stale fence");
    let refused = &attempts[mixed];
    assert_eq!(refused.refused_for, vec![stale.clone()]);
    assert_eq!(
        refused.fences,
        {
            let mut fences = vec![stale.clone(), live.clone()];
            fences.sort_by(|a, b| a.broker.cmp(&b.broker));
            fences
        },
        "the refused group mixed both sessions"
    );
    assert_eq!(
        refused.commands, 6,
        "three segments, one live and two stale"
    );
    let retried = &attempts[mixed + 1];
    assert_eq!(retried.first_index, refused.first_index);
    assert_eq!(retried.commands, 4);
    assert_eq!(retried.fences, vec![live]);
    assert!(retried.refused_for.is_empty());

    broker.sequencer().read(|state| {
        assert!(state.topic("ghost-topic").is_none());
        assert!(state.topic("live-topic").is_some());
    });
    let zero: Vec<String> = read_partition(&broker, 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(zero.len(), 30);
    assert!(zero.iter().all(|value| !value.is_empty()));
    let indexes = log.indexes().await;
    assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
    broker.shutdown().await;
}
