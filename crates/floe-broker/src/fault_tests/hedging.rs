//! Hedged flush uploads (ADR 0012): a flush's upload still unanswered after the hedge
//! delay gets a second create-only upload of the same object beside it, at most one at a
//! time per broker, and the first to land answers.

use prometheus_client::registry::Registry;

use super::*;

/// A broker whose flush uploads get a second one beside them after [`HEDGE_AFTER`], and
/// whose upload attempts would otherwise wait an hour before they are retried.
async fn hedged_broker(store: Arc<FaultyStore>) -> Broker {
    hedged_broker_counted(store).await.0
}

/// [`hedged_broker`], with the registry its store's metrics are registered in.
async fn hedged_broker_counted(store: Arc<FaultyStore>) -> (Broker, Registry) {
    let store = SegmentStore::new(store, Path::default())
        .with_attempt_timeout(Duration::from_secs(3600))
        .with_hedge_after(Some(HEDGE_AFTER));
    let mut registry = Registry::default();
    store.register_metrics(&mut registry);
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        ..BrokerOptions::default()
    };
    (broker_on_segments(store, options, 1).await, registry)
}

/// `floe_store_upload_hedges_total` as (started, won).
fn hedges(registry: &Registry) -> (u64, u64) {
    let count = |outcome: &str| {
        scraped(
            registry,
            &format!("floe_store_upload_hedges_total{{outcome=\"{outcome}\"}}"),
        )
    };
    (count("started"), count("won"))
}

const HEDGE_AFTER: Duration = Duration::from_millis(50);

/// A put hangs: the hedge, a second upload of the same object started beside it, lands
/// and answers long before the hung attempt's timeout. One object, committed once.
#[tokio::test(start_paused = true)]
async fn a_hung_put_is_answered_by_its_hedge() {
    let store = FaultyStore::in_turn([Some(Fault::Hang)]);
    let (broker, registry) = hedged_broker_counted(store.clone()).await;
    let started = tokio::time::Instant::now();
    let acks = broker
        .produce("t", records(0))
        .await
        .expect("the hedge lands");
    // The clock is paused, so this is exact: the hung attempt (an hour's timeout, or its
    // 600 s hang) was not waited for.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(acks.len(), 10);
    assert_eq!(store.injected(Fault::Hang), 1);
    assert_eq!(store.objects().await.len(), 1);
    assert_eq!(hedges(&registry), (1, 1), "one hedge, and it answered");
    let acks = broker.produce("t", records(1)).await.expect("produce");
    assert_eq!(acks[0].offset, 10);
    assert_eq!(read_partition(&broker, 0).await.len(), 20);
    broker.shutdown().await;
}

/// A put hangs and its request reaches the store only after the hedge landed and was
/// committed: the create-only put refuses it, the committed object stays as it was.
#[tokio::test(start_paused = true)]
async fn a_hedged_put_that_lands_after_its_hedge_is_refused_and_changes_nothing() {
    let store = FaultyStore::in_turn([Some(Fault::LandsLate(LANDS_AFTER_RETRY))]);
    let (broker, registry) = hedged_broker_counted(store.clone()).await;
    let acks = broker
        .produce("t", records(0))
        .await
        .expect("the hedge lands");
    assert_eq!(acks.len(), 10);
    let committed = store.objects().await;
    assert_eq!(committed.len(), 1);
    assert_eq!(
        store.settled_late_writes().await,
        vec![LateWrite::RefusedAsExisting]
    );
    assert_eq!(hedges(&registry), (1, 1), "the hedge answered");
    assert_eq!(store.objects().await, committed);
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(described.partitions[0].high_watermark, 10, "committed once");
    broker.shutdown().await;
}

/// The first put is slow but lands; its hedge fails on every attempt before it does. The
/// first answers, the hedge's failures change nothing: one object, committed once.
#[tokio::test(start_paused = true)]
async fn a_hedge_that_fails_while_its_first_upload_lands_changes_nothing() {
    let mut script = vec![Fault::Slow(Duration::from_secs(2))];
    script.extend([Fault::Error; 8]);
    let store = FaultyStore::new(Plan::PerObject {
        scripts: vec![script],
        seen: HashMap::new(),
    });
    let (broker, registry) = hedged_broker_counted(store.clone()).await;
    let acks = broker
        .produce("t", records(0))
        .await
        .expect("the first upload lands");
    assert_eq!(acks.len(), 10);
    assert!(
        store.injected(Fault::Error) >= 1,
        "the hedge ran and failed"
    );
    assert_eq!(hedges(&registry), (1, 0), "a hedge that failed did not win");
    assert_eq!(store.objects().await.len(), 1);
    assert_eq!(read_partition(&broker, 0).await.len(), 10);
    broker.shutdown().await;
}

/// The first put hangs and then fails, and its hedge fails on every attempt: the flush
/// fails once both have, its producers get an error, nothing is committed, and the next
/// flush commits.
#[tokio::test(start_paused = true)]
async fn a_flush_whose_upload_and_hedge_both_fail_commits_nothing() {
    let mut script = vec![Fault::Hang];
    script.extend([Fault::Error; 16]);
    let store = FaultyStore::new(Plan::PerObject {
        scripts: vec![script, Vec::new()],
        seen: HashMap::new(),
    });
    let broker = hedged_broker(store.clone()).await;
    let error = broker
        .produce("t", records(0))
        .await
        .expect_err("both uploads failed");
    assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable, "{error}");
    assert_eq!(store.injected(Fault::Hang), 1);
    assert!(store.objects().await.is_empty());
    assert_eq!(broker.buffered_bytes(), 0);
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(
        described.partitions[0].high_watermark, 0,
        "nothing committed"
    );
    let acks = broker
        .produce("t", records(1))
        .await
        .expect("the next flush");
    assert_eq!(acks[0].offset, 0);
    broker.shutdown().await;
}

/// Three flushes hang at once. The first to ask gets a hedge, which is slow too; the
/// others, while that hedge is in flight, get none (a refused ask must not free the slot
/// for the next) and wait for their own uploads (the hung attempt fails after 600 s and
/// is retried). All commit, in seal order.
#[tokio::test(start_paused = true)]
async fn one_hedge_at_a_time_per_broker() {
    let script = vec![Fault::Hang, Fault::Slow(Duration::from_secs(10))];
    let store = FaultyStore::new(Plan::PerObject {
        scripts: vec![script; 3],
        seen: HashMap::new(),
    });
    let broker = hedged_broker(store.clone()).await;
    // Each request after the previous one's segment sealed: three segments.
    let produce = |request: usize| {
        let broker = &broker;
        async move {
            tokio::time::sleep(Duration::from_millis(5) * request as u32).await;
            broker.produce("t", records(request)).await
        }
    };
    let (first, second, third) = tokio::join!(produce(0), produce(1), produce(2));
    let offsets = [first, second, third].map(|acks| acks.expect("produce")[0].offset);
    assert_eq!(offsets, [0, 10, 20]);
    // Three hung puts and one hedge: a second hedge would have been a fifth put in flight.
    assert_eq!(
        store.most_puts_in_flight.load(Ordering::Acquire),
        4,
        "injected {:?}",
        store.injected.lock()
    );
    assert_eq!(store.injected(Fault::Hang), 3);
    assert_eq!(store.objects().await.len(), 3);
    assert_eq!(read_partition(&broker, 0).await.len(), 30);
    broker.shutdown().await;
}
