//! Streaming consume (Server-Sent Events) against a real `floe serve`: records as they are
//! produced, event ids that resume with `Last-Event-ID`, and errors before and during the
//! stream in the API's error shape.

use std::collections::BTreeMap;
use std::time::Duration;

use floe_client::api::{CreateTopicRequest, ProduceRecordJson};
use floe_client::{FetchOptions, FloeClient};
use floe_tests::FloeProcess;
use serde_json::Value;

async fn produce(client: &FloeClient, topic: &str, values: std::ops::Range<u32>) {
    let records = values
        .map(|i| ProduceRecordJson {
            value: Some(Value::String(format!("v{i}"))),
            partition: Some(0),
            ..Default::default()
        })
        .collect();
    client
        .produce(topic, records, floe_client::Encoding::Text)
        .await
        .expect("produce");
}

fn values(fetched: &floe_client::api::FetchResponse) -> Vec<String> {
    fetched
        .records
        .iter()
        .map(|record| {
            record
                .value
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_follows_the_tail_and_resumes_from_its_last_event_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    client
        .create_topic(&CreateTopicRequest {
            name: "events".into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await
        .expect("create");
    produce(&client, "events", 0..10).await;

    let mut stream = client
        .stream("events", 0, 0, &FetchOptions::default())
        .await
        .expect("stream");
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let event = stream.next().await.expect("an event").expect("records");
        assert_eq!(
            stream.last_event_id(),
            Some(event.next_offset.to_string().as_str()),
            "the event id is the next offset"
        );
        seen.extend(values(&event));
    }
    // Records produced while the stream is open arrive on it: one at a time, each once the
    // stream has delivered everything before it and follows the tail. A stream waiting at
    // the tail looks again only after 30 s: within the 20 s allowed, the commit must wake
    // it.
    for value in 10..15 {
        produce(&client, "events", value..value + 1).await;
        while seen.len() <= value as usize {
            let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .expect("records arrive while streaming")
                .expect("an event")
                .expect("records");
            seen.extend(values(&event));
        }
    }
    let expected: Vec<String> = (0..15).map(|i| format!("v{i}")).collect();
    assert_eq!(seen, expected);
    let resume_from = stream.last_event_id().expect("an id").to_owned();
    drop(stream);

    // A reconnect with Last-Event-ID starts after what was seen, whatever `offset` says.
    produce(&client, "events", 15..18).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/topics/events/partitions/0/records?offset=0",
            server.url
        ))
        .header("accept", "text/event-stream")
        .header("last-event-id", &resume_from)
        .send()
        .await
        .expect("resume");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("type"),
        "text/event-stream"
    );
    let mut body = String::new();
    let mut response = response;
    while !body.contains("v17") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("resumed events")
            .expect("chunk")
            .expect("stream open");
        body.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert!(body.contains("event: records"), "{body}");
    assert!(body.contains("id: 18"), "{body}");
    assert!(
        !body.contains("\"v14\""),
        "nothing before the resume point: {body}"
    );
    assert!(body.contains("\"v15\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_use_the_error_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    client
        .create_topic(&CreateTopicRequest {
            name: "gone".into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await
        .expect("create");
    produce(&client, "gone", 0..3).await;
    let http = reqwest::Client::new();
    let open = |path: &str, last_event_id: Option<&str>| {
        let mut request = http
            .get(format!("{}{path}", server.url))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };

    // Before the stream starts, errors are plain answers with their status.
    for (path, id, status, code) in [
        (
            "/v1/topics/nope/partitions/0/records",
            None,
            404,
            "unknown_topic",
        ),
        (
            "/v1/topics/gone/partitions/0/records?offset=99",
            None,
            416,
            "offset_out_of_range",
        ),
        (
            "/v1/topics/gone/partitions/0/records",
            Some("x1"),
            400,
            "invalid_header",
        ),
        (
            "/v1/topics/gone/partitions/0/records",
            Some("50"),
            416,
            "offset_out_of_range",
        ),
    ] {
        let response = open(path, id).await.expect("request");
        assert_eq!(response.status(), status, "{path} {id:?}");
        let body: Value = response.json().await.expect("json error");
        assert_eq!(body["error_code"], code, "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // During the stream, a failure is an `error` event that ends it.
    let mut stream = client
        .stream("gone", 0, 0, &FetchOptions::default())
        .await
        .expect("stream");
    let first = stream.next().await.expect("event").expect("records");
    assert_eq!(values(&first), ["v0", "v1", "v2"]);
    client.delete_topic("gone").await.expect("delete");
    // Wake the waiting fetch with a commit elsewhere.
    client
        .create_topic(&CreateTopicRequest {
            name: "other".into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await
        .expect("create other");
    let ended = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the stream ends")
        .expect("an error event");
    match ended {
        Err(floe_client::ClientError::Stream(body)) => {
            assert_eq!(body.error_code, "unknown_topic", "{body:?}");
        }
        other => panic!("expected an error event, got {other:?}"),
    }
    assert!(stream.next().await.is_none(), "nothing after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_the_server_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    client
        .create_topic(&CreateTopicRequest {
            name: "s".into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await
        .expect("create");
    produce(&client, "s", 0..1).await;
    let mut stream = client
        .stream("s", 0, 0, &FetchOptions::default())
        .await
        .expect("stream");
    stream.next().await.expect("event").expect("records");
    // A graceful stop must not wait for the stream's client to leave.
    let stopper = std::thread::spawn(move || server.stop());
    let ended = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the stream ends when the server stops");
    assert!(
        !matches!(ended, Some(Ok(_))),
        "no records after the stop: {ended:?}"
    );
    stopper.join().expect("the server stopped");
}
