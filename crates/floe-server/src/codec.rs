//! Keys, values and header values between JSON and bytes, per `?encoding=`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use floe_api::Encoding;
use serde_json::Value;

use crate::error::ApiError;

/// Turns stored bytes into a JSON field for a response.
pub fn to_json(
    bytes: Option<&Bytes>,
    encoding: Encoding,
    offset: u64,
    field: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(bytes) = bytes else { return Ok(None) };
    match encoding {
        Encoding::Text => std::str::from_utf8(bytes).map(|text| Some(Value::String(text.to_owned()))).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::NOT_ACCEPTABLE,
                "not_utf8",
                format!("the {field} of the record at offset {offset} is not UTF-8; fetch with encoding=base64"),
            )
        }),
        Encoding::Base64 => Ok(Some(Value::String(BASE64.encode(bytes)))),
        Encoding::Json => serde_json::from_slice(bytes).map(Some).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::NOT_ACCEPTABLE,
                "not_json",
                format!("the {field} of the record at offset {offset} is not JSON; fetch with encoding=base64"),
            )
        }),
    }
}
