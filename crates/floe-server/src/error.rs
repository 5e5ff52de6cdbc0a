//! The one mapping from failures to HTTP responses.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use floe_api::ErrorBody;
use floe_broker::BrokerError;
use floe_core::ErrorKind;

/// The stable code of an error answer, left on the response for the request metrics
/// (`floe_http_responses_total{error_code}`).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl ErrorCode {
    /// A coordinator's error answer passed on by the broker a group call reached first;
    /// the coordinator counts it under its own code.
    pub const FORWARDED: ErrorCode = ErrorCode("forwarded");
}

/// An error on its way to the client: status, stable code, message, optional Retry-After.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    /// For `offset_out_of_range`: the partition's log start offset.
    log_start_offset: Option<u64>,
    /// For `offset_out_of_range` and `offset_mismatch`: the partition's high watermark
    /// (its next offset).
    high_watermark: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            log_start_offset: None,
            high_watermark: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// Tells the client when to try again.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        let retry_after = error.retry_after();
        let code = error.code();
        let status = match error.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::OutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable | ErrorKind::Fenced => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &error {
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(%error, "internal error");
                "internal error; the server log has details".to_owned()
            }
            // Store failures name local paths, buckets and endpoints: they go to the log,
            // not to clients.
            BrokerError::Storage(_) => {
                tracing::warn!(%error, "request failed on the object store");
                "the object store did not answer in time; retry shortly".to_owned()
            }
            _ => error.to_string(),
        };
        let (log_start_offset, high_watermark) = match &error {
            BrokerError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            } => (Some(*log_start_offset), Some(*high_watermark)),
            BrokerError::Sequencer(floe_sequencer::SequencerError::Rejected(
                floe_sequencer::ApplyError::OffsetMismatch { actual, .. },
            )) => (None, Some(*actual)),
            _ => (None, None),
        };
        Self {
            status,
            code,
            message,
            retry_after,
            log_start_offset,
            high_watermark,
        }
    }
}

impl ApiError {
    /// The body clients see: `{"error_code", "message"}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.code.to_owned(),
            message: self.message.clone(),
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(retry_after) = self.retry_after {
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
