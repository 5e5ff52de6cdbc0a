//! An in-memory log for unit tests: same contract, no durability across processes.

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::LogError;
use crate::log::{Fence, LogBackend, LogEntry, Recovery, Snapshot};

#[derive(Debug, Default)]
pub struct MemoryLog {
    inner: Mutex<MemoryLogInner>,
}

#[derive(Debug, Default)]
struct MemoryLogInner {
    snapshot: Option<Snapshot>,
    entries: Vec<LogEntry>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns how many entries are kept (for tests of trimming).
    pub fn retained_entries(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

#[async_trait]
impl LogBackend for MemoryLog {
    async fn recover(&self) -> Result<Recovery, LogError> {
        let inner = self.inner.lock();
        Ok(Recovery {
            snapshot: inner.snapshot.clone(),
            entries: inner.entries.clone(),
        })
    }

    async fn append(&self, entries: &[LogEntry], _fences: &[Fence]) -> Result<(), LogError> {
        self.inner.lock().entries.extend_from_slice(entries);
        Ok(())
    }

    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        if let Some(installed) = &inner.snapshot
            && installed.index >= snapshot.index
        {
            return Err(LogError::SnapshotSuperseded {
                installed: installed.index,
                offered: snapshot.index,
            });
        }
        inner.entries.retain(|entry| entry.index > snapshot.index);
        inner.snapshot = Some(snapshot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance;

    fn factory() -> impl Fn() -> std::future::Ready<Arc<dyn LogBackend>> {
        let log: Arc<dyn LogBackend> = Arc::new(MemoryLog::new());
        move || std::future::ready(Arc::clone(&log))
    }

    #[tokio::test]
    async fn conformance_survives_reopen() {
        conformance::survives_reopen(factory()).await;
    }

    #[tokio::test]
    async fn conformance_concurrent_submitters() {
        conformance::concurrent_submitters_are_serialized(factory()).await;
    }

    #[tokio::test]
    async fn conformance_snapshot_beside_appends() {
        conformance::snapshot_keeps_entries_appended_meanwhile(factory()).await;
    }

    #[tokio::test]
    async fn conformance_snapshots() {
        conformance::snapshots_restore_state(factory()).await;
    }
}
