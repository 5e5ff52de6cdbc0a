//! Who is in the cluster, who leads it and who owns each partition, the same way in both
//! modes: an embedded sequencer is a cluster of one that leads itself and owns everything.
//!
//! Callers ask a [`Membership`] instead of asking which mode runs, so the HTTP routes and
//! the broker's jobs hold no mode-specific branches.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::error::SequencerError;
use crate::log::Fence;

/// Who this broker is: its id and the address other brokers and clients reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// This broker's id, unique among live brokers.
    pub broker: String,
    /// Where other brokers and clients reach this one (`host:port` or a URL).
    pub advertise: String,
    /// Where other brokers reach this one's internal routes, when they are served on an
    /// address of their own (`server.internal_listen`); `advertise` otherwise.
    pub internal: Option<String>,
}

impl Identity {
    pub fn new(broker: impl Into<String>, advertise: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
            advertise: advertise.into(),
            internal: None,
        }
    }

    /// With the internal routes at `internal`.
    pub fn with_internal(mut self, internal: Option<String>) -> Self {
        self.internal = internal;
        self
    }
}

/// A live broker, as registered in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub broker: String,
    pub advertise: String,
    pub started_ms: i64,
    /// The revision that created the registration: its session.
    #[serde(default)]
    pub session: i64,
    /// What this broker's version can do that older ones cannot ([`FEATURES`]): a
    /// capability is used only once every live broker has it, so a rolling upgrade never
    /// has an old replica ignore what a new one decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// Capabilities of this version: `guards` — commits conditioned on idempotent producers'
/// sequences and expected offsets (ADR 0010), which older replicas would not check.
pub const FEATURES: &[&str] = &["guards"];

/// Whether every live member has `feature`.
pub fn all_have(members: &[Member], feature: &str) -> bool {
    members
        .iter()
        .all(|member| member.features.iter().any(|f| f == feature))
}

/// The sequencer leader, as written in its election key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub broker: String,
    pub advertise: String,
    /// The leader's internal address, when it has one of its own (brokers before it
    /// never wrote one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<String>,
    /// The revision that created the election key: the leader's term.
    #[serde(default)]
    pub term: i64,
}

/// Where the command log lives and how its writer is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One broker, its log in a local file.
    Embedded,
    /// Brokers registered in etcd; an elected leader writes the log there.
    Etcd,
}

impl Mode {
    /// The name the HTTP API reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Etcd => "etcd",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broker's view of the cluster it belongs to.
pub trait Membership: Send + Sync + Debug + 'static {
    fn mode(&self) -> Mode;

    /// This broker.
    fn identity(&self) -> &Identity;

    /// This broker's id.
    fn broker(&self) -> &str {
        &self.identity().broker
    }

    /// The live brokers, this one included while its session is live.
    fn members(&self) -> Vec<Member>;

    /// The sequencer leader, when one is known.
    fn leader(&self) -> Option<LeaderInfo>;

    /// Whether this broker writes the log now (and so runs the cluster-wide jobs).
    fn is_leader(&self) -> bool;

    /// The fence this broker's commits should carry now: its live session in a cluster,
    /// nothing when embedded. Fails while a cluster broker has no live session.
    fn fence(&self) -> Result<Option<Fence>, SequencerError>;

    /// Whether this broker can commit now; the error says why not.
    fn ready(&self) -> Result<(), SequencerError>;

    /// Why this broker can never commit again until it restarts, if so: the embedded
    /// sequencer's log failed in a way only recovery from the file can repair (an append
    /// whose outcome is unknown). A cluster broker never is: another term takes over.
    fn failed(&self) -> Option<String> {
        None
    }

    /// Gives the leadership up for a graceful stop: a cluster broker that leads ends its
    /// term between two groups and resigns, and from then on follows whoever leads
    /// instead of campaigning, so its last commits go through the next leader while the
    /// others' commits no longer wait for it. A broker alone in its cluster keeps leading,
    /// and one that finds nobody leading for a second (every broker stopping at once)
    /// takes the leadership back.
    /// Nothing to do for the embedded sequencer.
    fn hand_over(&self) {}

    /// Whether [`hand_over`](Self::hand_over) is in force: asked for, and not taken back
    /// because no other broker took the leadership.
    fn is_handing_over(&self) -> bool {
        false
    }

    /// The broker that owns a partition whose state names `recorded` as its owner, if any
    /// does yet.
    fn owner_of(&self, recorded: Option<&str>) -> Option<String>;

    /// The live registration of the broker that owns a partition whose state names
    /// `recorded`: where its clients are sent.
    fn owner_member(&self, recorded: Option<&str>) -> Option<Member> {
        let owner = self.owner_of(recorded)?;
        self.members()
            .into_iter()
            .find(|member| member.broker == owner)
    }
}

/// The embedded sequencer's membership: this broker alone, always leading, owning every
/// partition (the embedded log never assigns owners).
#[derive(Debug)]
pub(crate) struct SoleMember {
    identity: Identity,
    failed: parking_lot::Mutex<Option<String>>,
}

impl SoleMember {
    pub(crate) fn new(identity: Identity) -> Self {
        Self {
            identity,
            failed: parking_lot::Mutex::new(None),
        }
    }

    /// Records that the commit loop stopped for good on `error`.
    pub(crate) fn fail(&self, error: String) {
        *self.failed.lock() = Some(error);
    }
}

impl Membership for SoleMember {
    fn mode(&self) -> Mode {
        Mode::Embedded
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn members(&self) -> Vec<Member> {
        // No registration exists to carry a start time or a session.
        vec![Member {
            broker: self.identity.broker.clone(),
            advertise: self.identity.advertise.clone(),
            started_ms: 0,
            session: 0,
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        }]
    }

    fn leader(&self) -> Option<LeaderInfo> {
        Some(LeaderInfo {
            broker: self.identity.broker.clone(),
            advertise: self.identity.advertise.clone(),
            internal: self.identity.internal.clone(),
            term: 0,
        })
    }

    fn is_leader(&self) -> bool {
        true
    }

    fn fence(&self) -> Result<Option<Fence>, SequencerError> {
        Ok(None)
    }

    fn ready(&self) -> Result<(), SequencerError> {
        match self.failed() {
            Some(error) => Err(SequencerError::Unavailable(format!(
                "the sequencer log failed and nothing commits until the broker restarts: {error}"
            ))),
            None => Ok(()),
        }
    }

    fn failed(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    fn owner_of(&self, _recorded: Option<&str>) -> Option<String> {
        Some(self.identity.broker.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_broker_is_a_cluster_of_one() {
        let membership = SoleMember::new(Identity::new("b0", "http://127.0.0.1:9092"));
        assert_eq!(membership.mode().as_str(), "embedded");
        assert_eq!(membership.broker(), "b0");
        assert!(membership.is_leader());
        assert!(membership.ready().is_ok());
        assert_eq!(membership.fence().ok(), Some(None));
        assert_eq!(
            membership.leader().map(|leader| leader.broker),
            Some("b0".to_owned())
        );
        assert_eq!(membership.owner_of(None).as_deref(), Some("b0"));
        let owner = membership.owner_member(None).expect("itself");
        assert_eq!(owner.advertise, "http://127.0.0.1:9092");
        assert_eq!(membership.members(), vec![owner]);
    }
}
