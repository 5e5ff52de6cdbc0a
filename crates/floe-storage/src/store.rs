//! Opening an object store from a URL.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

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

/// Opens the store a URL names, returning it with the key prefix floe writes under.
pub fn open_store(url: &StoreUrl) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    match url {
        StoreUrl::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| {
                StorageError::Setup(format!("create {}: {source}", dir.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|source| StorageError::Setup(format!("open {}: {source}", dir.display())))?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            Ok((Arc::new(store), Path::default()))
        }
        StoreUrl::Memory => Ok((Arc::new(InMemory::new()), Path::default())),
        StoreUrl::S3 { .. } => Err(StorageError::Setup(
            "s3:// stores arrive with the cluster release; use file://DIR or memory:// for now"
                .into(),
        )),
    }
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
}
