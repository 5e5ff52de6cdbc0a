//! Every kind of bad input gets the right 4xx with the error shape, changes nothing (no
//! topic, config, offset or record differs afterwards), and the server stays up; garbage
//! that happens to be well-formed is stored exactly as given.

use std::collections::BTreeMap;

use bytes::Bytes;
use floe_client::api::{CreateTopicRequest, ErrorBody, HeaderJson, ProduceRecordJson};
use floe_client::binary::BinaryRecord;
use floe_client::{Encoding, FetchOptions, FloeClient};
use floe_core::Clock;
use floe_tests::FloeProcess;
use reqwest::Method;
use serde_json::Value;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
        status,
        code,
    }
}

/// What bad input must leave as it was: each topic, its config, and per partition its log
/// start offset, high watermark and records.
#[derive(Debug, PartialEq)]
struct TopicState {
    name: String,
    id: u64,
    created_ms: i64,
    config: Value,
    partitions: Vec<PartitionState>,
}

#[derive(Debug, PartialEq)]
struct PartitionState {
    log_start_offset: u64,
    high_watermark: u64,
    /// Every record from the log start to the high watermark, read back byte for byte.
    records: Vec<BinaryRecord>,
}

async fn snapshot(client: &FloeClient) -> Vec<TopicState> {
    let mut state = Vec::new();
    for topic in client.list_topics().await.expect("list").topics {
        let described = client.describe_topic(&topic.name).await.expect("describe");
        let mut partitions = Vec::new();
        for partition in &described.partitions {
            let records = read_records(
                client,
                &topic.name,
                partition.partition,
                partition.log_start_offset,
                partition.high_watermark,
            )
            .await;
            partitions.push(PartitionState {
                log_start_offset: partition.log_start_offset,
                high_watermark: partition.high_watermark,
                records,
            });
        }
        state.push(TopicState {
            name: topic.name,
            id: described.id,
            created_ms: described.created_ms,
            config: described.config,
            partitions,
        });
    }
    state
}

