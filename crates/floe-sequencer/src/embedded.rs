//! The embedded log backend: an append-only file, fsync'd before an append returns,
//! with snapshots beside it so that replay stays short.
//!
//! ```text
//! DIR/LOCK                         held exclusively while open (one writer per directory)
//! DIR/snapshot                     newest snapshot: u64 index · u32 crc32c · state bytes
//! DIR/snapshot.<index>.tmp         a snapshot being written (removed on open)
//! DIR/log/<first index, 20 digits>.log
//!                                  frames: u32 length · u32 crc32c · JSON LogEntry
//! ```
//! A frame that is short or fails its CRC at the end of the newest file is a write torn by
//! a crash; it was never acknowledged, so recovery cuts the file there.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::LogError;
use crate::log::{Fence, LogBackend, LogEntry, Recovery, Snapshot};

const FRAME_HEADER_LEN: usize = 8;
/// A frame larger than this is corrupt, not a command.
const MAX_FRAME_LEN: usize = 256 * 1024 * 1024;

/// The embedded, single-process command log.
#[derive(Debug, Clone)]
pub struct FileLog {
    inner: Arc<Mutex<FileLogInner>>,
}

#[derive(Debug)]
struct FileLogInner {
    dir: PathBuf,
    _lock: File,
    /// The file appends go to, with its length after the last durable append.
    active: Option<(File, u64)>,
    /// The index of the snapshot in `DIR/snapshot` (0 for none).
    snapshot_index: u64,
}

impl FileLog {
    /// Opens (creating if needed) the log in `dir`, taking its lock.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LogError> {
        let dir = dir.into();
        fs::create_dir_all(dir.join("log")).map_err(|e| LogError::io(dir.display(), e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io(lock_path.display(), e))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Locked(dir.display().to_string()));
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(FileLogInner {
                dir,
                _lock: lock,
                active: None,
                snapshot_index: 0,
            })),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut FileLogInner) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&mut inner.lock()))
            .await
            .map_err(|error| LogError::Poisoned(format!("log task failed: {error}")))?
    }
}

#[async_trait]
impl LogBackend for FileLog {
    async fn recover(&self) -> Result<Recovery, LogError> {
        self.blocking(FileLogInner::recover).await
    }

    async fn append(&self, entries: &[LogEntry], _fences: &[Fence]) -> Result<(), LogError> {
        let mut frames = Vec::new();
        for entry in entries {
            let payload = serde_json::to_vec(entry)
                .map_err(|e| LogError::Corrupt(format!("encode entry: {e}")))?;
            frames.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frames.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            frames.extend_from_slice(&payload);
        }
        let first_index = entries.first().map_or(0, |entry| entry.index);
        self.blocking(move |inner| inner.append(first_index, &frames))
            .await
    }

    /// Writes the snapshot to a temporary file without the log's lock, so appends go on
    /// meanwhile; then, under the lock, renames it in (only over an older snapshot) and
    /// rolls the log: see `FileLogInner::roll`. The blocking task holds the log (and
    /// its directory lock) until it is done, even if the caller stops waiting.
    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let dir = inner.lock().dir.clone();
            let temporary = write_temporary_snapshot(&dir, &snapshot)?;
            let mut inner = inner.lock();
            if snapshot.index <= inner.snapshot_index {
                let _ = fs::remove_file(&temporary);
                return Err(LogError::SnapshotSuperseded {
                    installed: inner.snapshot_index,
                    offered: snapshot.index,
                });
            }
            let path = dir.join("snapshot");
            fs::rename(&temporary, &path).map_err(|e| LogError::io(path.display(), e))?;
            sync_dir(&dir)?;
            inner.snapshot_index = snapshot.index;
            inner.roll(snapshot.index)
        })
        .await
        .map_err(|error| LogError::Poisoned(format!("snapshot task failed: {error}")))?
    }
}

