//! Opening an object store from a URL.

use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use floe_core::settings::{self, InvalidSetting};
use serde::{Deserialize, Serialize};

use crate::local::LocalStore;
use crate::segments::StorageError;

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file://DIR`: a local directory (relative paths allowed, created if missing).
    File(PathBuf),
    /// `memory://`: process memory, for tests.
    Memory,
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(StorageError::BadUrl(format!(
                    "{url}: a file store needs a directory"
                )));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if url == "memory://" || url == "memory:" {
            return Ok(Self::Memory);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3 {
                return Err(StorageError::BadUrl(format!(
                    "{url}: bucket names have at least 3 characters"
                )));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        Err(StorageError::BadUrl(format!(
            "{url}: expected file://DIR, memory:// or s3://BUCKET/PREFIX"
        )))
    }
}

/// The hedge delay of flush uploads on S3 when none is configured: several times a
/// multi-MiB PUT's usual p99 on S3 (AWS advises retrying small requests still unanswered
/// after 2 s), so hedges stay rare while a hung PUT costs about a second.
const DEFAULT_S3_HEDGE_AFTER: Duration = Duration::from_secs(1);

/// Where segments and snapshots are stored, and how requests to the store behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Object store URL: `file://DIR`, `s3://BUCKET/PREFIX` or `memory://` (not durable,
    /// one process only); `file://<data_dir>/objects` when unset.
    pub url: Option<String>,
    /// S3-compatible endpoint (also `AWS_ENDPOINT_URL`); AWS itself when unset.
    pub s3_endpoint: Option<String>,
    /// S3 region (also `AWS_REGION`); `us-east-1` when unset.
    pub s3_region: Option<String>,
    /// Path-style S3 requests; on for a custom endpoint, off for AWS, when unset.
    pub s3_path_style: Option<bool>,
    /// PEM CA certificates trusted for the S3 endpoint, besides the system's roots.
    pub s3_ca_file: Option<std::path::PathBuf>,
    /// Bound on one request attempt; a slower attempt is abandoned and retried.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bound on connecting to the store.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retries of one S3 request on 5xx, SlowDown, throttling and timeouts, with
    /// exponential backoff and jitter.
    pub max_retries: usize,
    /// Stop retrying one S3 request after this long in total.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// Local store only: keep what floe writes in the OS page cache. Off by default:
    /// written objects' pages are dropped once durable (ADR 0002).
    pub keep_written_pages: bool,
    /// S3 only: a flush's upload not landed after this long gets a second upload of the
    /// same object beside it (create-only: the first to land wins). Unset: 1 s; `0s`:
    /// never.
    #[serde(with = "humantime_serde")]
    pub upload_hedge_after: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let s3 = S3Options::default();
        Self {
            url: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
            s3_ca_file: None,
            request_timeout: s3.request_timeout,
            connect_timeout: s3.connect_timeout,
            max_retries: s3.max_retries,
            retry_timeout: s3.retry_timeout,
            keep_written_pages: false,
            upload_hedge_after: None,
        }
    }
}

impl StoreOptions {
    /// The store's URL, `file://<data_dir>/objects` when none was given.
    pub fn url_or_default(&self, data_dir: &std::path::Path) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display()))
    }

    /// When a flush's upload gets a second one beside it, on a store of this kind: on S3 a
    /// rare PUT hangs until `request_timeout` and every later commit waits behind it; a
    /// second write to the same local disk would only add to its queue.
    pub fn upload_hedge_after(&self, s3: bool) -> Option<Duration> {
        match self.upload_hedge_after {
            _ if !s3 => None,
            Some(Duration::ZERO) => None,
            Some(after) => Some(after),
            None => Some(DEFAULT_S3_HEDGE_AFTER),
        }
    }

    /// The S3 client settings these options describe.
    pub fn s3(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            ca_file: self.s3_ca_file.clone(),
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// Refuses values the store cannot work with, naming the setting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let url = self
            .url
            .as_deref()
            .map(StoreUrl::parse)
            .transpose()
            .map_err(|error| InvalidSetting::new("url", error.to_string()))?;
        if !matches!(url, Some(StoreUrl::S3 { .. }))
            && self
                .upload_hedge_after
                .is_some_and(|after| !after.is_zero())
        {
            // A local store's create-only put is a link then a directory fsync: a second
            // upload racing it could be answered before the entry is durable.
            return Err(InvalidSetting::new(
                "upload_hedge_after",
                "applies to an s3:// store only: a second write to a local disk only adds to its queue",
            ));
        }
        settings::positive("request_timeout", self.request_timeout)?;
        settings::positive("connect_timeout", self.connect_timeout)?;
        settings::positive("retry_timeout", self.retry_timeout)
    }
}

/// How floe talks to an S3-compatible store. Credentials never come from here: they come
/// from the environment (`AWS_ACCESS_KEY_ID`, …), the shared credentials file or profile,
/// web identity, or the instance role, in the AWS SDK's usual order.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Options {
    /// `http(s)://host:port` of an S3-compatible server; `None` means AWS itself (or
    /// `AWS_ENDPOINT_URL` when set).
    pub endpoint: Option<String>,
    /// Defaults to `AWS_REGION`, then `us-east-1`.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`). `None` means: on for a custom endpoint,
    /// off for AWS.
    pub path_style: Option<bool>,
    /// PEM CA certificates trusted for the endpoint, besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bound on one request attempt.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries of one request on 5xx, SlowDown, throttling and timeouts, with exponential
    /// backoff and jitter.
    pub max_retries: usize,
    /// Stop retrying a request after this long in total.
    pub retry_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            path_style: None,
            ca_file: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 6,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

/// Opens the store a URL names, returning it with the key prefix floe writes under.
pub fn open_store(url: &StoreUrl) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    open_store_with(url, &S3Options::default(), false)
}

