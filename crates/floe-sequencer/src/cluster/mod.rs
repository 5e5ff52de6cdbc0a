//! The cluster sequencer on etcd: one elected leader writes the command log, every broker
//! follows it into its own replica, brokers register with leases, and the leader assigns
//! partition owners. The design is in `docs/adr/0001-sequencer.md`.
//!
//! ```text
//! /floe/<cluster>/leader                 election key (leader's lease): LeaderInfo
//! /floe/<cluster>/brokers/<id>           registration (broker's lease): Member
//! /floe/<cluster>/log/<index, 20 digits> one committed group: [LogEntry]
//! /floe/<cluster>/snapshot               pointer to the newest state snapshot in the store
//! ```

mod driver;
mod etcd_log;
mod follow;
mod session;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_core::Clock;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub(crate) use driver::join;
pub use etcd_log::EtcdLog;

use crate::commit::Committed;
use crate::error::{LogError, SequencerError};
use crate::log::Fence;
use crate::membership::{Identity, LeaderInfo, Member, Membership, Mode};
use crate::sequencer::SequencerOptions;
use crate::state::Command;

/// How a broker joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Names the key space; brokers with the same name form one cluster.
    pub cluster: String,
    /// Lease time-to-live of registrations and of the leadership.
    pub lease_ttl: Duration,
    /// Compact etcd's history behind each snapshot, keeping etcd's size bounded.
    pub compact_etcd: bool,
    pub sequencer: SequencerOptions,
    /// TLS to etcd, when its endpoints are `https://`.
    pub tls: Option<crate::settings::EtcdTls>,
}

/// How brokers connect to etcd: bounded connects, and TLS when configured.
pub(crate) fn connect_options(
    tls: Option<&crate::settings::EtcdTls>,
) -> etcd_client::ConnectOptions {
    let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    match tls {
        Some(tls) => options.with_tls(tls.options()),
        None => options,
    }
}

/// Where the leader keeps state snapshots: the object store, so etcd holds only a pointer.
#[async_trait]
pub trait SnapshotStore: Send + Sync + Debug + 'static {
    /// Stores a snapshot and returns the key to find it by.
    async fn put(&self, index: u64, state: Bytes) -> Result<String, LogError>;
    async fn get(&self, key: &str) -> Result<Bytes, LogError>;
    async fn delete(&self, key: &str) -> Result<(), LogError>;
    /// Every stored snapshot's key, with the log index it was taken at.
    async fn list(&self) -> Result<Vec<(u64, String)>, LogError>;
}

/// Why a forwarded command was not committed, as it travels between brokers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum RemoteError {
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("not the leader")]
    NotLeader,
    #[error("{0}")]
    Unavailable(String),
    #[error("a {size}-byte command is over the log's {limit}-byte limit for one entry")]
    CommandTooLarge { size: usize, limit: usize },
}

impl From<SequencerError> for RemoteError {
    fn from(error: SequencerError) -> Self {
        match error {
            SequencerError::Fenced(broker) => Self::Fenced(broker),
            SequencerError::NotLeader => Self::NotLeader,
            SequencerError::CommandTooLarge { size, limit } => {
                Self::CommandTooLarge { size, limit }
            }
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<RemoteError> for SequencerError {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::Fenced(broker) => Self::Fenced(broker),
            RemoteError::NotLeader => Self::NotLeader,
            RemoteError::Unavailable(message) => Self::Unavailable(message),
            RemoteError::CommandTooLarge { size, limit } => Self::CommandTooLarge { size, limit },
        }
    }
}

/// A forwarded command as it travels to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedCommand {
    pub command: Command,
    pub fence: Option<Fence>,
}

/// Carries followers' commands to the leader (an HTTP call in `floe serve`).
#[async_trait]
pub trait Forwarder: Send + Sync + Debug + 'static {
    /// Sends commands, in order, to the leader. `Err` means the outcome is unknown: the
    /// commands may or may not have committed.
    async fn forward(
        &self,
        leader: &LeaderInfo,
        commands: Vec<ForwardedCommand>,
    ) -> Result<Vec<Result<Committed, RemoteError>>, String>;
}

#[derive(Debug, Clone)]
pub(crate) struct SessionState {
    pub fence: Fence,
    pub lease: i64,
    /// When etcd last confirmed the lease; a session is trusted for less than a TTL after.
    pub confirmed: tokio::time::Instant,
}

/// What a broker knows about the cluster: its session, the leader, the members.
#[derive(Debug)]
pub(crate) struct ClusterHandle {
    pub(crate) identity: Identity,
    pub(crate) options: ClusterOptions,
    /// Stamps registrations with their start time.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) session: Mutex<Option<SessionState>>,
    pub(crate) session_changed: watch::Sender<u64>,
    pub(crate) leader: watch::Sender<Option<LeaderInfo>>,
    pub(crate) members: watch::Sender<BTreeMap<String, Member>>,
    /// Set by [`Membership::hand_over`]: stop leading, stop campaigning.
    pub(crate) handing_over: watch::Sender<bool>,
}