impl FileLogInner {
    fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Snapshots a crash left half written (never renamed in).
    fn remove_temporary_snapshots(&self) -> Result<(), LogError> {
        for dir_entry in fs::read_dir(&self.dir).map_err(|e| LogError::io(self.dir.display(), e))? {
            let path = dir_entry
                .map_err(|e| LogError::io(self.dir.display(), e))?
                .path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if name.starts_with("snapshot.") && name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(|e| LogError::io(path.display(), e))?;
            }
        }
        Ok(())
    }

    fn log_files(&self) -> Result<Vec<(u64, PathBuf)>, LogError> {
        let log_dir = self.log_dir();
        let mut files = Vec::new();
        for dir_entry in fs::read_dir(&log_dir).map_err(|e| LogError::io(log_dir.display(), e))? {
            let path = dir_entry
                .map_err(|e| LogError::io(log_dir.display(), e))?
                .path();
            let first_index = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".log"))
                .and_then(|stem| stem.parse::<u64>().ok());
            if let Some(first_index) = first_index {
                files.push((first_index, path));
            }
        }
        files.sort();
        Ok(files)
    }

    fn recover(&mut self) -> Result<Recovery, LogError> {
        let snapshot = read_snapshot(&self.dir.join("snapshot"))?;
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.index);
        self.snapshot_index = snapshot_index;
        self.remove_temporary_snapshots()?;
        let files = self.log_files()?;
        let mut entries = Vec::new();
        let mut last_path = None;
        for (position, (_, path)) in files.iter().enumerate() {
            let is_last = position + 1 == files.len();
            let (file_entries, valid_len) = read_frames(path)?;
            let file_len = fs::metadata(path)
                .map_err(|e| LogError::io(path.display(), e))?
                .len();
            if valid_len != file_len {
                if !is_last {
                    return Err(LogError::Corrupt(format!(
                        "{} is damaged before the newest log file",
                        path.display()
                    )));
                }
                tracing::warn!(path = %path.display(), valid_len, file_len, "cutting torn tail of sequencer log");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| LogError::io(path.display(), e))?;
                file.set_len(valid_len)
                    .map_err(|e| LogError::io(path.display(), e))?;
                file.sync_all()
                    .map_err(|e| LogError::io(path.display(), e))?;
            }
            entries.extend(
                file_entries
                    .into_iter()
                    .filter(|entry| entry.index > snapshot_index),
            );
            last_path = Some((path.clone(), valid_len));
        }
        check_dense(snapshot_index, &entries)?;
        let last_index = entries.last().map_or(snapshot_index, |entry| entry.index);
        match last_path {
            Some((path, len))
                if last_index > snapshot_index || files.len() == 1 && snapshot_index == 0 =>
            {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| LogError::io(path.display(), e))?;
                self.active = Some((file, len));
            }
            _ => {
                self.start_log_file(snapshot_index + 1)?;
                self.drop_covered(snapshot_index)?;
            }
        }
        Ok(Recovery { snapshot, entries })
    }

    fn start_log_file(&mut self, first_index: u64) -> Result<(), LogError> {
        let path = self.log_dir().join(format!("{first_index:020}.log"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(path.display(), e))?;
        sync_dir(&self.log_dir())?;
        self.active = Some((file, 0));
        Ok(())
    }

    /// After a snapshot at `index` is durable: the next append starts a new file, and every
    /// file whose entries the snapshot covers is deleted. The file appended to until now
    /// may hold entries past `index`, committed while the snapshot was written: it stays
    /// until a later snapshot covers it.
    fn roll(&mut self, index: u64) -> Result<(), LogError> {
        self.active = None;
        self.drop_covered(index)
    }

    /// Deletes each log file whose last entry (the one before the next file's first) is at
    /// or below `index`.
    fn drop_covered(&self, index: u64) -> Result<(), LogError> {
        let files = self.log_files()?;
        for pair in files.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first <= index + 1 {
                fs::remove_file(path).map_err(|e| LogError::io(path.display(), e))?;
            }
        }
        Ok(())
    }

    fn append(&mut self, first_index: u64, frames: &[u8]) -> Result<(), LogError> {
        if self.active.is_none() {
            self.start_log_file(first_index)?;
        }
        let (file, len) = self
            .active
            .as_mut()
            .expect("an active log file was just ensured");
        let written = file.write_all(frames).and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Cut back to the last durable length so a retried append does not follow a
            // torn frame; if even that fails the log cannot be trusted any more.
            // The cursor must move back too, or the next write would land past a hole of
            // zeros that recovery could not tell from the end of the log.
            let restored = file
                .set_len(*len)
                .and_then(|()| file.seek(SeekFrom::Start(*len)).map(|_| ()))
                .and_then(|()| file.sync_data());
            if let Err(restore_error) = restored {
                return Err(LogError::Poisoned(format!(
                    "append failed ({error}) and rollback failed ({restore_error})"
                )));
            }
            return Err(LogError::io("sequencer log", error));
        }
        *len += frames.len() as u64;
        Ok(())
    }
}

