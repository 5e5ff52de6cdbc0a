//! The coordinator's soft state and the reconciliation that turns member events into the
//! group's durable writes.
//!
//! Every event (join, heartbeat, leave, a tick that expires sessions) runs under the
//! group's lock: read the durable group, bring the soft view in line with it, apply the
//! event, expire what is overdue, compute the target assignment and step every member
//! towards it, and write the result if the durable part changed. A partition moves in two
//! steps: it is asked back from its owner (soft), and only once the owner heartbeats
//! without it, leaves or expires does the next write give it to its new member. So no
//! two members ever own a partition at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use floe_core::TopicId;
use floe_sequencer::{ApplyError, ClusterState, Command, GroupMember, GroupState, OffsetReset};
use floe_sequencer::{Outcome, SequencerError};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;

use super::assignor::{self, Partition, Subscriber};
use super::{AssignedPartition, JoinSpec, MemberView};
use crate::Broker;
use crate::error::BrokerError;

/// How many removed member ids a group remembers, to answer them `409` (rejoin) rather
/// than `404`.
const REMEMBERED_REMOVALS: usize = 256;
/// Attempts at a group write that loses to a concurrent one before giving up.
const WRITE_ATTEMPTS: usize = 5;
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Groups a tick works on at once.
const TICK_CONCURRENCY: usize = 32;
/// The heartbeat interval while a group's partitions are being handed over.
const CONVERGING_HEARTBEAT: Duration = Duration::from_millis(250);

/// The soft state of the groups this broker coordinates.
#[derive(Debug)]
pub(crate) struct Coordinator {
    groups: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<SoftGroup>>>>,
    pub(crate) rebalances: Counter,
    pub(crate) commit_latency: Histogram,
    /// Ids of records answers and of member incarnations: unique on this broker, and
    /// started from the clock so a restarted coordinator does not reuse recent ones.
    ids: std::sync::atomic::AtomicU64,
    /// When each member's latest heartbeat arrived, noted before it waits for its group's
    /// lock, so a heartbeat queued behind a slow sequencer write does not let its member
    /// expire.
    arrivals: parking_lot::Mutex<HashMap<(String, String), Instant>>,
}

/// One group's soft state.
#[derive(Debug, Default)]
pub(crate) struct SoftGroup {
    /// The durable generation this view follows.
    generation: Option<u64>,
    pub(crate) members: HashMap<String, SoftMember>,
    removed: VecDeque<String>,
}

#[derive(Debug)]
pub(crate) struct SoftMember {
    deadline: Instant,
    /// Partitions asked back, and by when they must be released.
    pub(crate) revoking: BTreeMap<Partition, Instant>,
    /// Where the member's records calls read next, per partition it may read.
    pub(crate) positions: HashMap<Partition, u64>,
    /// The last records answer: its id and the positions it moved, as they were before.
    /// A call that acknowledges an older answer did not get this one, which is then read
    /// again instead of being committed unseen.
    pub(crate) last_answer: Option<(u64, HashMap<Partition, u64>)>,
    pub(crate) answers: u64,
    /// The partitions the member was last told it owns (its last join or heartbeat
    /// answer): the only ones its records calls read, so it never gets records of a
    /// partition it does not know it has.
    pub(crate) announced: BTreeSet<Partition>,
    /// Which life of the member this is: a rejoin or an adoption starts a new one, and a
    /// read begun in an earlier one is discarded.
    pub(crate) incarnation: u64,
}

impl SoftMember {
    fn new(deadline: Instant) -> Self {
        static INCARNATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            incarnation: INCARNATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            deadline,
            revoking: BTreeMap::new(),
            positions: HashMap::new(),
            last_answer: None,
            answers: 0,
            announced: BTreeSet::new(),
        }
    }
}

/// What happened to the group.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Join(JoinSpec),
    Heartbeat {
        member: String,
        epoch: u64,
        owned: BTreeSet<Partition>,
    },
    Leave {
        member: String,
    },
    /// Time passed: expire sessions and revocations that ran out.
    Tick,
}

