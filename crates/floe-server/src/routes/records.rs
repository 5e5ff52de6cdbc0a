//! Produce, fetch and offset lookup routes.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use floe_api::Encoding;
use floe_api::binary::{self, BinaryFetch, BinaryRecord};
use floe_api::{
    FetchResponse, FetchedRecordJson, HeaderJson, OWNER_HEADER, OffsetResponse, OwnerRef,
};
use floe_broker::{FetchRequest, FetchResult, MAX_RECORDS_PER_REQUEST, OffsetSpec, RecordAck};
use floe_core::Reservation;
use serde::Deserialize;

use super::extract::{ApiPath, ApiQuery, RawBody};
use super::produce_body::{ProducerFields, binary_records, json_records};
use super::waiting::{self, ClientAddr};
use super::{AppState, checked_topic};
use crate::codec::to_json;
use crate::error::{ApiError, ApiResult};

/// The longest a fetch may wait at the tail.
const MAX_WAIT: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_MAX_RECORDS: usize = 500;
pub(super) const MAX_MAX_RECORDS: usize = 10_000;
pub(super) const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
pub(super) const MAX_MAX_BYTES: usize = 64 * 1024 * 1024;

/// A produce request's query: the encoding of JSON keys and values; an idempotent
/// producer's fields (how the binary framing carries them; a JSON body may carry them
/// too); and, on a partition's route, the offset a conditional append expects.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceQuery {
    #[serde(default)]
    encoding: Encoding,
    producer_id: Option<u64>,
    producer_epoch: Option<u16>,
    sequence: Option<u64>,
    expected_next_offset: Option<u64>,
}

pub async fn produce(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    ApiQuery(query): ApiQuery<ProduceQuery>,
    principal: Option<Extension<crate::auth::Principal>>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<ProduceAcks> {
    if query.expected_next_offset.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "expected_next_offset applies to one partition: use \
             /v1/topics/{topic}/partitions/{partition}/records",
        ));
    }
    produce_records(state, topic, None, query, principal, headers, body).await
}

pub async fn produce_to_partition(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<ProduceQuery>,
    principal: Option<Extension<crate::auth::Principal>>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<ProduceAcks> {
    let (topic, partition) = path;
    produce_records(
        state,
        topic,
        Some(partition),
        query,
        principal,
        headers,
        body,
    )
    .await
}

async fn produce_records(
    state: AppState,
    topic: String,
    fixed_partition: Option<u32>,
    query: ProduceQuery,
    principal: Option<Extension<crate::auth::Principal>>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<ProduceAcks> {
    checked_topic(&topic)?;
    let mut producer = ProducerFields {
        producer_id: query.producer_id,
        producer_epoch: query.producer_epoch,
        sequence: query.sequence,
    };
    let encoding = query.encoding;
    let RawBody {
        bytes: body,
        mut reservation,
    } = body;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mut records = if content_type.starts_with(binary::CONTENT_TYPE) {
        binary_records(body, MAX_RECORDS_PER_REQUEST, &mut reservation)?
    } else if content_type.starts_with("application/json") {
        let (records, in_body) =
            json_records(&body, encoding, MAX_RECORDS_PER_REQUEST, &mut reservation)?;
        if in_body.any() {
            if producer.any() {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "the producer's fields are in the body or in the query, not both",
                ));
            }
            producer = in_body;
        }
        records
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {content_type:?}; use application/json or {}",
                binary::CONTENT_TYPE
            ),
        ));
    };
    if let Some(partition) = fixed_partition {
        for record in &mut records {
            if record.partition.is_some_and(|p| p != partition) {
                return Err(ApiError::unprocessable(
                    "invalid_record",
                    "a record names a partition other than the path's",
                ));
            }
            record.partition = Some(partition);
        }
    }
    let conditions = floe_broker::ProduceConditions {
        producer: producer.tag()?,
        expected_next_offset: query.expected_next_offset,
        principal: principal
            .filter(|_| state.auth.enabled())
            .map(|Extension(principal)| principal.name().to_owned()),
    };
    let acks = state
        .broker
        .produce_with(&topic, records, conditions)
        .await?;
    Ok(ProduceAcks(acks))
}