/// Writes `snapshot` durably to a temporary file of its own beside the log, to be renamed
/// over the current one.
fn write_temporary_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, LogError> {
    let temporary = dir.join(format!("snapshot.{}.tmp", snapshot.index));
    let mut contents = Vec::with_capacity(snapshot.state.len() + 12);
    contents.extend_from_slice(&snapshot.index.to_be_bytes());
    contents.extend_from_slice(&crc32c::crc32c(&snapshot.state).to_be_bytes());
    contents.extend_from_slice(&snapshot.state);
    let mut file = File::create(&temporary).map_err(|e| LogError::io(temporary.display(), e))?;
    file.write_all(&contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| LogError::io(temporary.display(), e))?;
    Ok(temporary)
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, LogError> {
    let contents = match fs::read(path) {
        Ok(contents) => contents,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LogError::io(path.display(), error)),
    };
    if contents.len() < 12 {
        return Err(LogError::Corrupt(format!(
            "snapshot {} is truncated",
            path.display()
        )));
    }
    let index = u64::from_be_bytes(contents[..8].try_into().expect("8 bytes"));
    let crc = u32::from_be_bytes(contents[8..12].try_into().expect("4 bytes"));
    let state = Bytes::copy_from_slice(&contents[12..]);
    if crc32c::crc32c(&state) != crc {
        return Err(LogError::Corrupt(format!(
            "snapshot {} fails its crc",
            path.display()
        )));
    }
    Ok(Some(Snapshot { index, state }))
}

/// Reads every whole, CRC-valid frame; returns them and the length they span.
///
/// What follows the last good frame may only be a write torn by a crash: a frame cut short
/// by the end of the file, a last frame whose bytes never fully reached the disk, or zeros
/// a filesystem left behind. A bad frame with more data after it, or a CRC-valid frame that
/// does not parse, is corruption and an error: cutting there would drop durable entries.
fn read_frames(path: &Path) -> Result<(Vec<LogEntry>, u64), LogError> {
    let mut contents = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut contents))
        .map_err(|e| LogError::io(path.display(), e))?;
    let corrupt = |position: usize, what: &str| {
        LogError::Corrupt(format!("{} at byte {position}: {what}", path.display()))
    };
    let mut entries = Vec::new();
    let mut position = 0usize;
    while position < contents.len() {
        let rest = &contents[position..];
        if rest.iter().all(|byte| *byte == 0) || rest.len() < FRAME_HEADER_LEN {
            break;
        }
        let length = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
        if length > MAX_FRAME_LEN {
            return Err(corrupt(position, "frame length beyond any command"));
        }
        let end = FRAME_HEADER_LEN + length;
        if rest.len() < end {
            break;
        }
        let payload = &rest[FRAME_HEADER_LEN..end];
        if crc32c::crc32c(payload) != crc {
            if rest.len() == end {
                break;
            }
            return Err(corrupt(position, "crc mismatch with entries after it"));
        }
        let entry = serde_json::from_slice::<LogEntry>(payload)
            .map_err(|error| corrupt(position, &format!("entry does not parse: {error}")))?;
        entries.push(entry);
        position += end;
    }
    Ok((entries, position as u64))
}

