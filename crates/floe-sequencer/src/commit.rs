//! The commit loop both modes run: the embedded sequencer for its whole life, a cluster
//! leader for its term. It groups submissions, writes each group durably through a
//! [`LogBackend`], applies it to the [`Replica`] and answers the submitters.
//!
//! Also what a running sequencer is made of ([`Running`]), so each mode can start one
//! without knowing the other or the [`crate::Sequencer`] handle wrapping it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{ApplyError, LogError, SequencerError};
use crate::log::{Fence, LogBackend, LogEntry, Snapshot};
use crate::membership::Membership;
use crate::metrics::{CommitMetrics, SnapshotStage};
use crate::replica::Replica;
use crate::state::{Command, Outcome};

/// A command made durable at `index`, with what applying it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Committed {
    pub index: u64,
    pub outcome: Result<Outcome, ApplyError>,
}

/// An append at least this slow is logged: every commit in flight waited for it.
const SLOW_APPEND: Duration = Duration::from_millis(100);

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
    pub metrics: CommitMetrics,
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
///
/// Snapshots run beside it: the loop only copies the state (under the replica's read
/// lock, between two groups); encoding and installing the copy run in a task while groups
/// keep committing, and at most one snapshot is in flight.
pub(crate) struct CommitLoop {
    pub(crate) backend: Arc<dyn LogBackend>,
    replica: Arc<Replica>,
    next_index: u64,
    pub(crate) entries_since_snapshot: u64,
    /// The most commands written to the log in one durable append.
    max_group: usize,
    /// Take a snapshot (and trim the log) after this many entries.
    snapshot_every: u64,
    snapshot: Option<PendingSnapshot>,
    /// After a failed snapshot: the entry count at which to try again.
    snapshot_retry_at: u64,
    /// How long a stopping loop waits for its snapshot in flight before leaving it to
    /// finish on its own (the embedded sequencer waits: its shutdown should keep it).
    pub(crate) snapshot_stop_wait: Duration,
    metrics: CommitMetrics,
}

/// A snapshot being encoded and installed beside the commit loop.
struct PendingSnapshot {
    index: u64,
    task: JoinHandle<Result<usize, LogError>>,
}

/// What woke the commit loop.
enum Next {
    Stop,
    Closed,
    Submission(Submission),
    Snapshot(Result<Result<usize, LogError>, tokio::task::JoinError>),
}

