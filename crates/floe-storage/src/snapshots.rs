//! Sequencer state snapshots as objects, so that etcd holds only a pointer to the newest.
//!
//! This module stores and fetches opaque bytes; what a snapshot holds, and when one may be
//! deleted, is the sequencer's business.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::keys;
use crate::segments::StorageError;

/// Snapshot objects in one store under one prefix (`<prefix>/sequencer/snapshots/`).
#[derive(Debug, Clone)]
pub struct SnapshotObjects {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl SnapshotObjects {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    /// Stores the snapshot taken at log index `index` under a key of its own, with a
    /// create-only put, and returns that key. The key's nonce keeps a retried or
    /// competing upload of the same index from replacing an object already pointed to.
    pub async fn put(&self, index: u64, state: Bytes) -> Result<Path, StorageError> {
        let key = keys::snapshot(&self.prefix, index, &ulid::Ulid::new().to_string());
        self.store
            .put_opts(
                &key,
                PutPayload::from(state),
                PutOptions::from(PutMode::Create),
            )
            .await
            .map_err(|source| StorageError::Snapshot {
                key: key.to_string(),
                action: "put",
                source,
            })?;
        Ok(key)
    }

    /// The bytes of the snapshot stored under `key`.
    pub async fn get(&self, key: &Path) -> Result<Bytes, StorageError> {
        let failed = |action: &'static str, source: object_store::Error| match source {
            object_store::Error::NotFound { .. } => StorageError::SnapshotMissing(key.to_string()),
            source => StorageError::Snapshot {
                key: key.to_string(),
                action,
                source,
            },
        };
        let result = self
            .store
            .get(key)
            .await
            .map_err(|source| failed("get", source))?;
        result
            .bytes()
            .await
            .map_err(|source| failed("read", source))
    }

    /// Every snapshot in the folder, with the log index it was taken at (from its key;
    /// objects whose names do not carry one are left out).
    pub async fn list(&self) -> Result<Vec<(u64, Path)>, StorageError> {
        use futures::TryStreamExt;
        let folder = keys::snapshots_folder(&self.prefix);
        let objects: Vec<Path> = self
            .store
            .list(Some(&folder))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|error| StorageError::Listing(error.to_string()))?;
        Ok(objects
            .into_iter()
            .filter_map(|location| {
                let index = location.filename()?.split('-').next()?.parse().ok()?;
                Some((index, location))
            })
            .collect())
    }

    /// Deletes the snapshot stored under `key`; one already gone counts as deleted, so a
    /// retried delete succeeds.
    pub async fn delete(&self, key: &Path) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StorageError::Snapshot {
                key: key.to_string(),
                action: "delete",
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreUrl, open_store};

    fn snapshots() -> SnapshotObjects {
        let (store, prefix) = open_store(&StoreUrl::Memory).expect("memory store");
        SnapshotObjects::new(store, prefix)
    }

    #[tokio::test]
    async fn snapshots_round_trip_under_their_folder_and_delete_idempotently() {
        let snapshots = snapshots();
        let first = snapshots
            .put(7, Bytes::from_static(b"state at 7"))
            .await
            .expect("put");
        let second = snapshots
            .put(7, Bytes::from_static(b"state at 7, again"))
            .await
            .expect("a second put of the same index gets its own key");
        assert_ne!(first, second);
        let folder = keys::snapshots_folder(&snapshots.prefix);
        assert!(first.prefix_matches(&folder), "{first} is under {folder}");
        assert!(first.as_ref().contains("00000000000000000007-"), "{first}");
        assert_eq!(
            snapshots.get(&first).await.expect("get").as_ref(),
            b"state at 7"
        );
        let mut listed = snapshots.list().await.expect("list");
        listed.sort();
        let mut expected = vec![(7, first.clone()), (7, second.clone())];
        expected.sort();
        assert_eq!(listed, expected);
        snapshots.delete(&first).await.expect("delete");
        snapshots.delete(&first).await.expect("a second delete");
        assert!(matches!(
            snapshots.get(&first).await,
            Err(StorageError::SnapshotMissing(_))
        ));
        assert_eq!(
            snapshots.get(&second).await.expect("untouched").as_ref(),
            b"state at 7, again"
        );
    }
}
