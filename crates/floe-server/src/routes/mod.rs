//! The `/v1` HTTP surface. `openapi.json` beside this crate documents every route.

mod acls;
mod extract;
mod groups;
pub(crate) mod internal;
mod meta;
mod produce_body;
mod producers;
mod records;
mod stream;
pub mod timing;
mod topics;
pub mod waiting;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use floe_broker::Broker;
use floe_core::validate_topic_name;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub broker: Broker,
    pub cluster_name: Arc<str>,
    /// Turns true when the server begins to shut down: event streams end then, so the
    /// graceful shutdown does not wait for their clients to leave.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Memory for requests in flight: bodies, the records decoded from them, fetch
    /// answers.
    pub budget: Arc<floe_core::MemoryBudget>,
    /// The largest request body accepted.
    pub max_request_bytes: usize,
    /// How long a body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Places for fetches waiting at the tail, per broker and per client.
    pub waits: Arc<waiting::WaitSlots>,
    /// Every metric of this broker, served by `/metrics`.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// Request latency by route.
    pub requests: timing::RequestMetrics,
    /// Carries group calls to their coordinator when it is another broker.
    pub forwarder: reqwest::Client,
    /// Who is calling and what they may do.
    pub auth: Arc<crate::auth::Auth>,
    /// The cluster's credential for internal routes (`None` on the embedded sequencer).
    pub internal_secret: Option<crate::auth::Secret>,
    /// The internal routes have a listener of their own: the public one lacks them.
    pub internal_separate: bool,
    /// Per-principal produce, fetch and request rates.
    pub quotas: Arc<crate::quotas::Quotas>,
}

/// The routes. Bodies are read by [`extract::RawBody`], which enforces
/// `server.max_request_bytes` against the request budget itself.
pub fn router(state: AppState) -> Router {
    // Calls about one group go to its coordinator.
    let group_routes = Router::new()
        .route(
            "/v1/groups/{group}",
            get(groups::describe).delete(groups::delete),
        )
        .route("/v1/groups/{group}/members", post(groups::join))
        .route("/v1/groups/{group}/members/{member}", delete(groups::leave))
        .route(
            "/v1/groups/{group}/members/{member}/heartbeat",
            post(groups::heartbeat),
        )
        .route(
            "/v1/groups/{group}/members/{member}/records",
            get(groups::records),
        )
        .route(
            "/v1/groups/{group}/offsets",
            get(groups::offsets).post(groups::commit),
        )
        .route("/v1/groups/{group}/offsets/reset", post(groups::reset))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            groups::to_coordinator,
        ));
    Router::new()
        .merge(group_routes)
        .route("/v1/groups", get(groups::list))
        .route("/v1/topics", get(topics::list).post(topics::create))
        .route(
            "/v1/topics/{topic}",
            get(topics::describe).delete(topics::delete),
        )
        .route(
            "/v1/topics/{topic}/partitions",
            post(topics::add_partitions),
        )
        .route("/v1/topics/{topic}/config", patch(topics::alter_config))
        .route("/v1/topics/{topic}/export", get(topics::export_status))
        .route("/v1/topics/{topic}/records", post(records::produce))
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            post(records::produce_to_partition).get(records::fetch),
        )
        .route(
            "/v1/topics/{topic}/partitions/{partition}/offsets",
            get(records::offsets),
        )
        .route("/v1/producers", post(producers::init))
        .route("/v1/cluster", get(meta::cluster))
        .route(
            "/v1/acls",
            get(acls::list).post(acls::create).delete(acls::delete),
        )
        .merge(if state.internal_separate {
            Router::new()
        } else {
            internal_routes(&state)
        })
        .route("/v1/openapi.json", get(meta::openapi))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::quotas::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            timing::record,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Checks a topic name from a path before anything else looks at it.
fn checked_topic(topic: &str) -> ApiResult<()> {
    validate_topic_name(topic)
        .map_err(|error| ApiError::bad_request("invalid_topic_name", error.to_string()))
}

/// Parses a JSON body: syntax errors are 400, well-formed JSON of the wrong shape is 422.
fn json_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            ApiError::unprocessable("invalid_request", error.to_string())
        }
        _ => ApiError::bad_request("invalid_json", error.to_string()),
    })
}

/// The routes brokers call on each other, behind the cluster's credential.
fn internal_routes(state: &AppState) -> Router<AppState> {
    Router::new().route(
        crate::cluster::FORWARD_PATH,
        post(internal::forwarded_commands).route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            internal::require_cluster_secret,
        )),
    )
}

/// The internal listener's router (`server.internal_listen`): the internal routes and
/// health, nothing of the public API.
pub fn internal_router(state: AppState) -> Router {
    internal_routes(&state)
        .route("/healthz", get(meta::healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    /// Every route the router serves is documented, and nothing undocumented is claimed.
    #[test]
    fn openapi_documents_every_route() {
        let spec: serde_json::Value =
            serde_json::from_str(super::meta::OPENAPI).expect("openapi.json is JSON");
        let source = include_str!("mod.rs");
        let router_body = source
            .split("pub fn router")
            .nth(1)
            .and_then(|rest| rest.split(".fallback(").next())
            .expect("router function");
        let routes: Vec<&str> = router_body
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|literal| literal.starts_with('/'))
            .collect();
        assert!(routes.len() >= 10);
        let paths = spec["paths"].as_object().expect("paths");
        for route in &routes {
            assert!(
                paths.contains_key(*route),
                "{route} is missing from openapi.json"
            );
        }
        assert_eq!(
            paths.len(),
            routes.len(),
            "openapi.json documents a route the router lacks"
        );
    }
}