impl CommitLoop {
    pub(crate) fn new(
        backend: Arc<dyn LogBackend>,
        replica: Arc<Replica>,
        max_group: usize,
        snapshot_every: u64,
        metrics: CommitMetrics,
    ) -> Self {
        let next_index = replica.applied_index() + 1;
        Self {
            backend,
            replica,
            next_index,
            entries_since_snapshot: 0,
            max_group,
            snapshot_every,
            snapshot: None,
            snapshot_retry_at: 0,
            snapshot_stop_wait: Duration::ZERO,
            metrics,
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
            // Behind its snapshot, the loop takes nothing until the snapshot is done.
            let held = self.behind_snapshot().then(Instant::now);
            let next = tokio::select! {
                biased;
                () = &mut until => Next::Stop,
                done = async {
                    let pending = self.snapshot.as_mut().expect("a snapshot in flight");
                    (&mut pending.task).await
                }, if self.snapshot.is_some() => Next::Snapshot(done),
                // Snapshots slower than the commits between them (a slow encode or
                // store): take nothing more until the one in flight is done, so the log
                // stays bounded by MAX_LOG_INTERVALS intervals.
                next = receiver.recv(), if !self.behind_snapshot() =>
                    next.map_or(Next::Closed, Next::Submission),
            };
            if let Some(since) = held {
                self.metrics
                    .snapshot_stage(SnapshotStage::Held, since.elapsed());
            }
            let first = match next {
                Next::Submission(first) => first,
                Next::Snapshot(done) => {
                    self.snapshot_done(done)?;
                    continue;
                }
                Next::Stop | Next::Closed => {
                    self.stop_snapshot().await;
                    return Ok(());
                }
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
            if self.snapshot.is_none()
                && self.entries_since_snapshot >= self.snapshot_every.max(self.snapshot_retry_at)
            {
                self.start_snapshot();
            }
        }
    }

    /// Commits, before anything queued, submissions a previous leader refused as no
    /// longer leading (none of them was appended), in order and in groups as
    /// [`run`](Self::run) makes them.
    pub(crate) async fn commit_first(
        &mut self,
        submissions: Vec<Submission>,
    ) -> Result<(), LogError> {
        let mut group = Vec::with_capacity(self.max_group);
        let mut size = 0;
        let mut pending = submissions.into_iter();
        loop {
            let next = pending.next();
            let full = next.as_ref().is_some_and(|next| {
                group.len() >= self.max_group
                    || size + next.command.approximate_size() > MAX_GROUP_BYTES
            });
            if !group.is_empty() && (next.is_none() || full) {
                if let Err(error) = self.commit_group(&mut group).await {
                    // The group was answered; so is what had not been grouped yet.
                    let message = error.to_string();
                    for submission in next.into_iter().chain(pending) {
                        let _ = submission
                            .reply
                            .send(Err(SequencerError::Unavailable(message.clone())));
                    }
                    return Err(error);
                }
                size = 0;
            }
            let Some(next) = next else {
                return Ok(());
            };
            if let Some(next) = refuse_if_too_large(next) {
                size += next.command.approximate_size();
                group.push(next);
            }
        }
    }

    /// Writes the group durably, applies it and answers every submitter. Submissions whose
    /// fence is stale are refused and the rest retried. Commands the state refuses where
    /// they stand in the group are answered without a log entry (see [`Self::prejudge`]).
    /// Returns an error only when the log can no longer be trusted by this process.
    async fn commit_group(&mut self, group: &mut Vec<Submission>) -> Result<(), LogError> {
        loop {
            let refusals = self.prejudge(group);
            let entries: Vec<LogEntry> = group
                .iter()
                .zip(&refusals)
                .filter(|(_, refusal)| refusal.is_none())
                .enumerate()
                .map(|(offset, (submission, _))| LogEntry {
                    index: self.next_index + offset as u64,
                    command: submission.command.clone(),
                })
                .collect();
            let mut fences: Vec<Fence> = group
                .iter()
                .zip(&refusals)
                .filter(|(_, refusal)| refusal.is_none())
                .filter_map(|(s, _)| s.fence.clone())
                .collect();
            fences.sort_by(|a, b| (&a.broker, a.session).cmp(&(&b.broker, b.session)));
            fences.dedup();
            let started = Instant::now();
            let appended = if entries.is_empty() {
                // Only refusals: nothing to append, but they were judged on this replica,
                // which is the log's state only while this process still owns the log.
                self.backend.confirm_owner().await
            } else {
                self.backend.append(&entries, &fences).await
            };
            match appended {
                Ok(()) if entries.is_empty() => {}
                Ok(()) => {
                    let elapsed = started.elapsed();
                    self.metrics.appended(elapsed, entries.len());
                    if elapsed >= SLOW_APPEND {
                        tracing::warn!(
                            elapsed_ms = elapsed.as_millis() as u64,
                            commands = entries.len(),
                            first_index = self.next_index,
                            "sequencer log append was slow; every commit in flight waited"
                        );
                    }
                }
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
                    // What is left is judged again: a refusal may have followed from a
                    // command that is now gone.
                    continue;
                }
                Err(error) => {
                    let fatal = matches!(error, LogError::Poisoned(_) | LogError::Deposed(_));
                    tracing::warn!(%error, commands = group.len(), "sequencer log append failed");
                    let message = error.to_string();
                    // Refusals judged on this group are not answered either: they may
                    // follow from a command that was not written.
                    for submission in group.drain(..) {
                        let _ = submission
                            .reply
                            .send(Err(SequencerError::Unavailable(message.clone())));
                    }
                    return if fatal { Err(error) } else { Ok(()) };
                }
            }
            let outcomes = if entries.is_empty() {
                Vec::new()
            } else {
                self.replica.apply(&entries)
            };
            let mut outcomes = outcomes.into_iter().zip(&entries);
            let refused = refusals.iter().filter(|refusal| refusal.is_some()).count();
            if refused > 0 {
                self.metrics.refused_before_log(refused);
            }
            // A refusal is answered with the index of the last entry before it: the state
            // it was judged on, which a follower waits for before it answers.
            let mut index = self.next_index - 1;
            for (submission, refusal) in group.drain(..).zip(refusals) {
                let committed = match refusal {
                    Some(error) => Committed {
                        index,
                        outcome: Err(error),
                    },
                    None => {
                        let (outcome, entry) = outcomes.next().expect("an outcome per entry");
                        index = entry.index;
                        Committed { index, outcome }
                    }
                };
                let _ = submission.reply.send(Ok(committed));
            }
            self.next_index += entries.len() as u64;
            self.entries_since_snapshot += entries.len() as u64;
            return Ok(());
        }
    }

