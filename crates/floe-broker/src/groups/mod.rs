//! Consumer groups (ADR 0006): KIP-848's model on floe's sequencer.
//!
//! Each group has one coordinator broker, chosen from the live brokers by rendezvous
//! hashing of the group's name; the HTTP layer sends every member call there. The
//! coordinator keeps the soft state (sessions, partitions being revoked, read positions)
//! and writes to the log only what fencing needs: the members, their epochs and the
//! partitions each owns, at joins, leaves, expiries and each step of a rebalance, never on
//! a heartbeat. Those writes name the group generation they were computed from, so a
//! coordinator working from an old view (another broker took over) is refused and
//! re-reads instead of overwriting.

mod assignor;
mod coordinator;
mod offsets;

use std::time::Duration;

use floe_core::settings::{self, InvalidSetting};
use floe_sequencer::{Member, OffsetReset};
use serde::{Deserialize, Serialize};

pub(crate) use coordinator::Coordinator;
pub use offsets::{GroupPartition, OffsetToCommit, ResetTarget};

use crate::Broker;

/// Tuning of consumer groups: the `[groups]` section of `floe.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupOptions {
    /// An empty group's committed offsets are deleted this long after its last change
    /// (Kafka's `offsets.retention.ms`).
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
    /// Groups the cluster may hold; joining or committing to one more answers `409
    /// limit_reached`.
    pub max_groups: usize,
    /// Members one group may have.
    pub max_members: usize,
    /// The shortest session timeout a member may ask for.
    #[serde(with = "humantime_serde")]
    pub min_session_timeout: Duration,
    /// The longest session timeout a member may ask for.
    #[serde(with = "humantime_serde")]
    pub max_session_timeout: Duration,
    /// The longest heartbeat interval given to members (a third of their session
    /// timeout when that is shorter).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            max_groups: 10_000,
            max_members: 1_000,
            min_session_timeout: Duration::from_secs(1),
            max_session_timeout: Duration::from_secs(30 * 60),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

impl GroupOptions {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        settings::at_least("max_groups", self.max_groups, 1)?;
        settings::at_least("max_members", self.max_members, 1)?;
        settings::positive("min_session_timeout", self.min_session_timeout)?;
        if self.max_session_timeout < self.min_session_timeout {
            return Err(InvalidSetting::new(
                "max_session_timeout",
                "must be at least min_session_timeout",
            ));
        }
        settings::positive("heartbeat_interval", self.heartbeat_interval)?;
        settings::positive("offsets_retention", self.offsets_retention)
    }
}

/// A join: what the member consumes and how it is kept.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub topics: Vec<String>,
    pub session_timeout: Option<Duration>,
    pub rebalance_timeout: Option<Duration>,
    pub auto_offset_reset: OffsetReset,
    /// A rejoining member's previous id.
    pub member_id: Option<String>,
}

/// A member's view after a join or a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub member_epoch: u64,
    pub heartbeat_interval: Duration,
    /// What the member owns now, each with the offset it reads from.
    pub assignment: Vec<AssignedPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// How a member's records call reads.
#[derive(Debug, Clone)]
pub struct GroupFetch {
    pub max_records: usize,
    pub max_bytes: usize,
    pub wait: Duration,
    /// Commit what the previous call returned before reading (Kafka's auto-commit).
    pub commit_previous: bool,
    /// The id of the last answer the member received. When the latest answer was not it
    /// (lost on the way), that answer's records are read again rather than committed.
    /// Without it, each call counts the previous answer as received.
    pub ack: Option<u64>,
    /// The member epoch whose assignment the member has applied: partitions given at a
    /// later epoch are not read until it has (it would not know where their records go).
    pub member_epoch: Option<u64>,
}

/// What a member's records call read.
#[derive(Debug)]
pub struct GroupRead {
    pub records: Vec<GroupRecord>,
    pub member_epoch: u64,
    /// This answer's id, to acknowledge on the next call.
    pub answer: u64,
    /// Memory the records hold, reserved from the request budget.
    pub reservations: Vec<floe_core::Reservation>,
}

/// A record read through a member, with where it came from.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub topic: String,
    pub partition: u32,
    pub record: crate::FetchedRecord,
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub state: GroupPhase,
    pub members: usize,
    pub generation: u64,
}

/// Where a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPhase {
    /// No members.
    Empty,
    /// Partitions are being handed over (some asked back, or some free).
    Reconciling,
    Stable,
}

impl GroupPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Reconciling => "reconciling",
            Self::Stable => "stable",
        }
    }
}

/// A member in a group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub member_epoch: u64,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    pub owned: Vec<(String, u32)>,
    pub revoking: Vec<(String, u32)>,
}

/// A group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub summary: GroupSummary,
    pub coordinator: String,
    pub members: Vec<MemberSummary>,
    pub offsets: Vec<GroupPartition>,
}

/// The live brokers as one view, read once to place many groups (a tick, a scrape).
#[derive(Debug)]
pub(crate) struct Placement {
    members: Vec<Member>,
    here: String,
}

impl Placement {
    /// Rendezvous hashing: the live broker whose hash with the group's name is highest.
    /// Every broker with the same view picks the same one, and a broker leaving moves only
    /// its own groups. (An embedded broker is the only member, so it coordinates all.)
    pub(crate) fn coordinator(&self, group: &str) -> Option<&Member> {
        self.members.iter().max_by_key(|member| {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&(group, &member.broker), &mut hasher);
            (std::hash::Hasher::finish(&hasher), member.broker.as_str())
        })
    }

    /// Whether this broker coordinates `group`.
    pub(crate) fn is_here(&self, group: &str) -> bool {
        self.coordinator(group)
            .is_some_and(|member| member.broker == self.here)
    }
}

impl Broker {
    pub(crate) fn placement(&self) -> Placement {
        let membership = self.inner.sequencer.membership();
        Placement {
            members: membership.members(),
            here: membership.broker().to_owned(),
        }
    }

    /// The broker coordinating `group`: where its member calls go.
    pub fn group_coordinator(&self, group: &str) -> Option<Member> {
        self.placement().coordinator(group).cloned()
    }

    /// Whether this broker coordinates `group`.
    pub fn coordinates(&self, group: &str) -> bool {
        self.placement().is_here(group)
    }

    pub(crate) fn groups(&self) -> &Coordinator {
        &self.inner.groups
    }

    pub fn group_options(&self) -> &GroupOptions {
        &self.inner.group_options
    }
}

/// How often the coordinator looks for expired sessions and revocations.
const TICK: Duration = Duration::from_millis(250);

/// Ticks the groups until `stopped`.
pub(crate) async fn run_ticker(broker: Broker, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.tick_groups().await,
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests;
