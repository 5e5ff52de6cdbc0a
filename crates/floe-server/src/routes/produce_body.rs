//! Produce bodies into records, counted while they are decoded: the record count is
//! checked as each record arrives (a body of ten million empty records stops at the
//! limit, not after building all of them), and every byte a decoded record holds is
//! reserved from the request's memory budget first. Keys, values and header values are
//! taken from the body's text as it is (`RawValue`), never built into a JSON tree; a text
//! value without escapes is a slice of the body, not a copy.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use floe_api::binary::{MAX_HEADER_NAME_BYTES, MAX_HEADERS_PER_RECORD, MAX_HEADERS_PER_REQUEST};
use floe_api::{Encoding, binary};
use floe_broker::ProduceRecord;
use floe_core::{Header, Reservation};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{ApiError, ApiResult};

/// What one decoded record costs beyond its bytes: the record, its `Vec` of headers,
/// and the batch encoder's work space for it.
const RECORD_OVERHEAD: usize = std::mem::size_of::<ProduceRecord>() + 64;
const HEADER_OVERHEAD: usize = std::mem::size_of::<Header>();

/// An idempotent producer's fields of a JSON produce body (or of the query string).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerFields {
    pub producer_id: Option<u64>,
    pub producer_epoch: Option<u16>,
    pub sequence: Option<u64>,
}

impl ProducerFields {
    /// The producer tag, when all three are given; `None` when none is; `400` otherwise.
    pub fn tag(&self) -> ApiResult<Option<floe_sequencer::ProducerTag>> {
        match (self.producer_id, self.producer_epoch, self.sequence) {
            (Some(producer_id), Some(epoch), Some(sequence)) => {
                Ok(Some(floe_sequencer::ProducerTag {
                    producer_id,
                    epoch,
                    sequence,
                }))
            }
            (None, None, None) => Ok(None),
            _ => Err(ApiError::bad_request(
                "invalid_request",
                "producer_id, producer_epoch and sequence go together",
            )),
        }
    }

    pub fn any(&self) -> bool {
        self.producer_id.is_some() || self.producer_epoch.is_some() || self.sequence.is_some()
    }
}

/// Decodes a JSON produce body (`{"records":[…]}`, optionally with an idempotent
/// producer's `producer_id`, `producer_epoch` and `sequence`), at most `max_records`
/// records.
pub fn json_records(
    body: &Bytes,
    encoding: Encoding,
    max_records: usize,
    reservation: &mut Reservation,
) -> ApiResult<(Vec<ProduceRecord>, ProducerFields)> {
    let mut failure = None;
    let seed = BodySeed {
        body,
        encoding,
        max_records,
        reservation,
        failure: &mut failure,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|records| deserializer.end().map(|()| records));
    match (result, failure) {
        (Ok(records), None) => Ok(records),
        (_, Some(failure)) => Err(failure),
        (Err(error), None) => Err(match error.classify() {
            serde_json::error::Category::Data => {
                ApiError::unprocessable("invalid_request", error.to_string())
            }
            _ => ApiError::bad_request("invalid_json", error.to_string()),
        }),
    }
}

/// Decodes a binary-framed produce body, refusing a declared count over `max_records`
/// before decoding any record.
pub fn binary_records(
    body: Bytes,
    max_records: usize,
    reservation: &mut Reservation,
) -> ApiResult<Vec<ProduceRecord>> {
    let records = binary::decode_produce(body, max_records).map_err(|error| match error {
        binary::FramingError::TooManyRecords { .. } => {
            ApiError::unprocessable("too_many_records", error.to_string())
        }
        binary::FramingError::TooManyHeaders { .. } => {
            ApiError::unprocessable("invalid_request", error.to_string())
        }
        other => ApiError::bad_request("invalid_binary", other.to_string()),
    })?;
    // The key and value bytes are slices of the body, already reserved; the records
    // themselves are what the decode added.
    let headers: usize = records.iter().map(|record| record.headers.len()).sum();
    reserve(
        reservation,
        records.len() * RECORD_OVERHEAD + headers * HEADER_OVERHEAD,
    )?;
    Ok(records
        .into_iter()
        .map(|record| ProduceRecord {
            partition: record.partition,
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            timestamp_ms: record.timestamp,
        })
        .collect())
}

