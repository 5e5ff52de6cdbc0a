//! A seeded fuzz loop over every route: random bytes, truncated and mutated bodies, wrong
//! content types, huge declared lengths. The server must answer every request with a 4xx
//! (or a 2xx when the mutation happened to be valid, or 429/503 under overload), never
//! panic, and change state only by what it acknowledged. Replay with FLOE_TEST_SEED;
//! FLOE_FUZZ_REQUESTS sets the count (default 100,000).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use floe_tests::FloeProcess;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;

const TOPIC: &str = "fuzzed";

fn paths() -> Vec<String> {
    vec![
        "/v1/topics".into(),
        format!("/v1/topics/{TOPIC}"),
        "/v1/topics/no-such-topic".into(),
        "/v1/topics/bad%20name".into(),
        format!("/v1/topics/{TOPIC}/partitions"),
        format!("/v1/topics/{TOPIC}/records"),
        format!("/v1/topics/{TOPIC}/records?encoding=base64"),
        format!("/v1/topics/{TOPIC}/records?encoding=json"),
        format!("/v1/topics/{TOPIC}/records?encoding=nope"),
        format!("/v1/topics/{TOPIC}/partitions/0/records"),
        format!("/v1/topics/{TOPIC}/partitions/7/records"),
        format!("/v1/topics/{TOPIC}/partitions/x/records"),
        format!("/v1/topics/{TOPIC}/partitions/0/records?offset=0&max_records=3"),
        format!("/v1/topics/{TOPIC}/partitions/0/records?offset=99999999999999999999"),
        format!("/v1/topics/{TOPIC}/partitions/0/records?offset=latest&wait_ms=1"),
        format!("/v1/topics/{TOPIC}/partitions/0/records?max_bytes=-1"),
        format!("/v1/topics/{TOPIC}/partitions/0/offsets?at=earliest"),
        format!("/v1/topics/{TOPIC}/partitions/0/offsets?at=1700000000000"),
        format!("/v1/topics/{TOPIC}/partitions/0/offsets?at=%ff"),
        "/v1/cluster".into(),
        "/internal/v1/sequencer/commands".into(),
        "/v1/openapi.json".into(),
        "/healthz".into(),
        "/readyz".into(),
        "/metrics".into(),
        "/nowhere".into(),
    ]
}

const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "application/vnd.floe.records.v1",
    "text/plain",
    "application/json; charset=utf-8",
    "",
];

const SEEDS: [&str; 6] = [
    r#"{"records":[{"key":"k","value":"v","headers":[{"name":"h","value":"x"}],"partition":0,"timestamp":1}]}"#,
    r#"{"name":"t2","partitions":2,"config":{"retention.ms":1000}}"#,
    r#"{"count":3}"#,
    r#"[{"command":{"CreateTopic":{}},"fence":null}]"#,
    r#"{"records":[{},{},{}]}"#,
    r#"{"records":[{"value":{"nested":[1,2,{"x":null}]}}]}"#,
];

fn body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..6) {
        0 => (0..rng.random_range(0..512))
            .map(|_| rng.random())
            .collect(),
        1 => {
            let seed = SEEDS[rng.random_range(0..SEEDS.len())].as_bytes();
            seed[..rng.random_range(0..=seed.len())].to_vec()
        }
        2 => {
            let mut bytes = SEEDS[rng.random_range(0..SEEDS.len())].as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            bytes
        }
        3 => {
            // Binary framing with a random declared count and a random tail.
            let mut bytes = rng.random::<u32>().to_be_bytes().to_vec();
            bytes.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()));
            bytes
        }
        4 => Vec::new(),
        _ => SEEDS[rng.random_range(0..SEEDS.len())].as_bytes().to_vec(),
    }
}

/// A request whose head declares far more body than it sends, over a raw socket.
fn huge_declared_length(addr: &str, path: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: floe\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000000000\r\n\r\n{{\"records\":["
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..read])
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_requests_on_every_route_get_4xx_and_change_nothing_unacknowledged() {
    let seed = floe_tests::seed();
    let requests: usize = std::env::var("FLOE_FUZZ_REQUESTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &["--background-jobs", "false"]);
    let client = server.client();
    floe_tests::create_topic(&client, TOPIC, 2).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let paths = paths();
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Eight workers share the request count, each with its own stream of the seed.
    let workers = (0..8u64).map(|worker| {
        let (http, paths, server_url) = (http.clone(), paths.clone(), server.url.clone());
        let methods = methods.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (worker << 56));
            let mut acked_records = 0u64;
            let mut created_topics = Vec::new();
            for index in 0..requests / 8 {
                let path = &paths[rng.random_range(0..paths.len())];
                if index % 500 == 0 {
                    let status = tokio::task::spawn_blocking({
                        let (addr, path) = (addr.clone(), path.clone());
                        move || huge_declared_length(&addr, &path)
                    })
                    .await
                    .expect("join");
                    assert!(
                        (400..500).contains(&status) || status == 0,
                        "seed {seed}: declared 1 TB to {path} answered {status}"
                    );
                    continue;
                }
                let method = methods[rng.random_range(0..methods.len())].clone();
                // Deleting the fuzzed topic would be a valid request, not a bad one.
                if method == Method::DELETE && path.ends_with(TOPIC) {
                    continue;
                }
                let content_type = CONTENT_TYPES[rng.random_range(0..CONTENT_TYPES.len())];
                let mut request = http.request(method.clone(), format!("{server_url}{path}"));
                if !content_type.is_empty() {
                    request = request.header("content-type", content_type);
                }
                let response = request
                    .body(body(&mut rng))
                    .send()
                    .await
                    .unwrap_or_else(|error| {
                        panic!("seed {seed}: {method} {path}: no answer: {error}")
                    });
                let status = response.status().as_u16();
                assert!(
                    status < 500 || status == 503,
                    "seed {seed}: {method} {path} answered {status}: {:?}",
                    response.text().await
                );
                if (200..300).contains(&status)
                    && path.contains("/records")
                    && method == Method::POST
                {
                    let answer: serde_json::Value = response.json().await.expect("ack JSON");
                    acked_records += answer["offsets"].as_array().map_or(0, Vec::len) as u64;
                } else if status == 201 {
                    let answer: serde_json::Value = response.json().await.expect("topic JSON");
                    created_topics.push(answer["name"].as_str().unwrap_or_default().to_owned());
                }
            }
            (acked_records, created_topics)
        })
    });
    let mut acked = 0;
    let mut created = Vec::new();
    for worker in futures::future::join_all(workers).await {
        let (records, topics) = worker.expect("worker");
        acked += records;
        created.extend(topics);
    }

    // Still serving, and the fuzzed topic holds exactly what was acknowledged.
    let described = client.describe_topic(TOPIC).await.expect("still serving");
    let total: u64 = described.partitions.iter().map(|p| p.high_watermark).sum();
    assert_eq!(
        total, acked,
        "seed {seed}: only acknowledged records were written"
    );
    assert!(
        described.partitions.len() >= 2,
        "seed {seed}: partitions never shrink"
    );
    let topics = client.list_topics().await.expect("list").topics;
    for topic in &topics {
        assert!(
            topic.name == TOPIC || created.contains(&topic.name),
            "seed {seed}: topic {} appeared without a 201",
            topic.name
        );
    }
}
