//! [`GroupConsumer`]: a member of a consumer group. The server computes the assignment;
//! the member heartbeats in the background and applies what changed only inside
//! [`GroupConsumer::poll`], when the application is done with the previous batch (Kafka's
//! rule): a partition asked back is committed and released there, never under a batch the
//! application is still working on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{ClientError, FloeClient, GroupRecordsOptions};
use floe_api::{
    AssignedPartition, CommitRequest, Encoding, GroupRecordJson, HeartbeatRequest,
    HeartbeatResponse, JoinRequest, JoinResponse, OffsetToCommit, TopicPartition,
};

/// A floor under the server's heartbeat interval, so a zero cannot make the task spin.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long [`GroupConsumer::leave`] keeps trying to say goodbye; past it the session
/// expires on its own.
const LEAVE_PATIENCE: Duration = Duration::from_secs(5);

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    Earliest,
    #[default]
    Latest,
}

impl AutoOffsetReset {
    /// The value of the join request's `auto_offset_reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

impl std::str::FromStr for AutoOffsetReset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => Err(format!(
                "unknown offset reset {other:?}: expected earliest or latest"
            )),
        }
    }
}

/// How a [`GroupConsumer`] joins and reads.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// Topics to consume; the server shares their partitions among the members.
    pub topics: Vec<String>,
    /// A member whose heartbeats stop this long is removed from the group.
    pub session_timeout: Duration,
    /// How long the member may take to release a partition asked back.
    pub rebalance_timeout: Duration,
    pub auto_offset_reset: AutoOffsetReset,
    /// Commits what earlier polls returned, at most every `commit_every`, with the next
    /// records call, and on [`GroupConsumer::leave`].
    pub auto_commit: bool,
    /// The least time between automatic commits; zero commits with every poll.
    pub commit_every: Duration,
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
    /// How long a poll waits for records (capped at the heartbeat interval).
    pub wait: Duration,
    pub encoding: Encoding,
}

