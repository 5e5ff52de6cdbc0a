//! An in-memory log and snapshot store for unit tests: same contracts, no durability
//! across processes.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::cluster::SnapshotStore;
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

/// Snapshots in process memory, keyed as the object store keys them (the index first, so
/// `list` can read it back).
#[derive(Debug, Default)]
pub struct MemorySnapshots {
    objects: Mutex<HashMap<String, Bytes>>,
}

#[async_trait]
impl SnapshotStore for MemorySnapshots {
    async fn put(&self, index: u64, state: Bytes) -> Result<String, LogError> {
        let key = format!("{index:020}-{}", ulid::Ulid::new());
        self.objects.lock().insert(key.clone(), state);
        Ok(key)
    }

    async fn get(&self, key: &str) -> Result<Bytes, LogError> {
        self.objects
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| LogError::Corrupt(format!("no snapshot {key}")))
    }

    async fn delete(&self, key: &str) -> Result<(), LogError> {
        self.objects.lock().remove(key);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(u64, String)>, LogError> {
        Ok(self
            .objects
            .lock()
            .keys()
            .filter_map(|key| Some((key.split('-').next()?.parse().ok()?, key.clone())))
            .collect())
    }
}
