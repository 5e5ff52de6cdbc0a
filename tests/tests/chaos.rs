//! The fault-injection checker (issue 19): a cluster of three brokers on a three-member
//! etcd, whose object store (moto) is behind a proxy that cuts and delays its answers,
//! idempotent producers sending unique values through a proxy that cuts and delays
//! answers, and a nemesis that, on a schedule drawn from the seed, kills (-9) and restarts
//! brokers, the sequencer leader and etcd members, and pauses (SIGSTOP) brokers. Afterwards
//! every broker's log is read and checked: nothing acknowledged lost, nothing duplicated,
//! each producer's values in order, every broker serving the same record at each offset.
//!
//! `FLOE_CHAOS_SECONDS` sets the length (60 s in CI); `FLOE_TEST_SEED` replays a run;
//! `scripts/chaos.sh MINUTES` runs longer ones and prints the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use floe_client::api::ProduceRecordJson;
use floe_client::{Encoding, FloeClient, RetryPolicy};
use floe_tests::chaos::{self, Faults, FaultyProxy};
use floe_tests::cluster::{BUCKET, FloeCluster};
use floe_tests::etcd::EtcdCluster;
use floe_tests::s3::S3Server;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const BROKERS: usize = 3;
const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 4;

fn addresses(cluster: &FloeCluster) -> Vec<String> {
    cluster
        .running()
        .into_iter()
        .map(|index| {
            cluster
                .broker(index)
                .url
                .trim_start_matches("http://")
                .to_owned()
        })
        .collect()
}

#[derive(Debug, Default)]
struct Injected {
    broker_kills: u32,
    leader_kills: u32,
    pauses: u32,
    etcd_kills: u32,
    /// Restarts where the broker did not come up on the first try (a liveness problem
    /// under investigation, docs/reliability.md; printed with what the broker said).
    slow_restarts: u32,
}