/// A produce answer: `ProduceResponse` JSON (`{"offsets":[{"partition":…,"offset":…,
/// "timestamp":…},…]}`), one entry per record in request order.
#[derive(Debug)]
pub struct ProduceAcks(Vec<RecordAck>);

impl IntoResponse for ProduceAcks {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            produce_response_json(&self.0),
        )
            .into_response()
    }
}

/// Writes the answer directly: a request of 1,000 small records answers 1,000 entries,
/// and through serde this was one of the larger costs of small-record produce
/// (`docs/benchmarks.md`, W3). The field names need no escaping and the values are
/// integers, so the bytes are the same as serde_json's.
fn produce_response_json(acks: &[RecordAck]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + acks.len() * 64);
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"{\"offsets\":[");
    for (index, ack) in acks.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"partition\":");
        out.extend_from_slice(number.format(ack.partition).as_bytes());
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(number.format(ack.offset).as_bytes());
        out.extend_from_slice(b",\"timestamp\":");
        out.extend_from_slice(number.format(ack.timestamp_ms).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// A number, `earliest` or `latest`; `earliest` when absent.
    offset: Option<String>,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
    #[serde(default)]
    clamp: bool,
    #[serde(default)]
    encoding: Encoding,
}

pub async fn fetch(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<FetchQuery>,
    principal: Option<Extension<crate::auth::Principal>>,
    credential: Option<Extension<crate::auth::Credential>>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (topic, partition) = path;
    checked_topic(&topic)?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let streaming = accept.contains("text/event-stream");
    // A stream resumes after the last event its client saw: the event id is the next offset.
    let resume = if streaming {
        last_event_id(&headers)?
    } else {
        None
    };
    let offset = match (resume, query.offset.as_deref()) {
        (Some(offset), _) => offset,
        (None, None | Some("earliest")) => {
            state
                .broker
                .lookup_offset(&topic, partition, OffsetSpec::Earliest)
                .await?
                .offset
        }
        (None, Some("latest")) => {
            state
                .broker
                .lookup_offset(&topic, partition, OffsetSpec::Latest)
                .await?
                .offset
        }
        (None, Some(number)) => number.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("offset {number:?} is not a number, earliest or latest"),
            )
        })?,
    };
    let max_records = bounded_query(
        "max_records",
        query.max_records,
        DEFAULT_MAX_RECORDS,
        MAX_MAX_RECORDS,
    )?;
    let max_bytes = bounded_query(
        "max_bytes",
        query.max_bytes,
        DEFAULT_MAX_BYTES,
        MAX_MAX_BYTES,
    )?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    // A fetch that may wait holds a place for as long as it (or its stream) lasts.
    let slot = if streaming || !wait.is_zero() {
        let client = waiting::WaitSlots::client(
            state.auth.enabled(),
            principal.as_ref().map(|Extension(principal)| principal),
            client.map(|Extension(ClientAddr(peer))| peer),
        );
        Some(state.waits.try_take(client)?)
    } else {
        None
    };
    let request = FetchRequest {
        topic,
        partition,
        offset,
        max_records,
        max_bytes,
        wait: if streaming { Duration::ZERO } else { wait },
        clamp: query.clamp,
    };
    let encoding: Encoding = query.encoding;
    // The first fetch answers before anything is streamed, so a bad offset or an unknown
    // topic is a plain error response with its status. The records read are reserved
    // from the request budget once there is something to read (a wait holds nothing), and
    // the answer's encoding on top of them before it is built.
    let (mut result, reservation) = state
        .broker
        .fetch_within(request.clone(), &state.budget)
        .await?;
    let _answer = reserve_answer(
        &state,
        &mut result,
        reservation,
        encoding,
        accept.contains(binary::CONTENT_TYPE),
    )?;
    let owner = owner_ref(&state, result.owner.as_deref());
    let owner_header = owner
        .as_ref()
        .and_then(|owner| HeaderValue::from_str(&owner.address).ok());
    let mut response = if streaming {
        let caller = super::stream::Caller {
            principal: principal.map(|Extension(principal)| principal),
            credential: credential.map(|Extension(credential)| credential),
        };
        super::stream::events(state, request, encoding, result, slot, caller)
    } else {
        let encoding_started = std::time::Instant::now();
        let response = if accept.contains(binary::CONTENT_TYPE) {
            let body = binary::encode_fetch(&binary_fetch(result));
            ([(header::CONTENT_TYPE, binary::CONTENT_TYPE)], body).into_response()
        } else {
            Json(json_fetch(result, encoding, owner)?).into_response()
        };
        state
            .broker
            .observe_fetch_encode(encoding_started.elapsed());
        response
    };
    if let Some(value) = owner_header {
        response.headers_mut().insert(OWNER_HEADER, value);
    }
    Ok(response)
}