fn check_dense(snapshot_index: u64, entries: &[LogEntry]) -> Result<(), LogError> {
    for (expected, entry) in (snapshot_index + 1..).zip(entries) {
        if entry.index != expected {
            return Err(LogError::Corrupt(format!(
                "log jumps from index {} to {}",
                expected - 1,
                entry.index
            )));
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| LogError::io(dir.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn entry(index: u64) -> LogEntry {
        LogEntry {
            index,
            command: Command::DeleteTopic {
                name: format!("t{index}"),
                at_ms: 0,
            },
        }
    }

    /// Writes entries to a fresh log in `dir`, closes it, and returns the log file's path.
    async fn write_entries(dir: &Path, entries: &[LogEntry]) -> PathBuf {
        let log = FileLog::open(dir).expect("open");
        log.recover().await.expect("recover");
        log.append(entries, &[]).await.expect("append");
        drop(log);
        fs::read_dir(dir.join("log"))
            .expect("dir")
            .next()
            .expect("file")
            .expect("entry")
            .path()
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_file = write_entries(dir.path(), &[entry(1), entry(2)]).await;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&log_file)
            .expect("open log");
        file.write_all(&[0, 0, 0, 50, 1, 2, 3])
            .expect("write torn frame");
        drop(file);

        let log = FileLog::open(dir.path()).expect("reopen");
        let recovery = log.recover().await.expect("recover");
        assert_eq!(recovery.entries, vec![entry(1), entry(2)]);
        log.append(&[entry(3)], &[])
            .await
            .expect("append after cut");
        drop(log);
        let log = FileLog::open(dir.path()).expect("reopen again");
        assert_eq!(log.recover().await.expect("recover").entries.len(), 3);
    }

    fn factory(dir: &Path) -> impl Fn() -> std::future::Ready<Arc<dyn LogBackend>> + use<> {
        let dir = dir.to_path_buf();
        move || {
            std::future::ready(
                Arc::new(FileLog::open(&dir).expect("open file log")) as Arc<dyn LogBackend>
            )
        }
    }

    #[tokio::test]
    async fn conformance_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::conformance::survives_reopen(factory(dir.path())).await;
    }

    #[tokio::test]
    async fn conformance_concurrent_submitters() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::conformance::concurrent_submitters_are_serialized(factory(dir.path())).await;
    }

    #[tokio::test]
    async fn conformance_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::conformance::snapshots_restore_state(factory(dir.path())).await;
    }

    #[tokio::test]
    async fn conformance_snapshot_beside_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::conformance::snapshot_keeps_entries_appended_meanwhile(factory(dir.path())).await;
        // Only files that hold entries past the last snapshot (12) are kept.
        let files = fs::read_dir(dir.path().join("log"))
            .expect("log dir")
            .count();
        assert_eq!(files, 2, "the files holding 11..=14 and 15");
    }

    #[tokio::test]
    async fn damage_before_the_tail_is_corruption_not_a_torn_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_file = write_entries(dir.path(), &[entry(1), entry(2), entry(3)]).await;
        let mut contents = fs::read(&log_file).expect("read");
        contents[FRAME_HEADER_LEN + 3] ^= 0x01;
        fs::write(&log_file, &contents).expect("write");
        let log = FileLog::open(dir.path()).expect("reopen");
        assert!(matches!(log.recover().await, Err(LogError::Corrupt(_))));
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = FileLog::open(dir.path()).expect("open");
        assert!(matches!(
            FileLog::open(dir.path()),
            Err(LogError::Locked(_))
        ));
    }
}
