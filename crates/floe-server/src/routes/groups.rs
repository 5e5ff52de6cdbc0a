//! Consumer group routes (`/v1/groups`). Calls about one group are served by its
//! coordinator; any other broker forwards them there ([`to_coordinator`]).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use floe_api::{
    AssignedPartition, CommitRequest, CommitResponse, Encoding, GroupDescription,
    GroupOffsetsResponse, GroupRecordJson, GroupRecordsResponse, GroupSummary, HeartbeatRequest,
    HeartbeatResponse, JoinRequest, JoinResponse, MemberDescription, PartitionOffsets,
    ResetOffsetsRequest, TopicPartition,
};
use floe_broker::{GroupFetch, GroupPartition, JoinSpec, MemberView, OffsetToCommit, ResetTarget};
use floe_core::{Operation, ResourceKind, validate_group_name, validate_member_id};
use floe_sequencer::OffsetReset;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{ApiPath, ApiQuery, RawBody};
use super::waiting::{self, ClientAddr};
use super::{AppState, json_body};
use crate::auth::Principal;
use crate::codec::to_json;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Marks a request one broker forwarded to the group's coordinator: it is served where it
/// lands, so two brokers with different views of the cluster cannot bounce it.
pub const FORWARDED_HEADER: &str = "x-floe-forwarded-by";
/// How long a forwarded call may take: a member's long-poll waits up to a minute.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(75);
const MAX_WAIT: Duration = Duration::from_secs(60);

fn checked_group(group: &str) -> ApiResult<()> {
    validate_group_name(group)
        .map_err(|error| ApiError::bad_request("invalid_group_name", error.to_string()))
}

fn checked_member(member: &str) -> ApiResult<()> {
    validate_member_id(member)
        .map_err(|error| ApiError::bad_request("invalid_member_id", error.to_string()))
}

/// Forwards a call about one group to its coordinator, unless this broker is it (or the
/// call was forwarded already). The answer comes back as the coordinator gave it.
pub async fn to_coordinator(
    State(state): State<AppState>,
    ApiPath(params): ApiPath<BTreeMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(group) = params.get("group") else {
        return next.run(request).await;
    };
    // The marker counts only with the cluster's credential: a client cannot make a broker
    // that is not the coordinator serve the group.
    let forwarded = request.headers().contains_key(FORWARDED_HEADER)
        && state.internal_secret.as_ref().is_none_or(|secret| {
            request
                .headers()
                .get(crate::cluster::CLUSTER_SECRET_HEADER)
                .is_some_and(|presented| {
                    crate::routes::internal::constant_time_eq(
                        presented.as_bytes(),
                        secret.as_bytes(),
                    )
                })
        });
    if forwarded || state.broker.coordinates(group) {
        return next.run(request).await;
    }
    let Some(coordinator) = state.broker.group_coordinator(group) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no live broker can coordinate the group yet; retry shortly",
        )
        .with_retry_after(Duration::from_secs(1))
        .into_response();
    };
    match forward(&state, &coordinator.advertise, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward(state: &AppState, address: &str, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.max_request_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("bodies are limited to {} bytes", state.max_request_bytes),
            )
        })?;
    let _held = state.budget.try_reserve(body.len())?;
    let base = if address.contains("://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("http://{address}")
    };
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let url = format!("{base}{path}");
    let mut outgoing = state
        .forwarder
        .request(parts.method.clone(), &url)
        .header(
            FORWARDED_HEADER,
            state.broker.sequencer().membership().broker(),
        )
        .header(
            crate::cluster::CLUSTER_SECRET_HEADER,
            state.internal_secret.as_deref().unwrap_or_default(),
        )
        .timeout(FORWARD_TIMEOUT)
        .body(body);
    // The coordinator authenticates and authorises the caller again.
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let unreachable = |why: String| {
        tracing::warn!(url, why, "group coordinator unreachable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the group's coordinator did not answer; retry shortly",
        )
        .with_retry_after(Duration::from_secs(1))
    };
    let answer = outgoing
        .send()
        .await
        .map_err(|error| unreachable(error.to_string()))?;
    let status = answer.status();
    let mut headers = axum::http::HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(value) = answer.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    // The answer is held whole before it is passed on: its declared length is reserved
    // from the request budget first, and what arrives beyond it as it arrives.
    let declared = answer
        .content_length()
        .and_then(|length| usize::try_from(length).ok())
        .unwrap_or(0);
    let mut held = state.budget.try_reserve(declared)?;
    let mut bytes = bytes::BytesMut::with_capacity(declared);
    let mut answer = answer;
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|error| unreachable(error.to_string()))?
    {
        if bytes.len() + chunk.len() > declared {
            held.try_grow(bytes.len() + chunk.len() - declared.max(bytes.len()))?;
        }
        bytes.extend_from_slice(&chunk);
    }
    let bytes = bytes.freeze();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if !status.is_success() {
        // The coordinator counted the error under its code; here it is only passed on.
        response.extensions_mut().insert(ErrorCode::FORWARDED);
    }
    Ok(response)
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<floe_api::GroupList> {
    let groups = state
        .broker
        .list_groups()
        .into_iter()
        .filter(|group| {
            state.auth.may(
                &principal,
                Operation::Describe,
                ResourceKind::Group,
                &group.name,
            )
        })
        .map(|group| GroupSummary {
            group: group.name,
            state: group.state.as_str().to_owned(),
            members: group.members,
            generation: group.generation,
        })
        .collect();
    Json(floe_api::GroupList { groups })
}

