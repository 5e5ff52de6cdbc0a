//! The local store: object_store's file system store, with each object's pages dropped
//! from the kernel's page cache once the object is durable.
//!
//! floe serves its tail from its own cache, so the page cache's copy of a segment it has
//! just written is a second one nobody reads soon. Left there, every write takes fresh
//! pages until the kernel reclaims old ones, and where fresh memory is expensive (a VM
//! whose host returns the guest's free memory, as on the benchmark machine: 1.5 GB written
//! to new pages ran at 138 MB/s, to just-freed ones at 5 GB/s) writes stall on it. Pages
//! dropped right after the fsync are clean, so dropping them costs no I/O, and the next
//! write reuses them. Reads of objects the read cache no longer holds go to the disk;
//! `store.keep_written_pages` keeps the pages instead (ADR 0002).

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// [`LocalFileSystem`] that drops an object's cached pages after each put.
#[derive(Debug)]
pub(crate) struct LocalStore {
    inner: LocalFileSystem,
}

impl LocalStore {
    pub(crate) fn new(inner: LocalFileSystem) -> Self {
        Self { inner }
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Asks the kernel to drop a written file's pages. Advice only: a failure changes nothing
/// the caller relies on, so it is logged at debug and ignored.
async fn drop_cached_pages(path: PathBuf) {
    // Off a runtime (object_store's own stores allow it), the advice runs inline.
    let dropped = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(move || advise_dont_need(&path))
            .await
            .unwrap_or(Ok(())),
        Err(_) => advise_dont_need(&path),
    };
    if let Err(error) = dropped {
        tracing::debug!(%error, "could not drop a written object's cached pages");
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn advise_dont_need(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn advise_dont_need(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        if let Ok(path) = self.inner.path_to_filesystem(location) {
            drop_cached_pages(path).await;
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use object_store::{ObjectStoreExt, PutPayload};

    use crate::{S3Options, StoreUrl, open_store, open_store_with};

    use super::*;

    /// The bytes of `path` in the page cache, as util-linux's `fincore` counts them.
    fn resident_bytes(path: &std::path::Path) -> u64 {
        let output = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(output.status.success(), "fincore: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("fincore prints a byte count")
    }

    #[tokio::test]
    async fn a_put_object_is_durable_and_leaves_no_pages_cached() {
        let dir = tempfile::tempdir().expect("temp dir");
        // tmpfs pages are the files themselves: there is nothing to drop.
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let statfs = rustix::fs::statfs(dir.path()).expect("statfs");
        if statfs.f_type as i64 == TMPFS_MAGIC {
            eprintln!("skipped: the temporary directory is on tmpfs");
            return;
        }
        // A file store's keys have no prefix: they are paths under its directory.
        let (store, _) = open_store(&StoreUrl::File(dir.path().to_owned())).expect("open");
        let bytes = Bytes::from(vec![7u8; 4 << 20]);
        let location = Path::from("segments/one");
        store
            .put(&location, PutPayload::from(bytes.clone()))
            .await
            .expect("put");
        let file = dir.path().join("segments").join("one");
        assert_eq!(resident_bytes(&file), 0, "the written pages were dropped");
        let read = store.get(&location).await.expect("get").bytes().await;
        assert_eq!(read.expect("read"), bytes);

        // The control, and `store.keep_written_pages`: the same write through a store that
        // keeps its pages stays cached, so the zero above is the advice's doing, not this
        // file system's.
        let (keeping, _) = open_store_with(
            &StoreUrl::File(dir.path().to_owned()),
            &S3Options::default(),
            true,
        )
        .expect("open");
        let other = Path::from("segments/two");
        keeping
            .put(&other, PutPayload::from(bytes))
            .await
            .expect("put");
        assert!(resident_bytes(&dir.path().join("segments").join("two")) > 0);
    }
}
