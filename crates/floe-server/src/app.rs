//! Assembling and running a server: store, sequencer, broker, HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use floe_broker::{Broker, BrokerOptions};
use floe_core::SystemClock;
use floe_sequencer::{FileLog, Sequencer, SequencerOptions};
use floe_storage::{SegmentStore, StoreUrl, open_store};
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::routes::{AppState, router};

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    listener: TcpListener,
    broker: Broker,
    state: AppState,
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
        let store_url = StoreUrl::parse(&config.store_url())?;
        let (store, prefix) = open_store(&store_url)?;
        let log_dir = config.data_dir.join("sequencer");
        let log = FileLog::open(&log_dir)
            .with_context(|| format!("opening sequencer log in {}", log_dir.display()))?;
        let sequencer_options = SequencerOptions {
            snapshot_every: config.snapshot_every,
            ..SequencerOptions::default()
        };
        let sequencer = Sequencer::open(Arc::new(log), sequencer_options).await?;
        let broker_options = BrokerOptions {
            broker_id: config.broker_id.clone(),
            segment_max_bytes: config.segment_max_bytes,
            linger: config.linger,
            max_buffered_bytes: config.max_buffered_bytes,
            max_inflight_uploads: config.max_inflight_uploads,
        };
        let broker = Broker::new(
            broker_options,
            sequencer,
            SegmentStore::new(store, prefix),
            Arc::new(SystemClock),
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let advertise = config
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"));
        let state = AppState {
            broker: broker.clone(),
            cluster_name: config.cluster.as_str().into(),
            advertise: advertise.into(),
        };
        Ok(Self {
            local_addr,
            listener,
            broker,
            state,
            max_request_bytes: config.max_request_bytes,
        })
    }

    /// Serves until `shutdown` completes, then stops accepting, flushes and commits what
    /// is buffered and closes the log.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = router(self.state, self.max_request_bytes);
        tracing::info!(addr = %self.local_addr, "floe is serving");
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
