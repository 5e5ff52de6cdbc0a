//! The HTTP listener: accepts connections up to a limit, gives each a header-read
//! timeout (which also closes idle keep-alive connections), and drains them on shutdown.
//! `axum::serve` has none of these bounds: a few thousand idle or slow clients would hold
//! every file descriptor the process has.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::routes::waiting::ClientAddr;

/// How long shutdown waits for connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Bounds of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, and how long a connection
    /// may sit idle between requests.
    pub header_read_timeout: Duration,
}

/// Connection counters, registered on the server's registry.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    refused: Counter,
}

impl ConnectionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_http_connections",
            "HTTP connections open now",
            self.open.clone(),
        );
        registry.register(
            "floe_http_connections_refused",
            "HTTP connections closed on accept because max_connections were open",
            self.refused.clone(),
        );
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits
/// (up to [`DRAIN_TIMEOUT`]) for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: ConnectionMetrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Some(acceptor) = &tls {
            // The handshake runs in the connection's task, bounded like a request's
            // headers; the client certificate's subject goes with every request.
            let (acceptor, routes, builder) = (acceptor.clone(), app.clone(), builder.clone());
            let watcher = graceful.watcher();
            let open = metrics.open.clone();
            let handshake = limits.header_read_timeout;
            open.inc();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let subject = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(crate::tls::subject)
                            .map(crate::tls::ClientCert);
                        let service =
                            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                                request.extensions_mut().insert(ClientAddr(peer));
                                if let Some(subject) = &subject {
                                    request.extensions_mut().insert(subject.clone());
                                }
                                routes.clone().oneshot(request)
                            });
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(error) = watcher.watch(connection).await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    }
                    Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
                open.dec();
                drop(permit);
            });
            continue;
        }
        // Each request learns its client's address (for per-client limits) as it arrives.
        let routes = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            routes.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let open = metrics.open.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}
