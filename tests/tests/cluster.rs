//! Three brokers on real etcd and a real S3-compatible server: produce anywhere, fetch
//! anywhere; brokers and the sequencer leader killed under load; a paused broker fenced;
//! the etcd leader killed under load.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_client::api::{CreateTopicRequest, ProduceRecordJson};
use floe_client::{Encoding, FloeClient};
use floe_tests::cluster::FloeCluster;
use serde_json::Value;

const FLAGS: &[&str] = &["--linger", "20ms", "--lease-ttl", "3s"];
const PARTITIONS: u32 = 3;

/// What producers saw: acknowledged (partition, offset) → value, and when acks came.
#[derive(Debug, Default)]
struct Load {
    acked: BTreeMap<(u32, u64), String>,
    ack_times: Vec<Instant>,
    failures: usize,
}

type Shared = Arc<Mutex<Load>>;

async fn create_topic(client: &FloeClient, name: &str) {
    client
        .create_topic(&CreateTopicRequest {
            name: name.into(),
            partitions: PARTITIONS,
            config: BTreeMap::new(),
        })
        .await
        .expect("create topic");
}

/// Sends requests of 20 unique values, rotating over `targets()`, until `stop` is set.
async fn producer(
    id: usize,
    targets: Arc<Mutex<Vec<FloeClient>>>,
    topic: String,
    load: Shared,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut request = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        request += 1;
        let client = {
            let targets = targets.lock().expect("lock");
            targets[(id + request as usize) % targets.len()].clone()
        };
        let values: Vec<String> = (0..20).map(|i| format!("p{id}-r{request}-{i}")).collect();
        let records = values
            .iter()
            .map(|value| ProduceRecordJson {
                value: Some(Value::String(value.clone())),
                ..Default::default()
            })
            .collect();
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            client.produce(&topic, records, Encoding::Text),
        )
        .await;
        match sent {
            Ok(Ok(response)) => {
                let mut load = load.lock().expect("lock");
                load.ack_times.push(Instant::now());
                for (ack, value) in response.offsets.iter().zip(values) {
                    let previous = load.acked.insert((ack.partition, ack.offset), value);
                    assert!(
                        previous.is_none(),
                        "offset {}:{} acknowledged twice",
                        ack.partition,
                        ack.offset
                    );
                }
            }
            _ => {
                load.lock().expect("lock").failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every record of a partition as one broker serves it, once its high watermark reaches
/// `at_least` (a replica may trail the leader by a watch event).
async fn read_all(
    client: &FloeClient,
    topic: &str,
    partition: u32,
    at_least: u64,
) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = floe_tests::read_partition(client, topic, partition).await;
        if records.len() as u64 >= at_least {
            return records
                .into_iter()
                .map(|record| {
                    let value = record.value.and_then(|v| v.as_str().map(str::to_owned));
                    (record.offset, value.unwrap_or_default())
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "replica stuck below {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks the logs as every running broker serves them: identical everywhere, dense from
/// 0, every acknowledged record at its offset, no value twice.
async fn check_logs(cluster: &FloeCluster, topic: &str, acked: &BTreeMap<(u32, u64), String>) {
    for partition in 0..PARTITIONS {
        let needed = acked
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| offset + 1)
            .max()
            .unwrap_or(0);
        let mut reference: Option<Vec<(u64, String)>> = None;
        for index in cluster.running() {
            let records = read_all(&cluster.client(index), topic, partition, needed).await;
            for (position, (offset, _)) in records.iter().enumerate() {
                assert_eq!(*offset, position as u64, "partition {partition} is dense");
            }
            let mut seen = HashMap::new();
            for (offset, value) in &records {
                if let Some(first) = seen.insert(value.clone(), *offset) {
                    panic!("value {value} appears at {first} and {offset}");
                }
            }
            let by_offset: BTreeMap<u64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
            for ((p, offset), value) in acked.iter().filter(|((p, _), _)| *p == partition) {
                assert_eq!(
                    by_offset.get(offset).copied(),
                    Some(value),
                    "acknowledged {p}:{offset} is readable from broker b{index}"
                );
            }
            match &reference {
                None => reference = Some(records),
                Some(reference) => {
                    let common = reference.len().min(records.len());
                    assert_eq!(
                        reference[..common],
                        records[..common],
                        "brokers serve the same records at the same offsets"
                    );
                }
            }
        }
    }
}

struct Running {
    load: Shared,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    targets: Arc<Mutex<Vec<FloeClient>>>,
}

fn start_load(cluster: &FloeCluster, topic: &str, producers: usize) -> Running {
    let targets = Arc::new(Mutex::new(
        cluster
            .running()
            .into_iter()
            .map(|i| cluster.client(i))
            .collect::<Vec<_>>(),
    ));
    let load = Shared::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = (0..producers)
        .map(|id| {
            tokio::spawn(producer(
                id,
                targets.clone(),
                topic.to_owned(),
                load.clone(),
                stop.clone(),
            ))
        })
        .collect();
    Running {
        load,
        stop,
        tasks,
        targets,
    }
}

impl Running {
    fn acked(&self) -> usize {
        self.load.lock().expect("lock").acked.len()
    }

    async fn wait_acked(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < count {
            assert!(
                Instant::now() < deadline,
                "load stalled at {}",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn retarget(&self, cluster: &FloeCluster) {
        *self.targets.lock().expect("lock") = cluster
            .running()
            .into_iter()
            .map(|i| cluster.client(i))
            .collect();
    }

    async fn finish(self) -> Load {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("producer");
        }
        std::mem::take(&mut *self.load.lock().expect("lock"))
    }
}

/// The longest time without any acknowledgement after `from`.
fn longest_gap(times: &[Instant], from: Instant) -> Duration {
    let mut times: Vec<Instant> = times.iter().copied().filter(|t| *t >= from).collect();
    times.sort();
    let mut previous = from;
    let mut gap = Duration::ZERO;
    for time in times {
        gap = gap.max(time - previous);
        previous = time;
    }
    gap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_serve_the_same_log() {
    let cluster = FloeCluster::start(3, 1, FLAGS);
    cluster.wait_settled(3, Duration::from_secs(30)).await;
    create_topic(&cluster.client(1), "events").await;
    let load = start_load(&cluster, "events", 4);
    load.wait_acked(2_000).await;
    let load = load.finish().await;
    assert_eq!(load.failures, 0, "no produce fails in a healthy cluster");
    check_logs(&cluster, "events", &load.acked).await;

    // Every partition has a live owner, the same seen from every broker.
    let info = cluster.client(0).cluster().await.expect("cluster");
    assert_eq!(info.sequencer, "etcd");
    let owners: Vec<_> = info.owners.iter().filter(|o| o.topic == "events").collect();
    assert_eq!(owners.len(), PARTITIONS as usize);
    let live: Vec<String> = info.brokers.iter().map(|b| b.id.clone()).collect();
    assert!(owners.iter().all(|o| live.contains(&o.owner)), "{owners:?}");
    for index in 1..3 {
        let other = cluster.client(index).cluster().await.expect("cluster");
        assert_eq!(other.leader, info.leader);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_broker_and_then_the_leader_loses_no_acknowledged_record() {
    let mut cluster = FloeCluster::start(3, 1, FLAGS);
    let leader = cluster.wait_settled(3, Duration::from_secs(30)).await;
    create_topic(&cluster.client(leader), "load").await;
    let load = start_load(&cluster, "load", 4);
    load.wait_acked(1_000).await;

    // A broker that is not the leader.
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let killed_at = Instant::now();
    cluster.kill(victim);
    load.retarget(&cluster);
    let before = load.acked();
    load.wait_acked(before + 1_000).await;
    let follower_gap = longest_gap(&load.load.lock().expect("lock").ack_times, killed_at);

    // Now the sequencer leader.
    let killed_at = Instant::now();
    cluster.kill(leader);
    load.retarget(&cluster);
    let before = load.acked();
    load.wait_acked(before + 1_000).await;
    let leader_gap = longest_gap(&load.load.lock().expect("lock").ack_times, killed_at);
    let load = load.finish().await;
    eprintln!(
        "produce unavailable for at most {follower_gap:?} after kill -9 of a broker and \
         {leader_gap:?} after kill -9 of the sequencer leader (lease TTL 3 s); \
         {} acknowledged, {} failed requests",
        load.acked.len(),
        load.failures
    );
    check_logs(&cluster, "load", &load.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_over_so_the_others_commit_while_it_drains() {
    let mut cluster = FloeCluster::start(3, 1, FLAGS);
    let leader = cluster.wait_settled(3, Duration::from_secs(30)).await;
    create_topic(&cluster.client(leader), "handover").await;
    let load = start_load(&cluster, "handover", 4);
    // Only the other brokers take produce: their commits go through the leader.
    *load.targets.lock().expect("lock") = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.client(i))
        .collect();
    load.wait_acked(400).await;
    // A consumer long-polls an idle partition on the leader: its drain waits for it.
    create_topic(&cluster.client(leader), "idle").await;
    let poller = cluster.client(leader);
    let poll = tokio::spawn(async move {
        let options = floe_client::FetchOptions {
            wait: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        poller.fetch("idle", 0, 0, &options).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // When a surviving broker first names another leader.
    let survivor = cluster.client((leader + 1) % 3);
    let old_leader = format!("b{leader}");
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let moved = tokio::spawn({
        let watching = watching.clone();
        async move {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(info) = survivor.cluster().await
                    && info.leader.is_some_and(|leader| leader != old_leader)
                {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        }
    });
    let stopped_at = Instant::now();
    tokio::task::block_in_place(|| cluster.stop(leader));
    let poll = poll.await.expect("poll");
    assert!(poll.is_ok(), "the long-poll was answered: {poll:?}");
    let stop_took = stopped_at.elapsed();
    let exited = Instant::now();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let moved = moved.await.expect("watcher");
    let before = load.acked();
    load.wait_acked(before + 400).await;
    let gap = longest_gap(&load.load.lock().expect("lock").ack_times, stopped_at);
    let load = load.finish().await;
    // Acknowledgements while the old leader was still draining (after a second, which a
    // hand-over takes far less than).
    let from = stopped_at + Duration::from_secs(1);
    let while_draining = load
        .ack_times
        .iter()
        .filter(|at| **at >= from && **at < exited)
        .count();
    eprintln!(
        "the leader stopped in {stop_took:?}; {while_draining} acknowledgements while it \
         drained; the longest pause in acknowledgements {gap:?}; {} acknowledged, {} \
         failed requests",
        load.acked.len(),
        load.failures
    );
    assert!(
        stop_took >= Duration::from_millis(1500),
        "the long-poll held the leader's drain ({stop_took:?})"
    );
    assert!(
        moved.is_some_and(|moved| moved < exited),
        "another broker led before the old leader exited"
    );
    // It handed the leadership over before it stopped answering: the others' commits
    // went on through the new leader while it drained, and none failed.
    assert!(
        while_draining > 0,
        "no produce was acknowledged while the leader drained"
    );
    assert_eq!(load.failures, 0, "produce failed while the leader stopped");
    check_logs(&cluster, "handover", &load.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_commits_nothing_after_its_lease_lapses() {
    let mut cluster = FloeCluster::start(2, 1, FLAGS);
    let leader = cluster.wait_settled(2, Duration::from_secs(30)).await;
    create_topic(&cluster.client(leader), "paused").await;
    // A third broker that holds records for 2 s before flushing them, idle or not.
    let paused = cluster.spawn(2, &["--linger", "2s", "--flush-when-idle", "false"]);
    cluster.brokers.push(Some(paused));
    cluster.wait_settled(3, Duration::from_secs(30)).await;

    // The broker's own answer is under test: no client retries (an idempotent client would
    // rightly retry after the pause and commit the record once).
    let client = cluster.client(2).without_idempotence();
    let record = ProduceRecordJson {
        value: Some(Value::String("from-the-past".into())),
        partition: Some(0),
        ..Default::default()
    };
    let pending =
        tokio::spawn(async move { client.produce("paused", vec![record], Encoding::Text).await });
    // Paused once it holds the record in its open segment (accepted, not yet committed).
    let broker = cluster.brokers[2].as_ref().expect("running");
    let deadline = Instant::now() + Duration::from_secs(20);
    while floe_tests::metric_at(&broker.url, "floe_buffered_bytes")
        .await
        .unwrap_or(0.0)
        <= 0.0
    {
        assert!(
            Instant::now() < deadline && !pending.is_finished(),
            "b2 never held the record in its open segment"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.pause();
    // Past the 3 s lease: the others see it gone.
    let gone = Instant::now() + Duration::from_secs(15);
    loop {
        let info = cluster.client(leader).cluster().await.expect("cluster");
        if !info.brokers.iter().any(|b| b.id == "b2") {
            break;
        }
        assert!(
            Instant::now() < gone,
            "paused broker's registration never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hwm_before = cluster
        .client(leader)
        .describe_topic("paused")
        .await
        .expect("describe")
        .partitions[0]
        .high_watermark;
    broker.resume();
    let answer = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the paused request is answered")
        .expect("task");
    let error = answer.expect_err("a request buffered before the pause is not acknowledged");
    assert_eq!(error.status().map(|s| s.as_u16()), Some(503), "{error}");
    // Nothing it buffered was committed, on any broker: a record committed after its answer
    // is the partition's first, and each broker, once it has that record, has no other.
    assert_eq!(hwm_before, 0);
    let marker = ProduceRecordJson {
        value: Some(Value::String("after-the-pause".into())),
        partition: Some(0),
        ..Default::default()
    };
    let committed = cluster
        .client(leader)
        .produce("paused", vec![marker], Encoding::Text)
        .await
        .expect("produce through the leader");
    assert_eq!(committed.offsets[0].offset, 0, "nothing before it");
    for index in 0..2 {
        let records = read_all(&cluster.client(index), "paused", 0, 1).await;
        assert_eq!(
            records,
            [(0, "after-the-pause".to_owned())],
            "broker b{index} serves only what was committed after the paused broker's answer"
        );
    }
    // It rejoins with a new session and works again.
    cluster.wait_settled(3, Duration::from_secs(30)).await;
    let record = ProduceRecordJson {
        value: Some(Value::String("after-resume".into())),
        partition: Some(0),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cluster
            .client(2)
            .produce("paused", vec![record.clone()], Encoding::Text)
            .await
        {
            Ok(response) => {
                assert_eq!(response.offsets[0].offset, 1);
                break;
            }
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "resumed broker never produced: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    cluster.kill(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_under_load_loses_nothing() {
    let mut cluster = FloeCluster::start(2, 3, FLAGS);
    let leader = cluster.wait_settled(2, Duration::from_secs(30)).await;
    create_topic(&cluster.client(leader), "etcd").await;
    let load = start_load(&cluster, "etcd", 4);
    load.wait_acked(1_000).await;
    let etcd_leader = cluster.etcd.leader().expect("etcd leader");
    let killed_at = Instant::now();
    cluster.etcd.kill(etcd_leader);
    let before = load.acked();
    load.wait_acked(before + 1_000).await;
    let gap = longest_gap(&load.load.lock().expect("lock").ack_times, killed_at);
    let load = load.finish().await;
    eprintln!(
        "produce unavailable for at most {gap:?} after kill -9 of the etcd leader; {} \
         acknowledged, {} failed requests",
        load.acked.len(),
        load.failures
    );
    check_logs(&cluster, "etcd", &load.acked).await;
}

#[test]
fn init_bucket_creates_and_checks_and_serve_refuses_a_missing_bucket() {
    let s3 = floe_tests::s3::S3Server::start("floe-existing");
    let floe = |args: &[&str]| {
        std::process::Command::new(floe_tests::floe_binary())
            .args(args)
            .envs(s3.env())
            .env_remove("FLOE_CONFIG")
            .output()
            .expect("run floe")
    };
    let first = floe(&["admin", "init-bucket", "--store", "s3://floe-new/p"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"));
    let second = floe(&["admin", "init-bucket", "--store", "s3://floe-new/p"]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already exists"));

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let refused = floe(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--store",
        "s3://floe-missing/p",
    ]);
    assert!(
        !refused.status.success(),
        "serve must refuse a missing bucket"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("init-bucket"),
        "the message names the fix: {stderr}"
    );
}
