//! A broker's replica of the state: what readers query and what applying entries moves.
//!
//! Both modes share it. The embedded commit loop and a cluster leader's commit loop apply
//! the entries they commit; a cluster follower applies the entries it reads from the log.

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::error::{ApplyError, LogError};
use crate::log::LogEntry;
use crate::state::{ClusterState, Command, Outcome};

/// Told of every command this replica applies, before readers waiting on the applied
/// index are woken, with the state as it stands right after the command. It runs under the
/// state's write lock: it must be quick and must not block (spawn anything longer).
pub trait ApplyObserver: Send + Sync + 'static {
    fn applied(
        &self,
        state: &ClusterState,
        command: &Command,
        outcome: &Result<Outcome, ApplyError>,
    );
}

/// The replica of the state and the signal that it moved, shared by whoever applies
/// entries (the commit loop of a leader, the log follower of everyone else) and readers.
pub(crate) struct Replica {
    state: RwLock<ClusterState>,
    applied: watch::Sender<u64>,
    observers: RwLock<Vec<Arc<dyn ApplyObserver>>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("applied", &*self.applied.borrow())
            .field("observers", &self.observers.read().len())
            .finish_non_exhaustive()
    }
}

impl Replica {
    pub(crate) fn new(state: ClusterState) -> Self {
        let (applied, _) = watch::channel(state.applied_index);
        Self {
            state: RwLock::new(state),
            applied,
            observers: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn observe(&self, observer: Arc<dyn ApplyObserver>) {
        self.observers.write().push(observer);
    }

    pub(crate) fn applied_index(&self) -> u64 {
        self.state.read().applied_index
    }

    pub(crate) fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        read(&self.state.read())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies entries that follow the replica's last one, in order, and announces them.
    /// Entries at or below the applied index are skipped (already applied).
    pub(crate) fn apply(&self, entries: &[LogEntry]) -> Vec<Result<Outcome, ApplyError>> {
        let mut outcomes = Vec::with_capacity(entries.len());
        let last = {
            let mut state = self.state.write();
            let observers = self.observers.read();
            for entry in entries {
                if entry.index <= state.applied_index {
                    continue;
                }
                let outcome = state.apply(entry.index, &entry.command);
                for observer in observers.iter() {
                    observer.applied(&state, &entry.command, &outcome);
                }
                outcomes.push(outcome);
            }
            state.applied_index
        };
        self.applied.send_replace(last);
        outcomes
    }

    /// Replaces the replica with a snapshot that is ahead of it.
    pub(crate) fn install(&self, state: ClusterState) {
        let index = state.applied_index;
        *self.state.write() = state;
        self.applied.send_replace(index);
    }

    /// A copy of the state, for a snapshot encoded beside the commit loop.
    pub(crate) fn copy(&self) -> ClusterState {
        self.state.read().clone()
    }
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Encodes a state for a snapshot: its JSON, compressed with zstd as it is written.
pub(crate) fn encode_state(state: &ClusterState) -> Result<bytes::Bytes, LogError> {
    let failed = |e: std::io::Error| LogError::Corrupt(format!("encode snapshot: {e}"));
    let encoder = zstd::stream::Encoder::new(Vec::new(), 1).map_err(failed)?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 16, encoder);
    serde_json::to_writer(&mut writer, state)
        .map_err(|e| LogError::Corrupt(format!("encode snapshot: {e}")))?;
    let encoder = writer.into_inner().map_err(|e| failed(e.into_error()))?;
    encoder.finish().map(bytes::Bytes::from).map_err(failed)
}

/// Decodes a snapshot's bytes into a state: zstd-compressed JSON, or the plain JSON that
/// builds before 2026-12-03 wrote.
pub(crate) fn decode_state(index: u64, bytes: &[u8]) -> Result<ClusterState, LogError> {
    let corrupt =
        |e: &dyn std::fmt::Display| LogError::Corrupt(format!("snapshot at index {index}: {e}"));
    let mut state: ClusterState = if bytes.starts_with(&ZSTD_MAGIC) {
        let json = zstd::stream::decode_all(bytes).map_err(|e| corrupt(&e))?;
        serde_json::from_slice(&json).map_err(|e| corrupt(&e))?
    } else {
        serde_json::from_slice(bytes).map_err(|e| corrupt(&e))?
    };
    state.rebuild_derived();
    Ok(state)
}
