//! `floe consume -g` as users run it: real consumer processes sharing a topic through a
//! real `floe serve`, killed with SIGKILL and paused with SIGSTOP.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_client::FloeClient;
use floe_tests::cluster::FloeCluster;
use floe_tests::{FloeProcess, create_topic, floe_binary};
use serde_json::{Value, json};

const TOPIC: &str = "clicks";
const PARTITIONS: u32 = 12;

/// One delivered record: which consumer printed it, its partition, offset and value.
#[derive(Debug, Clone)]
struct Delivery {
    consumer: usize,
    partition: u32,
    offset: u64,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A `floe consume -g` process; its stdout lines go to the shared log, its stderr lines
/// to `stderr`.
struct Consumer {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Consumer {
    fn start(index: usize, server: &str, group: &str, session: &str, log: &Log) -> Self {
        let mut child = Command::new(floe_binary())
            .args([
                "consume",
                TOPIC,
                "-g",
                group,
                "-o",
                "earliest",
                "-F",
                "%p %o",
                "--commit-every",
                "0s",
                "--session-timeout",
                session,
                "-s",
                server,
            ])
            .env_remove("FLOE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn floe consume");
        let stdout = child.stdout.take().expect("stdout");
        let log = Arc::clone(log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut fields = line.split(' ');
                let (Some(partition), Some(offset)) = (fields.next(), fields.next()) else {
                    continue;
                };
                log.lock().expect("log").push(Delivery {
                    consumer: index,
                    partition: partition.parse().expect("partition"),
                    offset: offset.parse().expect("offset"),
                });
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let errors = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(errors).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("FLOE_TEST_LOGS").is_some() {
                    eprintln!("[consumer {index}] {line}");
                }
                lines.lock().expect("stderr").push(line);
            }
        });
        Self {
            child: Some(child),
            stderr,
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        self.signal_child(&child, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!("floe consume did not stop within 20 s of SIGTERM");
    }

    fn signal_child(&self, child: &Child, signal: &str) {
        let _ = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status();
    }

    fn stderr_has(&self, text: &str) -> bool {
        self.stderr
            .lock()
            .expect("stderr")
            .iter()
            .any(|line| line.contains(text))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Produces `count` records round-robin over the partitions, 500 a request.
async fn produce(client: &reqwest::Client, server: &str, count: usize) {
    for chunk in 0..count.div_ceil(500) {
        let records: Vec<Value> = (0..500.min(count - chunk * 500))
            .map(
                |i| json!({"value": format!("v{chunk}-{i}"), "partition": (i as u32) % PARTITIONS}),
            )
            .collect();
        let response = client
            .post(format!("{server}/v1/topics/{TOPIC}/records"))
            .json(&json!({ "records": records }))
            .send()
            .await
            .expect("produce");
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// Each partition's high watermark.
async fn ends(client: &FloeClient) -> BTreeMap<u32, u64> {
    let topic = client.describe_topic(TOPIC).await.expect("describe");
    topic
        .partitions
        .iter()
        .map(|p| (p.partition, p.high_watermark))
        .collect()
}

/// Waits until every offset below `ends` was delivered by someone.
async fn all_delivered(log: &Log, ends: &BTreeMap<u32, u64>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing: usize = {
            let log = log.lock().expect("log");
            let seen: BTreeSet<(u32, u64)> = log.iter().map(|d| (d.partition, d.offset)).collect();
            ends.iter()
                .map(|(p, end)| (0..*end).filter(|o| !seen.contains(&(*p, *o))).count())
                .sum()
        };
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} records never delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the group has `members` members holding `per_member` partitions each and
/// nothing is being handed over; returns each member's partitions.
async fn balanced(
    client: &FloeClient,
    group: &str,
    members: usize,
    per_member: &[usize],
    limit: Duration,
) -> Vec<BTreeSet<u32>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(described) = client.describe_group(group).await {
            let mut counts: Vec<usize> = described
                .members
                .iter()
                .map(|m| m.assignment.len())
                .collect();
            counts.sort();
            if described.members.len() == members
                && counts == per_member
                && described.state == "stable"
            {
                return described
                    .members
                    .iter()
                    .map(|m| m.assignment.iter().map(|a| a.partition).collect())
                    .collect();
            }
        }
        assert!(Instant::now() < deadline, "group {group} did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per partition, the consumers that printed its records, in offset order, with repeats
/// of the same consumer folded: `[0, 2]` means consumer 0 printed a run, then consumer 2.
fn runs(deliveries: &[Delivery]) -> BTreeMap<u32, Vec<usize>> {
    let mut by_partition: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
    for delivery in deliveries {
        by_partition
            .entry(delivery.partition)
            .or_default()
            .push((delivery.offset, delivery.consumer));
    }
    by_partition
        .into_iter()
        .map(|(partition, mut list)| {
            list.sort();
            let mut owners: Vec<usize> = list.into_iter().map(|(_, c)| c).collect();
            owners.dedup();
            (partition, owners)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_consumers_split_a_topic_and_a_killed_one_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    three_consumers(std::slice::from_ref(&server.url)).await;
}

/// The same on a cluster (etcd, an S3-compatible store, three brokers): each consumer
/// talks to a different broker, so two of them reach the coordinator by forwarding.
#[tokio::test(flavor = "multi_thread")]
async fn three_consumers_on_three_brokers() {
    let cluster = FloeCluster::start(3, 1, &["--linger", "20ms", "--lease-ttl", "3s"]);
    cluster.wait_settled(3, Duration::from_secs(30)).await;
    let urls: Vec<String> = (0..3)
        .map(|index| cluster.broker(index).url.clone())
        .collect();
    three_consumers(&urls).await;
}

/// Three consumers (the first on `urls[0]`, the others on the next URLs when there are
/// more) share a 12-partition topic while 50,000 records are produced; one is killed.
async fn three_consumers(urls: &[String]) {
    let client = FloeClient::new(&urls[0]).without_owner_routing();
    create_topic(&client, TOPIC, PARTITIONS).await;
    let http = reqwest::Client::new();
    let log: Log = Arc::default();

    // Three consumers join while 50,000 records are produced.
    let producer = {
        let http = http.clone();
        let url = urls[0].clone();
        tokio::spawn(async move { produce(&http, &url, 50_000).await })
    };
    let mut consumers: Vec<Consumer> = (0..3)
        .map(|index| Consumer::start(index, &urls[index % urls.len()], "readers", "3s", &log))
        .collect();
    producer.await.expect("producer");
    let shares = balanced(&client, "readers", 3, &[4, 4, 4], Duration::from_secs(60)).await;
    let before_kill = ends(&client).await;
    all_delivered(&log, &before_kill, Duration::from_secs(120)).await;

    // While nobody crashed: every record printed exactly once, and each partition's
    // records were printed in runs by one consumer at a time (a partition read by two at
    // once would repeat offsets or interleave them).
    let clean: Vec<Delivery> = log.lock().expect("log").clone();
    let mut seen: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for delivery in &clean {
        if let Some(first) = seen.insert((delivery.partition, delivery.offset), delivery.consumer) {
            panic!(
                "{}/{} printed twice before any crash, by consumers {first} and {}",
                delivery.partition, delivery.offset, delivery.consumer
            );
        }
    }
    assert_eq!(seen.len(), 50_000);
    for (partition, owners) in runs(&clean) {
        let distinct: BTreeSet<usize> = owners.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            owners.len(),
            "partition {partition} went back to a consumer it had left: {owners:?}"
        );
    }
    eprintln!("shares {shares:?}");

    // SIGKILL one consumer: its partitions move to the two others after its session.
    let killed_at = Instant::now();
    consumers[0].kill();
    balanced(&client, "readers", 2, &[6, 6], Duration::from_secs(30)).await;
    eprintln!(
        "the killed consumer's partitions moved in {:?} (session 3 s)",
        killed_at.elapsed()
    );
    produce(&http, &urls[0], 6_000).await;
    let after_kill = ends(&client).await;
    all_delivered(&log, &after_kill, Duration::from_secs(60)).await;
    // At least once: only offsets the killed consumer printed after its last commit can
    // come twice, and only on partitions it held.
    let deliveries = log.lock().expect("log").clone();
    let mut counts: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for delivery in &deliveries {
        *counts
            .entry((delivery.partition, delivery.offset))
            .or_default() += 1;
    }
    let killed_held: BTreeSet<u32> = deliveries
        .iter()
        .filter(|d| d.consumer == 0)
        .map(|d| d.partition)
        .collect();
    for ((partition, offset), count) in &counts {
        assert!(
            *count == 1 || killed_held.contains(partition),
            "{partition}/{offset} printed {count} times, not a partition of the killed consumer"
        );
    }

    // The survivors stop on SIGTERM after committing: the group's lag is zero and it is
    // empty.
    for consumer in &mut consumers[1..] {
        assert!(consumer.stop(), "a clean exit");
        assert!(consumer.stderr_has("left"));
    }
    let offsets = client.group_offsets("readers").await.expect("offsets");
    assert!(
        offsets.offsets.iter().all(|p| p.lag == 0),
        "{:?}",
        offsets.offsets
    );
    let described = client.describe_group("readers").await.expect("describe");
    assert_eq!(described.state, "empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_consumer_is_removed_and_rejoins_when_it_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create_topic(&client, TOPIC, PARTITIONS).await;
    let log: Log = Arc::default();
    let paused = Consumer::start(0, &server.url, "pausers", "2s", &log);
    let _other = Consumer::start(1, &server.url, "pausers", "2s", &log);
    balanced(&client, "pausers", 2, &[6, 6], Duration::from_secs(30)).await;

    paused.signal("-STOP");
    // Past its session the group drops it, and the other consumer takes everything.
    balanced(&client, "pausers", 1, &[12], Duration::from_secs(30)).await;
    paused.signal("-CONT");
    // On resume it is told it was removed (409), rejoins, and gets its share back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !paused.stderr_has("rejoined") {
        assert!(
            Instant::now() < deadline,
            "the resumed consumer did not rejoin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    balanced(&client, "pausers", 2, &[6, 6], Duration::from_secs(30)).await;
}

/// Runs `floe` with `args` and returns its stdout; panics on failure.
fn floe(args: &[&str]) -> String {
    let output = Command::new(floe_binary())
        .args(args)
        .env_remove("FLOE_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("run floe");
    assert!(
        output.status.success(),
        "floe {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_commands_list_describe_reset_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    create_topic(&client, TOPIC, PARTITIONS).await;
    produce(&reqwest::Client::new(), &server.url, 10).await;
    // A consumer reads three records and leaves, committing them.
    let consumed = floe(&[
        "consume",
        TOPIC,
        "-g",
        "ops",
        "-o",
        "earliest",
        "-n",
        "3",
        "-F",
        "%p %o",
        "-s",
        &server.url,
    ]);
    assert_eq!(consumed.lines().count(), 3, "{consumed}");
    let listed = floe(&["groups", "list", "-s", &server.url]);
    assert!(listed.starts_with("ops\tempty\t0 members"), "{listed}");
    let described = floe(&["groups", "describe", "ops", "-s", &server.url]);
    assert!(described.contains("state = empty"), "{described}");
    let lag: u64 = client
        .group_offsets("ops")
        .await
        .expect("offsets")
        .offsets
        .iter()
        .map(|p| p.lag)
        .sum();
    assert_eq!(lag, 7, "three of ten committed");
    floe(&[
        "groups",
        "reset-offsets",
        "ops",
        "--topic",
        TOPIC,
        "--to",
        "latest",
        "-s",
        &server.url,
    ]);
    let offsets = client.group_offsets("ops").await.expect("offsets");
    assert!(offsets.offsets.iter().all(|p| p.lag == 0), "{offsets:?}");
    floe(&[
        "groups",
        "reset-offsets",
        "ops",
        "--topic",
        TOPIC,
        "--to",
        "earliest",
        "-s",
        &server.url,
    ]);
    let offsets = client.group_offsets("ops").await.expect("offsets");
    assert_eq!(offsets.offsets.iter().map(|p| p.lag).sum::<u64>(), 10);
    // A restarted consumer resumes from the committed offsets: all ten again.
    let again = floe(&[
        "consume",
        TOPIC,
        "-g",
        "ops",
        "-n",
        "10",
        "-F",
        "%p %o",
        "-s",
        &server.url,
    ]);
    assert_eq!(again.lines().count(), 10, "{again}");
    floe(&["groups", "delete", "ops", "-s", &server.url]);
    let listed = floe(&["groups", "list", "-s", &server.url]);
    assert!(listed.is_empty(), "{listed}");
}