    /// Judges the group's commands that [may be refused](Command::may_be_refused) and carry
    /// no fence on a copy of the state, in order, as applying the group would: `Some` where
    /// the state refuses one. A refusal changes nothing but the applied index, so it needs
    /// no log entry: a client whose requests are refused (a delete of a topic that does not
    /// exist, a commit of a stale generation) cannot make the log write at its request
    /// rate. Groups with nothing to judge (segment commits) cost nothing here; the others
    /// one copy of the state (persistent maps: about the partition count's worth of small
    /// clones) and the commands up to the last judged one applied twice.
    fn prejudge(&self, group: &[Submission]) -> Vec<Option<ApplyError>> {
        let judged = |submission: &Submission| {
            submission.fence.is_none() && submission.command.may_be_refused()
        };
        let mut refusals = vec![None; group.len()];
        let Some(last) = group.iter().rposition(judged) else {
            return refusals;
        };
        let mut state = self.replica.copy();
        for (submission, refusal) in group[..=last].iter().zip(&mut refusals) {
            let index = state.applied_index + 1;
            if let Err(error) = state.apply(index, &submission.command)
                && judged(submission)
            {
                *refusal = Some(error);
            }
        }
        refusals
    }

    /// Whether the log has grown to [`MAX_LOG_INTERVALS`] intervals past the last snapshot
    /// installed while the next is still in flight.
    fn behind_snapshot(&self) -> bool {
        self.snapshot.is_some()
            && self.entries_since_snapshot >= MAX_LOG_INTERVALS.saturating_mul(self.snapshot_every)
    }