impl Coordinator {
    pub(crate) fn new(now_ms: i64) -> Self {
        Self {
            groups: parking_lot::Mutex::default(),
            rebalances: Counter::default(),
            commit_latency: crate::metrics::latency_histogram(),
            ids: std::sync::atomic::AtomicU64::new(u64::try_from(now_ms).unwrap_or(0) << 20),
            arrivals: parking_lot::Mutex::default(),
        }
    }

    /// Notes that a heartbeat of `member` arrived now.
    pub(crate) fn arrive(&self, group: &str, member: &str) {
        self.arrivals
            .lock()
            .insert((group.to_owned(), member.to_owned()), Instant::now());
    }

    fn arrived(&self, group: &str, member: &str) -> Option<Instant> {
        self.arrivals
            .lock()
            .get(&(group.to_owned(), member.to_owned()))
            .copied()
    }

    /// Forgets arrivals older than `horizon` (no session is that long).
    fn prune_arrivals(&self, horizon: Duration) {
        let now = Instant::now();
        self.arrivals
            .lock()
            .retain(|_, at| now.saturating_duration_since(*at) < horizon);
    }

    /// A fresh id for a records answer or a member incarnation.
    pub(crate) fn next_answer_id(&self) -> u64 {
        self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// The lock on one group's soft state.
    pub(crate) fn group(&self, name: &str) -> Arc<tokio::sync::Mutex<SoftGroup>> {
        Arc::clone(self.groups.lock().entry(name.to_owned()).or_default())
    }

    /// Groups with soft state here.
    pub(crate) fn names(&self) -> Vec<String> {
        self.groups.lock().keys().cloned().collect()
    }

    /// Drops the soft state of a group this broker no longer coordinates.
    pub(crate) fn forget(&self, name: &str) {
        self.groups.lock().remove(name);
    }
}

impl SoftGroup {
    /// Brings the soft view in line with the durable group: members written by another
    /// coordinator are adopted with a fresh session (they rejoin or heartbeat within it),
    /// members gone from the log are forgotten.
    fn sync(&mut self, durable: &GroupState, now: Instant) {
        if self.generation == Some(durable.generation) {
            return;
        }
        if self
            .generation
            .is_some_and(|known| durable.generation < known)
        {
            // This broker's replica has not caught up with a write this view has seen;
            // the step's own write will be refused as stale and retried.
            return;
        }
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|id| !durable.members.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.members.remove(&id);
            self.remember_removed(id);
        }
        for (id, member) in &durable.members {
            let soft = self.members.entry(id.clone()).or_insert_with(|| {
                SoftMember::new(now + Duration::from_millis(member.session_timeout_ms))
            });
            soft.revoking
                .retain(|(topic, partition), _| member.owns(*topic, *partition));
            soft.positions
                .retain(|(topic, partition), _| member.owns(*topic, *partition));
        }
        self.generation = Some(durable.generation);
    }

    fn remember_removed(&mut self, id: String) {
        if self.removed.len() >= REMEMBERED_REMOVALS {
            self.removed.pop_front();
        }
        self.removed.push_back(id);
    }

    /// The error for a member this group does not have: `409` for one it removed (it
    /// should rejoin), `404` for one it never knew.
    pub(crate) fn missing_member(&self, group: &str, member: &str) -> BrokerError {
        if self.removed.iter().any(|id| id == member) {
            BrokerError::from(ApplyError::UnknownMember {
                group: group.to_owned(),
                member: member.to_owned(),
            })
        } else {
            BrokerError::UnknownMember {
                group: group.to_owned(),
                member: member.to_owned(),
            }
        }
    }
}

/// Partition counts and ids of the topics members subscribe to, by name.
fn topic_ids(
    state: &ClusterState,
    members: &BTreeMap<String, GroupMember>,
) -> BTreeMap<String, (TopicId, u32)> {
    let mut topics = BTreeMap::new();
    for member in members.values() {
        for name in &member.topics {
            if let Some(topic) = state.topic(name) {
                topics.insert(name.clone(), (topic.id, topic.partition_count()));
            }
        }
    }
    topics
}

