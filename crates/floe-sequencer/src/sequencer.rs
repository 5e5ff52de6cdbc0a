//! The sequencer: group-commits commands through the log, then applies them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::ClusterHandle;
use crate::error::{ApplyError, LogError, SequencerError};
use crate::log::{Fence, LogBackend, LogEntry, Snapshot};
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

/// A command made durable at `index`, with what applying it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Committed {
    pub index: u64,
    pub outcome: Result<Outcome, ApplyError>,
}

pub(crate) type Reply = oneshot::Sender<Result<Committed, SequencerError>>;

pub(crate) struct Submission {
    pub command: Command,
    pub fence: Option<Fence>,
    /// Forwarded by another broker: a follower must not forward it again.
    pub remote: bool,
    pub reply: Reply,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("command", &self.command)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

/// Told of every command this replica applies, before readers waiting on the applied
/// index are woken, with the state as it stands right after the command. It runs under the
/// state's write lock: it must be quick and must not block (spawn anything longer).
pub trait ApplyObserver: Send + Sync + 'static {
    fn applied(
        &self,
        state: &ClusterState,
        command: &Command,
        outcome: &Result<Outcome, ApplyError>,
    );
}

/// The replica of the state and the signal that it moved, shared by whoever applies
/// entries (the commit loop of a leader, the log follower of everyone else) and readers.
pub(crate) struct Core {
    state: RwLock<ClusterState>,
    applied: watch::Sender<u64>,
    observers: RwLock<Vec<Arc<dyn ApplyObserver>>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("applied", &*self.applied.borrow())
            .field("observers", &self.observers.read().len())
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(state: ClusterState) -> Self {
        let (applied, _) = watch::channel(state.applied_index);
        Self {
            state: RwLock::new(state),
            applied,
            observers: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn observe(&self, observer: Arc<dyn ApplyObserver>) {
        self.observers.write().push(observer);
    }

    pub(crate) fn applied_index(&self) -> u64 {
        self.state.read().applied_index
    }

    pub(crate) fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        read(&self.state.read())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies entries that follow the replica's last one, in order, and announces them.
    /// Entries at or below the applied index are skipped (already applied).
    pub(crate) fn apply(&self, entries: &[LogEntry]) -> Vec<Result<Outcome, ApplyError>> {
        let mut outcomes = Vec::with_capacity(entries.len());
        let last = {
            let mut state = self.state.write();
            let observers = self.observers.read();
            for entry in entries {
                if entry.index <= state.applied_index {
                    continue;
                }
                let outcome = state.apply(entry.index, &entry.command);
                for observer in observers.iter() {
                    observer.applied(&state, &entry.command, &outcome);
                }
                outcomes.push(outcome);
            }
            state.applied_index
        };
        self.applied.send_replace(last);
        outcomes
    }

    /// Replaces the replica with a snapshot that is ahead of it.
    pub(crate) fn install(&self, state: ClusterState) {
        let index = state.applied_index;
        *self.state.write() = state;
        self.applied.send_replace(index);
    }

    pub(crate) fn encode(&self) -> Result<(u64, Bytes), LogError> {
        let state = self.state.read();
        let bytes = serde_json::to_vec(&*state)
            .map_err(|e| LogError::Corrupt(format!("encode snapshot: {e}")))?;
        Ok((state.applied_index, Bytes::from(bytes)))
    }
}

/// Decodes a snapshot's bytes into a state.
pub(crate) fn decode_state(index: u64, bytes: &[u8]) -> Result<ClusterState, LogError> {
    let mut state: ClusterState = serde_json::from_slice(bytes)
        .map_err(|e| LogError::Corrupt(format!("snapshot at index {index}: {e}")))?;
    state.rebuild_derived();
    Ok(state)
}

/// The single writer of the metadata state and the read replica everyone queries.
///
/// A command's effects become visible to readers only after its log entry is durable, so a
/// read never shows an uncommitted record.
#[derive(Debug, Clone)]
pub struct Sequencer {
    core: Arc<Core>,
    submissions: mpsc::Sender<Submission>,
    stop: Arc<watch::Sender<bool>>,
    driver: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    cluster: Option<Arc<ClusterHandle>>,
}

impl Sequencer {
    /// Recovers the state from the backend's snapshot and log, then starts the commit loop.
    pub async fn open(
        backend: Arc<dyn LogBackend>,
        options: SequencerOptions,
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

        let core = Arc::new(Core::new(state));
        let (submissions, mut receiver) = mpsc::channel(options.queue_depth);
        let (stop, mut stop_receiver) = watch::channel(false);
        let mut commit_loop = CommitLoop::new(backend, Arc::clone(&core), options);
        commit_loop.entries_since_snapshot = replayed as u64;
        let driver = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_receiver.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = commit_loop.run(&mut receiver, stopped).await {
                tracing::error!(%error, "sequencer log failed; stopping the commit loop");
            }
            commit_loop.backend.close().await;
            refuse_queued(&mut receiver);
        });
        Ok(Self::assemble(core, submissions, stop, driver, None))
    }

