//! Extractors whose failures are [`ApiError`]s: a malformed path, query or body is
//! answered in the one error shape, mapped here once instead of in every handler.

use axum::extract::rejection::{PathRejection, QueryRejection};
use std::time::Duration;

use axum::body::BodyDataStream;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};
use floe_core::{BudgetSpent, Reservation};
use futures::StreamExt;

use super::AppState;
use crate::error::ApiError;

/// Path parameters; a mismatch is `400 invalid_path`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters; a malformed or unknown one is `400 invalid_query`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The request body as bytes, with the memory it holds reserved from the request budget.
/// A declared length over the limit is refused before anything is read (`413
/// request_too_large`); a body is read into one buffer of its declared size, and a spent
/// budget is `429 busy` with `Retry-After` before the bytes arrive.
#[derive(Debug)]
pub struct RawBody {
    pub bytes: Bytes,
    /// Held until the request is answered; decoding grows it.
    pub reservation: Reservation,
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_request_bytes;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        // A client that waits for `100 Continue` before sending its body is answered
        // without being invited to send it (polling the body would send the 100).
        let expects_continue = request.headers().contains_key(header::EXPECT);
        let mut body = request.into_body().into_data_stream();
        if declared.is_some_and(|declared| declared > limit as u64) {
            if expects_continue {
                return Err(too_large(limit));
            }
            return Err(refuse(&mut body, too_large(limit)).await);
        }
        let declared = declared.map_or(0, |declared| declared as usize);
        let mut reservation = match state.budget.try_reserve(declared) {
            Ok(reservation) => reservation,
            Err(spent) if expects_continue => return Err(spent.into()),
            Err(spent) => return Err(refuse(&mut body, spent.into()).await),
        };
        let mut buffer = BytesMut::with_capacity(declared);
        let read = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk
                    .map_err(|error| ApiError::bad_request("invalid_body", error.to_string()))?;
                if buffer.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                buffer.reserve(chunk.len());
                let more = buffer.capacity().saturating_sub(reservation.bytes());
                if more > 0 {
                    reservation.try_grow(more)?;
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(state.body_read_timeout, read).await;
        match outcome {
            Ok(Ok(())) => Ok(RawBody {
                bytes: buffer.freeze(),
                reservation,
            }),
            Ok(Err(error)) => {
                drop(buffer);
                drop(reservation);
                Err(refuse(&mut body, error).await)
            }
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {:?}",
                    state.body_read_timeout
                ),
            )),
        }
    }
}

/// How much of a refused body is read and dropped, and for how long, so that a client
/// still sending it reads the answer instead of a reset connection, and the connection
/// stays usable. Nothing read here is kept.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

async fn refuse(body: &mut BodyDataStream, error: ApiError) -> ApiError {
    let drain = async {
        let mut drained = 0usize;
        while let Some(Ok(chunk)) = body.next().await {
            drained += chunk.len();
            if drained > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    error
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("request body is over the server's limit of {limit} bytes"),
    )
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<BudgetSpent> for ApiError {
    fn from(spent: BudgetSpent) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", spent.to_string())
            .with_retry_after(Duration::from_secs(1))
    }
}
