//! The group consumer against a scripted stand-in for the server: what it sends, in which
//! order, when partitions move, when it is fenced and when it leaves. Real servers are
//! exercised by the workspace's `tests` package.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use floe_client::api::{
    AssignedPartition, CommitRequest, CommitResponse, ErrorBody, GroupRecordJson,
    GroupRecordsResponse, HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse,
    TopicPartition,
};
use floe_client::{FloeClient, GroupConsumer, GroupOptions};

/// One answer of the stand-in's records route.
#[derive(Debug)]
enum Answer {
    Records(Vec<GroupRecordJson>),
    Refuse(StatusCode, &'static str),
}

#[derive(Debug, Default)]
struct Script {
    epoch: u64,
    assignment: Vec<AssignedPartition>,
    /// The answers of the next records calls; once empty, calls wait and get nothing.
    answers: VecDeque<Answer>,
    /// What the member asked for, in order.
    log: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct StandIn(Arc<Mutex<Script>>);

impl StandIn {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log lines that start with one of `kinds`.
    fn log_of(&self, kinds: &[&str]) -> Vec<String> {
        self.script()
            .log
            .iter()
            .filter(|line| kinds.iter().any(|kind| line.starts_with(kind)))
            .cloned()
            .collect()
    }
}

fn names(partitions: impl IntoIterator<Item = (String, u32)>) -> String {
    partitions
        .into_iter()
        .map(|(topic, partition)| format!("{topic}/{partition}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn join(
    State(stand_in): State<StandIn>,
    Path(group): Path<String>,
    Json(request): Json<JoinRequest>,
) -> (StatusCode, Json<JoinResponse>) {
    let mut script = stand_in.script();
    let member_id = request.member_id.clone().unwrap_or_else(|| "m1".into());
    script.epoch += 1;
    script.log.push(format!(
        "join {group} {}",
        request.member_id.as_deref().unwrap_or("new")
    ));
    let answer = JoinResponse {
        member_id,
        member_epoch: script.epoch,
        heartbeat_interval_ms: 100,
        assignment: script.assignment.clone(),
    };
    (StatusCode::CREATED, Json(answer))
}

async fn heartbeat(
    State(stand_in): State<StandIn>,
    Path((_group, _member)): Path<(String, String)>,
    Json(request): Json<HeartbeatRequest>,
) -> Json<HeartbeatResponse> {
    let mut script = stand_in.script();
    let owned = names(request.owned.into_iter().map(|p| (p.topic, p.partition)));
    script.log.push(format!("heartbeat owned={owned}"));
    Json(HeartbeatResponse {
        member_epoch: script.epoch,
        heartbeat_interval_ms: 100,
        assignment: script.assignment.clone(),
    })
}

async fn records(
    State(stand_in): State<StandIn>,
    Path((_group, member)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<GroupRecordsResponse>, (StatusCode, Json<ErrorBody>)> {
    let (answer, epoch) = {
        let mut script = stand_in.script();
        let auto = query.get("commit").map_or("", |_| " commit=auto");
        script.log.push(format!("records {member}{auto}"));
        (script.answers.pop_front(), script.epoch)
    };
    let records = match answer {
        Some(Answer::Records(records)) => records,
        Some(Answer::Refuse(status, code)) => {
            let body = ErrorBody {
                error_code: code.into(),
                message: code.into(),
                ..ErrorBody::default()
            };
            return Err((status, Json(body)));
        }
        None => {
            let wait = query.get("wait_ms").and_then(|ms| ms.parse().ok());
            tokio::time::sleep(Duration::from_millis(wait.unwrap_or(100))).await;
            Vec::new()
        }
    };
    Ok(Json(GroupRecordsResponse {
        records,
        member_epoch: epoch,
        ack: 0,
    }))
}

async fn commit(
    State(stand_in): State<StandIn>,
    Path(_group): Path<String>,
    Json(request): Json<CommitRequest>,
) -> Json<CommitResponse> {
    let offsets = request
        .offsets
        .iter()
        .map(|o| format!("{}/{}={}", o.topic, o.partition, o.offset))
        .collect::<Vec<_>>()
        .join(",");
    let member = request.member_id.as_deref().unwrap_or("-");
    stand_in
        .script()
        .log
        .push(format!("commit {member} {offsets}"));
    Json(CommitResponse {
        committed: request.offsets.len(),
    })
}

async fn leave(
    State(stand_in): State<StandIn>,
    Path((_group, member)): Path<(String, String)>,
) -> StatusCode {
    stand_in.script().log.push(format!("leave {member}"));
    StatusCode::NO_CONTENT
}

async fn start(stand_in: &StandIn) -> FloeClient {
    let router = Router::new()
        .route("/v1/groups/{group}/members", post(join))
        .route(
            "/v1/groups/{group}/members/{member}/heartbeat",
            post(heartbeat),
        )
        .route("/v1/groups/{group}/members/{member}/records", get(records))
        .route("/v1/groups/{group}/members/{member}", delete(leave))
        .route("/v1/groups/{group}/offsets", post(commit))
        .with_state(stand_in.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    FloeClient::new(format!("http://{address}"))
}

fn assigned(topic: &str, partition: u32, offset: u64) -> AssignedPartition {
    AssignedPartition {
        topic: topic.into(),
        partition,
        offset,
    }
}

fn record(topic: &str, partition: u32, offset: u64) -> GroupRecordJson {
    GroupRecordJson {
        topic: topic.into(),
        partition,
        offset,
        timestamp: 0,
        key: None,
        value: Some(format!("{topic}/{partition}@{offset}").into()),
        headers: Vec::new(),
    }
}

fn held(consumer: &GroupConsumer) -> String {
    names(
        consumer
            .assignment()
            .into_iter()
            .map(|TopicPartition { topic, partition }| (topic, partition)),
    )
}

fn options(commit_every: Duration) -> GroupOptions {
    GroupOptions {
        commit_every,
        wait: Duration::from_millis(100),
        ..GroupOptions::new(["t"])
    }
}

/// Polls until the member holds `expected`; the heartbeat task brings the change.
async fn poll_until_held(consumer: &mut GroupConsumer, expected: &str) {
    for _ in 0..100 {
        consumer.poll().await.expect("poll");
        if held(consumer) == expected {
            return;
        }
    }
    panic!("the member holds {} rather than {expected}", held(consumer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_is_committed_and_acknowledged_before_the_next_read() {
    let stand_in = StandIn::default();
    {
        let mut script = stand_in.script();
        script.assignment = vec![assigned("t", 0, 5), assigned("t", 1, 0)];
        script.answers.push_back(Answer::Records(vec![
            record("t", 0, 5),
            record("t", 0, 6),
            record("t", 1, 0),
            record("u", 9, 0),
        ]));
    }
    let client = start(&stand_in).await;
    let mut consumer = client
        .group_consumer("my group", options(Duration::from_secs(3600)))
        .await
        .expect("join");
    assert_eq!(held(&consumer), "t/0,t/1");

    let first = consumer.poll().await.expect("poll");
    let offsets: Vec<String> = first
        .iter()
        .map(|r| format!("{}/{}@{}", r.topic, r.partition, r.offset))
        .collect();
    assert_eq!(
        offsets,
        ["t/0@5", "t/0@6", "t/1@0"],
        "u/9 is not held: dropped"
    );

    {
        let mut script = stand_in.script();
        script.assignment = vec![assigned("t", 1, 0), assigned("t", 2, 3)];
        script.epoch += 1;
    }
    poll_until_held(&mut consumer, "t/1,t/2").await;

    let log = stand_in.log_of(&["join", "commit", "heartbeat", "records"]);
    assert_eq!(log[0], "join my group new");
    let commit = log
        .iter()
        .position(|line| line.starts_with("commit"))
        .expect("the revoked partition is committed");
    assert_eq!(
        log[commit], "commit m1 t/0=7",
        "only the revoked partition, one past its last record"
    );
    // t/2 may already be held when t/0 is released: the heartbeat only has to leave t/0 out.
    let release = log
        .iter()
        .position(|line| line.starts_with("heartbeat") && !line.contains("t/0"))
        .expect("a heartbeat acknowledges the release");
    let next_read = log[commit..]
        .iter()
        .position(|line| line.starts_with("records"))
        .map(|at| commit + at)
        .expect("a read after the release");
    assert!(
        commit < release && release < next_read,
        "commit, then acknowledge, then read: {log:?}"
    );
    consumer.leave().await.expect("leave");
    let last = stand_in.log_of(&["commit", "leave"]);
    assert_eq!(
        last[last.len() - 2..],
        ["commit m1 t/1=1,t/2=3", "leave m1"],
        "leaving commits every held partition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_member_rejoins_under_its_id_and_restarts_from_the_join() {
    let stand_in = StandIn::default();
    {
        let mut script = stand_in.script();
        script.assignment = vec![assigned("t", 0, 0)];
        script
            .answers
            .push_back(Answer::Records(vec![record("t", 0, 0), record("t", 0, 1)]));
        script
            .answers
            .push_back(Answer::Refuse(StatusCode::NOT_FOUND, "unknown_member"));
    }
    let client = start(&stand_in).await;
    let mut consumer = client
        .group_consumer("g", options(Duration::from_secs(3600)))
        .await
        .expect("join");
    assert_eq!(consumer.poll().await.expect("poll").len(), 2);
    stand_in.script().assignment = vec![assigned("t", 0, 2)];
    assert!(
        consumer.poll().await.expect("fenced poll").is_empty(),
        "a fenced member returns nothing"
    );
    consumer.poll().await.expect("poll after rejoining");
    assert_eq!(consumer.member_id(), "m1");
    assert_eq!(consumer.member_epoch(), 2);
    assert_eq!(held(&consumer), "t/0");
    consumer.leave().await.expect("leave");
    assert_eq!(
        stand_in.log_of(&["join", "commit", "leave"]),
        ["join g new", "join g m1", "commit m1 t/0=2", "leave m1"],
        "positions restart from the join: leaving commits the join's offset, nothing of \
         the lost session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_commits_ride_on_the_records_call() {
    let stand_in = StandIn::default();
    {
        let mut script = stand_in.script();
        script.assignment = vec![assigned("t", 0, 0)];
        script
            .answers
            .push_back(Answer::Records(vec![record("t", 0, 0)]));
    }
    let client = start(&stand_in).await;
    let mut consumer = client
        .group_consumer("g", options(Duration::ZERO))
        .await
        .expect("join");
    assert_eq!(consumer.poll().await.expect("poll").len(), 1);
    assert!(consumer.poll().await.expect("poll").is_empty());
    consumer.leave().await.expect("leave");
    assert_eq!(
        stand_in.log_of(&["records", "commit", "leave"]),
        [
            "records m1 commit=auto",
            "records m1 commit=auto",
            "commit m1 t/0=1",
            "leave m1"
        ],
        "the second call committed the first's record; leaving commits the held position \
         again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_commit_only_an_explicit_commit_commits() {
    let stand_in = StandIn::default();
    {
        let mut script = stand_in.script();
        script.assignment = vec![assigned("t", 0, 4)];
        script
            .answers
            .push_back(Answer::Records(vec![record("t", 0, 4), record("t", 0, 5)]));
    }
    let client = start(&stand_in).await;
    let mut options = options(Duration::ZERO);
    options.auto_commit = false;
    let mut consumer = client.group_consumer("g", options).await.expect("join");
    assert_eq!(consumer.poll().await.expect("poll").len(), 2);
    consumer.commit().await.expect("commit");
    consumer
        .commit()
        .await
        .expect("a commit of nothing sends nothing");
    assert!(consumer.poll().await.expect("poll").is_empty());
    consumer.leave().await.expect("leave");
    assert_eq!(
        stand_in.log_of(&["records", "commit", "leave"]),
        ["records m1", "commit m1 t/0=6", "records m1", "leave m1"]
    );
}
