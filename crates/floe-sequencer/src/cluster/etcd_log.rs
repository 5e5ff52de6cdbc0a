//! The etcd log backend: a leader's term writes groups of commands, each group one key, in
//! a transaction that checks the term is still current and every fence is still live.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Keys, SnapshotStore, etcd};
use crate::error::LogError;
use crate::log::{Fence, LogBackend, LogEntry, Recovery, Snapshot};
use crate::replica::{Replica, decode_state};

/// Where the newest snapshot is; the value of the `snapshot` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotPointer {
    pub index: u64,
    pub object: String,
}

/// The log of one leadership term. Appends succeed only while the election key still has
/// the revision this term was won at, so a deposed leader can never write.
pub struct EtcdLog {
    client: Client,
    keys: Keys,
    term: i64,
    snapshots: Arc<dyn SnapshotStore>,
    compact: bool,
    /// Revision of the previous snapshot's pointer: history before it can be compacted.
    last_snapshot_revision: Mutex<Option<i64>>,
    /// For a standalone log (tests): the lease to revoke on close.
    lease: Option<i64>,
}

impl std::fmt::Debug for EtcdLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLog")
            .field("root", &self.keys.root())
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

impl EtcdLog {
    pub(crate) fn for_term(
        client: Client,
        keys: Keys,
        term: i64,
        snapshots: Arc<dyn SnapshotStore>,
        compact: bool,
    ) -> Self {
        Self {
            client,
            keys,
            term,
            snapshots,
            compact,
            last_snapshot_revision: Mutex::new(None),
            lease: None,
        }
    }

