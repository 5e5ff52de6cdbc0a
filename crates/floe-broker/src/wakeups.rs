//! Per-partition wake-ups for fetches waiting at the tail. A commit, a compaction's swap
//! or a retention trim wakes only the fetches of the partitions it names, instead of every
//! long-poll and event stream of the broker; commands that may change any partition's view
//! (topics created or deleted, partitions added, owners, configuration, ACLs) wake
//! everyone; the rest (groups, producer ids, exports, the object lifecycle) wake nobody.

use std::collections::HashMap;
use std::sync::Arc;

use floe_core::TopicId;
use floe_sequencer::{ApplyError, ApplyObserver, ClusterState, Command, Outcome};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// Wakes fetches waiting on partitions as commits are applied.
#[derive(Debug)]
pub(crate) struct Wakeups {
    partitions: Mutex<HashMap<(TopicId, u32), watch::Sender<()>>>,
    everyone: watch::Sender<()>,
}

/// What one waiting fetch listens to.
#[derive(Debug)]
pub(crate) struct Waiter {
    topic: TopicId,
    partition: watch::Receiver<()>,
    everyone: watch::Receiver<()>,
}

impl Wakeups {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            partitions: Mutex::new(HashMap::new()),
            everyone: watch::channel(()).0,
        })
    }

    /// Starts listening for commits to one partition.
    pub(crate) fn subscribe(&self, topic: TopicId, partition: u32) -> Waiter {
        let partition = self
            .partitions
            .lock()
            .entry((topic, partition))
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        Waiter {
            topic,
            partition,
            everyone: self.everyone.subscribe(),
        }
    }
}

impl Waiter {
    /// The topic (by id) this waiter listens to.
    pub(crate) fn topic(&self) -> TopicId {
        self.topic
    }

    /// Marks what happened so far as seen: call before reading the state, so a commit
    /// landing between the read and [`Waiter::wait`] still wakes the waiter.
    pub(crate) fn mark_seen(&mut self) {
        self.partition.borrow_and_update();
        self.everyone.borrow_and_update();
    }

    /// Waits for a commit to the partition (or a change to everyone) until `deadline`.
    /// Returns what woke it, or `None` when the deadline passed. A partition whose topic
    /// was deleted has no sender any more: its waiter then waits for the others or the
    /// deadline instead of returning at once (a caller looping on it would spin).
    pub(crate) async fn wait(&mut self, deadline: Instant) -> Option<Woken> {
        let woken = async {
            let (mut partition_open, mut everyone_open) = (true, true);
            loop {
                tokio::select! {
                    changed = self.partition.changed(), if partition_open => match changed {
                        Ok(()) => return Woken::Partition,
                        Err(_) => partition_open = false,
                    },
                    changed = self.everyone.changed(), if everyone_open => match changed {
                        Ok(()) => return Woken::Broadcast,
                        Err(_) => everyone_open = false,
                    },
                    else => std::future::pending::<()>().await,
                }
            }
        };
        tokio::time::timeout_at(deadline, woken).await.ok()
    }
}

/// What ended a waiting fetch's wait before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// A commit to its partition.
    Partition,
    /// A command that may move any partition's view (a topic created or deleted,
    /// partitions added, owners, a configuration or ACL change).
    Broadcast,
    /// Nothing: the periodic look (a replica that installed a snapshot announces nothing).
    Recheck,
}

impl Woken {
    pub(crate) const ALL: [Woken; 3] = [Woken::Partition, Woken::Broadcast, Woken::Recheck];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Woken::Partition => "partition",
            Woken::Broadcast => "broadcast",
            Woken::Recheck => "recheck",
        }
    }
}

impl Wakeups {
    /// Wakes the fetches waiting on one partition.
    fn wake(partitions: &mut HashMap<(TopicId, u32), watch::Sender<()>>, key: (TopicId, u32)) {
        let forgotten = match partitions.get(&key) {
            Some(sender) => sender.send(()).is_err(),
            None => false,
        };
        // Nobody waits on it any more; the next waiter makes a new one.
        if forgotten {
            partitions.remove(&key);
        }
    }
}