fn reserve(reservation: &mut Reservation, bytes: usize) -> ApiResult<()> {
    reservation.try_grow(bytes).map_err(ApiError::from)
}

/// The whole body: an object whose only field is `records`.
struct BodySeed<'a> {
    body: &'a Bytes,
    encoding: Encoding,
    max_records: usize,
    reservation: &'a mut Reservation,
    failure: &'a mut Option<ApiError>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = (Vec<ProduceRecord>, ProducerFields);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = (Vec<ProduceRecord>, ProducerFields);

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(r#"an object {"records": [...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const FIELDS: &[&str] = &["records", "producer_id", "producer_epoch", "sequence"];
        let mut records = None;
        let mut producer = ProducerFields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let field = match key.as_ref() {
                "producer_id" => &mut producer.producer_id,
                "sequence" => &mut producer.sequence,
                "producer_epoch" => {
                    if producer.producer_epoch.is_some() {
                        return Err(de::Error::duplicate_field("producer_epoch"));
                    }
                    producer.producer_epoch = Some(map.next_value()?);
                    continue;
                }
                "records" => {
                    if records.is_some() {
                        return Err(de::Error::duplicate_field("records"));
                    }
                    records = Some(map.next_value_seed(RecordsSeed {
                        body: self.body,
                        encoding: self.encoding,
                        max_records: self.max_records,
                        reservation: &mut *self.reservation,
                        failure: &mut *self.failure,
                    })?);
                    continue;
                }
                other => {
                    map.next_value::<IgnoredAny>()?;
                    return Err(de::Error::unknown_field(other, FIELDS));
                }
            };
            if field.is_some() {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            *field = Some(map.next_value()?);
        }
        let records = records.ok_or_else(|| de::Error::missing_field("records"))?;
        Ok((records, producer))
    }
}

/// The `records` array, decoded one record at a time.
struct RecordsSeed<'a> {
    body: &'a Bytes,
    encoding: Encoding,
    max_records: usize,
    reservation: &'a mut Reservation,
    failure: &'a mut Option<ApiError>,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = Vec<ProduceRecord>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = Vec<ProduceRecord>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::new();
        let mut headers = 0usize;
        while let Some(incoming) = seq.next_element::<IncomingRecord<'de>>()? {
            let index = records.len();
            headers += incoming.headers.len();
            if headers > MAX_HEADERS_PER_REQUEST {
                return Err(self.fail(ApiError::bad_request(
                    "invalid_request",
                    format!("a produce request carries at most {MAX_HEADERS_PER_REQUEST} headers"),
                )));
            }
            if index == self.max_records {
                return Err(self.fail(ApiError::unprocessable(
                    "too_many_records",
                    format!(
                        "a produce request carries at most {} records",
                        self.max_records
                    ),
                )));
            }
            let mut copied = 0;
            let record = incoming
                .into_record(index, self.encoding, self.body, &mut copied)
                .and_then(|record| {
                    reserve(self.reservation, cost(&record, copied))?;
                    Ok(record)
                });
            match record {
                Ok(record) => records.push(record),
                Err(failure) => return Err(self.fail(failure)),
            }
        }
        Ok(records)
    }
}

impl RecordsSeed<'_> {
    /// Keeps the real failure beside the decoder and stops it with a placeholder.
    fn fail<E: de::Error>(&mut self, failure: ApiError) -> E {
        *self.failure = Some(failure);
        E::custom("stopped")
    }
}

/// What a decoded record holds in memory beyond the body: `copied` bytes of keys, values
/// and header values it could not slice from the body, and its structure.
fn cost(record: &ProduceRecord, copied: usize) -> usize {
    RECORD_OVERHEAD
        + copied
        + record
            .headers
            .iter()
            .map(|header| HEADER_OVERHEAD + header.name.len())
            .sum::<usize>()
}

