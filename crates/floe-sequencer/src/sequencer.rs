//! The sequencer handle: submits commands, reads the replica, tells who the broker is.
//!
//! It is the same in both modes; what runs behind it ([`Running`]) is the embedded commit
//! loop, started here by [`Sequencer::open`], or a cluster driver, started by
//! [`crate::open_cluster`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::commit::{CommitLoop, Committed, Running, Submission, refuse_queued};
use crate::error::SequencerError;
use crate::log::{Fence, LogBackend};
use crate::membership::{Identity, Membership, Mode, SoleMember};
use crate::metrics::CommitMetrics;
use crate::replica::{ApplyObserver, Replica, decode_state};
use crate::state::{ClusterState, Command, Outcome};

/// Tuning of the commit loop: the `[sequencer]` section of `floe.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequencerOptions {
    /// The most commands written to the log in one durable append.
    pub max_group: usize,
    /// Sequencer log entries between snapshots (bounds replay time and etcd's size).
    pub snapshot_every: u64,
    /// Submissions waiting for the commit loop before `submit` waits too.
    pub queue_depth: usize,
}

impl SequencerOptions {
    /// Refuses values the commit loop cannot work with, naming the setting.
    pub fn validate(&self) -> Result<(), floe_core::InvalidSetting> {
        use floe_core::settings::at_least;
        at_least("max_group", self.max_group, 1)?;
        at_least("snapshot_every", self.snapshot_every, 1)?;
        at_least("queue_depth", self.queue_depth, 1)
    }
}

impl Default for SequencerOptions {
    fn default() -> Self {
        Self {
            max_group: 256,
            snapshot_every: 20_000,
            queue_depth: 4096,
        }
    }
}

/// The single writer of the metadata state and the read replica everyone queries.
///
/// A command's effects become visible to readers only after its log entry is durable, so a
/// read never shows an uncommitted record.
#[derive(Debug, Clone)]
pub struct Sequencer {
    replica: Arc<Replica>,
    metrics: CommitMetrics,
    submissions: mpsc::Sender<Submission>,
    stop: Arc<watch::Sender<bool>>,
    driver: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    membership: Arc<dyn Membership>,
}

