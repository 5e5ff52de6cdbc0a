//! Limits per principal: produce quotas and long-polls.

use super::*;

/// A producer over its quota gets 429s with Retry-After and its accepted rate stays near
/// the quota (printed, not asserted), while another principal's produce is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_over_its_produce_quota_gets_429s_and_others_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, api) = serve_with(
        dir.path(),
        &[("alice", "alice-token"), ("bob", "bob-token")],
        "alice;bob",
        "[quotas.principals.alice]\nproduce_bytes_per_second = 200000\n",
    );
    let (status, _, _) = api
        .call(
            Some("bob-token"),
            Method::POST,
            "/v1/topics",
            Some(&json!({"name": "t", "partitions": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let body = json!({"records": [{"value": "x".repeat(20_000)}]});
    let started = Instant::now();
    let (mut accepted, mut refused, mut bob_ok, mut steady) = (0u64, 0u64, 0u64, 0u64);
    let mut retry_after_seen = false;
    while started.elapsed() < Duration::from_secs(3) {
        let response = api
            .http
            .post(format!("{}/v1/topics/t/records", api.url))
            .bearer_auth("alice-token")
            .json(&body)
            .send()
            .await
            .expect("alice produce");
        match response.status() {
            StatusCode::OK => {
                accepted += 1;
                // After the first second's burst (the bucket starts full).
                if started.elapsed() > Duration::from_secs(1) {
                    steady += 1;
                }
            }
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                retry_after_seen |= response.headers().contains_key("retry-after");
                let answer: Value = response.json().await.expect("body");
                assert_eq!(answer["error_code"], "quota_exceeded");
            }
            other => panic!("alice: {other}"),
        }
        if (accepted + refused) % 10 == 0 {
            let (status, answer, _) = api
                .call(
                    Some("bob-token"),
                    Method::POST,
                    "/v1/topics/t/records",
                    Some(&body),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "bob is not limited: {answer}");
            bob_ok += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "quota 200000 B/s: alice accepted {accepted} x ~20 kB = {:.0} B/s over {seconds:.1} s, \
         {:.0} B/s after the first second's burst ({refused} refused); bob {bob_ok} accepted",
        accepted as f64 * 20_000.0 / seconds,
        steady as f64 * 20_000.0 / (seconds - 1.0)
    );
    assert!(refused > 0, "alice was never refused");
    assert!(retry_after_seen, "429s carry Retry-After");
    assert!(bob_ok > 0);
}

/// With authentication on, the limit of waiting fetches per client counts principals:
/// alice at her limit is refused from any connection while bob's long-poll is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_limited_per_principal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, api) = serve_with(
        dir.path(),
        &[("alice", "alice-token"), ("bob", "bob-token")],
        "alice;bob",
        "[server]\nmax_waiting_fetches_per_client = 1\n",
    );
    let (status, _, _) = api
        .call(
            Some("bob-token"),
            Method::POST,
            "/v1/topics",
            Some(&json!({"name": "t", "partitions": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let poll = "/v1/topics/t/partitions/0/records?offset=0&wait_ms=30000";
    let first = {
        let http = api.http.clone();
        let url = format!("{}{poll}", api.url);
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth("alice-token")
                .send()
                .await
                .expect("alice's long-poll")
                .status()
        })
    };
    // Wait until the broker holds alice's poll.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, metrics, _) = api
            .call(Some("bob-token"), Method::GET, "/metrics", None)
            .await;
        let waiting = metrics
            .as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("floe_waiting_fetches "))
            .map(str::trim)
            .map(str::to_owned);
        if waiting.as_deref() == Some("1") {
            break;
        }
        assert!(Instant::now() < deadline, "the long-poll never waited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer, _) = api.call(Some("alice-token"), Method::GET, poll, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error_code"], "busy");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("alice")),
        "{answer}"
    );
    // Bob, on the same address, is not held to alice's count.
    let (status, answer, _) = api
        .call(
            Some("bob-token"),
            Method::GET,
            "/v1/topics/t/partitions/0/records?offset=0&wait_ms=100",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // A record ends alice's poll, and her slot is hers again.
    let (status, _, _) = api
        .call(
            Some("bob-token"),
            Method::POST,
            "/v1/topics/t/records",
            Some(&json!({"records": [{"value": "wake"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first.await.expect("join"), StatusCode::OK);
    let (status, answer, _) = api
        .call(
            Some("alice-token"),
            Method::GET,
            "/v1/topics/t/partitions/0/records?offset=0&wait_ms=100",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
