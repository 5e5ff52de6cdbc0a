//! The metadata state machine and the durable, ordered command log that drives it.
//!
//! Topics, partitions, log start offsets, high watermarks and the batch index live in
//! [`ClusterState`]; it changes only by applying [`Command`]s in log order, so every replica
//! that applies the same log holds the same state. [`Sequencer`] group-commits submitted
//! commands through a [`LogBackend`] and applies them only once they are durable.
//!
//! This crate must not touch segment bytes or the object store's data path: it knows where
//! batches are, never what they hold.

mod cluster;
pub mod conformance;
mod embedded;
mod error;
mod log;
mod memory;
mod sequencer;
mod settings;
mod state;

pub use cluster::{
    ClusterHandle, ClusterOptions, EtcdLog, ForwardedCommand, Forwarder, LeaderInfo, Member,
    RemoteError, SnapshotStore, open_cluster,
};
pub use embedded::FileLog;
pub use error::{ApplyError, LogError, SequencerError};
pub use log::{Fence, LogBackend, LogEntry, Recovery, Snapshot};
pub use memory::MemoryLog;
pub use sequencer::{ApplyObserver, Committed, Sequencer, SequencerOptions};
pub use settings::ClusterSettings;
pub use state::{
    BatchLocation, CLEANED_LEVEL, ClusterState, Command, FLUSH_LEVEL, MAX_PARTITIONS, Outcome,
    OwnerChange, PartitionState, Replacement, SegmentInfo, TopicState, Trim,
};