    pub(crate) fn assemble(
        core: Arc<Core>,
        submissions: mpsc::Sender<Submission>,
        stop: watch::Sender<bool>,
        driver: tokio::task::JoinHandle<()>,
        cluster: Option<Arc<ClusterHandle>>,
    ) -> Self {
        Self {
            core,
            submissions,
            stop: Arc::new(stop),
            driver: Arc::new(tokio::sync::Mutex::new(Some(driver))),
            cluster,
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
    /// them; elsewhere each answers [`SequencerError::NotLeader`].
    pub async fn submit_forwarded(
        &self,
        commands: Vec<(Command, Option<Fence>)>,
    ) -> Vec<Result<Committed, SequencerError>> {
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
        results
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
        match &self.cluster {
            None => Ok(None),
            Some(cluster) => cluster.fence().map(Some),
        }
    }

    /// Membership, leadership and sessions, when running as part of a cluster.
    pub fn cluster(&self) -> Option<&ClusterHandle> {
        self.cluster.as_deref()
    }

    /// Reads the replica under a shared lock. Keep `read` short: the commit loop waits for it.
    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        self.core.read(read)
    }

    /// Returns a receiver that changes whenever new entries are applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.core.subscribe()
    }

    /// Registers an observer of every command applied from now on.
    pub fn observe(&self, observer: Arc<dyn ApplyObserver>) {
        self.core.observe(observer);
    }

    /// Waits until the replica has applied `index`, up to `timeout`. Returns whether it did.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|applied| *applied >= index))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

/// Answers every queued submission with `Stopped` once nothing can commit them.
pub(crate) fn refuse_queued(receiver: &mut mpsc::Receiver<Submission>) {
    receiver.close();
    while let Ok(submission) = receiver.try_recv() {
        let _ = submission.reply.send(Err(SequencerError::Stopped));
    }
}

/// Writes groups of submissions through a backend and applies them: the embedded
/// sequencer's whole life, and a cluster leader's term.
pub(crate) struct CommitLoop {
    pub(crate) backend: Arc<dyn LogBackend>,
    core: Arc<Core>,
    next_index: u64,
    pub(crate) entries_since_snapshot: u64,
    options: SequencerOptions,
}

impl CommitLoop {
    pub(crate) fn new(
        backend: Arc<dyn LogBackend>,
        core: Arc<Core>,
        options: SequencerOptions,
    ) -> Self {
        let next_index = core.applied_index() + 1;
        Self {
            backend,
            core,
            next_index,
            entries_since_snapshot: 0,
            options,
        }
    }