/// [`open_store`] with explicit S3 settings (ignored by the other kinds) and, for a local
/// store, whether written objects keep their pages in the page cache.
pub fn open_store_with(
    url: &StoreUrl,
    s3: &S3Options,
    keep_written_pages: bool,
) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    match url {
        StoreUrl::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| {
                StorageError::Setup(format!("create {}: {source}", dir.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|source| StorageError::Setup(format!("open {}: {source}", dir.display())))?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            if let Some(mount) = crate::ext4::journal_less_ext4(dir) {
                tracing::warn!(
                    dir = %dir.display(),
                    mount = %mount.display(),
                    "the local store is on ext4 without a journal: once segments are deleted \
                     (retention, compaction), creating each new one scans the inodes freed in \
                     the last minutes, which cost 9-16 % of floe's CPU in a benchmark; a \
                     journaled ext4 or XFS does not (docs/configuration.md, \"The local store\")"
                );
            }
            if keep_written_pages {
                return Ok((Arc::new(store), Path::default()));
            }
            Ok((Arc::new(LocalStore::new(store)), Path::default()))
        }
        StoreUrl::Memory => Ok((Arc::new(InMemory::new()), Path::default())),
        StoreUrl::S3 { bucket, prefix } => {
            let store = crate::s3::build(bucket, s3)?;
            Ok((Arc::new(store), Path::from(prefix.as_str())))
        }
    }
}

/// Checks, before serving, that the store is reachable, that the bucket exists and that
/// it honours create-only puts (`If-None-Match: *`), which segment commits rely on.
pub async fn check_store(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    describe: &str,
) -> Result<(), StorageError> {
    let probe = crate::keys::probe(prefix, &ulid::Ulid::new().to_string());
    // Each put is create-only, so trying one again is safe; a lost answer (a connection
    // cut mid-response) is tried again rather than taken for the store's verdict.
    let put = async |body: &'static [u8]| {
        let mut attempt = 1;
        loop {
            let result = store
                .put_opts(
                    &probe,
                    PutPayload::from_static(body),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match result {
                Err(ref error) if attempt < PROBE_ATTEMPTS && probe_may_retry(error) => {
                    tracing::warn!(%error, attempt, "store check: a probe put failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    };
    match put(b"first").await {
        // The key is new and ours alone: "already exists" means the first attempt landed
        // and its answer was lost, so the client's retry found it.
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(error) => return Err(setup_error(describe, &error)),
    }
    let second = put(b"second").await;
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Ok(_) => Err(StorageError::Setup(format!(
            "{describe} overwrote an object on a create-only put: it does not honour \
             If-None-Match, which floe needs to never overwrite a segment"
        ))),
        Err(error) => Err(StorageError::Setup(format!(
            "{describe}: second create-only put failed with {error} instead of \
             'already exists'"
        ))),
    }
}

/// How many times the store check tries each probe put.
const PROBE_ATTEMPTS: u64 = 5;

/// Whether a probe put's failure may be a lost answer rather than the store's verdict.
fn probe_may_retry(error: &object_store::Error) -> bool {
    !matches!(
        error,
        object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotFound { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    )
}

fn setup_error(describe: &str, error: &object_store::Error) -> StorageError {
    let hint = match error {
        object_store::Error::NotFound { .. } => {
            " (does the bucket exist? `floe admin init-bucket` creates it)"
        }
        object_store::Error::NotImplemented { .. } => " (the store cannot do create-only puts)",
        _ if error.to_string().contains("NoSuchBucket") => {
            " (the bucket does not exist; `floe admin init-bucket` creates it)"
        }
        _ => "",
    };
    StorageError::Setup(format!("cannot write to {describe}: {error}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            StoreUrl::parse("file://./data").expect("file"),
            StoreUrl::File("./data".into())
        );
        assert_eq!(
            StoreUrl::parse("file:///var/floe").expect("file"),
            StoreUrl::File("/var/floe".into())
        );
        assert_eq!(
            StoreUrl::parse("memory://").expect("memory"),
            StoreUrl::Memory
        );
        assert_eq!(
            StoreUrl::parse("s3://bucket/a/b/").expect("s3"),
            StoreUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert!(StoreUrl::parse("s3://ab").is_err());
        assert!(StoreUrl::parse("ftp://x").is_err());
        assert!(StoreUrl::parse("file://").is_err());
    }

    #[test]
    fn hedged_uploads_apply_to_s3_only() {
        let second = Duration::from_secs(1);
        let on = |url: Option<&str>, after: Option<Duration>| StoreOptions {
            url: url.map(str::to_string),
            upload_hedge_after: after,
            ..StoreOptions::default()
        };
        // Unset: 1 s on S3, never elsewhere; 0s: never.
        assert_eq!(on(None, None).upload_hedge_after(true), Some(second));
        assert_eq!(on(None, None).upload_hedge_after(false), None);
        let zero = on(None, Some(Duration::ZERO));
        assert_eq!(zero.upload_hedge_after(true), None);
        assert!(zero.validate().is_ok(), "0s is off, valid anywhere");
        let local = on(Some("file:///var/floe"), Some(second));
        assert_eq!(local.upload_hedge_after(false), None);
        let refused = local
            .validate()
            .expect_err("a local store refuses a hedge delay");
        assert!(
            refused.to_string().contains("upload_hedge_after"),
            "{refused}"
        );
        assert!(
            on(None, Some(second)).validate().is_err(),
            "unset url: a local store"
        );
        let s3 = on(Some("s3://bucket/floe"), Some(Duration::from_millis(300)));
        assert!(s3.validate().is_ok());
        assert_eq!(
            s3.upload_hedge_after(true),
            Some(Duration::from_millis(300))
        );
    }
}