/// Starts broker `index` again. A broker that does not come up within the harness's 30 s
/// is reported (with what it said) and started once more; a second failure fails the run.
fn restart(cluster: &mut FloeCluster, index: usize, injected: &mut Injected) {
    let first =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster.spawn(index, &[])));
    let broker = match first {
        Ok(broker) => broker,
        Err(panic) => {
            injected.slow_restarts += 1;
            let said = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            eprintln!("chaos: broker b{index} did not restart: {said}");
            std::thread::sleep(Duration::from_secs(2));
            cluster.spawn(index, &[])
        }
    };
    cluster.brokers[index] = Some(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_faults_exactly_once() {
    let seed = floe_tests::seed();
    let seconds: u64 = std::env::var("FLOE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // The store's answers are cut and delayed too: a PUT that reached the store but whose
    // answer was lost is retried against an object that already exists.
    let mut s3 = S3Server::start(BUCKET);
    let store_proxy = FaultyProxy::start(
        vec![s3.endpoint.trim_start_matches("http://").to_owned()],
        Faults {
            cut: 0.02,
            delay: 0.05,
            max_delay: Duration::from_millis(200),
        },
        seed ^ 0x7333,
    )
    .await;
    s3.endpoint = store_proxy.url.clone();
    let mut cluster = FloeCluster::on(EtcdCluster::start(3), s3, &["--lease-ttl", "2s"]);
    for index in 0..BROKERS {
        let broker = cluster.spawn(index, &[]);
        cluster.brokers.push(Some(broker));
    }
    cluster.wait_settled(BROKERS, Duration::from_secs(60)).await;
    floe_tests::create_topic(&cluster.client(0), "t", PARTITIONS).await;
    let proxy = FaultyProxy::start(
        addresses(&cluster),
        Faults {
            cut: 0.03,
            delay: 0.05,
            max_delay: Duration::from_millis(100),
        },
        seed,
    )
    .await;

    // Producers: unique values `p<k>-<n>`, one request at a time, retried by the client
    // under their sequence for as long as the cluster needs to recover.
    let client = FloeClient::with_timeout(&proxy.url, Duration::from_secs(10))
        .without_owner_routing()
        .with_retry(RetryPolicy {
            attempts: 400,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
        });
    let running = Arc::new(AtomicBool::new(true));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let client = client.clone();
        let running = Arc::clone(&running);
        producers.push(tokio::spawn(async move {
            let (mut acks, mut unacknowledged) = (Vec::new(), 0u64);
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let value = format!("p{producer}-{n}");
                n += 1;
                let record = vec![ProduceRecordJson {
                    value: Some(json!(value)),
                    ..Default::default()
                }];
                match client.produce("t", record, Encoding::Text).await {
                    Ok(answer) => {
                        let offset = &answer.offsets[0];
                        acks.push((value, offset.partition, offset.offset));
                    }
                    Err(_) => unacknowledged += 1,
                }
            }
            (acks, unacknowledged)
        }));
    }

    // The nemesis.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut injected = Injected::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..5_000))).await;
        let running_brokers = cluster.running();
        match rng.random_range(0..4) {
            0 => {
                let victim = running_brokers[rng.random_range(0..running_brokers.len())];
                cluster.kill(victim);
                injected.broker_kills += 1;
                proxy.set_upstreams(addresses(&cluster));
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..3_000))).await;
                restart(&mut cluster, victim, &mut injected);
            }
            1 => {
                let Ok(info) = cluster.client(running_brokers[0]).cluster().await else {
                    continue;
                };
                let Some(leader) = info
                    .leader
                    .and_then(|id| id.trim_start_matches('b').parse::<usize>().ok())
                else {
                    continue;
                };
                if cluster.brokers[leader].is_none() {
                    continue;
                }
                cluster.kill(leader);
                injected.leader_kills += 1;
                proxy.set_upstreams(addresses(&cluster));
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..3_000))).await;
                restart(&mut cluster, leader, &mut injected);
            }
            2 => {
                let victim = running_brokers[rng.random_range(0..running_brokers.len())];
                cluster.broker(victim).pause();
                injected.pauses += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..4_000))).await;
                cluster.broker(victim).resume();
            }
            _ => {
                let members = cluster.etcd.running();
                let victim = members[rng.random_range(0..members.len())];
                cluster.etcd.kill(victim);
                injected.etcd_kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..3_000))).await;
                cluster.etcd.restart(victim);
            }
        }
        proxy.set_upstreams(addresses(&cluster));
    }

    // Heal, let the producers finish their last requests, and read every broker's log.
    cluster.wait_settled(BROKERS, Duration::from_secs(90)).await;
    running.store(false, Ordering::Relaxed);
    let mut acks = Vec::new();
    let mut unacknowledged = 0;
    for producer in producers {
        let (acked, missed) = producer.await.expect("producer");
        acks.push(acked);
        unacknowledged += missed;
    }
    let mut logs: Vec<Vec<BTreeMap<u64, String>>> = Vec::new();
    for index in cluster.running() {
        logs.push(chaos::read_log(&cluster.broker(index).client(), "t", PARTITIONS).await);
    }
    let verdict = chaos::check(&logs, &acks);
    eprintln!(
        "chaos: seed {seed}, {seconds} s; faults: {injected:?}; clients: {}; store: {}; \
         {verdict:?}; {unacknowledged} requests unacknowledged (the client gave up; not \
         counted as lost)",
        proxy.counts.summary(),
        store_proxy.counts.summary()
    );
    assert!(verdict.clean(), "seed {seed}: {verdict:?}");
    assert!(verdict.acknowledged > 0, "nothing was acknowledged");
    // The client gives up only after 400 attempts; a run where it gave up on more than
    // one request in a hundred is failing, whatever the log says.
    assert!(
        unacknowledged * 100 <= verdict.acknowledged,
        "seed {seed}: {unacknowledged} requests given up for {} acknowledged",
        verdict.acknowledged
    );
    assert!(
        proxy.counts.cut.load(Ordering::Relaxed) > 0,
        "the proxy cut no answer"
    );
    assert!(
        injected.broker_kills + injected.leader_kills + injected.pauses + injected.etcd_kills > 0
    );
}
