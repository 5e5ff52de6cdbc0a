//! The metadata state machine and the durable, ordered command log that drives it.
//!
//! Topics, partitions, log start offsets, high watermarks and the batch index live in
//! [`ClusterState`]; it changes only by applying [`Command`]s in log order, so every replica
//! that applies the same log holds the same state. [`Sequencer`] group-commits submitted
//! commands through a [`LogBackend`] and applies them only once they are durable.
//!
//! Two modes run behind the same [`Sequencer`]: embedded (one broker, a [`FileLog`]) and a
//! cluster on etcd ([`open_cluster`]). Both share the commit loop (`commit`) and the
//! replica (`replica`); neither mode's module imports the other's. Callers learn who is in
//! the cluster, who leads and who owns what through [`Sequencer::membership`], the same way
//! in both modes.
//!
//! This crate must not touch segment bytes or the object store's data path: it knows where
//! batches are, never what they hold.

mod cluster;
mod commit;
pub mod conformance;
mod embedded;
mod error;
mod log;
mod membership;
mod memory;
mod metrics;
mod replica;
mod sequencer;
mod settings;
mod state;

use std::sync::Arc;

use floe_core::Clock;

pub use cluster::{
    ClusterOptions, EtcdLog, ForwardedCommand, Forwarder, RemoteError, SnapshotStore,
    cluster_secret,
};
pub use commit::{Committed, MAX_COMMAND_BYTES};
pub use embedded::FileLog;
pub use error::{ApplyError, LogError, SequencerError};
pub use log::{Fence, LogBackend, LogEntry, Recovery, Snapshot};
pub use membership::{FEATURES, Identity, LeaderInfo, Member, Membership, Mode, all_have};
pub use memory::{MemoryLog, MemorySnapshots};
pub use replica::ApplyObserver;
pub use sequencer::{Sequencer, SequencerOptions};
pub use settings::{ClusterSettings, EtcdTls};
pub use state::{
    BatchLocation, CLEANED_LEVEL, ClusterState, Command, CommittedOffset, ExportCursor,
    ExportRange, ExportWritten, FLUSH_LEVEL, GroupMember, GroupState, MAX_ACLS,
    MAX_IDEMPOTENT_BATCHES, MAX_OFFSET_METADATA, MAX_PARTITIONS, MAX_PRODUCERS,
    MAX_PRODUCERS_PER_PRINCIPAL, MAX_WINDOW_BATCHES, MemberFence, OffsetCommit, OffsetReset,
    OrdMap, Outcome, OwnerChange, PRODUCER_WINDOW, PartitionMap, PartitionState, Produced,
    ProducerState, ProducerTag, Replacement, RequestGuard, SegmentInfo, SegmentResults, TopicState,
    Trim,
};

/// Joins the cluster on etcd as `identity`: connects, loads the replica, registers this
/// broker and starts campaigning. The returned sequencer commits through whoever leads;
/// `clock` stamps the registration.
///
/// It lives here, not in `cluster`, so that the cluster driver and the [`Sequencer`]
/// handle need not know each other: the driver starts the parts, the handle wraps them.
pub async fn open_cluster(
    identity: Identity,
    options: ClusterOptions,
    snapshots: Arc<dyn SnapshotStore>,
    forwarder: Arc<dyn Forwarder>,
    clock: Arc<dyn Clock>,
) -> Result<Sequencer, SequencerError> {
    let running = cluster::join(identity, options, snapshots, forwarder, clock).await?;
    Ok(Sequencer::wrap(running))
}
