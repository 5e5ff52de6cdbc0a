//! The commit loop both modes run: the embedded sequencer for its whole life, a cluster
//! leader for its term. It groups submissions, writes each group durably through a
//! [`LogBackend`], applies it to the [`Replica`] and answers the submitters.
//!
//! Also what a running sequencer is made of ([`Running`]), so each mode can start one
//! without knowing the other or the [`crate::Sequencer`] handle wrapping it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{ApplyError, LogError, SequencerError};
use crate::log::{Fence, LogBackend, LogEntry, Snapshot};
use crate::membership::Membership;
use crate::replica::Replica;
use crate::state::{Command, Outcome};

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

/// The parts of a started sequencer: its replica, the queue its commit loop (or its
/// forwarder) drains, the stop signal and the task that drives it, and its membership.
#[derive(Debug)]
pub(crate) struct Running {
    pub replica: Arc<Replica>,
    pub submissions: mpsc::Sender<Submission>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    pub membership: Arc<dyn Membership>,
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
    replica: Arc<Replica>,
    next_index: u64,
    pub(crate) entries_since_snapshot: u64,
    /// The most commands written to the log in one durable append.
    max_group: usize,
    /// Take a snapshot (and trim the log) after this many entries.
    snapshot_every: u64,
}

impl CommitLoop {
    pub(crate) fn new(
        backend: Arc<dyn LogBackend>,
        replica: Arc<Replica>,
        max_group: usize,
        snapshot_every: u64,
    ) -> Self {
        let next_index = replica.applied_index() + 1;
        Self {
            backend,
            replica,
            next_index,
            entries_since_snapshot: 0,
            max_group,
            snapshot_every,
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
        let mut group = Vec::with_capacity(self.max_group);
        loop {
            let first = tokio::select! {
                biased;
                () = &mut until => return Ok(()),
                next = receiver.recv() => match next {
                    Some(first) => first,
                    None => return Ok(()),
                },
            };
            let Some(first) = refuse_if_too_large(first) else {
                continue;
            };
            let mut size = first.command.approximate_size();
            group.push(first);
            while group.len() < self.max_group && size < MAX_GROUP_BYTES {
                match receiver.try_recv() {
                    Ok(next) => {
                        let Some(next) = refuse_if_too_large(next) else {
                            continue;
                        };
                        size += next.command.approximate_size();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group).await?;
            if self.entries_since_snapshot >= self.snapshot_every {
                match self.snapshot().await {
                    Ok(()) => {}
                    Err(error @ LogError::Deposed(_)) => return Err(error),
                    Err(error) => {
                        // Retry after another tenth of the interval, not after every group.
                        self.entries_since_snapshot -= (self.snapshot_every / 10).max(1);
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
            let outcomes = self.replica.apply(&entries);
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
        let (index, state) = self.replica.encode()?;
        let size = state.len();
        self.backend
            .install_snapshot(Snapshot { index, state })
            .await?;
        self.entries_since_snapshot = 0;
        tracing::info!(index, size, "sequencer snapshot installed");
        Ok(())
    }
}

/// The largest command one log entry takes: a definite refusal before the log is
/// touched, where etcd would refuse the whole group's append and end the leader's term.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// Answers a submission whose command is over [`MAX_COMMAND_BYTES`] with
/// [`SequencerError::CommandTooLarge`], or hands it back.
fn refuse_if_too_large(submission: Submission) -> Option<Submission> {
    let size = submission.command.approximate_size();
    if size <= MAX_COMMAND_BYTES {
        return Some(submission);
    }
    let _ = submission.reply.send(Err(SequencerError::CommandTooLarge {
        size,
        limit: MAX_COMMAND_BYTES,
    }));
    None
}

/// Groups stop growing past this many (estimated) bytes, well under etcd's 1.5 MiB
/// request limit and the etcd client's 4 MiB response limit when read back in pages.
const MAX_GROUP_BYTES: usize = 512 * 1024;