/// Where a record's field came from, for errors: built only when one is reported.
#[derive(Clone, Copy)]
enum Field<'a> {
    Key(usize),
    Value(usize),
    Header(usize, &'a str),
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Field::Key(index) => write!(formatter, "records[{index}].key"),
            Field::Value(index) => write!(formatter, "records[{index}].value"),
            Field::Header(index, name) => write!(formatter, "records[{index}].headers.{name}"),
        }
    }
}

/// One record as it stands in the body; fields are raw JSON text until converted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingRecord<'a> {
    #[serde(default, borrow)]
    key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "bounded_headers")]
    headers: Vec<IncomingHeader<'a>>,
    #[serde(default)]
    partition: Option<u32>,
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingHeader<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
}

impl IncomingRecord<'_> {
    /// The record, its bytes sliced from `body` where they can be; adds the bytes it had
    /// to copy to `copied`.
    fn into_record(
        self,
        index: usize,
        encoding: Encoding,
        body: &Bytes,
        copied: &mut usize,
    ) -> ApiResult<ProduceRecord> {
        let headers = self
            .headers
            .into_iter()
            .map(|header| {
                let field = Field::Header(index, &header.name);
                Ok(Header {
                    value: raw_bytes(header.value, encoding, field, body, copied)?,
                    name: header.name.as_ref().to_owned(),
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(ProduceRecord {
            partition: self.partition,
            key: key_bytes(self.key, encoding, index, body, copied)?,
            value: raw_bytes(self.value, encoding, Field::Value(index), body, copied)?,
            headers,
            timestamp_ms: self.timestamp,
        })
    }
}

/// A record's headers, refused as soon as there are more than a record may carry or a
/// name is longer than allowed, before the rest of them is read.
fn bounded_headers<'de: 'a, 'a, D>(deserializer: D) -> Result<Vec<IncomingHeader<'a>>, D::Error>
where
    D: de::Deserializer<'de>,
{
    struct Headers<'a>(std::marker::PhantomData<&'a ()>);

    impl<'de: 'a, 'a> Visitor<'de> for Headers<'a> {
        type Value = Vec<IncomingHeader<'a>>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an array of headers")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut headers = Vec::new();
            while let Some(header) = seq.next_element::<IncomingHeader<'a>>()? {
                if headers.len() == MAX_HEADERS_PER_RECORD {
                    return Err(de::Error::custom(format_args!(
                        "a record carries at most {MAX_HEADERS_PER_RECORD} headers"
                    )));
                }
                if header.name.len() > MAX_HEADER_NAME_BYTES {
                    return Err(de::Error::custom(format_args!(
                        "a header name is at most {MAX_HEADER_NAME_BYTES} bytes"
                    )));
                }
                headers.push(header);
            }
            Ok(headers)
        }
    }

    deserializer.deserialize_seq(Headers(std::marker::PhantomData))
}

/// The longest key accepted with `encoding=json`, whose text is normalised.
const MAX_JSON_KEY_BYTES: usize = 64 * 1024;

/// A key's bytes. With `encoding=json` the key is stored compact with its object fields
/// sorted, as before raw values: the partitioner and compaction compare key bytes, so
/// `{"id": 1}` and `{"id":1}` must be the same key. Values are stored as sent.
fn key_bytes(
    raw: Option<&RawValue>,
    encoding: Encoding,
    index: usize,
    body: &Bytes,
    copied: &mut usize,
) -> ApiResult<Option<Bytes>> {
    let field = Field::Key(index);
    let Some(raw) = raw.filter(|_| encoding == Encoding::Json) else {
        return raw_bytes(raw, encoding, field, body, copied);
    };
    if raw.get() == "null" {
        return Ok(None);
    }
    if raw.get().len() > MAX_JSON_KEY_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_record",
            format!("{field} is over {MAX_JSON_KEY_BYTES} bytes of JSON"),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|error| ApiError::unprocessable("invalid_record", format!("{field}: {error}")))?;
    let bytes = serde_json::to_vec(&value)
        .map_err(|error| ApiError::unprocessable("invalid_record", format!("{field}: {error}")))?;
    *copied += bytes.len();
    Ok(Some(Bytes::from(bytes)))
}

/// `text` (a part of `body`'s bytes, borrowed by the decoder) as a slice of `body`.
fn slice_of(body: &Bytes, text: &str) -> Bytes {
    body.slice_ref(text.as_bytes())
}

