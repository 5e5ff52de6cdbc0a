//! Crashes in the middle of a produce load. `kill -9` five times, each with produce
//! requests in flight, and a crash between a segment's upload and its commit with several
//! producers' requests in that segment: every acknowledged record survives at its offset,
//! no value is written twice (the idempotent client retries across the restart, and the
//! restarted broker must recognise what was already committed), offsets stay dense, and
//! an uploaded but uncommitted segment is never read.
//!
//! The producers reach the broker through a [`Link`]. Before each kill it holds back the
//! broker's acknowledgements until it holds one, and it loses what it holds at the kill:
//! so every kill leaves at least one request that was committed but never answered, whose
//! retry the restarted broker must recognise rather than write again. Each kill freezes
//! the broker (SIGSTOP) and severs the link before the SIGKILL, so the requests
//! outstanding at the kill are known: none of them can be answered before the next broker
//! is up. The crash point is wherever SIGSTOP caught the broker.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_client::api::ProduceRecordJson;
use floe_client::{Encoding, FloeClient, RetryPolicy};
use floe_tests::FloeProcess;
use floe_tests::chaos;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOPIC: &str = "load";
const PARTITIONS: u32 = 3;
const PRODUCERS: usize = 6;
const RECORDS_PER_REQUEST: u64 = 20;
const KILLS: u64 = 5;

/// The load the producers put on whichever broker is alive, and what they saw of its
/// deaths.
#[derive(Debug)]
struct Load {
    stop: AtomicBool,
    /// Kills about to be sent: counted up just before each SIGKILL.
    kills_sent: AtomicU64,
    /// Kills done: counted up once the broker is dead.
    kills_done: AtomicU64,
    /// Records acknowledged so far, to wake the test when the load has gone far enough.
    acknowledged: tokio::sync::watch::Sender<u64>,
    /// Kill number → produce requests in flight through it: started before that kill was
    /// sent, answered (or given up) only after it was done.
    in_flight_at_kill: parking_lot::Mutex<BTreeMap<u64, u64>>,
    /// Requests whose retries ran out (their records may or may not have been written).
    failed: AtomicU64,
}

impl Load {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            stop: AtomicBool::new(false),
            kills_sent: AtomicU64::new(0),
            kills_done: AtomicU64::new(0),
            acknowledged: tokio::sync::watch::Sender::new(0),
            in_flight_at_kill: parking_lot::Mutex::default(),
            failed: AtomicU64::new(0),
        })
    }

    /// Waits for `more` acknowledged records beyond what there are now.
    async fn wait_for_more_acks(&self, more: u64) {
        let mut acknowledged = self.acknowledged.subscribe();
        let target = *acknowledged.borrow() + more;
        tokio::time::timeout(
            Duration::from_secs(90),
            acknowledged.wait_for(|count| *count >= target),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the load stalled at {} acknowledged records, short of {target}",
                *self.acknowledged.borrow()
            )
        })
        .expect("the load's counter lives as long as the load");
    }
}

