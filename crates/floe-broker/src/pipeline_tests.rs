//! When the open segment is sealed: on an idle pipeline at once (group commit), otherwise
//! on linger, size or shutdown, and never more often than `min_flush_interval` when idle.

use std::time::Duration;

use crate::metrics::SealReason;
use crate::tests::record;
use crate::{Broker, BrokerOptions};
use floe_core::TopicConfig;

/// Long enough that no test here ever sees a segment sealed by its linger.
const FOREVER: Duration = Duration::from_secs(3600);

/// A broker with a four-partition topic `t`.
async fn broker_with(options: BrokerOptions) -> Broker {
    let broker = crate::tests::broker_with(options).await;
    broker
        .create_topic("t", 4, TopicConfig::default())
        .await
        .expect("create");
    broker
}

fn sealed(broker: &Broker, reason: SealReason) -> u64 {
    broker.inner.latency.sealed(reason).get()
}

/// Fails the test instead of hanging it when a request is stranded in an open segment.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 60 s"))
}

#[tokio::test]
async fn an_idle_pipeline_seals_at_once_instead_of_waiting_out_the_linger() {
    let broker = broker_with(BrokerOptions {
        linger: Some(FOREVER),
        ..BrokerOptions::default()
    })
    .await;
    let acks = within(
        "a produce on an idle broker",
        broker.produce("t", vec![record(Some(0), None, "alone")]),
    )
    .await
    .expect("produce");
    assert_eq!(acks[0].offset, 0);
    assert_eq!(sealed(&broker, SealReason::Idle), 1);
    assert_eq!(sealed(&broker, SealReason::Linger), 0);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_while_a_segment_is_in_flight_go_together_when_it_is_done() {
    let broker = broker_with(BrokerOptions {
        linger: Some(FOREVER),
        ..BrokerOptions::default()
    })
    .await;
    let producers: Vec<_> = (0..32u32)
        .map(|producer| {
            let broker = broker.clone();
            tokio::spawn(async move {
                for request in 0..20 {
                    let value = format!("{producer}-{request}");
                    broker
                        .produce("t", vec![record(Some(producer % 4), None, &value)])
                        .await
                        .expect("produce");
                }
            })
        })
        .collect();
    within("640 requests with an endless linger", async {
        for producer in producers {
            producer.await.expect("producer");
        }
    })
    .await;
    let idle = sealed(&broker, SealReason::Idle);
    assert_eq!(sealed(&broker, SealReason::Linger), 0);
    assert!(
        idle > 0 && idle <= 640,
        "{idle} idle seals for 640 requests"
    );
    let committed: u64 = broker
        .describe_topic("t")
        .expect("describe")
        .partitions
        .iter()
        .map(|partition| partition.high_watermark)
        .sum();
    assert_eq!(committed, 640, "every request was committed once");
    broker.shutdown().await;
}

#[tokio::test]
async fn without_flush_when_idle_a_segment_waits_for_its_linger_or_the_shutdown() {
    let broker = broker_with(BrokerOptions {
        linger: Some(FOREVER),
        flush_when_idle: false,
        ..BrokerOptions::default()
    })
    .await;
    let pending = tokio::spawn({
        let broker = broker.clone();
        async move {
            broker
                .produce("t", vec![record(Some(0), None, "held")])
                .await
        }
    });
    while broker.buffered_bytes() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for reason in [SealReason::Idle, SealReason::Linger, SealReason::Size] {
        assert_eq!(sealed(&broker, reason), 0, "{reason:?}");
    }
    broker.shutdown().await;
    assert_eq!(sealed(&broker, SealReason::Shutdown), 1);
    let acks = pending.await.expect("task").expect("committed at shutdown");
    assert_eq!(acks[0].offset, 0);
}

#[tokio::test]
async fn idle_seals_keep_the_minimum_interval_between_flushes() {
    let interval = Duration::from_millis(300);
    let broker = broker_with(BrokerOptions {
        linger: Some(FOREVER),
        min_flush_interval: Some(interval),
        ..BrokerOptions::default()
    })
    .await;
    // Before the first seal, so the second seal is at least an interval after this.
    let started = tokio::time::Instant::now();
    broker
        .produce("t", vec![record(Some(0), None, "first")])
        .await
        .expect("first");
    // The pipeline is idle again, but the last seal is younger than the interval: the
    // second request waits for the interval (not for the endless linger).
    within(
        "a request after a recent flush",
        broker.produce("t", vec![record(Some(0), None, "second")]),
    )
    .await
    .expect("second");
    // A timer cannot fire early: an interval not kept would show here as a shorter time.
    assert!(
        started.elapsed() >= interval,
        "both flushes within {:?}",
        started.elapsed()
    );
    assert_eq!(sealed(&broker, SealReason::Idle), 2);
    broker.shutdown().await;
}