/// Reserves what encoding `result` takes on top of the records already reserved, and
/// trims the answer to the records that fit in the budget (the client goes on from
/// `next_offset`); only a single record too large to encode at all is refused.
pub(super) fn reserve_answer(
    state: &AppState,
    result: &mut FetchResult,
    reservation: Option<Reservation>,
    encoding: Encoding,
    binary: bool,
) -> ApiResult<Option<Reservation>> {
    let Some(mut reservation) = reservation else {
        return Ok(None);
    };
    let limit = state.budget.limit();
    let mut bound = 0usize;
    let mut fits = 0usize;
    for fetched in &result.records {
        let next = bound + encoded_bound(&fetched.record, encoding, binary);
        if next > limit {
            break;
        }
        bound = next;
        fits += 1;
    }
    if fits == 0 && !result.records.is_empty() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "response_too_large",
            format!(
                "the record at offset {} would take more than the server's request memory \
                 ({limit} bytes) to encode as {}; fetch it with encoding=base64 or the \
                 binary framing",
                result.records[0].offset,
                encoding.as_str()
            ),
        ));
    }
    if fits < result.records.len() {
        result.records.truncate(fits);
        if let Some(last) = result.records.last() {
            result.next_offset = last.offset + 1;
        }
    }
    reservation.try_grow(bound)?;
    Ok(Some(reservation))
}

/// The most bytes one record can take while its answer is built: text as a JSON string
/// (six bytes for an escaped control character, two for a quote or backslash), base64 at
/// four for three, a JSON value as a parsed tree (32 bytes a node, one node for as little
/// as one byte of text); plus its offset, timestamp and field names.
pub(super) fn encoded_bound(record: &floe_core::Record, encoding: Encoding, binary: bool) -> usize {
    const PER_RECORD: usize = 160;
    const PER_HEADER: usize = 48;
    let field = |bytes: Option<&bytes::Bytes>| {
        let Some(bytes) = bytes else { return 0 };
        if binary {
            return bytes.len();
        }
        match encoding {
            Encoding::Text => bytes.len() + bytes.iter().map(|&b| escape_cost(b)).sum::<usize>(),
            Encoding::Base64 => bytes.len().div_ceil(3) * 4,
            Encoding::Json => bytes.len() * 32,
        }
    };
    PER_RECORD
        + field(record.key.as_ref())
        + field(record.value.as_ref())
        + record
            .headers
            .iter()
            .map(|header| PER_HEADER + header.name.len() * 6 + field(header.value.as_ref()))
            .sum::<usize>()
}

/// Bytes JSON adds to escape one byte of a string.
fn escape_cost(byte: u8) -> usize {
    match byte {
        b'"' | b'\\' => 1,
        0..0x20 => 5,
        _ => 0,
    }
}

/// `Last-Event-ID`, which must be an offset.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid_header",
            format!("Last-Event-ID {text:?} is not an offset"),
        )
    })
}

/// Where the owner of a partition is reached: its live registration (this broker when
/// embedded), if there is one.
pub(super) fn owner_ref(state: &AppState, owner: Option<&str>) -> Option<OwnerRef> {
    state
        .broker
        .sequencer()
        .membership()
        .owner_member(owner)
        .filter(|member| !member.advertise.is_empty())
        .map(|member| OwnerRef {
            broker: member.broker,
            address: member.advertise,
        })
}

pub(super) fn bounded_query(
    name: &str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> ApiResult<usize> {
    match value {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be at least 1"),
        )),
        Some(value) => Ok(value.min(max)),
    }
}