/// Turns a field's raw JSON into bytes per `encoding`; `null` or absent is none. Text
/// without escapes and JSON values are slices of `body`; what has to be built (unescaped
/// text, decoded base64) is added to `copied`.
fn raw_bytes(
    raw: Option<&RawValue>,
    encoding: Encoding,
    field: Field,
    body: &Bytes,
    copied: &mut usize,
) -> ApiResult<Option<Bytes>> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    // The parser has checked the string: between its quotes, with no escape, are exactly
    // its UTF-8 bytes.
    if encoding == Encoding::Text
        && let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains('\\')
    {
        return Ok(Some(slice_of(body, inner)));
    }
    let string = || -> ApiResult<String> {
        serde_json::from_str::<String>(text).map_err(|_| {
            let what = match encoding {
                Encoding::Base64 => "a base64 string with encoding=base64",
                _ => "a string with encoding=text (use encoding=json for other JSON values)",
            };
            ApiError::unprocessable("invalid_record", format!("{field} must be {what}"))
        })
    };
    match encoding {
        Encoding::Text => {
            let text = string()?;
            *copied += text.len();
            Ok(Some(Bytes::from(text)))
        }
        Encoding::Base64 => BASE64
            .decode(string()?.as_bytes())
            .map(|decoded| {
                *copied += decoded.len();
                Some(Bytes::from(decoded))
            })
            .map_err(|error| {
                ApiError::unprocessable(
                    "invalid_base64",
                    format!("{field} is not valid base64: {error}"),
                )
            }),
        // The value as it was written: valid JSON, which the parser has checked.
        Encoding::Json => Ok(Some(slice_of(body, text))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use floe_core::MemoryBudget;

    use super::*;

    fn decode(body: &str, encoding: Encoding) -> (ApiResult<Vec<ProduceRecord>>, usize) {
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        let mut reservation = budget.try_reserve(0).expect("reserve");
        let body = Bytes::copy_from_slice(body.as_bytes());
        let records =
            json_records(&body, encoding, 100, &mut reservation).map(|(records, _)| records);
        (records, reservation.bytes())
    }

    fn values(records: &[ProduceRecord]) -> Vec<&[u8]> {
        records
            .iter()
            .map(|record| record.value.as_deref().unwrap_or_default())
            .collect()
    }

    #[test]
    fn text_values_are_unescaped_and_only_copies_are_charged() {
        let plain = r#"{"records":[{"value":"plain text, é"}]}"#;
        let (records, plain_charge) = decode(plain, Encoding::Text);
        assert_eq!(
            values(&records.expect("plain")),
            ["plain text, é".as_bytes()]
        );
        let escaped = r#"{"records":[{"value":"a \"quote\", \u00e9 and \\"}]}"#;
        let (records, escaped_charge) = decode(escaped, Encoding::Text);
        let unescaped = "a \"quote\", é and \\";
        assert_eq!(values(&records.expect("escaped")), [unescaped.as_bytes()]);
        // The plain value is a slice of the body; the escaped one had to be built.
        assert_eq!(escaped_charge - plain_charge, unescaped.len());
    }

    #[test]
    fn json_values_are_kept_as_written_and_base64_is_decoded() {
        let body = r#"{"records":[{"value":{"b": 1, "a": [true]}},{"value":"x"}]}"#;
        let (records, _) = decode(body, Encoding::Json);
        assert_eq!(
            values(&records.expect("json")),
            [&br#"{"b": 1, "a": [true]}"#[..], &br#""x""#[..]]
        );
        let body = r#"{"records":[{"value":"aGVsbG8="}]}"#;
        let (records, _) = decode(body, Encoding::Base64);
        assert_eq!(values(&records.expect("base64")), [&b"hello"[..]]);
    }

    #[test]
    fn a_wrong_value_names_its_record() {
        let body = r#"{"records":[{"value":"ok"},{"value":5}]}"#;
        let (records, _) = decode(body, Encoding::Text);
        let error = records.expect_err("a number with encoding=text");
        assert!(
            format!("{error:?}").contains("records[1].value"),
            "{error:?}"
        );
    }
}
