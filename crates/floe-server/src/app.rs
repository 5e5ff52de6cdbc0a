//! Assembling and running a server: store, sequencer, broker, HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use floe_broker::{Broker, BrokerOptions, JobOptions};
use floe_core::SystemClock;
use floe_sequencer::{ClusterOptions, FileLog, Identity, Sequencer, open_cluster};
use floe_storage::{
    ReadCache, SegmentStore, SnapshotObjects, StoreUrl, check_store, open_store_with,
};
use tokio::net::TcpListener;

use crate::cluster::{HttpForwarder, StoredSnapshots};
use crate::config::ServeConfig;
use crate::listener::{ConnectionMetrics, Limits};
use crate::routes::{AppState, router};

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    /// Where the internal routes are served, when on an address of their own.
    pub internal_addr: Option<SocketAddr>,
    listener: TcpListener,
    internal_listener: Option<TcpListener>,
    broker: Broker,
    state: AppState,
    stopping: tokio::sync::watch::Sender<bool>,
    limits: Limits,
    connections: ConnectionMetrics,
    tls: Option<Tls>,
    /// Samples the runtime's scheduling delay while the server lives.
    probe: crate::runtime_probe::RuntimeProbe,
}

/// The listener's TLS acceptor (rustls has no `Debug` for it).
struct Tls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Server {
    /// Opens the store and the sequencer, binds the listener, and is ready to serve.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let server = &config.server;
        let tls = match (&server.tls_cert_file, &server.tls_key_file) {
            (Some(cert), Some(key)) => Some(Tls(crate::tls::acceptor(
                cert,
                key,
                server.tls_client_ca_file.as_deref(),
            )
            .context("setting up TLS")?)),
            _ => None,
        };
        let mutual_tls = server.tls_client_ca_file.is_some();
        // Safe by default: without authentication, only this machine may connect unless
        // the operator says otherwise.
        if !config.auth.enabled() && !mutual_tls && !server.listen.ip().is_loopback() {
            if !config.auth.allow_anonymous {
                anyhow::bail!(
                    "refusing to serve {} without authentication: set auth.tokens_file \
                     (--auth-tokens FILE) or JWTs (auth.jwks_url), listen on a loopback address, or pass \
                     --allow-anonymous to let anyone who can reach this port in",
                    server.listen
                );
            }
            tracing::warn!(
                listen = %server.listen,
                "serving without authentication on a non-loopback address (--allow-anonymous): \
                 anyone who can reach this port may read, write and delete every topic"
            );
        }
        let listener = TcpListener::bind(server.listen)
            .await
            .with_context(|| format!("binding {}", server.listen))?;
        let local_addr = listener.local_addr()?;
        // Embedded on 0.0.0.0 without `advertise` (a container's default): no address is
        // handed out, and answers name no partition owner to go to.
        let advertise = server.advertised(local_addr).unwrap_or_default();
        let internal_listener = match server.internal_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding the internal listener {address}"))?,
            ),
            None => None,
        };
        let internal_addr = internal_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let internal_advertise = match internal_addr {
            Some(bound) => Some(server.internal_advertised(bound).with_context(|| {
                format!(
                    "the internal listener is bound to {bound}: set server.internal_advertise \
                     to an address other brokers can reach"
                )
            })?),
            None => None,
        };
        let peer_ca = match &server.peer_ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };

        let store_url = StoreUrl::parse(&config.store_url())?;
        let (store, prefix) = open_store_with(
            &store_url,
            &config.store.s3(),
            config.store.keep_written_pages,
        )?;
        check_store(&store, &prefix, &config.store_url()).await?;
        let store_is_local = !matches!(store_url, StoreUrl::S3 { .. });
        let hedge_after = config.store.upload_hedge_after(!store_is_local);
        let mut segments = SegmentStore::new(store.clone(), prefix.clone())
            .with_attempt_timeout(config.store.request_timeout)
            .with_hedge_after(hedge_after);
        if !store_is_local {
            // A flush upload is logged as slow from 100 ms (the store's default, for a
            // local disk); on S3, where PUTs of a few MB take that long routinely, from
            // when a hedge would start (1 s).
            segments =
                segments.with_slow_upload(hedge_after.unwrap_or(std::time::Duration::from_secs(1)));
        }
        let cache_options = config
            .cache
            .clone()
            .resolve(store_is_local, &server.data_dir);
        let cache = ReadCache::open(&cache_options, segments.clone())
            .await
            .context("opening the read cache")?;
        let advertised = !advertise.is_empty();
        let identity =
            Identity::new(config.broker.id.clone(), advertise).with_internal(internal_advertise);
        let mut internal_secret = None;
        let sequencer = match config.cluster.etcd_endpoints() {
            Some(endpoints) => {
                if !advertised {
                    anyhow::bail!(
                        "listening on {local_addr} in a cluster needs server.advertise \
                         (--advertise): other brokers must be told an address they can reach"
                    );
                }
                if store_url == StoreUrl::Memory {
                    anyhow::bail!(
                        "a cluster needs a store all brokers share (s3:// or file://), not memory://"
                    );
                }
                let options = ClusterOptions {
                    endpoints,
                    cluster: config.cluster.name.clone(),
                    lease_ttl: config.cluster.lease_ttl,
                    compact_etcd: config.cluster.compact_etcd,
                    sequencer: config.sequencer.clone(),
                    tls: config
                        .cluster
                        .etcd_tls()
                        .map_err(anyhow::Error::msg)
                        .context("reading the etcd TLS files")?,
                };
                let snapshots = SnapshotObjects::new(store.clone(), prefix.clone());
                let secret: Arc<str> = match &config.auth.internal_secret_file {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .trim()
                        .into(),
                    None => with_etcd_retries("reading the cluster's internal credential", || {
                        floe_sequencer::cluster_secret(
                            &options.endpoints,
                            &options.cluster,
                            options.tls.as_ref(),
                        )
                    })
                    .await
                    .context("reading the cluster's internal credential from etcd")?
                    .into(),
                };
                anyhow::ensure!(
                    secret.len() >= 16,
                    "the internal credential must have at least 16 characters"
                );
                internal_secret = Some(crate::auth::Secret(Arc::clone(&secret)));
                let snapshots: Arc<StoredSnapshots> = Arc::new(StoredSnapshots(snapshots));
                let forwarder = Arc::new(HttpForwarder::with_secret(secret, peer_ca.as_deref())?);
                with_etcd_retries("joining the cluster", || {
                    open_cluster(
                        identity.clone(),
                        options.clone(),
                        snapshots.clone(),
                        forwarder.clone(),
                        Arc::new(SystemClock),
                    )
                })
                .await
                .context("joining the cluster through etcd")?
            }
            None => {
                let log_dir = server.data_dir.join("sequencer");
                let log = FileLog::open(&log_dir)
                    .with_context(|| format!("opening sequencer log in {}", log_dir.display()))?;
                Sequencer::open(Arc::new(log), config.sequencer.clone(), identity).await?
            }
        };
        let broker_options = BrokerOptions {
            linger: Some(config.broker.linger_for(store_is_local)),
            min_flush_interval: Some(config.broker.min_flush_interval_for(store_is_local)),
            ..config.broker.clone()
        };
        let builder = Broker::builder(sequencer, segments, cache)
            .options(broker_options)
            .jobs(JobOptions {
                yield_delay: Some(config.jobs.yield_delay_for(store_is_local)),
                ..config.jobs.clone()
            })
            .groups(config.groups.clone())
            .export_s3(config.store.s3())
            .clock(Arc::new(SystemClock));
        #[cfg(feature = "failpoints")]
        let builder = builder.failpoints(failpoints_from_env());
        let broker = builder.build();
        let (stopping, stopping_receiver) = tokio::sync::watch::channel(false);
        let mut registry = prometheus_client::registry::Registry::default();
        broker.register_metrics(&mut registry);
        let connections = ConnectionMetrics::default();
        connections.register(&mut registry);
        let waits = crate::routes::waiting::WaitSlots::new(
            server.max_waiting_fetches,
            server.max_waiting_fetches_per_client,
        );
        waits.register(&mut registry);
        let requests = crate::routes::timing::RequestMetrics::default();
        requests.register(&mut registry);
        let probe = crate::runtime_probe::RuntimeProbe::start(tokio::runtime::Handle::current());
        probe.register(&mut registry);
        let state = AppState {
            broker: broker.clone(),
            cluster_name: config.cluster.name.as_str().into(),
            stopping: stopping_receiver,
            metrics: Arc::new(registry),
            requests,
            budget: floe_core::MemoryBudget::new(server.request_memory_bytes),
            max_request_bytes: server.max_request_bytes,
            body_read_timeout: server.body_read_timeout,
            waits,
            auth: crate::auth::Auth::start(&config.auth, mutual_tls, broker.sequencer().clone())
                .await
                .context("loading the bearer tokens and JWT keys")?,
            internal_secret,
            quotas: Arc::new(crate::quotas::Quotas::new(config.quotas.clone())),
            forwarder: crate::cluster::peer_client(peer_ca.as_deref(), None)
                .context("building the group forwarder's HTTP client")?,
            internal_separate: internal_listener.is_some(),
        };
        Ok(Self {
            local_addr,
            internal_addr,
            listener,
            internal_listener,
            broker,
            state,
            stopping,
            limits: Limits {
                max_connections: server.effective_max_connections(),
                header_read_timeout: server.header_read_timeout,
            },
            connections,
            tls,
            probe,
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
        let _probe = self.probe;
        let tls = self.tls.map(|tls| tls.0);
        let internal = self.internal_listener.map(|listener| {
            let app = crate::routes::internal_router(self.state.clone());
            let mut stopped = self.stopping.subscribe();
            tracing::info!(internal_addr = ?self.internal_addr, "internal routes on their own listener");
            tokio::spawn(crate::listener::serve(
                listener,
                app,
                self.limits,
                self.connections.clone(),
                tls.clone(),
                async move {
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                },
            ))
        });
        let app = router(self.state);
        tracing::info!(addr = %self.local_addr, "floe is serving");
        let stopping = self.stopping;
        let sequencer = self.broker.sequencer().clone();
        let shutdown = async move {
            shutdown.await;
            // While this broker still answers the others' forwarded commits, another takes
            // the sequencer leadership; this broker's last commits go through it.
            sequencer.hand_over(HAND_OVER_PATIENCE).await;
            stopping.send_replace(true);
        };
        crate::listener::serve(
            self.listener,
            app,
            self.limits,
            self.connections,
            tls,
            shutdown,
        )
        .await;
        if let Some(internal) = internal {
            let _ = internal.await;
        }
        tracing::info!("http stopped; flushing buffered records");
        self.broker.shutdown().await;
        tracing::info!("floe stopped");
        Ok(())
    }
}