impl GroupOptions {
    /// The defaults, consuming `topics`.
    pub fn new<T: Into<String>>(topics: impl IntoIterator<Item = T>) -> Self {
        Self {
            topics: topics.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            topics: Vec::new(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            auto_offset_reset: AutoOffsetReset::default(),
            auto_commit: true,
            commit_every: Duration::from_secs(5),
            max_records: None,
            max_bytes: None,
            wait: Duration::from_secs(1),
            encoding: Encoding::default(),
        }
    }
}

/// What the member holds and what the server last said, shared with the heartbeat task.
#[derive(Debug)]
struct MemberState {
    member_id: String,
    member_epoch: u64,
    heartbeat_interval: Duration,
    /// The server's latest answer: the partitions the member should own.
    assignment: Vec<AssignedPartition>,
    /// The partitions the member holds now; every heartbeat reports them.
    owned: BTreeSet<TopicPartition>,
    /// The server no longer knows the member or its epoch: the next poll rejoins.
    fenced: bool,
}

impl MemberState {
    fn joined(answer: &JoinResponse) -> Self {
        Self {
            member_id: answer.member_id.clone(),
            member_epoch: answer.member_epoch,
            heartbeat_interval: heartbeat_interval(answer.heartbeat_interval_ms),
            assignment: answer.assignment.clone(),
            owned: answer.assignment.iter().map(topic_partition).collect(),
            fenced: false,
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<MemberState>,
    /// One heartbeat or join in flight at a time, so their answers apply in order.
    lane: tokio::sync::Mutex<()>,
    /// Asks the heartbeat task for a heartbeat now.
    beat_now: Notify,
    /// Wakes a poll that waits without partitions when the assignment changes.
    assignment_changed: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accept(&self, answer: HeartbeatResponse) {
        let mut state = self.state();
        if state.fenced {
            // A records call or commit found the member gone while this was in flight.
            return;
        }
        let changed = sorted_partitions(&state.assignment) != sorted_partitions(&answer.assignment);
        state.member_epoch = answer.member_epoch;
        state.heartbeat_interval = heartbeat_interval(answer.heartbeat_interval_ms);
        state.assignment = answer.assignment;
        drop(state);
        if changed {
            self.assignment_changed.notify_one();
        }
    }

    fn fence(&self, group: &str, error: &ClientError) {
        let mut state = self.state();
        if !state.fenced {
            tracing::info!(group, member_id = %state.member_id, %error, "member fenced; rejoining at the next poll");
        }
        state.fenced = true;
    }
}

/// A member of a consumer group: [`FloeClient::group_consumer`] joins, a background task
/// heartbeats, [`GroupConsumer::poll`] reads the partitions the server assigned.
///
/// Dropping it without [`GroupConsumer::leave`] stops the heartbeats; the server removes
/// the member when its session expires.
#[derive(Debug)]
pub struct GroupConsumer {
    client: FloeClient,
    group: String,
    options: GroupOptions,
    member_id: String,
    shared: Arc<Shared>,
    /// Per owned partition, the next offset to hand out: one past the last record returned.
    positions: BTreeMap<TopicPartition, u64>,
    /// Per owned partition, the offset known to be committed; only moved ones are sent.
    committed: BTreeMap<TopicPartition, u64>,
    last_commit: Instant,
    /// The id of the last records answer received, acknowledged on the next call.
    last_answer: Option<u64>,
    /// How many times the member rejoined after being fenced.
    rejoins: u64,
    /// The member epoch of the assignment the positions follow.
    applied_epoch: u64,
    heartbeats: JoinHandle<()>,
}

impl FloeClient {
    /// Joins `group` and starts heartbeating. Read with [`GroupConsumer::poll`]; end with
    /// [`GroupConsumer::leave`].
    ///
    /// Give the client a timeout ([`FloeClient::with_timeout`]) above `options.wait`:
    /// without one, a request to a server that vanished without closing its connections
    /// waits forever, and with it the member.
    pub async fn group_consumer(
        &self,
        group: impl Into<String>,
        options: GroupOptions,
    ) -> Result<GroupConsumer, ClientError> {
        let group = group.into();
        let request = join_request(&options, None);
        // A first join is not idempotent (a lost answer leaves a member nobody heartbeats,
        // holding partitions until its session expires): retry only what surely did not
        // reach the group.
        let joined = retrying(options.session_timeout, surely_unprocessed, || {
            self.join_group_raw(&group, &request)
        })
        .await?;
        tracing::debug!(group, member_id = %joined.member_id, epoch = joined.member_epoch, "joined");
        let shared = Arc::new(Shared {
            state: Mutex::new(MemberState::joined(&joined)),
            lane: tokio::sync::Mutex::new(()),
            beat_now: Notify::new(),
            assignment_changed: Notify::new(),
        });
        let heartbeats = tokio::spawn(run_heartbeats(
            self.clone(),
            group.clone(),
            Arc::clone(&shared),
        ));
        let positions = starting_positions(&joined.assignment);
        Ok(GroupConsumer {
            client: self.clone(),
            group,
            options,
            member_id: joined.member_id,
            shared,
            committed: positions.clone(),
            positions,
            last_commit: Instant::now(),
            last_answer: None,
            rejoins: 0,
            applied_epoch: joined.member_epoch,
            heartbeats,
        })
    }
}

impl GroupConsumer {
    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn member_epoch(&self) -> u64 {
        self.shared.state().member_epoch
    }

    /// How many times the member was fenced (expired, or a stale epoch) and rejoined.
    pub fn rejoins(&self) -> u64 {
        self.rejoins
    }

    /// The partitions the member holds, sorted by topic and partition.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// Bounds the records of the following polls (`None`: the server's limit).
    pub fn set_max_records(&mut self, max_records: Option<usize>) {
        self.options.max_records = max_records;
    }

    /// Applies the latest assignment (rejoining first if the member was fenced), then
    /// returns the next records of the partitions the member holds; empty when none
    /// arrived within the wait.
    ///
    /// Dropping the future part way loses nothing committed: records it had not
    /// returned yet are delivered again after a rebalance or restart.
    pub async fn poll(&mut self) -> Result<Vec<GroupRecordJson>, ClientError> {
        if self.shared.state().fenced {
            self.rejoin().await?;
        }
        if !self.release_revoked().await? {
            return Ok(Vec::new());
        }
        self.take_added();
        if self.positions.is_empty() {
            // Nothing to read until the server assigns something.
            let wait = self.options.wait;
            let _ = tokio::time::timeout(wait, self.shared.assignment_changed.notified()).await;
            return Ok(Vec::new());
        }
        self.fetch().await
    }

    /// Commits the position of every partition read since its last commit: everything
    /// the polls so far returned.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let offsets: Vec<OffsetToCommit> = self
            .positions
            .iter()
            .filter(|(partition, position)| self.committed.get(*partition) != Some(*position))
            .map(|(partition, position)| offset_to_commit(partition, *position))
            .collect();
        self.commit_offsets(offsets).await
    }

    /// Commits every held partition, moved or not (leaving): the server's auto-commit
    /// skips partitions it is asking back, so `committed` can be ahead of the group's.
    async fn commit_all(&mut self) -> Result<(), ClientError> {
        let offsets: Vec<OffsetToCommit> = self
            .positions
            .iter()
            .map(|(partition, position)| offset_to_commit(partition, *position))
            .collect();
        self.commit_offsets(offsets).await
    }

    async fn commit_offsets(&mut self, offsets: Vec<OffsetToCommit>) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut committed = self.send_commit(offsets.clone()).await;
        if matches!(&committed, Err(error) if error.error_code() == Some("stale_member_epoch"))
            && heartbeat_once(&self.client, &self.group, &self.shared)
                .await
                .is_ok()
        {
            // The epoch moved on since the last heartbeat: commit again at the new one.
            committed = self.send_commit(offsets).await;
        }
        committed.inspect_err(|error| {
            if is_fencing(error) {
                self.shared.fence(&self.group, error);
            }
        })
    }

