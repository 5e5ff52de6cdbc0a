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
/// The sequencer calls these one at a time, never concurrently.
#[async_trait]
pub trait LogBackend: Send + Sync + Debug + 'static {
    /// Loads the newest snapshot and every durable entry after it, in order.
    async fn recover(&self) -> Result<Recovery, LogError>;

    /// Appends entries, in order, and returns only once they are durable. On error none of
    /// them may become visible to a later `recover`.
    async fn append(&self, entries: &[LogEntry]) -> Result<(), LogError>;

    /// Stores a snapshot durably and may then drop every entry it covers.
    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError>;
}
