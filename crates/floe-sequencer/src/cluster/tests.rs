//! The cluster sequencer against a real etcd.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use floe_core::segment::BatchEntry;
use floe_core::{SegmentId, TopicConfig};
use floe_tests::etcd::EtcdCluster;

use floe_core::SystemClock;

use super::*;
use crate::commit::MAX_LOG_INTERVALS;
use crate::conformance;
use crate::error::{ApplyError, SequencerError};
use crate::log::LogBackend;
use crate::memory::MemorySnapshots;
use crate::open_cluster;
use crate::sequencer::Sequencer;
use crate::state::Outcome;

/// Forwards to sequencers in this process, by broker id.
#[derive(Debug, Default)]
struct LocalForwarder {
    peers: Mutex<HashMap<String, Sequencer>>,
}

#[async_trait]
impl Forwarder for LocalForwarder {
    async fn forward(
        &self,
        leader: &LeaderInfo,
        commands: Vec<ForwardedCommand>,
    ) -> Result<Vec<Result<Committed, RemoteError>>, String> {
        let peer = self.peers.lock().get(&leader.broker).cloned();
        let peer = peer.ok_or_else(|| format!("no peer {}", leader.broker))?;
        let commands = commands.into_iter().map(|c| (c.command, c.fence)).collect();
        Ok(peer
            .submit_forwarded(commands)
            .await
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(|result| result.map_err(RemoteError::from))
            .collect())
    }
}

fn create(name: &str, partitions: u32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partitions,
        config: TopicConfig::default(),
        created_ms: 0,
    }
}

fn commit(topic: floe_core::TopicId, partition: u32, records: u32) -> Command {
    Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![BatchEntry {
            topic_id: topic,
            partition,
            byte_offset: 16,
            length: 100,
            record_count: records,
            first_timestamp: 0,
            max_timestamp: 0,
            crc32c: 0,
        }],
        guards: Vec::new(),
        at_ms: 0,
    }
}

fn identity(broker: &str) -> Identity {
    Identity::new(broker, format!("{broker}:0"))
}

fn options(etcd: &EtcdCluster, cluster: &str) -> ClusterOptions {
    ClusterOptions {
        endpoints: etcd.endpoints(),
        cluster: cluster.into(),
        lease_ttl: Duration::from_secs(2),
        compact_etcd: true,
        sequencer: SequencerOptions {
            snapshot_every: 50,
            ..SequencerOptions::default()
        },
        tls: None,
    }
}

