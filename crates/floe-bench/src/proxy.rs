//! A counting S3 proxy: forwards every request to the real S3-compatible server unchanged
//! and counts them by kind, so object-store requests per GiB are measured the same way
//! for every system (neither needs to report its own). `GET /_counts` answers the counts.
//! It can also hold every Nth PUT for a while before forwarding it (`--stall-puts-every`,
//! `--stall-for`): the rare hung PUT of a real object store, reproducibly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use clap::Args;

use crate::probe::StoreCounts;

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The S3-compatible server to forward to, such as `http://127.0.0.1:5000`.
    #[arg(long)]
    pub upstream: String,
    /// Hold every Nth PUT (after its body arrived) for `--stall-for` before forwarding it.
    #[arg(long)]
    pub stall_puts_every: Option<u64>,
    /// How long a held PUT waits.
    #[arg(long, default_value = "35s", value_parser = humantime::parse_duration)]
    pub stall_for: Duration,
}

/// Every `every`th PUT waits `hold` before it is forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub every: u64,
    pub hold: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    put: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
    head: AtomicU64,
    delete: AtomicU64,
    post: AtomicU64,
    put_bytes: AtomicU64,
    get_bytes: AtomicU64,
}

#[derive(Debug)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    counters: Counters,
    stall: Option<Stall>,
}

/// The kind of S3 request, from its method and target.
fn kind(method: &Method, path: &str, query: Option<&str>) -> &'static str {
    let bucket_level = path.trim_matches('/').split('/').count() <= 1;
    match *method {
        Method::PUT => "put",
        Method::GET if bucket_level || query.is_some_and(|q| q.contains("list-type")) => "list",
        Method::GET => "get",
        Method::HEAD => "head",
        Method::DELETE => "delete",
        _ => "post",
    }
}

/// Serves until killed. Prints the bound address on stdout.
pub async fn serve(args: ProxyArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("{}", listener.local_addr()?);
    let stall = args.stall_puts_every.map(|every| Stall {
        every: every.max(1),
        hold: args.stall_for,
    });
    serve_on(listener, &args.upstream, stall).await
}

/// Serves on `listener`, forwarding to `upstream` (holding PUTs per `stall`), until the
/// future is dropped.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    upstream: &str,
    stall: Option<Stall>,
) -> anyhow::Result<()> {
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?,
        counters: Counters::default(),
        stall,
    });
    let app = Router::new()
        .route("/_counts", get(counts))
        .fallback(forward)
        .layer(DefaultBodyLimit::disable())
        .with_state(proxy);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn counts(State(proxy): State<Arc<Proxy>>) -> Json<StoreCounts> {
    let c = &proxy.counters;
    Json(StoreCounts {
        put: c.put.load(Ordering::Relaxed),
        get: c.get.load(Ordering::Relaxed),
        list: c.list.load(Ordering::Relaxed),
        head: c.head.load(Ordering::Relaxed),
        delete: c.delete.load(Ordering::Relaxed),
        post: c.post.load(Ordering::Relaxed),
        put_bytes: c.put_bytes.load(Ordering::Relaxed),
        get_bytes: c.get_bytes.load(Ordering::Relaxed),
    })
}

const HOP_BY_HOP: [HeaderName; 3] = [header::HOST, header::CONNECTION, header::TRANSFER_ENCODING];

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    match forward_inner(&proxy, request).await {
        Ok(response) => response,
        Err(error) => {
            // The store's client sees only a 502 and retries; say what the upstream did.
            eprintln!("s3-proxy: upstream request failed, answered 502: {error:#}");
            (StatusCode::BAD_GATEWAY, format!("{error:#}")).into_response()
        }
    }
}

async fn forward_inner(proxy: &Proxy, request: Request) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let kind = kind(&parts.method, parts.uri.path(), parts.uri.query());
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let c = &proxy.counters;
    match kind {
        "put" => {
            let nth = c.put.fetch_add(1, Ordering::Relaxed) + 1;
            c.put_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            if let Some(stall) = proxy.stall
                && nth.is_multiple_of(stall.every)
            {
                eprintln!(
                    "s3-proxy: holding PUT #{nth} {path_and_query} for {:?}",
                    stall.hold
                );
                tokio::time::sleep(stall.hold).await;
            }
        }
        "get" => drop(c.get.fetch_add(1, Ordering::Relaxed)),
        "list" => drop(c.list.fetch_add(1, Ordering::Relaxed)),
        "head" => drop(c.head.fetch_add(1, Ordering::Relaxed)),
        "delete" => drop(c.delete.fetch_add(1, Ordering::Relaxed)),
        _ => drop(c.post.fetch_add(1, Ordering::Relaxed)),
    }
    let mut upstream = proxy
        .http
        .request(parts.method, format!("{}{path_and_query}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await?;
    if kind == "get" {
        c.get_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    Ok(response.body(Body::from(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind(&Method::PUT, "/b/k", None), "put");
        assert_eq!(kind(&Method::GET, "/b/k", None), "get");
        assert_eq!(
            kind(&Method::GET, "/b", Some("list-type=2&prefix=x")),
            "list"
        );
        assert_eq!(kind(&Method::GET, "/b/", None), "list");
        assert_eq!(kind(&Method::HEAD, "/b/k", None), "head");
        assert_eq!(kind(&Method::DELETE, "/b/k", None), "delete");
        assert_eq!(kind(&Method::POST, "/b", Some("delete")), "post");
    }
}