    /// Commits submissions until `until` completes (Ok) or the log can no longer be
    /// trusted by this process (Err).
    pub(crate) async fn run(
        &mut self,
        receiver: &mut mpsc::Receiver<Submission>,
        until: impl Future<Output = ()>,
    ) -> Result<(), LogError> {
        tokio::pin!(until);
        let mut group = Vec::with_capacity(self.options.max_group);
        loop {
            let first = tokio::select! {
                biased;
                () = &mut until => return Ok(()),
                next = receiver.recv() => match next {
                    Some(first) => first,
                    None => return Ok(()),
                },
            };
            let mut size = first.command.approximate_size();
            group.push(first);
            while group.len() < self.options.max_group && size < MAX_GROUP_BYTES {
                match receiver.try_recv() {
                    Ok(next) => {
                        size += next.command.approximate_size();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group).await?;
            if self.entries_since_snapshot >= self.options.snapshot_every {
                match self.snapshot().await {
                    Ok(()) => {}
                    Err(error @ LogError::Deposed(_)) => return Err(error),
                    Err(error) => {
                        // Retry after another tenth of the interval, not after every group.
                        self.entries_since_snapshot -= (self.options.snapshot_every / 10).max(1);
                        tracing::warn!(%error, "sequencer snapshot failed; will retry later");
                    }
                }
            }
        }
    }

    /// Writes the group durably, applies it and answers every submitter. Submissions whose
    /// fence is stale are refused and the rest retried. Returns an error only when the log
    /// can no longer be trusted by this process.
    async fn commit_group(&mut self, group: &mut Vec<Submission>) -> Result<(), LogError> {
        loop {
            let entries: Vec<LogEntry> = group
                .iter()
                .enumerate()
                .map(|(offset, submission)| LogEntry {
                    index: self.next_index + offset as u64,
                    command: submission.command.clone(),
                })
                .collect();
            let mut fences: Vec<Fence> = group.iter().filter_map(|s| s.fence.clone()).collect();
            fences.sort_by(|a, b| (&a.broker, a.session).cmp(&(&b.broker, b.session)));
            fences.dedup();
            match self.backend.append(&entries, &fences).await {
                Ok(()) => {}
                Err(LogError::Fenced(stale)) => {
                    let (refused, kept): (Vec<_>, Vec<_>) = group
                        .drain(..)
                        .partition(|s| s.fence.as_ref().is_some_and(|f| stale.contains(f)));
                    for submission in refused {
                        let broker = submission.fence.map(|f| f.broker).unwrap_or_default();
                        let _ = submission.reply.send(Err(SequencerError::Fenced(broker)));
                    }
                    *group = kept;
                    if group.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => {
                    let fatal = matches!(error, LogError::Poisoned(_) | LogError::Deposed(_));
                    tracing::warn!(%error, commands = group.len(), "sequencer log append failed");
                    let message = error.to_string();
                    for submission in group.drain(..) {
                        let _ = submission
                            .reply
                            .send(Err(SequencerError::Unavailable(message.clone())));
                    }
                    return if fatal { Err(error) } else { Ok(()) };
                }
            }
            let outcomes = self.core.apply(&entries);
            self.next_index += entries.len() as u64;
            self.entries_since_snapshot += entries.len() as u64;
            for ((submission, outcome), entry) in group.drain(..).zip(outcomes).zip(&entries) {
                let _ = submission.reply.send(Ok(Committed {
                    index: entry.index,
                    outcome,
                }));
            }
            return Ok(());
        }
    }

    async fn snapshot(&mut self) -> Result<(), LogError> {
        let (index, state) = self.core.encode()?;
        let size = state.len();
        self.backend
            .install_snapshot(Snapshot { index, state })
            .await?;
        self.entries_since_snapshot = 0;
        tracing::info!(index, size, "sequencer snapshot installed");
        Ok(())
    }
}

/// Groups stop growing past this many (estimated) bytes, well under etcd's 1.5 MiB
/// request limit and the etcd client's 4 MiB response limit when read back in pages.
const MAX_GROUP_BYTES: usize = 512 * 1024;