async fn standalone(etcd: &EtcdCluster, snapshots: &Arc<MemorySnapshots>) -> Arc<dyn LogBackend> {
    let snapshots: Arc<dyn SnapshotStore> = snapshots.clone();
    Arc::new(
        EtcdLog::lead(
            &etcd.endpoints(),
            "conformance",
            Duration::from_secs(2),
            snapshots,
        )
        .await
        .expect("lead"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_etcd() {
    for test in 0..4 {
        let etcd = EtcdCluster::start(1);
        let snapshots = Arc::new(MemorySnapshots::default());
        let open = || standalone(&etcd, &snapshots);
        match test {
            0 => conformance::survives_reopen(open).await,
            1 => conformance::concurrent_submitters_are_serialized(open).await,
            2 => conformance::snapshots_restore_state(open).await,
            _ => conformance::snapshot_keeps_entries_appended_meanwhile(open).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_term_cannot_write_and_stale_fences_are_refused() {
    let etcd = EtcdCluster::start(1);
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(MemorySnapshots::default());
    let first = EtcdLog::lead(
        &etcd.endpoints(),
        "fence",
        Duration::from_secs(1),
        snapshots.clone(),
    )
    .await
    .expect("first leader");
    let entry = |index| crate::log::LogEntry {
        index,
        command: create(&format!("t{index}"), 1),
    };
    first.append(&[entry(1)], &[]).await.expect("leader writes");
    // A fence naming a session that is not registered is stale; nothing is written.
    let stale = Fence {
        broker: "ghost".into(),
        session: 42,
    };
    match first
        .append(&[entry(2)], std::slice::from_ref(&stale))
        .await
    {
        Err(LogError::Fenced(refused)) => assert_eq!(refused, vec![stale]),
        other => panic!("expected Fenced, got {other:?}"),
    }
    // Revoking the lease ends the term; the next leader takes over and the old term's
    // writes are refused.
    first.close().await;
    let second = EtcdLog::lead(
        &etcd.endpoints(),
        "fence",
        Duration::from_secs(1),
        snapshots,
    )
    .await
    .expect("second leader");
    assert!(matches!(
        first.append(&[entry(2)], &[]).await,
        Err(LogError::Deposed(_))
    ));
    second
        .append(&[entry(2)], &[])
        .await
        .expect("new leader writes");
    let recovery = second.recover().await.expect("recover");
    let indexes: Vec<u64> = recovery.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![1, 2]);
    second.close().await;
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sample of `broker`'s sequencer metrics, by its name in the text exposition.
fn metric(broker: &Sequencer, sample: &str) -> f64 {
    let mut registry = prometheus_client::registry::Registry::default();
    broker.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in {text}"))
}

/// Brokers `names` of cluster `cluster` in this process, forwarding to each other, on
/// one snapshot store in memory.
async fn join_brokers(etcd: &EtcdCluster, cluster: &str, names: &[&str]) -> Vec<Sequencer> {
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(MemorySnapshots::default());
    let forwarder = Arc::new(LocalForwarder::default());
    let mut brokers = Vec::new();
    for name in names {
        let sequencer = open_cluster(
            identity(name),
            options(etcd, cluster),
            snapshots.clone(),
            forwarder.clone(),
            Arc::new(SystemClock),
        )
        .await
        .expect("join");
        forwarder
            .peers
            .lock()
            .insert((*name).into(), sequencer.clone());
        brokers.push(sequencer);
    }
    brokers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_commit_through_one_leader_share_ownership_and_fail_over() {
    let etcd = EtcdCluster::start(1);
    let mut brokers = join_brokers(&etcd, "c1", &["a", "b", "c"]).await;
    wait_until("a leader", || {
        brokers.iter().any(|b| b.membership().is_leader())
    })
    .await;
    let Outcome::TopicCreated(topic) = brokers[1].submit(create("t", 6)).await.expect("create")
    else {
        panic!("create answered something else");
    };
    // A refusal is answered with the index of the state it was judged on, and a follower
    // answers it only once its own replica has applied that index: every broker asks for
    // the same topic at once, one create commits, and each broker told that the topic
    // exists already sees it. (Its replica learns of the create through etcd's watch,
    // which without that wait would often come after the leader's answer.)
    let answers = {
        let (a, b, c) = tokio::join!(
            brokers[0].submit(create("u", 1)),
            brokers[1].submit(create("u", 1)),
            brokers[2].submit(create("u", 1)),
        );
        [a, b, c]
    };
    let created = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(created, 1, "{answers:?}");
    for (broker, answer) in brokers.iter().zip(&answers) {
        if let Err(error) = answer {
            assert!(
                matches!(error, SequencerError::Rejected(ApplyError::TopicExists(name)) if name == "u"),
                "{error:?}"
            );
            assert!(
                broker.read(|s| s.topic("u").is_some()),
                "refused, yet not applied"
            );
        }
    }
    // Every broker commits, whoever leads; offsets come out dense.
    let leading = || brokers.iter().position(|b| b.membership().is_leader());
    let leader_before = leading();
    let mut offsets = Vec::new();
    for round in 0..60 {
        let broker = &brokers[round % 3];
        let fence = broker.fence().expect("session");
        let outcome = broker
            .submit_ordered(commit(topic, 0, 2), fence)
            .await
            .expect("enqueue")
            .await
            .expect("commit");
        let Outcome::SegmentCommitted(results) = outcome else {
            panic!("outcome")
        };
        offsets.push(results[0].clone().expect("base offset"));
        // Read-your-writes at the broker that committed.
        let hwm = broker.read(|s| s.topic("t").map(|t| t.partitions[0].high_watermark));
        assert!(hwm >= Some(offsets.last().copied().unwrap_or(0) + 2));
    }
    assert_eq!(offsets, (0..60).map(|i| i * 2).collect::<Vec<u64>>());
    // Each follower timed its side of the 20 commits it made, of its create of u (a
    // refusal is caught up on too) and b, of the topic's creation: one catch-up each, and
    // at least one forwarding call each, as its commands went one at a time (a term that
    // lapsed and came back would send some again); the leader forwarded nothing. Only if
    // one broker led throughout.
    if leader_before.is_some() && leading() == leader_before {
        for (index, broker) in brokers.iter().enumerate() {
            let (forwarded, caught_up) = (
                metric(broker, "floe_sequencer_forward_seconds_count"),
                metric(broker, "floe_sequencer_catch_up_seconds_count"),
            );
            if Some(index) == leader_before {
                assert_eq!((forwarded, caught_up), (0.0, 0.0));
            } else {
                let made = if index == 1 { 22.0 } else { 21.0 };
                assert_eq!(caught_up, made);
                assert!(forwarded >= made, "{forwarded} calls for {made} commands");
            }
        }
    }
    // Every replica converges on the same state (snapshots and compaction happened on the
    // way: snapshot_every is 50).
    let leader_state = || {
        brokers
            .iter()
            .find(|b| b.membership().is_leader())
            .map(|b| b.read(|s| s.clone()))
    };
    wait_until("replicas converge", || {
        let Some(expected) = leader_state() else {
            return false;
        };
        brokers.iter().all(|b| b.read(|s| *s == expected))
    })
    .await;
    // Ownership: every partition owned by a live broker, spread over more than one.
    wait_until("owners assigned", || {
        brokers[0].read(|s| {
            s.topic("t")
                .is_some_and(|t| t.partitions.iter().all(|p| p.owner.is_some()))
        })
    })
    .await;
    // The leader leaves; another takes over and commits continue densely.
    let leader = brokers
        .iter()
        .position(|b| b.membership().is_leader())
        .expect("leader");
    let departed = brokers.remove(leader);
    let departed_id = departed.membership().broker().to_owned();
    departed.shutdown().await;
    wait_until("a new leader", || {
        brokers.iter().any(|b| b.membership().is_leader())
    })
    .await;
    let fence = brokers[0].fence().expect("session");
    let outcome = brokers[0]
        .submit_ordered(commit(topic, 0, 1), fence)
        .await
        .expect("enqueue")
        .await
        .expect("commit after failover");
    assert_eq!(outcome, Outcome::SegmentCommitted(vec![Ok(120)].into()));
    wait_until("partitions leave the departed broker", || {
        brokers[0].read(|s| {
            s.topic("t").is_some_and(|t| {
                t.partitions
                    .iter()
                    .all(|p| p.owner.as_deref().is_some_and(|o| o != departed_id))
            })
        })
    })
    .await;
    for broker in brokers {
        broker.shutdown().await;
    }
}

#[test]
fn rendezvous_moves_only_the_departed_brokers_partitions() {
    let mut state = crate::state::ClusterState::default();
    state.apply(1, &create("t", 300)).expect("create");
    let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let changes = driver::owner_changes(&state, &three);
    assert_eq!(changes.len(), 300);
    for broker in &three {
        let owned = changes
            .iter()
            .filter(|c| c.owner.as_ref() == Some(broker))
            .count();
        assert!((50..=150).contains(&owned), "{broker} owns {owned} of 300");
    }
    state
        .apply(2, &Command::AssignOwners { changes })
        .expect("assign");
    let two: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let moved = driver::owner_changes(&state, &two);
    let topic = state.topic("t").expect("topic");
    assert!(moved.iter().all(|change| {
        topic.partitions[change.partition as usize].owner.as_deref() == Some("c")
    }));
    assert!(!moved.is_empty());
}

/// Keys and bytes (keys plus values) under a cluster's prefix.
async fn etcd_footprint(etcd: &EtcdCluster, cluster: &str) -> (usize, usize) {
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("connect");
    let response = client
        .get(
            Keys::new(cluster).root(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get prefix");
    let bytes = response
        .kvs()
        .iter()
        .map(|kv| kv.key().len() + kv.value().len())
        .sum();
    (response.kvs().len(), bytes)
}

/// After many segment and offset commits, what floe keeps in etcd is bounded by
/// `MAX_LOG_INTERVALS` times `snapshot_every`, not by the data. `FLOE_ETCD_BOUND_COMMITS` sets how many (100000 for the figure in
/// docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_size_is_bounded_by_the_snapshot_interval() {
    let commits: usize = std::env::var("FLOE_ETCD_BOUND_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    const SNAPSHOT_EVERY: u64 = 2_000;
    let etcd = EtcdCluster::start(1);
    let mut options = options(&etcd, "bound");
    options.sequencer.snapshot_every = SNAPSHOT_EVERY;
    let sequencer = open_cluster(
        identity("solo"),
        options,
        Arc::new(MemorySnapshots::default()),
        Arc::new(LocalForwarder::default()),
        Arc::new(SystemClock),
    )
    .await
    .expect("join");
    wait_until("leader", || sequencer.membership().is_leader()).await;
    let Outcome::TopicCreated(topic) = sequencer.submit(create("t", 4)).await.expect("create")
    else {
        panic!("create");
    };
    let started = std::time::Instant::now();
    let submitters = 64;
    let tasks: Vec<_> = (0..submitters)
        .map(|worker| {
            let sequencer = sequencer.clone();
            tokio::spawn(async move {
                for round in (worker..commits).step_by(submitters) {
                    let fence = sequencer.fence().expect("session");
                    sequencer
                        .submit_ordered(commit(topic, (round % 4) as u32, 1), fence)
                        .await
                        .expect("enqueue")
                        .await
                        .expect("commit");
                    // Consumer groups commit as often as producers do; their offsets
                    // are state, bounded like the rest by snapshots.
                    let offsets = Command::CommitOffsets {
                        group: format!("g{}", round % 8),
                        member: None,
                        offsets: vec![crate::state::OffsetCommit {
                            topic_id: topic,
                            partition: (round % 4) as u32,
                            offset: 0,
                            metadata: format!("round {round}"),
                        }],
                        at_ms: round as i64,
                    };
                    sequencer.submit(offsets).await.expect("offset commit");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("submitter");
    }
    let elapsed = started.elapsed();
    let total: u64 = sequencer.read(|s| {
        s.topic("t")
            .map(|t| t.partitions.iter().map(|p| p.high_watermark).sum())
            .unwrap_or(0)
    });
    assert_eq!(total, commits as u64);
    assert_eq!(sequencer.read(|s| s.groups().count()), 8.min(commits));
    let (keys, bytes) = etcd_footprint(&etcd, "bound").await;
    eprintln!(
        "{commits} segment commits and as many offset commits in {elapsed:?}: {keys} keys, \
         {bytes} bytes under the cluster prefix (snapshot every {SNAPSHOT_EVERY} entries)"
    );
    // leader + snapshot pointer + one registration + at most MAX_LOG_INTERVALS intervals
    // of log groups (the snapshot is written beside the commit loop, which waits for it
    // only once the log reaches that bound), each at most max_group entries of ~250 bytes.
    let bound = (MAX_LOG_INTERVALS * SNAPSHOT_EVERY) as usize;
    assert!(keys <= 3 + bound + 1, "{keys} keys");
    assert!(bytes <= (bound + 256) * 400 + 4096, "{bytes} bytes");
    sequencer.shutdown().await;
}

/// Log groups can be large (a group may approach 0.5 MiB): a page of them over the gRPC
/// client's 4 MiB message limit is read again in narrower pages, so a catch-up reads wide
/// pages of small groups and still reads a log of large ones, whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reads_in_pages_that_fit_the_message_limit() {
    let etcd = EtcdCluster::start(1);
    let keys = Keys::new("pages");
    let client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("connect");
    let groups = 12u64;
    for index in 1..=groups {
        let group = vec![crate::log::LogEntry {
            index,
            command: crate::state::Command::InitProducer {
                existing: None,
                principal: Some(format!("{index}-{}", "p".repeat(450_000))),
                at_ms: 0,
            },
        }];
        let value = serde_json::to_vec(&group).expect("encode");
        client
            .clone()
            .put(keys.log(index), value, None)
            .await
            .expect("put");
    }
    let (read, revision) = etcd_log::read_log(&client, &keys, 1, None)
        .await
        .expect("a log wider than one message reads in narrower pages");
    assert!(revision > 0);
    let indexes: Vec<u64> = read.iter().map(|group| group[0].index).collect();
    assert_eq!(indexes, (1..=groups).collect::<Vec<_>>());
    let (tail, _) = etcd_log::read_log(&client, &keys, 11, None)
        .await
        .expect("read the tail");
    assert_eq!(tail.len(), 2, "from a later index, only what follows it");
}

/// Commits one record at a time to `partition` on `broker` until `stop`, counting the
/// commits that fail and remembering each committed base offset with when it landed.
async fn commit_until(
    broker: Sequencer,
    topic: floe_core::TopicId,
    partition: u32,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<(u64, tokio::time::Instant)>, Vec<String>) {
    let (mut committed, mut failed) = (Vec::new(), Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let outcome = match broker.fence() {
            Ok(fence) => match broker
                .submit_ordered(commit(topic, partition, 1), fence)
                .await
            {
                Ok(pending) => pending.await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match outcome {
            Ok(Outcome::SegmentCommitted(results)) => {
                let base = results[0].clone().expect("base offset");
                committed.push((base, tokio::time::Instant::now()));
            }
            Ok(other) => panic!("outcome {other:?}"),
            Err(error) => failed.push(error.to_string()),
        }
    }
    (committed, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_over_without_failing_a_commit() {
    let etcd = EtcdCluster::start(1);
    let brokers = join_brokers(&etcd, "handover", &["a", "b", "c"]).await;
    wait_until("a leader", || {
        brokers.iter().any(|b| b.membership().is_leader())
    })
    .await;
    wait_until("every broker sees the others", || {
        brokers.iter().all(|b| b.membership().members().len() == 3)
    })
    .await;
    let Outcome::TopicCreated(topic) = brokers[0].submit(create("t", 6)).await.expect("create")
    else {
        panic!("create answered something else");
    };
    let leader = brokers
        .iter()
        .position(|b| b.membership().is_leader())
        .expect("leader");
    // Two committers per broker, the leader's included, each on a partition of its own.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_leader = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut committers = Vec::new();
    for (index, broker) in brokers.iter().enumerate() {
        for lane in 0..2 {
            let flag = if index == leader { &stop_leader } else { &stop };
            committers.push(tokio::spawn(commit_until(
                broker.clone(),
                topic,
                (index * 2 + lane) as u32,
                flag.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let handed_at = tokio::time::Instant::now();
    brokers[leader].hand_over(Duration::from_secs(10)).await;
    let took = handed_at.elapsed();
    assert!(!brokers[leader].membership().is_leader(), "still leading");
    let next = brokers[leader]
        .membership()
        .leader()
        .expect("a leader is known");
    assert_ne!(next.broker, brokers[leader].membership().broker());
    // The broker that handed over still commits, through the next leader.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_leader.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut committed = Vec::new();
    let mut failed = Vec::new();
    let mut after = [0usize; 3];
    for (slot, committer) in committers.into_iter().enumerate() {
        let (landed, errors) = committer.await.expect("committer");
        after[slot / 2] += landed
            .iter()
            .filter(|(_, at)| *at > handed_at + took)
            .count();
        committed.push(landed);
        failed.extend(errors);
    }
    assert!(
        failed.is_empty(),
        "commits failed during the hand-over: {failed:?}"
    );
    assert!(
        after.iter().all(|count| *count > 0),
        "every broker committed after the hand-over: {after:?}"
    );
    // Each partition's offsets are dense: nothing was lost or committed twice.
    for (slot, landed) in committed.iter().enumerate() {
        let offsets: Vec<u64> = landed.iter().map(|(base, _)| *base).collect();
        assert_eq!(
            offsets,
            (0..landed.len() as u64).collect::<Vec<_>>(),
            "partition {slot}"
        );
    }
    // And the log holds exactly those: no command was appended twice.
    let expected: Vec<u64> = committed.iter().map(|landed| landed.len() as u64).collect();
    let high_watermarks = |broker: &Sequencer| {
        broker.read(|s| {
            s.topic("t").map(|t| {
                t.partitions[..expected.len()]
                    .iter()
                    .map(|p| p.high_watermark)
                    .collect::<Vec<_>>()
            })
        })
    };
    let survivor = &brokers[(leader + 1) % 3];
    wait_until("the survivor's replica holds every commit", || {
        high_watermarks(survivor)
            .is_some_and(|hwms| hwms.iter().zip(&expected).all(|(hwm, want)| hwm >= want))
    })
    .await;
    assert_eq!(high_watermarks(survivor), Some(expected));
    // The longest pause between two commits anywhere around the hand-over.
    let mut times: Vec<_> = committed.iter().flatten().map(|(_, at)| *at).collect();
    times.sort();
    let pause = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "hand-over took {took:?}; {} commits, the longest pause between two {pause:?}",
        times.len()
    );
    for broker in brokers {
        broker.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_a_snapshot_deletes_older_orphans_and_keeps_newer_objects() {
    let etcd = EtcdCluster::start(1);
    let snapshots = Arc::new(MemorySnapshots::default());
    let backend = standalone(&etcd, &snapshots).await;
    // Uploads whose install never happened: one older than the next install, one newer.
    let older = snapshots
        .put(3, Bytes::from_static(b"orphan"))
        .await
        .expect("put");
    let newer = snapshots
        .put(90, Bytes::from_static(b"in flight"))
        .await
        .expect("put");
    let state = |index: u64| crate::log::Snapshot {
        index,
        state: Bytes::from(format!("state at {index}")),
    };
    backend
        .install_snapshot(state(10))
        .await
        .expect("install 10");
    backend
        .install_snapshot(state(20))
        .await
        .expect("install 20");
    let mut left: Vec<(u64, String)> = snapshots.list().await.expect("list");
    left.sort();
    let indexes: Vec<u64> = left.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, vec![20, 90], "{left:?}");
    assert!(!left.iter().any(|(_, key)| *key == older));
    assert!(left.iter().any(|(_, key)| *key == newer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_that_all_hand_over_at_once_still_get_a_leader() {
    let etcd = EtcdCluster::start(1);
    let brokers = join_brokers(&etcd, "everyone-stops", &["a", "b"]).await;
    wait_until("a leader, seen by both", || {
        brokers.iter().all(|b| b.membership().leader().is_some())
            && brokers.iter().all(|b| b.membership().members().len() == 2)
    })
    .await;
    let Outcome::TopicCreated(topic) = brokers[0].submit(create("t", 2)).await.expect("create")
    else {
        panic!("create answered something else");
    };
    // Both stop at once: neither can leave the leadership to the other for good.
    tokio::join!(
        brokers[0].hand_over(Duration::from_secs(30)),
        brokers[1].hand_over(Duration::from_secs(30)),
    );
    for (partition, broker) in brokers.iter().enumerate() {
        let fence = broker.fence().expect("session");
        let outcome = broker
            .submit_ordered(commit(topic, partition as u32, 1), fence)
            .await
            .expect("enqueue")
            .await
            .expect("a commit after both handed over");
        assert!(
            matches!(outcome, Outcome::SegmentCommitted(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(
        brokers
            .iter()
            .filter(|b| b.membership().is_leader())
            .count(),
        1,
        "one of them leads again"
    );
    for broker in brokers {
        broker.shutdown().await;
    }
}
