//! Following the log into a broker's replica: catch up, then watch, then catch up again
//! whenever the watch breaks, is cancelled or meets a compaction.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};

use super::etcd_log::catch_up;
use super::{Keys, SnapshotStore, etcd};
use crate::log::LogEntry;
use crate::replica::Replica;

/// Runs until cancelled, keeping `replica` at the log's end.
pub(crate) async fn follow(
    client: Client,
    keys: Keys,
    snapshots: Arc<dyn SnapshotStore>,
    replica: Arc<Replica>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let revision = match catch_up(&client, &keys, &snapshots, &replica).await {
            Ok(revision) => revision,
            Err(error) => {
                tracing::warn!(%error, "replica catch-up failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        // A lagging watcher can receive many groups in one response: allow more than the
        // client's default 4 MiB.
        let mut watcher = client
            .watch_client()
            .max_decoding_message_size(256 * 1024 * 1024);
        let mut stream =
            match etcd("watch log", watcher.watch(keys.log_prefix(), Some(options))).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "log watch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
        'watch: loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "log watch broke; catching up");
                    break;
                }
            };
            if response.canceled() || response.compact_revision() > 0 {
                tracing::info!(
                    compacted = response.compact_revision(),
                    "log watch cancelled; catching up from the snapshot if needed"
                );
                break;
            }
            for event in response.events() {
                if event.event_type() != EventType::Put {
                    continue;
                }
                let Some(kv) = event.kv() else { continue };
                let Ok(group) = serde_json::from_slice::<Vec<LogEntry>>(kv.value()) else {
                    tracing::error!(key = ?kv.key_str(), "undecodable log group; resyncing");
                    break 'watch;
                };
                let first = group.first().map_or(0, |entry| entry.index);
                if first > replica.applied_index() + 1 {
                    // A gap: something was missed. Catch up, from the snapshot if need be.
                    break 'watch;
                }
                replica.apply(&group);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