    /// Connects and wins the leadership of `cluster` with a lease of its own, waiting for
    /// any current leader's lease to lapse. For running the log without brokers (tests,
    /// the conformance suite); brokers use [`crate::open_cluster`].
    pub async fn lead(
        endpoints: &[String],
        cluster: &str,
        lease_ttl: Duration,
        snapshots: Arc<dyn SnapshotStore>,
    ) -> Result<Self, LogError> {
        let client = etcd("connect", Client::connect(endpoints, None)).await?;
        let keys = Keys::new(cluster);
        let lease = etcd(
            "lease grant",
            client
                .clone()
                .lease_grant(lease_ttl.as_secs().max(1) as i64, None),
        )
        .await?
        .id();
        let (mut keeper, mut responses) =
            etcd("keep alive", client.clone().lease_keep_alive(lease)).await?;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease_ttl / 3).await;
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match responses.message().await {
                    Ok(Some(response)) if response.ttl() > 0 => {}
                    _ => break,
                }
            }
        });
        loop {
            let info = crate::membership::LeaderInfo {
                broker: "standalone".into(),
                advertise: String::new(),
                internal: None,
                term: 0,
            };
            match super::session::campaign(&client, &keys, lease, &info).await? {
                super::session::Campaign::Won { term } => {
                    let mut log = Self::for_term(client, keys, term, snapshots, false);
                    log.lease = Some(lease);
                    return Ok(log);
                }
                super::session::Campaign::Lost { .. } => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn leader_compare(&self) -> Compare {
        Compare::create_revision(self.keys.leader(), CompareOp::Equal, self.term)
    }
}

#[async_trait]
impl LogBackend for EtcdLog {
    async fn recover(&self) -> Result<Recovery, LogError> {
        let (snapshot, _) = read_pointer(&self.client, &self.keys).await?;
        let snapshot = match snapshot {
            Some(pointer) => Some(Snapshot {
                index: pointer.index,
                state: self.snapshots.get(&pointer.object).await?,
            }),
            None => None,
        };
        let from = snapshot.as_ref().map_or(0, |s| s.index) + 1;
        let (groups, _) = read_log(&self.client, &self.keys, from, None).await?;
        Ok(Recovery {
            snapshot,
            entries: groups.into_iter().flatten().collect(),
        })
    }

    async fn append(&self, entries: &[LogEntry], fences: &[Fence]) -> Result<(), LogError> {
        let Some(first) = entries.first().map(|entry| entry.index) else {
            return Ok(());
        };
        let key = self.keys.log(first);
        let value = serde_json::to_vec(entries)
            .map_err(|e| LogError::Corrupt(format!("encode log group: {e}")))?;
        let mut compares = vec![
            self.leader_compare(),
            Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        ];
        let mut checks = vec![
            TxnOp::get(self.keys.leader(), None),
            TxnOp::get(key.clone(), None),
        ];
        for fence in fences {
            let broker = self.keys.broker(&fence.broker);
            compares.push(Compare::create_revision(
                broker.clone(),
                CompareOp::Equal,
                fence.session,
            ));
            checks.push(TxnOp::get(broker, None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::put(key.clone(), value.clone(), None)])
            .or_else(checks);
        let response = match etcd("append", self.client.clone().txn(txn)).await {
            Ok(response) => response,
            Err(error) => {
                // The write may or may not have landed. Look: if it did, it is ours.
                let landed = etcd("append check", self.client.clone().get(key, None))
                    .await
                    .ok()
                    .and_then(|r| r.kvs().first().map(|kv| kv.value() == value.as_slice()));
                return match landed {
                    Some(true) => Ok(()),
                    _ => Err(LogError::Poisoned(format!(
                        "append of log index {first} has an unknown outcome: {error}"
                    ))),
                };
            }
        };
        if response.succeeded() {
            return Ok(());
        }
        let answers = response.op_responses();
        let revision_of = |answer: Option<&TxnOpResponse>| match answer {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.create_revision()),
            _ => 0,
        };
        let leader = revision_of(answers.first());
        if leader != self.term {
            return Err(LogError::Deposed(format!(
                "election key revision is {leader}, this term is {}",
                self.term
            )));
        }
        if revision_of(answers.get(1)) != 0 {
            return Err(LogError::Poisoned(format!(
                "log index {first} was already written by someone else"
            )));
        }
        let stale: Vec<Fence> = fences
            .iter()
            .zip(answers.iter().skip(2))
            .filter(|(fence, answer)| revision_of(Some(answer)) != fence.session)
            .map(|(fence, _)| fence.clone())
            .collect();
        if stale.is_empty() {
            return Err(LogError::Poisoned(
                "append refused with every condition holding".into(),
            ));
        }
        Err(LogError::Fenced(stale))
    }

    /// A linearizable read of the election key: still this term's, or deposed.
    async fn confirm_owner(&self) -> Result<(), LogError> {
        let leader = etcd(
            "read leader",
            self.client.clone().get(self.keys.leader(), None),
        )
        .await?;
        let revision = leader.kvs().first().map_or(0, |kv| kv.create_revision());
        if revision != self.term {
            return Err(LogError::Deposed(format!(
                "election key revision is {revision}, this term is {}",
                self.term
            )));
        }
        Ok(())
    }

    /// The pointer moves only forward, from the pointer this install read: a snapshot
    /// task a previous loop of the same term left running (snapshots are written beside
    /// the commit loop) can neither move it back nor swap it under a newer install.
    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
        let response = etcd(
            "read snapshot pointer",
            self.client.clone().get(self.keys.snapshot(), None),
        )
        .await?;
        let (previous, pointer_unchanged) = match response.kvs().first() {
            Some(kv) => (
                Some(parse_pointer(kv.value())?),
                Compare::mod_revision(self.keys.snapshot(), CompareOp::Equal, kv.mod_revision()),
            ),
            None => (
                None,
                Compare::version(self.keys.snapshot(), CompareOp::Equal, 0),
            ),
        };
        if let Some(previous) = &previous
            && previous.index >= snapshot.index
        {
            return Err(LogError::SnapshotSuperseded {
                installed: previous.index,
                offered: snapshot.index,
            });
        }
        let object = self.snapshots.put(snapshot.index, snapshot.state).await?;
        let pointer = SnapshotPointer {
            index: snapshot.index,
            object: object.clone(),
        };
        let value = serde_json::to_vec(&pointer)
            .map_err(|e| LogError::Corrupt(format!("encode snapshot pointer: {e}")))?;
        // Groups are applied whole, so `index` ends a group and every key below
        // `log(index + 1)` is covered by the snapshot.
        let trim = DeleteOptions::new().with_range(self.keys.log(snapshot.index + 1));
        let txn = Txn::new()
            .when([self.leader_compare(), pointer_unchanged])
            .and_then([
                TxnOp::put(self.keys.snapshot(), value, None),
                TxnOp::delete(self.keys.log(0), Some(trim)),
            ]);
        let response = match etcd("install snapshot", self.client.clone().txn(txn)).await {
            Ok(response) => response,
            Err(error) => {
                // The pointer may have moved even though the answer was lost: delete the
                // object only when the pointer is known not to name it.
                if let Ok((Some(current), _)) = read_pointer(&self.client, &self.keys).await
                    && current.object != object
                {
                    let _ = self.snapshots.delete(&object).await;
                }
                return Err(error);
            }
        };
        if !response.succeeded() {
            let _ = self.snapshots.delete(&object).await;
            // Either compare failed: the term, or the pointer (another install of this
            // term landed while this one was written).
            let leader = etcd(
                "read leader",
                self.client.clone().get(self.keys.leader(), None),
            )
            .await?;
            let still_leading = leader
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == self.term);
            if !still_leading {
                return Err(LogError::Deposed("snapshot refused: term is over".into()));
            }
            let (current, _) = read_pointer(&self.client, &self.keys).await?;
            return Err(LogError::SnapshotSuperseded {
                installed: current.map_or(0, |pointer| pointer.index),
                offered: snapshot.index,
            });
        }
        if let Some(previous) = previous {
            // Followers still loading it retry with the new pointer.
            if let Err(error) = self.snapshots.delete(&previous.object).await {
                tracing::warn!(%error, object = previous.object, "old snapshot not deleted");
            }
        }
        self.sweep_snapshots(snapshot.index, &object).await;
        let revision = response.header().map_or(0, |h| h.revision());
        let compact_to = self.last_snapshot_revision.lock().replace(revision);
        if self.compact
            && let Some(compact_to) = compact_to
            && let Err(error) = etcd("compact", self.client.clone().compact(compact_to, None)).await
        {
            tracing::warn!(%error, compact_to, "etcd compaction failed");
        }
        Ok(())
    }

    async fn close(&self) {
        if let Some(lease) = self.lease {
            let _ = etcd("lease revoke", self.client.clone().lease_revoke(lease)).await;
        }
    }
}

