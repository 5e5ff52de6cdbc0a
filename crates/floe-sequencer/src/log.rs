//! The narrow seam between the sequencer and where its log lives.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::state::Command;

/// One command at its position in the log. Indexes start at 1 and are dense.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: u64,
    pub command: Command,
}

/// A broker's membership session. A command submitted under a fence commits only while
/// that session is still the broker's live registration: a broker that was paused or cut
/// off long enough to lose its lease can never commit what it buffered before.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    pub broker: String,
    /// The etcd revision that created the broker's registration.
    pub session: i64,
}

/// The serialized state after applying every entry up to and including `index`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub index: u64,
    pub state: Bytes,
}

/// What a backend hands back on start: the newest snapshot and the entries after it.
#[derive(Debug, Default)]
pub struct Recovery {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<LogEntry>,
}

/// A durable, ordered command log. Implementations: [`crate::FileLog`] (embedded, one
/// process), [`crate::MemoryLog`] (tests), and the etcd backend of the cluster.
///
/// The sequencer calls `recover` and `append` one at a time, never concurrently;
/// `install_snapshot` runs beside appends, so entries appended after the snapshot's
/// index, even before it was installed, must stay. A commit loop has one snapshot in flight
/// at most, but one that ended may leave its install running beside the next loop's: an
/// install must never replace a newer snapshot ([`LogError::SnapshotSuperseded`]).
#[async_trait]
pub trait LogBackend: Send + Sync + Debug + 'static {
    /// Loads the newest snapshot and every durable entry after it, in order.
    async fn recover(&self) -> Result<Recovery, LogError>;

    /// Appends entries, in order, and returns only once they are durable. On error none of
    /// them may become visible to a later `recover`. Backends with membership check every
    /// fence atomically with the write and fail with [`LogError::Fenced`], writing nothing,
    /// when any is stale; backends without membership ignore them.
    async fn append(&self, entries: &[LogEntry], fences: &[Fence]) -> Result<(), LogError>;

    /// Stores a snapshot durably and may then drop every entry it covers.
    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError>;

    /// Returns once this process is known to still own the log, as an append would have
    /// checked: the commit loop asks before it answers a group whose commands were all
    /// refused on its own state (so nothing was appended). Backends with a single writer
    /// (a locked directory, process memory) own it for their whole life; a cluster leader
    /// fails with [`LogError::Deposed`] once its term is over.
    async fn confirm_owner(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Releases what the backend holds (a lock, a lease) once the sequencer stops.
    async fn close(&self) {}
}