/// The records of a partition from `from` to `to`, in the binary framing (exact bytes).
async fn read_records(
    client: &FloeClient,
    topic: &str,
    partition: u32,
    from: u64,
    to: u64,
) -> Vec<BinaryRecord> {
    let options = FetchOptions {
        max_records: Some(5_000),
        ..FetchOptions::default()
    };
    let mut records = Vec::new();
    let mut offset = from;
    while offset < to {
        let fetched = client
            .fetch_binary(topic, partition, offset, &options)
            .await
            .unwrap_or_else(|error| panic!("reading {topic}/{partition} at {offset}: {error}"));
        assert!(
            fetched.next_offset > offset,
            "{topic}/{partition} at {offset}: no progress"
        );
        records.extend(fetched.records);
        offset = fetched.next_offset;
    }
    records
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &["--max-buffered-bytes", "1000000"]);
    let client = server.client();
    let mut config = BTreeMap::new();
    config.insert("max.message.bytes".to_owned(), serde_json::json!(100));
    client
        .create_topic(&CreateTopicRequest {
            name: "t".into(),
            partitions: 2,
            config,
        })
        .await
        .expect("create");
    let record = |partition: u32, key: Option<&str>, value: &str| ProduceRecordJson {
        key: key.map(Value::from),
        value: Some(Value::from(value)),
        headers: vec![HeaderJson {
            name: "h".into(),
            value: Some(Value::from(value)),
        }],
        partition: Some(partition),
        ..Default::default()
    };
    client
        .produce(
            "t",
            vec![
                record(0, None, "x"),
                record(1, Some("k"), "y"),
                record(0, Some("k"), "z"),
            ],
            Encoding::Text,
        )
        .await
        .expect("produce");
    let before = snapshot(&client).await;
    assert_eq!(
        before[0]
            .partitions
            .iter()
            .map(|p| p.records.len())
            .collect::<Vec<_>>(),
        [2, 1],
        "the snapshot holds the records: {before:?}"
    );

    let long_name = "n".repeat(300);
    let records = "/v1/topics/t/records";
    let mut cases = vec![
        case(
            "malformed json",
            Method::POST,
            records,
            "{\"records\": [",
            400,
            "invalid_json",
        ),
        case(
            "wrong types",
            Method::POST,
            records,
            "{\"records\": [{\"value\": 5}]}",
            422,
            "invalid_record",
        ),
        case(
            "records not a list",
            Method::POST,
            records,
            "{\"records\": 5}",
            422,
            "invalid_request",
        ),
        case(
            "unknown field",
            Method::POST,
            records,
            "{\"records\": [{\"valu\": \"x\"}]}",
            422,
            "invalid_request",
        ),
        case(
            "bad base64",
            Method::POST,
            "/v1/topics/t/records?encoding=base64",
            "{\"records\": [{\"value\": \"!!\"}]}",
            422,
            "invalid_base64",
        ),
        case(
            "bad encoding",
            Method::POST,
            "/v1/topics/t/records?encoding=rot13",
            "{\"records\": []}",
            400,
            "invalid_query",
        ),
        case(
            "empty request",
            Method::POST,
            records,
            "{\"records\": []}",
            400,
            "invalid_request",
        ),
        case(
            "unknown topic",
            Method::POST,
            "/v1/topics/nope/records",
            "{\"records\": [{\"value\": \"x\"}]}",
            404,
            "unknown_topic",
        ),
        case(
            "unknown partition",
            Method::POST,
            records,
            "{\"records\": [{\"value\": \"x\", \"partition\": 9}]}",
            404,
            "unknown_partition",
        ),
        case(
            "unknown partition in path",
            Method::POST,
            "/v1/topics/t/partitions/9/records",
            "{\"records\": [{\"value\": \"x\"}]}",
            404,
            "unknown_partition",
        ),
        case(
            "partition not a number",
            Method::GET,
            "/v1/topics/t/partitions/x/records",
            "",
            400,
            "invalid_path",
        ),
        case(
            "group name not UTF-8 (checked before the coordinator is looked up)",
            Method::POST,
            "/v1/groups/%FF/members",
            "{}",
            400,
            "invalid_path",
        ),
        case(
            "oversized record",
            Method::POST,
            records,
            &format!(
                "{{\"records\": [{{\"value\": \"ok\"}}, {{\"value\": \"{}\"}}]}}",
                "x".repeat(200)
            ),
            413,
            "record_too_large",
        ),
        case(
            "negative timestamp",
            Method::POST,
            records,
            "{\"records\": [{\"value\": \"x\", \"timestamp\": -5}]}",
            400,
            "invalid_request",
        ),
        case(
            "duplicate header",
            Method::POST,
            records,
            "{\"records\": [{\"value\": \"x\", \"headers\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}]}",
            400,
            "invalid_request",
        ),
        case(
            "offset above the high watermark",
            Method::GET,
            "/v1/topics/t/partitions/0/records?offset=99",
            "",
            416,
            "offset_out_of_range",
        ),
        case(
            "offset not a number",
            Method::GET,
            "/v1/topics/t/partitions/0/records?offset=soon",
            "",
            400,
            "invalid_query",
        ),
        case(
            "fetch unknown topic",
            Method::GET,
            "/v1/topics/nope/partitions/0/records",
            "",
            404,
            "unknown_topic",
        ),
        case(
            "fetch unknown partition",
            Method::GET,
            "/v1/topics/t/partitions/7/records",
            "",
            404,
            "unknown_partition",
        ),
        case(
            "offsets bad at",
            Method::GET,
            "/v1/topics/t/partitions/0/offsets?at=yesterday",
            "",
            400,
            "invalid_query",
        ),
        case(
            "alter: unknown value format",
            Method::PATCH,
            "/v1/topics/t/config",
            "{\"set\": {\"export.parquet.enabled\": true, \"export.parquet.value.format\": \"avro\"}}",
            400,
            "invalid_config",
        ),
        case(
            "alter: schema that does not parse",
            Method::PATCH,
            "/v1/topics/t/config",
            "{\"set\": {\"export.parquet.value.schema\": \"{not json\"}}",
            400,
            "invalid_config",
        ),
        case(
            "alter: schema with an unknown type",
            Method::PATCH,
            "/v1/topics/t/config",
            "{\"set\": {\"export.parquet.value.schema\": {\"total\": \"decimal\"}}}",
            400,
            "invalid_config",
        ),
        case(
            "alter: destination that is not a URL",
            Method::PATCH,
            "/v1/topics/t/config",
            "{\"set\": {\"export.parquet.path\": \"ftp://host/x\"}}",
            400,
            "invalid_config",
        ),
        case(
            "alter: unknown key",
            Method::PATCH,
            "/v1/topics/t/config",
            "{\"reset\": [\"retention.minutes\"]}",
            400,
            "invalid_config",
        ),
        case(
            "alter: nothing to change",
            Method::PATCH,
            "/v1/topics/t/config",
            "{}",
            400,
            "invalid_request",
        ),
        case(
            "alter: unknown field",
            Method::PATCH,
            "/v1/topics/t/config",
            "{\"sett\": {}}",
            422,
            "invalid_request",
        ),
        case(
            "alter: unknown topic",
            Method::PATCH,
            "/v1/topics/nope/config",
            "{\"set\": {\"retention.ms\": 1000}}",
            404,
            "unknown_topic",
        ),
        case(
            "export status of an unknown topic",
            Method::GET,
            "/v1/topics/nope/export",
            "",
            404,
            "unknown_topic",
        ),
        case(
            "topic name ..",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"..\"}",
            400,
            "invalid_topic_name",
        ),
        case(
            "topic name with slash",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"a/b\"}",
            400,
            "invalid_topic_name",
        ),
        case(
            "topic name with control",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"a\\u0007b\"}",
            400,
            "invalid_topic_name",
        ),
        case(
            "topic name of 300",
            Method::POST,
            "/v1/topics",
            &format!("{{\"name\": \"{long_name}\"}}"),
            400,
            "invalid_topic_name",
        ),
        case(
            "topic exists",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"t\"}",
            409,
            "topic_exists",
        ),
        case(
            "zero partitions",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"z\", \"partitions\": 0}",
            400,
            "invalid_partition_count",
        ),
        case(
            "unknown config",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"z\", \"config\": {\"retention.minutes\": 1}}",
            400,
            "invalid_config",
        ),
        case(
            "bad config value",
            Method::POST,
            "/v1/topics",
            "{\"name\": \"z\", \"config\": {\"retention.ms\": \"soon\"}}",
            400,
            "invalid_config",
        ),
        case(
            "shrink partitions",
            Method::POST,
            "/v1/topics/t/partitions",
            "{\"count\": 1}",
            400,
            "invalid_partition_count",
        ),
        case(
            "grow unknown topic",
            Method::POST,
            "/v1/topics/nope/partitions",
            "{\"count\": 3}",
            404,
            "unknown_topic",
        ),
        case(
            "delete unknown topic",
            Method::DELETE,
            "/v1/topics/nope",
            "",
            404,
            "unknown_topic",
        ),
        case(
            "describe bad name",
            Method::GET,
            "/v1/topics/a%07b",
            "",
            400,
            "invalid_topic_name",
        ),
        case(
            "unknown route",
            Method::GET,
            "/v2/everything",
            "",
            404,
            "not_found",
        ),
        case(
            "wrong method",
            Method::PUT,
            "/v1/topics",
            "",
            405,
            "method_not_allowed",
        ),
    ];
    cases.push(Case {
        name: "unsupported content type",
        method: Method::POST,
        path: records.into(),
        content_type: "text/plain",
        body: b"hello".to_vec(),
        status: 415,
        code: "unsupported_media_type",
    });
    cases.push(Case {
        name: "truncated binary",
        method: Method::POST,
        path: records.into(),
        content_type: floe_client::binary::CONTENT_TYPE,
        body: vec![0, 0, 0, 5, 0, 0],
        status: 400,
        code: "invalid_binary",
    });
    cases.push(Case {
        name: "body over the limit",
        method: Method::POST,
        path: records.into(),
        content_type: "application/json",
        body: vec![b' '; 33 * 1024 * 1024],
        status: 413,
        code: "request_too_large",
    });

    let mut failures = Vec::new();
    for case in cases {
        // A fresh connection per case: the server closes a connection whose body it refused
        // unread (the oversized one), and a pooled client would reuse it.
        let client = FloeClient::new(client.base_url());
        let (status, body) = client
            .raw(
                case.method.clone(),
                &case.path,
                case.content_type,
                case.body,
            )
            .await
            .expect("request");
        let parsed: Result<ErrorBody, _> = serde_json::from_slice(&body);
        match parsed {
            Ok(error)
                if status.as_u16() == case.status
                    && error.error_code == case.code
                    && !error.message.is_empty() => {}
            _ => failures.push(format!(
                "{}: expected {} {}, got {} {}",
                case.name,
                case.status,
                case.code,
                status,
                String::from_utf8_lossy(&body)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let client = FloeClient::new(client.base_url());
    assert_eq!(
        snapshot(&client).await,
        before,
        "bad requests changed nothing"
    );
    let (status, _) = client
        .raw(Method::GET, "/healthz", "text/plain", "")
        .await
        .expect("health");
    assert_eq!(status.as_u16(), 200, "the server is still up");
}

#[path = "bad_input/garbage.rs"]
mod garbage;