/// How long a stopping broker waits for another to take the sequencer leadership over.
const HAND_OVER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a starting broker keeps trying etcd: an election in etcd (a member restarting,
/// a leader lost) makes it refuse requests for a few seconds, which should delay a start,
/// not fail it.
const ETCD_START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long one start-up attempt may take before it is abandoned and tried again: an etcd
/// member that accepts a connection and then never answers (stopped, or mid-election)
/// must not hold a starting broker forever. Loading the replica (a snapshot and the log
/// since it) fits well inside this.
const ETCD_START_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs `attempt` until it succeeds or [`ETCD_START_PATIENCE`] has passed, with backoff;
/// an attempt that takes longer than [`ETCD_START_ATTEMPT`] counts as refused.
async fn with_etcd_retries<T, E, F>(what: &str, attempt: impl Fn() -> F) -> anyhow::Result<T>
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let deadline = tokio::time::Instant::now() + ETCD_START_PATIENCE;
    let mut backoff = std::time::Duration::from_millis(250);
    loop {
        tracing::info!(what, "starting");
        let error = match tokio::time::timeout(ETCD_START_ATTEMPT, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => anyhow::Error::new(error),
            Err(_) => anyhow::anyhow!("no answer within {ETCD_START_ATTEMPT:?}"),
        };
        if tokio::time::Instant::now() + backoff >= deadline {
            return Err(error);
        }
        let error = format!("{error:#}");
        tracing::warn!(%error, what, retry_in = ?backoff, "etcd refused; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
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

/// Test faults from the environment, in builds with the `failpoints` feature only:
/// `FLOE_TEST_CRASH_AFTER_UPLOAD=1` aborts after an upload, before its commit.
#[cfg(feature = "failpoints")]
fn failpoints_from_env() -> floe_broker::Failpoints {
    floe_broker::Failpoints {
        crash_after_upload: std::env::var_os("FLOE_TEST_CRASH_AFTER_UPLOAD")
            .is_some_and(|value| value == "1"),
    }
}
