//! A cluster broker's sequencer: campaign; as leader run the commit loop on the etcd log
//! and assign partition owners; as follower keep the replica current and forward
//! commands to the leader. Repeat whenever the term or the session ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tokio::sync::{mpsc, oneshot, watch};

use super::etcd_log::{catch_up, read_pointer};
use super::session::{self, Campaign};
use floe_core::Clock;

use super::{
    ClusterHandle, ClusterOptions, EtcdLog, ForwardedCommand, Forwarder, Keys, RemoteError,
    SnapshotStore, etcd,
};
use crate::commit::{CommitLoop, Running, Submission, refuse_queued};
use crate::error::SequencerError;
use crate::membership::{Identity, LeaderInfo};
use crate::metrics::CommitMetrics;
use crate::replica::Replica;
use crate::state::{ClusterState, Command, OwnerChange};

/// Joins the cluster: connects to etcd, loads the replica, registers this broker, and
/// starts campaigning. What it starts commits through whoever leads.
pub(crate) async fn join(
    identity: Identity,
    options: ClusterOptions,
    snapshots: Arc<dyn SnapshotStore>,
    forwarder: Arc<dyn Forwarder>,
    clock: Arc<dyn Clock>,
) -> Result<Running, SequencerError> {
    let connect = super::connect_options(options.tls.as_ref())
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_require_leader(true);
    let client = etcd(
        "connect",
        Client::connect(&options.endpoints, Some(connect)),
    )
    .await?;
    tracing::info!(endpoints = ?options.endpoints, "connected to etcd; loading the replica");
    let keys = Keys::new(&options.cluster);
    let replica = Arc::new(Replica::new(ClusterState::default()));
    let metrics = CommitMetrics::default();
    catch_up(&client, &keys, &snapshots, &replica).await?;
    tracing::info!(
        applied_index = replica.applied_index(),
        cluster = options.cluster,
        "replica loaded from etcd"
    );
    let handle = ClusterHandle::new(identity, options.clone(), clock);
    let session = session::register(&client, &keys, &handle, options.lease_ttl * 3).await?;
    handle.set_session(Some(session));

    let (submissions, receiver) = mpsc::channel(options.sequencer.queue_depth);
    let (stop, stop_receiver) = watch::channel(false);
    let driver = Driver {
        client,
        keys,
        handle: Arc::clone(&handle),
        replica: Arc::clone(&replica),
        metrics: metrics.clone(),
        snapshots,
        forwarder,
        submissions: submissions.clone(),
        options,
        refused: parking_lot::Mutex::new(Refused::default()),
        leaderless_since: parking_lot::Mutex::new(None),
    };
    let task = tokio::spawn(driver.run(receiver, stop_receiver));
    Ok(Running {
        replica,
        metrics,
        submissions,
        stop,
        task,
        membership: handle,
    })
}

struct Driver {
    client: Client,
    keys: Keys,
    handle: Arc<ClusterHandle>,
    replica: Arc<Replica>,
    metrics: CommitMetrics,
    snapshots: Arc<dyn SnapshotStore>,
    forwarder: Arc<dyn Forwarder>,
    submissions: mpsc::Sender<Submission>,
    options: ClusterOptions,
    /// This broker's commands that a leader refused because it had stopped leading.
    refused: parking_lot::Mutex<Refused>,
    /// Since when this broker, standing by, has seen nobody lead.
    leaderless_since: parking_lot::Mutex<Option<Instant>>,
}

/// Commands a leader refused as no longer leading (so none was appended): they go
/// first, in order, to the next leader, or to this broker's own commit loop if it leads
/// next. Given up after [`REFUSED_PATIENCE`] without a leader taking them.
#[derive(Default)]
struct Refused {
    submissions: Vec<Submission>,
    since: Option<Instant>,
}

/// How long a broker handing over waits for another to take the leadership before it
/// takes it back (every broker may be stopping at once). A campaign writes the election
/// key at once, so a second without one means nobody is campaigning.
const STAND_BY_PATIENCE: Duration = Duration::from_secs(1);

/// How long refused commands wait for a leader that takes them.
const REFUSED_PATIENCE: Duration = Duration::from_secs(10);

/// How long a call forwarded to a leader whose term has ended may still take: a leader
/// handing over answers at once (committed, or refused as no longer leading); one that
/// crashed never does, and its commands' outcome is unknown.
const TERM_OVER_GRACE: Duration = Duration::from_secs(2);

#[derive(PartialEq)]
enum Flow {
    Continue,
    Stop,
}

