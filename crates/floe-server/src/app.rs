//! Assembling and running a server: store, sequencer, broker, HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use floe_broker::{Broker, BrokerOptions};
use floe_core::SystemClock;
use floe_sequencer::{
    ClusterOptions, FileLog, Identity, Sequencer, SequencerOptions, open_cluster,
};
use floe_storage::{
    ReadCache, S3Options, SegmentStore, SnapshotObjects, StoreUrl, check_store, open_store_with,
};
use tokio::net::TcpListener;

use crate::cluster::{HttpForwarder, StoredSnapshots};
use crate::config::ServeConfig;
use crate::routes::{AppState, router};

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    listener: TcpListener,
    broker: Broker,
    state: AppState,
    stopping: tokio::sync::watch::Sender<bool>,
    max_request_bytes: usize,
}

impl Server {
    /// Opens the store and the sequencer, binds the listener, and is ready to serve.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        // A request becomes one batch per partition, and a batch's length is a u32 in the
        // segment index: keep requests far below that.
        const MAX_REQUEST_BYTES_LIMIT: usize = 1 << 30;
        if config.max_request_bytes == 0 || config.max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
            anyhow::bail!("max_request_bytes must be between 1 and {MAX_REQUEST_BYTES_LIMIT}");
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let advertise = config.advertised(local_addr);

        let store_url = StoreUrl::parse(&config.store_url())?;
        let s3 = S3Options {
            endpoint: config.s3_endpoint.clone(),
            region: config.s3_region.clone(),
            path_style: config.s3_path_style,
            request_timeout: config.store_timeout,
            ..S3Options::default()
        };
        let (store, prefix) = open_store_with(&store_url, &s3)?;
        check_store(&store, &prefix, &config.store_url()).await?;
        let store_is_local = !matches!(store_url, StoreUrl::S3 { .. });
        let cache_options = config.cache_options(store_is_local);
        let cache = ReadCache::open(
            &cache_options,
            SegmentStore::new(store.clone(), prefix.clone()),
        )
        .await
        .context("opening the read cache")?;
        let sequencer_options = SequencerOptions {
            snapshot_every: config.snapshot_every,
            ..SequencerOptions::default()
        };
        let identity = Identity::new(config.broker_id.clone(), advertise);
        let sequencer = match config.etcd_endpoints() {
            Some(endpoints) => {
                if config.advertise.is_none() && local_addr.ip().is_unspecified() {
                    anyhow::bail!(
                        "listening on {local_addr} in a cluster needs --advertise: other brokers \
                         must be told an address they can reach"
                    );
                }
                if config.lease_ttl < std::time::Duration::from_secs(1)
                    || config.lease_ttl.subsec_nanos() != 0
                {
                    anyhow::bail!(
                        "lease_ttl must be a whole number of seconds, at least 1s (etcd leases \
                         have second granularity)"
                    );
                }
                if store_url == StoreUrl::Memory {
                    anyhow::bail!(
                        "a cluster needs a store all brokers share (s3:// or file://), not memory://"
                    );
                }
                let options = ClusterOptions {
                    endpoints,
                    cluster: config.cluster.clone(),
                    lease_ttl: config.lease_ttl,
                    compact_etcd: config.compact_etcd,
                    sequencer: sequencer_options,
                };
                let snapshots = SnapshotObjects::new(store.clone(), prefix.clone());
                open_cluster(
                    identity,
                    options,
                    Arc::new(StoredSnapshots(snapshots)),
                    Arc::new(HttpForwarder::new()),
                    Arc::new(SystemClock),
                )
                .await
                .context("joining the cluster through etcd")?
            }
            None => {
                let log_dir = config.data_dir.join("sequencer");
                let log = FileLog::open(&log_dir)
                    .with_context(|| format!("opening sequencer log in {}", log_dir.display()))?;
                Sequencer::open(Arc::new(log), sequencer_options, identity).await?
            }
        };
        let broker_options = BrokerOptions {
            broker_id: config.broker_id.clone(),
            segment_max_bytes: config.segment_max_bytes,
            linger: config.linger(store_is_local),
            max_buffered_bytes: config.max_buffered_bytes,
            max_inflight_uploads: config.max_inflight_uploads,
            upload_timeout: config.store_timeout,
            jobs: config.job_options(),
            crash_after_upload: std::env::var_os("FLOE_TEST_CRASH_AFTER_UPLOAD")
                .is_some_and(|value| value == "1"),
        };
        let broker = Broker::new(broker_options, sequencer, cache, Arc::new(SystemClock));
        let (stopping, stopping_receiver) = tokio::sync::watch::channel(false);
        let state = AppState {
            broker: broker.clone(),
            cluster_name: config.cluster.as_str().into(),
            stopping: stopping_receiver,
        };
        Ok(Self {
            local_addr,
            listener,
            broker,
            state,
            stopping,
            max_request_bytes: config.max_request_bytes,
        })
    }

    /// The broker behind the HTTP API.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves until `shutdown` completes, then stops accepting, flushes and commits what
    /// is buffered and closes the log.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = router(self.state, self.max_request_bytes);
        tracing::info!(addr = %self.local_addr, "floe is serving");
        let stopping = self.stopping;
        let shutdown = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!("http stopped; flushing buffered records");
        self.broker.shutdown().await;
        tracing::info!("floe stopped");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
