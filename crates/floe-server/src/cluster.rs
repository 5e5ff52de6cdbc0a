//! What `floe serve` plugs into the cluster sequencer: snapshots in the object store
//! (through floe-storage), and forwarding of commands to the leader over HTTP.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_sequencer::{
    Committed, ForwardedCommand, Forwarder, LeaderInfo, LogError, RemoteError, SnapshotStore,
};
use floe_storage::{SnapshotObjects, StorageError};
use object_store::path::Path;

/// The internal route a follower forwards commands to.
pub const FORWARD_PATH: &str = "/internal/v1/sequencer/commands";

/// The sequencer's [`SnapshotStore`] on floe-storage's [`SnapshotObjects`]: keys travel
/// through etcd as strings, failures as [`LogError::SnapshotStore`]. It lives here because
/// neither crate may depend on the other.
#[derive(Debug)]
pub struct StoredSnapshots(pub SnapshotObjects);

fn log_error(error: StorageError) -> LogError {
    LogError::SnapshotStore(Box::new(error))
}

#[async_trait]
impl SnapshotStore for StoredSnapshots {
    async fn put(&self, index: u64, state: Bytes) -> Result<String, LogError> {
        let key = self.0.put(index, state).await.map_err(log_error)?;
        Ok(key.to_string())
    }

    async fn get(&self, key: &str) -> Result<Bytes, LogError> {
        self.0.get(&Path::from(key)).await.map_err(log_error)
    }

    async fn delete(&self, key: &str) -> Result<(), LogError> {
        self.0.delete(&Path::from(key)).await.map_err(log_error)
    }

    async fn list(&self) -> Result<Vec<(u64, String)>, LogError> {
        let listed = self.0.list().await.map_err(log_error)?;
        Ok(listed
            .into_iter()
            .map(|(index, key)| (index, key.to_string()))
            .collect())
    }
}

/// The header that carries the cluster's credential on internal routes.
pub const CLUSTER_SECRET_HEADER: &str = "x-floe-cluster-secret";

/// Forwards commands to the leader's internal route, with the cluster's credential.
pub struct HttpForwarder {
    client: reqwest::Client,
    secret: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for HttpForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpForwarder")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl HttpForwarder {
    /// A forwarder that presents `secret` to the leader, trusting `peer_ca` (PEM) besides
    /// the system's roots when brokers speak TLS to each other.
    pub fn with_secret(
        secret: std::sync::Arc<str>,
        peer_ca: Option<&[u8]>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            secret: Some(secret),
            client: peer_client(peer_ca, Some(Duration::from_secs(15)))?,
        })
    }

    pub fn new() -> Self {
        Self {
            client: peer_client(None, Some(Duration::from_secs(15))).unwrap_or_default(),
            secret: None,
        }
    }
}

/// An HTTP client for calls between brokers: short connects, idle connections dropped
/// before the peer closes them, and `peer_ca` trusted when peers serve TLS.
pub fn peer_client(
    peer_ca: Option<&[u8]>,
    timeout: Option<Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // Brokers close connections idle for `server.header_read_timeout` (10 s by
        // default); reusing one the peer is closing would fail a call.
        .pool_idle_timeout(Duration::from_secs(5));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(pem) = peer_ca {
        for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
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
        let base = leader.internal.as_deref().unwrap_or(&leader.advertise);
        let url = format!("{}{FORWARD_PATH}", base.trim_end_matches('/'));
        let mut request = self.client.post(&url).json(&commands);
        if let Some(secret) = &self.secret {
            request = request.header(CLUSTER_SECRET_HEADER, secret.as_ref());
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
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
