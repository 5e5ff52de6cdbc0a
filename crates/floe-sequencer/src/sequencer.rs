//! The sequencer: group-commits commands through the log, then applies them.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{LogError, SequencerError};
use crate::log::{LogBackend, LogEntry, Snapshot};
use crate::state::{ClusterState, Command, Outcome};

/// Tuning of the commit loop.
#[derive(Debug, Clone)]
pub struct SequencerOptions {
    /// The most commands written to the log in one durable append.
    pub max_group: usize,
    /// Take a snapshot (and trim the log) after this many entries.
    pub snapshot_every: u64,
    /// Submissions waiting for the commit loop before `submit` waits too.
    pub queue_depth: usize,
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

type Reply = oneshot::Sender<Result<Outcome, SequencerError>>;

struct Submission {
    command: Command,
    reply: Reply,
}

/// The single writer of the metadata state and the read replica everyone queries.
///
/// A command's effects become visible to readers only after its log entry is durable, so a
/// read never shows an uncommitted record.
#[derive(Debug, Clone)]
pub struct Sequencer {
    state: Arc<RwLock<ClusterState>>,
    submissions: mpsc::Sender<Submission>,
    applied: watch::Receiver<u64>,
    stop: Arc<watch::Sender<bool>>,
    commit_loop: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// Recovers the state from the backend's snapshot and log, then starts the commit loop.
    pub async fn open(
        backend: Arc<dyn LogBackend>,
        options: SequencerOptions,
    ) -> Result<Self, SequencerError> {
        let recovery = backend.recover().await?;
        let mut state = match &recovery.snapshot {
            Some(snapshot) => {
                let mut state: ClusterState =
                    serde_json::from_slice(&snapshot.state).map_err(|e| {
                        LogError::Corrupt(format!("snapshot at index {}: {e}", snapshot.index))
                    })?;
                state.rebuild_derived();
                state
            }
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

        let applied_index = state.applied_index;
        let state = Arc::new(RwLock::new(state));
        let (submissions, receiver) = mpsc::channel(options.queue_depth);
        let (applied_sender, applied) = watch::channel(applied_index);
        let (stop, stop_receiver) = watch::channel(false);
        let commit_loop = CommitLoop {
            stop: stop_receiver,
            backend,
            state: Arc::clone(&state),
            receiver,
            applied: applied_sender,
            next_index: applied_index + 1,
            entries_since_snapshot: replayed as u64,
            options,
        };
        let commit_loop = tokio::spawn(commit_loop.run());
        Ok(Self {
            state,
            submissions,
            applied,
            stop: Arc::new(stop),
            commit_loop: Arc::new(tokio::sync::Mutex::new(Some(commit_loop))),
        })
    }

    /// Stops the commit loop after the group in progress and releases the log backend.
    /// Later submissions fail with [`SequencerError::Stopped`].
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Some(handle) = self.commit_loop.lock().await.take() {
            let _ = handle.await;
        }
    }

    /// Submits a command and waits until it is durable and applied.
    pub async fn submit(&self, command: Command) -> Result<Outcome, SequencerError> {
        self.submit_ordered(command).await?.await
    }

    /// Enqueues a command now and returns a future for its outcome. Commands enqueued by
    /// successive calls are logged in that order, so a caller can pipeline commits.
    pub async fn submit_ordered(
        &self,
        command: Command,
    ) -> Result<
        impl Future<Output = Result<Outcome, SequencerError>> + Send + 'static,
        SequencerError,
    > {
        let (reply, outcome) = oneshot::channel();
        self.submissions
            .send(Submission { command, reply })
            .await
            .map_err(|_| SequencerError::Stopped)?;
        Ok(async move { outcome.await.map_err(|_| SequencerError::Stopped)? })
    }

    /// Reads the replica under a shared lock. Keep `read` short: the commit loop waits for it.
    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        read(&self.state.read())
    }

    /// Returns a receiver that changes whenever new entries are applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }
}

struct CommitLoop {
    stop: watch::Receiver<bool>,
    backend: Arc<dyn LogBackend>,
    state: Arc<RwLock<ClusterState>>,
    receiver: mpsc::Receiver<Submission>,
    applied: watch::Sender<u64>,
    next_index: u64,
    entries_since_snapshot: u64,
    options: SequencerOptions,
}

impl CommitLoop {
    async fn run(mut self) {
        let mut group = Vec::with_capacity(self.options.max_group);
        loop {
            let first = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stopped| *stopped) => break,
                next = self.receiver.recv() => match next {
                    Some(first) => first,
                    None => break,
                },
            };
            group.push(first);
            while group.len() < self.options.max_group {
                match self.receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.commit_group(&mut group).await {
                tracing::error!(%error, "sequencer log failed; stopping the commit loop");
                break;
            }
            if self.entries_since_snapshot >= self.options.snapshot_every
                && let Err(error) = self.snapshot().await
            {
                tracing::warn!(%error, "sequencer snapshot failed; will retry later");
            }
        }
        // Whatever is queued now can never commit.
        self.receiver.close();
        while let Ok(submission) = self.receiver.try_recv() {
            let _ = submission.reply.send(Err(SequencerError::Stopped));
        }
    }

    /// Writes the group durably, applies it and answers every submitter. Returns an error
    /// only when the log can no longer be trusted.
    async fn commit_group(&mut self, group: &mut Vec<Submission>) -> Result<(), LogError> {
        let entries: Vec<LogEntry> = group
            .iter()
            .enumerate()
            .map(|(offset, submission)| LogEntry {
                index: self.next_index + offset as u64,
                command: submission.command.clone(),
            })
            .collect();
        if let Err(error) = self.backend.append(&entries).await {
            let fatal = matches!(error, LogError::Poisoned(_));
            tracing::warn!(%error, commands = group.len(), "sequencer log append failed");
            let message = error.to_string();
            for submission in group.drain(..) {
                let _ = submission
                    .reply
                    .send(Err(SequencerError::Log(LogError::Corrupt(message.clone()))));
            }
            return if fatal { Err(error) } else { Ok(()) };
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        {
            let mut state = self.state.write();
            for entry in &entries {
                outcomes.push(state.apply(entry.index, &entry.command));
            }
        }
        let last_index = self.next_index + entries.len() as u64 - 1;
        self.next_index = last_index + 1;
        self.entries_since_snapshot += entries.len() as u64;
        self.applied.send_replace(last_index);
        for (submission, outcome) in group.drain(..).zip(outcomes) {
            let _ = submission.reply.send(outcome.map_err(SequencerError::from));
        }
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<(), LogError> {
        let (index, state) = {
            let state = self.state.read();
            let bytes = serde_json::to_vec(&*state)
                .map_err(|e| LogError::Corrupt(format!("encode snapshot: {e}")))?;
            (state.applied_index, Bytes::from(bytes))
        };
        let size = state.len();
        self.backend
            .install_snapshot(Snapshot { index, state })
            .await?;
        self.entries_since_snapshot = 0;
        tracing::info!(index, size, "sequencer snapshot installed");
        Ok(())
    }
}
