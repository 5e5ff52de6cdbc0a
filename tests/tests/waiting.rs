//! Fetches waiting at the tail: each holds a slot (bounded per broker and per client),
//! and a commit to their partition wakes them with the record, while commits elsewhere
//! leave them waiting.

use std::time::Duration;

use floe_client::api::ProduceRecordJson;
use floe_client::{Encoding, FetchOptions};
use floe_tests::FloeProcess;
use serde_json::Value;

/// Waits (bounded) until `floe_waiting_fetches` shows `count` waiting fetches.
async fn slots_reach(url: &str, count: f64) -> bool {
    for _ in 0..200 {
        if floe_tests::metric_at(url, "floe_waiting_fetches").await == Some(count) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn record(partition: u32, value: &str) -> Vec<ProduceRecordJson> {
    vec![ProduceRecordJson {
        value: Some(Value::String(value.into())),
        partition: Some(partition),
        ..ProduceRecordJson::default()
    }]
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_fetches_are_bounded_per_client_and_woken_by_their_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start_with_env(
        dir.path(),
        &[],
        &[("FLOE_SERVER__MAX_WAITING_FETCHES_PER_CLIENT", "3".into())],
    );
    let client = server.client();
    floe_tests::create_topic(&client, "t", 2).await;

    let long_poll = FetchOptions {
        wait: Some(Duration::from_secs(20)),
        ..FetchOptions::default()
    };
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (client, options) = (client.clone(), long_poll.clone());
            tokio::spawn(async move { client.fetch("t", 0, 0, &options).await })
        })
        .collect();
    // Once the three hold their slots (as /metrics shows), a fourth waiting fetch from
    // the same client is refused.
    assert!(
        slots_reach(&server.url, 3.0).await,
        "the three long-polls hold their slots"
    );
    let refused = client
        .fetch("t", 1, 0, &long_poll)
        .await
        .expect_err("a fourth waiting fetch from the same client");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(429));
    assert_eq!(refused.error_code(), Some("busy"));
    // A fetch that does not wait needs no slot.
    let immediate = client
        .fetch("t", 1, 0, &FetchOptions::default())
        .await
        .expect("a plain fetch");
    assert!(immediate.records.is_empty());

    // A commit to the other partition does not answer them; one to theirs wakes them all
    // with its record, long before their 20 s wait ends.
    client
        .produce("t", record(1, "elsewhere"), Encoding::Text)
        .await
        .expect("produce to 1");
    client
        .produce("t", record(0, "theirs"), Encoding::Text)
        .await
        .expect("produce to 0");
    for waiter in waiters {
        let fetched = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken before the wait ends")
            .expect("join")
            .expect("fetch");
        let values: Vec<_> = fetched.records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, vec![Some(Value::String("theirs".into()))]);
    }

    // Their slots are free again.
    let short = FetchOptions {
        wait: Some(Duration::from_millis(100)),
        ..FetchOptions::default()
    };
    client
        .fetch("t", 1, 1, &short)
        .await
        .expect("a waiting fetch after the others ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_fetches_hold_no_request_memory_while_they_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Room for two 1 MiB fetches at a time, and ten consumers waiting at the tail.
    let server = FloeProcess::start_with_env(
        dir.path(),
        &[],
        &[
            ("FLOE_SERVER__MAX_REQUEST_BYTES", "1048576".into()),
            ("FLOE_SERVER__REQUEST_MEMORY_BYTES", "2097152".into()),
        ],
    );
    let client = server.client();
    floe_tests::create_topic(&client, "t", 1).await;
    let long_poll = FetchOptions {
        wait: Some(Duration::from_secs(20)),
        max_bytes: Some(1 << 20),
        ..FetchOptions::default()
    };
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let (client, options) = (client.clone(), long_poll.clone());
            tokio::spawn(async move { client.fetch("t", 0, 0, &options).await })
        })
        .collect();
    assert!(
        slots_reach(&server.url, 10.0).await,
        "the ten consumers wait"
    );
    // Produce still fits in the budget while all ten wait.
    client
        .produce("t", record(0, "for everyone"), Encoding::Text)
        .await
        .expect("produce while consumers wait");
    // Woken together, they take turns at the budget: each gets the record or a 429 to
    // retry, none an error of another kind.
    for waiter in waiters {
        match waiter.await.expect("join") {
            Ok(fetched) => assert_eq!(fetched.records.len(), 1),
            Err(error) => assert_eq!(error.status().map(|s| s.as_u16()), Some(429), "{error}"),
        }
    }
}
