//! Consumer groups through the HTTP API of real `floe` processes: the protocol as a
//! client without floe's libraries speaks it, and every bad input refused with nothing
//! changed.

use std::time::Duration;

use floe_tests::{FloeProcess, create_topic};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &FloeProcess) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.url.clone(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Asserts a refusal with `status` and `code`.
    async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        code: &str,
    ) {
        let (got, value) = self.call(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        assert_eq!(value["error_code"], code, "{method} {path}: {value}");
        assert!(
            value["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{value}"
        );
    }

    async fn produce(&self, topic: &str, partition: u32, count: usize) {
        let records: Vec<Value> = (0..count)
            .map(|i| json!({"value": format!("v{i}")}))
            .collect();
        self.ok(
            Method::POST,
            &format!("/v1/topics/{topic}/partitions/{partition}/records"),
            Some(json!({ "records": records })),
        )
        .await;
    }
}

fn owned(answer: &Value) -> Vec<Value> {
    answer["assignment"]
        .as_array()
        .expect("assignment")
        .iter()
        .map(|a| json!({"topic": a["topic"], "partition": a["partition"]}))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_group_protocol_over_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let api = Api::new(&server);
    create_topic(&server.client(), "t", 4).await;
    for partition in 0..4 {
        api.produce("t", partition, 10).await;
    }

    // The first member gets every partition, from the earliest offset.
    let a = api
        .ok(
            Method::POST,
            "/v1/groups/readers/members",
            Some(json!({"topics": ["t"], "auto_offset_reset": "earliest", "session_timeout_ms": 30000})),
        )
        .await;
    let a_id = a["member_id"].as_str().expect("member id").to_owned();
    assert_eq!(a["assignment"].as_array().map(Vec::len), Some(4));
    assert!(
        a["assignment"]
            .as_array()
            .expect("list")
            .iter()
            .all(|p| p["offset"] == 0)
    );
    assert!(
        a["heartbeat_interval_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 10_000)
    );

    // It reads all four partitions through the member route, then auto-commits them.
    let records = api
        .ok(
            Method::GET,
            &format!("/v1/groups/readers/members/{a_id}/records?max_records=100"),
            None,
        )
        .await;
    assert_eq!(records["records"].as_array().map(Vec::len), Some(40));
    api.ok(
        Method::GET,
        &format!("/v1/groups/readers/members/{a_id}/records?commit=auto"),
        None,
    )
    .await;
    let offsets = api
        .ok(Method::GET, "/v1/groups/readers/offsets", None)
        .await;
    let lags: Vec<u64> = offsets["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|p| p["lag"].as_u64().expect("lag"))
        .collect();
    assert_eq!(lags, vec![0, 0, 0, 0], "{offsets}");

    // A second member joins: nothing is free until a heartbeats without what it gives up.
    let b = api
        .ok(
            Method::POST,
            "/v1/groups/readers/members",
            Some(json!({"topics": ["t"]})),
        )
        .await;
    let b_id = b["member_id"].as_str().expect("member id").to_owned();
    assert_eq!(b["assignment"].as_array().map(Vec::len), Some(0));
    let heartbeat = |id: &str, epoch: &Value, owned: Vec<Value>| {
        (
            format!("/v1/groups/readers/members/{id}/heartbeat"),
            json!({"member_epoch": epoch, "owned": owned}),
        )
    };
    let (path, body) = heartbeat(&a_id, &a["member_epoch"], owned(&a));
    let a2 = api.ok(Method::POST, &path, Some(body)).await;
    assert_eq!(owned(&a2).len(), 2, "a is asked to give two back: {a2}");
    let (path, body) = heartbeat(&a_id, &a2["member_epoch"], owned(&a2));
    let a3 = api.ok(Method::POST, &path, Some(body)).await;
    let (path, body) = heartbeat(&b_id, &b["member_epoch"], vec![]);
    let b2 = api.ok(Method::POST, &path, Some(body)).await;
    assert_eq!(owned(&b2).len(), 2, "b gets what a released: {b2}");
    assert!(
        b2["assignment"]
            .as_array()
            .expect("list")
            .iter()
            .all(|p| p["offset"] == 10)
    );

    let described = api.ok(Method::GET, "/v1/groups/readers", None).await;
    assert_eq!(described["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(described["state"], "stable");
    let listed = api.ok(Method::GET, "/v1/groups", None).await;
    assert_eq!(listed["groups"][0]["group"], "readers");
    assert_eq!(listed["groups"][0]["members"], 2);

    // Metrics in kafka_exporter's names.
    let members = server
        .metric("kafka_consumergroup_members{consumergroup=\"readers\"}")
        .await;
    assert_eq!(members, 2.0);
    let lag = server
        .metric("kafka_consumergroup_lag{consumergroup=\"readers\",topic=\"t\",partition=\"0\"}")
        .await;
    assert_eq!(lag, 0.0);

    // Fencing: a's old epoch claiming what it gave away, an epoch from the future, a
    // commit of a partition a does not own, a simple commit while members exist.
    let (path, body) = heartbeat(&a_id, &a["member_epoch"], owned(&a));
    api.refused(
        Method::POST,
        &path,
        Some(body),
        StatusCode::CONFLICT,
        "stale_member_epoch",
    )
    .await;
    let future = json!(a3["member_epoch"].as_u64().expect("epoch") + 1);
    let (path, body) = heartbeat(&a_id, &future, owned(&a3));
    api.refused(
        Method::POST,
        &path,
        Some(body),
        StatusCode::CONFLICT,
        "stale_member_epoch",
    )
    .await;
    let b_partition = owned(&b2)[0]["partition"].clone();
    let commit = |id: &str, epoch: &Value, partition: &Value, offset: u64| {
        json!({"member_id": id, "member_epoch": epoch,
               "offsets": [{"topic": "t", "partition": partition, "offset": offset}]})
    };
    let before = api
        .ok(Method::GET, "/v1/groups/readers/offsets", None)
        .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/offsets",
        Some(commit(&a_id, &a3["member_epoch"], &b_partition, 1)),
        StatusCode::CONFLICT,
        "partition_not_owned",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/offsets",
        Some(json!({"offsets": [{"topic": "t", "partition": 0, "offset": 1}]})),
        StatusCode::CONFLICT,
        "group_not_empty",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/offsets",
        Some(commit(&b_id, &b2["member_epoch"], &b_partition, 11)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "offset_beyond_end",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/offsets/reset",
        Some(json!({"topic": "t", "to": "earliest"})),
        StatusCode::CONFLICT,
        "group_not_empty",
    )
    .await;
    api.refused(
        Method::DELETE,
        "/v1/groups/readers",
        None,
        StatusCode::CONFLICT,
        "group_not_empty",
    )
    .await;
    // Unknown group, unknown member, bad names and bodies.
    api.refused(
        Method::GET,
        "/v1/groups/nobody",
        None,
        StatusCode::NOT_FOUND,
        "unknown_group",
    )
    .await;
    api.refused(
        Method::GET,
        "/v1/groups/nobody/offsets",
        None,
        StatusCode::NOT_FOUND,
        "unknown_group",
    )
    .await;
    let (path, body) = heartbeat("stranger", &json!(1), vec![]);
    api.refused(
        Method::POST,
        &path,
        Some(body),
        StatusCode::NOT_FOUND,
        "unknown_member",
    )
    .await;
    let long = "g".repeat(250);
    api.refused(
        Method::GET,
        &format!("/v1/groups/{long}"),
        None,
        StatusCode::BAD_REQUEST,
        "invalid_group_name",
    )
    .await;
    api.refused(
        Method::GET,
        "/v1/groups/bell%07",
        None,
        StatusCode::BAD_REQUEST,
        "invalid_group_name",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/members",
        Some(json!({"topics": ["nope"]})),
        StatusCode::NOT_FOUND,
        "unknown_topic",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/members",
        Some(json!({"topics": ["t"], "auto_offset_reset": "middle"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/members",
        Some(json!({"topics": ["t"], "session_timeout_ms": 1})),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    api.refused(
        Method::POST,
        "/v1/groups/readers/members",
        Some(json!({"topics": ["t"], "bogus": 1})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    api.refused(
        Method::GET,
        &format!("/v1/groups/readers/members/{a_id}/records?commit=sometimes"),
        None,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    let after = api
        .ok(Method::GET, "/v1/groups/readers/offsets", None)
        .await;
    assert_eq!(before, after, "refusals changed nothing");
    let described_after = api.ok(Method::GET, "/v1/groups/readers", None).await;
    assert_eq!(described_after["members"].as_array().map(Vec::len), Some(2));

    // Leaving frees partitions at once; an empty group takes simple commits and resets,
    // then can be deleted.
    api.ok(
        Method::DELETE,
        &format!("/v1/groups/readers/members/{a_id}"),
        None,
    )
    .await;
    api.ok(
        Method::DELETE,
        &format!("/v1/groups/readers/members/{b_id}"),
        None,
    )
    .await;
    let (path, body) = heartbeat(&b_id, &b2["member_epoch"], vec![]);
    api.refused(
        Method::POST,
        &path,
        Some(body),
        StatusCode::CONFLICT,
        "unknown_member",
    )
    .await;
    let reset = api
        .ok(
            Method::POST,
            "/v1/groups/readers/offsets/reset",
            Some(json!({"topic": "t", "to": {"0": 3, "1": 4}})),
        )
        .await;
    assert_eq!(reset["offsets"][0]["committed_offset"], 3);
    assert_eq!(reset["offsets"][1]["lag"], 6);
    api.ok(
        Method::POST,
        "/v1/groups/readers/offsets",
        Some(json!({"offsets": [{"topic": "t", "partition": 2, "offset": 5, "metadata": "by hand"}]})),
    )
    .await;
    let offsets = api
        .ok(Method::GET, "/v1/groups/readers/offsets", None)
        .await;
    assert_eq!(offsets["offsets"][2]["metadata"], "by hand");
    api.ok(Method::DELETE, "/v1/groups/readers", None).await;
    api.refused(
        Method::GET,
        "/v1/groups/readers",
        None,
        StatusCode::NOT_FOUND,
        "unknown_group",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_a_kill_and_expired_members_are_told_to_rejoin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = FloeProcess::start(dir.path(), &[]);
    let api = Api::new(&server);
    create_topic(&server.client(), "t", 2).await;
    api.produce("t", 0, 5).await;
    let a = api
        .ok(
            Method::POST,
            "/v1/groups/g/members",
            Some(json!({"topics": ["t"], "session_timeout_ms": 1500})),
        )
        .await;
    let id = a["member_id"].as_str().expect("id").to_owned();
    api.ok(
        Method::POST,
        "/v1/groups/g/offsets",
        Some(json!({"member_id": id, "member_epoch": a["member_epoch"],
                    "offsets": [{"topic": "t", "partition": 0, "offset": 4, "metadata": "m"}]})),
    )
    .await;
    // Silent past its session: removed, and told so (409, not 404) when it comes back.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    api.refused(
        Method::POST,
        &format!("/v1/groups/g/members/{id}/heartbeat"),
        Some(json!({"member_epoch": a["member_epoch"], "owned": owned(&a)})),
        StatusCode::CONFLICT,
        "unknown_member",
    )
    .await;
    let described = api.ok(Method::GET, "/v1/groups/g", None).await;
    assert_eq!(described["state"], "empty");

    server.kill();
    let server = FloeProcess::start(dir.path(), &[]);
    let api = Api::new(&server);
    let offsets = api.ok(Method::GET, "/v1/groups/g/offsets", None).await;
    assert_eq!(offsets["offsets"][0]["committed_offset"], 4);
    assert_eq!(offsets["offsets"][0]["metadata"], "m");
    assert_eq!(offsets["offsets"][0]["lag"], 1);
    // A new member starts where the group left off.
    let b = api
        .ok(
            Method::POST,
            "/v1/groups/g/members",
            Some(json!({"topics": ["t"]})),
        )
        .await;
    let p0 = b["assignment"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["partition"] == 0)
        .cloned()
        .expect("partition 0");
    assert_eq!(p0["offset"], 4);
}