pub(super) fn json_fetch(
    result: FetchResult,
    encoding: Encoding,
    owner: Option<OwnerRef>,
) -> ApiResult<FetchResponse> {
    let records = result
        .records
        .into_iter()
        .map(|fetched| {
            let offset = fetched.offset;
            let record = fetched.record;
            let headers = headers_json(&record, encoding, offset)?;
            Ok(FetchedRecordJson {
                offset,
                timestamp: record.timestamp_ms,
                key: to_json(record.key.as_ref(), encoding, offset, "key")?,
                value: to_json(record.value.as_ref(), encoding, offset, "value")?,
                headers,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(FetchResponse {
        records,
        next_offset: result.next_offset,
        high_watermark: result.high_watermark,
        log_start_offset: result.log_start_offset,
        owner,
    })
}

/// A record's headers as JSON, each value in `encoding`.
pub(super) fn headers_json(
    record: &floe_core::Record,
    encoding: Encoding,
    offset: u64,
) -> ApiResult<Vec<HeaderJson>> {
    record
        .headers
        .iter()
        .map(|header| {
            Ok(HeaderJson {
                name: header.name.clone(),
                value: to_json(header.value.as_ref(), encoding, offset, "header")?,
            })
        })
        .collect()
}

fn binary_fetch(result: FetchResult) -> BinaryFetch {
    BinaryFetch {
        next_offset: result.next_offset,
        high_watermark: result.high_watermark,
        log_start_offset: result.log_start_offset,
        records: result
            .records
            .into_iter()
            .map(|fetched| BinaryRecord {
                partition: None,
                offset: fetched.offset,
                timestamp: Some(fetched.record.timestamp_ms),
                key: fetched.record.key,
                value: fetched.record.value,
                headers: fetched
                    .record
                    .headers
                    .into_iter()
                    .map(|h| (h.name, h.value))
                    .collect(),
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsQuery {
    at: String,
}

pub async fn offsets(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<OffsetsQuery>,
) -> ApiResult<Json<OffsetResponse>> {
    let (topic, partition) = path;
    checked_topic(&topic)?;
    let spec = match query.at.as_str() {
        "earliest" => OffsetSpec::Earliest,
        "latest" => OffsetSpec::Latest,
        timestamp => OffsetSpec::Timestamp(timestamp.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("at={timestamp:?}: expected earliest, latest or a timestamp in ms"),
            )
        })?),
    };
    let found = state.broker.lookup_offset(&topic, partition, spec).await?;
    Ok(Json(OffsetResponse {
        partition,
        offset: found.offset,
        timestamp: found.timestamp_ms,
    }))
}

#[cfg(test)]
mod tests {
    use floe_api::{ProduceResponse, RecordOffset};

    use super::*;

    fn serde_bytes(acks: &[RecordAck]) -> Vec<u8> {
        let offsets = acks
            .iter()
            .map(|ack| RecordOffset {
                partition: ack.partition,
                offset: ack.offset,
                timestamp: ack.timestamp_ms,
            })
            .collect();
        serde_json::to_vec(&ProduceResponse { offsets }).expect("serializes")
    }

    #[test]
    fn produce_answer_is_byte_for_byte_serde_json() {
        let edge = [
            (0, 0, 0),
            (u32::MAX, u64::MAX, i64::MAX),
            (7, 1 << 40, -1),
            (3, 12345, i64::MIN),
        ];
        let mut acks: Vec<RecordAck> = edge
            .iter()
            .map(|&(partition, offset, timestamp_ms)| RecordAck {
                partition,
                offset,
                timestamp_ms,
            })
            .collect();
        for (cut, _) in acks.clone().iter().enumerate() {
            assert_eq!(
                produce_response_json(&acks[..cut]),
                serde_bytes(&acks[..cut])
            );
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            acks.push(RecordAck {
                partition: (seed >> 40) as u32,
                offset: seed >> (seed % 64),
                timestamp_ms: seed as i64,
            });
        }
        let bytes = produce_response_json(&acks);
        assert_eq!(bytes, serde_bytes(&acks));
        let parsed: ProduceResponse = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(parsed.offsets.len(), acks.len());
    }
}
