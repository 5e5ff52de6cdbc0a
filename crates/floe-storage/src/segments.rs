//! Segment uploads and ranged reads.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_core::{ErrorKind, SegmentId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::keys;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("bad store url {0}")]
    BadUrl(String),
    #[error("store setup failed: {0}")]
    Setup(String),
    #[error("segment {0} already exists; segment ids are never reused")]
    AlreadyExists(SegmentId),
    #[error("listing the store failed: {0}")]
    Listing(String),
    #[error("segment {segment} not found in the store")]
    Missing { segment: SegmentId },
    #[error("segment {segment} range {start}..{end}: expected {expected} bytes, got {actual}")]
    ShortRead {
        segment: SegmentId,
        start: u64,
        end: u64,
        expected: usize,
        actual: usize,
    },
    #[error("store request for segment {segment} took longer than {after:?}")]
    Timeout {
        segment: SegmentId,
        after: std::time::Duration,
    },
    /// A failure shared by every reader that waited on the same GET.
    #[error("{0}")]
    Shared(std::sync::Arc<StorageError>),
    #[error("store request for segment {segment} failed: {source}")]
    Store {
        segment: SegmentId,
        #[source]
        source: object_store::Error,
    },
    #[error("sequencer snapshot {key}: {action} failed: {source}")]
    Snapshot {
        key: String,
        action: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("sequencer snapshot {0} not found in the store")]
    SnapshotMissing(String),
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BadUrl(_) => ErrorKind::Invalid,
            Self::Setup(_)
            | Self::Store { .. }
            | Self::Timeout { .. }
            | Self::Listing(_)
            | Self::Snapshot { .. } => ErrorKind::Unavailable,
            Self::AlreadyExists(_)
            | Self::Missing { .. }
            | Self::ShortRead { .. }
            | Self::SnapshotMissing(_) => ErrorKind::Internal,
            Self::Shared(inner) => inner.kind(),
        }
    }

    /// The stable `error_code` clients see for this failure.
    pub fn code(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Invalid => "invalid_store",
            ErrorKind::Unavailable => "unavailable",
            _ => "internal",
        }
    }
}

impl StorageError {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { .. }
            | Self::Timeout { .. }
            | Self::Listing(_)
            | Self::Snapshot { .. } => true,
            Self::Shared(inner) => inner.is_transient(),
            _ => false,
        }
    }

    /// The segment that is not in the store, when that is the failure (directly, or for
    /// every reader that waited on the same GET).
    pub fn missing_segment(&self) -> Option<SegmentId> {
        match self {
            Self::Missing { segment } => Some(*segment),
            Self::Shared(inner) => inner.missing_segment(),
            _ => None,
        }
    }
}

/// Segment objects in one store under one prefix.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    attempt_timeout: Duration,
    /// When [`upload_hedged`](Self::upload_hedged) starts a second upload beside a slow
    /// first one; `None`: never.
    hedge_after: Option<Duration>,
    /// From how long on a flush upload is logged as slow.
    slow_upload: Duration,
    /// Whether a hedge is in flight, shared by every clone of this store: at most one at a
    /// time, so a store slow for everyone (throttling, a brownout) gets one extra upload,
    /// not one per flush.
    hedging: Arc<std::sync::atomic::AtomicBool>,
    /// PUT requests made for segment objects, shared by every clone of this store.
    puts: prometheus_client::metrics::counter::Counter,
    /// Second uploads started by [`upload_hedged`](Self::upload_hedged), and which of
    /// them landed first.
    hedges: prometheus_client::metrics::family::Family<
        [(&'static str, &'static str); 1],
        prometheus_client::metrics::counter::Counter,
    >,
}

/// Attempts of one upload. The store client retries a request's transient HTTP failures
/// itself (S3: `store.max_retries` within `store.retry_timeout`); an upload adds attempts
/// only for what the client cannot see: an attempt hung past `attempt_timeout`, or a
/// transient failure of a store without retries of its own (the local file system).
const UPLOAD_ATTEMPTS: u32 = 5;
const UPLOAD_FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The one hedge a store may have in flight, held while it runs.
struct HedgeSlot<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> HedgeSlot<'a> {
    fn take(slot: &'a std::sync::atomic::AtomicBool) -> Option<Self> {
        use std::sync::atomic::Ordering;
        // Lazily: a guard built and dropped on a failed take would free the slot its
        // holder still holds.
        (!slot.swap(true, Ordering::AcqRel)).then(|| Self(slot))
    }
}

