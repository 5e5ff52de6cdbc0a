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