pub async fn describe(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<Json<GroupDescription>> {
    checked_group(&group)?;
    let described = state.broker.describe_group(&group).await?;
    let pairs = |list: Vec<(String, u32)>| {
        list.into_iter()
            .map(|(topic, partition)| TopicPartition { topic, partition })
            .collect::<Vec<_>>()
    };
    Ok(Json(GroupDescription {
        group: described.summary.name,
        state: described.summary.state.as_str().to_owned(),
        generation: described.summary.generation,
        coordinator: described.coordinator,
        members: described
            .members
            .into_iter()
            .map(|member| MemberDescription {
                member_id: member.member_id,
                member_epoch: member.member_epoch,
                topics: member.topics,
                session_timeout_ms: member.session_timeout_ms,
                assignment: pairs(member.owned),
                revoking: pairs(member.revoking),
            })
            .collect(),
        offsets: described.offsets.into_iter().map(offsets_json).collect(),
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<StatusCode> {
    checked_group(&group)?;
    state.broker.delete_group(&group).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn offset_reset(value: Option<&str>) -> ApiResult<OffsetReset> {
    match value {
        None | Some("latest") => Ok(OffsetReset::Latest),
        Some("earliest") => Ok(OffsetReset::Earliest),
        Some(other) => Err(ApiError::unprocessable(
            "invalid_request",
            format!("auto_offset_reset {other:?}: expected earliest or latest"),
        )),
    }
}

fn assignment_json(view: &MemberView) -> Vec<AssignedPartition> {
    view.assignment
        .iter()
        .map(|assigned| AssignedPartition {
            topic: assigned.topic.clone(),
            partition: assigned.partition,
            offset: assigned.offset,
        })
        .collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub async fn join(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(group): ApiPath<String>,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<JoinResponse>)> {
    checked_group(&group)?;
    let request: JoinRequest = json_body(&body.bytes)?;
    // A member reads the topics it subscribes to (Kafka checks READ on each topic).
    for topic in &request.topics {
        state
            .auth
            .check(&principal, Operation::Read, ResourceKind::Topic, topic)?;
    }
    if let Some(member) = &request.member_id {
        checked_member(member)?;
    }
    if request.topics.len() > 1_000 {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "a member subscribes to at most 1000 topics",
        ));
    }
    let spec = JoinSpec {
        topics: request.topics,
        session_timeout: request.session_timeout_ms.map(Duration::from_millis),
        rebalance_timeout: request.rebalance_timeout_ms.map(Duration::from_millis),
        auto_offset_reset: offset_reset(request.auto_offset_reset.as_deref())?,
        member_id: request.member_id,
    };
    let view = state.broker.join_group(&group, spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(JoinResponse {
            assignment: assignment_json(&view),
            member_id: view.member_id,
            member_epoch: view.member_epoch,
            heartbeat_interval_ms: millis(view.heartbeat_interval),
        }),
    ))
}

pub async fn heartbeat(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath((group, member)): ApiPath<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<HeartbeatResponse>> {
    checked_group(&group)?;
    checked_member(&member)?;
    check_member_topics(&state, &principal, &group, &member)?;
    let request: HeartbeatRequest = json_body(&body.bytes)?;
    let owned: Vec<(String, u32)> = request
        .owned
        .into_iter()
        .map(|owned| (owned.topic, owned.partition))
        .collect();
    let view = state
        .broker
        .heartbeat(&group, &member, request.member_epoch, &owned)
        .await?;
    Ok(Json(HeartbeatResponse {
        assignment: assignment_json(&view),
        member_epoch: view.member_epoch,
        heartbeat_interval_ms: millis(view.heartbeat_interval),
    }))
}

pub async fn leave(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath((group, member)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    checked_group(&group)?;
    checked_member(&member)?;
    check_member_topics(&state, &principal, &group, &member)?;
    state.broker.leave_group(&group, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
    #[serde(default)]
    encoding: Encoding,
    /// `auto`: commit what the previous call returned before reading.
    commit: Option<String>,
    /// The `ack` of the last answer received.
    ack: Option<u64>,
    /// The member epoch whose assignment the member has applied.
    member_epoch: Option<u64>,
}

/// Kafka checks READ on the topics of every fetch and commit, not only at the join: a
/// member's calls need READ on each topic it subscribes to (so a principal that lost a
/// topic's ACL, or that names another principal's member, reads nothing of it).
fn check_member_topics(
    state: &AppState,
    principal: &Principal,
    group: &str,
    member: &str,
) -> ApiResult<()> {
    if !state.auth.enabled() {
        return Ok(());
    }
    let topics = state.broker.sequencer().read(|cluster| {
        cluster
            .group(group)
            .and_then(|state| state.members.get(member))
            .map(|member| member.topics.clone())
            .unwrap_or_default()
    });
    for topic in &topics {
        state
            .auth
            .check(principal, Operation::Read, ResourceKind::Topic, topic)?;
    }
    Ok(())
}

pub async fn records(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath((group, member)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<RecordsQuery>,
    client: Option<Extension<ClientAddr>>,
) -> ApiResult<Json<GroupRecordsResponse>> {
    checked_group(&group)?;
    checked_member(&member)?;
    check_member_topics(&state, &principal, &group, &member)?;
    let commit_previous = match query.commit.as_deref() {
        None => false,
        Some("auto") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("commit={other:?}: the only value is auto"),
            ));
        }
    };
    let max_records = super::records::bounded_query(
        "max_records",
        query.max_records,
        super::records::DEFAULT_MAX_RECORDS,
        super::records::MAX_MAX_RECORDS,
    )?;
    let max_bytes = super::records::bounded_query(
        "max_bytes",
        query.max_bytes,
        super::records::DEFAULT_MAX_BYTES,
        super::records::MAX_MAX_BYTES,
    )?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let _slot = if wait.is_zero() {
        None
    } else {
        let client = waiting::WaitSlots::client(
            state.auth.enabled(),
            Some(&principal),
            client.map(|Extension(ClientAddr(peer))| peer),
        );
        Some(state.waits.try_take(client)?)
    };
    let fetch = GroupFetch {
        max_records,
        max_bytes,
        wait,
        commit_previous,
        ack: query.ack,
        member_epoch: query.member_epoch,
    };
    let read = state
        .broker
        .group_records(&group, &member, fetch, &state.budget)
        .await?;
    let (records, member_epoch, answer, mut reservations) = (
        read.records,
        read.member_epoch,
        read.answer,
        read.reservations,
    );
    // The answer's encoding is reserved on top of the records before it is built.
    let bound: usize = records
        .iter()
        .map(|record| super::records::encoded_bound(&record.record.record, query.encoding, false))
        .sum();
    match reservations.first_mut() {
        Some(reservation) => reservation.try_grow(bound)?,
        None if bound > 0 => reservations.push(state.budget.try_reserve(bound)?),
        None => {}
    }
    let encoding = query.encoding;
    let records = records
        .into_iter()
        .map(|read| {
            let offset = read.record.offset;
            let record = read.record.record;
            let headers = super::records::headers_json(&record, encoding, offset)?;
            Ok(GroupRecordJson {
                topic: read.topic,
                partition: read.partition,
                offset,
                timestamp: record.timestamp_ms,
                key: to_json(record.key.as_ref(), encoding, offset, "key")?,
                value: to_json(record.value.as_ref(), encoding, offset, "value")?,
                headers,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(GroupRecordsResponse {
        records,
        member_epoch,
        ack: answer,
    }))
}

pub async fn commit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(group): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Json<CommitResponse>> {
    checked_group(&group)?;
    let request: CommitRequest = json_body(&body.bytes)?;
    let member = match (request.member_id, request.member_epoch) {
        (Some(member), Some(epoch)) => {
            checked_member(&member)?;
            Some((member, epoch))
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "member_id and member_epoch go together (or neither, for a simple commit)",
            ));
        }
    };
    if request.offsets.len() > floe_sequencer::MAX_PARTITIONS as usize {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "too many offsets in one commit",
        ));
    }
    let offsets = request
        .offsets
        .into_iter()
        .map(|offset| {
            super::checked_topic(&offset.topic)?;
            state.auth.check(
                &principal,
                Operation::Read,
                ResourceKind::Topic,
                &offset.topic,
            )?;
            Ok(OffsetToCommit {
                topic: offset.topic,
                partition: offset.partition,
                offset: offset.offset,
                metadata: offset.metadata.unwrap_or_default(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let committed = state.broker.commit_offsets(&group, member, offsets).await?;
    Ok(Json(CommitResponse { committed }))
}

fn offsets_json(partition: GroupPartition) -> PartitionOffsets {
    let (committed_offset, metadata) = match partition.committed {
        Some((offset, metadata)) => (Some(offset), Some(metadata).filter(|m| !m.is_empty())),
        None => (None, None),
    };
    PartitionOffsets {
        topic: partition.topic,
        partition: partition.partition,
        committed_offset,
        metadata,
        log_start_offset: partition.log_start_offset,
        high_watermark: partition.high_watermark,
        lag: partition.lag,
        member_id: partition.member,
    }
}

pub async fn offsets(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<Json<GroupOffsetsResponse>> {
    checked_group(&group)?;
    let offsets = state.broker.group_offsets(&group)?;
    Ok(Json(GroupOffsetsResponse {
        group,
        offsets: offsets.into_iter().map(offsets_json).collect(),
    }))
}

pub async fn reset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(group): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Json<GroupOffsetsResponse>> {
    checked_group(&group)?;
    let request: ResetOffsetsRequest = json_body(&body.bytes)?;
    super::checked_topic(&request.topic)?;
    state.auth.check(
        &principal,
        Operation::Read,
        ResourceKind::Topic,
        &request.topic,
    )?;
    let target = reset_target(&request.to)?;
    let offsets = state
        .broker
        .reset_offsets(&group, &request.topic, target)
        .await?;
    Ok(Json(GroupOffsetsResponse {
        group,
        offsets: offsets.into_iter().map(offsets_json).collect(),
    }))
}

fn reset_target(to: &Value) -> ApiResult<ResetTarget> {
    let invalid = || {
        ApiError::unprocessable(
            "invalid_request",
            "to: expected \"earliest\", \"latest\", a timestamp in ms, or {\"<partition>\": offset}",
        )
    };
    match to {
        Value::String(text) if text == "earliest" => Ok(ResetTarget::Earliest),
        Value::String(text) if text == "latest" => Ok(ResetTarget::Latest),
        Value::String(text) => text
            .parse::<i64>()
            .map(ResetTarget::Timestamp)
            .map_err(|_| invalid()),
        Value::Number(number) => number
            .as_i64()
            .map(ResetTarget::Timestamp)
            .ok_or_else(invalid),
        Value::Object(map) => map
            .iter()
            .map(|(partition, offset)| {
                Ok((
                    partition.parse::<u32>().map_err(|_| invalid())?,
                    offset.as_u64().ok_or_else(invalid)?,
                ))
            })
            .collect::<ApiResult<BTreeMap<u32, u64>>>()
            .map(ResetTarget::Offsets),
        _ => Err(invalid()),
    }
}
