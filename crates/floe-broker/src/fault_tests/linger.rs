//! The linger under load (ADR 0011): while a segment is in flight the next one gathers
//! for no longer than its linger, then uploads beside the slow one.

use super::*;
use crate::metrics::SealReason;

/// ADR 0011: while a segment is in flight the next one gathers, but for no longer than
/// its linger; then it is sealed and uploads beside the slow one, and still commits after
/// it. With an endless linger it waits for the slow one to be answered.
#[tokio::test]
async fn a_segment_that_lingered_behind_a_slow_upload_uploads_beside_it() {
    for (linger, puts_at_once) in [
        (Duration::from_millis(20), 2),
        (Duration::from_secs(3600), 1),
    ] {
        // Slow enough that a loaded machine cannot let the linger pass after it.
        let store = FaultyStore::in_turn([Some(Fault::Slow(Duration::from_secs(2)))]);
        let options = BrokerOptions {
            linger: Some(linger),
            ..BrokerOptions::default()
        };
        let segments = SegmentStore::new(store.clone(), Path::default())
            .with_attempt_timeout(Duration::from_secs(30));
        let broker = broker_on_segments(segments, options, 1).await;
        let first = tokio::spawn({
            let broker = broker.clone();
            async move { broker.produce("t", records(0)).await }
        });
        // The first request finds the pipeline idle: its segment is sealed at once, and
        // its upload is slow.
        for _ in 0..1000 {
            if store.puts_in_flight.load(Ordering::Acquire) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            store.puts_in_flight.load(Ordering::Acquire),
            1,
            "the slow put"
        );
        let second = broker.produce("t", records(1)).await.expect("second");
        let first = first.await.expect("task").expect("first");
        assert_eq!(
            (first[0].offset, second[0].offset),
            (0, 10),
            "committed in order"
        );
        assert_eq!(
            store.most_puts_in_flight.load(Ordering::Acquire),
            puts_at_once,
            "linger {linger:?}"
        );
        let lingered = broker.inner.latency.sealed(SealReason::Linger).get();
        assert_eq!(lingered, puts_at_once as u64 - 1, "linger {linger:?}");
        broker.shutdown().await;
    }
}