impl Driver {
    async fn run(self, mut receiver: mpsc::Receiver<Submission>, mut stop: watch::Receiver<bool>) {
        let maintain = tokio::spawn(session::maintain(
            self.client.clone(),
            self.keys.clone(),
            Arc::clone(&self.handle),
        ));
        let members = tokio::spawn(session::watch_members(
            self.client.clone(),
            self.keys.clone(),
            Arc::clone(&self.handle),
        ));
        while !*stop.borrow() {
            if self.one_term(&mut receiver, &mut stop).await == Flow::Stop {
                break;
            }
        }
        maintain.abort();
        members.abort();
        for submission in self.take_refused().0 {
            let _ = submission.reply.send(Err(SequencerError::Stopped));
        }
        refuse_queued(&mut receiver);
        let session = self.handle.session.lock().take();
        if let Some(session) = session {
            // Revoking drops the registration and any leadership at once: a quick handover.
            let _ = etcd(
                "lease revoke",
                self.client.clone().lease_revoke(session.lease),
            )
            .await;
        }
        self.handle.leader.send_replace(None);
        tracing::info!("left the cluster");
    }

    async fn one_term(
        &self,
        receiver: &mut mpsc::Receiver<Submission>,
        stop: &mut watch::Receiver<bool>,
    ) -> Flow {
        let lease = self.handle.session.lock().as_ref().map(|s| s.lease);
        let mut session_changes = self.handle.session_changed.subscribe();
        let Some(lease) = lease else {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return Flow::Stop,
                _ = session_changes.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            return Flow::Continue;
        };
        if self.handle.handing_over() {
            return self.stand_by(lease, receiver, stop).await;
        }
        let info = LeaderInfo {
            broker: self.handle.identity.broker.clone(),
            advertise: self.handle.identity.advertise.clone(),
            internal: self.handle.identity.internal.clone(),
            term: 0,
        };
        match session::campaign(&self.client, &self.keys, lease, &info).await {
            Ok(Campaign::Won { term }) => self.lead(term, receiver, stop).await,
            Ok(Campaign::Lost { leader, .. }) => self.follow(leader, receiver, stop).await,
            Err(error) => {
                tracing::warn!(%error, "campaign failed; retrying");
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => Flow::Stop,
                    () = tokio::time::sleep(Duration::from_millis(250)) => Flow::Continue,
                }
            }
        }
    }

    async fn lead(
        &self,
        term: i64,
        receiver: &mut mpsc::Receiver<Submission>,
        stop: &mut watch::Receiver<bool>,
    ) -> Flow {
        let mut session_changes = self.handle.session_changed.subscribe();
        session_changes.mark_unchanged();
        // Until caught up this broker leads nothing, and whoever led before does not
        // either: neither is reported (cluster info, readiness, leader-only jobs).
        self.handle.leader.send_replace(None);
        // Everything the previous leader committed is below this read: its writes after
        // our election fail their term check.
        let mut attempts = 0;
        while let Err(error) =
            catch_up(&self.client, &self.keys, &self.snapshots, &self.replica).await
        {
            attempts += 1;
            tracing::warn!(%error, attempts, "new leader could not catch up");
            if attempts >= 3 {
                // Let a broker that can read the log lead instead.
                self.resign(term).await;
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return Flow::Stop,
                    () = tokio::time::sleep(self.options.lease_ttl) => return Flow::Continue,
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let snapshot_index = read_pointer(&self.client, &self.keys)
            .await
            .ok()
            .and_then(|(pointer, _)| pointer)
            .map_or(0, |pointer| pointer.index);
        self.handle.leader.send_replace(Some(LeaderInfo {
            broker: self.handle.identity.broker.clone(),
            advertise: self.handle.identity.advertise.clone(),
            internal: self.handle.identity.internal.clone(),
            term,
        }));
        tracing::info!(
            term,
            applied_index = self.replica.applied_index(),
            "leading the sequencer"
        );
        let backend = Arc::new(EtcdLog::for_term(
            self.client.clone(),
            self.keys.clone(),
            term,
            Arc::clone(&self.snapshots),
            self.options.compact_etcd,
        ));
        let mut commit = CommitLoop::new(
            backend,
            Arc::clone(&self.replica),
            self.options.sequencer.max_group,
            self.options.sequencer.snapshot_every,
            self.metrics.clone(),
        );
        // Count from the last snapshot, so leader changes cannot postpone trimming etcd.
        commit.entries_since_snapshot = self.replica.applied_index().saturating_sub(snapshot_index);
        let mut stopped = stop.clone();
        let until = async {
            tokio::select! {
                _ = stopped.wait_for(|stopped| *stopped) => {}
                _ = session_changes.changed() => {}
                () = session::wait_term_over(&self.client, &self.keys, term) => {}
                () = self.wait_handing_over() => {}
            }
        };
        // What the last leader refused goes first; then the queue.
        let result = match commit.commit_first(self.take_refused().0).await {
            Ok(()) => tokio::select! {
                result = commit.run(receiver, until) => result,
                () = self.rebalance() => Ok(()),
            },
            Err(error) => Err(error),
        };
        // The term is over: stop claiming it until the next election says who leads.
        self.handle.leader.send_replace(None);
        if self.handle.handing_over() && !*stop.borrow() {
            self.set_aside_queued(receiver);
            self.resign(term).await;
            tracing::info!(term, "handed the sequencer leadership over");
        }
        if let Err(error) = result {
            tracing::warn!(%error, term, "sequencer term ended");
        } else {
            tracing::info!(term, "sequencer term ended");
        }
        if *stop.borrow() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    async fn follow(
        &self,
        leader: LeaderInfo,
        receiver: &mut mpsc::Receiver<Submission>,
        stop: &mut watch::Receiver<bool>,
    ) -> Flow {
        let mut session_changes = self.handle.session_changed.subscribe();
        session_changes.mark_unchanged();
        if leader.term == 0 {
            return Flow::Continue;
        }
        tracing::info!(
            leader = leader.broker,
            term = leader.term,
            "following the sequencer leader"
        );
        self.handle.leader.send_replace(Some(leader.clone()));
        let replica = super::follow::follow(
            self.client.clone(),
            self.keys.clone(),
            Arc::clone(&self.snapshots),
            Arc::clone(&self.replica),
        );
        // The term's end lets a call in flight finish (a leader handing over answers it),
        // so it is a flag for `forward`, not a branch that would drop the call.
        let (over, term_over) = watch::channel(false);
        let watcher = tokio::spawn({
            let (client, keys, term) = (self.client.clone(), self.keys.clone(), leader.term);
            async move {
                session::wait_term_over(&client, &keys, term).await;
                over.send_replace(true);
            }
        });
        let flow = tokio::select! {
            () = replica => Flow::Continue,
            () = self.forward(&leader, receiver, term_over) => Flow::Continue,
            _ = session_changes.changed() => Flow::Continue,
            _ = stop.wait_for(|stopped| *stopped) => Flow::Stop,
        };
        watcher.abort();
        flow
    }

    /// While handing over: follows whoever leads, without campaigning; a term still held
    /// under this broker's lease (one whose resignation failed) is resigned.
    async fn stand_by(
        &self,
        lease: i64,
        receiver: &mut mpsc::Receiver<Submission>,
        stop: &mut watch::Receiver<bool>,
    ) -> Flow {
        self.set_aside_queued(receiver);
        self.expire_refused();
        match session::current_leader(&self.client, &self.keys).await {
            Ok(Some((leader, holder))) if holder != lease => {
                *self.leaderless_since.lock() = None;
                return self.follow(leader, receiver, stop).await;
            }
            Ok(Some((ours, _))) => self.resign(ours.term).await,
            Ok(None) => {
                let since = *self
                    .leaderless_since
                    .lock()
                    .get_or_insert_with(Instant::now);
                if since.elapsed() >= STAND_BY_PATIENCE {
                    tracing::warn!(
                        "no other broker took the sequencer leadership over; taking it back"
                    );
                    *self.leaderless_since.lock() = None;
                    self.handle.handing_over.send_replace(false);
                    return Flow::Continue;
                }
            }
            Err(error) => tracing::warn!(%error, "handing over: reading the leader failed"),
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => Flow::Stop,
            () = tokio::time::sleep(Duration::from_millis(50)) => Flow::Continue,
        }
    }

    /// Between terms while handing over: other brokers' queued commands are refused as
    /// not leading (their brokers send them to the next leader), and this broker's own
    /// join the refused ones, to go first to the next leader. None was appended.
    fn set_aside_queued(&self, receiver: &mut mpsc::Receiver<Submission>) {
        let mut own = Vec::new();
        while let Ok(submission) = receiver.try_recv() {
            // Owner assignments are the leader's own: the next leader makes its own.
            let assignment = matches!(submission.command, Command::AssignOwners { .. });
            if submission.remote || assignment {
                let _ = submission.reply.send(Err(SequencerError::NotLeader));
            } else {
                own.push(submission);
            }
        }
        if !own.is_empty() {
            let mut refused = self.refused.lock();
            refused.since.get_or_insert_with(Instant::now);
            refused.submissions.append(&mut own);
        }
    }

    /// Returns once this broker hands the leadership over (and another can take it).
    async fn wait_handing_over(&self) {
        let mut flag = self.handle.handing_over.subscribe();
        loop {
            if self.handle.handing_over() {
                return;
            }
            if *flag.borrow_and_update() {
                // Alone for now: look again when another broker may have joined.
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else if flag.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Takes the refused commands with when the oldest was first refused, failing them
    /// instead once they have waited [`REFUSED_PATIENCE`] for a leader.
    fn take_refused(&self) -> (Vec<Submission>, Option<Instant>) {
        let mut refused = self.refused.lock();
        let submissions = std::mem::take(&mut refused.submissions);
        let since = refused.since.take();
        if since.is_some_and(|since| since.elapsed() >= REFUSED_PATIENCE) {
            for submission in submissions {
                let _ = submission
                    .reply
                    .send(Err(SequencerError::Unavailable(format!(
                        "no sequencer leader took the command within {REFUSED_PATIENCE:?}"
                    ))));
            }
            return (Vec::new(), None);
        }
        (submissions, since)
    }

    /// Keeps commands a leader refused as no longer leading, to send first to the next
    /// one; `since` is when the oldest was first refused (`None`: now).
    fn keep_refused(&self, submissions: Vec<Submission>, since: Option<Instant>) {
        let mut refused = self.refused.lock();
        let since = since.unwrap_or_else(Instant::now);
        refused.since = Some(refused.since.map_or(since, |kept| kept.min(since)));
        let mut later = std::mem::replace(&mut refused.submissions, submissions);
        refused.submissions.append(&mut later);
    }

    /// Fails refused commands that have waited too long for a leader.
    fn expire_refused(&self) {
        let (submissions, since) = self.take_refused();
        if !submissions.is_empty() {
            self.keep_refused(submissions, since);
        }
    }

    /// Gives up leadership of `term` (only if it is still ours).
    async fn resign(&self, term: i64) {
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.leader(),
                CompareOp::Equal,
                term,
            )])
            .and_then([TxnOp::delete(self.keys.leader(), None)]);
        if let Err(error) = etcd("resign", self.client.clone().txn(txn)).await {
            tracing::warn!(%error, term, "could not resign the leadership");
        }
    }

    /// Sends this broker's submissions to the leader in groups, in order, one group at a
    /// time. Answers each once the local replica has applied it, so a client reading
    /// from this broker sees its own writes.
    ///
    /// Returns when `term_over` is set: at once when idle, and otherwise once the call in
    /// flight is answered or [`TERM_OVER_GRACE`] has passed.
    async fn forward(
        &self,
        leader: &LeaderInfo,
        receiver: &mut mpsc::Receiver<Submission>,
        mut term_over: watch::Receiver<bool>,
    ) {
        loop {
            // A term known to be over gets nothing more; what is kept waits for the next.
            if *term_over.borrow() {
                return;
            }
            let (mut group, since) = self.take_refused();
            if group.is_empty() {
                let next = tokio::select! {
                    biased;
                    _ = term_over.wait_for(|over| *over) => return,
                    next = receiver.recv() => next,
                };
                let Some(first) = next else {
                    // Closed: only a stopping driver closes it; wait for the term's end.
                    let _ = term_over.wait_for(|over| *over).await;
                    return;
                };
                group.push(first);
            }
            while group.len() < self.options.sequencer.max_group {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let (remote, local): (Vec<_>, Vec<_>) = group.into_iter().partition(|s| s.remote);
            for submission in remote {
                let _ = submission.reply.send(Err(SequencerError::NotLeader));
            }
            if local.is_empty() {
                continue;
            }
            let commands = local
                .iter()
                .map(|s| ForwardedCommand {
                    command: s.command.clone(),
                    fence: s.fence.clone(),
                })
                .collect();
            let called = Instant::now();
            let answer = tokio::select! {
                answer = self.forwarder.forward(leader, commands) => answer,
                () = async {
                    let _ = term_over.wait_for(|over| *over).await;
                    tokio::time::sleep(TERM_OVER_GRACE).await;
                } => Err("the leader's term ended while the call was in flight".to_owned()),
            };
            self.metrics.forwarded(called.elapsed());
            match answer {
                Ok(results) if results.len() == local.len() => {
                    // A leader that stepped down refuses what it has not appended. The
                    // refused tail of the group goes to the next leader instead of
                    // failing; a refusal before a command that did commit fails, since
                    // sending it again would put it after that command.
                    let mut answered: Vec<_> = local.into_iter().zip(results).collect();
                    let tail = answered
                        .iter()
                        .rposition(|(_, result)| !matches!(result, Err(RemoteError::NotLeader)))
                        .map_or(0, |last_answered| last_answered + 1);
                    let refused = answered.split_off(tail);
                    for (_, result) in &mut answered {
                        if matches!(result, Err(RemoteError::NotLeader)) {
                            *result = Err(RemoteError::Unavailable(
                                "refused by a sequencer leader that stepped down, before a \
                                 later command of this broker committed"
                                    .into(),
                            ));
                        }
                    }
                    let mut applied = self.replica.subscribe();
                    let metrics = self.metrics.clone();
                    let answered_at = Instant::now();
                    tokio::spawn(async move {
                        for (submission, result) in answered {
                            if let Ok(committed) = &result {
                                let index = committed.index;
                                let caught_up = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    applied.wait_for(|applied| *applied >= index),
                                )
                                .await;
                                match caught_up {
                                    Ok(Ok(_)) => metrics.caught_up(answered_at.elapsed()),
                                    _ => tracing::warn!(
                                        index,
                                        "this broker's replica did not apply a committed \
                                         command within 5 s; answering without it"
                                    ),
                                }
                            }
                            let _ = submission.reply.send(result.map_err(SequencerError::from));
                        }
                    });
                    if !refused.is_empty() {
                        tracing::info!(
                            leader = leader.broker,
                            commands = refused.len(),
                            "the sequencer leader stepped down; its refusals go to the next"
                        );
                        self.keep_refused(refused.into_iter().map(|(s, _)| s).collect(), since);
                        // Give the election a moment before asking etcd who leads.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
                Ok(results) => {
                    let message = format!(
                        "leader answered {} results for {} commands",
                        results.len(),
                        local.len()
                    );
                    for submission in local {
                        let _ = submission
                            .reply
                            .send(Err(SequencerError::Unavailable(message.clone())));
                    }
                }
                Err(error) => {
                    let message = format!(
                        "forwarding to the sequencer leader {} failed: {error}",
                        leader.broker
                    );
                    for submission in local {
                        let _ = submission
                            .reply
                            .send(Err(SequencerError::Unavailable(message.clone())));
                    }
                }
            }
        }
    }

    /// While leading: keeps every partition owned by a live broker, moving as few as
    /// possible when brokers come and go (rendezvous hashing).
    async fn rebalance(&self) {
        let mut members = self.handle.members.subscribe();
        loop {
            let live: Vec<String> = members.borrow_and_update().keys().cloned().collect();
            // An empty or stale view (not yet loaded) would hand everything to nobody.
            let changes = if live.contains(&self.handle.identity.broker) {
                self.replica.read(|state| owner_changes(state, &live))
            } else {
                Vec::new()
            };
            for chunk in changes.chunks(2_000) {
                let command = Command::AssignOwners {
                    changes: chunk.to_vec(),
                };
                let (reply, outcome) = oneshot::channel();
                let submission = Submission {
                    command,
                    fence: None,
                    remote: false,
                    reply,
                };
                if self.submissions.send(submission).await.is_err() {
                    return;
                }
                match outcome.await {
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
            tokio::select! {
                _ = members.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The partitions whose owner should change, given the live brokers.
pub(super) fn owner_changes(state: &ClusterState, live: &[String]) -> Vec<OwnerChange> {
    let mut changes = Vec::new();
    for topic in state.topics() {
        for (partition, current) in topic.partitions.iter().enumerate() {
            let partition = partition as u32;
            let desired = live
                .iter()
                .max_by_key(|broker| (rendezvous(topic.id.0, partition, broker), *broker))
                .cloned();
            if current.owner != desired {
                changes.push(OwnerChange {
                    topic_id: topic.id,
                    partition,
                    owner: desired,
                });
            }
        }
    }
    changes
}

/// FNV-1a over the partition and the broker: the highest score owns the partition.
fn rendezvous(topic: u64, partition: u32, broker: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = topic
        .to_le_bytes()
        .into_iter()
        .chain(partition.to_le_bytes())
        .chain(broker.bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; finish with a multiply-xorshift.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}