/// Sends requests of unique values `p<id>-<n>` (`n` counting up) one after another until
/// told to stop, and returns what it was told: each acknowledged value's place.
async fn producer(id: usize, client: FloeClient, load: Arc<Load>) -> chaos::Acks {
    let mut acks = Vec::new();
    let mut next = 0u64;
    while !load.stop.load(Ordering::SeqCst) {
        let values: Vec<String> = (next..next + RECORDS_PER_REQUEST)
            .map(|n| format!("p{id}-{n}"))
            .collect();
        next += RECORDS_PER_REQUEST;
        let records = values
            .iter()
            .map(|value| ProduceRecordJson {
                value: Some(Value::String(value.clone())),
                ..Default::default()
            })
            .collect();
        let kills_before = load.kills_sent.load(Ordering::SeqCst);
        let answer = client.produce(TOPIC, records, Encoding::Text).await;
        let kills_after = load.kills_done.load(Ordering::SeqCst);
        // Kill k was sent after this request started and done before its answer came: the
        // request was in flight through kill k.
        if kills_after > kills_before {
            let mut in_flight = load.in_flight_at_kill.lock();
            for kill in kills_before + 1..=kills_after {
                *in_flight.entry(kill).or_default() += 1;
            }
        }
        match answer {
            Ok(answer) => {
                assert_eq!(answer.offsets.len(), values.len(), "one offset per record");
                for (value, offset) in values.into_iter().zip(&answer.offsets) {
                    acks.push((value, offset.partition, offset.offset));
                }
                load.acknowledged
                    .send_modify(|count| *count += RECORDS_PER_REQUEST);
            }
            // Unacknowledged: its records may be lost, or written (once).
            Err(error) => {
                eprintln!("producer {id}: a request failed after its retries: {error}");
                load.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    acks
}

/// A client of `url` (the link) that keeps retrying a request, with the same producer
/// sequence, for about 30 s: long enough for a broker to come back.
fn load_client(url: &str) -> FloeClient {
    FloeClient::with_timeout(url, Duration::from_secs(20))
        .without_owner_routing()
        .with_retry(RetryPolicy {
            attempts: 300,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        })
}

/// The producers' one address across the broker's restarts on new ports. While
/// [`Link::hold`] is on, it passes no acknowledgement on (other answers go through) and
/// counts those it holds; [`Link::sever`] drops every connection with whatever it holds.
struct Link {
    url: String,
    upstream: Arc<parking_lot::Mutex<String>>,
    holding: Arc<AtomicBool>,
    /// Successful produce answers held back since the last [`Link::hold`].
    held: Arc<tokio::sync::watch::Sender<u64>>,
    connections: Arc<parking_lot::Mutex<tokio::task::JoinSet<()>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn to(broker: &FloeProcess) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the link");
        let url = format!("http://{}", listener.local_addr().expect("link address"));
        let upstream = Arc::new(parking_lot::Mutex::new(address(broker)));
        let holding = Arc::new(AtomicBool::new(false));
        let held = Arc::new(tokio::sync::watch::Sender::new(0));
        let connections = Arc::new(parking_lot::Mutex::new(tokio::task::JoinSet::new()));
        let accepting = tokio::spawn({
            let upstream = Arc::clone(&upstream);
            let holding = Arc::clone(&holding);
            let held = Arc::clone(&held);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let target = upstream.lock().clone();
                    let relay = relay(client, target, Arc::clone(&holding), Arc::clone(&held));
                    let mut connections = connections.lock();
                    while connections.try_join_next().is_some() {}
                    connections.spawn(relay);
                }
            }
        });
        Self {
            url,
            upstream,
            holding,
            held,
            connections,
            accepting,
        }
    }

    /// Holds back every acknowledgement from now on, until [`Link::sever`].
    fn hold(&self) {
        self.held.send_replace(0);
        self.holding.store(true, Ordering::SeqCst);
    }

    /// Waits until the link holds a successful answer: a request the broker committed and
    /// the client has not heard of.
    async fn wait_for_a_held_answer(&self) {
        let mut held = self.held.subscribe();
        tokio::time::timeout(Duration::from_secs(60), held.wait_for(|count| *count > 0))
            .await
            .expect("the broker answers a request while the link holds its answers")
            .expect("the link lives as long as the test");
    }

    /// Drops every open connection and the answers it holds, and stops holding.
    fn sever(&self) {
        self.connections.lock().abort_all();
        self.holding.store(false, Ordering::SeqCst);
    }

    /// Sends new connections to `broker`.
    fn retarget(&self, broker: &FloeProcess) {
        *self.upstream.lock() = address(broker);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.accepting.abort();
        self.connections.lock().abort_all();
    }
}

/// Forwards one connection to `target`; once `holding`, keeps the first acknowledgement
/// it sees and passes nothing more on.
async fn relay(
    mut client: TcpStream,
    target: String,
    holding: Arc<AtomicBool>,
    held: Arc<tokio::sync::watch::Sender<u64>>,
) {
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
    };
    let answers = async {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read @ 1..) = upstream_read.read(&mut buffer).await {
            if holding.load(Ordering::SeqCst) && is_acknowledgement(&buffer[..read]) {
                held.send_modify(|count| *count += 1);
                // This connection's client waits for its answer until the link is severed.
                std::future::pending::<()>().await;
            }
            if client_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}

/// Whether `answer` starts a successful produce answer (`200`, with offsets).
fn is_acknowledgement(answer: &[u8]) -> bool {
    answer.starts_with(b"HTTP/1.1 200")
        && answer
            .windows(b"\"offsets\"".len())
            .any(|window| window == b"\"offsets\"")
}