impl ClusterHandle {
    pub(crate) fn new(
        identity: Identity,
        options: ClusterOptions,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            identity,
            options,
            clock,
            session: Mutex::new(None),
            session_changed: watch::channel(0).0,
            leader: watch::channel(None).0,
            members: watch::channel(BTreeMap::new()).0,
            handing_over: watch::channel(false).0,
        })
    }

    /// The fence for commits made now. Fails when the session is gone, or when etcd has
    /// not confirmed it for a whole lease TTL (the process may have been paused).
    pub(crate) fn session_fence(&self) -> Result<Fence, SequencerError> {
        match &*self.session.lock() {
            Some(session) if session.confirmed.elapsed() < self.options.lease_ttl => {
                Ok(session.fence.clone())
            }
            Some(_) => Err(SequencerError::Fenced(format!(
                "{}: lease not confirmed within its TTL",
                self.identity.broker
            ))),
            None => Err(SequencerError::Fenced(format!(
                "{}: not registered",
                self.identity.broker
            ))),
        }
    }

    /// Whether this broker is handing the leadership over and another live broker can
    /// take it.
    pub(crate) fn handing_over(&self) -> bool {
        *self.handing_over.borrow()
            && self
                .members
                .borrow()
                .keys()
                .any(|broker| *broker != self.identity.broker)
    }

    pub(crate) fn set_session(&self, session: Option<SessionState>) {
        *self.session.lock() = session;
        self.session_changed
            .send_modify(|generation| *generation += 1);
    }
}

impl Membership for ClusterHandle {
    fn mode(&self) -> Mode {
        Mode::Etcd
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn members(&self) -> Vec<Member> {
        self.members.borrow().values().cloned().collect()
    }

    fn leader(&self) -> Option<LeaderInfo> {
        self.leader.borrow().clone()
    }

    fn is_leader(&self) -> bool {
        self.leader.borrow().as_ref().is_some_and(|leader| {
            leader.broker == self.identity.broker && self.session_fence().is_ok()
        })
    }

    fn fence(&self) -> Result<Option<Fence>, SequencerError> {
        self.session_fence().map(Some)
    }

    /// Ready while the session is live and a leader is known.
    fn ready(&self) -> Result<(), SequencerError> {
        self.session_fence()?;
        if self.leader.borrow().is_none() {
            return Err(SequencerError::NoLeader);
        }
        Ok(())
    }

    fn hand_over(&self) {
        self.handing_over.send_replace(true);
    }

    fn is_handing_over(&self) -> bool {
        *self.handing_over.borrow()
    }

    /// The leader assigns owners; until it has, a partition has none.
    fn owner_of(&self, recorded: Option<&str>) -> Option<String> {
        recorded.map(str::to_owned)
    }
}

/// The etcd keys of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    root: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Self {
        Self {
            root: format!("/floe/{cluster}/"),
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn leader(&self) -> String {
        format!("{}leader", self.root)
    }

    pub fn snapshot(&self) -> String {
        format!("{}snapshot", self.root)
    }

    pub fn log(&self, index: u64) -> String {
        format!("{}log/{index:020}", self.root)
    }

    /// The end (exclusive) of the log's key range.
    pub fn log_end(&self) -> String {
        format!("{}log0", self.root)
    }

    pub fn log_prefix(&self) -> String {
        format!("{}log/", self.root)
    }

    pub fn broker(&self, id: &str) -> String {
        format!("{}brokers/{id}", self.root)
    }

    pub fn brokers_prefix(&self) -> String {
        format!("{}brokers/", self.root)
    }

    pub fn internal_secret(&self) -> String {
        format!("{}internal-secret", self.root)
    }
}

/// The cluster's credential for its internal routes: created at random by the first broker
/// that asks (an etcd transaction that writes only if the key is absent), read by every
/// other. Every broker that can reach etcd shares it, so a cluster needs no extra flag.
pub async fn cluster_secret(
    endpoints: &[String],
    cluster: &str,
    tls: Option<&crate::settings::EtcdTls>,
) -> Result<String, LogError> {
    use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
    let mut client = etcd(
        "connect",
        Client::connect(endpoints, Some(connect_options(tls))),
    )
    .await?;
    let key = Keys::new(cluster).internal_secret();
    // Two ULIDs carry 160 random bits.
    let fresh = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new());
    let create = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), fresh, None)]);
    etcd("create the cluster secret", client.txn(create)).await?;
    let found = etcd("read the cluster secret", client.get(key.clone(), None)).await?;
    found
        .kvs()
        .first()
        .and_then(|kv| kv.value_str().ok())
        .filter(|secret| !secret.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| LogError::Etcd(format!("{key} is empty after it was created")))
}

/// Bound on one etcd request: a call that takes longer is treated as failed.
pub(crate) const ETCD_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn etcd<T>(
    what: &str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, LogError> {
    match tokio::time::timeout(ETCD_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(LogError::Etcd(format!("{what}: {error}"))),
        Err(_) => Err(LogError::Etcd(format!(
            "{what}: no answer within {ETCD_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests;
