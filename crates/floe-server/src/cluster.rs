//! What `floe serve` plugs into the cluster sequencer: snapshots in the object store, and
//! forwarding of commands to the leader over HTTP.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_sequencer::{
    Committed, ForwardedCommand, Forwarder, LeaderInfo, LogError, RemoteError, SnapshotStore,
};
use floe_storage::keys;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// The internal route a follower forwards commands to.
pub const FORWARD_PATH: &str = "/internal/v1/sequencer/commands";

/// Sequencer snapshots as objects under `<prefix>/sequencer/snapshots/`.
#[derive(Debug)]
pub struct ObjectSnapshots {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectSnapshots {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }
}

fn store_error(what: &str, error: object_store::Error) -> LogError {
    LogError::Etcd(format!("snapshot {what}: {error}"))
}

#[async_trait]
impl SnapshotStore for ObjectSnapshots {
    async fn put(&self, index: u64, state: Bytes) -> Result<String, LogError> {
        let key = keys::snapshot(&self.prefix, index, &ulid::Ulid::new().to_string());
        self.store
            .put_opts(
                &key,
                PutPayload::from(state),
                PutOptions::from(PutMode::Create),
            )
            .await
            .map_err(|e| store_error("put", e))?;
        Ok(key.to_string())
    }

    async fn get(&self, key: &str) -> Result<Bytes, LogError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(|e| store_error("get", e))?;
        result.bytes().await.map_err(|e| store_error("read", e))
    }

    async fn delete(&self, key: &str) -> Result<(), LogError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(store_error("delete", error)),
        }
    }
}

/// Forwards commands to the leader's internal route.
#[derive(Debug)]
pub struct HttpForwarder {
    client: reqwest::Client,
}

impl HttpForwarder {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self { client }
    }
}

impl Default for HttpForwarder {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Forwarder for HttpForwarder {
    async fn forward(
        &self,
        leader: &LeaderInfo,
        commands: Vec<ForwardedCommand>,
    ) -> Result<Vec<Result<Committed, RemoteError>>, String> {
        let url = format!("{}{FORWARD_PATH}", leader.advertise.trim_end_matches('/'));
        let response = self
            .client
            .post(&url)
            .json(&commands)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url}: {status}: {body}"));
        }
        response
            .json()
            .await
            .map_err(|e| format!("{url}: bad answer: {e}"))
    }
}