fn address(broker: &FloeProcess) -> String {
    broker.url.trim_start_matches("http://").to_owned()
}

fn start_producers(
    client: &FloeClient,
    load: &Arc<Load>,
) -> Vec<tokio::task::JoinHandle<chaos::Acks>> {
    (0..PRODUCERS)
        .map(|id| tokio::spawn(producer(id, client.clone(), Arc::clone(load))))
        .collect()
}

async fn stop_producers(
    load: &Load,
    producers: Vec<tokio::task::JoinHandle<chaos::Acks>>,
) -> Vec<chaos::Acks> {
    load.stop.store(true, Ordering::SeqCst);
    let mut acks = Vec::new();
    for producer in producers {
        let finished = tokio::time::timeout(Duration::from_secs(60), producer)
            .await
            .expect("a producer finishes its last request");
        acks.push(finished.expect("producer task"));
    }
    acks
}

/// Reads the whole topic from `broker` and checks it against what producers were told:
/// dense offsets from 0 to the high watermark, every acknowledged value at its offset, no
/// value twice, each producer's values in order. Returns the log.
async fn check_log(broker: &FloeProcess, acks: &[chaos::Acks]) -> Vec<BTreeMap<u64, String>> {
    let client = broker.client();
    let log = chaos::read_log(&client, TOPIC, PARTITIONS).await;
    let described = client.describe_topic(TOPIC).await.expect("describe");
    for (partition, records) in log.iter().enumerate() {
        let high_watermark = described.partitions[partition].high_watermark;
        assert!(
            records.keys().copied().eq(0..high_watermark),
            "partition {partition} holds each offset below its high watermark \
             {high_watermark} once, and no other: {} records",
            records.len()
        );
    }
    let verdict = chaos::check(std::slice::from_ref(&log), acks);
    eprintln!("{verdict:?}");
    assert!(verdict.acknowledged > 0, "the load was acknowledged at all");
    assert_eq!(verdict.lost, 0, "acknowledged values lost: {verdict:?}");
    assert_eq!(verdict.duplicated, 0, "values written twice: {verdict:?}");
    assert_eq!(
        verdict.misplaced, 0,
        "values not at their acknowledged offset: {verdict:?}"
    );
    assert_eq!(
        verdict.out_of_order, 0,
        "a producer's values out of order: {verdict:?}"
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kill_9s_under_load_lose_nothing_acknowledged_and_write_nothing_twice() {
    let seed = floe_tests::seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    // A small snapshot interval makes the kills land around snapshots and log rotation too.
    let flags = ["--linger", "2ms", "--snapshot-every", "20"];
    let mut broker = FloeProcess::start(dir.path(), &flags);
    floe_tests::create_topic(&broker.client(), TOPIC, PARTITIONS).await;
    let link = Link::to(&broker).await;
    let load = Load::new();
    let producers = start_producers(&load_client(&link.url), &load);

    for kill in 1..=KILLS {
        // Somewhere different in each life, as far as the seed goes.
        load.wait_for_more_acks(rng.random_range(100..1_000)).await;
        // At least one request committed and not answered when the broker dies.
        link.hold();
        link.wait_for_a_held_answer().await;
        // Frozen where it stands, with the answers held lost: from here no request can be
        // answered until a new broker is up, so whatever is outstanding when the kill is
        // counted is in flight through it.
        broker.pause();
        let unanswered = *link.held.borrow();
        link.sever();
        load.kills_sent.fetch_add(1, Ordering::SeqCst);
        broker.kill();
        load.kills_done.fetch_add(1, Ordering::SeqCst);
        broker = tokio::task::block_in_place(|| FloeProcess::start(dir.path(), &flags));
        link.retarget(&broker);
        eprintln!(
            "kill {kill}: {unanswered} committed requests unanswered; restarted at {}",
            broker.url
        );
    }
    // The last life takes load too, retries of what the last kill cut off first.
    load.wait_for_more_acks(500).await;
    let acks = stop_producers(&load, producers).await;

    let in_flight = load.in_flight_at_kill.lock().clone();
    eprintln!(
        "produce requests in flight at each kill: {in_flight:?}; {} requests failed after \
         their retries",
        load.failed.load(Ordering::SeqCst)
    );
    for kill in 1..=KILLS {
        assert!(
            in_flight.get(&kill).copied().unwrap_or(0) > 0,
            "no produce request was in flight at kill {kill}: {in_flight:?}"
        );
    }
    let log = check_log(&broker, &acks).await;

    // Offsets continue densely after the last restart.
    let record = ProduceRecordJson {
        value: Some(Value::String("after".into())),
        partition: Some(0),
        ..Default::default()
    };
    let response = broker
        .client()
        .produce(TOPIC, vec![record], Encoding::Text)
        .await
        .expect("produce after the restarts");
    assert_eq!(response.offsets[0].offset, log[0].len() as u64);
}

fn segment_files(data_dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(data_dir.join("objects").join("segments")) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".seg"))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The values of the records in segment object `name`.
fn segment_values(data_dir: &Path, name: &str) -> Vec<String> {
    let path = data_dir.join("objects").join("segments").join(name);
    let bytes = bytes::Bytes::from(std::fs::read(&path).expect("read the segment"));
    let batches = floe_core::segment::decode_segment(&bytes)
        .unwrap_or_else(|error| panic!("segment {name} does not decode: {error}"));
    batches
        .into_iter()
        .flat_map(|(_, batch)| batch.records)
        .map(|record| String::from_utf8_lossy(&record.value.unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_upload_and_commit_under_load_writes_each_value_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The doomed broker gathers the load's first requests for 300 ms into one segment
    // (not sealing the first alone on its idle pipeline), uploads it, and dies before
    // committing it.
    let mut doomed = FloeProcess::start_with_env(
        dir.path(),
        &["--linger", "300ms", "--flush-when-idle", "false"],
        &[("FLOE_TEST_CRASH_AFTER_UPLOAD", "1".into())],
    );
    floe_tests::create_topic(&doomed.client(), TOPIC, PARTITIONS).await;
    let link = Link::to(&doomed).await;
    let load = Load::new();
    let producers = start_producers(&load_client(&link.url), &load);

    let exit = tokio::task::block_in_place(|| doomed.wait_exit(Duration::from_secs(60)))
        .expect("the failpoint kills the broker once it has uploaded a segment");
    assert_eq!(exit.signal(), Some(6), "it aborted: {exit:?}");
    assert_eq!(
        *load.acknowledged.borrow(),
        0,
        "nothing was acknowledged before the crash"
    );
    let orphans = segment_files(dir.path());
    let orphan_values: Vec<String> = orphans
        .iter()
        .flat_map(|name| segment_values(dir.path(), name))
        .collect();
    let writers: BTreeSet<&str> = orphan_values
        .iter()
        .filter_map(|value| value.split_once('-').map(|(producer, _)| producer))
        .collect();
    eprintln!(
        "{} uploaded, uncommitted segments hold {} records of producers {writers:?}",
        orphans.len(),
        orphan_values.len()
    );
    assert!(!orphans.is_empty(), "the crash left its upload behind");
    assert!(
        writers.len() >= 2,
        "the lost segment held concurrent requests of several producers: {writers:?}"
    );

    let flags = [
        "--linger",
        "2ms",
        "--object-grace",
        "2s",
        "--lifecycle-interval",
        "500ms",
    ];
    let broker = tokio::task::block_in_place(|| FloeProcess::start(dir.path(), &flags));
    link.retarget(&broker);
    load.wait_for_more_acks(500).await;
    let acks = stop_producers(&load, producers).await;
    check_log(&broker, &acks).await;

    // The requests in the lost segment were retried and written once, by the new broker.
    let acknowledged: BTreeSet<&str> = acks
        .iter()
        .flatten()
        .map(|(value, _, _)| value.as_str())
        .collect();
    let unacknowledged: Vec<&String> = orphan_values
        .iter()
        .filter(|value| !acknowledged.contains(value.as_str()))
        .collect();
    assert!(
        unacknowledged.is_empty(),
        "values of the lost segment never acknowledged: {unacknowledged:?}"
    );
    // And the lost segment itself goes away, unread.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !segment_files(dir.path()).is_disjoint(&orphans) {
        assert!(
            Instant::now() < deadline,
            "the uploaded, uncommitted segment was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        broker
            .metric(r#"floe_objects_deleted_total{reason="orphan"}"#)
            .await
            >= orphans.len() as f64
    );
}