impl Sequencer {
    /// Recovers the state from the backend's snapshot and log, then starts the commit loop:
    /// the embedded sequencer, with `identity` as the cluster's one member.
    pub async fn open(
        backend: Arc<dyn LogBackend>,
        options: SequencerOptions,
        identity: Identity,
    ) -> Result<Self, SequencerError> {
        let recovery = backend.recover().await?;
        let mut state = match &recovery.snapshot {
            Some(snapshot) => decode_state(snapshot.index, &snapshot.state)?,
            None => ClusterState::default(),
        };
        let replayed = recovery.entries.len();
        for entry in recovery.entries {
            if entry.index <= state.applied_index {
                continue;
            }
            // Rejections replay as rejections; only the state matters here.
            let _ = state.apply(entry.index, &entry.command);
        }
        tracing::info!(
            applied_index = state.applied_index,
            replayed,
            "sequencer state recovered"
        );

        let replica = Arc::new(Replica::new(state));
        let metrics = CommitMetrics::default();
        let (submissions, mut receiver) = mpsc::channel(options.queue_depth);
        let (stop, mut stop_receiver) = watch::channel(false);
        let mut commit_loop = CommitLoop::new(
            backend,
            Arc::clone(&replica),
            options.max_group,
            options.snapshot_every,
            metrics.clone(),
        );
        commit_loop.entries_since_snapshot = replayed as u64;
        commit_loop.snapshot_stop_wait = Duration::from_secs(10);
        let membership = Arc::new(SoleMember::new(identity));
        let failed = Arc::clone(&membership);
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_receiver.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = commit_loop.run(&mut receiver, stopped).await {
                tracing::error!(%error, "sequencer log failed; stopping the commit loop");
                failed.fail(error.to_string());
            }
            commit_loop.backend.close().await;
            refuse_queued(&mut receiver);
        });
        Ok(Self::wrap(Running {
            replica,
            metrics,
            submissions,
            stop,
            task,
            membership,
        }))
    }

    /// The handle on a started sequencer, whichever mode started it.
    pub(crate) fn wrap(running: Running) -> Self {
        Self {
            replica: running.replica,
            metrics: running.metrics,
            submissions: running.submissions,
            stop: Arc::new(running.stop),
            driver: Arc::new(tokio::sync::Mutex::new(Some(running.task))),
            membership: running.membership,
        }
    }

    /// Before a graceful stop: hands the sequencer leadership to another broker (see
    /// [`Membership::hand_over`]) and waits, at most `patience`, until another broker
    /// leads or none can take over. This broker's commits go on, through the next leader.
    pub async fn hand_over(&self, patience: Duration) {
        if self.membership.mode() != Mode::Etcd {
            return;
        }
        self.membership.hand_over();
        let me = self.membership.broker().to_owned();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let alone = self.membership.members().iter().all(|m| m.broker == me);
            let another_leads = self.membership.leader().is_some_and(|l| l.broker != me);
            if alone || another_leads || !self.membership.is_handing_over() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    ?patience,
                    "no other broker took the sequencer leadership over"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the commit loop after the group in progress and releases the log backend.
    /// Later submissions fail with [`SequencerError::Stopped`].
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Some(handle) = self.driver.lock().await.take() {
            let _ = handle.await;
        }
    }

    /// Submits a command and waits until it is durable and applied.
    pub async fn submit(&self, command: Command) -> Result<Outcome, SequencerError> {
        self.submit_ordered(command, None).await?.await
    }

    /// Enqueues a command now and returns a future for its outcome. Commands enqueued by
    /// successive calls are logged in that order, so a caller can pipeline commits. With a
    /// fence, the command commits only while that broker session is live.
    pub async fn submit_ordered(
        &self,
        command: Command,
        fence: Option<Fence>,
    ) -> Result<
        impl Future<Output = Result<Outcome, SequencerError>> + Send + 'static,
        SequencerError,
    > {
        let committed = self.enqueue(command, fence, false).await?;
        Ok(async move { Ok(committed.await?.outcome?) })
    }

    /// Commits commands forwarded by another broker, in order. Only the leader accepts
    /// them; elsewhere each answers [`SequencerError::NotLeader`]. An embedded sequencer
    /// has no followers and refuses them all with [`SequencerError::NotClustered`].
    pub async fn submit_forwarded(
        &self,
        commands: Vec<(Command, Option<Fence>)>,
    ) -> Result<Vec<Result<Committed, SequencerError>>, SequencerError> {
        if self.membership.mode() == Mode::Embedded {
            return Err(SequencerError::NotClustered);
        }
        let mut pending = Vec::with_capacity(commands.len());
        for (command, fence) in commands {
            pending.push(self.enqueue(command, fence, true).await);
        }
        let mut results = Vec::with_capacity(pending.len());
        for pending in pending {
            results.push(match pending {
                Ok(committed) => committed.await,
                Err(error) => Err(error),
            });
        }
        Ok(results)
    }

    async fn enqueue(
        &self,
        command: Command,
        fence: Option<Fence>,
        remote: bool,
    ) -> Result<impl Future<Output = Result<Committed, SequencerError>> + use<>, SequencerError>
    {
        let (reply, outcome) = oneshot::channel();
        self.submissions
            .send(Submission {
                command,
                fence,
                remote,
                reply,
            })
            .await
            .map_err(|_| SequencerError::Stopped)?;
        Ok(async move { outcome.await.map_err(|_| SequencerError::Stopped)? })
    }

    /// The fence this broker's commits should carry now: its live session in a cluster,
    /// nothing in the embedded mode. Fails while a cluster broker has no live session.
    pub fn fence(&self) -> Result<Option<Fence>, SequencerError> {
        self.membership.fence()
    }

    /// Members, leadership, readiness and partition owners, in either mode.
    pub fn membership(&self) -> &dyn Membership {
        &*self.membership
    }

    /// Registers the sequencer's metrics (log appends, group sizes, snapshot stages, as
    /// recorded by the commit loop in this process) on `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Reads the replica under a shared lock. Keep `read` short: the commit loop waits for it.
    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        self.replica.read(read)
    }

    /// Returns a receiver that changes whenever new entries are applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.replica.subscribe()
    }

    /// Registers an observer of every command applied from now on.
    pub fn observe(&self, observer: Arc<dyn ApplyObserver>) {
        self.replica.observe(observer);
    }

    /// Waits until the replica has applied `index`, up to `timeout`. Returns whether it did.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|applied| *applied >= index))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use floe_core::TopicConfig;

    use super::*;
    use crate::error::LogError;
    use crate::memory::MemoryLog;

    /// An embedded sequencer on an in-memory log.
    async fn embedded() -> Sequencer {
        Sequencer::open(
            Arc::new(MemoryLog::new()),
            SequencerOptions::default(),
            Identity::new("b0", "127.0.0.1:0"),
        )
        .await
        .expect("open")
    }

    fn create_topic() -> Command {
        Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            config: TopicConfig::default(),
            created_ms: 0,
        }
    }

    #[tokio::test]
    async fn an_embedded_sequencer_refuses_forwarded_commands() {
        let sequencer = embedded().await;
        let command = create_topic();
        let refused = sequencer.submit_forwarded(vec![(command, None)]).await;
        assert!(matches!(refused, Err(SequencerError::NotClustered)));
        assert_eq!(sequencer.read(|state| state.applied_index), 0);
        assert_eq!(sequencer.membership().broker(), "b0");
        sequencer.shutdown().await;
    }

    #[tokio::test]
    async fn a_command_over_the_entry_limit_is_refused_before_the_log() {
        let sequencer = embedded().await;
        let Outcome::TopicCreated(topic_id) =
            sequencer.submit(create_topic()).await.expect("create")
        else {
            panic!("a topic was created");
        };
        let entry = floe_core::segment::BatchEntry {
            topic_id,
            partition: 0,
            byte_offset: 16,
            length: 100,
            record_count: 1,
            first_timestamp: 1,
            max_timestamp: 1,
            crc32c: 0,
        };
        let huge = Command::CommitSegment {
            segment: floe_core::SegmentId::generate(),
            batches: vec![entry; 10_000],
            guards: Vec::new(),
            at_ms: 0,
        };
        assert!(huge.approximate_size() > crate::commit::MAX_COMMAND_BYTES);
        let refused = sequencer.submit(huge).await;
        assert!(
            matches!(refused, Err(SequencerError::CommandTooLarge { .. })),
            "{refused:?}"
        );
        assert_eq!(
            sequencer.read(|state| state.applied_index),
            1,
            "nothing logged"
        );
        // The loop goes on: a command of a normal size still commits.
        let small = Command::CommitSegment {
            segment: floe_core::SegmentId::generate(),
            batches: vec![entry],
            guards: Vec::new(),
            at_ms: 0,
        };
        sequencer.submit(small).await.expect("a normal commit");
        assert_eq!(sequencer.read(|state| state.applied_index), 2);
        sequencer.shutdown().await;
    }

    /// A log whose appends fail for good, as when an append's outcome is unknown.
    #[derive(Debug, Default)]
    struct PoisonedLog(MemoryLog);

    #[async_trait::async_trait]
    impl crate::log::LogBackend for PoisonedLog {
        async fn recover(&self) -> Result<crate::log::Recovery, LogError> {
            self.0.recover().await
        }

        async fn append(&self, _: &[crate::log::LogEntry], _: &[Fence]) -> Result<(), LogError> {
            Err(LogError::Poisoned("the disk is gone".into()))
        }

        async fn install_snapshot(&self, snapshot: crate::log::Snapshot) -> Result<(), LogError> {
            self.0.install_snapshot(snapshot).await
        }
    }

    /// An embedded sequencer whose log failed for good says so: not ready, and failed
    /// (so a liveness probe restarts the broker), instead of answering every commit with
    /// an error while reporting ready.
    #[tokio::test]
    async fn an_embedded_sequencer_whose_log_failed_is_neither_ready_nor_alive() {
        let sequencer = Sequencer::open(
            Arc::new(PoisonedLog::default()),
            SequencerOptions::default(),
            Identity::new("b0", "127.0.0.1:0"),
        )
        .await
        .expect("open");
        assert!(sequencer.membership().ready().is_ok());
        assert_eq!(sequencer.membership().failed(), None);
        let create = Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            config: TopicConfig::default(),
            created_ms: 0,
        };
        assert!(sequencer.submit(create.clone()).await.is_err());
        // The loop records the failure as it stops; later commits are refused.
        for _ in 0..100 {
            if sequencer.membership().failed().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failed = sequencer.membership().failed().expect("failed");
        assert!(failed.contains("the disk is gone"), "{failed}");
        let not_ready = sequencer.membership().ready().expect_err("not ready");
        assert!(not_ready.to_string().contains("restarts"), "{not_ready}");
        assert!(sequencer.submit(create).await.is_err());
        sequencer.shutdown().await;
    }
}