    /// Copies the state and starts encoding and installing the copy in a task.
    fn start_snapshot(&mut self) {
        let started = Instant::now();
        let state = self.replica.copy();
        self.metrics
            .snapshot_stage(SnapshotStage::Copy, started.elapsed());
        let index = state.applied_index;
        let backend = Arc::clone(&self.backend);
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let bytes = tokio::task::spawn_blocking(move || crate::replica::encode_state(&state))
                .await
                .map_err(|error| LogError::Corrupt(format!("encode snapshot: {error}")))??;
            metrics.snapshot_stage(SnapshotStage::Encode, started.elapsed());
            let size = bytes.len();
            let started = Instant::now();
            backend
                .install_snapshot(Snapshot {
                    index,
                    state: bytes,
                })
                .await?;
            metrics.snapshot_stage(SnapshotStage::Install, started.elapsed());
            metrics.snapshot_installed(size);
            Ok(size)
        });
        self.snapshot = Some(PendingSnapshot { index, task });
    }

    /// Takes the outcome of the snapshot in flight. Only a deposed leader stops the loop;
    /// any other failure is retried after another tenth of the interval (counted from
    /// the entries since the last snapshot, which keep their true count).
    fn snapshot_done(
        &mut self,
        done: Result<Result<usize, LogError>, tokio::task::JoinError>,
    ) -> Result<(), LogError> {
        let Some(PendingSnapshot { index, .. }) = self.snapshot.take() else {
            return Ok(());
        };
        let error = match done {
            Ok(Ok(size)) => {
                // Entries committed while it was written are not in it.
                self.entries_since_snapshot = (self.next_index - 1).saturating_sub(index);
                self.snapshot_retry_at = 0;
                tracing::info!(index, size, "sequencer snapshot installed");
                return Ok(());
            }
            Ok(Err(error @ LogError::Deposed(_))) => return Err(error),
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("snapshot task failed: {error}"),
        };
        self.snapshot_retry_at = self.entries_since_snapshot + (self.snapshot_every / 10).max(1);
        tracing::warn!(%error, index, "sequencer snapshot failed; will retry later");
        Ok(())
    }

    /// Waits up to `snapshot_stop_wait` for the snapshot in flight, then leaves it to
    /// finish on its own: an etcd install only moves the pointer forward from what it
    /// read, under the term's check, and a file install holds the log until it is done.
    async fn stop_snapshot(&mut self) {
        let Some(mut pending) = self.snapshot.take() else {
            return;
        };
        let index = pending.index;
        match tokio::time::timeout(self.snapshot_stop_wait, &mut pending.task).await {
            Ok(Ok(Ok(size))) => tracing::info!(index, size, "sequencer snapshot installed"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, index, "sequencer snapshot failed"),
            Ok(Err(error)) => tracing::warn!(%error, index, "sequencer snapshot task failed"),
            Err(_) => tracing::info!(index, "sequencer snapshot left to finish on its own"),
        }
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

/// The log's bound in snapshot intervals, counted from the last snapshot installed: the
/// commit loop takes no commands while the log is this long and a snapshot is in flight.
/// A snapshot starts one interval after the last one landed, so one slow snapshot has
/// `MAX_LOG_INTERVALS - 1` intervals of commits to land in; when every snapshot is slow,
/// each starts as the last lands, and the loop holds once they take more than
/// `MAX_LOG_INTERVALS / 2` intervals each. At two (until 2026-12-04) any snapshot slower
/// than one interval held every commit: with a snapshot every 2,000 entries at ~6,000
/// commits/s, encodes of 0.25–0.5 s held the loop 24 times in 40 s, for up to 256 ms
/// (docs/benchmarks.md). A failed snapshot is retried a tenth of an interval later, so
/// while snapshots fail the log grows past the bound by that much per attempt.
pub(crate) const MAX_LOG_INTERVALS: u64 = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::create;
    use crate::error::ApplyError;
    use crate::memory::MemoryLog;
    use crate::state::ClusterState;

    pub(super) fn delete(name: &str) -> Command {
        Command::DeleteTopic {
            name: name.into(),
            at_ms: 0,
        }
    }

    /// Queues every command (with its fence) before the loop runs, so they commit as one
    /// group, then runs the loop until the queue is drained; returns how the loop ended and
    /// each command's answer.
    pub(super) async fn run_group(
        backend: Arc<dyn LogBackend>,
        replica: &Arc<Replica>,
        commands: Vec<(Command, Option<Fence>)>,
    ) -> (Result<(), LogError>, Vec<Result<Committed, SequencerError>>) {
        let (sender, mut receiver) = mpsc::channel(commands.len());
        let mut answers = Vec::new();
        for (command, fence) in commands {
            let (reply, answer) = oneshot::channel();
            let submission = Submission {
                command,
                fence,
                remote: false,
                reply,
            };
            sender.try_send(submission).expect("room in the queue");
            answers.push(answer);
        }
        drop(sender);
        let metrics = CommitMetrics::default();
        let mut commit = CommitLoop::new(backend, Arc::clone(replica), 64, 1_000_000, metrics);
        let ended = commit.run(&mut receiver, std::future::pending()).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.expect("answered"));
        }
        (ended, results)
    }

    /// [`run_group`] of unfenced commands, on a loop that keeps going.
    pub(super) async fn one_group(
        backend: Arc<dyn LogBackend>,
        replica: &Arc<Replica>,
        commands: Vec<Command>,
    ) -> Vec<Result<Committed, SequencerError>> {
        let commands = commands
            .into_iter()
            .map(|command| (command, None))
            .collect();
        let (ended, answers) = run_group(backend, replica, commands).await;
        ended.expect("the loop");
        answers
    }

    pub(super) fn index_and_error(
        answer: &Result<Committed, SequencerError>,
    ) -> (u64, Option<ApplyError>) {
        let committed = answer.as_ref().expect("committed");
        (committed.index, committed.outcome.clone().err())
    }

    #[tokio::test]
    async fn a_refusal_takes_no_log_entry_and_is_judged_where_it_stands_in_its_group() {
        let log = Arc::new(MemoryLog::new());
        let replica = Arc::new(Replica::new(ClusterState::default()));
        let first = one_group(log.clone(), &replica, vec![create("t")]).await;
        assert_eq!(index_and_error(&first[0]), (1, None));

        let answers = one_group(
            log.clone(),
            &replica,
            vec![
                create("x"),
                delete("x"),
                delete("x"),
                delete("nope"),
                create("t"),
                create("y"),
                delete("y"),
            ],
        )
        .await;
        let unknown = |name: &str| Some(ApplyError::UnknownTopic(name.into()));
        let judged: Vec<_> = answers.iter().map(index_and_error).collect();
        assert_eq!(
            judged,
            vec![
                (2, None),
                (3, None),
                // Refused after the delete before it in the same group, and answered
                // with the index of the state it was judged on.
                (3, unknown("x")),
                (3, unknown("nope")),
                (3, Some(ApplyError::TopicExists("t".into()))),
                (4, None),
                (5, None),
            ]
        );
        let logged: Vec<_> = log
            .recover()
            .await
            .expect("recover")
            .entries
            .into_iter()
            .map(|entry| (entry.index, entry.command))
            .collect();
        assert_eq!(
            logged,
            vec![
                (1, create("t")),
                (2, create("x")),
                (3, delete("x")),
                (4, create("y")),
                (5, delete("y")),
            ]
        );
        assert_eq!(replica.applied_index(), 5);

        // A group of refusals only writes nothing and moves nothing.
        let refused = one_group(log.clone(), &replica, vec![delete("x"), create("t")]).await;
        let judged: Vec<_> = refused.iter().map(index_and_error).collect();
        assert_eq!(
            judged,
            vec![
                (5, unknown("x")),
                (5, Some(ApplyError::TopicExists("t".into())))
            ]
        );
        assert_eq!(log.retained_entries(), 5);
        assert_eq!(replica.applied_index(), 5);
        // And the next command takes the next index.
        let next = one_group(log.clone(), &replica, vec![create("z")]).await;
        assert_eq!(index_and_error(&next[0]), (6, None));
    }

    /// A log whose next append fails without writing anything.
    #[derive(Debug, Default)]
    struct FailingOnce {
        log: MemoryLog,
        failed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl LogBackend for FailingOnce {
        async fn recover(&self) -> Result<crate::log::Recovery, LogError> {
            self.log.recover().await
        }

        async fn append(&self, entries: &[LogEntry], fences: &[Fence]) -> Result<(), LogError> {
            if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Err(LogError::Etcd("timed out".into()));
            }
            self.log.append(entries, fences).await
        }

        async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
            self.log.install_snapshot(snapshot).await
        }
    }

    /// A log this process no longer owns (a cluster leader whose term is over).
    #[derive(Debug, Default)]
    struct Deposed(MemoryLog);

    #[async_trait::async_trait]
    impl LogBackend for Deposed {
        async fn recover(&self) -> Result<crate::log::Recovery, LogError> {
            self.0.recover().await
        }

        async fn append(&self, _: &[LogEntry], _: &[Fence]) -> Result<(), LogError> {
            Err(LogError::Deposed("the term is over".into()))
        }

        async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
            self.0.install_snapshot(snapshot).await
        }

        async fn confirm_owner(&self) -> Result<(), LogError> {
            Err(LogError::Deposed("the term is over".into()))
        }
    }

    /// A group of refusals only writes nothing, but its answers come from this replica:
    /// a loop that no longer owns the log must not give them (another leader may have
    /// created the topic meanwhile), and stops as an append would have made it.
    #[tokio::test]
    async fn refusals_alone_are_answered_only_while_the_log_is_owned() {
        let log = Arc::new(Deposed::default());
        let replica = Arc::new(Replica::new(ClusterState::default()));
        let (ended, answers) = run_group(log, &replica, vec![(delete("x"), None)]).await;
        assert!(matches!(ended, Err(LogError::Deposed(_))), "{ended:?}");
        let answer = &answers[0];
        assert!(
            matches!(answer, Err(SequencerError::Unavailable(message)) if message.contains("term is over")),
            "{answer:?}"
        );
    }

    /// A refusal that followed from a command in the same group is not answered as one
    /// when that command was not written: the state it was judged on never existed.
    #[tokio::test]
    async fn a_refusal_judged_on_a_failed_append_is_answered_as_its_failure() {
        let log = Arc::new(FailingOnce::default());
        let replica = Arc::new(Replica::new(ClusterState::default()));
        let answers = one_group(log.clone(), &replica, vec![create("t"), create("t")]).await;
        for answer in &answers {
            assert!(
                matches!(answer, Err(SequencerError::Unavailable(message)) if message.contains("timed out")),
                "{answer:?}"
            );
        }
        assert_eq!(replica.applied_index(), 0);
        // Retried, the same two commands commit and refuse as they should.
        let answers = one_group(log.clone(), &replica, vec![create("t"), create("t")]).await;
        let judged: Vec<_> = answers.iter().map(index_and_error).collect();
        assert_eq!(
            judged,
            vec![(1, None), (1, Some(ApplyError::TopicExists("t".into())))]
        );
        assert_eq!(log.log.retained_entries(), 1);
    }
}

/// Commands refused for a stale broker session, and what is judged after them.
#[cfg(test)]
mod fenced_tests;

/// The hold that bounds the log when snapshots are slower than the commits between them.
#[cfg(test)]
mod held_tests;