impl Drop for HedgeSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl SegmentStore {
    /// Segments of `store` under `prefix`; one upload attempt may take 30 s.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self {
            store,
            prefix,
            attempt_timeout: Duration::from_secs(30),
            hedge_after: None,
            slow_upload: Duration::from_millis(100),
            hedging: Arc::default(),
            puts: prometheus_client::metrics::counter::Counter::default(),
            hedges: prometheus_client::metrics::family::Family::default(),
        }
    }

    /// Registers `floe_store_put_requests_total`: the PUTs of segment objects (flushes
    /// and compaction outputs), each attempt counted.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "floe_store_put_requests",
            "PUT requests for segment objects (flushes and compaction outputs), each attempt",
            self.puts.clone(),
        );
        for outcome in ["started", "won"] {
            let _ = self.hedges.get_or_create(&[("outcome", outcome)]);
        }
        registry.register(
            "floe_store_upload_hedges",
            "Second uploads of a flush started beside a slow first one (started), and those \
             that answered first (won)",
            self.hedges.clone(),
        );
    }

    /// The same store with every upload attempt bounded by `timeout`.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The same store with [`upload_hedged`](Self::upload_hedged) starting a second
    /// upload after `after` (`None`: never).
    pub fn with_hedge_after(mut self, after: Option<Duration>) -> Self {
        self.hedge_after = after;
        self
    }

    /// The same store with flush uploads of `after` or longer logged as slow (100 ms by
    /// default, for a local disk: a remote store's PUTs take that long routinely).
    pub fn with_slow_upload(mut self, after: Duration) -> Self {
        self.slow_upload = after;
        self
    }

    /// From how long on a flush upload is logged as slow.
    pub fn slow_upload(&self) -> Duration {
        self.slow_upload
    }

    /// [`upload`](Self::upload) for an object someone waits for (a flush that producers'
    /// acknowledgements and every later commit wait behind): when it has not landed within
    /// the hedge delay, a second upload of the same object starts beside it, and the
    /// first to land answers. Both are create-only, so the object is written once; the
    /// slower finds it there and checks its length, or is dropped. A store's rare hung
    /// PUT then costs about the hedge delay and one more PUT, instead of
    /// `store.request_timeout`.
    pub async fn upload_hedged(
        &self,
        id: SegmentId,
        payload: &PutPayload,
    ) -> Result<(), StorageError> {
        let Some(after) = self.hedge_after else {
            return self.upload(id, payload).await;
        };
        let first = self.upload(id, payload);
        tokio::pin!(first);
        tokio::select! {
            result = &mut first => return result,
            () = tokio::time::sleep(after) => {}
        }
        let Some(_hedging) = HedgeSlot::take(&self.hedging) else {
            // Another flush's hedge is in flight: this one waits for its own upload.
            return first.await;
        };
        self.hedges.get_or_create(&[("outcome", "started")]).inc();
        tracing::debug!(segment = %id, ?after, "upload slow; a second one starts beside it");
        let second = self.upload(id, payload);
        tokio::pin!(second);
        let won = || {
            self.hedges.get_or_create(&[("outcome", "won")]).inc();
        };
        // The first success answers; a failure waits for the other.
        tokio::select! {
            result = &mut first => match result {
                Ok(()) => Ok(()),
                Err(error) => second.await.inspect(|()| won()).map_err(|_| error),
            },
            result = &mut second => match result {
                Ok(()) => {
                    won();
                    Ok(())
                }
                Err(_) => first.await,
            },
        }
    }

    /// Uploads a finished object exactly once, whatever happens to responses: a
    /// create-only put, retried per [`UPLOAD_ATTEMPTS`]; an object already there with the
    /// same length counts as landed (an earlier attempt's answer was lost), anything else
    /// there is an error, never overwritten. The object is `payload`'s parts in order.
    pub async fn upload(&self, id: SegmentId, payload: &PutPayload) -> Result<(), StorageError> {
        let mut backoff = UPLOAD_FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let put = self.put_segment(id, payload.clone());
            let result = match tokio::time::timeout(self.attempt_timeout, put).await {
                Ok(result) => result,
                Err(_) => Err(StorageError::Timeout {
                    segment: id,
                    after: self.attempt_timeout,
                }),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(StorageError::AlreadyExists(_)) => match self.segment_len(id).await {
                    Ok(len) if len == payload.content_length() as u64 => return Ok(()),
                    // Refused as existing, yet not there: another write of the key is in
                    // progress (S3 answers `409 ConditionalRequestConflict`, which the
                    // client reports as existing), such as this upload's hedge or a hung
                    // attempt still landing. Try again once it has settled.
                    Err(StorageError::Missing { .. }) if attempt < UPLOAD_ATTEMPTS => {
                        tracing::debug!(segment = %id, attempt, "object write in progress; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                        attempt += 1;
                    }
                    _ => return Err(StorageError::AlreadyExists(id)),
                },
                Err(error) if attempt < UPLOAD_ATTEMPTS && error.is_transient() => {
                    tracing::debug!(segment = %id, attempt, %error, "retrying object upload");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Uploads a finished segment with a create-only put: an existing object is never
    /// overwritten.
    pub async fn put_segment(
        &self,
        id: SegmentId,
        payload: impl Into<PutPayload>,
    ) -> Result<(), StorageError> {
        let location = keys::segment(&self.prefix, id);
        let options = PutOptions::from(PutMode::Create);
        self.puts.inc();
        match self
            .store
            .put_opts(&location, payload.into(), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StorageError::AlreadyExists(id)),
            Err(source) => Err(StorageError::Store {
                segment: id,
                source,
            }),
        }
    }

    /// The stored length of a segment object.
    pub async fn segment_len(&self, id: SegmentId) -> Result<u64, StorageError> {
        let location = keys::segment(&self.prefix, id);
        match self.store.head(&location).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::Missing { segment: id }),
            Err(source) => Err(StorageError::Store {
                segment: id,
                source,
            }),
        }
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Deletes a segment object; one already gone counts as deleted.
    pub async fn delete_segment(&self, id: SegmentId) -> Result<(), StorageError> {
        match self.store.delete(&keys::segment(&self.prefix, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StorageError::Store {
                segment: id,
                source,
            }),
        }
    }

    /// Lists the segment objects in the store with their sizes. Keys that are not segment
    /// names are skipped.
    pub async fn list_segments(&self) -> Result<Vec<(SegmentId, u64)>, StorageError> {
        let folder = keys::segments_folder(&self.prefix);
        let objects = self.list(&folder).await?;
        Ok(objects
            .into_iter()
            .filter_map(|(location, size)| {
                let name = location.filename()?;
                let ulid = name.strip_suffix(".seg")?.parse::<ulid::Ulid>().ok()?;
                Some((SegmentId(ulid), size))
            })
            .collect())
    }

    /// Deletes start-up probe objects created at or before `horizon_ms` (a broker that
    /// died during its probe leaves one behind). Returns how many were deleted.
    pub async fn sweep_probes(&self, horizon_ms: i64) -> Result<usize, StorageError> {
        let folder = keys::probe_folder(&self.prefix);
        let mut deleted = 0;
        for (location, _) in self.list(&folder).await? {
            let created = location
                .filename()
                .and_then(|name| name.parse::<ulid::Ulid>().ok())
                .map(|ulid| ulid.timestamp_ms() as i64);
            if created.is_some_and(|created| created <= horizon_ms) {
                match self.store.delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(source) => return Err(StorageError::Listing(source.to_string())),
                }
            }
        }
        Ok(deleted)
    }

    async fn list(&self, folder: &Path) -> Result<Vec<(Path, u64)>, StorageError> {
        use futures::TryStreamExt;
        self.store
            .list(Some(folder))
            .map_ok(|meta| (meta.location, meta.size))
            .try_collect()
            .await
            .map_err(|error| StorageError::Listing(error.to_string()))
    }

    /// Reads a byte range of a segment and checks its length.
    pub async fn read_range(
        &self,
        id: SegmentId,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let expected = (range.end - range.start) as usize;
        let (start, end) = (range.start, range.end);
        let bytes = self.read_range_upto(id, range).await?;
        if bytes.len() != expected {
            return Err(StorageError::ShortRead {
                segment: id,
                start,
                end,
                expected,
                actual: bytes.len(),
            });
        }
        Ok(bytes)
    }

    /// Reads a byte range of a segment that may run past the object's end; the answer
    /// stops at the end (the range must start inside the object).
    pub async fn read_range_upto(
        &self,
        id: SegmentId,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let location = keys::segment(&self.prefix, id);
        let (start, end) = (range.start, range.end);
        let bytes =
            self.store
                .get_range(&location, range)
                .await
                .map_err(|source| match source {
                    object_store::Error::NotFound { .. } => StorageError::Missing { segment: id },
                    source => StorageError::Store {
                        segment: id,
                        source,
                    },
                })?;
        if bytes.len() as u64 > end - start {
            return Err(StorageError::ShortRead {
                segment: id,
                start,
                end,
                expected: (end - start) as usize,
                actual: bytes.len(),
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreUrl, open_store};

    #[tokio::test]
    async fn put_is_create_only_and_ranges_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        for url in [StoreUrl::Memory, StoreUrl::File(dir.path().to_path_buf())] {
            let (store, prefix) = open_store(&url).expect("open");
            let segments = SegmentStore::new(store, prefix);
            let id = SegmentId::generate();
            segments
                .put_segment(id, Bytes::from_static(b"0123456789"))
                .await
                .expect("put");
            assert!(matches!(
                segments.put_segment(id, Bytes::from_static(b"other")).await,
                Err(StorageError::AlreadyExists(_))
            ));
            assert_eq!(
                segments.read_range(id, 2..5).await.expect("range"),
                Bytes::from_static(b"234")
            );
            assert!(matches!(
                segments.read_range(SegmentId::generate(), 0..1).await,
                Err(StorageError::Missing { .. })
            ));
        }
    }
}
