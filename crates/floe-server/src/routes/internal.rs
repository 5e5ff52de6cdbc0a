//! Routes brokers call on each other, not part of the public API: they live under
//! `/internal` so a deployment can keep them off its ingress.

use axum::Json;
use axum::extract::State;

use floe_broker::BrokerError;
use floe_sequencer::{Committed, ForwardedCommand, RemoteError};

use crate::error::ApiError;

use super::AppState;
use super::extract::RawBody;

/// Commands forwarded by a follower to this broker as sequencer leader. An embedded broker
/// answers 404 `not_clustered`: it has no followers.
pub async fn forwarded_commands(
    State(state): State<AppState>,
    RawBody { bytes: body, .. }: RawBody,
) -> Result<Json<Vec<Result<Committed, RemoteError>>>, ApiError> {
    let commands: Vec<ForwardedCommand> = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request("invalid_body", error.to_string()))?;
    let results = state
        .broker
        .sequencer()
        .submit_forwarded(
            commands
                .into_iter()
                .map(|forwarded| (forwarded.command, forwarded.fence))
                .collect(),
        )
        .await
        .map_err(|error| ApiError::from(BrokerError::from(error)))?
        .into_iter()
        .map(|result| result.map_err(RemoteError::from))
        .collect();
    Ok(Json(results))
}

/// Internal routes need the cluster's credential, whether or not clients authenticate;
/// checked before the body is read, so an unauthenticated client cannot hold request
/// memory.
pub async fn require_cluster_secret(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match check_cluster_secret(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check_cluster_secret(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(secret) = &state.internal_secret else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_clustered",
            "this broker runs the embedded sequencer and has no internal routes",
        ));
    };
    let presented = headers
        .get(crate::cluster::CLUSTER_SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(presented, secret.as_bytes()) {
        crate::auth::audit(
            "-",
            "internal",
            "/internal",
            "denied: no cluster credential",
        );
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "internal routes need the cluster's credential",
        ));
    }
    Ok(())
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