impl EtcdLog {
    /// Deletes every snapshot object older than the one just installed: uploads whose
    /// install failed, or whose answer was lost, would otherwise stay in the store for
    /// ever. The pointer names `installed` now and only ever moves forward, so nothing
    /// older is read again (a follower still loading one retries with the new pointer).
    async fn sweep_snapshots(&self, index: u64, installed: &str) {
        let listed = match self.snapshots.list().await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "listing snapshots to sweep failed");
                return;
            }
        };
        for (taken_at, key) in listed {
            if taken_at >= index || key == installed {
                continue;
            }
            match self.snapshots.delete(&key).await {
                Ok(()) => tracing::info!(object = key, taken_at, "deleted an orphan snapshot"),
                Err(error) => tracing::warn!(%error, object = key, "orphan snapshot not deleted"),
            }
        }
    }
}

/// Reads the snapshot pointer, with the revision it was read at.
pub(crate) async fn read_pointer(
    client: &Client,
    keys: &Keys,
) -> Result<(Option<SnapshotPointer>, i64), LogError> {
    let response = etcd(
        "read snapshot pointer",
        client.clone().get(keys.snapshot(), None),
    )
    .await?;
    let revision = response.header().map_or(0, |h| h.revision());
    let pointer = match response.kvs().first() {
        Some(kv) => Some(parse_pointer(kv.value())?),
        None => None,
    };
    Ok((pointer, revision))
}

fn parse_pointer(value: &[u8]) -> Result<SnapshotPointer, LogError> {
    serde_json::from_slice(value).map_err(|e| LogError::Corrupt(format!("snapshot pointer: {e}")))
}