    /// Stops heartbeating, commits what the polls returned (with `auto_commit`; without
    /// it, what the application committed is all that counts), and leaves the group so
    /// its partitions move to the other members at once.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        self.heartbeats.abort();
        let fenced = self.shared.state().fenced;
        let committed = if self.options.auto_commit && !fenced {
            self.commit_all().await
        } else {
            Ok(())
        };
        let left = match retrying(LEAVE_PATIENCE, ClientError::is_retryable, || {
            self.client.leave_group(&self.group, &self.member_id)
        })
        .await
        {
            Err(error) if is_fencing(&error) => Ok(()),
            other => other,
        };
        committed.and(left)
    }

    /// Rejoins under the member's id after being fenced; positions restart from the
    /// join's answer (the committed offsets).
    async fn rejoin(&mut self) -> Result<(), ClientError> {
        let request = join_request(&self.options, Some(self.member_id.clone()));
        let shared = Arc::clone(&self.shared);
        // Held until the new state is in place, so no heartbeat goes out with the old one.
        let _lane = shared.lane.lock().await;
        let joined = retrying(
            self.options.session_timeout,
            ClientError::is_retryable,
            || self.client.join_group_raw(&self.group, &request),
        )
        .await?;
        tracing::info!(group = %self.group, member_id = %joined.member_id, epoch = joined.member_epoch, "rejoined");
        *shared.state() = MemberState::joined(&joined);
        self.member_id = joined.member_id;
        self.positions = starting_positions(&joined.assignment);
        self.last_answer = None;
        self.applied_epoch = joined.member_epoch;
        self.rejoins += 1;
        self.committed = self.positions.clone();
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Commits and drops the partitions the server asked back, then acknowledges with a
    /// heartbeat that leaves them out. Returns false when the member turned out fenced.
    async fn release_revoked(&mut self) -> Result<bool, ClientError> {
        let revoked = {
            let state = self.shared.state();
            reconcile(&state.owned, &state.assignment).revoked
        };
        if revoked.is_empty() {
            return Ok(true);
        }
        // Every revoked partition is committed, moved or not: the server's auto-commit
        // skips partitions it has asked back, so `committed` may be ahead of the log.
        let offsets: Vec<OffsetToCommit> = revoked
            .iter()
            .filter_map(|partition| {
                let position = *self.positions.get(partition)?;
                Some(offset_to_commit(partition, position))
            })
            .collect();
        if !offsets.is_empty() {
            let mut committed = self.send_commit(offsets.clone()).await;
            if matches!(&committed, Err(error) if error.error_code() == Some("stale_member_epoch"))
            {
                // A partition was given at an epoch this member has not heard of yet:
                // learn it (still holding the revoked ones) and commit again.
                if heartbeat_once(&self.client, &self.group, &self.shared)
                    .await
                    .is_ok()
                {
                    committed = self.send_commit(offsets).await;
                }
            }
            match committed {
                Ok(()) => {}
                Err(error) if is_refusal_of_revoked(&error) => {
                    tracing::warn!(group = %self.group, %error, "commit of revoked partitions refused; their next owner reads them again");
                }
                Err(error) => return Err(error),
            }
        }
        for partition in &revoked {
            self.positions.remove(partition);
            self.committed.remove(partition);
        }
        self.publish_owned();
        let acknowledged = retrying(
            self.options.session_timeout,
            ClientError::is_retryable,
            || heartbeat_once(&self.client, &self.group, &self.shared),
        )
        .await;
        match acknowledged {
            Ok(()) => {}
            Err(error) if is_fencing(&error) => return Ok(false),
            // The heartbeat task reports the smaller set at its next beat.
            Err(error) => {
                tracing::warn!(group = %self.group, %error, "acknowledging revoked partitions failed")
            }
        }
        Ok(!self.shared.state().fenced)
    }

    /// Takes the partitions newly assigned, each from the offset the server gave.
    fn take_added(&mut self) {
        let added = {
            let state = self.shared.state();
            // Records calls name this epoch: the server reads no partition given later,
            // whose records this member would not know where to put.
            self.applied_epoch = state.member_epoch;
            reconcile(&state.owned, &state.assignment).added
        };
        if added.is_empty() {
            return;
        }
        for partition in added {
            let key = topic_partition(&partition);
            self.positions.insert(key.clone(), partition.offset);
            self.committed.insert(key, partition.offset);
        }
        self.publish_owned();
    }

    async fn fetch(&mut self) -> Result<Vec<GroupRecordJson>, ClientError> {
        let (interval, known_epoch) = {
            let state = self.shared.state();
            (state.heartbeat_interval, state.member_epoch)
        };
        let auto_commit =
            self.options.auto_commit && self.last_commit.elapsed() >= self.options.commit_every;
        let options = GroupRecordsOptions {
            max_records: self.options.max_records,
            max_bytes: self.options.max_bytes,
            wait: Some(self.options.wait.min(interval)),
            encoding: self.options.encoding,
            auto_commit,
            ack: self.last_answer,
            member_epoch: Some(self.applied_epoch),
        };
        let positions_before = auto_commit.then(|| self.positions.clone());
        let answer = match retrying(
            self.options.session_timeout,
            ClientError::is_retryable,
            || {
                self.client
                    .group_records(&self.group, &self.member_id, &options)
            },
        )
        .await
        {
            Ok(answer) => answer,
            Err(error) if is_fencing(&error) => {
                self.shared.fence(&self.group, &error);
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        if let Some(positions) = positions_before {
            // The server committed what the previous calls returned.
            self.committed = positions;
            self.last_commit = Instant::now();
        }
        self.last_answer = Some(answer.ack);
        if answer.member_epoch > known_epoch {
            // The assignment moved on: a heartbeat brings it.
            self.shared.beat_now.notify_one();
        }
        Ok(self.advance(answer.records))
    }

    /// Moves positions past the records and returns them, less those of partitions the
    /// member does not hold. A partition assigned while the call was out is taken now
    /// rather than dropped: the server moved its position past those records.
    fn advance(&mut self, mut records: Vec<GroupRecordJson>) -> Vec<GroupRecordJson> {
        let assignment = self.shared.state().assignment.clone();
        let mut adopted = false;
        records.retain(|record| {
            let key = TopicPartition {
                topic: record.topic.clone(),
                partition: record.partition,
            };
            if !self.positions.contains_key(&key) {
                let Some(assigned) = assignment.iter().find(|a| topic_partition(a) == key) else {
                    tracing::debug!(group = %self.group, topic = %key.topic, partition = key.partition, offset = record.offset, "dropped a record of a partition not held");
                    return false;
                };
                adopted = true;
                self.positions.insert(key.clone(), assigned.offset);
                self.committed.insert(key.clone(), assigned.offset);
            }
            let Some(position) = self.positions.get_mut(&key) else {
                return false;
            };
            *position = (*position).max(record.offset + 1);
            true
        });
        if adopted {
            self.publish_owned();
        }
        records
    }

    async fn send_commit(&mut self, offsets: Vec<OffsetToCommit>) -> Result<(), ClientError> {
        let request = CommitRequest {
            member_id: Some(self.member_id.clone()),
            member_epoch: Some(self.shared.state().member_epoch),
            offsets,
        };
        retrying(
            self.options.session_timeout,
            ClientError::is_retryable,
            || self.client.commit_offsets(&self.group, &request),
        )
        .await?;
        for offset in request.offsets {
            let key = TopicPartition {
                topic: offset.topic,
                partition: offset.partition,
            };
            self.committed.insert(key, offset.offset);
        }
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Makes the held partitions what the heartbeats report.
    fn publish_owned(&self) {
        self.shared.state().owned = self.positions.keys().cloned().collect();
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

/// Heartbeats every interval, or at once when asked; retries what can recover with
/// backoff. A fenced member stays quiet until a poll rejoins.
async fn run_heartbeats(client: FloeClient, group: String, shared: Arc<Shared>) {
    let mut backoff = FIRST_BACKOFF;
    let mut pause = shared.state().heartbeat_interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.beat_now.notified() => {}
        }
        let interval = shared.state().heartbeat_interval;
        pause = match heartbeat_once(&client, &group, &shared).await {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                interval
            }
            Err(error) if is_fencing(&error) => interval,
            Err(error) if error.is_retryable() => {
                tracing::debug!(group, %error, "heartbeat failed; retrying");
                let retry_in = error.retry_after().unwrap_or(backoff).min(MAX_BACKOFF);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                retry_in
            }
            Err(error) => {
                tracing::warn!(group, %error, "heartbeat refused");
                interval
            }
        };
    }
}

/// Sends one heartbeat reporting what the member holds, and keeps the answer; marks the
/// member fenced if the server no longer knows it. Does nothing while fenced.
async fn heartbeat_once(
    client: &FloeClient,
    group: &str,
    shared: &Shared,
) -> Result<(), ClientError> {
    let _lane = shared.lane.lock().await;
    let (member_id, request) = {
        let state = shared.state();
        if state.fenced {
            return Ok(());
        }
        let request = HeartbeatRequest {
            member_epoch: state.member_epoch,
            owned: state.owned.iter().cloned().collect(),
        };
        (state.member_id.clone(), request)
    };
    match client.heartbeat(group, &member_id, &request).await {
        Ok(answer) => {
            shared.accept(answer);
            Ok(())
        }
        Err(error) => {
            if is_fencing(&error) {
                shared.fence(group, &error);
            }
            Err(error)
        }
    }
}

/// What moves from a member's held partitions to a new assignment.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reconciliation {
    /// Held and no longer assigned: commit, drop, acknowledge.
    revoked: Vec<TopicPartition>,
    /// Assigned and not held yet, with the offset to start from.
    added: Vec<AssignedPartition>,
}

fn reconcile(owned: &BTreeSet<TopicPartition>, assignment: &[AssignedPartition]) -> Reconciliation {
    let assigned: BTreeSet<TopicPartition> = assignment.iter().map(topic_partition).collect();
    let revoked = owned.difference(&assigned).cloned().collect();
    let mut seen = BTreeSet::new();
    let added = assignment
        .iter()
        .filter(|partition| {
            let key = topic_partition(partition);
            !owned.contains(&key) && seen.insert(key)
        })
        .cloned()
        .collect();
    Reconciliation { revoked, added }
}

fn join_request(options: &GroupOptions, member_id: Option<String>) -> JoinRequest {
    JoinRequest {
        topics: options.topics.clone(),
        session_timeout_ms: Some(millis(options.session_timeout)),
        rebalance_timeout_ms: Some(millis(options.rebalance_timeout)),
        auto_offset_reset: Some(options.auto_offset_reset.as_str().to_owned()),
        member_id,
    }
}

fn starting_positions(assignment: &[AssignedPartition]) -> BTreeMap<TopicPartition, u64> {
    assignment
        .iter()
        .map(|partition| (topic_partition(partition), partition.offset))
        .collect()
}

fn topic_partition(assigned: &AssignedPartition) -> TopicPartition {
    TopicPartition {
        topic: assigned.topic.clone(),
        partition: assigned.partition,
    }
}

fn sorted_partitions(assignment: &[AssignedPartition]) -> BTreeSet<TopicPartition> {
    assignment.iter().map(topic_partition).collect()
}

fn heartbeat_interval(millis: u64) -> Duration {
    Duration::from_millis(millis).max(MIN_HEARTBEAT_INTERVAL)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The server removed the member (session expired, coordinator lost it) or moved past its
/// epoch: it must drop its partitions and rejoin.
fn is_fencing(error: &ClientError) -> bool {
    match error.status().map(|status| status.as_u16()) {
        Some(404) => true,
        Some(409) => matches!(
            error.error_code(),
            Some("unknown_member" | "stale_member_epoch")
        ),
        _ => false,
    }
}

/// A commit of revoked partitions the server refused because they already moved on.
fn is_refusal_of_revoked(error: &ClientError) -> bool {
    is_fencing(error) || error.error_code() == Some("partition_not_owned")
}

/// Errors of requests that certainly did not reach the group: retrying them cannot apply
/// a request twice.
fn surely_unprocessed(error: &ClientError) -> bool {
    match error {
        ClientError::Http(error) => error.is_connect(),
        ClientError::Api { status, .. } => matches!(status.as_u16(), 429 | 503),
        _ => false,
    }
}

/// Runs `request` until it succeeds, fails in a way `retry_if` does not accept, or the
/// next pause would end past `patience` (a member that cannot reach the server that long
/// has lost its session anyway).
async fn retrying<T, F>(
    patience: Duration,
    retry_if: impl Fn(&ClientError) -> bool,
    request: impl Fn() -> F,
) -> Result<T, ClientError>
where
    F: Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + patience;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match request().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !retry_if(&error) {
            return Err(error);
        }
        let pause = error.retry_after().unwrap_or(backoff).min(MAX_BACKOFF);
        if Instant::now() + pause > deadline {
            return Err(error);
        }
        tracing::debug!(%error, pause_ms = pause.as_millis(), "request failed; retrying");
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests;

fn offset_to_commit(partition: &TopicPartition, offset: u64) -> OffsetToCommit {
    OffsetToCommit {
        topic: partition.topic.clone(),
        partition: partition.partition,
        offset,
        metadata: None,
    }
}