impl Broker {
    /// Applies `event` to `group` and writes what changed; answers the member's view for
    /// joins and heartbeats.
    pub(crate) async fn group_event(
        &self,
        name: &str,
        event: Event,
    ) -> Result<Option<MemberView>, BrokerError> {
        let lock = self.groups().group(name);
        let mut soft = lock.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.group_step(name, &mut soft, &event).await {
                Err(BrokerError::Sequencer(SequencerError::Rejected(
                    ApplyError::GroupChanged { .. },
                ))) if attempt < WRITE_ATTEMPTS => {
                    // Another write came first: read again and redo the step.
                    soft.generation = None;
                }
                other => return other,
            }
        }
    }

    async fn group_step(
        &self,
        name: &str,
        soft: &mut SoftGroup,
        event: &Event,
    ) -> Result<Option<MemberView>, BrokerError> {
        let now = Instant::now();
        let options = self.group_options().clone();
        let (durable, exists, groups) = self.inner.sequencer.read(|state| {
            let group = state.group(name);
            (
                group.cloned().unwrap_or_default(),
                group.is_some(),
                state.groups().count(),
            )
        });
        soft.sync(&durable, now);
        let mut members = durable.members.clone();
        let mut subject: Option<String> = None;
        match event {
            Event::Join(spec) => {
                let session = spec.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT);
                if session < options.min_session_timeout || session > options.max_session_timeout {
                    return Err(BrokerError::InvalidRequest(format!(
                        "session_timeout_ms {} is outside [{}, {}]",
                        session.as_millis(),
                        options.min_session_timeout.as_millis(),
                        options.max_session_timeout.as_millis()
                    )));
                }
                let rebalance = spec
                    .rebalance_timeout
                    .unwrap_or(DEFAULT_REBALANCE_TIMEOUT)
                    .clamp(Duration::from_millis(1), options.max_session_timeout);
                if !exists && groups >= options.max_groups {
                    return Err(BrokerError::LimitReached(format!(
                        "the cluster has {groups} groups; groups.max_groups is {}",
                        options.max_groups
                    )));
                }
                let id = spec
                    .member_id
                    .clone()
                    .unwrap_or_else(|| ulid::Ulid::new().to_string().to_lowercase());
                if !members.contains_key(&id) && members.len() >= options.max_members {
                    return Err(BrokerError::LimitReached(format!(
                        "group {name:?} has {} members; groups.max_members is {}",
                        members.len(),
                        options.max_members
                    )));
                }
                let mut topics = spec.topics.clone();
                topics.sort();
                topics.dedup();
                let entry = members.entry(id.clone()).or_insert_with(|| GroupMember {
                    epoch: 0,
                    topics: Vec::new(),
                    session_timeout_ms: 0,
                    rebalance_timeout_ms: 0,
                    auto_offset_reset: spec.auto_offset_reset,
                    partitions: BTreeMap::new(),
                });
                entry.topics = topics;
                entry.session_timeout_ms = session.as_millis() as u64;
                entry.rebalance_timeout_ms = rebalance.as_millis() as u64;
                entry.auto_offset_reset = spec.auto_offset_reset;
                // A rejoin starts from committed offsets: the old positions may be ahead of
                // what the member processed before it was fenced.
                soft.members
                    .insert(id.clone(), SoftMember::new(now + session));
                soft.removed.retain(|removed| *removed != id);
                subject = Some(id);
            }
            Event::Heartbeat {
                member,
                epoch,
                owned,
            } => {
                if !exists {
                    return Err(BrokerError::UnknownGroup(name.to_owned()));
                }
                let Some(durable_member) = members.get_mut(member) else {
                    return Err(soft.missing_member(name, member));
                };
                let session = Duration::from_millis(durable_member.session_timeout_ms);
                let soft_member = soft
                    .members
                    .entry(member.clone())
                    .or_insert_with(|| SoftMember::new(now + session));
                let current = durable_member.epoch;
                // An older epoch is a heartbeat that has not seen the latest answer yet;
                // it is fine as long as it claims nothing the member no longer owns.
                let claims_only_its_own = owned
                    .iter()
                    .all(|(topic, partition)| durable_member.owns(*topic, *partition));
                if *epoch > current || (*epoch < current && !claims_only_its_own) {
                    return Err(BrokerError::from(ApplyError::StaleMemberEpoch {
                        member: member.clone(),
                        epoch: *epoch,
                        current,
                    }));
                }
                soft_member.deadline =
                    now + Duration::from_millis(durable_member.session_timeout_ms);
                // Partitions asked back and left out of `owned` are released.
                let released: Vec<Partition> = soft_member
                    .revoking
                    .keys()
                    .filter(|partition| !owned.contains(partition))
                    .copied()
                    .collect();
                for (topic, partition) in released {
                    soft_member.revoking.remove(&(topic, partition));
                    soft_member.positions.remove(&(topic, partition));
                    if let Some(owned) = durable_member.partitions.get_mut(&topic) {
                        owned.remove(&partition);
                        if owned.is_empty() {
                            durable_member.partitions.remove(&topic);
                        }
                    }
                }
                subject = Some(member.clone());
            }
            Event::Leave { member } => {
                if !exists {
                    return Err(BrokerError::UnknownGroup(name.to_owned()));
                }
                if members.remove(member).is_none() {
                    return Err(soft.missing_member(name, member));
                }
                soft.members.remove(member);
                soft.remember_removed(member.clone());
            }
            Event::Tick => {}
        }

        // Sessions and revocations that ran out.
        let overdue: Vec<String> = soft
            .members
            .iter()
            .filter(|(id, member)| {
                // A heartbeat that arrived and is waiting for this lock (behind a slow
                // write) keeps its member: the session counts from its arrival.
                let waiting = self
                    .groups()
                    .arrived(name, id)
                    .is_some_and(|at| at + self.session_of(&durable, id) > now);
                subject.as_deref() != Some(id.as_str())
                    && !waiting
                    && (member.deadline <= now
                        || member.revoking.values().any(|deadline| *deadline <= now))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in overdue {
            tracing::info!(group = name, member = %id, "group member expired");
            members.remove(&id);
            soft.members.remove(&id);
            soft.remember_removed(id);
        }

        let moved = self.reconcile(name, soft, &mut members, &durable, now);
        if members != durable.members {
            let at_ms = self.inner.clock.now_ms();
            let command = Command::WriteGroup {
                group: name.to_owned(),
                expected_generation: durable.generation,
                members: members.clone(),
                at_ms,
            };
            // On any failure the soft view (already changed by this step) no longer
            // matches the log: the next event re-reads it.
            soft.generation = None;
            let outcome = self.inner.sequencer.submit(command).await?;
            if let Outcome::GroupWritten(generation) = outcome {
                soft.generation = Some(generation);
            }
            if moved {
                self.groups().rebalances.inc();
            }
        }
        let Some(id) = subject else {
            return Ok(None);
        };
        Ok(Some(self.member_view(name, soft, &members, &id)))
    }

    /// A member's session timeout, from the log.
    fn session_of(&self, durable: &GroupState, member: &str) -> Duration {
        durable
            .members
            .get(member)
            .map_or(Duration::ZERO, |member| {
                Duration::from_millis(member.session_timeout_ms)
            })
    }

    /// Steps every member towards the target assignment: partitions a member must give
    /// up are asked back (soft); free partitions go to the member the target names. Bumps
    /// the epoch of every member whose partitions change. Returns whether any partition
    /// changed hands.
    fn reconcile(
        &self,
        name: &str,
        soft: &mut SoftGroup,
        members: &mut BTreeMap<String, GroupMember>,
        durable: &GroupState,
        now: Instant,
    ) -> bool {
        let (topics, mut counts) = self.inner.sequencer.read(|state| {
            let topics = topic_ids(state, members);
            let counts: BTreeMap<TopicId, u32> =
                topics.values().map(|(id, count)| (*id, *count)).collect();
            (topics, counts)
        });
        counts.retain(|_, count| *count > 0);
        let subscribers: BTreeMap<String, Subscriber> = members
            .iter()
            .map(|(id, member)| {
                let owned = member
                    .partitions
                    .iter()
                    .flat_map(|(topic, partitions)| {
                        partitions.keys().map(move |partition| (*topic, *partition))
                    })
                    .collect();
                let subscribed = member
                    .topics
                    .iter()
                    .filter_map(|topic| topics.get(topic).map(|(id, _)| *id))
                    .collect();
                (
                    id.clone(),
                    Subscriber {
                        topics: subscribed,
                        owned,
                    },
                )
            })
            .collect();
        let target = assignor::assign(&subscribers, &counts);
        let new_epoch = durable.generation + 1;
        let mut moved = false;
        // Ask back what the target takes away; cancel asks the target no longer makes.
        for (id, member) in members.iter() {
            let soft_member = soft.members.entry(id.clone()).or_insert_with(|| {
                SoftMember::new(now + Duration::from_millis(member.session_timeout_ms))
            });
            let wanted = &target[id];
            let deadline = now + Duration::from_millis(member.rebalance_timeout_ms);
            for partition in &subscribers[id].owned {
                if wanted.contains(partition) {
                    soft_member.revoking.remove(partition);
                } else {
                    soft_member.revoking.entry(*partition).or_insert(deadline);
                }
            }
        }
        let taken: BTreeSet<Partition> = subscribers
            .values()
            .flat_map(|subscriber| subscriber.owned.iter().copied())
            .collect();
        for (id, member) in members.iter_mut() {
            let mut changed = member.epoch == 0;
            for partition in &target[id] {
                if !taken.contains(partition) {
                    member
                        .partitions
                        .entry(partition.0)
                        .or_default()
                        .insert(partition.1, new_epoch);
                    changed = true;
                    moved = true;
                }
            }
            let before = durable.members.get(id);
            if before.is_some_and(|before| before.partitions != member.partitions) {
                changed = true;
                moved = true;
            }
            if changed {
                member.epoch = new_epoch;
            }
        }
        if moved {
            tracing::debug!(group = name, epoch = new_epoch, "group assignment moves");
        }
        moved
    }

    /// What a member owns now (asked-back partitions left out), each with where it reads
    /// from: its position, else the committed offset, else its reset policy.
    fn member_view(
        &self,
        name: &str,
        soft: &mut SoftGroup,
        members: &BTreeMap<String, GroupMember>,
        id: &str,
    ) -> MemberView {
        let member = &members[id];
        let options = self.group_options();
        // While partitions are being handed over, members heartbeat sooner, so a
        // rebalance takes about one regular interval instead of one per step.
        let converging = soft
            .members
            .values()
            .any(|member| !member.revoking.is_empty());
        let regular = options.heartbeat_interval.min(
            Duration::from_millis(member.session_timeout_ms / 3).max(Duration::from_millis(100)),
        );
        let heartbeat_interval = if converging {
            regular.min(CONVERGING_HEARTBEAT)
        } else {
            regular
        };
        let soft_member = soft.members.get_mut(id).expect("a member has soft state");
        let mut announced = BTreeSet::new();
        let assignment = self.inner.sequencer.read(|state| {
            let group = state.group(name);
            let mut assignment = Vec::new();
            for (topic, partitions) in &member.partitions {
                let Some(topic_state) = state.topic_by_id(*topic) else {
                    continue;
                };
                for partition in partitions.keys() {
                    let key = (*topic, *partition);
                    if soft_member.revoking.contains_key(&key) {
                        continue;
                    }
                    let offset = *soft_member.positions.entry(key).or_insert_with(|| {
                        start_offset(state, group, key, member.auto_offset_reset)
                    });
                    announced.insert(key);
                    assignment.push(AssignedPartition {
                        topic: topic_state.name.clone(),
                        partition: *partition,
                        offset,
                    });
                }
            }
            assignment
        });
        soft_member.announced = announced;
        MemberView {
            member_id: id.to_owned(),
            member_epoch: member.epoch,
            heartbeat_interval,
            assignment,
        }
    }

    /// Runs the groups this broker coordinates: expires sessions and revocations, adopts
    /// groups whose coordinator it became, drops those it no longer coordinates, and (on
    /// the leader) deletes empty groups idle past `groups.offsets_retention`.
    pub(crate) async fn tick_groups(&self) {
        let now_ms = self.inner.clock.now_ms();
        let retention = self.group_options().offsets_retention.as_millis() as i64;
        self.groups()
            .prune_arrivals(self.group_options().max_session_timeout);
        let (with_members, expired): (Vec<String>, Vec<String>) =
            self.inner.sequencer.read(|state| {
                let with_members = state
                    .groups()
                    .filter(|(_, group)| !group.members.is_empty())
                    .map(|(name, _)| name.clone())
                    .collect();
                let expired = state
                    .groups()
                    .filter(|(_, group)| {
                        group.members.is_empty()
                            && group.updated_ms < now_ms.saturating_sub(retention)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                (with_members, expired)
            });
        let mut names: BTreeSet<String> = with_members.into_iter().collect();
        names.extend(self.groups().names());
        let placement = self.placement();
        let due: Vec<String> = names
            .into_iter()
            .filter(|name| {
                if placement.is_here(name) {
                    return self.tick_due(name);
                }
                self.groups().forget(name);
                false
            })
            .collect();
        // Groups tick side by side, so one stuck on a slow write holds up no other.
        futures::stream::iter(due)
            .for_each_concurrent(TICK_CONCURRENCY, |name| async move {
                if let Err(error) = self.group_event(&name, Event::Tick).await {
                    tracing::debug!(group = %name, %error, "group tick failed");
                }
            })
            .await;
        if self.inner.sequencer.membership().is_leader() {
            for name in expired {
                let command = Command::DeleteGroup {
                    group: name.clone(),
                    idle_before_ms: Some(now_ms.saturating_sub(retention)),
                };
                match self.inner.sequencer.submit(command).await {
                    Ok(_) => tracing::info!(group = %name, "empty group's offsets expired"),
                    Err(error) => tracing::debug!(group = %name, %error, "group expiry refused"),
                }
            }
            // Idle idempotent producers go the same way.
            let expiration = self.inner.options.producer_id_expiration.as_millis() as i64;
            let idle_before_ms = now_ms.saturating_sub(expiration);
            let idle = self.inner.sequencer.read(|state| {
                state
                    .producers()
                    .any(|(_, producer)| producer.last_seen_ms < idle_before_ms)
            });
            if idle {
                match self
                    .inner
                    .sequencer
                    .submit(Command::ExpireProducers { idle_before_ms })
                    .await
                {
                    Ok(outcome) => tracing::info!(?outcome, "idle producers expired"),
                    Err(error) => tracing::debug!(%error, "producer expiry refused"),
                }
            }
        }
    }
}

impl Broker {
    /// Whether a tick has work in a group: a deadline passed, or the log changed since the
    /// soft view (another coordinator wrote, a topic was deleted, or the group is new
    /// here). A group busy with a member's call is left to that call.
    fn tick_due(&self, name: &str) -> bool {
        let generation = self
            .inner
            .sequencer
            .read(|state| state.group(name).map(|group| group.generation));
        let lock = self.groups().group(name);
        let Ok(soft) = lock.try_lock() else {
            return false;
        };
        if generation.is_none() && soft.members.is_empty() {
            // Deleted (or never written): nothing to keep.
            drop(soft);
            self.groups().forget(name);
            return false;
        }
        let now = Instant::now();
        soft.generation != generation
            || soft.members.values().any(|member| {
                member.deadline <= now || member.revoking.values().any(|deadline| *deadline <= now)
            })
    }
}

/// Where a member starts reading a partition: the committed offset (moved into the
/// retained range, as Kafka's reset does for an offset out of range), else the earliest
/// or latest offset by the member's policy.
pub(crate) fn start_offset(
    state: &ClusterState,
    group: Option<&GroupState>,
    (topic, partition): Partition,
    reset: OffsetReset,
) -> u64 {
    let Some(log) = state
        .topic_by_id(topic)
        .and_then(|topic| topic.partitions.get(partition as usize))
    else {
        return 0;
    };
    match group.and_then(|group| group.committed(topic, partition)) {
        Some(committed) => committed
            .offset
            .clamp(log.log_start_offset, log.high_watermark),
        None => match reset {
            OffsetReset::Earliest => log.log_start_offset,
            OffsetReset::Latest => log.high_watermark,
        },
    }
}
