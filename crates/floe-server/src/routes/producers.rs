//! Idempotent producers: `POST /v1/producers` hands out an id and epoch (ADR 0010).

use axum::extract::State;
use axum::{Extension, Json};
use floe_api::{InitProducerRequest, ProducerIdentity};
use floe_core::{Operation, ResourceKind};

use super::extract::RawBody;
use super::{AppState, json_body};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

pub async fn init(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<Json<ProducerIdentity>> {
    // As Kafka: a principal that may write to some topic (or to the cluster) may be an
    // idempotent producer.
    if state.auth.enabled() && !state.auth.may_write_somewhere(&principal) {
        state
            .auth
            .check(&principal, Operation::Write, ResourceKind::Cluster, "")?;
    }
    let request: InitProducerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        InitProducerRequest::default()
    } else {
        json_body(&body)?
    };
    let existing = match (request.producer_id, request.producer_epoch) {
        (Some(id), Some(epoch)) => Some((id, epoch)),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "producer_id and producer_epoch go together",
            ));
        }
    };
    let owner = state.auth.enabled().then(|| principal.name().to_owned());
    let (producer_id, producer_epoch) = state.broker.init_producer(existing, owner).await?;
    Ok(Json(ProducerIdentity {
        producer_id,
        producer_epoch,
    }))
}
