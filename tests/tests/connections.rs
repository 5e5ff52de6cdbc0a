//! Idle and slow clients against a real server: connections beyond the limit are closed
//! on accept, idle and slow-header ones time out, the server keeps answering, and its file
//! descriptors return to where they were.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use floe_client::Encoding;
use floe_client::api::ProduceRecordJson;
use floe_tests::FloeProcess;
use serde_json::Value;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Polls `check` every 100 ms for up to `limit`.
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_clients_cannot_exhaust_the_server() {
    const MAX_CONNECTIONS: usize = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start_with_env(
        dir.path(),
        &[],
        &[
            ("FLOE_SERVER__MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
            ("FLOE_SERVER__HEADER_READ_TIMEOUT", "2s".into()),
        ],
    );
    let pid = server.pid().expect("running");
    let client = server.client();
    floe_tests::create_topic(&client, "t", 1).await;
    let baseline = open_fds(pid);
    let addr = server.url.trim_start_matches("http://").to_owned();

    // 5,000 idle connections and 200 that send half a request head and stall.
    let mut held = Vec::new();
    for _ in 0..5_000 {
        if let Ok(stream) = TcpStream::connect(&addr) {
            held.push(stream);
        }
    }
    for _ in 0..200 {
        if let Ok(mut stream) = TcpStream::connect(&addr) {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: floe\r\nX-Slow: ");
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = open_fds(pid);
    assert!(
        during <= baseline + MAX_CONNECTIONS + 16,
        "{during} descriptors open with {} clients holding connections (baseline {baseline})",
        held.len()
    );

    // The idle and stalled connections time out, and the server answers again.
    let health = format!("{}/healthz", server.url);
    let healthy = eventually(Duration::from_secs(15), async || {
        reqwest::Client::new()
            .get(&health)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
    assert!(healthy, "/healthz answers once idle connections time out");
    let record = vec![ProduceRecordJson {
        value: Some(Value::String("still here".into())),
        ..ProduceRecordJson::default()
    }];
    client
        .produce("t", record, Encoding::Text)
        .await
        .expect("produce after the flood");

    drop(held);
    let recovered = eventually(Duration::from_secs(15), async || {
        open_fds(pid) <= baseline + 4
    })
    .await;
    assert!(
        recovered,
        "descriptors return to the baseline: {} now, {baseline} before",
        open_fds(pid)
    );
}