/// Log groups whose keys are at or after `from`, in order, read page by page at one
/// revision (`at`, or the current one), which is returned.
pub(crate) async fn read_log(
    client: &Client,
    keys: &Keys,
    from: u64,
    at: Option<i64>,
) -> Result<(Vec<Vec<LogEntry>>, i64), LogError> {
    // Most groups are small, so pages start wide; a group may reach ~0.5 MiB, so a page
    // over the client's 4 MiB message limit is read again at half the width, down to one.
    const WIDEST_PAGE: i64 = 256;
    let mut page = WIDEST_PAGE;
    let mut start = keys.log(from);
    let mut revision = at.unwrap_or(0);
    let mut groups = Vec::new();
    loop {
        let mut options = GetOptions::new()
            .with_range(keys.log_end())
            .with_limit(page);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let response = match tokio::time::timeout(
            super::ETCD_TIMEOUT,
            client.clone().get(start.clone(), Some(options)),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(etcd_client::Error::GRpcStatus(status)))
                if status.code() == tonic::Code::OutOfRange && page > 1 =>
            {
                page /= 2;
                continue;
            }
            Ok(Err(error)) => return Err(LogError::Etcd(format!("read log: {error}"))),
            Err(_) => {
                return Err(LogError::Etcd(format!(
                    "read log: no answer within {:?}",
                    super::ETCD_TIMEOUT
                )));
            }
        };
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        for kv in response.kvs() {
            let group: Vec<LogEntry> = serde_json::from_slice(kv.value())
                .map_err(|e| LogError::Corrupt(format!("log key {:?}: {e}", kv.key_str())))?;
            groups.push(group);
        }
        match response.kvs().last() {
            Some(last) if response.more() => {
                let mut next = last.key().to_vec();
                next.push(0);
                start = String::from_utf8(next)
                    .map_err(|e| LogError::Corrupt(format!("log key: {e}")))?;
            }
            _ => return Ok((groups, revision)),
        }
    }
}

/// Whether the log, at `revision`, still holds the group that starts at `index`: only the
/// first key at or after it is read.
async fn log_holds(
    client: &Client,
    keys: &Keys,
    index: u64,
    revision: i64,
) -> Result<bool, LogError> {
    let options = GetOptions::new()
        .with_range(keys.log_end())
        .with_limit(1)
        .with_keys_only()
        .with_revision(revision);
    let response = etcd(
        "read log start",
        client.clone().get(keys.log(index), Some(options)),
    )
    .await?;
    Ok(response
        .kvs()
        .first()
        .is_some_and(|kv| kv.key() == keys.log(index).as_bytes()))
}

/// Brings `replica` up to the log's current end, loading the snapshot first when the log no
/// longer holds what follows the replica. Returns the revision it caught up to. The log
/// since the replica's state is read once: a starting broker's time grows with the entries
/// since the last snapshot (at most `MAX_LOG_INTERVALS` intervals while snapshots land),
/// never with the whole history.
pub(crate) async fn catch_up(
    client: &Client,
    keys: &Keys,
    snapshots: &Arc<dyn SnapshotStore>,
    replica: &Replica,
) -> Result<i64, LogError> {
    // The pointer and the log are read at one revision, so the snapshot and the log that
    // follows it agree.
    let (pointer, revision) = read_pointer(client, keys).await?;
    if let Some(pointer) = pointer
        && pointer.index > replica.applied_index()
        && !log_holds(client, keys, replica.applied_index() + 1, revision).await?
    {
        tracing::info!(
            index = pointer.index,
            object = pointer.object,
            "replica fetching the sequencer snapshot"
        );
        let bytes = snapshots.get(&pointer.object).await?;
        replica.install(decode_state(pointer.index, &bytes)?);
        tracing::info!(
            index = pointer.index,
            "replica loaded the sequencer snapshot"
        );
    }
    let from = replica.applied_index() + 1;
    let (groups, revision) = read_log(client, keys, from, Some(revision)).await?;
    tracing::info!(
        from,
        groups = groups.len(),
        "replica applying the log since its state"
    );
    for group in groups {
        let first = group.first().map_or(0, |entry| entry.index);
        if first > replica.applied_index() + 1 {
            return Err(LogError::Corrupt(format!(
                "log jumps from {} to {first}",
                replica.applied_index()
            )));
        }
        replica.apply(&group);
    }
    Ok(revision)
}
