//! Keys, values and header values between JSON and bytes, per `?encoding=`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use floe_api::Encoding;
use serde_json::Value;

use crate::error::ApiError;

/// Turns a JSON field into bytes; `null` or absent is none.
pub fn to_bytes(
    value: Option<Value>,
    encoding: Encoding,
    field: &str,
) -> Result<Option<Bytes>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    match (encoding, value) {
        (_, Value::Null) => Ok(None),
        (Encoding::Text, Value::String(text)) => Ok(Some(Bytes::from(text))),
        (Encoding::Text, _) => Err(ApiError::unprocessable(
            "invalid_record",
            format!(
                "{field} must be a string with encoding=text (use encoding=json for other JSON values)"
            ),
        )),
        (Encoding::Base64, Value::String(text)) => BASE64
            .decode(text.as_bytes())
            .map(|decoded| Some(Bytes::from(decoded)))
            .map_err(|error| {
                ApiError::unprocessable(
                    "invalid_base64",
                    format!("{field} is not valid base64: {error}"),
                )
            }),
        (Encoding::Base64, _) => Err(ApiError::unprocessable(
            "invalid_record",
            format!("{field} must be a base64 string with encoding=base64"),
        )),
        (Encoding::Json, value) => Ok(Some(Bytes::from(
            serde_json::to_vec(&value).expect("a JSON value serializes"),
        ))),
    }
}

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