impl ApplyObserver for Wakeups {
    fn applied(
        &self,
        _state: &ClusterState,
        command: &Command,
        outcome: &Result<Outcome, ApplyError>,
    ) {
        match (command, outcome) {
            (Command::CommitSegment { batches, .. }, Ok(Outcome::SegmentCommitted(results))) => {
                let mut partitions = self.partitions.lock();
                for (batch, written) in batches.iter().zip(results.written()) {
                    if written.is_some() {
                        Self::wake(&mut partitions, (batch.topic_id, batch.partition));
                    }
                }
            }
            // A compaction's swap and a retention trim change the partitions they name, and
            // only those. (Neither moves a high watermark, so a fetch waiting at the tail
            // finds nothing new; it looks again all the same.) Each compaction used to
            // wake every waiting fetch of the broker.
            (
                Command::ReplaceBatches {
                    topic_id,
                    partition,
                    ..
                },
                Ok(_),
            ) => Self::wake(&mut self.partitions.lock(), (*topic_id, *partition)),
            (Command::TrimPartitions { trims, .. }, Ok(_)) => {
                let mut partitions = self.partitions.lock();
                for trim in trims {
                    Self::wake(&mut partitions, (trim.topic_id, trim.partition));
                }
            }
            // Failed commits, swaps and trims change nothing; groups' writes, producer ids,
            // exports and the object lifecycle move no partition's log.
            (
                Command::CommitSegment { .. }
                | Command::ReplaceBatches { .. }
                | Command::TrimPartitions { .. }
                | Command::WriteGroup { .. }
                | Command::CommitOffsets { .. }
                | Command::DeleteGroup { .. }
                | Command::InitProducer { .. }
                | Command::ExpireProducers { .. }
                | Command::RaiseOrphanHorizon { .. }
                | Command::ForgetObjects { .. }
                | Command::BeginExport { .. }
                | Command::ExportFailed { .. }
                | Command::CommitExport { .. },
                _,
            ) => {}
            (Command::DeleteTopic { .. }, Ok(Outcome::TopicDeleted(topic))) => {
                self.partitions.lock().retain(|(id, _), _| id != topic);
                self.everyone.send_replace(());
            }
            // Everything else (topics created or deleted, partitions added, owners, topic
            // configuration, ACLs) may move any waiter's view.
            _ => {
                self.everyone.send_replace(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter on `partition` that has seen everything so far.
    fn waiting(wakeups: &Wakeups, topic: TopicId, partition: u32) -> Waiter {
        let mut waiter = wakeups.subscribe(topic, partition);
        waiter.mark_seen();
        waiter
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_for_its_partition_only() {
        let wakeups = Wakeups::new();
        let topic = TopicId(1);
        let [mut zero, mut one] = [0, 1].map(|partition| waiting(&wakeups, topic, partition));
        wakeups.partitions.lock()[&(topic, 0)].send_replace(());
        let soon = Instant::now() + std::time::Duration::from_millis(10);
        assert_eq!(
            zero.wait(soon).await,
            Some(Woken::Partition),
            "its partition committed"
        );
        assert_eq!(one.wait(soon).await, None, "another partition's commit");
        wakeups.everyone.send_replace(());
        let later = Instant::now() + std::time::Duration::from_millis(10);
        assert_eq!(
            one.wait(later).await,
            Some(Woken::Broadcast),
            "a change for everyone"
        );
    }

    /// A waiter whose partition's sender is gone (its topic was deleted) waits out its
    /// deadline rather than returning at once.
    #[tokio::test(start_paused = true)]
    async fn a_closed_partition_waits_for_the_deadline() {
        let wakeups = Wakeups::new();
        let topic = TopicId(1);
        let mut zero = waiting(&wakeups, topic, 0);
        wakeups.partitions.lock().clear();
        let deadline = Instant::now() + std::time::Duration::from_millis(500);
        assert_eq!(zero.wait(deadline).await, None);
        assert!(Instant::now() >= deadline, "returned before its deadline");
        // A broadcast still wakes it.
        wakeups.everyone.send_replace(());
        let later = Instant::now() + std::time::Duration::from_millis(500);
        assert_eq!(zero.wait(later).await, Some(Woken::Broadcast));
    }

    /// A compaction's swap wakes the fetches of its partition, not every waiting fetch;
    /// the object lifecycle wakes none.
    #[tokio::test(start_paused = true)]
    async fn a_swap_wakes_its_partition_only_and_the_lifecycle_nobody() {
        let wakeups = Wakeups::new();
        let topic = TopicId(1);
        let [mut zero, mut one] = [0, 1].map(|partition| waiting(&wakeups, topic, partition));
        let state = ClusterState::default();
        let swap = Command::ReplaceBatches {
            at_ms: 1,
            topic_id: topic,
            partition: 0,
            segment: floe_core::SegmentId::generate(),
            level: 1,
            replaced: Vec::new(),
            batches: Vec::new(),
        };
        let swapped = Ok(Outcome::BatchesReplaced {
            removed: 2,
            added: 1,
        });
        wakeups.applied(&state, &swap, &swapped);
        let forget = Command::ForgetObjects {
            segments: Vec::new(),
        };
        wakeups.applied(&state, &forget, &Ok(Outcome::ObjectsForgotten(0)));
        let soon = Instant::now() + std::time::Duration::from_millis(10);
        assert_eq!(zero.wait(soon).await, Some(Woken::Partition));
        assert_eq!(one.wait(soon).await, None, "another partition's swap");
        let later = Instant::now() + std::time::Duration::from_millis(10);
        assert_eq!(zero.wait(later).await, None, "the lifecycle moved nothing");
    }
}
